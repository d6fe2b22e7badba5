// sockhist check: thresholds on what the lifecycle reports compute, for cron and monitoring. One
// line per finding, nothing when healthy (unless --verbose); exit 0 healthy, 1 findings, 2 error.
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/lifecycle.hpp"

namespace sockhist::analyzer {

namespace {

struct CheckOptions {
  Common common;
  std::optional<std::string> since, until;
  std::optional<std::string> close_wait_max_age;
  std::optional<std::int64_t> close_wait_max_per_process;
  std::optional<std::int64_t> time_wait_max;
  std::optional<double> port_pressure_max;
  std::optional<std::int64_t> listen_overflows;
  std::optional<std::int64_t> time_wait_overflows;
  std::optional<std::int64_t> syn_recv_max;
  bool verbose = false;
};

// One threshold evaluated: a finding when `found`, else a line only --verbose prints.
struct Outcome {
  std::string check;    // the option without its dashes
  std::string subject;  // what it is about: a process, a destination, the host
  double value = 0;
  double limit = 0;
  std::optional<std::int64_t> at_ms;
  std::string message;
  bool found = false;
};

using query::endpoint;

std::string number(double v) {
  return v == static_cast<double>(static_cast<std::int64_t>(v)) ? fmt::format("{}", static_cast<std::int64_t>(v))
                                                                : fmt::format("{:.1f}", v);
}

// The limit as the user gave it: a duration for ages, a percentage, or a count.
std::string limit_text(const Outcome& x) {
  if (x.check == "close-wait-max-age") {
    return model::format_duration(static_cast<std::int64_t>(x.limit * 1000.0));
  }
  return x.check == "port-pressure-max" ? number(x.limit) + " %" : number(x.limit);
}

// A state's count: the newest snapshot's, or the highest of the window's.
void check_count(std::vector<Outcome>& out, const std::vector<query::SnapshotSummary>& snapshots, bool window,
                 const char* check, model::SockState state, std::int64_t limit, const render::Options& options) {
  std::int64_t worst = -1, at = 0;
  for (const auto& s : snapshots) {
    const auto n = s.count(model::Proto::tcp, state);
    if (n > worst) {
      worst = n;
      at = s.time_ms;
    }
  }
  Outcome o{check, "host", static_cast<double>(worst), static_cast<double>(limit), at, {}, worst > limit};
  o.message = fmt::format("{} {} sockets{} at {}", worst, state, window ? " at most" : "",
                          model::format_human(at, options.zone));
  out.push_back(std::move(o));
}

// A counter's increase: over the window, or between the two newest snapshots.
void check_increase(std::vector<Outcome>& out, SQLite::Database& db, const query::Scope& scope,
                    const std::vector<query::SnapshotSummary>& snapshots, const char* check,
                    const std::string& counter, std::int64_t limit, const render::Options& options) {
  std::int64_t total = 0, covered = 0;
  std::optional<std::int64_t> worst_at;
  std::int64_t worst = 0;
  for (const auto& step : query::counter_steps(db, scope, snapshots, {counter})) {
    total += step.increase;
    covered += step.interval_ms;
    if (step.increase > worst) {
      worst = step.increase;
      worst_at = snapshots[step.to].time_ms;
    }
  }
  Outcome o{check, "host", static_cast<double>(total), static_cast<double>(limit), worst_at, {}, total > limit};
  if (covered == 0) {
    o.found = false;
    o.message = fmt::format("{}: no two snapshots of one boot to compare", counter);
  } else {
    o.message = fmt::format("{} grew by {} over {}", counter, total, model::format_duration(covered));
    if (worst_at && total > 0) {
      o.message += fmt::format(" (most, +{}, by {})", worst, model::format_human(*worst_at, options.zone));
    }
  }
  out.push_back(std::move(o));
}

Result run_check(const CheckOptions& o) {
  if (!o.close_wait_max_age && !o.close_wait_max_per_process && !o.time_wait_max && !o.port_pressure_max &&
      !o.listen_overflows && !o.time_wait_overflows && !o.syn_recv_max) {
    throw Error(Exit::usage,
                "check: give at least one threshold (--close-wait-max-age, --close-wait-max-per-process, "
                "--time-wait-max, --port-pressure-max, --listen-overflows, --time-wait-overflows, --syn-recv-max)");
  }
  if (o.until && !o.since) {
    throw Error(Exit::usage, "--until needs --since (without them check looks at the newest snapshot)");
  }
  std::optional<std::int64_t> max_age;
  if (o.close_wait_max_age) {
    max_age = parse_duration(*o.close_wait_max_age, "--close-wait-max-age", true);
  }
  auto db = open_db(o.common);
  const auto scope = query::resolve_scope(db, o.common.host, o.common.netns);
  const bool window = o.since.has_value();
  std::vector<query::SnapshotSummary> snapshots;
  std::vector<query::SnapshotSummary> pair;  // for counters without a window: the two newest
  if (window) {
    const auto [since, until] = resolve_window(Window{*o.since, o.until}, o.common.now_ms);
    snapshots = query::list_snapshots(db, scope, since, until);
    if (snapshots.empty()) {
      throw Error(Exit::usage, fmt::format("--since {}: {} has no snapshot in that range", *o.since, scope.host));
    }
    pair = snapshots;
  } else {
    const auto newest = query::latest_snapshot(db, scope);
    if (!newest) {
      throw Error(Exit::usage, fmt::format("{}: no snapshot of {} yet", db.getFilename(), scope.host));
    }
    const auto before = query::snapshot_at(db, scope, newest->time_ms - 1);
    if (before && before->id < newest->id) {
      pair.push_back(*before);
    }
    pair.push_back(*newest);
    snapshots = {*newest};
  }
  const auto options = render_options(o.common);
  std::vector<Outcome> outcomes;

  if (max_age || o.close_wait_max_per_process) {
    auto sockets = query::close_wait_sockets(db, scope, snapshots);
    if (max_age) {
      // Per owner: the sockets that stayed at least the limit.
      std::map<std::string, std::vector<const query::CloseWaitSocket*>> old;
      std::int64_t oldest = 0;
      for (const auto& s : sockets) {
        oldest = std::max(oldest, s.min_age_ms());
        if (s.min_age_ms() >= *max_age && (window || s.still_there)) {
          old[program(s.pid, s.comm, "unknown owner")].push_back(&s);
        }
      }
      for (const auto& [who, list] : old) {
        std::int64_t longest = 0;
        std::string where;
        for (const auto* s : list) {
          if (s->min_age_ms() >= longest) {
            longest = s->min_age_ms();
            where = s->serves_listener ? fmt::format("serves :{}", s->local_port)
                                       : fmt::format("peer {}", endpoint(s->remote_addr, s->remote_port));
          }
        }
        Outcome f{"close-wait-max-age",
                  who,
                  static_cast<double>(longest) / 1000.0,
                  static_cast<double>(*max_age) / 1000.0,
                  snapshots.back().time_ms,
                  {},
                  true};
        const bool holds = std::any_of(list.begin(), list.end(), [](const auto* s) { return s->still_there; });
        f.message = fmt::format("{} {} {} CLOSE_WAIT socket{} seen there for {} or more (oldest {}, {})", who,
                                holds ? "holds" : "held", list.size(), list.size() == 1 ? "" : "s",
                                model::format_duration(*max_age), model::format_duration(longest), where);
        outcomes.push_back(std::move(f));
      }
      if (old.empty()) {
        outcomes.push_back({"close-wait-max-age", "host", static_cast<double>(oldest) / 1000.0,
                            static_cast<double>(*max_age) / 1000.0, std::nullopt,
                            fmt::format("oldest CLOSE_WAIT {}",
                                        sockets.empty() ? std::string("none") : model::format_duration(oldest)),
                            false});
      }
    }
    if (o.close_wait_max_per_process) {
      const auto limit = *o.close_wait_max_per_process;
      std::int64_t most = 0;
      for (const auto& g : query::close_wait_by_process(snapshots, sockets)) {
        const auto n = window ? g.peak : g.now;
        most = std::max(most, n);
        if (n > limit) {
          Outcome f{"close-wait-max-per-process",
                    program(g.pid, g.comm, "unknown owner"),
                    static_cast<double>(n),
                    static_cast<double>(limit),
                    snapshots.back().time_ms,
                    {},
                    true};
          f.message = fmt::format("{} holds {} CLOSE_WAIT sockets{} ({}{})", program(g.pid, g.comm, "unknown owner"), n,
                                  window ? " at its peak" : "", g.involved,
                                  g.per_hour ? fmt::format(", growing {:.1f}/h", *g.per_hour) : "");
          outcomes.push_back(std::move(f));
        }
      }
      if (most <= limit) {
        outcomes.push_back({"close-wait-max-per-process", "host", static_cast<double>(most), static_cast<double>(limit),
                            std::nullopt, fmt::format("at most {} CLOSE_WAIT sockets per process", most), false});
      }
    }
  }
  if (o.time_wait_max) {
    check_count(outcomes, snapshots, window, "time-wait-max", model::SockState::time_wait, *o.time_wait_max, options);
  }
  if (o.syn_recv_max) {
    check_count(outcomes, snapshots, window, "syn-recv-max", model::SockState::syn_recv, *o.syn_recv_max, options);
  }
  if (o.port_pressure_max) {
    const auto limit = *o.port_pressure_max;
    double most = 0;
    for (const auto& p : query::port_pressure(db, scope, snapshots)) {
      most = std::max(most, p.percent());
      if (p.percent() > limit) {
        Outcome f{"port-pressure-max", endpoint(p.remote_addr, p.remote_port), p.percent(), limit, p.at_ms, {}, true};
        f.message = fmt::format("{} from {} used {:.1f} % of the ephemeral ports ({} TIME_WAIT + {} open of {}) at {}",
                                endpoint(p.remote_addr, p.remote_port), p.local_addr, p.percent(), p.time_wait, p.open,
                                p.range_size, model::format_human(p.at_ms, options.zone));
        outcomes.push_back(std::move(f));
      }
    }
    if (most <= limit) {
      outcomes.push_back({"port-pressure-max", "host", most, limit, std::nullopt,
                          fmt::format("at most {:.1f} % of the ephemeral ports to one destination", most), false});
    }
  }
  if (o.listen_overflows) {
    check_increase(outcomes, db, scope, pair, "listen-overflows", "TcpExt.ListenOverflows", *o.listen_overflows,
                   options);
  }
  if (o.time_wait_overflows) {
    check_increase(outcomes, db, scope, pair, "time-wait-overflows", "TcpExt.TCPTimeWaitOverflow",
                   *o.time_wait_overflows, options);
  }

  const auto found = std::count_if(outcomes.begin(), outcomes.end(), [](const Outcome& x) { return x.found; });
  const int code = found > 0 ? 1 : 0;
  using render::Kind;
  render::Table t;
  t.columns = {
      {"host"},
      {"check"},
      {"status"},
      {"subject"},
      {"value", "", Kind::real, "", 2},
      {"limit", "", Kind::real, "", 2},
      {"at", "", Kind::time_ms},
      {"message"},
  };
  for (const auto& x : outcomes) {
    if (!x.found && !o.verbose && options.format != render::Format::json) {
      continue;
    }
    t.rows.push_back({scope.host, x.check, std::string(x.found ? "found" : "ok"), x.subject, x.value, x.limit,
                      x.at_ms ? render::Value(*x.at_ms) : render::Value(), x.message});
  }
  if (options.format == render::Format::json) {
    auto doc = json_head("check", o.common, &scope);
    doc["healthy"] = code == 0;
    doc["findings"] = found;
    doc["snapshots"] = snapshots.size();
    doc["newest"] = model::format_iso_utc(snapshots.back().time_ms);
    return {render::render(t, options, doc), code};
  }
  if (options.format == render::Format::csv) {
    return {render::to_csv(t), code};
  }
  std::string out;
  for (const auto& x : outcomes) {
    if (x.found) {
      out += fmt::format("{}: {}: {} (limit {})\n", scope.host, x.check, x.message, limit_text(x));
    } else if (o.verbose) {
      out += fmt::format("{}: ok: {}: {} (limit {})\n", scope.host, x.check, x.message, limit_text(x));
    }
  }
  return {out, code};
}

}  // namespace

void setup_check(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<CheckOptions>();
  auto* sub = add_command(app, "check",
                          "Thresholds for cron and monitoring over the newest snapshot (or --since): one line per "
                          "finding, silent when healthy; exit 0 healthy, 1 findings, 2 error",
                          selected, [o] { return run_check(*o); });
  add_common(*sub, o->common);
  sub->add_option("--since", o->since, "Look at every snapshot from then (default: only the newest)");
  sub->add_option("--until", o->until, "With --since: the end of the range (default: now)");
  sub->add_option("--close-wait-max-age", o->close_wait_max_age,
                  "A CLOSE_WAIT socket staying this long (for example 10m) is a finding, one line per owner");
  sub->add_option("--close-wait-max-per-process", o->close_wait_max_per_process,
                  "More CLOSE_WAIT sockets than this in one process is a finding")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--time-wait-max", o->time_wait_max, "More TIME_WAIT sockets than this is a finding")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--port-pressure-max", o->port_pressure_max,
                  "A destination using more than this percentage of the ephemeral ports is a finding")
      ->check(CLI::Range(0.0, 100.0));
  sub->add_option("--listen-overflows", o->listen_overflows,
                  "TcpExt.ListenOverflows growing by more than this is a finding (0: any)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--time-wait-overflows", o->time_wait_overflows,
                  "TcpExt.TCPTimeWaitOverflow growing by more than this is a finding (0: any)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--syn-recv-max", o->syn_recv_max, "More SYN_RECV sockets than this is a finding")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("-v,--verbose", o->verbose, "Also print the thresholds that were not crossed");
}

}  // namespace sockhist::analyzer
