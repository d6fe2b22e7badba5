// TIME_WAIT: entries, expiries and anomalies against the kernel's 60 s, who closed first, groups.
#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/query/lifecycle.hpp"

namespace sockhist::query {

using namespace detail;

namespace {

// The endpoints of a span, for grouping sockets by 4-tuple.
std::string tuple_key(const TimeWaitSocket& s) {
  return fmt::format("{} {} {} {}", s.local_addr, s.local_port, s.remote_addr, s.remote_port);
}

std::size_t position_of(const std::vector<std::int64_t>& times, std::int64_t time_ms) {
  return static_cast<std::size_t>(std::lower_bound(times.begin(), times.end(), time_ms) - times.begin());
}

}  // namespace

std::string_view name(Closer closer) {
  switch (closer) {
    case Closer::server:
      return "server";
    case Closer::client:
      return "client";
    case Closer::other:
      break;
  }
  return "other";
}

namespace {

// What every step of a TIME_WAIT report reads: the range's snapshots, their ids and times, the
// listening ports, and (read once, when needed) the time of the snapshot before the range.
struct TimeWaitRange {
  SQLite::Database& db;
  const Scope& scope;
  const std::vector<SnapshotSummary>& snapshots;
  std::vector<std::int64_t> ids, times;
  Listeners listening;
  std::optional<std::optional<std::int64_t>> before_range_ms;

  std::optional<std::int64_t> before_range() {
    if (!before_range_ms) {
      SQLite::Statement before(db,
                               "SELECT time_ms FROM snapshots WHERE netns_id = ? AND snapshot_id < ? "
                               "ORDER BY snapshot_id DESC LIMIT 1");
      before.bind(1, scope.netns_id);
      before.bind(2, ids.front());
      before_range_ms = before.executeStep() ? std::optional(before.getColumn(0).getInt64()) : std::nullopt;
    }
    return *before_range_ms;
  }
};

// The sysctls of the range's newest snapshot that explain TIME_WAIT behaviour.
void read_settings(TimeWaitReport& r, SQLite::Database& db, std::int64_t newest_id) {
  SQLite::Statement q(db,
                      "SELECT tcp_tw_reuse, tcp_max_tw_buckets, tcp_fin_timeout FROM snapshots WHERE snapshot_id = ?");
  q.bind(1, newest_id);
  if (q.executeStep()) {
    r.tcp_tw_reuse = opt_int(q.getColumn(0));
    r.tcp_max_tw_buckets = opt_int(q.getColumn(1));
    r.tcp_fin_timeout = opt_int(q.getColumn(2));
  }
}

// One span row (the query in read_sockets) as a socket of the report, with its closer, owner,
// bounds and anomalies; nullopt for a full FIN_WAIT2 socket (not a minisocket).
std::optional<TimeWaitSocket> socket_of(SQLite::Statement& q, TimeWaitRange& range) {
  const bool fw2 = model::sock_state_from_name(q.getColumn(4).getString()) == model::SockState::fin_wait2;
  const int timer = q.getColumn(5).getInt();
  if (fw2 && timer != 3) {
    return std::nullopt;  // a full socket in FIN_WAIT2: its owner still holds it, not a minisocket
  }
  TimeWaitSocket s;
  s.span_id = q.getColumn(0).getInt64();
  s.fin_wait2 = fw2;
  const std::int64_t first_id = q.getColumn(1).getInt64();
  const std::int64_t last_id = q.getColumn(2).getInt64();
  s.first_seen_ms = q.getColumn(3).getInt64();
  if (timer == 3) {
    s.remaining_ms = q.getColumn(6).getInt64();
  }
  s.came_from = neighbour_of(opt_text(q.getColumn(7)),
                             q.getColumn(8).isNull() ? std::nullopt : std::optional(q.getColumn(8).getInt()));
  s.pid = q.getColumn(9).isNull() ? 0 : q.getColumn(9).getInt();
  s.comm = q.getColumn(10).isNull() ? "" : q.getColumn(10).getString();
  s.cmdline = opt_text(q.getColumn(11));
  s.family = q.getColumn(12).getInt();
  s.local_addr = q.getColumn(13).getString();
  s.local_port = q.getColumn(14).getInt64();
  s.remote_addr = q.getColumn(15).getString();
  s.remote_port = q.getColumn(16).getInt64();
  const std::int64_t low = q.getColumn(17).isNull() ? 32768 : q.getColumn(17).getInt64();
  const std::int64_t high = q.getColumn(18).isNull() ? 60999 : q.getColumn(18).getInt64();
  if (const auto l = range.listening.find(s.local_port); l != range.listening.end()) {
    s.closer = Closer::server;
    if (const auto* owner = listener_at(l->second, first_id); s.pid == 0 && owner != nullptr) {
      s.pid = owner->pid;
      s.comm = owner->comm;
      s.cmdline = owner->cmdline;
    }
  } else if (s.local_port >= low && s.local_port <= high) {
    s.closer = Closer::client;
  }
  // Where in the range it was first and last seen.
  const auto first_pos = at_or_before(range.ids, first_id);
  // A socket first seen before the range keeps its own first sighting (and timer) for the
  // estimate, and no lower bound from the range.
  if (first_pos > 0) {
    s.entered_after_ms = range.times[static_cast<std::size_t>(first_pos - 1)];
  } else if (first_pos == 0) {
    s.entered_after_ms = range.before_range();
  }
  const auto last_pos = at_or_before(range.ids, last_id);
  s.last_seen_ms = range.times[static_cast<std::size_t>(std::max<std::ptrdiff_t>(last_pos, 0))];
  bool rebooted = false;  // gone because the host rebooted: not an anomaly
  if (last_id < range.ids.back()) {
    const auto& gone = range.snapshots[static_cast<std::size_t>(last_pos + 1)];
    s.gone_by_ms = gone.time_ms;
    rebooted = last_pos >= 0 && gone.boot_id != range.snapshots[static_cast<std::size_t>(last_pos)].boot_id;
    if (rebooted) {
      s.next_state.reboot = true;
    }
  }
  if (!fw2 && s.remaining_ms) {
    if (*s.remaining_ms > k_time_wait_ms + k_time_wait_timer_slack_ms) {
      s.long_timer = true;  // no estimate: the kernel's TIME_WAIT length is unknown
    } else {
      s.entered_ms = s.first_seen_ms - (k_time_wait_ms - *s.remaining_ms);
      const auto expires = *s.expires_ms();
      s.vanished_early = s.gone_by_ms && !rebooted && *s.gone_by_ms < expires - k_time_wait_early_ms;
      s.overstayed = s.last_seen_ms > expires + 2'000;
    }
  }
  return s;
}

// Every TIME_WAIT socket and FIN_WAIT2 minisocket the range's snapshots saw, oldest first.
void read_sockets(TimeWaitReport& r, TimeWaitRange& range) {
  const auto time_wait = state_id(range.db, model::Proto::tcp, model::SockState::time_wait);
  const auto fin_wait2 = state_id(range.db, model::Proto::tcp, model::SockState::fin_wait2);
  if (!time_wait && !fin_wait2) {
    return;
  }
  auto q = time_wait_spans(range.db, range.scope, range.ids.front(), range.ids.back(), time_wait.value_or(-1),
                           fin_wait2.value_or(-1));
  while (q.executeStep()) {
    if (auto s = socket_of(q, range)) {
      r.sockets.push_back(std::move(*s));
    }
  }
}

// What followed each socket on its 4-tuple: a new connection linked to it, or (for TIME_WAIT)
// a TIME_WAIT with a fresh timer in the next snapshot: the tuple was reused. A span split by a
// reboot record or an owner change is merged back into one socket.
void link_followers(TimeWaitReport& r, TimeWaitRange& range) {
  if (r.sockets.empty()) {
    return;
  }
  std::set<std::int64_t> span_ids;
  for (const auto& s : r.sockets) {
    span_ids.insert(s.span_id);
  }
  const auto& ids = range.ids;
  const auto& times = range.times;
  auto& db = range.db;
  const auto& scope = range.scope;
  auto q = successors(db, scope, ids.front(), ids.back());
  std::unordered_map<std::int64_t, Neighbour> next;
  while (q.executeStep()) {
    const auto prev = q.getColumn(0).getInt64();
    if (span_ids.count(prev) > 0) {
      next[prev] = neighbour_of(q.getColumn(1).getString());
    }
  }
  std::unordered_map<std::string, std::size_t> last_time_wait;  // 4-tuple -> the latest TIME_WAIT seen
  std::vector<bool> merged(r.sockets.size(), false);
  for (std::size_t i = 0; i < r.sockets.size(); ++i) {
    auto& s = r.sockets[i];
    if (auto it = next.find(s.span_id); it != next.end() && s.next_state == Neighbour{}) {
      s.next_state = it->second;
    }
    if (s.fin_wait2) {
      continue;
    }
    const auto key = tuple_key(s);
    const auto it = last_time_wait.find(key);
    if (it != last_time_wait.end()) {
      auto& earlier = r.sockets[it->second];
      const auto gap = position_of(times, s.first_seen_ms) - position_of(times, earlier.last_seen_ms);
      if (gap <= 1 && s.first_seen_ms > earlier.last_seen_ms && s.entered_ms && earlier.entered_ms) {
        if (*s.entered_ms > *earlier.entered_ms + k_time_wait_reentry_ms) {
          // A fresh timer on the tuple: a new connection. It took the tuple over (tcp_tw_reuse,
          // TWRecycled) only if it entered before the earlier entry's 60 s were over; one that
          // entered after is ordinary port reuse, not an anomaly. No slack before the expiry: the
          // kernel takes over mostly the oldest entries, in their last seconds (measured by
          // lifecycle_live_test against TWRecycled).
          earlier.next_state = Neighbour{model::SockState::time_wait};
          if (*s.entered_ms < *earlier.expires_ms()) {
            s.reused_tuple = true;
            earlier.vanished_early = false;
          }
        } else {
          // The same socket, its span split by a reboot record or an owner change: one socket.
          earlier.last_seen_ms = s.last_seen_ms;
          earlier.gone_by_ms = s.gone_by_ms;
          earlier.next_state = s.next_state;
          earlier.vanished_early = s.vanished_early;
          earlier.overstayed = s.overstayed;
          merged[i] = true;
          continue;
        }
      }
    }
    last_time_wait[key] = i;
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < r.sockets.size(); ++i) {
    if (!merged[i]) {
      if (kept != i) {
        r.sockets[kept] = std::move(r.sockets[i]);
      }
      ++kept;
    }
  }
  r.sockets.resize(kept);
}

// Entries, the population and the kernel's counters over the same snapshots, in total and per bucket.
void count_entries(TimeWaitReport& r, TimeWaitRange& range) {
  const auto& snapshots = range.snapshots;
  const auto& times = range.times;
  const std::int64_t since_ms = r.since_ms, until_ms = r.until_ms;
  std::int64_t from_minisocket = 0, minisockets_entered = 0;
  const std::int64_t first_ms = *r.first_ms, last_ms = *r.last_ms;
  const auto bucket_of = [&](std::int64_t t) { return static_cast<std::size_t>((t - since_ms) / r.bucket_ms); };
  const std::size_t bucket_count = static_cast<std::size_t>((until_ms - since_ms) / r.bucket_ms) + 1;
  r.buckets.resize(bucket_count);
  for (std::size_t b = 0; b < bucket_count; ++b) {
    r.buckets[b].start_ms = since_ms + static_cast<std::int64_t>(b) * r.bucket_ms;
  }
  for (const auto& s : r.sockets) {
    if (s.fin_wait2) {
      minisockets_entered += s.first_seen_ms > first_ms ? 1 : 0;
      continue;
    }
    if (s.entered_ms && *s.entered_ms > first_ms && *s.entered_ms <= last_ms) {
      ++r.entries;
      from_minisocket += s.came_from.minisocket ? 1 : 0;
      if (*s.entered_ms >= since_ms && *s.entered_ms <= until_ms) {
        ++r.buckets[bucket_of(*s.entered_ms)].entries;
      }
    }
  }
  double sum = 0;
  for (std::size_t i = 0; i < snapshots.size(); ++i) {
    const auto n = snapshots[i].count(model::Proto::tcp, model::SockState::time_wait);
    sum += static_cast<double>(n);
    if (n > r.peak_population || i == 0) {
      r.peak_population = n;
      r.peak_ms = times[i];
    }
    auto& b = r.buckets[bucket_of(times[i])];
    ++b.snapshots;
    b.population = std::max(b.population.value_or(0), n);
    if (i > 0) {
      r.longest_gap_ms = std::max(r.longest_gap_ms, times[i] - times[i - 1]);
    }
  }
  r.mean_population = sum / static_cast<double>(snapshots.size());
  r.complete = snapshots.size() >= 2 && r.longest_gap_ms <= k_time_wait_ms;
  if (last_ms > first_ms) {
    r.entries_per_s = static_cast<double>(r.entries) * 1000.0 / static_cast<double>(last_ms - first_ms);
  }
  // Entries are counted between the first and the last snapshot: a bucket's rate is over the part of
  // it they cover, and a bucket less than half covered competes only when none is more.
  const auto observed = [&](const TimeWaitBucket& b) {
    return std::max<std::int64_t>(0, std::min(b.start_ms + r.bucket_ms, last_ms) - std::max(b.start_ms, first_ms));
  };
  const bool any_half = std::any_of(r.buckets.begin(), r.buckets.end(),
                                    [&](const auto& b) { return b.entries > 0 && 2 * observed(b) >= r.bucket_ms; });
  for (const auto& b : r.buckets) {
    const auto covered = observed(b);
    if (b.entries == 0 || covered == 0 || (any_half && 2 * covered < r.bucket_ms)) {
      continue;
    }
    const double rate = static_cast<double>(b.entries) * 1000.0 / static_cast<double>(covered);
    if (!r.peak_entries_per_s || rate > *r.peak_entries_per_s) {
      r.peak_entries = b.entries;
      r.peak_entries_per_s = rate;
      r.peak_entries_ms = b.start_ms;
      r.peak_observed_ms = covered;
    }
  }
  r.table_entries = r.entries - from_minisocket + minisockets_entered;
  if (last_ms > first_ms) {
    r.table_entries_per_s = static_cast<double>(r.table_entries) * 1000.0 / static_cast<double>(last_ms - first_ms);
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> bucket_counter(bucket_count);  // increase, interval
  std::set<std::int64_t> counted_intervals;
  for (const auto& step :
       counter_steps(range.db, range.scope, snapshots,
                     {"TcpExt.TW", "TcpExt.TWKilled", "TcpExt.TWRecycled", "TcpExt.TCPTimeWaitOverflow"})) {
    const auto short_name = step.counter.substr(step.counter.find('.') + 1);
    if (short_name == "TW") {
      r.counter_delta = r.counter_delta.value_or(0) + step.increase;
      r.covered_ms += step.interval_ms;
      auto& [inc, interval] = bucket_counter[bucket_of(times[step.to])];
      inc += step.increase;
      interval += step.interval_ms;
    } else {
      r.related[short_name] += step.increase;
      if (short_name == "TCPTimeWaitOverflow" && step.increase > 0) {
        r.overflows.push_back({short_name, times[step.to - 1], times[step.to], step.increase});
      }
    }
  }
  if (r.counter_delta && r.covered_ms > 0) {
    r.counter_per_s = static_cast<double>(*r.counter_delta) * 1000.0 / static_cast<double>(r.covered_ms);
  }
  for (std::size_t b = 0; b < bucket_count; ++b) {
    if (bucket_counter[b].second > 0) {
      r.buckets[b].counter_per_s =
          static_cast<double>(bucket_counter[b].first) * 1000.0 / static_cast<double>(bucket_counter[b].second);
    }
  }
}

}  // namespace

TimeWaitReport time_wait_report(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                                std::int64_t bucket_ms) {
  TimeWaitReport r;
  r.since_ms = since_ms;
  r.until_ms = until_ms;
  r.snapshot_list = list_snapshots(db, scope, since_ms, until_ms);
  r.snapshots = static_cast<std::int64_t>(r.snapshot_list.size());
  r.bucket_ms = bucket_ms > 0 ? bucket_ms : choose_bucket_ms(until_ms - since_ms);
  if (r.snapshot_list.empty()) {
    return r;
  }
  r.first_ms = r.snapshot_list.front().time_ms;
  r.last_ms = r.snapshot_list.back().time_ms;
  TimeWaitRange range{db, scope, r.snapshot_list, ids_of(r.snapshot_list), {}, {}, std::nullopt};
  for (const auto& s : r.snapshot_list) {
    range.times.push_back(s.time_ms);
  }
  range.listening = listeners(db, scope, range.ids.front(), range.ids.back());
  read_settings(r, db, range.ids.back());
  read_sockets(r, range);
  link_followers(r, range);
  count_entries(r, range);
  return r;
}

std::vector<TimeWaitGroup> time_wait_groups(const TimeWaitReport& report, TimeWaitBy by) {
  const auto& snapshots = report.snapshot_list;
  std::vector<std::int64_t> times;
  for (const auto& s : snapshots) {
    times.push_back(s.time_ms);
  }
  std::unordered_map<std::string, std::size_t> index;
  std::vector<TimeWaitGroup> groups;
  std::vector<std::map<std::string, std::int64_t>> owners;
  std::vector<std::set<std::string>> closers;
  std::vector<std::int64_t> entered;
  // (position, group, +1/-1): a sweep over the snapshots gives each group's peak.
  std::vector<std::tuple<std::size_t, int, std::size_t>> events;
  for (const auto& s : report.sockets) {
    if (s.fin_wait2) {
      continue;
    }
    std::string key;
    const auto any_port = [](const std::string& addr) {
      return addr.find(':') != std::string::npos ? fmt::format("[{}]:*", addr) : fmt::format("{}:*", addr);
    };
    if (by == TimeWaitBy::remote) {
      // A server's peers connect from their own ephemeral ports: group those by address.
      key = s.closer == Closer::server ? any_port(s.remote_addr) : endpoint(s.remote_addr, s.remote_port);
    } else if (s.closer == Closer::server) {
      key = endpoint(s.local_addr, s.local_port);
    } else {
      key = any_port(s.local_addr);
    }
    auto [it, added] = index.try_emplace(key, groups.size());
    if (added) {
      TimeWaitGroup group;
      group.key = key;
      groups.push_back(std::move(group));
      owners.emplace_back();
      closers.emplace_back();
      entered.push_back(0);
    }
    const std::size_t g = it->second;
    ++groups[g].sockets;
    closers[g].insert(std::string(name(s.closer)));
    if (s.pid != 0) {
      ++owners[g][fmt::format("{}/{}", s.pid, s.comm)];
    }
    const auto when = s.entered_ms.value_or(s.first_seen_ms);
    if (report.first_ms && when > *report.first_ms && when <= *report.last_ms) {
      ++entered[g];
    }
    const auto from = position_of(times, std::max(s.first_seen_ms, times.empty() ? 0 : times.front()));
    const auto to = position_of(times, s.last_seen_ms);
    if (from <= to && to < times.size()) {
      events.emplace_back(from, 1, g);
      events.emplace_back(to + 1, -1, g);
    }
  }
  std::sort(events.begin(), events.end());
  std::vector<std::int64_t> count(groups.size(), 0);
  for (std::size_t e = 0; e < events.size();) {
    const auto pos = std::get<0>(events[e]);
    std::vector<std::size_t> touched;
    for (; e < events.size() && std::get<0>(events[e]) == pos; ++e) {
      count[std::get<2>(events[e])] += std::get<1>(events[e]);
      touched.push_back(std::get<2>(events[e]));
    }
    for (const auto g : touched) {
      if (count[g] > groups[g].peak && pos < times.size()) {
        groups[g].peak = count[g];
        groups[g].peak_ms = times[pos];
      }
    }
  }
  const double seconds = report.first_ms && *report.last_ms > *report.first_ms
                             ? static_cast<double>(*report.last_ms - *report.first_ms) / 1000.0
                             : 0;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    groups[g].closer = closers[g].size() == 1 ? *closers[g].begin() : "mixed";
    if (seconds > 0) {
      groups[g].entries_per_s = static_cast<double>(entered[g]) / seconds;
    }
    if (!owners[g].empty()) {
      const auto most = std::max_element(owners[g].begin(), owners[g].end(),
                                         [](const auto& a, const auto& b) { return a.second < b.second; });
      groups[g].owners = most->first;
      if (owners[g].size() > 1) {
        groups[g].owners += fmt::format(" (+{} more)", owners[g].size() - 1);
      }
    }
  }
  std::stable_sort(groups.begin(), groups.end(), [](const TimeWaitGroup& a, const TimeWaitGroup& b) {
    if (a.peak != b.peak) {
      return a.peak > b.peak;
    }
    if (a.sockets != b.sockets) {
      return a.sockets > b.sockets;
    }
    return a.key < b.key;
  });
  return groups;
}

}  // namespace sockhist::query
