// The report's charts, each from the query that answers its question: the trends (states, counter
// rates, CLOSE_WAIT per owner), the TIME_WAIT report, port pressure and the connection log. Each
// chart's buckets are the report's; every value is what a query computed, and every estimate says so.
#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "report_charts.hpp"
#include "sockhist/query/connections.hpp"
#include "sockhist/query/lifecycle.hpp"

namespace sockhist::analyzer {

namespace {

// A chart's buckets, gaps and reboots from the frame: a bucket is a gap when it lies wholly in a
// stretch the collector did not run; a reboot is marked in the bucket of the first snapshot of a boot.
chart::Chart empty_chart(const ReportFrame& f, std::string id, std::string title, std::string answers, std::string unit,
                         std::string value_is) {
  chart::Chart c;
  c.id = std::move(id);
  c.title = std::move(title);
  c.answers = std::move(answers);
  c.y_unit = std::move(unit);
  c.value_is = std::move(value_is);
  c.bucket_ms = f.bucket_ms;
  for (std::int64_t s = f.since_ms; s <= f.until_ms; s += f.bucket_ms) {
    c.starts.push_back(s);
  }
  c.gap.assign(c.starts.size(), false);
  c.reboot.assign(c.starts.size(), false);
  const auto index = [&](std::int64_t t) { return static_cast<std::size_t>((t - f.since_ms) / f.bucket_ms); };
  c.gaps = f.gaps;
  for (const auto& [from, to] : f.gaps) {
    for (std::size_t b = index(from); b < c.starts.size() && c.starts[b] < to; ++b) {
      if (c.starts[b] > from && c.starts[b] + f.bucket_ms < to) {
        c.gap[b] = true;
      }
    }
  }
  c.no_snapshot.assign(c.starts.size(), true);
  for (const auto& s : f.snapshots) {
    c.no_snapshot[index(s.time_ms)] = false;
  }
  for (std::size_t b = 0; b < c.starts.size(); ++b) {
    c.no_snapshot[b] = c.no_snapshot[b] && !c.gap[b];
  }
  for (std::size_t i = 1; i < f.snapshots.size(); ++i) {
    const auto& a = f.snapshots[i - 1];
    const auto& b = f.snapshots[i];
    if (!a.boot_id.empty() && !b.boot_id.empty() && a.boot_id != b.boot_id) {
      c.reboot[index(b.time_ms)] = true;
    }
  }
  return c;
}

// A trend's series moved onto the chart, bucket by bucket (the trend's buckets begin at the same
// aligned start as the frame's).
void take_trend(chart::Chart& c, const query::Trend& t, const std::vector<std::string>& names = {}) {
  for (std::size_t k = 0; k < t.series.size(); ++k) {
    chart::Series s;
    s.name = k < names.size() ? names[k] : t.series[k];
    s.values.assign(c.starts.size(), std::nullopt);
    for (const auto& b : t.buckets) {
      const auto i = static_cast<std::size_t>((b.start_ms - c.starts.front()) / c.bucket_ms);
      if (i < c.starts.size() && k < b.values.size()) {
        s.values[i] = b.values[k];
      }
    }
    c.series.push_back(std::move(s));
  }
}

std::string fixed(double v) {
  return fmt::format("{:.1f}", v);
}

}  // namespace

std::string namespace_label(const query::Scope& scope) {
  if (scope.netns_initial) {
    return "the host's own namespace";
  }
  return scope.netns_name ? fmt::format("namespace {} ({})", *scope.netns_name, scope.netns_inode)
                          : fmt::format("namespace {}", scope.netns_inode);
}

chart::Chart states_chart(SQLite::Database& db, const ReportFrame& f, const std::string& id) {
  auto c = empty_chart(f, id, fmt::format("Sockets per state, {}", namespace_label(f.scope)),
                       "How many sockets were in each TCP state, and how many UDP and UNIX sockets there were: a "
                       "leak, a storm or an outage shows as a line that climbs or falls.",
                       "sockets", "the highest count of the bucket's snapshots");
  if (f.snapshots.empty()) {
    c.empty = "no snapshot of this namespace in the range";
    return c;
  }
  take_trend(c, query::trend_states(db, f.scope, f.since_ms, f.until_ms, f.bucket_ms, {}, &f.snapshots));
  return c;
}

query::Trend counter_trend(SQLite::Database& db, const ReportFrame& f, const std::vector<std::string>& wanted) {
  std::vector<std::string> present;
  const auto names = query::counter_names(db);
  for (const auto& want : wanted) {
    if (std::any_of(names.begin(), names.end(),
                    [&](const auto& n) { return n.second.section + "." + n.second.name == want; })) {
      present.push_back(want);
    }
  }
  if (present.empty()) {
    return {};
  }
  return query::trend_counters(db, f.scope, f.since_ms, f.until_ms, f.bucket_ms, present, &f.snapshots);
}

// The series of `rates` (counter_trend) named in `wanted`, in that order, on the chart; a counter
// never recorded is named in a note instead.
void take_counters(chart::Chart& c, const query::Trend& rates, const std::vector<std::string>& wanted) {
  query::Trend picked = rates;
  picked.series.clear();
  std::vector<std::size_t> from;
  for (const auto& want : wanted) {
    const auto it = std::find(rates.series.begin(), rates.series.end(), want);
    if (it == rates.series.end()) {
      c.notes.push_back(fmt::format("{} was never recorded in this history: not drawn.", want));
      continue;
    }
    picked.series.push_back(want);
    from.push_back(static_cast<std::size_t>(it - rates.series.begin()));
  }
  for (auto& b : picked.buckets) {
    std::vector<std::optional<double>> values;
    for (const auto k : from) {
      values.push_back(k < b.values.size() ? b.values[k] : std::nullopt);
    }
    b.values = std::move(values);
  }
  take_trend(c, picked);
}

chart::Chart counters_chart(const ReportFrame& f, const query::Trend& rates, const std::string& id,
                            const std::string& title, const std::string& answers,
                            const std::vector<std::string>& wanted) {
  auto c = empty_chart(f, id, title, answers, "per second",
                       "the counter's increase per second over the bucket's pairs of snapshots (within one boot; a "
                       "decrease without a reboot adds nothing)");
  c.integers = false;
  take_counters(c, rates, wanted);
  if (c.series.empty()) {
    c.empty = "none of these counters was recorded";
  }
  return c;
}

chart::Chart close_wait_chart(SQLite::Database& db, const ReportFrame& f) {
  auto c = empty_chart(f, "close-wait", "CLOSE_WAIT per owning process",
                       "Which process holds sockets its peers have closed, and whether their number grows: a "
                       "process that never closes them leaks, and the line climbs until it runs out of files.",
                       "sockets in CLOSE_WAIT", "the highest count of the bucket's snapshots, per owner");
  constexpr std::size_t k_top = 6;
  const auto trend = query::trend_grouped(db, f.scope, f.since_ms, f.until_ms, f.bucket_ms, "CLOSE_WAIT",
                                          query::GroupBy::process, k_top, &f.snapshots);
  const auto sockets = query::close_wait_sockets(db, f.scope, f.snapshots);
  const auto owners = query::close_wait_by_process(f.snapshots, sockets);
  std::vector<std::string> names;
  for (const auto& s : trend.series) {
    std::string name = s == "-" ? "no owner seen" : s;
    for (const auto& o : owners) {
      if (query::program(o.pid, o.comm) == s && o.per_hour) {
        name += fmt::format(" ({:+.1f}/h)", *o.per_hour);
      }
    }
    names.push_back(name);
  }
  take_trend(c, trend, names);
  if (trend.series.empty()) {
    c.empty = "no CLOSE_WAIT socket in these snapshots";
  }
  c.extra_caption = "Owners of CLOSE_WAIT sockets (as sockhist close-wait --by process)";
  c.extra_columns = {"owner", "now", "peak", "sockets seen", "longest stay (at least)", "growth per hour", "where"};
  for (const auto& o : owners) {
    c.extra_rows.push_back({query::program(o.pid, o.comm, "no owner seen"), std::to_string(o.now),
                            std::to_string(o.peak), std::to_string(o.seen), model::format_duration(o.oldest_min_ms),
                            o.per_hour ? fmt::format("{:+.2f}", *o.per_hour) : std::string("-"), o.involved});
  }
  if (owners.empty()) {
    c.extra_columns.clear();
  }
  c.notes.push_back(
      "Growth per hour is the least-squares slope of an owner's count over its snapshots, from its "
      "first CLOSE_WAIT socket to its last.");
  return c;
}

chart::Chart time_wait_chart(SQLite::Database& db, const ReportFrame& f) {
  auto c = empty_chart(f, "time-wait", "TIME_WAIT entries beside the kernel's count",
                       "How fast connections entered TIME_WAIT, three ways: as the snapshots saw them, as the "
                       "kernel counted them (TcpExt.TW), and as the population implies (it lasts 60 s on Linux); "
                       "and whether the TIME_WAIT table overflowed.",
                       "per second", "entries per second over the part of the bucket the snapshots observe");
  c.integers = false;
  query::TimeWaitAsk ask;
  ask.keep = query::TimeWaitAsk::Keep::none;
  ask.per_socket = false;
  const auto r = query::time_wait_report(db, f.scope, f.since_ms, f.until_ms, f.bucket_ms, ask, &f.snapshots);
  chart::Series seen{"entries seen (estimate)", {}}, counted{"TcpExt.TW", {}}, implied{"population / 60 s", {}};
  const auto first = f.snapshots.front().time_ms;
  const auto last = f.snapshots.back().time_ms;
  for (std::size_t b = 0; b < c.starts.size(); ++b) {
    const auto* tb = b < r.buckets.size() ? &r.buckets[b] : nullptr;
    const auto observed = std::min(c.starts[b] + f.bucket_ms, last) - std::max(c.starts[b], first);
    seen.values.push_back(tb && observed > 0 && !c.gap[b]
                              ? std::optional(static_cast<double>(tb->entries) * 1000.0 / static_cast<double>(observed))
                              : std::nullopt);
    counted.values.push_back(tb ? tb->counter_per_s : std::nullopt);
    implied.values.push_back(tb && tb->population ? std::optional(static_cast<double>(*tb->population) / 60.0)
                                                  : std::nullopt);
  }
  c.series = {seen, counted, implied};
  const auto names = query::counter_names(db);
  if (std::none_of(names.begin(), names.end(),
                   [](const auto& n) { return n.second.section == "TcpExt" && n.second.name == "TW"; })) {
    c.notes.push_back("TcpExt.TW was never recorded in this history: not drawn.");
  } else if (std::all_of(counted.values.begin(), counted.values.end(), [](const auto& v) { return !v; })) {
    c.notes.push_back("TcpExt.TW has no two snapshots of one boot to compare in any bucket: not drawn.");
  }
  c.notes.push_back(
      r.complete
          ? fmt::format("Entries seen are estimates: each TIME_WAIT socket is dated from its timer at its first "
                        "sighting (the connection log dates {} of {} exactly). No two snapshots are more than 60 s "
                        "apart, so every entry was seen.",
                        r.exact_entries, r.entries)
          : fmt::format("Entries seen are a lower bound: snapshots up to {} apart miss a TIME_WAIT socket that "
                        "came and went between them (60 s); TcpExt.TW counts them all.",
                        model::format_duration(r.longest_gap_ms)));
  c.notes.push_back(r.recorded_entries
                        ? "Entries were read from those the collector recorded as it wrote each snapshot "
                          "(time_wait_entries)."
                        : "Entries were read from the TIME_WAIT spans: this file is older than schema version 11, "
                          "which records them as it writes.");
  c.notes.push_back(
      "Population / 60 s is the entry rate the highest TIME_WAIT count of the bucket implies in a "
      "steady state; TcpExt.TW also counts FIN_WAIT2 minisockets and leaves out sockets given under "
      "4 s to live.");
  return c;
}

void add_time_wait_overflows(chart::Chart& time_wait, const query::Trend& rates) {
  take_counters(time_wait, rates, {"TcpExt.TCPTimeWaitOverflow"});
}

chart::Chart ports_chart(SQLite::Database& db, const ReportFrame& f) {
  auto c = empty_chart(f, "port-pressure", "Ephemeral port pressure per destination",
                       "How close this host's clients came to running out of local ports towards one destination: "
                       "at 100 % a connect() to it fails with EADDRNOTAVAIL.",
                       "% of the ephemeral ports", "the highest share of the bucket's snapshots, per destination");
  c.integers = false;
  constexpr std::size_t k_top = 5;
  const auto series = query::port_pressure_series(db, f.scope, f.snapshots, k_top);
  for (const auto& d : series) {
    chart::Series s;
    s.name = fmt::format("{} from {}", endpoint(d.worst.remote_addr, d.worst.remote_port), d.worst.local_addr);
    s.values.assign(c.starts.size(), std::nullopt);
    for (std::size_t i = 0; i < f.snapshots.size(); ++i) {
      const auto b = static_cast<std::size_t>((f.snapshots[i].time_ms - f.since_ms) / f.bucket_ms);
      const double percent = 100.0 * static_cast<double>(d.in_use[i]) / static_cast<double>(d.worst.range_size);
      if (b < s.values.size()) {
        s.values[b] = std::max(s.values[b].value_or(0), percent);
      }
    }
    c.series.push_back(std::move(s));
  }
  if (series.empty()) {
    c.empty = "no connection from an ephemeral port in these snapshots";
    return c;
  }
  const auto& worst = series.front().worst;
  c.notes.push_back(
      fmt::format("Connections from ports in ip_local_port_range ({} ports{}), TIME_WAIT and open, "
                  "towards each destination; a listener's ports are left out.",
                  worst.range_size, worst.range_assumed ? ", assumed 32768-60999: not recorded" : ""));
  c.extra_caption = "The worst moment of each destination drawn";
  c.extra_columns = {"destination", "from", "at", "TIME_WAIT", "open", "share"};
  for (const auto& d : series) {
    c.extra_rows.push_back({endpoint(d.worst.remote_addr, d.worst.remote_port), d.worst.local_addr,
                            model::format_human(d.worst.at_ms, f.zone), std::to_string(d.worst.time_wait),
                            std::to_string(d.worst.open), fixed(d.worst.percent()) + " %"});
  }
  return c;
}

chart::Chart connections_chart(SQLite::Database& db, const ReportFrame& f) {
  auto c = empty_chart(f, "connections", "Connections ended, by owner (the connection log)",
                       "Who opened and closed connections, and how fast: every TCP and UDP socket the kernel "
                       "destroyed, as the looping collector heard it.",
                       "connections ended per second", "ends heard in the bucket per second");
  c.integers = false;
  const auto log = query::read_connections(db, f.scope, f.since_ms, f.until_ms);
  if (!log.has_log) {
    c.empty = "this file predates the connection log (schema version 10)";
    return c;
  }
  if (log.coverage.takes == 0) {
    c.empty = "no connection log: the collector was not looping (--interval) or ran with --no-connection-log";
    return c;
  }
  constexpr std::size_t k_top = 5;
  std::map<std::string, std::int64_t> per_owner;
  for (const auto& e : log.ends) {
    ++per_owner[query::program(e.pid, e.comm, "no owner")];
  }
  std::vector<std::pair<std::string, std::int64_t>> ranked(per_owner.begin(), per_owner.end());
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::map<std::string, std::size_t> slot;  // owner -> series (k_top: "other owners")
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    slot[ranked[i].first] = std::min(i, k_top);
    if (i < k_top) {
      c.series.push_back({ranked[i].first, {}});
    }
  }
  if (ranked.size() > k_top) {
    c.series.push_back({"other owners", {}});
  }
  const std::size_t summed_slot = c.series.size();
  const bool summed = !log.aggregates.empty();
  if (summed) {
    c.series.push_back({"summed beyond the budget (no owner kept)", {}});
  }
  std::vector<std::vector<double>> counts(c.series.size(), std::vector<double>(c.starts.size(), 0));
  const auto index = [&](std::int64_t t) {
    // Ends are read from since_ms on, the first bucket's start: never before it.
    return static_cast<std::size_t>((t - f.since_ms) / f.bucket_ms);
  };
  for (const auto& e : log.ends) {
    const auto b = index(e.time_ms);
    if (b < c.starts.size()) {
      counts[slot[query::program(e.pid, e.comm, "no owner")]][b] += 1;
    }
  }
  for (const auto& a : log.aggregates) {
    const auto b = index(a.second_ms);
    if (b < c.starts.size()) {
      counts[summed_slot][b] += static_cast<double>(a.count);
    }
  }
  // A bucket the log did not cover at all has no value: the line breaks there.
  for (std::size_t b = 0; b < c.starts.size(); ++b) {
    const auto from = c.starts[b];
    const auto to = from + f.bucket_ms;
    const bool deaf = std::any_of(log.coverage.gaps.begin(), log.coverage.gaps.end(),
                                  [&](const auto& g) { return g.first <= from && g.second >= to; });
    for (std::size_t k = 0; k < c.series.size(); ++k) {
      c.series[k].values.push_back(deaf ? std::nullopt
                                        : std::optional(counts[k][b] * 1000.0 / static_cast<double>(f.bucket_ms)));
    }
  }
  const auto& cov = log.coverage;
  c.notes.push_back(
      fmt::format("The log heard {} ends: {} kept whole, {} summed beyond the budget, {} only counted, "
                  "{} lost to overruns of the kernel's buffer.",
                  cov.heard, cov.stored, cov.aggregated, cov.over_bound, cov.overruns));
  if (!cov.gaps.empty()) {
    std::int64_t deaf_ms = 0;
    for (const auto& [from, to] : cov.gaps) {
      deaf_ms += to - from;
    }
    c.notes.push_back(
        fmt::format("The log did not cover {} stretch{} ({} in all): those ends are not drawn "
                    "(sockhist connections lists them).",
                    cov.gaps.size(), cov.gaps.size() == 1 ? "" : "es", model::format_duration(deaf_ms)));
  }
  return c;
}

}  // namespace sockhist::analyzer
