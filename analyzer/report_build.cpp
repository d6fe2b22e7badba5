// The report's frame (its window widened to whole buckets, its gaps and usual interval), its summary
// (host, kernel, namespaces, snapshots, gaps, reboots, what check finds) and its charts in order.
#include <algorithm>
#include <array>
#include <exception>
#include <functional>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "report_build.hpp"
#include "report_charts.hpp"
#include "sockhist/error.hpp"
#include "sockhist/query/check.hpp"
#include "sockhist/store.hpp"

namespace sockhist::analyzer {

namespace {

std::int64_t median_interval(const std::vector<query::SnapshotSummary>& snapshots) {
  std::vector<std::int64_t> d;
  for (std::size_t i = 1; i < snapshots.size(); ++i) {
    d.push_back(snapshots[i].time_ms - snapshots[i - 1].time_ms);
  }
  if (d.empty()) {
    return 0;
  }
  std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(d.size() / 2), d.end());
  return d[d.size() / 2];
}

std::string when(std::int64_t ms, model::Zone zone) {
  return model::format_human(ms, zone);
}

// A chart's id from a namespace: "states-blue", "states-4026532177".
std::string states_id(const query::Scope& scope, bool first) {
  if (first) {
    return "states";
  }
  std::string name = scope.netns_name.value_or(std::to_string(scope.netns_inode));
  for (auto& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) {
      ch = '-';
    }
  }
  return "states-" + name;
}

struct ChartSpec {
  const char* id;
  const char* title;
  const char* answers;
  std::vector<std::string> counters;
};
const std::array<ChartSpec, 3>& counter_specs() {
  static const std::array<ChartSpec, 3> k_specs = {{
      {"retransmits",
       "Retransmissions",
       "Whether the network lost packets: segments sent again, and SYNs sent again (a peer that does not answer).",
       {"Tcp.RetransSegs", "TcpExt.TCPSynRetrans"}},
      {"resets",
       "Resets",
       "Whether connections were refused or torn down: resets sent, and connections reset by either side.",
       {"Tcp.OutRsts", "Tcp.EstabResets", "Tcp.AttemptFails"}},
      {"listen-queue",
       "Listen queue overflows and drops",
       "Whether a server accepted too slowly: connections dropped because a listener's accept queue was full.",
       {"TcpExt.ListenOverflows", "TcpExt.ListenDrops"}},
  }};
  return k_specs;
}

std::vector<std::string> gap_lines(const ReportFrame& f, model::Zone zone) {
  std::vector<std::string> lines;
  for (const auto& [from, to] : f.gaps) {
    lines.push_back(fmt::format("No snapshot from {} to {} ({}): the collector did not run.", when(from, zone),
                                when(to, zone), model::format_duration(to - from)));
  }
  if (lines.empty()) {
    lines.push_back(f.snapshots.size() < 2 ? "One snapshot: nothing to compare."
                                           : fmt::format("None: no two snapshots more than {} usual intervals ({}) "
                                                         "apart.",
                                                         k_gap_intervals, model::format_duration(f.usual_interval_ms)));
  }
  return lines;
}

std::vector<std::string> reboot_lines(const ReportFrame& f, model::Zone zone) {
  std::vector<std::string> lines;
  for (std::size_t i = 1; i < f.snapshots.size(); ++i) {
    const auto& a = f.snapshots[i - 1];
    const auto& b = f.snapshots[i];
    if (!a.boot_id.empty() && !b.boot_id.empty() && a.boot_id != b.boot_id) {
      lines.push_back(fmt::format("Rebooted between {} and {} (boot {} then {}).", when(a.time_ms, zone),
                                  when(b.time_ms, zone), a.boot_id.substr(0, 8), b.boot_id.substr(0, 8)));
    }
  }
  if (lines.empty()) {
    lines.push_back("None: one boot throughout.");
  }
  return lines;
}

chart::Section check_section(SQLite::Database& db, const ReportFrame& f, const ReportAsk& ask) {
  chart::Section s;
  s.heading = "What check finds";
  if (!ask.thresholds.any()) {
    s.lines.push_back(
        "No thresholds given: pass check's options (for example --close-wait-max-age 10m "
        "--time-wait-max 20000 --listen-overflows 0) to have them judged here.");
    s.alert.push_back(false);
    return s;
  }
  // Staleness only when asked for: a report is often made long after the history ended.
  const auto limits =
      ask.thresholds.resolve(db, f.scope, ask.thresholds.max_age ? std::optional(ask.common.now_ms) : std::nullopt);
  query::CheckRange range;  // what window_range lists, listed once already: the frame's snapshots
  range.window = true;
  range.snapshots = range.pair = f.snapshots;
  render::Options options = render_options(ask.common);
  for (const auto& x : query::evaluate_checks(db, f.scope, range, limits)) {
    s.lines.push_back(fmt::format("{}: {}: {} (limit {})", x.found ? "found" : "ok", query::name(x.check),
                                  check_message(x, true, options), check_limit(x)));
    s.alert.push_back(x.found);
  }
  return s;
}

std::vector<chart::Fact> facts(SQLite::Database& db, const ReportFrame& f, const ReportAsk& ask,
                               const std::vector<query::Scope>& namespaces) {
  const auto zone = render_options(ask.common).zone;
  const auto& newest = f.snapshots.back();
  std::vector<chart::Fact> out;
  out.push_back({"Host", f.scope.host + (f.scope.machine_id ? " (machine id " + *f.scope.machine_id + ")" : "")});
  out.push_back({"Kernel", newest.kernel.value_or("not recorded")});
  std::string ns = namespace_label(f.scope);
  if (namespaces.size() > 1) {
    std::vector<std::string> labels;
    for (const auto& n : namespaces) {
      labels.push_back(namespace_label(n));
    }
    ns = fmt::format("{} namespaces: {}. Sockets per state is drawn for each; the other charts are of {}.",
                     namespaces.size(), fmt::join(labels, "; "), namespace_label(f.scope));
  }
  out.push_back({"Network namespace", ns});
  out.push_back(
      {"Range", fmt::format("{} to {} ({})", when(f.snapshots.front().time_ms, zone), when(newest.time_ms, zone),
                            model::format_duration(newest.time_ms - f.snapshots.front().time_ms))});
  std::set<std::string> sources;
  for (const auto& s : f.snapshots) {
    sources.insert(s.source);
  }
  out.push_back({"Snapshots",
                 fmt::format("{}{}; recorded by: {}", f.snapshots.size(),
                             f.usual_interval_ms > 0 ? ", usually every " + model::format_duration(f.usual_interval_ms)
                                                     : std::string(),
                             fmt::join(sources, ", "))});
  out.push_back({"Charts", fmt::format("one point per bucket of {}, from {}", model::format_duration(f.bucket_ms),
                                       when(f.since_ms, zone))});
  out.push_back({"Times", chart::zone_label(f.since_ms, f.until_ms, zone)});
  out.push_back({"Database", store::database_file(db)});
  return out;
}

// Whole buckets: the boundary at or before `t`.
std::int64_t aligned(std::int64_t t, std::int64_t bucket) {
  return t - ((t % bucket) + bucket) % bucket;
}

// A chart not built, only named.
chart::Chart named(const std::string& id) {
  chart::Chart c;
  c.id = id;
  return c;
}

// A chart made on a thread of its own (when wanted), taken when needed: its exception, if any, is
// thrown by take(), on the caller's thread.
class Background {
 public:
  Background(bool wanted, std::function<chart::Chart()> make) {
    if (wanted) {
      thread_ = std::jthread([this, make = std::move(make)] {
        try {
          chart_ = make();
        } catch (...) {
          failed_ = std::current_exception();
        }
      });
    }
  }
  chart::Chart take(const std::string& id) {
    if (!thread_.joinable()) {
      return named(id);
    }
    thread_.join();
    if (failed_) {
      std::rethrow_exception(failed_);
    }
    return std::move(chart_);
  }

 private:
  chart::Chart chart_;
  std::exception_ptr failed_;
  std::jthread thread_;  // last: joined before the members it writes are destroyed
};

}  // namespace

std::int64_t report_bucket_ms(std::int64_t range_ms, std::int64_t usual_interval_ms) {
  static constexpr std::array<std::int64_t, 18> k_ladder = {
      1'000,   2'000,   5'000,     10'000,    15'000,    30'000,     60'000,     120'000,    300'000,
      600'000, 900'000, 1'800'000, 3'600'000, 7'200'000, 10'800'000, 21'600'000, 43'200'000, 86'400'000};
  constexpr std::int64_t k_most = 240;
  for (const auto b : k_ladder) {
    if (b >= usual_interval_ms && range_ms / b <= k_most) {
      return b;
    }
  }
  return std::max<std::int64_t>(k_ladder.back(), range_ms / k_most / 86'400'000 * 86'400'000 + 86'400'000);
}

ReportFrame report_frame(SQLite::Database& db, const query::Scope& scope, const ReportAsk& ask) {
  const auto in_window = query::list_snapshots(db, scope, ask.since_ms, ask.until_ms);
  if (in_window.empty()) {
    throw Error(Exit::usage, fmt::format("report: {} has no snapshot in the window asked for (see sockhist snapshots)",
                                         scope_line(scope)));
  }
  const auto bucket =
      report_bucket_ms(in_window.back().time_ms - in_window.front().time_ms, median_interval(in_window));
  return frame_over(db, scope, aligned(in_window.front().time_ms, bucket), in_window.back().time_ms, bucket);
}

ReportFrame frame_over(SQLite::Database& db, const query::Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                       std::int64_t bucket_ms) {
  ReportFrame f;
  f.scope = scope;
  f.since_ms = since_ms;
  f.until_ms = until_ms;
  f.bucket_ms = bucket_ms;
  f.snapshots = query::list_snapshots(db, scope, since_ms, until_ms);
  f.usual_interval_ms = median_interval(f.snapshots);
  for (std::size_t i = 1; i < f.snapshots.size(); ++i) {
    const auto from = f.snapshots[i - 1].time_ms;
    const auto to = f.snapshots[i].time_ms;
    if (f.usual_interval_ms > 0 && to - from > k_gap_intervals * f.usual_interval_ms) {
      f.gaps.emplace_back(from, to);
    }
  }
  return f;
}

chart::Page build_report(SQLite::Database& db, const ReportAsk& ask, const std::optional<std::string>& only) {
  const auto zone = render_options(ask.common).zone;
  const auto scope = resolve_scope(db, ask.common.host, ask.common.netns);
  auto frame = report_frame(db, scope, ask);
  frame.zone = zone;
  // Sockets per state for every namespace (the chosen one first) unless --netns chose one.
  std::vector<query::Scope> namespaces{scope};
  if (!ask.common.netns) {
    for (const auto& n : query::namespace_scopes(db, ask.common.host)) {
      if (n.netns_id != scope.netns_id) {
        namespaces.push_back(n);
      }
    }
  }
  const auto wanted = [&](const std::string& id) { return !only || *only == id; };
  // The TIME_WAIT and port-pressure charts read the most (every TIME_WAIT span of the range, every
  // connection from an ephemeral port): each is made on a read-only connection and thread of its
  // own while this one makes the rest.
  const auto path = store::resolve_db_path(ask.common.db);
  Background time_wait(wanted("time-wait"), [&] {
    auto own = store::open_read_only(path);
    return time_wait_chart(own, frame);
  });
  Background ports(wanted("port-pressure"), [&] {
    auto own = store::open_read_only(path);
    return ports_chart(own, frame);
  });
  chart::Page page;
  page.heading = fmt::format("Sockets of {}", scope.host);
  page.title = fmt::format("sockhist report: {}, {} to {}", scope.host, when(frame.snapshots.front().time_ms, zone),
                           when(frame.until_ms, zone));
  page.facts = facts(db, frame, ask, namespaces);
  page.sections.push_back({"Gaps", gap_lines(frame, zone), {}});
  page.sections.push_back({"Reboots", reboot_lines(frame, zone), {}});
  page.sections.push_back(check_section(db, frame, ask));

  for (std::size_t i = 0; i < namespaces.size(); ++i) {
    auto id = states_id(namespaces[i], i == 0);
    if (std::any_of(page.charts.begin(), page.charts.end(), [&](const auto& c) { return c.id == id; })) {
      id += "-" + std::to_string(namespaces[i].netns_inode);  // two names alike once made safe: "a.b", "a-b"
    }
    if (!wanted(id)) {
      page.charts.push_back(named(id));  // for --chart's list
      continue;
    }
    if (i == 0) {
      page.charts.push_back(states_chart(db, frame, id));
      continue;
    }
    // Its own snapshots of the window (a capture of several namespaces takes them one after
    // another), in buckets of the same size.
    const auto own = query::list_snapshots(db, namespaces[i], ask.since_ms, ask.until_ms);
    auto other = own.empty() ? frame_over(db, namespaces[i], frame.since_ms, frame.until_ms, frame.bucket_ms)
                             : frame_over(db, namespaces[i], aligned(own.front().time_ms, frame.bucket_ms),
                                          own.back().time_ms, frame.bucket_ms);
    other.zone = zone;
    page.charts.push_back(states_chart(db, other, id));
  }
  // Every counter the charts draw, replayed once.
  std::vector<std::string> counters{"TcpExt.TCPTimeWaitOverflow"};
  bool any_counters = wanted("time-wait");
  for (const auto& spec : counter_specs()) {
    counters.insert(counters.end(), spec.counters.begin(), spec.counters.end());
    any_counters = any_counters || wanted(spec.id);
  }
  const auto rates = any_counters ? counter_trend(db, frame, counters) : query::Trend{};
  const auto make = [&](const std::string& id, const auto& build) { return wanted(id) ? build() : named(id); };
  auto close_wait = make("close-wait", [&] { return close_wait_chart(db, frame); });
  std::vector<chart::Chart> counter_charts;
  for (const auto& spec : counter_specs()) {
    counter_charts.push_back(
        make(spec.id, [&] { return counters_chart(frame, rates, spec.id, spec.title, spec.answers, spec.counters); }));
  }
  auto connections = make("connections", [&] { return connections_chart(db, frame); });
  auto time_wait_done = time_wait.take("time-wait");
  if (wanted("time-wait")) {
    add_time_wait_overflows(time_wait_done, rates);
  }
  page.charts.push_back(std::move(close_wait));
  page.charts.push_back(std::move(time_wait_done));
  page.charts.push_back(ports.take("port-pressure"));
  for (auto& c : counter_charts) {
    page.charts.push_back(std::move(c));
  }
  page.charts.push_back(std::move(connections));
  // A chart built with series but not one value says why, instead of an empty frame.
  for (auto& c : page.charts) {
    const bool any = std::any_of(c.series.begin(), c.series.end(), [](const auto& s) {
      return std::any_of(s.values.begin(), s.values.end(), [](const auto& v) { return v.has_value(); });
    });
    if (!c.starts.empty() && c.empty.empty() && !any) {
      c.empty = frame.snapshots.size() < 2 ? "one snapshot: no rate or change to draw"
                                           : "no value in this range (no two snapshots of one boot to compare)";
    }
  }
  page.footer = fmt::format(
      "Made by sockhist report at {} from {}. Every value is what the kernel reported in a "
      "snapshot, or is marked as an estimate with its bounds.",
      model::format_iso_utc(ask.common.now_ms), store::database_file(db));
  return page;
}

}  // namespace sockhist::analyzer
