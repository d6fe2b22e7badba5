// The writer's row ids: hosts, namespaces, processes, counter names, states and addresses, each
// looked up or created once and cached across the snapshots of a looping collector.
#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "writer_impl.hpp"

namespace sockhist::store {

using model::SockState;
using writer::bind_optional;
using writer::bind_optional_text;

std::int64_t SnapshotWriter::Impl::ensure_host(const Capture& cap) {
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

// A namespace row continues only with the same namespace. The kernel gives a new namespace the
// inode of a deleted one, so the newest row of a (host, inode) is continued only when:
//  - both its newest snapshot and the capture have the namespace cookie, and they are equal;
//  - else (a kernel before 5.14 on one side) they are of one boot and no counter went back: a
//    namespace's counters start at zero and only grow until it dies;
//  - across a reboot, only the host's own namespace continues (it is the host); any other was
//    made anew, whatever its inode.
// The host's own namespace (PID 1's) lives as long as the kernel: it always continues. Anything
// else starts a new row, and what is recorded stays where it is.
bool SnapshotWriter::Impl::same_namespace(std::int64_t netns_id, bool initial, const Capture& cap) {
  const auto prev = previous_snapshot(netns_id);
  if (const auto known = same_namespace_by_identity(initial, cap, prev)) {
    return *known;
  }
  const auto& before = counters_before(netns_id, prev->id).values;
  for (const auto& c : cap.counters) {
    if (c.is_gauge) {
      continue;
    }
    const auto it = before.find(ensure_counter(c));
    if (it != before.end() && c.value < it->second) {
      return false;
    }
  }
  return true;
}

// The newest namespace row of a host and inode: its id and whether it is the host's own.
std::optional<std::pair<std::int64_t, bool>> SnapshotWriter::Impl::newest_netns(std::int64_t host_id,
                                                                                std::uint64_t inode) {
  SQLite::Statement select(
      db, "SELECT netns_id, is_initial FROM netns WHERE host_id = ? AND inode = ? ORDER BY netns_id DESC LIMIT 1");
  select.bind(1, host_id);
  select.bind(2, static_cast<std::int64_t>(inode));
  if (!select.executeStep()) {
    return std::nullopt;
  }
  return std::pair(select.getColumn(0).getInt64(), select.getColumn(1).getInt() != 0);
}

std::int64_t SnapshotWriter::Impl::ensure_netns(std::int64_t host_id, const Capture& cap) {
  // A looping collector meets its namespaces again: with a cookie, the cache answers.
  const auto key = std::make_tuple(host_id, cap.netns_inode, cap.netns_cookie.value_or(0));
  if (auto it = netns_ids.find(key); cap.netns_cookie && it != netns_ids.end()) {
    return it->second;
  }
  std::int64_t id = 0;
  if (const auto newest = newest_netns(host_id, cap.netns_inode);
      newest && same_namespace(newest->first, newest->second, cap)) {
    id = newest->first;
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

// The tests of same_namespace that need no counters; nullopt when only the counters can tell.
std::optional<bool> SnapshotWriter::Impl::same_namespace_by_identity(bool initial, const Capture& cap,
                                                                     const std::optional<Previous>& prev) {
  if (cap.netns_inode == 0 || (initial && cap.netns_initial)) {
    return true;  // a copied tree (no namespace identity to tell apart), or the host's own
  }
  if (!prev) {
    return true;
  }
  if (prev->boot_id != cap.boot_id.value_or("")) {
    return false;
  }
  if (prev->netns_cookie && cap.netns_cookie) {
    return static_cast<std::uint64_t>(*prev->netns_cookie) == *cap.netns_cookie;
  }
  return std::nullopt;
}

std::int64_t SnapshotWriter::Impl::ensure_process(std::int64_t host_id, const std::string& boot_id,
                                                  const model::Process& p) {
  const auto key = std::make_tuple(host_id, boot_id, p.pid, p.start_ticks);
  std::int64_t id = 0;
  if (const auto found = find_process(host_id, boot_id, p)) {
    id = *found;
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

std::int64_t SnapshotWriter::Impl::ensure_counter(const model::Counter& c) {
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
std::int64_t SnapshotWriter::Impl::ensure_state(model::Proto proto, SockState state) {
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
std::optional<std::int64_t> SnapshotWriter::Impl::find_address(const std::string& addr) {
  if (auto it = address_ids.find(addr); it != address_ids.end()) {
    return it->second;
  }
  SQLite::Statement select(db, "SELECT addr_id FROM addresses WHERE addr = ?");
  select.bindNoCopy(1, addr);
  if (select.executeStep()) {
    const std::int64_t id = select.getColumn(0).getInt64();
    address_ids.emplace(addr, id);
    return id;
  }
  return std::nullopt;
}

std::int64_t SnapshotWriter::Impl::ensure_address(const std::string& addr) {
  if (const auto found = find_address(addr)) {
    return *found;
  }
  SQLite::Statement insert(db, "INSERT INTO addresses(addr) VALUES (?)");
  insert.bindNoCopy(1, addr);
  insert.exec();
  const std::int64_t id = db.getLastInsertRowid();
  ++stats.rows_written;
  address_ids.emplace(addr, id);
  return id;
}

const SnapshotWriter::Impl::CounterCache& SnapshotWriter::Impl::counters_before(std::int64_t netns_id,
                                                                                std::int64_t snapshot_id) {
  auto& cache = counter_cache[netns_id];
  if (cache.snapshot_id != snapshot_id) {
    cache.values = counters_as_of(db, netns_id, snapshot_id);
    cache.snapshot_id = snapshot_id;
  }
  return cache;
}

}  // namespace sockhist::store
