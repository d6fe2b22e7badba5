// Ephemeral-port pressure: connections from ip_local_port_range per destination, at their worst.
#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/query/lifecycle.hpp"

namespace sockhist::query {

using namespace detail;

namespace {

// One span starting (+1 at its first snapshot) or stopping (-1 after its last) to count.
struct Event {
  std::uint32_t position;
  std::uint32_t destination;
  std::int8_t delta;
  bool time_wait;
};

// A range's ephemeral connections per destination: each span as the positions where it starts and
// stops counting, ordered by position (in no order within one).
struct Sweep {
  std::vector<PortPressure> destinations;
  std::vector<Event> events;
  std::vector<std::int64_t> times;
};

// Orders events by position, counting them per position first: a week is a million.
std::vector<Event> by_position(const std::vector<Event>& events, std::size_t positions) {
  std::vector<std::size_t> start(positions + 2, 0);
  for (const auto& e : events) {
    ++start[e.position + 1];
  }
  for (std::size_t p = 1; p < start.size(); ++p) {
    start[p] += start[p - 1];
  }
  std::vector<Event> out(events.size());
  for (const auto& e : events) {
    out[start[e.position]++] = e;
  }
  return out;
}

Sweep read_sweep(SQLite::Database& db, const Scope& scope, const std::vector<SnapshotSummary>& snapshots) {
  Sweep w;
  const auto& newest = snapshots.back();
  const bool assumed = !newest.port_range_low || !newest.port_range_high;
  const std::int64_t low = newest.port_range_low.value_or(32768);
  const std::int64_t high = newest.port_range_high.value_or(60999);
  std::vector<std::int64_t> ids;
  for (const auto& s : snapshots) {
    ids.push_back(s.id);
    w.times.push_back(s.time_ms);
  }
  const auto listening = listeners(db, scope, ids.front(), ids.back());
  const auto time_wait = state_id(db, model::Proto::tcp, model::SockState::time_wait).value_or(-1);
  auto q = connections_from_ports(db, scope, ids.front(), ids.back(), low, high);
  // A destination is (local address id, remote address, remote port); a remote address is looked
  // up by its text without copying it, and local addresses get their text once each at the end.
  struct TextHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::int64_t, TextHash, std::equal_to<>> remote_ids;
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::size_t> index;
  std::vector<std::int64_t> local_ids;
  while (q.step()) {
    const auto local_port = q.integer(5);
    if (listening.count(local_port) > 0) {
      continue;  // the server side of a connection: the port is the listener's, not ephemeral
    }
    const auto remote_text = q.text(6);
    auto remote = remote_ids.find(remote_text);
    if (remote == remote_ids.end()) {
      remote = remote_ids.emplace(std::string(remote_text), static_cast<std::int64_t>(remote_ids.size())).first;
    }
    const auto key = std::make_tuple(q.integer(4), remote->second, q.integer(7));
    auto [it, added] = index.try_emplace(key, w.destinations.size());
    if (added) {
      PortPressure p;
      p.remote_addr = remote->first;
      p.remote_port = std::get<2>(key);
      p.family = static_cast<int>(q.integer(3));
      p.range_size = high - low + 1;
      p.range_assumed = assumed;
      w.destinations.push_back(std::move(p));
      local_ids.push_back(std::get<0>(key));
    }
    const auto first = at_or_before(ids, q.integer(0));
    const auto last = at_or_before(ids, q.integer(1));
    const bool tw = q.integer(2) == time_wait;
    const auto d = static_cast<std::uint32_t>(it->second);
    w.events.push_back({static_cast<std::uint32_t>(std::max<std::ptrdiff_t>(first, 0)), d, 1, tw});
    w.events.push_back({static_cast<std::uint32_t>(last + 1), d, -1, tw});
  }
  auto address = address_by_id(db);
  for (std::size_t d = 0; d < w.destinations.size(); ++d) {
    address.reset();
    address.bind(1, local_ids[d]);
    w.destinations[d].local_addr = address.executeStep() ? address.getColumn(0).getString() : std::string("-");
  }
  w.events = by_position(w.events, ids.size());
  return w;
}

// Replays the events: `changed(position, destination, time_wait, open)` after each snapshot's
// changes to a destination.
template <typename F>
void replay(const Sweep& w, F&& changed) {
  std::vector<std::pair<std::int64_t, std::int64_t>> now(w.destinations.size(), {0, 0});  // TIME_WAIT, open
  std::vector<std::size_t> touched;
  for (std::size_t e = 0; e < w.events.size();) {
    const std::size_t pos = w.events[e].position;
    touched.clear();
    for (; e < w.events.size() && w.events[e].position == pos; ++e) {
      const auto& ev = w.events[e];
      (ev.time_wait ? now[ev.destination].first : now[ev.destination].second) += ev.delta;
      touched.push_back(ev.destination);
    }
    if (pos < w.times.size()) {
      for (const auto d : touched) {
        changed(pos, d, now[d].first, now[d].second);
      }
    }
  }
}

// Each destination's worst moment, the highest first.
std::vector<std::size_t> worst_moments(Sweep& w) {
  replay(w, [&](std::size_t pos, std::size_t d, std::int64_t tw, std::int64_t open) {
    auto& p = w.destinations[d];
    if (tw + open > p.time_wait + p.open) {
      p.time_wait = tw;
      p.open = open;
      p.at_ms = w.times[pos];
    }
  });
  std::vector<std::size_t> order(w.destinations.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    const auto& a = w.destinations[x];
    const auto& b = w.destinations[y];
    if (a.time_wait + a.open != b.time_wait + b.open) {
      return a.time_wait + a.open > b.time_wait + b.open;
    }
    return std::tie(a.remote_addr, a.remote_port, a.local_addr) < std::tie(b.remote_addr, b.remote_port, b.local_addr);
  });
  return order;
}

}  // namespace

std::vector<PortPressure> port_pressure(SQLite::Database& db, const Scope& scope,
                                        const std::vector<SnapshotSummary>& snapshots) {
  std::vector<PortPressure> out;
  if (snapshots.empty()) {
    return out;
  }
  auto w = read_sweep(db, scope, snapshots);
  for (const auto d : worst_moments(w)) {
    out.push_back(w.destinations[d]);
  }
  return out;
}

std::vector<PortPressureSeries> port_pressure_series(SQLite::Database& db, const Scope& scope,
                                                     const std::vector<SnapshotSummary>& snapshots, std::size_t top) {
  std::vector<PortPressureSeries> out;
  if (snapshots.empty()) {
    return out;
  }
  auto w = read_sweep(db, scope, snapshots);
  const auto order = worst_moments(w);
  std::vector<std::size_t> slot(w.destinations.size(), top);
  for (std::size_t i = 0; i < order.size() && i < top; ++i) {
    slot[order[i]] = i;
    out.push_back({w.destinations[order[i]], std::vector<std::int64_t>(snapshots.size(), 0)});
  }
  // A count holds from the snapshot where it changed until the next change.
  std::vector<std::size_t> since(out.size(), 0);
  std::vector<std::int64_t> held(out.size(), 0);
  replay(w, [&](std::size_t pos, std::size_t d, std::int64_t tw, std::int64_t open) {
    const auto i = slot[d];
    if (i >= out.size()) {
      return;
    }
    std::fill(out[i].in_use.begin() + static_cast<std::ptrdiff_t>(since[i]),
              out[i].in_use.begin() + static_cast<std::ptrdiff_t>(pos), held[i]);
    since[i] = pos;
    held[i] = tw + open;
  });
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::fill(out[i].in_use.begin() + static_cast<std::ptrdiff_t>(since[i]), out[i].in_use.end(), held[i]);
  }
  return out;
}

}  // namespace sockhist::query