// Snapshots: their summaries, and the sockets and counters one of them recorded.
#include <algorithm>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::query {

using namespace detail;

namespace detail {

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
  // A week is 10,080 snapshots of a dozen rows each: read raw, each key built in one reused buffer.
  RawStatement q(db, "SELECT snapshot_id, proto, state, count FROM state_counts WHERE snapshot_id BETWEEN ? AND ?");
  q.bind(1, lo);
  q.bind(2, hi);
  std::string key;
  while (q.step()) {
    const auto it = by_id.find(q.integer(0));
    if (it != by_id.end()) {
      key.assign(q.text(1)).append(" ").append(q.text(2));
      it->second->counts.insert_or_assign(key, q.integer(3));
    }
  }
}

std::vector<std::int64_t> ids_of(const std::vector<SnapshotSummary>& snapshots) {
  std::vector<std::int64_t> ids;
  ids.reserve(snapshots.size());
  for (const auto& s : snapshots) {
    ids.push_back(s.id);
  }
  return ids;
}

}  // namespace detail

namespace {

// A stored protocol or state name as the model's value; a name this build does not know means a
// database written by another program (Error db_refused).
model::Proto proto_of(const std::string& text, std::int64_t snapshot_id) {
  if (const auto proto = model::proto_from_name(text)) {
    return *proto;
  }
  throw Error(Exit::db_refused, fmt::format("snapshot {}: unknown protocol '{}'", snapshot_id, text));
}
model::SockState state_of(const std::string& text, std::int64_t snapshot_id) {
  if (const auto state = model::sock_state_from_name(text)) {
    return *state;
  }
  throw Error(Exit::db_refused, fmt::format("snapshot {}: unknown socket state '{}'", snapshot_id, text));
}

// The snapshot the statement's current row describes, with its per-state counts.
SnapshotSummary summary_with_counts(SQLite::Database& db, SQLite::Statement& q) {
  std::vector<SnapshotSummary> one{read_summary(q)};
  fill_counts(db, one);
  return one.front();
}

}  // namespace

std::int64_t SnapshotSummary::count(model::Proto proto, model::SockState state) const {
  const auto it = counts.find(fmt::format("{} {}", model::name(proto), model::name(state)));
  return it == counts.end() ? 0 : it->second;
}

std::int64_t SnapshotSummary::proto_total(model::Proto proto) const {
  return proto_total(std::string(model::name(proto)));
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

std::string endpoint(const std::string& addr, std::int64_t port) {
  return addr.find(':') != std::string::npos ? fmt::format("[{}]:{}", addr, port) : fmt::format("{}:{}", addr, port);
}

std::string program(std::int32_t pid, const std::string& comm, const char* unknown) {
  return pid == 0 ? std::string(unknown) : fmt::format("{}/{}", pid, comm);
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

std::optional<std::int64_t> state_id(SQLite::Database& db, model::Proto proto, model::SockState state) {
  return state_id(db, std::string(model::name(proto)), std::string(model::name(state)));
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

std::optional<std::int64_t> usual_interval_ms(SQLite::Database& db, const Scope& scope,
                                              std::optional<std::int64_t> up_to_id) {
  SQLite::Statement q(db,
                      "SELECT time_ms FROM snapshots WHERE netns_id = ? AND snapshot_id <= ? "
                      "ORDER BY snapshot_id DESC LIMIT 21");
  q.bind(1, scope.netns_id);
  q.bind(2, up_to_id.value_or(INT64_MAX));
  std::vector<std::int64_t> times;
  while (q.executeStep()) {
    times.push_back(q.getColumn(0).getInt64());
  }
  return model::usual_interval_ms(std::move(times));
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
  RawStatement q(db,
                 "SELECT proto, coalesce(family, 0), state, local_addr, coalesce(local_port, 0), "
                 "coalesce(remote_addr, ''), coalesce(remote_port, 0), tx_queue, rx_queue, timer_code, timer_ms, "
                 "retransmits, probes, uid, inode, pid, process, cmdline, owner_carried, sock_type, unix_flags, "
                 "backlog, peer_inode, cookie, first_time_ms, span_id FROM (" +
                     store::snapshot_sockets_select(detail::spans_index(db, scope, snapshot_id, snapshot_id)) +
                     ") WHERE snapshot_id = ?");
  q.bind(1, snapshot_id);
  std::vector<SocketRow> rows;
  {
    SQLite::Statement count(db, "SELECT socket_count FROM snapshots WHERE snapshot_id = ?");
    count.bind(1, snapshot_id);
    if (count.executeStep()) {
      rows.reserve(static_cast<std::size_t>(std::max<std::int64_t>(0, count.getColumn(0).getInt64())));
    }
  }
  const auto text = [&](int column) { return std::string(q.text(column)); };
  const auto text_or_null = [&](int column) { return q.null(column) ? std::nullopt : std::optional(text(column)); };
  const auto int_or_null = [&](int column) { return q.null(column) ? std::nullopt : std::optional(q.integer(column)); };
  while (q.step()) {
    SocketRow& r = rows.emplace_back();
    r.proto = proto_of(text(0), snapshot_id);
    r.family = static_cast<int>(q.integer(1));
    r.state = state_of(text(2), snapshot_id);
    r.local_addr = text(3);
    r.local_port = q.integer(4);
    r.remote_addr = text(5);
    r.remote_port = q.integer(6);
    r.tx_queue = q.integer(7);
    r.rx_queue = q.integer(8);
    r.timer = static_cast<model::TimerKind>(q.integer(9));
    r.timer_ms = q.integer(10);
    r.retransmits = q.integer(11);
    r.probes = q.integer(12);
    r.uid = q.integer(13);
    if (const auto it = users.find(r.uid); it != users.end()) {
      r.user = it->second;
    }
    r.inode = static_cast<std::uint64_t>(q.integer(14));
    r.pid = int_or_null(15);
    r.comm = text_or_null(16);
    r.cmdline = text_or_null(17);
    r.owner_carried = q.integer(18) != 0;
    r.sock_type = text_or_null(19);
    r.unix_flags = q.integer(20);
    r.backlog = int_or_null(21);
    r.peer_inode = int_or_null(22);
    r.cookie = int_or_null(23);
    r.first_time_ms = q.integer(24);
    r.span_id = q.integer(25);
  }
  // In span order, sorted here: SQLite would sort the whole wide rows in a temporary b-tree (a
  // quarter of the query's time for 10,000 sockets). The rows are moved into place along the
  // permutation's cycles: no second copy of them.
  std::vector<std::pair<std::int64_t, std::size_t>> order;
  order.reserve(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    order.emplace_back(rows[i].span_id, i);
  }
  std::sort(order.begin(), order.end());
  for (std::size_t i = 0; i < order.size(); ++i) {
    // Position i takes rows[order[i].second]; follow the cycle from i.
    if (order[i].second == i) {
      continue;
    }
    SocketRow held = std::move(rows[i]);
    std::size_t at = i;
    while (order[at].second != i) {
      const std::size_t from = order[at].second;
      rows[at] = std::move(rows[from]);
      order[at].second = at;
      at = from;
    }
    rows[at] = std::move(held);
    order[at].second = at;
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

}  // namespace sockhist::query
