// sockhist connections: every TCP and UDP socket the kernel destroyed, as the looping collector's
// connection log heard it (tcplife's table, kept): owner and on what grounds, endpoints, the kernel's
// byte totals, lifetime bounds, and what the log missed.
#include <map>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/query/connections.hpp"
#include "sockhist/store.hpp"

namespace sockhist::analyzer {

namespace {

struct ConnectionsOptions {
  Common common;
  Window window;
  std::optional<std::string> by;
};

const WindowDefaults k_window{"1h", true, {}};

// "1.2s-2.0s"; "<=51ms" when no snapshot saw it; ">=3.1s" when it was alive as recording began.
std::string lifetime(const query::ConnectionEnd& e) {
  const auto lo = e.lifetime_min_ms();
  const auto hi = e.lifetime_max_ms();
  if (lo && hi) {
    return fmt::format("{}-{}", model::format_duration(*lo), model::format_duration(*hi));
  }
  if (hi) {
    return fmt::format("<={}", model::format_duration(*hi));
  }
  if (lo) {
    return fmt::format(">={}", model::format_duration(*lo));
  }
  return "?";
}

// The last state a snapshot saw, and TIME_WAIT where the end began one: "ESTABLISHED>TIME_WAIT",
// ">TIME_WAIT" when no snapshot saw it alive.
std::string seen(const query::ConnectionEnd& e) {
  if (e.entered_time_wait) {
    return e.seen_state.value_or("") + ">TIME_WAIT";
  }
  return e.seen_state.value_or("-");
}

render::Table ends_table(const query::Connections& c) {
  using render::Kind;
  render::Table t;
  t.columns = {
      {"end", "END", Kind::time_ms},
      {"program", "PID/PROGRAM"},
      {"owner_basis", "OWNER"},
      {"proto", "PROTO"},
      {"local", "LOCAL ADDRESS"},
      {"remote", "FOREIGN ADDRESS"},
      {"bytes_sent", "SENT", Kind::integer, "bytes"},
      {"bytes_received", "RECEIVED", Kind::integer, "bytes"},
      {"total_retrans", "RETRANS", Kind::integer, "segments"},
      {"lifetime", "LIFETIME", Kind::text, {}, 2, true, false},
      {"seen", "SEEN", Kind::text, {}, 2, true, false},
      {"pid", "", Kind::integer, {}, 2, false},
      {"process", "", Kind::text, {}, 2, false},
      {"cmdline", "", Kind::text, {}, 2, false},
      {"user", "", Kind::text, {}, 2, false},
      {"owner_reason", "", Kind::text, {}, 2, false},
      {"local_addr", "", Kind::text, {}, 2, false},
      {"local_port", "", Kind::integer, {}, 2, false},
      {"remote_addr", "", Kind::text, {}, 2, false},
      {"remote_port", "", Kind::integer, {}, 2, false},
      {"end_state", "", Kind::text, {}, 2, false},
      {"seen_state", "", Kind::text, {}, 2, false},
      {"entered_time_wait", "", Kind::integer, {}, 2, false},
      {"born_after", "", Kind::time_ms, {}, 2, false},
      {"born_by", "", Kind::time_ms, {}, 2, false},
      {"lifetime_min", "", Kind::duration_ms, {}, 2, false},
      {"lifetime_max", "", Kind::duration_ms, {}, 2, false},
      {"bytes_acked", "", Kind::integer, "bytes", 2, false},
      {"bytes_retrans", "", Kind::integer, "bytes", 2, false},
      {"segs_out", "", Kind::integer, "segments", 2, false},
      {"segs_in", "", Kind::integer, "segments", 2, false},
      {"rtt_us", "", Kind::integer, "us", 2, false},
      {"min_rtt_us", "", Kind::integer, "us", 2, false},
      {"cookie", "", Kind::integer, {}, 2, false},
  };
  for (const auto& e : c.ends) {
    t.rows.push_back({
        e.time_ms,
        e.pid == 0 ? std::string("-") : program(e.pid, e.comm),
        e.owner_basis,
        std::string(model::name(e.proto)),
        endpoint(e.local_addr, e.local_port),
        endpoint(e.remote_addr, e.remote_port),
        optional_value(e.bytes_sent),
        optional_value(e.bytes_received),
        optional_value(e.total_retrans),
        lifetime(e),
        seen(e),
        e.pid == 0 ? render::Value() : render::Value(static_cast<std::int64_t>(e.pid)),
        e.comm.empty() ? render::Value() : render::Value(e.comm),
        optional_value(e.cmdline),
        optional_value(e.user),
        optional_value(e.owner_reason),
        e.local_addr,
        static_cast<std::int64_t>(e.local_port),
        e.remote_addr,
        static_cast<std::int64_t>(e.remote_port),
        e.end_state,
        optional_value(e.seen_state),
        static_cast<std::int64_t>(e.entered_time_wait ? 1 : 0),
        optional_value(e.born_after_ms),
        optional_value(e.born_by_ms),
        optional_value(e.lifetime_min_ms()),
        optional_value(e.lifetime_max_ms()),
        optional_value(e.bytes_acked),
        optional_value(e.bytes_retrans),
        optional_value(e.segs_out),
        optional_value(e.segs_in),
        optional_value(e.rtt_us),
        optional_value(e.min_rtt_us),
        static_cast<std::int64_t>(e.cookie),
    });
  }
  return t;
}

// --by: the ends and the aggregates counted per key. Aggregates carry no owner: under --by
// program they count apart, as "(summed)".
struct Group {
  std::int64_t connections = 0, summed = 0, bytes_sent = 0, bytes_received = 0, without_bytes_sent = 0, retrans = 0;
  std::optional<std::int64_t> longest_max_ms;
};

render::Table groups_table(const query::Connections& c, const std::string& by) {
  std::map<std::string, Group> groups;
  const auto key_of = [&](const std::string& program_text, std::int64_t local_port, const std::string& remote,
                          const std::string& state, model::Proto proto) {
    if (by == "program") {
      return program_text;
    }
    if (by == "local-port") {
      return fmt::format("{}/{}", local_port, model::name(proto));
    }
    if (by == "remote") {
      return remote;
    }
    return state;
  };
  for (const auto& e : c.ends) {
    auto& g = groups[key_of(e.pid == 0 ? std::string("-") : program(e.pid, e.comm), e.local_port, e.remote_addr,
                            seen(e), e.proto)];
    ++g.connections;
    g.bytes_received += e.bytes_received.value_or(0);
    if (e.bytes_sent) {
      g.bytes_sent += *e.bytes_sent;
    } else if (e.proto == model::Proto::tcp) {
      ++g.without_bytes_sent;
    }
    g.retrans += e.total_retrans.value_or(0);
  }
  for (const auto& a : c.aggregates) {
    auto& g = groups[key_of("(summed)", a.local_port, a.remote_addr, "(summed)", a.proto)];
    g.connections += a.count;
    g.summed += a.count;
    g.bytes_sent += a.bytes_sent;
    g.without_bytes_sent += a.without_bytes_sent;
    g.bytes_received += a.bytes_received;
    g.retrans += a.total_retrans;
  }
  using render::Kind;
  render::Table t;
  const std::string title = by == "program"      ? "PID/PROGRAM"
                            : by == "local-port" ? "LOCAL PORT"
                            : by == "remote"     ? "FOREIGN ADDRESS"
                                                 : "SEEN";
  t.columns = {{"key", title},
               {"connections", "CONNECTIONS", Kind::integer, "connections"},
               {"summed", "OF THEM SUMMED", Kind::integer, "connections"},
               {"bytes_sent", "SENT", Kind::integer, "bytes"},
               {"bytes_received", "RECEIVED", Kind::integer, "bytes"},
               {"retrans", "RETRANS", Kind::integer, "segments"},
               {"without_bytes_sent", "", Kind::integer, "connections", 2, false}};
  std::vector<std::pair<std::string, Group>> sorted(groups.begin(), groups.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second.connections > b.second.connections; });
  for (const auto& [key, g] : sorted) {
    t.rows.push_back({key, g.connections, g.summed, g.bytes_sent, g.bytes_received, g.retrans, g.without_bytes_sent});
  }
  return t;
}

// What the log covered and missed, for people (notes) and programs (the JSON head).
std::vector<std::string> coverage_lines(const query::ConnectionCoverage& c, const render::Options& options) {
  std::vector<std::string> lines;
  const auto at = [&](std::int64_t ms) { return model::format_human(ms, options.zone); };
  lines.push_back(fmt::format("connection log: {} snapshots, {} socket ends heard: {} kept whole, {} summed{}", c.takes,
                              c.heard, c.stored, c.aggregated,
                              c.over_bound > 0 ? fmt::format(", {} only counted", c.over_bound) : ""));
  for (const auto& [from, to, times] : c.overrun_takes) {
    lines.push_back(
        fmt::format("incomplete: the receive buffer overflowed {} times between {} and {}; the ends it "
                    "lost are not counted",
                    times, at(from), at(to)));
  }
  if (c.malformed > 0) {
    lines.push_back(fmt::format("incomplete: {} announcements could not be decoded", c.malformed));
  }
  for (const auto& [from, to] : c.gaps) {
    lines.push_back(fmt::format("not heard: {} to {} (no connection log covers it)", at(from), at(to)));
  }
  return lines;
}

Result run_connections(const ConnectionsOptions& o) {
  auto db = open_db(o.common);
  const auto scope = resolve_scope(db, o.common.host, o.common.netns);
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
  const auto log = query::read_connections(db, scope, since, until);
  if (!log.has_log) {
    throw Error(Exit::usage, fmt::format("{}: has no connection log (schema version {}; a collector of this version "
                                         "looping with --interval records one)",
                                         store::database_file(db), db.execAndGet("PRAGMA user_version").getInt()));
  }
  const auto options = render_options(o.common);
  const auto table = o.by ? groups_table(log, *o.by) : ends_table(log);
  const auto lines = coverage_lines(log.coverage, options);
  if (options.format == render::Format::json) {
    auto head = json_head("connections", o.common, &scope);
    head["since"] = model::format_iso_utc(since);
    head["until"] = model::format_iso_utc(until);
    const auto& c = log.coverage;
    head["coverage"] = {
        {"snapshots", c.takes},         {"heard", c.heard},       {"kept_whole", c.stored},  {"summed", c.aggregated},
        {"only_counted", c.over_bound}, {"overruns", c.overruns}, {"malformed", c.malformed}};
    auto gaps = nlohmann::ordered_json::array();
    for (const auto& [from, to] : c.gaps) {
      gaps.push_back({{"from", model::format_iso_utc(from)}, {"to", model::format_iso_utc(to)}});
    }
    head["coverage"]["not_heard"] = gaps;
    return {render::render(table, options, head), 0};
  }
  auto with_notes = table;
  if (options.format == render::Format::table) {
    with_notes.notes = lines;
    if (!o.by && !log.aggregates.empty()) {
      with_notes.notes.push_back("ends beyond the collector's budget were summed, not listed: --by counts them");
    }
  }
  std::int64_t summed = 0;
  for (const auto& a : log.aggregates) {
    summed += a.count;
  }
  return {
      render::render(with_notes, options, {},
                     {fmt::format("{}: {} connections ended from {} to {}", scope_line(scope),
                                  static_cast<std::int64_t>(log.ends.size()) + summed,
                                  model::format_human(since, options.zone), model::format_human(until, options.zone))}),
      0};
}

}  // namespace

void setup_connections(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<ConnectionsOptions>();
  auto* sub = add_command(app, "connections",
                          "Every TCP and UDP socket the kernel destroyed (the looping collector's connection log): "
                          "owner, endpoints, bytes, lifetime bounds",
                          selected, [o] { return run_connections(*o); });
  add_common(*sub, o->common);
  add_window(*sub, o->window, k_window, "Ends from this moment");
  sub->add_option("--by", o->by, "Count the connections per program, local port, remote address or seen state")
      ->check(CLI::IsMember({"program", "local-port", "remote", "state"}));
}

}  // namespace sockhist::analyzer
