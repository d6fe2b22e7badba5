#include "sockhist/query.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "sockhist/error.hpp"

namespace sockhist::query {

namespace {

std::optional<std::string> opt_text(const SQLite::Column& c) {
  return c.isNull() ? std::nullopt : std::optional(c.getString());
}
std::optional<std::int64_t> opt_int(const SQLite::Column& c) {
  return c.isNull() ? std::nullopt : std::optional(c.getInt64());
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) {
      out += sep;
    }
    out += item;
  }
  return out;
}

Scope scope_from_netns(SQLite::Database& db, std::int64_t netns_id) {
  SQLite::Statement q(db,
                      "SELECT h.host_id, h.name, h.machine_id, n.netns_id, n.inode, n.name, n.is_initial "
                      "FROM netns n JOIN hosts h ON h.host_id = n.host_id WHERE n.netns_id = ?");
  q.bind(1, netns_id);
  if (!q.executeStep()) {
    throw Error(Exit::usage, fmt::format("{}: no network namespace {}", db.getFilename(), netns_id));
  }
  Scope s;
  s.host_id = q.getColumn(0).getInt64();
  s.host = q.getColumn(1).getString();
  s.machine_id = opt_text(q.getColumn(2));
  s.netns_id = q.getColumn(3).getInt64();
  s.netns_inode = static_cast<std::uint64_t>(q.getColumn(4).getInt64());
  s.netns_name = opt_text(q.getColumn(5));
  s.netns_initial = q.getColumn(6).getInt() != 0;
  return s;
}

constexpr const char* k_snapshot_columns =
    "SELECT snapshot_id, time_ms, coalesce(boot_id, ''), uptime_ms, source, owners, socket_count, capture_ms, kernel, "
    "port_range_low, port_range_high FROM snapshots ";

SnapshotSummary read_summary(SQLite::Statement& q) {
  SnapshotSummary s;
  s.id = q.getColumn(0).getInt64();
  s.time_ms = q.getColumn(1).getInt64();
  s.boot_id = q.getColumn(2).getString();
  s.uptime_ms = opt_int(q.getColumn(3));
  s.source = q.getColumn(4).getString();
  s.owners = q.getColumn(5).getString();
  s.socket_count = q.getColumn(6).getInt64();
  s.capture_ms = q.getColumn(7).getInt64();
  s.kernel = opt_text(q.getColumn(8));
  s.port_range_low = opt_int(q.getColumn(9));
  s.port_range_high = opt_int(q.getColumn(10));
  return s;
}

// Fills the per-state counts of snapshots sorted by id, in one range scan of state_counts.
void fill_counts(SQLite::Database& db, std::vector<SnapshotSummary>& snapshots) {
  if (snapshots.empty()) {
    return;
  }
  std::unordered_map<std::int64_t, SnapshotSummary*> by_id;
  std::int64_t lo = snapshots.front().id;
  std::int64_t hi = lo;
  for (auto& s : snapshots) {
    by_id[s.id] = &s;
    lo = std::min(lo, s.id);
    hi = std::max(hi, s.id);
  }
  SQLite::Statement q(db,
                      "SELECT snapshot_id, proto, state, count FROM state_counts WHERE snapshot_id BETWEEN ? AND ?");
  q.bind(1, lo);
  q.bind(2, hi);
  while (q.executeStep()) {
    const auto it = by_id.find(q.getColumn(0).getInt64());
    if (it != by_id.end()) {
      it->second->counts[q.getColumn(1).getString() + " " + q.getColumn(2).getString()] = q.getColumn(3).getInt64();
    }
  }
}

// The snapshot the statement's current row describes, with its per-state counts.
SnapshotSummary summary_with_counts(SQLite::Database& db, SQLite::Statement& q) {
  std::vector<SnapshotSummary> one{read_summary(q)};
  fill_counts(db, one);
  return one.front();
}

// The snapshots' ids, for replay_counters.
template <class Visit>
void replay_counters(SQLite::Database& db, const Scope& scope, const std::vector<SnapshotSummary>& snapshots,
                     Visit visit) {
  std::vector<std::int64_t> ids;
  ids.reserve(snapshots.size());
  for (const auto& s : snapshots) {
    ids.push_back(s.id);
  }
  replay_counters(db, scope.netns_id, ids, visit);
}

std::int64_t bucket_start(std::int64_t time_ms, std::int64_t bucket_ms) {
  std::int64_t b = time_ms / bucket_ms;
  if (time_ms % bucket_ms < 0) {
    --b;
  }
  return b * bucket_ms;
}

// Empty buckets from since to until, each marked as a gap until a snapshot lands in it.
Trend empty_trend(std::int64_t since_ms, std::int64_t until_ms, std::int64_t bucket_ms) {
  Trend t;
  t.bucket_ms = bucket_ms;
  for (std::int64_t start = bucket_start(since_ms, bucket_ms); start <= until_ms; start += bucket_ms) {
    TrendBucket b;
    b.start_ms = start;
    b.gap = true;
    t.buckets.push_back(std::move(b));
  }
  return t;
}

std::size_t bucket_index(const Trend& t, std::int64_t time_ms) {
  return static_cast<std::size_t>((bucket_start(time_ms, t.bucket_ms) - t.buckets.front().start_ms) / t.bucket_ms);
}

// Marks buckets holding snapshots, and reboots, and sizes each bucket's values.
void place_snapshots(Trend& t, const std::vector<SnapshotSummary>& snapshots) {
  for (auto& b : t.buckets) {
    b.values.assign(t.series.size(), std::nullopt);
  }
  for (std::size_t i = 0; i < snapshots.size(); ++i) {
    const auto idx = bucket_index(t, snapshots[i].time_ms);
    if (idx >= t.buckets.size()) {
      continue;
    }
    auto& b = t.buckets[idx];
    b.gap = false;
    ++b.snapshots;
    if (i > 0 && !snapshots[i].boot_id.empty() && !snapshots[i - 1].boot_id.empty() &&
        snapshots[i].boot_id != snapshots[i - 1].boot_id) {
      b.reboot = true;
    }
  }
}

void raise(std::optional<double>& slot, double value) {
  slot = slot ? std::max(*slot, value) : value;
}

}  // namespace

std::int64_t SnapshotSummary::count(const std::string& proto, const std::string& state) const {
  const auto it = counts.find(proto + " " + state);
  return it == counts.end() ? 0 : it->second;
}

std::int64_t SnapshotSummary::proto_total(const std::string& proto) const {
  std::int64_t total = 0;
  for (const auto& [key, n] : counts) {
    if (key.starts_with(proto + " ")) {
      total += n;
    }
  }
  return total;
}

std::vector<HostSummary> list_hosts(SQLite::Database& db) {
  std::vector<HostSummary> hosts;
  std::vector<std::int64_t> ids;
  SQLite::Statement q(db,
                      "SELECT h.host_id, h.name, h.machine_id, min(s.time_ms), max(s.time_ms), count(*), "
                      "count(DISTINCT n.netns_id), count(DISTINCT s.boot_id) "
                      "FROM hosts h JOIN netns n ON n.host_id = h.host_id JOIN snapshots s ON s.netns_id = n.netns_id "
                      "GROUP BY h.host_id ORDER BY h.name");
  while (q.executeStep()) {
    HostSummary h;
    ids.push_back(q.getColumn(0).getInt64());
    h.name = q.getColumn(1).getString();
    h.machine_id = opt_text(q.getColumn(2));
    h.first_ms = q.getColumn(3).getInt64();
    h.last_ms = q.getColumn(4).getInt64();
    h.snapshots = q.getColumn(5).getInt64();
    h.namespaces = q.getColumn(6).getInt64();
    h.boots = q.getColumn(7).getInt64();
    hosts.push_back(std::move(h));
  }
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    const Scope scope = resolve_scope(db, hosts[i].name, std::nullopt);
    SQLite::Statement boots(db,
                            "SELECT time_ms FROM (SELECT time_ms, boot_id, lag(boot_id) OVER (ORDER BY snapshot_id) "
                            "AS prev FROM snapshots WHERE netns_id = ?) WHERE prev IS NOT NULL AND boot_id IS NOT NULL "
                            "AND prev <> boot_id");
    boots.bind(1, scope.netns_id);
    while (boots.executeStep()) {
      hosts[i].reboots_ms.push_back(boots.getColumn(0).getInt64());
    }
    if (const auto last = latest_snapshot(db, scope)) {
      hosts[i].last_socket_count = last->socket_count;
      hosts[i].kernel = last->kernel;
    }
  }
  return hosts;
}

Scope resolve_scope(SQLite::Database& db, const std::optional<std::string>& host,
                    const std::optional<std::string>& netns) {
  std::vector<std::pair<std::int64_t, std::string>> hosts;
  {
    SQLite::Statement q(db,
                        "SELECT host_id, name FROM hosts h WHERE EXISTS (SELECT 1 FROM netns n JOIN snapshots s ON "
                        "s.netns_id = n.netns_id WHERE n.host_id = h.host_id) ORDER BY name");
    while (q.executeStep()) {
      hosts.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getString());
    }
  }
  std::vector<std::string> names;
  for (const auto& h : hosts) {
    names.push_back(h.second);
  }
  std::int64_t host_id = 0;
  std::string host_name;
  if (host) {
    const auto it = std::find_if(hosts.begin(), hosts.end(), [&](const auto& h) { return h.second == *host; });
    if (it == hosts.end()) {
      throw Error(Exit::usage, fmt::format("--host {}: no snapshots of that host in {} (hosts: {})", *host,
                                           db.getFilename(), names.empty() ? "none" : join(names, ", ")));
    }
    host_id = it->first;
    host_name = it->second;
  } else if (hosts.empty()) {
    throw Error(Exit::usage, fmt::format("{} holds no snapshots yet: run sockhist-collect", db.getFilename()));
  } else if (hosts.size() > 1) {
    throw Error(Exit::usage, fmt::format("--host is required: {} holds {} hosts ({})", db.getFilename(), hosts.size(),
                                         join(names, ", ")));
  } else {
    host_id = hosts.front().first;
    host_name = hosts.front().second;
  }
  // Namespaces of the host that have snapshots, the initial one first, then the busiest.
  SQLite::Statement q(db,
                      "SELECT n.netns_id, n.inode, coalesce(n.name, ''), n.is_initial FROM netns n WHERE n.host_id = ? "
                      "AND EXISTS (SELECT 1 FROM snapshots s WHERE s.netns_id = n.netns_id) "
                      "ORDER BY n.is_initial DESC, (SELECT max(snapshot_id) FROM snapshots s WHERE s.netns_id = "
                      "n.netns_id) DESC");
  q.bind(1, host_id);
  std::vector<std::tuple<std::int64_t, std::string, std::string, bool>> spaces;
  while (q.executeStep()) {
    spaces.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                        q.getColumn(3).getInt() != 0);
  }
  if (netns) {
    for (const auto& [id, inode, name, initial] : spaces) {
      if (*netns == inode || (!name.empty() && *netns == name)) {
        return scope_from_netns(db, id);
      }
    }
    std::vector<std::string> known;
    for (const auto& [id, inode, name, initial] : spaces) {
      known.push_back(name.empty() ? inode : fmt::format("{} ({})", name, inode));
    }
    throw Error(Exit::usage, fmt::format("--netns {}: no such namespace of host {} (namespaces: {})", *netns, host_name,
                                         join(known, ", ")));
  }
  if (std::get<3>(spaces.front()) || spaces.size() == 1) {
    return scope_from_netns(db, std::get<0>(spaces.front()));
  }
  throw Error(Exit::usage, fmt::format("--netns is required: the host's own namespace was not recorded, only {} others",
                                       spaces.size()));
}

Scope scope_of_snapshot(SQLite::Database& db, std::int64_t snapshot_id) {
  SQLite::Statement q(db, "SELECT netns_id FROM snapshots WHERE snapshot_id = ?");
  q.bind(1, snapshot_id);
  if (!q.executeStep()) {
    throw Error(Exit::usage, fmt::format("--snapshot {}: no such snapshot in {}", snapshot_id, db.getFilename()));
  }
  return scope_from_netns(db, q.getColumn(0).getInt64());
}

std::string endpoint(const std::string& addr, std::int64_t port) {
  return addr.find(':') != std::string::npos ? fmt::format("[{}]:{}", addr, port) : fmt::format("{}:{}", addr, port);
}

std::optional<std::int64_t> state_id(SQLite::Database& db, const std::string& proto, const std::string& state) {
  SQLite::Statement q(db, "SELECT state_id FROM socket_states WHERE proto = ? AND state = ?");
  q.bind(1, proto);
  q.bind(2, state);
  if (!q.executeStep()) {
    return std::nullopt;
  }
  return q.getColumn(0).getInt64();
}

std::vector<SnapshotSummary> list_snapshots(SQLite::Database& db, const Scope& scope, std::int64_t since_ms,
                                            std::int64_t until_ms) {
  SQLite::Statement q(db, std::string(k_snapshot_columns) +
                              "WHERE netns_id = ? AND time_ms >= ? AND time_ms <= ? ORDER BY snapshot_id");
  q.bind(1, scope.netns_id);
  q.bind(2, since_ms);
  q.bind(3, until_ms);
  std::vector<SnapshotSummary> out;
  while (q.executeStep()) {
    out.push_back(read_summary(q));
  }
  fill_counts(db, out);
  return out;
}

std::optional<SnapshotSummary> snapshot_at(SQLite::Database& db, const Scope& scope, std::int64_t at_ms) {
  SQLite::Statement q(db, std::string(k_snapshot_columns) +
                              "WHERE netns_id = ? AND time_ms <= ? ORDER BY time_ms DESC, snapshot_id DESC LIMIT 1");
  q.bind(1, scope.netns_id);
  q.bind(2, at_ms);
  if (!q.executeStep()) {
    return std::nullopt;
  }
  return summary_with_counts(db, q);
}

std::optional<SnapshotSummary> latest_snapshot(SQLite::Database& db, const Scope& scope) {
  SQLite::Statement q(db, std::string(k_snapshot_columns) + "WHERE netns_id = ? ORDER BY snapshot_id DESC LIMIT 1");
  q.bind(1, scope.netns_id);
  if (!q.executeStep()) {
    return std::nullopt;
  }
  return summary_with_counts(db, q);
}

SnapshotSummary snapshot_by_id(SQLite::Database& db, std::int64_t id) {
  SQLite::Statement q(db, std::string(k_snapshot_columns) + "WHERE snapshot_id = ?");
  q.bind(1, id);
  if (!q.executeStep()) {
    throw Error(Exit::usage, fmt::format("--snapshot {}: no such snapshot in {}", id, db.getFilename()));
  }
  return summary_with_counts(db, q);
}

std::vector<SocketRow> snapshot_sockets(SQLite::Database& db, std::int64_t snapshot_id) {
  const Scope scope = scope_of_snapshot(db, snapshot_id);
  std::unordered_map<std::int64_t, std::string> users;
  {
    SQLite::Statement q(db, "SELECT uid, name FROM users WHERE host_id = ?");
    q.bind(1, scope.host_id);
    while (q.executeStep()) {
      users[q.getColumn(0).getInt64()] = q.getColumn(1).getString();
    }
  }
  SQLite::Statement q(db,
                      "SELECT proto, coalesce(family, 0), state, local_addr, coalesce(local_port, 0), "
                      "coalesce(remote_addr, ''), coalesce(remote_port, 0), tx_queue, rx_queue, timer_code, timer_ms, "
                      "retransmits, probes, uid, inode, pid, process, cmdline, owner_carried, sock_type, unix_flags, "
                      "backlog, peer_inode, cookie, first_time_ms, span_id "
                      "FROM v_snapshot_sockets WHERE snapshot_id = ? ORDER BY span_id");
  q.bind(1, snapshot_id);
  std::vector<SocketRow> rows;
  while (q.executeStep()) {
    SocketRow r;
    r.proto = q.getColumn(0).getString();
    r.family = q.getColumn(1).getInt();
    r.state = q.getColumn(2).getString();
    r.local_addr = q.getColumn(3).getString();
    r.local_port = q.getColumn(4).getInt64();
    r.remote_addr = q.getColumn(5).getString();
    r.remote_port = q.getColumn(6).getInt64();
    r.tx_queue = q.getColumn(7).getInt64();
    r.rx_queue = q.getColumn(8).getInt64();
    r.timer = q.getColumn(9).getInt();
    r.timer_ms = q.getColumn(10).getInt64();
    r.retransmits = q.getColumn(11).getInt64();
    r.probes = q.getColumn(12).getInt64();
    r.uid = q.getColumn(13).getInt64();
    if (const auto it = users.find(r.uid); it != users.end()) {
      r.user = it->second;
    }
    r.inode = static_cast<std::uint64_t>(q.getColumn(14).getInt64());
    r.pid = opt_int(q.getColumn(15));
    r.comm = opt_text(q.getColumn(16));
    r.cmdline = opt_text(q.getColumn(17));
    r.owner_carried = q.getColumn(18).getInt() != 0;
    r.sock_type = opt_text(q.getColumn(19));
    r.unix_flags = q.getColumn(20).getInt64();
    r.backlog = opt_int(q.getColumn(21));
    r.peer_inode = opt_int(q.getColumn(22));
    r.cookie = opt_int(q.getColumn(23));
    r.first_time_ms = q.getColumn(24).getInt64();
    r.span_id = q.getColumn(25).getInt64();
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<CounterValue> snapshot_counters(SQLite::Database& db, std::int64_t snapshot_id) {
  const Scope scope = scope_of_snapshot(db, snapshot_id);
  const auto names = counter_names(db);
  const auto values = store::counters_as_of(db, scope.netns_id, snapshot_id);
  std::vector<CounterValue> out;
  for (const auto& [id, n] : names) {  // counter_id order is the order the kernel first printed them
    if (const auto it = values.find(id); it != values.end()) {
      out.push_back({n.section, n.name, it->second, n.is_gauge});
    }
  }
  return out;
}

std::optional<std::int64_t> monotonic_interval_ms(const SnapshotSummary& earlier, const SnapshotSummary& later) {
  if (earlier.boot_id != later.boot_id) {
    return std::nullopt;
  }
  std::int64_t d = 0;
  if (earlier.uptime_ms && later.uptime_ms) {
    d = *later.uptime_ms - *earlier.uptime_ms;
  } else {
    d = later.time_ms - earlier.time_ms;
  }
  if (d <= 0) {
    return std::nullopt;
  }
  return d;
}

std::vector<CounterStep> counter_steps(SQLite::Database& db, const Scope& scope,
                                       const std::vector<SnapshotSummary>& snapshots,
                                       const std::vector<std::string>& counters) {
  std::map<std::int64_t, std::string> wanted;  // counter_id -> "Section.Name"
  for (const auto& [id, name] : counter_names(db)) {
    const auto full = name.section + "." + name.name;
    if (std::find(counters.begin(), counters.end(), full) != counters.end()) {
      wanted[id] = full;
    }
  }
  std::vector<CounterStep> out;
  if (wanted.empty()) {
    return out;
  }
  std::map<std::int64_t, std::int64_t> previous;  // the previous snapshot's values of the wanted counters
  replay_counters(db, scope, snapshots, [&](std::size_t i, const auto& values) {
    const auto interval = i == 0 ? std::nullopt : monotonic_interval_ms(snapshots[i - 1], snapshots[i]);
    std::map<std::int64_t, std::int64_t> now;
    for (const auto& [id, name] : wanted) {
      const auto v = values.find(id);
      if (v == values.end()) {
        continue;
      }
      now[id] = v->second;
      const auto p = previous.find(id);
      if (interval && p != previous.end()) {
        const bool reset = v->second < p->second;
        out.push_back({name, i, reset ? 0 : v->second - p->second, *interval, reset});
      }
    }
    previous = std::move(now);
  });
  return out;
}

RangeStats counter_range(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms) {
  RangeStats out;
  out.snapshots = list_snapshots(db, scope, since_ms, until_ms);
  if (out.snapshots.empty()) {
    return out;
  }
  const auto names = counter_names(db);
  std::map<std::int64_t, CounterChange> changes;
  std::unordered_map<std::int64_t, std::size_t> seen_at;  // counter_id -> index of the last snapshot holding it
  std::set<std::string> boots;
  replay_counters(db, scope, out.snapshots, [&](std::size_t i, const auto& values) {
    boots.insert(out.snapshots[i].boot_id);
    const auto interval = i == 0 ? std::nullopt : monotonic_interval_ms(out.snapshots[i - 1], out.snapshots[i]);
    if (interval) {
      out.covered_ms += *interval;
    }
    for (const auto& [id, value] : values) {
      const auto name = names.find(id);
      if (name == names.end()) {
        continue;
      }
      auto [it, fresh] = changes.try_emplace(id);
      auto& c = it->second;
      if (fresh) {
        c.section = name->second.section;
        c.name = name->second.name;
        c.is_gauge = name->second.is_gauge;
        c.first = value;
      }
      // c.last still holds the previous snapshot's value when that snapshot held the counter.
      auto [seen, first_seen] = seen_at.try_emplace(id, i);
      if (interval && !first_seen && seen->second + 1 == i && !c.is_gauge) {
        if (value >= *c.last) {
          c.delta += value - *c.last;
        } else {
          ++c.resets;
        }
      }
      seen->second = i;
      c.last = value;
      c.min = c.min ? std::min(*c.min, value) : value;
      c.max = c.max ? std::max(*c.max, value) : value;
    }
  });
  out.boots = static_cast<std::int64_t>(boots.size());
  for (auto& [id, c] : changes) {
    if (!c.is_gauge && out.covered_ms > 0) {
      c.rate_per_s = static_cast<double>(c.delta) * 1000.0 / static_cast<double>(out.covered_ms);
    }
    out.counters.push_back(std::move(c));
  }
  return out;
}

std::int64_t choose_bucket_ms(std::int64_t range_ms) {
  static constexpr std::array<std::int64_t, 14> k_ladder = {10'000,     30'000,     60'000,     300'000,    600'000,
                                                            900'000,    1'800'000,  3'600'000,  7'200'000,  10'800'000,
                                                            21'600'000, 43'200'000, 86'400'000, 604'800'000};
  for (const auto b : k_ladder) {
    if (range_ms / b <= 60) {
      return b;
    }
  }
  return k_ladder.back();
}

Trend trend_states(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                   std::int64_t bucket_ms, const std::vector<std::string>& states) {
  const auto snapshots = list_snapshots(db, scope, since_ms, until_ms);
  Trend t = empty_trend(since_ms, until_ms, bucket_ms);
  // Series keys are "proto STATE" as state_counts stores them; names are what a person reads.
  std::vector<std::string> keys;
  if (states.empty()) {
    static constexpr std::array<const char*, 11> k_order = {"ESTABLISHED", "SYN_SENT",  "SYN_RECV", "FIN_WAIT1",
                                                            "FIN_WAIT2",   "TIME_WAIT", "CLOSE",    "CLOSE_WAIT",
                                                            "LAST_ACK",    "LISTEN",    "CLOSING"};
    std::set<std::string> seen;
    for (const auto& s : snapshots) {
      for (const auto& [key, n] : s.counts) {
        seen.insert(key);
      }
    }
    for (const char* state : k_order) {
      if (seen.contains(std::string("tcp ") + state)) {
        keys.push_back(std::string("tcp ") + state);
      }
    }
    t.series = {};
    for (const auto& k : keys) {
      t.series.push_back(k.substr(4));
    }
    // UDP and UNIX as totals: their states matter less than how many there are.
    t.series.push_back("UDP");
    t.series.push_back("UNIX");
    keys.push_back("udp");
    keys.push_back("unix");
  } else {
    for (const auto& spec : states) {
      const auto colon = spec.find(':');
      const std::string proto = colon == std::string::npos ? "tcp" : spec.substr(0, colon);
      const std::string state = colon == std::string::npos ? spec : spec.substr(colon + 1);
      keys.push_back(proto + " " + state);
      t.series.push_back(colon == std::string::npos ? state : spec);
    }
  }
  t.units.assign(t.series.size(), "sockets");
  place_snapshots(t, snapshots);
  for (const auto& s : snapshots) {
    const auto idx = bucket_index(t, s.time_ms);
    if (idx >= t.buckets.size()) {
      continue;
    }
    for (std::size_t k = 0; k < keys.size(); ++k) {
      const bool total = keys[k].find(' ') == std::string::npos;
      const auto n = total ? s.proto_total(keys[k])
                           : s.count(keys[k].substr(0, keys[k].find(' ')), keys[k].substr(keys[k].find(' ') + 1));
      raise(t.buckets[idx].values[k], static_cast<double>(n));
    }
  }
  return t;
}

Trend trend_counters(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                     std::int64_t bucket_ms, const std::vector<std::string>& counters) {
  const auto names = counter_names(db);
  std::vector<std::int64_t> ids;
  std::vector<bool> gauge;
  Trend t = empty_trend(since_ms, until_ms, bucket_ms);
  for (const auto& spec : counters) {
    const auto dot = spec.find('.');
    const auto it = std::find_if(names.begin(), names.end(), [&](const auto& n) {
      return dot != std::string::npos && n.second.section == spec.substr(0, dot) &&
             n.second.name == spec.substr(dot + 1);
    });
    if (it == names.end()) {
      throw Error(Exit::usage, fmt::format("--counters {}: no such counter in {} (give Section.Name as nstat and "
                                           "/proc/net/netstat name them, for example Tcp.RetransSegs)",
                                           spec, db.getFilename()));
    }
    ids.push_back(it->first);
    gauge.push_back(it->second.is_gauge);
    t.series.push_back(spec);
    t.units.push_back(it->second.is_gauge ? "value" : "per_s");
  }
  const auto snapshots = list_snapshots(db, scope, since_ms, until_ms);
  place_snapshots(t, snapshots);
  if (snapshots.empty()) {
    return t;
  }
  // A pair of snapshots further apart than four times the usual interval spans a time the
  // collector did not run: no rate is drawn through it.
  std::vector<std::int64_t> intervals;
  for (std::size_t i = 1; i < snapshots.size(); ++i) {
    if (const auto d = monotonic_interval_ms(snapshots[i - 1], snapshots[i])) {
      intervals.push_back(*d);
    }
  }
  std::int64_t limit = 0;
  if (!intervals.empty()) {
    std::nth_element(intervals.begin(), intervals.begin() + static_cast<std::ptrdiff_t>(intervals.size() / 2),
                     intervals.end());
    limit = std::max<std::int64_t>(intervals[intervals.size() / 2] * 4, bucket_ms);
  }
  std::vector<std::vector<double>> delta(t.buckets.size(), std::vector<double>(ids.size(), 0));
  std::vector<std::vector<std::int64_t>> covered(t.buckets.size(), std::vector<std::int64_t>(ids.size(), 0));
  std::vector<std::optional<std::int64_t>> previous(ids.size());
  replay_counters(db, scope, snapshots, [&](std::size_t i, const auto& values) {
    const auto idx = bucket_index(t, snapshots[i].time_ms);
    std::optional<std::int64_t> interval;
    if (i > 0) {
      interval = monotonic_interval_ms(snapshots[i - 1], snapshots[i]);
    }
    const std::int64_t interval_ms = interval.value_or(0);
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const auto v = values.find(ids[k]);
      const std::optional<std::int64_t> value =
          v == values.end() ? std::nullopt : std::optional<std::int64_t>(v->second);
      if (idx < t.buckets.size() && value) {
        if (gauge[k]) {
          raise(t.buckets[idx].values[k], static_cast<double>(*value));
        } else if (interval_ms > 0 && interval_ms <= limit && previous[k] && *value >= *previous[k]) {
          delta[idx][k] += static_cast<double>(*value - *previous[k]);
          covered[idx][k] += interval_ms;
        }
      }
      previous[k] = value;
    }
  });
  for (std::size_t b = 0; b < t.buckets.size(); ++b) {
    for (std::size_t k = 0; k < ids.size(); ++k) {
      if (!gauge[k] && covered[b][k] > 0) {
        t.buckets[b].values[k] = delta[b][k] * 1000.0 / static_cast<double>(covered[b][k]);
      }
    }
  }
  return t;
}

namespace {

// Interns the group keys of a grouped trend: a week of TIME_WAIT on a busy host is a million
// spans with half a million peers, so one probe of a flat table per span, no allocation per key.
class KeyTable {
 public:
  std::uint32_t intern(std::string_view key) {
    if ((m_count + 1) * 2 > m_slots.size()) {
      grow();
    }
    const std::uint64_t hash = std::hash<std::string_view>{}(key);
    for (std::size_t i = hash & (m_slots.size() - 1);; i = (i + 1) & (m_slots.size() - 1)) {
      Slot& slot = m_slots[i];
      if (slot.index == k_empty) {
        slot = {hash, m_count};
        m_offsets.push_back(m_arena.size());
        m_arena.append(key);
        return m_count++;
      }
      if (slot.hash == hash && text(slot.index) == key) {
        return slot.index;
      }
    }
  }
  std::string_view text(std::uint32_t index) const {
    const std::size_t end = index + 1 < m_offsets.size() ? m_offsets[index + 1] : m_arena.size();
    return std::string_view(m_arena).substr(m_offsets[index], end - m_offsets[index]);
  }
  std::uint32_t size() const { return m_count; }

 private:
  static constexpr std::uint32_t k_empty = UINT32_MAX;
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t index = k_empty;
  };
  void grow() {
    std::vector<Slot> old = std::move(m_slots);
    m_slots.assign(std::max<std::size_t>(1024, old.size() * 2), Slot{});
    for (const Slot& slot : old) {
      if (slot.index == k_empty) {
        continue;
      }
      std::size_t i = slot.hash & (m_slots.size() - 1);
      while (m_slots[i].index != k_empty) {
        i = (i + 1) & (m_slots.size() - 1);
      }
      m_slots[i] = slot;
    }
  }
  std::vector<Slot> m_slots;
  std::vector<std::size_t> m_offsets;
  std::string m_arena;
  std::uint32_t m_count = 0;
};

}  // namespace

Trend trend_grouped(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                    std::int64_t bucket_ms, const std::string& state_spec, GroupBy by, std::size_t top) {
  const auto snapshots = list_snapshots(db, scope, since_ms, until_ms);
  Trend t = empty_trend(since_ms, until_ms, bucket_ms);
  const auto colon = state_spec.find(':');
  const std::string proto = colon == std::string::npos ? "tcp" : state_spec.substr(0, colon);
  const std::string state = colon == std::string::npos ? state_spec : state_spec.substr(colon + 1);
  // A span as the positions (in `snapshots`) of the first and last snapshot of the range it is in.
  struct Span {
    std::uint32_t first, last;
    std::uint32_t key;  // index into `keys`
  };
  std::vector<Span> spans;
  KeyTable keys;
  const auto intern = [&](std::string_view key) { return keys.intern(key); };
  const auto wanted = state_id(db, proto, state);
  if (!snapshots.empty() && wanted) {
    // Labels of the few processes and local addresses involved, looked up once each.
    std::unordered_map<std::int64_t, std::uint32_t> key_of_process, key_of_address;
    SQLite::Statement process_label(db, "SELECT pid || '/' || comm FROM processes WHERE process_id = ?");
    SQLite::Statement address_label(db, "SELECT addr FROM addresses WHERE addr_id = ?");
    const auto label_of = [&](std::unordered_map<std::int64_t, std::uint32_t>& cache, SQLite::Statement& lookup,
                              std::int64_t id) {
      if (auto it = cache.find(id); it != cache.end()) {
        return it->second;
      }
      lookup.reset();
      lookup.bind(1, id);
      const std::uint32_t key = intern(lookup.executeStep() ? lookup.getColumn(0).getText() : "-");
      cache.emplace(id, key);
      return key;
    };
    // socket_spans_by_first holds state_id: only the state's own rows are read from the table.
    SQLite::Statement q(db,
                        "SELECT first_snapshot_id, last_snapshot_id, process_id, local_port, local_addr_id, "
                        "remote_addr FROM socket_spans "
                        "WHERE netns_id = ? AND first_snapshot_id <= ? AND last_snapshot_id >= ? AND state_id = ?");
    q.bind(1, scope.netns_id);
    q.bind(2, snapshots.back().id);
    q.bind(3, snapshots.front().id);
    q.bind(4, *wanted);
    const std::uint32_t none = intern("-");
    std::vector<std::int64_t> ids;
    ids.reserve(snapshots.size());
    for (const auto& snap : snapshots) {
      ids.push_back(snap.id);
    }
    while (q.executeStep()) {
      const auto first = std::lower_bound(ids.begin(), ids.end(), q.getColumn(0).getInt64()) - ids.begin();
      const auto last = std::upper_bound(ids.begin(), ids.end(), q.getColumn(1).getInt64()) - ids.begin() - 1;
      if (first > last) {
        continue;  // between two snapshots of the range (a namespace's spans, another host's ids)
      }
      std::uint32_t key = none;
      if (by == GroupBy::process) {
        if (!q.getColumn(2).isNull()) {
          key = label_of(key_of_process, process_label, q.getColumn(2).getInt64());
        }
      } else if (by == GroupBy::local_port) {
        key = q.getColumn(3).isNull() ? label_of(key_of_address, address_label, q.getColumn(4).getInt64())
                                      : intern(std::to_string(q.getColumn(3).getInt64()));
      } else if (!q.getColumn(5).isNull()) {
        const auto column = q.getColumn(5);
        key = intern(std::string_view(column.getText(), static_cast<std::size_t>(column.getBytes())));
      }
      spans.push_back({static_cast<std::uint32_t>(first), static_cast<std::uint32_t>(last), key});
    }
  }
  // The series: the keys with the most sockets in the range, the rest summed as "other".
  std::vector<std::size_t> per_key(keys.size(), 0);
  for (const auto& s : spans) {
    ++per_key[s.key];
  }
  std::vector<std::pair<std::size_t, std::string>> ranked;
  for (std::uint32_t k = 0; k < keys.size(); ++k) {
    if (per_key[k] > 0) {
      ranked.emplace_back(per_key[k], std::string(keys.text(k)));
    }
  }
  std::sort(ranked.begin(), ranked.end(),
            [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  const bool has_other = ranked.size() > top;
  const std::size_t shown = std::min(ranked.size(), top);
  std::vector<std::size_t> series_of_key(keys.size(), shown);  // `shown` is "other"
  for (std::size_t i = 0; i < shown; ++i) {
    series_of_key[keys.intern(ranked[i].second)] = i;
    t.series.push_back(ranked[i].second);
  }
  if (has_other) {
    t.series.push_back("other");
  }
  t.units.assign(t.series.size(), "sockets");
  place_snapshots(t, snapshots);
  // Sweep: a span counts in every snapshot from its first to its last; each series keeps the
  // changes of its count per snapshot.
  const std::size_t n = snapshots.size();
  std::vector<std::int64_t> delta(t.series.size() * (n + 1), 0);
  for (const auto& span : spans) {
    const std::size_t series = series_of_key[span.key];
    ++delta[series * (n + 1) + span.first];
    --delta[series * (n + 1) + span.last + 1];
  }
  std::vector<std::int64_t> alive(t.series.size(), 0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto idx = bucket_index(t, snapshots[i].time_ms);
    for (std::size_t k = 0; k < alive.size(); ++k) {
      alive[k] += delta[k * (n + 1) + i];
      if (idx < t.buckets.size()) {
        raise(t.buckets[idx].values[k], static_cast<double>(alive[k]));
      }
    }
  }
  return t;
}

}  // namespace sockhist::query
