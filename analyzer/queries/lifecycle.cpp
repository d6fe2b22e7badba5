#include "sockhist/lifecycle.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

namespace sockhist::query {

namespace {

std::optional<std::string> optional_text(const SQLite::Column& c) {
  return c.isNull() ? std::nullopt : std::optional(c.getString());
}

// The position in `ids` of the newest snapshot at or before `id`; -1 when none.
std::ptrdiff_t at_or_before(const std::vector<std::int64_t>& ids, std::int64_t id) {
  return std::upper_bound(ids.begin(), ids.end(), id) - ids.begin() - 1;
}

}  // namespace

std::vector<CloseWaitSocket> close_wait_sockets(SQLite::Database& db, const Scope& scope,
                                                const std::vector<SnapshotSummary>& snapshots) {
  const auto close_wait = state_id(db, "tcp", "CLOSE_WAIT");
  if (snapshots.empty() || !close_wait) {
    return {};
  }
  std::vector<std::int64_t> ids;
  for (const auto& s : snapshots) {
    ids.push_back(s.id);
  }
  // Ports that listened during the range: a CLOSE_WAIT on one of them is a server's connection.
  std::set<std::int64_t> listening;
  if (const auto listen = state_id(db, "tcp", "LISTEN")) {
    SQLite::Statement q(db,
                        "SELECT DISTINCT local_port FROM socket_spans WHERE netns_id = ? AND first_snapshot_id <= ? "
                        "AND last_snapshot_id >= ? AND state_id = ?");
    q.bind(1, scope.netns_id);
    q.bind(2, ids.back());
    q.bind(3, ids.front());
    q.bind(4, *listen);
    while (q.executeStep()) {
      listening.insert(q.getColumn(0).getInt64());
    }
  }
  SQLite::Statement q(db,
                      "SELECT sp.span_id, sp.first_snapshot_id, sp.last_snapshot_id, "
                      "coalesce(sp.first_time_ms, f.time_ms), sp.prev_span_id, pst.state, sp.process_id, p.pid, "
                      "p.comm, p.cmdline, coalesce(p.user, u.name), coalesce(sp.family, 4), a.addr, sp.local_port, "
                      "sp.remote_addr, sp.remote_port, sp.rx_queue "
                      "FROM socket_spans sp "
                      "JOIN addresses a ON a.addr_id = sp.local_addr_id "
                      "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
                      "LEFT JOIN socket_spans pv ON pv.span_id = sp.prev_span_id "
                      "LEFT JOIN socket_states pst ON pst.state_id = pv.state_id "
                      "LEFT JOIN processes p ON p.process_id = sp.process_id "
                      "LEFT JOIN users u ON u.host_id = ? AND u.uid = sp.uid "
                      "WHERE sp.netns_id = ? AND sp.first_snapshot_id <= ? AND sp.last_snapshot_id >= ? "
                      "AND sp.state_id = ? ORDER BY sp.span_id");
  q.bind(1, scope.host_id);
  q.bind(2, scope.netns_id);
  q.bind(3, ids.back());
  q.bind(4, ids.front());
  q.bind(5, *close_wait);
  // Where the previous state of a socket was CLOSE_WAIT too (its owner changed), its stay began
  // with that span: a chain is one socket.
  SQLite::Statement chain(db,
                          "SELECT sp.prev_span_id, pst.state, sp.first_snapshot_id, "
                          "coalesce(sp.first_time_ms, f.time_ms) FROM socket_spans sp "
                          "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
                          "LEFT JOIN socket_spans pv ON pv.span_id = sp.prev_span_id "
                          "LEFT JOIN socket_states pst ON pst.state_id = pv.state_id WHERE sp.span_id = ?");
  SQLite::Statement before(db,
                           "SELECT time_ms FROM snapshots WHERE netns_id = ? AND snapshot_id < ? "
                           "ORDER BY snapshot_id DESC LIMIT 1");
  std::vector<CloseWaitSocket> out;
  std::unordered_map<std::int64_t, std::size_t> by_span;  // the last span of each entry -> its index
  while (q.executeStep()) {
    const std::int64_t span_id = q.getColumn(0).getInt64();
    std::int64_t first_id = q.getColumn(1).getInt64();
    const std::int64_t last_id = q.getColumn(2).getInt64();
    std::int64_t first_ms = q.getColumn(3).getInt64();
    const auto prev = q.getColumn(4).isNull() ? std::nullopt : std::optional(q.getColumn(4).getInt64());
    std::string came_from = q.getColumn(5).isNull() ? "" : q.getColumn(5).getString();
    CloseWaitSocket* entry = nullptr;
    if (came_from == "CLOSE_WAIT" && prev) {
      if (auto it = by_span.find(*prev); it != by_span.end()) {
        entry = &out[it->second];
        by_span.erase(it);
      } else {
        // The chain began before the range: walk back to its first CLOSE_WAIT span.
        std::optional<std::int64_t> at = prev;
        while (at && came_from == "CLOSE_WAIT") {
          chain.reset();
          chain.bind(1, *at);
          if (!chain.executeStep()) {
            came_from = "";  // removed by retention: where it came from is lost
            break;
          }
          first_id = chain.getColumn(2).getInt64();
          first_ms = chain.getColumn(3).getInt64();
          came_from = chain.getColumn(1).isNull() ? "" : chain.getColumn(1).getString();
          at = chain.getColumn(0).isNull() ? std::nullopt : std::optional(chain.getColumn(0).getInt64());
        }
      }
    }
    if (entry == nullptr) {
      out.emplace_back();
      entry = &out.back();
      entry->span_id = span_id;
      entry->came_from = came_from;
      entry->entered_by_ms = first_ms;
      before.reset();
      before.bind(1, scope.netns_id);
      before.bind(2, first_id);
      if (before.executeStep()) {
        entry->entered_after_ms = before.getColumn(0).getInt64();
      }
      entry->family = q.getColumn(11).getInt();
      entry->local_addr = q.getColumn(12).getString();
      entry->local_port = q.getColumn(13).getInt64();
      entry->remote_addr = q.getColumn(14).getString();
      entry->remote_port = q.getColumn(15).getInt64();
      entry->rx_queue = q.getColumn(16).getInt64();
      entry->serves_listener = listening.count(entry->local_port) > 0;
    }
    // The owner is the newest span's.
    entry->process_id = q.getColumn(6).isNull() ? std::nullopt : std::optional(q.getColumn(6).getInt64());
    entry->pid = q.getColumn(7).isNull() ? 0 : q.getColumn(7).getInt();
    entry->comm = q.getColumn(8).isNull() ? "" : q.getColumn(8).getString();
    entry->cmdline = optional_text(q.getColumn(9));
    entry->user = optional_text(q.getColumn(10));
    const auto last_pos = at_or_before(ids, last_id);
    entry->last_seen_ms = snapshots[static_cast<std::size_t>(std::max<std::ptrdiff_t>(last_pos, 0))].time_ms;
    entry->still_there = last_id >= ids.back();
    entry->gone_by_ms =
        entry->still_there ? std::nullopt : std::optional(snapshots[static_cast<std::size_t>(last_pos + 1)].time_ms);
    by_span[span_id] = static_cast<std::size_t>(entry - out.data());
  }
  std::stable_sort(out.begin(), out.end(), [](const CloseWaitSocket& a, const CloseWaitSocket& b) {
    if (a.still_there != b.still_there) {
      return a.still_there;
    }
    return a.min_age_ms() > b.min_age_ms();
  });
  return out;
}

std::vector<CloseWaitByProcess> close_wait_by_process(const std::vector<SnapshotSummary>& snapshots,
                                                      const std::vector<CloseWaitSocket>& sockets) {
  if (snapshots.empty()) {
    return {};
  }
  std::vector<std::int64_t> times;
  for (const auto& s : snapshots) {
    times.push_back(s.time_ms);
  }
  const std::size_t n = snapshots.size();
  std::map<std::int64_t, std::size_t> group_of;  // process_id (0: unknown owner) -> index
  std::vector<CloseWaitByProcess> groups;
  std::vector<std::vector<std::int64_t>> delta;
  std::vector<std::map<std::string, std::int64_t>> places;
  std::vector<std::pair<std::size_t, std::size_t>> lifetime;  // the snapshots from its first socket to its last
  for (const auto& s : sockets) {
    const std::int64_t key = s.process_id.value_or(0);
    auto [it, added] = group_of.try_emplace(key, groups.size());
    if (added) {
      CloseWaitByProcess g;
      g.process_id = s.process_id;
      g.pid = s.pid;
      g.comm = s.comm;
      g.cmdline = s.cmdline;
      groups.push_back(std::move(g));
      delta.emplace_back(n + 1, 0);
      places.emplace_back();
      lifetime.emplace_back(n, 0);
    }
    auto& g = groups[it->second];
    ++g.seen;
    g.oldest_min_ms = std::max(g.oldest_min_ms, s.min_age_ms());
    ++places[it->second][s.serves_listener ? fmt::format("serves :{}", s.local_port)
                                           : fmt::format("peer {}", endpoint(s.remote_addr, s.remote_port))];
    // Counted from the first snapshot of the range that saw it in CLOSE_WAIT to the last.
    const auto first = std::lower_bound(times.begin(), times.end(), s.entered_by_ms) - times.begin();
    const auto last = std::upper_bound(times.begin(), times.end(), s.last_seen_ms) - times.begin() - 1;
    if (first <= last) {
      ++delta[it->second][static_cast<std::size_t>(first)];
      --delta[it->second][static_cast<std::size_t>(last) + 1];
      auto& [from, to] = lifetime[it->second];
      from = std::min(from, static_cast<std::size_t>(first));
      to = std::max(to, static_cast<std::size_t>(last));
    }
  }
  for (std::size_t k = 0; k < groups.size(); ++k) {
    auto& g = groups[k];
    // Least squares of count against hours, over the snapshots from the group's first CLOSE_WAIT
    // to its last (a process that lived in part of the range is not diluted by the rest).
    const auto [from, to] = lifetime[k];
    double sum_t = 0, sum_c = 0, sum_tt = 0, sum_tc = 0, points = 0;
    std::int64_t count = 0;
    for (std::size_t i = 0; i < n; ++i) {
      count += delta[k][i];
      g.peak = std::max(g.peak, count);
      if (i < from || i > to) {
        continue;
      }
      const double t = static_cast<double>(times[i] - times.front()) / 3'600'000.0;
      sum_t += t;
      sum_c += static_cast<double>(count);
      sum_tt += t * t;
      sum_tc += t * static_cast<double>(count);
      points += 1;
    }
    g.now = count;
    const double denominator = points * sum_tt - sum_t * sum_t;
    if (points >= 2 && denominator > 1e-12) {
      g.per_hour = (points * sum_tc - sum_t * sum_c) / denominator;
    }
    const auto most = std::max_element(places[k].begin(), places[k].end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
    g.involved = most->first;
    if (places[k].size() > 1) {
      g.involved += fmt::format(" (+{} more)", places[k].size() - 1);
    }
  }
  std::stable_sort(groups.begin(), groups.end(), [](const CloseWaitByProcess& a, const CloseWaitByProcess& b) {
    if ((a.now > 0) != (b.now > 0)) {
      return a.now > 0;  // still holding some: fix these first
    }
    const double sa = a.per_hour.value_or(0), sb = b.per_hour.value_or(0);
    if (sa != sb) {
      return sa > sb;
    }
    if (a.now != b.now) {
      return a.now > b.now;
    }
    return a.seen > b.seen;
  });
  return groups;
}

}  // namespace sockhist::query

namespace sockhist::query {

namespace {

// The endpoints of a span, for grouping sockets by 4-tuple.
std::string tuple_key(const TimeWaitSocket& s) {
  return fmt::format("{} {} {} {}", s.local_addr, s.local_port, s.remote_addr, s.remote_port);
}

// Listening ports of the range, each with its listeners' spans and owners, oldest first.
struct Listener {
  std::int64_t first_id = 0;
  std::int32_t pid = 0;
  std::string comm;
  std::optional<std::string> cmdline;
};
using Listeners = std::map<std::int64_t, std::vector<Listener>>;
Listeners listeners(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id) {
  Listeners out;
  const auto listen = state_id(db, "tcp", "LISTEN");
  if (!listen) {
    return out;
  }
  SQLite::Statement q(db,
                      "SELECT sp.local_port, sp.first_snapshot_id, p.pid, p.comm, p.cmdline FROM socket_spans sp "
                      "LEFT JOIN processes p ON p.process_id = sp.process_id "
                      "WHERE sp.netns_id = ? AND sp.first_snapshot_id <= ? AND sp.last_snapshot_id >= ? "
                      "AND sp.state_id = ? ORDER BY sp.first_snapshot_id");
  q.bind(1, scope.netns_id);
  q.bind(2, last_id);
  q.bind(3, first_id);
  q.bind(4, *listen);
  while (q.executeStep()) {
    auto& list = out[q.getColumn(0).getInt64()];
    if (!q.getColumn(2).isNull()) {
      list.push_back({q.getColumn(1).getInt64(), q.getColumn(2).getInt(), q.getColumn(3).getString(),
                      optional_text(q.getColumn(4))});
    }
  }
  return out;
}

// The owner of the listener that was there when snapshot `id` was taken (else the first one).
const Listener* listener_at(const std::vector<Listener>& list, std::int64_t id) {
  const Listener* found = list.empty() ? nullptr : &list.front();
  for (const auto& l : list) {
    if (l.first_id <= id) {
      found = &l;
    }
  }
  return found;
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

TimeWaitReport time_wait_report(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                                std::int64_t bucket_ms) {
  TimeWaitReport r;
  r.since_ms = since_ms;
  r.until_ms = until_ms;
  r.snapshot_list = list_snapshots(db, scope, since_ms, until_ms);
  const auto& snapshots = r.snapshot_list;
  r.snapshots = static_cast<std::int64_t>(snapshots.size());
  r.bucket_ms = bucket_ms > 0 ? bucket_ms : choose_bucket_ms(until_ms - since_ms);
  if (snapshots.empty()) {
    return r;
  }
  r.first_ms = snapshots.front().time_ms;
  r.last_ms = snapshots.back().time_ms;
  std::vector<std::int64_t> ids, times;
  for (const auto& s : snapshots) {
    ids.push_back(s.id);
    times.push_back(s.time_ms);
  }
  {
    SQLite::Statement q(
        db, "SELECT tcp_tw_reuse, tcp_max_tw_buckets, tcp_fin_timeout FROM snapshots WHERE snapshot_id = ?");
    q.bind(1, ids.back());
    if (q.executeStep()) {
      r.tcp_tw_reuse = q.getColumn(0).isNull() ? std::nullopt : std::optional(q.getColumn(0).getInt64());
      r.tcp_max_tw_buckets = q.getColumn(1).isNull() ? std::nullopt : std::optional(q.getColumn(1).getInt64());
      r.tcp_fin_timeout = q.getColumn(2).isNull() ? std::nullopt : std::optional(q.getColumn(2).getInt64());
    }
  }
  const Listeners listening = listeners(db, scope, ids.front(), ids.back());
  const auto time_wait = state_id(db, "tcp", "TIME_WAIT");
  const auto fin_wait2 = state_id(db, "tcp", "FIN_WAIT2");
  std::set<std::int64_t> span_ids;
  // The snapshot before the range: the lower bound of entry for sockets first seen in its first.
  std::optional<std::optional<std::int64_t>> before_range_ms;
  const auto before_range = [&]() -> std::optional<std::int64_t> {
    if (!before_range_ms) {
      SQLite::Statement before(db,
                               "SELECT time_ms FROM snapshots WHERE netns_id = ? AND snapshot_id < ? "
                               "ORDER BY snapshot_id DESC LIMIT 1");
      before.bind(1, scope.netns_id);
      before.bind(2, ids.front());
      before_range_ms = before.executeStep() ? std::optional(before.getColumn(0).getInt64()) : std::nullopt;
    }
    return *before_range_ms;
  };
  if (time_wait || fin_wait2) {
    SQLite::Statement q(
        db,
        "SELECT sp.span_id, sp.first_snapshot_id, sp.last_snapshot_id, coalesce(sp.first_time_ms, f.time_ms), "
        "st.state, sp.timer, sp.timer_ms, pst.state, pv.timer, p.pid, p.comm, p.cmdline, coalesce(sp.family, 4), "
        "a.addr, sp.local_port, sp.remote_addr, sp.remote_port, f.port_range_low, f.port_range_high "
        "FROM socket_spans sp "
        "JOIN socket_states st ON st.state_id = sp.state_id "
        "JOIN addresses a ON a.addr_id = sp.local_addr_id "
        "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
        "LEFT JOIN socket_spans pv ON pv.span_id = sp.prev_span_id "
        "LEFT JOIN socket_states pst ON pst.state_id = pv.state_id "
        "LEFT JOIN processes p ON p.process_id = coalesce(sp.process_id, pv.process_id) "
        "WHERE sp.netns_id = ? AND sp.first_snapshot_id <= ? AND sp.last_snapshot_id >= ? "
        "AND sp.state_id IN (?, ?) ORDER BY sp.first_snapshot_id, sp.span_id");
    q.bind(1, scope.netns_id);
    q.bind(2, ids.back());
    q.bind(3, ids.front());
    q.bind(4, time_wait.value_or(-1));
    q.bind(5, fin_wait2.value_or(-1));
    while (q.executeStep()) {
      const bool fw2 = q.getColumn(4).getString() == "FIN_WAIT2";
      const int timer = q.getColumn(5).getInt();
      if (fw2 && timer != 3) {
        continue;  // a full socket in FIN_WAIT2: its owner still holds it, not a minisocket
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
      s.came_from = q.getColumn(7).isNull() ? "" : q.getColumn(7).getString();
      if (s.came_from == "FIN_WAIT2" && !q.getColumn(8).isNull() && q.getColumn(8).getInt() == 3) {
        s.came_from = "FIN_WAIT2 minisocket";
      }
      s.pid = q.getColumn(9).isNull() ? 0 : q.getColumn(9).getInt();
      s.comm = q.getColumn(10).isNull() ? "" : q.getColumn(10).getString();
      s.cmdline = optional_text(q.getColumn(11));
      s.family = q.getColumn(12).getInt();
      s.local_addr = q.getColumn(13).getString();
      s.local_port = q.getColumn(14).getInt64();
      s.remote_addr = q.getColumn(15).getString();
      s.remote_port = q.getColumn(16).getInt64();
      const std::int64_t low = q.getColumn(17).isNull() ? 32768 : q.getColumn(17).getInt64();
      const std::int64_t high = q.getColumn(18).isNull() ? 60999 : q.getColumn(18).getInt64();
      if (const auto l = listening.find(s.local_port); l != listening.end()) {
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
      const auto first_pos = at_or_before(ids, first_id);
      // A socket first seen before the range keeps its own first sighting (and timer) for the
      // estimate, and no lower bound from the range.
      if (first_pos > 0) {
        s.entered_after_ms = times[static_cast<std::size_t>(first_pos - 1)];
      } else if (first_pos == 0) {
        s.entered_after_ms = before_range();
      }
      const auto last_pos = at_or_before(ids, last_id);
      s.last_seen_ms = times[static_cast<std::size_t>(std::max<std::ptrdiff_t>(last_pos, 0))];
      bool rebooted = false;  // gone because the host rebooted: not an anomaly
      if (last_id < ids.back()) {
        const auto& gone = snapshots[static_cast<std::size_t>(last_pos + 1)];
        s.gone_by_ms = gone.time_ms;
        rebooted = last_pos >= 0 && gone.boot_id != snapshots[static_cast<std::size_t>(last_pos)].boot_id;
        if (rebooted) {
          s.next_state = "(reboot)";
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
      span_ids.insert(s.span_id);
      r.sockets.push_back(std::move(s));
    }
  }
  // What followed each socket on its 4-tuple: a new connection linked to it, or (for TIME_WAIT)
  // a TIME_WAIT with a fresh timer in the next snapshot: the tuple was reused.
  if (!r.sockets.empty()) {
    SQLite::Statement q(db,
                        "SELECT sp.prev_span_id, st.state FROM socket_spans sp "
                        "JOIN socket_states st ON st.state_id = sp.state_id "
                        "WHERE sp.netns_id = ? AND sp.first_snapshot_id > ? AND sp.first_snapshot_id <= ? "
                        "AND sp.prev_span_id IS NOT NULL");
    q.bind(1, scope.netns_id);
    q.bind(2, ids.front());
    q.bind(3, ids.back());
    std::unordered_map<std::int64_t, std::string> next;
    while (q.executeStep()) {
      const auto prev = q.getColumn(0).getInt64();
      if (span_ids.count(prev) > 0) {
        next[prev] = q.getColumn(1).getString();
      }
    }
    std::unordered_map<std::string, std::size_t> last_time_wait;  // 4-tuple -> the latest TIME_WAIT seen
    std::vector<bool> merged(r.sockets.size(), false);
    for (std::size_t i = 0; i < r.sockets.size(); ++i) {
      auto& s = r.sockets[i];
      if (auto it = next.find(s.span_id); it != next.end() && s.next_state.empty()) {
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
            // A fresh timer on a tuple still in TIME_WAIT: a new connection reused it.
            s.reused_tuple = true;
            earlier.next_state = "TIME_WAIT";
            earlier.vanished_early = false;
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

  // Entries, the population and the kernel's counter over the same snapshots.
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
      from_minisocket += s.came_from == "FIN_WAIT2 minisocket" ? 1 : 0;
      if (*s.entered_ms >= since_ms && *s.entered_ms <= until_ms) {
        ++r.buckets[bucket_of(*s.entered_ms)].entries;
      }
    }
  }
  double sum = 0;
  for (std::size_t i = 0; i < snapshots.size(); ++i) {
    const auto n = snapshots[i].count("tcp", "TIME_WAIT");
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
  r.table_entries = r.entries - from_minisocket + minisockets_entered;
  if (last_ms > first_ms) {
    r.table_entries_per_s = static_cast<double>(r.table_entries) * 1000.0 / static_cast<double>(last_ms - first_ms);
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> bucket_counter(bucket_count);  // increase, interval
  std::set<std::int64_t> counted_intervals;
  for (const auto& step : counter_steps(
           db, scope, snapshots, {"TcpExt.TW", "TcpExt.TWKilled", "TcpExt.TWRecycled", "TcpExt.TCPTimeWaitOverflow"})) {
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

std::vector<PortPressure> port_pressure(SQLite::Database& db, const Scope& scope,
                                        const std::vector<SnapshotSummary>& snapshots) {
  std::vector<PortPressure> out;
  if (snapshots.empty()) {
    return out;
  }
  const auto& newest = snapshots.back();
  const bool assumed = !newest.port_range_low || !newest.port_range_high;
  const std::int64_t low = newest.port_range_low.value_or(32768);
  const std::int64_t high = newest.port_range_high.value_or(60999);
  std::vector<std::int64_t> ids, times;
  for (const auto& s : snapshots) {
    ids.push_back(s.id);
    times.push_back(s.time_ms);
  }
  const auto listening = listeners(db, scope, ids.front(), ids.back());
  const auto time_wait = state_id(db, "tcp", "TIME_WAIT").value_or(-1);
  SQLite::Statement q(db,
                      "SELECT sp.first_snapshot_id, sp.last_snapshot_id, sp.state_id, coalesce(sp.family, 4), "
                      "a.addr, sp.local_port, sp.remote_addr, sp.remote_port FROM socket_spans sp "
                      "JOIN socket_states st ON st.state_id = sp.state_id "
                      "JOIN addresses a ON a.addr_id = sp.local_addr_id "
                      "WHERE sp.netns_id = ? AND sp.first_snapshot_id <= ? AND sp.last_snapshot_id >= ? "
                      "AND st.proto = 'tcp' AND st.state NOT IN ('LISTEN', 'CLOSE') "
                      "AND sp.local_port BETWEEN ? AND ? AND sp.remote_port > 0");
  q.bind(1, scope.netns_id);
  q.bind(2, ids.back());
  q.bind(3, ids.front());
  q.bind(4, low);
  q.bind(5, high);
  std::map<std::tuple<std::string, std::string, std::int64_t>, std::size_t> index;
  // (position, +1/-1, destination, is TIME_WAIT)
  std::vector<std::tuple<std::size_t, int, std::size_t, bool>> events;
  while (q.executeStep()) {
    const auto local_port = q.getColumn(5).getInt64();
    if (listening.count(local_port) > 0) {
      continue;  // the server side of a connection: the port is the listener's, not ephemeral
    }
    auto key = std::make_tuple(q.getColumn(4).getString(), q.getColumn(6).getString(), q.getColumn(7).getInt64());
    auto [it, added] = index.try_emplace(key, out.size());
    if (added) {
      PortPressure p;
      p.local_addr = std::get<0>(key);
      p.remote_addr = std::get<1>(key);
      p.remote_port = std::get<2>(key);
      p.family = q.getColumn(3).getInt();
      p.range_size = high - low + 1;
      p.range_assumed = assumed;
      out.push_back(std::move(p));
    }
    const auto first = at_or_before(ids, q.getColumn(0).getInt64());
    const auto last = at_or_before(ids, q.getColumn(1).getInt64());
    const bool tw = q.getColumn(2).getInt64() == time_wait;
    events.emplace_back(static_cast<std::size_t>(std::max<std::ptrdiff_t>(first, 0)), 1, it->second, tw);
    events.emplace_back(static_cast<std::size_t>(last + 1), -1, it->second, tw);
  }
  std::sort(events.begin(), events.end());
  std::vector<std::pair<std::int64_t, std::int64_t>> now(out.size(), {0, 0});  // TIME_WAIT, open
  for (std::size_t e = 0; e < events.size();) {
    const auto pos = std::get<0>(events[e]);
    std::vector<std::size_t> touched;
    for (; e < events.size() && std::get<0>(events[e]) == pos; ++e) {
      const auto [p, delta, d, tw] = events[e];
      (tw ? now[d].first : now[d].second) += delta;
      touched.push_back(d);
    }
    if (pos >= times.size()) {
      continue;
    }
    for (const auto d : touched) {
      auto& p = out[d];
      if (now[d].first + now[d].second > p.time_wait + p.open) {
        p.time_wait = now[d].first;
        p.open = now[d].second;
        p.at_ms = times[pos];
      }
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const PortPressure& a, const PortPressure& b) {
    if (a.time_wait + a.open != b.time_wait + b.open) {
      return a.time_wait + a.open > b.time_wait + b.open;
    }
    return std::tie(a.remote_addr, a.remote_port, a.local_addr) < std::tie(b.remote_addr, b.remote_port, b.local_addr);
  });
  return out;
}

}  // namespace sockhist::query
