// sockhist check: thresholds on what the lifecycle reports compute, for cron and monitoring. One
// line per finding, nothing when healthy (unless --verbose); exit 0 healthy, 1 findings, 2 error.
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/query/check.hpp"

namespace sockhist::analyzer {

namespace {

struct CheckOptions {
  Common common;
  Window window;
  ThresholdOptions thresholds;
  bool verbose = false;
};

// What --since and --until mean when not given.
const WindowDefaults k_window{std::nullopt, true, "only the newest snapshot"};

using query::Check;
using query::CheckOutcome;

std::string number(double v) {
  return v == static_cast<double>(static_cast<std::int64_t>(v)) ? fmt::format("{}", static_cast<std::int64_t>(v))
                                                                : fmt::format("{:.1f}", v);
}

}  // namespace

std::string check_limit(const CheckOutcome& x) {
  if (x.check == Check::close_wait_max_age || x.check == Check::max_age) {
    return model::format_duration(x.limit_ms);
  }
  return x.check == Check::port_pressure_max ? number(x.limit) + " %" : number(x.limit);
}

std::string check_message(const CheckOutcome& x, bool window, const render::Options& options) {
  switch (x.check) {
    case Check::max_age: {
      const std::string usual =
          x.usual_interval_ms ? fmt::format("the usual interval is {}", model::format_duration(*x.usual_interval_ms))
                              : std::string("a single snapshot");
      if (!x.found) {
        return fmt::format("newest snapshot {} old ({})", model::format_duration(x.age_ms), usual);
      }
      return fmt::format("newest snapshot is {} old, taken at {}: is the collector running? ({})",
                         model::format_duration(x.age_ms), model::format_human(x.at_ms.value_or(0), options.zone),
                         usual);
    }
    case Check::close_wait_max_age:
      if (!x.found) {
        return fmt::format("oldest CLOSE_WAIT {}",
                           x.none_seen ? std::string("none") : model::format_duration(x.longest_ms));
      }
      return fmt::format("{} {} {} CLOSE_WAIT socket{} seen there for {} or more (oldest {}, {})", x.subject,
                         x.still_held ? "holds" : "held", x.sockets, x.sockets == 1 ? "" : "s",
                         model::format_duration(x.limit_ms), model::format_duration(x.longest_ms), x.where);
    case Check::close_wait_max_per_process:
      if (!x.found) {
        return fmt::format("at most {} CLOSE_WAIT sockets per process", x.sockets);
      }
      return fmt::format("{} holds {} CLOSE_WAIT sockets{} ({}{})", x.subject, x.sockets, window ? " at its peak" : "",
                         x.involved, x.per_hour ? fmt::format(", growing {:.1f}/h", *x.per_hour) : "");
    case Check::time_wait_max:
    case Check::syn_recv_max:
      return fmt::format("{} {} sockets{} at {}", x.sockets, x.check == Check::time_wait_max ? "TIME_WAIT" : "SYN_RECV",
                         window ? " at most" : "", model::format_human(x.at_ms.value_or(0), options.zone));
    case Check::port_pressure_max: {
      if (!x.ports) {
        return fmt::format("at most {:.1f} % of the ephemeral ports to one destination", x.value);
      }
      const auto& p = *x.ports;
      return fmt::format("{} from {} used {:.1f} % of the ephemeral ports ({} TIME_WAIT + {} open of {}) at {}",
                         x.subject, p.local_addr, p.percent(), p.time_wait, p.open, p.range_size,
                         model::format_human(p.at_ms, options.zone));
    }
    case Check::listen_overflows:
    case Check::time_wait_overflows: {
      if (x.covered_ms == 0) {
        return fmt::format("{}: no two snapshots of one boot to compare", x.counter);
      }
      const auto total = static_cast<std::int64_t>(x.value);
      std::string text = fmt::format("{} grew by {} over {}", x.counter, total, model::format_duration(x.covered_ms));
      if (x.at_ms && total > 0) {
        text += fmt::format(" (most, +{}, by {})", x.worst_step, model::format_human(*x.at_ms, options.zone));
      }
      return text;
    }
  }
  return {};
}

namespace {

Result run_check(const CheckOptions& o) {
  if (!o.thresholds.any()) {
    throw Error(Exit::usage,
                "check: give at least one threshold (--close-wait-max-age, --close-wait-max-per-process, "
                "--time-wait-max, --port-pressure-max, --listen-overflows, --time-wait-overflows, --syn-recv-max, "
                "--max-age)");
  }
  if (o.window.until && !o.window.since) {
    throw Error(Exit::usage, "--until needs --since (without them check looks at the newest snapshot)");
  }
  auto db = open_db(o.common);
  const auto scope = resolve_scope(db, o.common.host, o.common.netns);
  query::CheckRange range;
  if (o.window.since) {
    const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
    range = query::window_range(db, scope, since, until, *o.window.since);
  } else {
    range = query::newest_range(db, scope);
  }
  // Staleness, whenever the range reaches now: a collector that stopped must not look healthy.
  const auto limits = o.thresholds.resolve(db, scope, o.window.until ? std::nullopt : std::optional(o.common.now_ms));
  const auto outcomes = query::evaluate_checks(db, scope, range, limits);
  const auto options = render_options(o.common);

  const auto found = std::count_if(outcomes.begin(), outcomes.end(), [](const auto& x) { return x.found; });
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
    t.rows.push_back({scope.host, std::string(query::name(x.check)), std::string(x.found ? "found" : "ok"), x.subject,
                      x.value, x.limit, x.at_ms ? render::Value(*x.at_ms) : render::Value(),
                      check_message(x, range.window, options)});
  }
  if (options.format == render::Format::json) {
    auto doc = json_head("check", o.common, &scope);
    doc["healthy"] = code == 0;
    doc["findings"] = found;
    doc["snapshots"] = range.snapshots.size();
    doc["newest"] = model::format_iso_utc(range.snapshots.back().time_ms);
    return {render::render(t, options, doc), code};
  }
  if (options.format == render::Format::csv) {
    return {render::to_csv(t), code};
  }
  std::string out;
  for (const auto& x : outcomes) {
    if (x.found) {
      out += render::printable(fmt::format("{}: {}: {} (limit {})", scope.host, query::name(x.check),
                                           check_message(x, range.window, options), check_limit(x))) +
             "\n";
    } else if (o.verbose) {
      out += render::printable(fmt::format("{}: ok: {}: {} (limit {})", scope.host, query::name(x.check),
                                           check_message(x, range.window, options), check_limit(x))) +
             "\n";
    }
  }
  return {out, code};
}

}  // namespace

bool ThresholdOptions::any() const {
  return close_wait_max_age || max_age || close_wait_max_per_process || time_wait_max || port_pressure_max ||
         listen_overflows || time_wait_overflows || syn_recv_max;
}

void ThresholdOptions::add_to(CLI::App& sub) {
  sub.add_option("--max-age", max_age,
                 "The newest snapshot older than this is a finding: the collector stopped (default: 3 times the "
                 "usual interval between snapshots, at least 5m; 0: off; not with --until)");
  sub.add_option("--close-wait-max-age", close_wait_max_age,
                 "A CLOSE_WAIT socket staying this long (for example 10m) is a finding, one line per owner");
  sub.add_option("--close-wait-max-per-process", close_wait_max_per_process,
                 "More CLOSE_WAIT sockets than this in one process is a finding")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--time-wait-max", time_wait_max, "More TIME_WAIT sockets than this is a finding")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--port-pressure-max", port_pressure_max,
                 "A destination using more than this percentage of the ephemeral ports is a finding")
      ->check(CLI::Range(0.0, 100.0));
  sub.add_option("--listen-overflows", listen_overflows,
                 "TcpExt.ListenOverflows growing by more than this is a finding (0: any)")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--time-wait-overflows", time_wait_overflows,
                 "TcpExt.TCPTimeWaitOverflow growing by more than this is a finding (0: any)")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--syn-recv-max", syn_recv_max, "More SYN_RECV sockets than this is a finding")
      ->check(CLI::NonNegativeNumber);
}

std::int64_t default_max_age_ms(std::optional<std::int64_t> usual_interval_ms) {
  // This many usual intervals between snapshots, and never less than the floor (a minute's cron
  // may run late; a few missed runs are not yet an outage).
  constexpr std::int64_t k_stale_intervals = 3;
  constexpr std::int64_t k_stale_floor_ms = 5 * 60'000;
  return std::max(k_stale_intervals * usual_interval_ms.value_or(k_stale_floor_ms), k_stale_floor_ms);
}

query::Thresholds ThresholdOptions::resolve(SQLite::Database& db, const query::Scope& scope,
                                            std::optional<std::int64_t> now_ms) const {
  query::Thresholds limits;
  limits.close_wait_max_per_process = close_wait_max_per_process;
  limits.time_wait_max = time_wait_max;
  limits.syn_recv_max = syn_recv_max;
  limits.port_pressure_max = port_pressure_max;
  limits.listen_overflows = listen_overflows;
  limits.time_wait_overflows = time_wait_overflows;
  if (close_wait_max_age) {
    limits.close_wait_max_age_ms = parse_duration(*close_wait_max_age, "--close-wait-max-age", true);
  }
  if (now_ms) {
    const auto given = max_age ? std::optional(parse_duration(*max_age, "--max-age", true)) : std::nullopt;
    limits.usual_interval_ms = query::usual_interval_ms(db, scope);
    if (!given) {
      limits.max_age_ms = default_max_age_ms(limits.usual_interval_ms);
    } else if (*given > 0) {
      limits.max_age_ms = given;
    }
    limits.now_ms = *now_ms;
  }
  return limits;
}

void setup_check(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<CheckOptions>();
  auto* sub = add_command(app, "check",
                          "Thresholds for cron and monitoring over the newest snapshot (or --since): one line per "
                          "finding, silent when healthy; exit 0 healthy, 1 findings, 2 error",
                          selected, [o] { return run_check(*o); });
  add_common(*sub, o->common);
  add_window(*sub, o->window, k_window, "Look at every snapshot from then");
  o->thresholds.add_to(*sub);
  sub->add_flag("-v,--verbose", o->verbose, "Also print the thresholds that were not crossed");
}

}  // namespace sockhist::analyzer
