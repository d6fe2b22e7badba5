// sockhist close-wait: CLOSE_WAIT sockets that stayed, who owns them, and how fast each owner
// leaks them. The peer closed; the application never called close().
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/query/lifecycle.hpp"

namespace sockhist::analyzer {

render::Table close_wait_owner_table(const std::vector<query::CloseWaitByProcess>& groups) {
  using render::Kind;
  render::Table t;
  t.columns = {
      {"program", "PID/PROGRAM"},
      {"now", "NOW", Kind::integer, "sockets"},
      {"peak", "PEAK", Kind::integer, "sockets"},
      {"seen", "SEEN", Kind::integer, "sockets"},
      {"oldest", "OLDEST", Kind::duration_ms},
      {"per_hour", "GROWTH/H", Kind::real, "sockets_per_hour", 1},
      {"involved", "WHERE"},
      {"pid", "", Kind::integer, {}, 2, false},
      {"process", "", Kind::text, {}, 2, false},
      {"cmdline", "", Kind::text, {}, 2, false},
  };
  for (const auto& g : groups) {
    t.rows.push_back({
        program(g.pid, g.comm),
        g.now,
        g.peak,
        g.seen,
        g.oldest_min_ms,
        g.per_hour ? render::Value(*g.per_hour) : render::Value(),
        g.involved,
        g.pid == 0 ? render::Value() : render::Value(static_cast<std::int64_t>(g.pid)),
        g.comm.empty() ? render::Value() : render::Value(g.comm),
        optional_value(g.cmdline),
    });
  }
  t.notes.push_back("GROWTH/H: the least-squares slope of the process's CLOSE_WAIT count over the range (a leak");
  t.notes.push_back("grows). OLDEST: the longest stay in CLOSE_WAIT, at least.");
  return t;
}

namespace {

struct CloseWaitOptions {
  Common common;
  Window window;
  std::string min_age = "60s";
  std::optional<std::string> by;
};

// What --since and --until mean when not given.
const WindowDefaults k_window{"24h", true, {}};

// "12m05s-13m05s", or ">=12m05s" when the kept history begins with the socket in CLOSE_WAIT.
std::string stay(const query::CloseWaitSocket& s) {
  const auto max = s.max_age_ms();
  return max ? fmt::format("{}-{}", model::format_duration(s.min_age_ms()), model::format_duration(*max))
             : fmt::format(">={}", model::format_duration(s.min_age_ms()));
}

render::Table sockets_table(const std::vector<query::CloseWaitSocket>& sockets, model::Zone zone) {
  using render::Kind;
  render::Table t;
  t.columns = {
      {"program", "PID/PROGRAM"},
      {"local", "LOCAL ADDRESS"},
      {"remote", "FOREIGN ADDRESS"},
      {"recv_q", "RECV-Q", Kind::integer, "bytes"},
      {"recv_q_first", "", Kind::integer, "bytes", 2, false},
      {"came_from", "FROM"},
      {"stay", "IN CLOSE_WAIT", Kind::text, {}, 2, true, false},
      {"now", "NOW", Kind::text, {}, 2, true, false},
      {"pid", "", Kind::integer, {}, 2, false},
      {"process", "", Kind::text, {}, 2, false},
      {"cmdline", "", Kind::text, {}, 2, false},
      {"user", "", Kind::text, {}, 2, false},
      {"entered_after", "", Kind::time_ms, {}, 2, false},
      {"entered_by", "", Kind::time_ms, {}, 2, false},
      {"last_seen", "", Kind::time_ms, {}, 2, false},
      {"min_age", "", Kind::duration_ms, {}, 2, false},
      {"max_age", "", Kind::duration_ms, {}, 2, false},
      {"still_there", "", Kind::integer, {}, 2, false},
      {"gone_by", "", Kind::time_ms, {}, 2, false},
      {"serves_listener", "", Kind::integer, {}, 2, false},
      {"ended", "", Kind::time_ms, {}, 2, false},
  };
  for (const auto& s : sockets) {
    t.rows.push_back({
        program(s.pid, s.comm),
        endpoint(s.local_addr, s.local_port),
        endpoint(s.remote_addr, s.remote_port),
        s.rx_queue,
        s.rx_queue_first,
        s.came_from == query::Neighbour{} ? std::string("-") : query::describe(s.came_from),
        stay(s),
        s.still_there ? std::string("there")
        : s.ended_ms  ? fmt::format("ended {}", model::format_human(*s.ended_ms, zone))
                      : std::string("gone"),
        s.pid == 0 ? render::Value() : render::Value(static_cast<std::int64_t>(s.pid)),
        s.comm.empty() ? render::Value() : render::Value(s.comm),
        optional_value(s.cmdline),
        optional_value(s.user),
        optional_value(s.entered_after_ms),
        s.entered_by_ms,
        s.last_seen_ms,
        s.min_age_ms(),
        optional_value(s.max_age_ms()),
        static_cast<std::int64_t>(s.still_there ? 1 : 0),
        optional_value(s.gone_by_ms),
        static_cast<std::int64_t>(s.serves_listener ? 1 : 0),
        optional_value(s.ended_ms),
    });
  }
  t.notes.push_back("IN CLOSE_WAIT: since the first snapshot that saw it there (the shorter figure) or the one");
  t.notes.push_back(
      "before it (the longer), to the last that saw it. FROM: the state seen before. RECV-Q: unread bytes");
  t.notes.push_back("in the last snapshot that saw it. NOW: ended when the connection log heard its socket end");
  t.notes.push_back("(its owner had closed it by then), else gone by the next snapshot.");
  return t;
}

Result run_close_wait(const CloseWaitOptions& o) {
  auto db = open_db(o.common);
  const auto scope = resolve_scope(db, o.common.host, o.common.netns);
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
  const auto min_age = parse_duration(o.min_age, "--min-age", true);
  const auto snapshots = query::list_snapshots(db, scope, since, until);
  auto sockets = query::close_wait_sockets(db, scope, snapshots);
  const bool by_process = o.by.has_value();
  render::Table t;
  if (by_process) {
    // --min-age chooses which owners are listed, never what is counted: an owner's counts and growth
    // are those of every CLOSE_WAIT socket it held, as check counts them.
    auto groups = query::close_wait_by_process(snapshots, sockets);
    std::erase_if(groups, [&](const auto& g) { return g.oldest_min_ms < min_age; });
    t = close_wait_owner_table(groups);
  } else {
    std::erase_if(sockets, [&](const auto& s) { return s.min_age_ms() < min_age; });
    t = sockets_table(sockets, render_options(o.common).zone);
  }
  const int code = t.rows.empty() ? 0 : 1;
  const auto options = render_options(o.common);
  const std::string what =
      by_process ? fmt::format(
                       "owners of CLOSE_WAIT sockets seen for at least {} (counting all their CLOSE_WAIT "
                       "sockets)",
                       model::format_duration(min_age))
                 : fmt::format("CLOSE_WAIT sockets seen for at least {}", model::format_duration(min_age));
  if (options.format == render::Format::json) {
    auto doc = json_head("close-wait", o.common, &scope);
    doc["what"] = what;
    doc["since"] = model::format_iso_utc(since);
    doc["until"] = model::format_iso_utc(until);
    doc["snapshots"] = snapshots.size();
    doc["min_age_seconds"] = static_cast<double>(min_age) / 1000.0;
    return {render::render(t, options, doc), code};
  }
  std::string heading = fmt::format("# {}: {}, {} snapshots from {} to {}", scope_line(scope), what, snapshots.size(),
                                    model::format_human(since, options.zone), model::format_human(until, options.zone));
  if (t.rows.empty()) {
    t.notes.clear();
    t.notes.push_back(snapshots.empty() ? "(no snapshot in the range)" : "(none)");
  }
  return {render::render(t, options, {}, {heading}), code};
}

}  // namespace

void setup_close_wait(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<CloseWaitOptions>();
  auto* sub = add_command(app, "close-wait",
                          "CLOSE_WAIT sockets that stayed (the peer closed, the owner never did): who, since when, "
                          "and each owner's growth per hour. Exit 1 when any is listed",
                          selected, [o] { return run_close_wait(*o); });
  add_common(*sub, o->common);
  add_window(*sub, o->window, k_window);
  sub->add_option("--min-age", o->min_age, "Only sockets seen in CLOSE_WAIT for at least this long (0: all)")
      ->capture_default_str();
  sub->add_option("--by", o->by, "Aggregate: per owning process, with the count's growth per hour")
      ->check(CLI::IsMember({"process"}));
}

}  // namespace sockhist::analyzer
