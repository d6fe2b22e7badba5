// Stores captures as socket spans. A span is one socket seen in one state with one owner over an
// unbroken run of snapshots of its network namespace; an unchanged socket costs no write at all.
#include "sockhist/snapshot_writer.hpp"

#include <map>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include <sqlite3.h>

#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <fmt/format.h>

#include "sockhist/counters.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::store {

using model::Capture;
using model::Socket;
using model::SockState;

namespace {

// A TIME_WAIT socket whose time remaining exceeds what the span's first observation predicts by
// more than this is a new socket on a reused 4-tuple (DOMAIN.md: TIME_WAIT counts down from 60 s).
constexpr std::int64_t k_timewait_slack_ms = 2000;

template <class T>
void bind_optional(SQLite::Statement& stmt, int index, const std::optional<T>& value) {
  if (value) {
    stmt.bind(index, static_cast<std::int64_t>(*value));
  } else {
    stmt.bind(index);
  }
}

void bind_optional_text(SQLite::Statement& stmt, int index, const std::optional<std::string>& value) {
  if (value) {
    stmt.bind(index, *value);
  } else {
    stmt.bind(index);
  }
}

// What identifies a socket across snapshots: protocol, endpoints and inode. TIME_WAIT, request and
// orphaned sockets have inode 0 and are told apart by their endpoints.
model::Identity identity_of(const Socket& s, std::uint64_t inode) {
  return model::identity(model::name(s.proto), s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port,
                         inode);
}

// An open span as matching needs it: fixed-size, no text (a host may have 100,000 of them).
struct OpenSpan {
  std::int64_t span_id = 0;
  model::Identity id;           // protocol, endpoints, inode
  model::Identity connection;   // protocol and endpoints: links a TCP connection's states
  std::int64_t process_id = 0;  // 0: no owner (process ids start at 1)
  std::int64_t timer_ms = 0;
  std::int64_t first_time_ms = 0;
  std::int64_t cookie = 0;
  bool has_cookie = false;
  SockState state = SockState::close;
  model::Proto proto = model::Proto::tcp;
  std::uint8_t timer = 0;
  bool carried = false;
  bool matched = false;  // seen again unchanged: stays open
  bool linked = false;   // a new span already continues it

  std::optional<std::int64_t> owner() const { return process_id != 0 ? std::optional(process_id) : std::nullopt; }
  // A TCP connection (not a listener) whose later states may carry other inodes.
  bool links_connections() const { return proto == model::Proto::tcp && state != SockState::listen; }
};

struct NewSpan {
  const Socket* socket = nullptr;
  std::optional<std::int64_t> process_id;
  std::optional<std::int64_t> prev_span_id;
  bool carried = false;
};

struct CounterCache {
  std::int64_t snapshot_id = 0;  // the snapshot these values describe
  CounterValues values;
};

}  // namespace

struct SnapshotWriter::Impl {
  Impl(SQLite::Database& database, OpenSpans keep) : db(database), open_spans(keep) {}

  SQLite::Database& db;
  OpenSpans open_spans;
  std::unordered_map<std::string, std::pair<std::int64_t, std::string>> host_ids;  // name -> id, machine-id
  std::map<std::pair<std::int64_t, std::uint64_t>, std::int64_t> netns_ids;
  std::map<std::tuple<std::int64_t, std::string, std::int32_t, std::uint64_t>, std::int64_t> process_ids;
  std::unordered_map<std::string, std::int64_t> counter_ids;
  std::map<std::pair<model::Proto, std::string_view>, std::int64_t> state_ids;  // names are literals
  std::unordered_map<std::string, std::int64_t> address_ids;
  std::unordered_map<std::int64_t, CounterCache> counter_cache;  // by netns_id
  // A looping collector's open spans, by netns_id, as of the snapshot it last wrote there.
  struct OpenCache {
    std::int64_t snapshot_id = 0;
    std::vector<OpenSpan> spans;
  };
  std::unordered_map<std::int64_t, OpenCache> open_cache;
  std::set<std::tuple<std::int64_t, std::uint32_t, std::string>> users_written;
  WriteStats stats;

  void forget() {
    host_ids.clear();
    netns_ids.clear();
    process_ids.clear();
    counter_ids.clear();
    state_ids.clear();
    address_ids.clear();
    counter_cache.clear();
    open_cache.clear();
    users_written.clear();
  }

  std::int64_t ensure_host(const Capture& cap) {
    // Known with this machine-id (or none to record): no query.
    if (auto it = host_ids.find(cap.host);
        it != host_ids.end() && (!cap.machine_id || it->second.second == *cap.machine_id)) {
      return it->second.first;
    }
    SQLite::Statement select(db, "SELECT host_id, machine_id FROM hosts WHERE name = ?");
    select.bind(1, cap.host);
    std::int64_t id = 0;
    if (select.executeStep()) {
      id = select.getColumn(0).getInt64();
      const auto stored = select.getColumn(1);
      if (cap.machine_id && (stored.isNull() || stored.getString() != *cap.machine_id)) {
        SQLite::Statement update(db, "UPDATE hosts SET machine_id = ? WHERE host_id = ?");
        update.bind(1, *cap.machine_id);
        update.bind(2, id);
        update.exec();
        ++stats.rows_written;
      }
    } else {
      SQLite::Statement insert(db, "INSERT INTO hosts(name, machine_id) VALUES (?, ?)");
      insert.bind(1, cap.host);
      bind_optional_text(insert, 2, cap.machine_id);
      insert.exec();
      id = db.getLastInsertRowid();
      ++stats.rows_written;
    }
    host_ids[cap.host] = {id, cap.machine_id.value_or("")};
    return id;
  }

  std::int64_t ensure_netns(std::int64_t host_id, const Capture& cap) {
    const auto key = std::make_pair(host_id, cap.netns_inode);
    if (auto it = netns_ids.find(key); it != netns_ids.end()) {
      return it->second;
    }
    SQLite::Statement select(db, "SELECT netns_id FROM netns WHERE host_id = ? AND inode = ?");
    select.bind(1, host_id);
    select.bind(2, static_cast<std::int64_t>(cap.netns_inode));
    std::int64_t id = 0;
    if (select.executeStep()) {
      id = select.getColumn(0).getInt64();
      // A name learnt later (ip netns add after the first snapshot) is kept.
      SQLite::Statement update(db,
                               "UPDATE netns SET name = coalesce(?, name), is_initial = ? WHERE netns_id = ? AND "
                               "(name IS NOT coalesce(?, name) OR is_initial != ?)");
      bind_optional_text(update, 1, cap.netns_name);
      update.bind(2, cap.netns_initial ? 1 : 0);
      update.bind(3, id);
      bind_optional_text(update, 4, cap.netns_name);
      update.bind(5, cap.netns_initial ? 1 : 0);
      stats.rows_written += static_cast<std::size_t>(update.exec());
    } else {
      SQLite::Statement insert(db, "INSERT INTO netns(host_id, inode, name, is_initial) VALUES (?, ?, ?, ?)");
      insert.bind(1, host_id);
      insert.bind(2, static_cast<std::int64_t>(cap.netns_inode));
      bind_optional_text(insert, 3, cap.netns_name);
      insert.bind(4, cap.netns_initial ? 1 : 0);
      insert.exec();
      id = db.getLastInsertRowid();
      ++stats.rows_written;
    }
    netns_ids[key] = id;
    return id;
  }

  std::int64_t ensure_process(std::int64_t host_id, const std::string& boot_id, const model::Process& p) {
    const auto key = std::make_tuple(host_id, boot_id, p.pid, p.start_ticks);
    if (auto it = process_ids.find(key); it != process_ids.end()) {
      return it->second;
    }
    SQLite::Statement select(db,
                             "SELECT process_id FROM processes WHERE host_id = ? AND boot_id = ? AND pid = ? AND "
                             "start_ticks = ?");
    select.bind(1, host_id);
    select.bind(2, boot_id);
    select.bind(3, p.pid);
    select.bind(4, static_cast<std::int64_t>(p.start_ticks));
    std::int64_t id = 0;
    if (select.executeStep()) {
      id = select.getColumn(0).getInt64();
    } else {
      SQLite::Statement insert(db,
                               "INSERT INTO processes(host_id, boot_id, pid, start_ticks, comm, cmdline, uid, user) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
      insert.bind(1, host_id);
      insert.bind(2, boot_id);
      insert.bind(3, p.pid);
      insert.bind(4, static_cast<std::int64_t>(p.start_ticks));
      insert.bind(5, p.comm);
      bind_optional_text(insert, 6, p.cmdline);
      insert.bind(7, static_cast<std::int64_t>(p.uid));
      bind_optional_text(insert, 8, p.user);
      insert.exec();
      id = db.getLastInsertRowid();
      ++stats.rows_written;
    }
    process_ids[key] = id;
    return id;
  }

  std::int64_t ensure_counter(const model::Counter& c) {
    const std::string key = fmt::format("{}\n{}", c.section, c.name);
    if (auto it = counter_ids.find(key); it != counter_ids.end()) {
      return it->second;
    }
    SQLite::Statement select(db, "SELECT counter_id FROM counter_names WHERE section = ? AND name = ?");
    select.bind(1, c.section);
    select.bind(2, c.name);
    std::int64_t id = 0;
    if (select.executeStep()) {
      id = select.getColumn(0).getInt64();
    } else {
      SQLite::Statement insert(db, "INSERT INTO counter_names(section, name, is_gauge) VALUES (?, ?, ?)");
      insert.bind(1, c.section);
      insert.bind(2, c.name);
      insert.bind(3, c.is_gauge ? 1 : 0);
      insert.exec();
      id = db.getLastInsertRowid();
      ++stats.rows_written;
    }
    counter_ids[key] = id;
    return id;
  }

  // The socket_states row of a (proto, state) pair, made on first use.
  std::int64_t ensure_state(model::Proto proto, SockState state) {
    const auto key = std::make_pair(proto, model::name(state));
    if (auto it = state_ids.find(key); it != state_ids.end()) {
      return it->second;
    }
    SQLite::Statement insert(db,
                             "INSERT INTO socket_states(proto, state) VALUES (?1, ?2) ON CONFLICT(proto, state) "
                             "DO UPDATE SET proto = proto RETURNING state_id");
    insert.bindNoCopy(1, model::name(proto).data());
    insert.bindNoCopy(2, key.second.data());
    insert.executeStep();
    const std::int64_t id = insert.getColumn(0).getInt64();
    state_ids.emplace(key, id);
    return id;
  }

  // The addresses row of a local address or UNIX path, made on first use.
  std::int64_t ensure_address(const std::string& addr) {
    if (auto it = address_ids.find(addr); it != address_ids.end()) {
      return it->second;
    }
    SQLite::Statement select(db, "SELECT addr_id FROM addresses WHERE addr = ?");
    select.bindNoCopy(1, addr);
    std::int64_t id = 0;
    if (select.executeStep()) {
      id = select.getColumn(0).getInt64();
    } else {
      SQLite::Statement insert(db, "INSERT INTO addresses(addr) VALUES (?)");
      insert.bindNoCopy(1, addr);
      insert.exec();
      id = db.getLastInsertRowid();
      ++stats.rows_written;
    }
    address_ids.emplace(addr, id);
    return id;
  }

  // The value of every counter of a namespace as of one snapshot: a looping collector's last
  // write, else read back.
  const CounterCache& counters_before(std::int64_t netns_id, std::int64_t snapshot_id) {
    auto& cache = counter_cache[netns_id];
    if (cache.snapshot_id != snapshot_id) {
      cache.values = counters_as_of(db, netns_id, snapshot_id);
      cache.snapshot_id = snapshot_id;
    }
    return cache;
  }

  bool same_socket(const OpenSpan& open, const Socket& s, const std::optional<std::int64_t>& owner,
                   std::int64_t time_ms) const {
    if (open.state != s.state) {
      return false;
    }
    if (open.has_cookie && s.cookie && open.cookie != static_cast<std::int64_t>(*s.cookie)) {
      return false;
    }
    // A socket without an inode has no observable owner; its span keeps the carried one.
    if (s.inode != 0 && owner != open.owner()) {
      return false;
    }
    if (s.state == SockState::time_wait && open.timer == static_cast<int>(model::TimerKind::timewait)) {
      const std::int64_t expected = open.timer_ms - (time_ms - open.first_time_ms);
      if (static_cast<std::int64_t>(s.timer_ms) > expected + k_timewait_slack_ms) {
        return false;
      }
    }
    return true;
  }

  WriteStats write_one(const Capture& cap);
};

WriteStats SnapshotWriter::Impl::write_one(const Capture& cap) {
  stats = WriteStats{};
  const std::int64_t host_id = ensure_host(cap);
  const std::int64_t netns_id = ensure_netns(host_id, cap);
  const std::string boot_id = cap.boot_id.value_or("");

  struct Previous {
    std::int64_t id = 0;
    std::int64_t time_ms = 0;
    std::string boot_id;
    std::int64_t socket_count = 0;
  };
  std::optional<Previous> prev;
  {
    SQLite::Statement select(db,
                             "SELECT snapshot_id, time_ms, coalesce(boot_id, ''), socket_count FROM snapshots "
                             "WHERE netns_id = ? "
                             "ORDER BY snapshot_id DESC LIMIT 1");
    select.bind(1, netns_id);
    if (select.executeStep()) {
      prev = Previous{select.getColumn(0).getInt64(), select.getColumn(1).getInt64(), select.getColumn(2).getString(),
                      select.getColumn(3).getInt64()};
    }
  }
  // A copied tree older than what is stored cannot join the spans. A live capture is the newest by
  // definition, even when the wall clock was stepped back; uptime_ms keeps its true order.
  if (prev && cap.proc_root && cap.time_ms < prev->time_ms) {
    throw Error(Exit::bad_input,
                fmt::format("a snapshot at {} is older than the newest snapshot of host {} in this database ({}); "
                            "snapshots of one host must be added in time order",
                            model::format_iso_utc(cap.time_ms), cap.host, model::format_iso_utc(prev->time_ms)));
  }
  const bool same_boot = prev && prev->boot_id == boot_id;

  SQLite::Statement insert_snapshot(
      db,
      "INSERT INTO snapshots(netns_id, time_ms, boot_id, uptime_ms, hostname, kernel, user_hz, source, proc_root, "
      "capture_ms, tcp_fin_timeout, tcp_max_tw_buckets, port_range_low, port_range_high, tcp_tw_reuse, somaxconn, "
      "owners, socket_count, spans_opened, spans_closed, counter_rows, skipped_lines, collector_version, netns_pid) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, ?, ?, ?)");
  insert_snapshot.bind(1, netns_id);
  insert_snapshot.bind(2, cap.time_ms);
  bind_optional_text(insert_snapshot, 3, cap.boot_id);
  bind_optional(insert_snapshot, 4, cap.uptime_ms);
  insert_snapshot.bind(5, cap.hostname);
  bind_optional_text(insert_snapshot, 6, cap.kernel);
  insert_snapshot.bind(7, cap.user_hz);
  insert_snapshot.bind(8, cap.source);
  bind_optional_text(insert_snapshot, 9, cap.proc_root);
  insert_snapshot.bind(10, cap.capture_ms);
  bind_optional(insert_snapshot, 11, cap.settings.tcp_fin_timeout);
  bind_optional(insert_snapshot, 12, cap.settings.tcp_max_tw_buckets);
  bind_optional(insert_snapshot, 13, cap.settings.port_range_low);
  bind_optional(insert_snapshot, 14, cap.settings.port_range_high);
  bind_optional(insert_snapshot, 15, cap.settings.tcp_tw_reuse);
  bind_optional(insert_snapshot, 16, cap.settings.somaxconn);
  insert_snapshot.bind(17, std::string(model::name(cap.owners)));
  insert_snapshot.bind(18, static_cast<std::int64_t>(cap.skipped_lines));
  insert_snapshot.bind(19, SOCKHIST_VERSION);
  bind_optional(insert_snapshot, 20, cap.netns_pid);
  insert_snapshot.exec();
  const std::int64_t snapshot_id = db.getLastInsertRowid();
  stats.snapshot_id = snapshot_id;
  ++stats.rows_written;

  if (!cap.diagnostics.empty()) {
    SQLite::Statement insert(db, "INSERT INTO diagnostics(snapshot_id, file, line, message) VALUES (?, ?, ?, ?)");
    for (const auto& d : cap.diagnostics) {
      insert.reset();
      insert.bind(1, snapshot_id);
      insert.bind(2, d.file);
      insert.bind(3, static_cast<std::int64_t>(d.line));
      insert.bind(4, d.message);
      insert.exec();
      ++stats.rows_written;
    }
  }

  if (!cap.users.empty()) {
    SQLite::Statement upsert(db,
                             "INSERT INTO users(host_id, uid, name) VALUES (?, ?, ?) ON CONFLICT(host_id, uid) "
                             "DO UPDATE SET name = excluded.name WHERE name != excluded.name");
    for (const auto& [uid, user] : cap.users) {
      if (users_written.insert({host_id, uid, user}).second) {
        upsert.reset();
        upsert.bind(1, host_id);
        upsert.bind(2, static_cast<std::int64_t>(uid));
        upsert.bind(3, user);
        upsert.exec();
        stats.rows_written += static_cast<std::size_t>(db.getChanges());
      }
    }
  }

  std::unordered_map<std::int32_t, std::int64_t> process_of_pid;
  for (const auto& p : cap.processes) {
    process_of_pid[p.pid] = ensure_process(host_id, boot_id, p);
  }
  const auto owner_of = [&](const Socket& s) -> std::optional<std::int64_t> {
    if (s.pid == 0) {
      return std::nullopt;
    }
    const auto it = process_of_pid.find(s.pid);
    return it == process_of_pid.end() ? std::nullopt : std::optional(it->second);
  };

  // The spans still open from the previous snapshot of this namespace.
  std::vector<OpenSpan> open;
  if (prev) {
    if (!same_boot) {
      // A reboot (or a new boot_id) ends every socket of the previous boot.
      SQLite::Statement close_all(
          db, fmt::format("UPDATE socket_spans SET last_snapshot_id = ? WHERE netns_id = ? AND last_snapshot_id = {}",
                          k_span_open));
      close_all.bind(1, prev->id);
      close_all.bind(2, netns_id);
      const int closed = close_all.exec();
      stats.spans_closed += static_cast<std::size_t>(closed);
      stats.rows_written += static_cast<std::size_t>(closed);
    } else if (auto cached = open_cache.find(netns_id);
               cached != open_cache.end() && cached->second.snapshot_id == prev->id) {
      // What this writer left open last time is what the database holds: no need to read it back.
      open = std::move(cached->second.spans);
      for (auto& span : open) {
        span.matched = false;
        span.linked = false;
      }
    } else {
      SQLite::Statement select(
          db, fmt::format("SELECT sp.span_id, st.proto, coalesce(sp.family, 0), a.addr, coalesce(sp.local_port, 0), "
                          "coalesce(sp.remote_addr, ''), coalesce(sp.remote_port, 0), sp.inode, st.state, "
                          "sp.process_id, sp.owner_carried, sp.timer, sp.timer_ms, "
                          "coalesce(sp.first_time_ms, f.time_ms, 0), sp.cookie "
                          "FROM socket_spans sp JOIN socket_states st ON st.state_id = sp.state_id "
                          "JOIN addresses a ON a.addr_id = sp.local_addr_id "
                          "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
                          "WHERE sp.netns_id = ? AND sp.last_snapshot_id = {}",
                          k_span_open));
      select.bind(1, netns_id);
      open.reserve(static_cast<std::size_t>(prev->socket_count));
      while (select.executeStep()) {
        OpenSpan span;
        span.span_id = select.getColumn(0).getInt64();
        const std::string proto = select.getColumn(1).getString();
        const int family = select.getColumn(2).getInt();
        const std::string local_addr = select.getColumn(3).getString();
        const int local_port = select.getColumn(4).getInt();
        const std::string remote_addr = select.getColumn(5).getString();
        const int remote_port = select.getColumn(6).getInt();
        const auto inode = static_cast<std::uint64_t>(select.getColumn(7).getInt64());
        span.id = model::identity(proto, family, local_addr, local_port, remote_addr, remote_port, inode);
        span.connection = model::identity(proto, family, local_addr, local_port, remote_addr, remote_port, 0);
        span.proto = model::proto_from_name(proto).value_or(model::Proto::tcp);
        // A state this build does not know cannot match any socket it reads: the span closes.
        span.state = model::sock_state_from_name(select.getColumn(8).getString()).value_or(SockState::bound_inactive);
        span.process_id = select.getColumn(9).isNull() ? 0 : select.getColumn(9).getInt64();
        span.carried = select.getColumn(10).getInt() != 0;
        span.timer = static_cast<std::uint8_t>(select.getColumn(11).getInt());
        span.timer_ms = select.getColumn(12).getInt64();
        span.first_time_ms = select.getColumn(13).getInt64();
        span.has_cookie = !select.getColumn(14).isNull();
        span.cookie = span.has_cookie ? select.getColumn(14).getInt64() : 0;
        open.push_back(std::move(span));
      }
    }
  }
  std::unordered_map<std::uint64_t, std::size_t> open_by_key;
  open_by_key.reserve(open.size());
  for (std::size_t i = 0; i < open.size(); ++i) {
    open_by_key.emplace(open[i].id.hash, i);
  }

  // Match every socket against the open spans: unchanged ones cost nothing.
  std::vector<NewSpan> fresh;
  std::vector<std::size_t> unlinked;  // indexes into `fresh` still looking for a previous state
  for (const Socket& s : cap.sockets) {
    const auto owner = owner_of(s);
    const auto id = identity_of(s, s.inode);
    const auto it = open_by_key.find(id.hash);
    if (it != open_by_key.end() && open[it->second].id == id && !open[it->second].matched && !open[it->second].linked) {
      OpenSpan& span = open[it->second];
      if (same_socket(span, s, owner, cap.time_ms)) {
        span.matched = true;
        continue;
      }
      NewSpan next{&s, owner, std::nullopt, false};
      const bool reused_tuple = span.state == s.state;  // same state, so TIME_WAIT reuse or a new owner
      if (!(reused_tuple && s.state == SockState::time_wait)) {
        next.prev_span_id = span.span_id;
        span.linked = true;
        if (s.inode == 0 && !owner && span.owner()) {
          next.process_id = span.owner();
          next.carried = true;
        }
      }
      fresh.push_back(next);
      continue;
    }
    fresh.push_back(NewSpan{&s, owner, std::nullopt, false});
    if (s.proto == model::Proto::tcp && s.state != SockState::listen) {
      unlinked.push_back(fresh.size() - 1);
    }
  }

  // A TCP connection changes inode when it is orphaned or becomes a TIME_WAIT minisocket: link it
  // to its previous state by endpoints, and carry the owner forward (no other tool can).
  if (!unlinked.empty()) {
    std::unordered_map<std::uint64_t, std::size_t> ending_by_connection;
    for (std::size_t i = 0; i < open.size(); ++i) {
      const OpenSpan& span = open[i];
      if (!span.matched && !span.linked && span.links_connections()) {
        ending_by_connection.emplace(span.connection.hash, i);
      }
    }
    for (const std::size_t index : unlinked) {
      NewSpan& next = fresh[index];
      const auto connection = identity_of(*next.socket, 0);
      const auto it = ending_by_connection.find(connection.hash);
      if (it == ending_by_connection.end() || open[it->second].linked || open[it->second].connection != connection) {
        continue;
      }
      OpenSpan& span = open[it->second];
      span.linked = true;
      next.prev_span_id = span.span_id;
      if (next.socket->inode == 0 && !next.process_id && span.owner()) {
        next.process_id = span.owner();
        next.carried = true;
      }
    }
  }

  open_by_key = {};

  // Spans whose socket is gone (or changed) end at the previous snapshot.
  if (prev) {
    SQLite::Statement close(db, "UPDATE socket_spans SET last_snapshot_id = ? WHERE span_id = ?");
    for (const OpenSpan& span : open) {
      if (span.matched) {
        continue;
      }
      close.reset();
      close.bind(1, prev->id);
      close.bind(2, span.span_id);
      close.exec();
      ++stats.spans_closed;
      ++stats.rows_written;
    }
  }

  // The spans open after this snapshot: those that continued, and those it opens.
  const bool remember = open_spans == OpenSpans::remember;
  std::vector<OpenSpan> still_open;
  if (remember) {
    still_open.reserve(open.size() + fresh.size());
    for (auto& span : open) {
      if (span.matched) {
        still_open.push_back(std::move(span));
      }
    }
  }
  open = {};  // what matching needed is done: give the memory back before the inserts
  // Values are bound without copying: the names are string literals and the addresses live in the
  // capture until the row is written.
  SQLite::Statement insert_span(
      db,
      "INSERT INTO socket_spans(netns_id, first_snapshot_id, prev_span_id, state_id, family, local_addr_id, "
      "local_port, remote_addr, remote_port, tx_queue, rx_queue, timer, timer_ms, retransmits, probes, "
      "uid, inode, cookie, backlog, peer_inode, sock_type, unix_flags, process_id, owner_carried) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (const NewSpan& next : fresh) {
    const Socket& s = *next.socket;
    const bool is_unix = s.proto == model::Proto::unix_domain;
    insert_span.reset();
    insert_span.bind(1, netns_id);
    insert_span.bind(2, snapshot_id);
    bind_optional(insert_span, 3, next.prev_span_id);
    insert_span.bind(4, ensure_state(s.proto, s.state));
    if (is_unix) {
      insert_span.bind(5);
    } else {
      insert_span.bind(5, s.family);
    }
    insert_span.bind(6, ensure_address(s.local_addr));
    if (is_unix) {
      insert_span.bind(7);
      insert_span.bind(8);
      insert_span.bind(9);
    } else {
      insert_span.bind(7, s.local_port);
      insert_span.bindNoCopy(8, s.remote_addr);
      insert_span.bind(9, s.remote_port);
    }
    insert_span.bind(10, static_cast<std::int64_t>(s.tx_queue));
    insert_span.bind(11, static_cast<std::int64_t>(s.rx_queue));
    insert_span.bind(12, static_cast<int>(s.timer));
    insert_span.bind(13, static_cast<std::int64_t>(s.timer_ms));
    insert_span.bind(14, static_cast<std::int64_t>(s.retransmits));
    insert_span.bind(15, static_cast<std::int64_t>(s.probes));
    insert_span.bind(16, static_cast<std::int64_t>(s.uid));
    insert_span.bind(17, static_cast<std::int64_t>(s.inode));
    bind_optional(insert_span, 18, s.cookie);
    bind_optional(insert_span, 19, s.backlog);
    bind_optional(insert_span, 20, s.peer_inode);
    if (is_unix) {
      insert_span.bindNoCopy(21, model::name(s.unix_type).data());
      insert_span.bind(22, static_cast<std::int64_t>(s.unix_flags));
    } else {
      insert_span.bind(21);
      insert_span.bind(22);
    }
    bind_optional(insert_span, 23, next.process_id);
    // A merge names owners the input had carried forward: they stay marked as carried.
    const auto index = static_cast<std::size_t>(next.socket - cap.sockets.data());
    const bool carried = next.carried || (index < cap.owner_carried.size() && cap.owner_carried[index] != 0);
    insert_span.bind(24, carried ? 1 : 0);
    insert_span.exec();
    ++stats.spans_opened;
    ++stats.rows_written;
    if (!remember) {
      continue;
    }
    OpenSpan opened;
    opened.span_id = db.getLastInsertRowid();
    opened.id = identity_of(s, s.inode);
    opened.connection = identity_of(s, 0);
    opened.proto = s.proto;
    opened.state = s.state;
    opened.process_id = next.process_id.value_or(0);
    opened.carried = carried;
    opened.timer = static_cast<std::uint8_t>(s.timer);
    opened.timer_ms = s.timer_ms;
    opened.first_time_ms = cap.time_ms;
    opened.has_cookie = s.cookie.has_value();
    opened.cookie = static_cast<std::int64_t>(s.cookie.value_or(0));
    still_open.push_back(std::move(opened));
  }
  if (remember) {
    open_cache[netns_id] = OpenCache{snapshot_id, std::move(still_open)};
  }

  // Per-state counts, so that trends never need to reconstruct snapshots.
  std::map<std::pair<std::string_view, std::string_view>, std::int64_t> counts;
  for (const Socket& s : cap.sockets) {
    ++counts[{model::name(s.proto), model::name(s.state)}];
  }
  SQLite::Statement insert_count(db, "INSERT INTO state_counts(snapshot_id, proto, state, count) VALUES (?, ?, ?, ?)");
  for (const auto& [key, count] : counts) {
    insert_count.reset();
    insert_count.bind(1, snapshot_id);
    insert_count.bind(2, std::string(key.first));
    insert_count.bind(3, std::string(key.second));
    insert_count.bind(4, count);
    insert_count.exec();
    ++stats.rows_written;
  }

  // Counters: in full on the first snapshot of a boot, afterwards only those that changed, and a
  // NULL for a counter that disappeared.
  CounterCache previous_values;
  if (prev) {
    previous_values = counters_before(netns_id, prev->id);
  }
  CounterCache current;
  current.snapshot_id = snapshot_id;
  SQLite::Statement insert_value(
      db, "INSERT INTO counter_values(netns_id, counter_id, snapshot_id, value) VALUES (?, ?, ?, ?)");
  const auto store_value = [&](std::int64_t counter_id, std::optional<std::int64_t> value) {
    insert_value.reset();
    insert_value.bind(1, netns_id);
    insert_value.bind(2, counter_id);
    insert_value.bind(3, snapshot_id);
    bind_optional(insert_value, 4, value);
    insert_value.exec();
    ++stats.counter_rows;
    ++stats.rows_written;
  };
  for (const auto& c : cap.counters) {
    const std::int64_t id = ensure_counter(c);
    if (current.values.contains(id)) {
      continue;  // the same counter from two files: keep the first
    }
    current.values[id] = c.value;
    const auto before = previous_values.values.find(id);
    if (!same_boot || before == previous_values.values.end() || before->second != c.value) {
      store_value(id, c.value);
    }
  }
  for (const auto& previous : previous_values.values) {
    if (const std::int64_t id = previous.first; !current.values.contains(id)) {
      store_value(id, std::nullopt);
    }
  }
  counter_cache[netns_id] = std::move(current);

  stats.sockets = cap.sockets.size();
  SQLite::Statement finish(db,
                           "UPDATE snapshots SET socket_count = ?, spans_opened = ?, spans_closed = ?, "
                           "counter_rows = ? WHERE snapshot_id = ?");
  finish.bind(1, static_cast<std::int64_t>(stats.sockets));
  finish.bind(2, static_cast<std::int64_t>(stats.spans_opened));
  finish.bind(3, static_cast<std::int64_t>(stats.spans_closed));
  finish.bind(4, static_cast<std::int64_t>(stats.counter_rows));
  finish.bind(5, snapshot_id);
  finish.exec();
  return stats;
}

SnapshotWriter::SnapshotWriter(SQLite::Database& db, OpenSpans open_spans)
    : m_impl(std::make_unique<Impl>(db, open_spans)) {}

SnapshotWriter::~SnapshotWriter() = default;

void SnapshotWriter::forget_removable_ids() {
  m_impl->process_ids.clear();
  m_impl->address_ids.clear();
}

WriteStats SnapshotWriter::write(const model::Capture& capture) {
  return write_all({capture}).front();
}

std::vector<WriteStats> SnapshotWriter::write_all(const std::vector<model::Capture>& captures) {
  try {
    auto& db = m_impl->db;
    const std::int64_t page_size = db.execAndGet("PRAGMA page_size").getInt64();
    const std::int64_t pages_before = db.execAndGet("PRAGMA page_count").getInt64();
    int current = 0;
    int highest = 0;
    // Pages written to the WAL by this connection: reset now, read after the commit.
    sqlite3_db_status(db.getHandle(), SQLITE_DBSTATUS_CACHE_WRITE, &current, &highest, 1);
    std::vector<WriteStats> results;
    SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
    for (const auto& capture : captures) {
      results.push_back(m_impl->write_one(capture));
    }
    transaction.commit();
    sqlite3_db_status(db.getHandle(), SQLITE_DBSTATUS_CACHE_WRITE, &current, &highest, 1);
    const std::int64_t growth = (db.execAndGet("PRAGMA page_count").getInt64() - pages_before) * page_size;
    for (auto& stats : results) {
      stats.bytes_written = static_cast<std::int64_t>(current) * page_size;
      stats.db_growth = growth;
    }
    return results;
  } catch (...) {
    // The transaction rolled back: ids cached during it may not exist.
    m_impl->forget();
    throw;
  }
}

}  // namespace sockhist::store
