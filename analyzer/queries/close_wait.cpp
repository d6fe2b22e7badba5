// CLOSE_WAIT: each socket's stay bounded by the snapshots, its owner, and the leak rate per owner.
#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/query/lifecycle.hpp"
#include "sockhist/store.hpp"

namespace sockhist::query {

using namespace detail;

std::string describe(const Neighbour& n) {
  if (n.reboot) {
    return "(reboot)";
  }
  if (!n.state) {
    return {};
  }
  return n.minisocket ? "FIN_WAIT2 minisocket" : std::string(model::name(*n.state));
}

Neighbour neighbour_of(const std::optional<std::string>& state, std::optional<int> timer) {
  Neighbour n;
  if (state) {
    n.state = model::sock_state_from_name(*state);
    n.minisocket = n.state == model::SockState::fin_wait2 && timer == static_cast<int>(model::TimerKind::timewait);
  }
  return n;
}

namespace {

// Each entry's last CLOSE_WAIT span, by the entry's index.
std::vector<std::int64_t> last_span_of(const std::unordered_map<std::int64_t, std::size_t>& by_span) {
  std::vector<std::int64_t> out(by_span.size());
  for (const auto& [span_id, index] : by_span) {
    out[index] = span_id;
  }
  return out;
}

// The end the connection log heard of each gone socket: stored with the snapshot that no longer
// saw it, or the one after (a late announcement), joined to its last CLOSE_WAIT span or to the
// LAST_ACK or CLOSING span that followed it.
void add_ends(SQLite::Database& db, const Scope& scope, const std::vector<std::int64_t>& ids,
              std::vector<CloseWaitSocket>& sockets, const std::vector<std::int64_t>& last_spans) {
  if (!store::has_connection_log(db)) {
    return;
  }
  SQLite::Statement q(db,
                      "SELECT e.time_ms FROM snapshots s CROSS JOIN connection_ends e ON e.snapshot_id = s.snapshot_id "
                      "LEFT JOIN socket_spans sp ON sp.span_id = e.span_id "
                      "WHERE s.netns_id = ?1 AND s.snapshot_id > ?2 AND s.snapshot_id <= ?3 AND e.span_id IS NOT NULL "
                      "AND (e.span_id = ?4 OR sp.prev_span_id = ?4) ORDER BY e.time_ms LIMIT 1");
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    auto& socket = sockets[i];
    if (socket.still_there) {
      continue;
    }
    // The snapshot that no longer saw it, and the one after, by position in the range.
    const auto gone = std::upper_bound(ids.begin(), ids.end(), socket.last_seen_id) - ids.begin();
    const auto until = static_cast<std::size_t>(std::min<std::ptrdiff_t>(gone + 1, std::ssize(ids) - 1));
    q.reset();
    q.bind(1, scope.netns_id);
    q.bind(2, socket.last_seen_id);
    q.bind(3, ids[until]);
    q.bind(4, last_spans[i]);
    if (q.executeStep()) {
      socket.ended_ms = q.getColumn(0).getInt64();
    }
  }
}

}  // namespace

std::vector<CloseWaitSocket> close_wait_sockets(SQLite::Database& db, const Scope& scope,
                                                const std::vector<SnapshotSummary>& snapshots) {
  const auto close_wait = state_id(db, model::Proto::tcp, model::SockState::close_wait);
  if (snapshots.empty() || !close_wait) {
    return {};
  }
  std::vector<std::int64_t> ids;
  for (const auto& s : snapshots) {
    ids.push_back(s.id);
  }
  // Ports that listened during the range: a CLOSE_WAIT on one of them is a server's connection.
  std::set<std::int64_t> listening;
  for (const auto& [port, owners] : listeners(db, scope, ids.front(), ids.back())) {
    listening.insert(port);
  }
  auto q = spans_in_state(db, scope, ids.front(), ids.back(), *close_wait);
  // Where the previous state of a socket was CLOSE_WAIT too (its owner changed), its stay began
  // with that span: a chain is one socket.
  auto chain = span_by_id(db);
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
    auto came_from = neighbour_of(opt_text(q.getColumn(5)));
    CloseWaitSocket* entry = nullptr;
    const auto in_close_wait = [&] { return came_from.state == model::SockState::close_wait; };
    if (in_close_wait() && prev) {
      if (auto it = by_span.find(*prev); it != by_span.end()) {
        entry = &out[it->second];
        by_span.erase(it);
      } else {
        // The chain began before the range: walk back to its first CLOSE_WAIT span.
        std::optional<std::int64_t> at = prev;
        while (at && in_close_wait()) {
          chain.reset();
          chain.bind(1, *at);
          if (!chain.executeStep()) {
            came_from = {};  // removed by retention: where it came from is lost
            break;
          }
          first_id = chain.getColumn(2).getInt64();
          first_ms = chain.getColumn(3).getInt64();
          came_from = neighbour_of(opt_text(chain.getColumn(1)));
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
      entry->rx_queue_first = q.getColumn(16).getInt64();
      entry->serves_listener = listening.count(entry->local_port) > 0;
    }
    // The unread bytes and the owner are the newest span's.
    entry->rx_queue = q.getColumn(17).getInt64();
    entry->process_id = q.getColumn(6).isNull() ? std::nullopt : std::optional(q.getColumn(6).getInt64());
    entry->pid = q.getColumn(7).isNull() ? 0 : q.getColumn(7).getInt();
    entry->comm = q.getColumn(8).isNull() ? "" : q.getColumn(8).getString();
    entry->cmdline = opt_text(q.getColumn(9));
    entry->user = opt_text(q.getColumn(10));
    const auto last_pos = at_or_before(ids, last_id);
    entry->last_seen_ms = snapshots[static_cast<std::size_t>(std::max<std::ptrdiff_t>(last_pos, 0))].time_ms;
    entry->still_there = last_id >= ids.back();
    entry->last_seen_id = last_id;
    entry->gone_by_ms =
        entry->still_there ? std::nullopt : std::optional(snapshots[static_cast<std::size_t>(last_pos + 1)].time_ms);
    by_span[span_id] = static_cast<std::size_t>(entry - out.data());
  }
  add_ends(db, scope, ids, out, last_span_of(by_span));
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