// Ephemeral-port pressure: connections from ip_local_port_range per destination, at their worst.
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
  const auto time_wait = state_id(db, model::Proto::tcp, model::SockState::time_wait).value_or(-1);
  auto q = connections_from_ports(db, scope, ids.front(), ids.back(), low, high);
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