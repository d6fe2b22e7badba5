// Stores captures as socket spans. A span is one socket seen in one state with one owner over an
// unbroken run of snapshots of its network namespace; an unchanged socket costs no write at all.
// This file holds one snapshot's phases and the public API; writer_ids.cpp and writer_spans.cpp
// the rest (writer_impl.hpp says which is where).
#include <sqlite3.h>

#include <SQLiteCpp/Transaction.h>
#include <fmt/format.h>

#include "sockhist/bounds.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"
#include "writer_impl.hpp"

namespace sockhist::store {

using writer::bind_optional;
using writer::bind_optional_text;

SnapshotWriter::Impl::Impl(SQLite::Database& database, OpenSpans keep)
    : db(database),
      open_spans(keep),
      select_previous(db,
                      "SELECT snapshot_id, time_ms, coalesce(boot_id, ''), socket_count, netns_cookie FROM snapshots "
                      "WHERE netns_id = ? ORDER BY snapshot_id DESC LIMIT 1"),
      insert_snapshot_row(
          db,
          "INSERT INTO snapshots(netns_id, time_ms, boot_id, uptime_ms, hostname, kernel, user_hz, source, "
          "proc_root, capture_ms, tcp_fin_timeout, tcp_max_tw_buckets, port_range_low, port_range_high, "
          "tcp_tw_reuse, somaxconn, owners, socket_count, spans_opened, spans_closed, counter_rows, skipped_lines, "
          "collector_version, netns_pid, netns_cookie) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, ?, ?, ?, ?)"),
      insert_diagnostic(db, "INSERT INTO diagnostics(snapshot_id, file, line, message) VALUES (?, ?, ?, ?)"),
      upsert_user(db,
                  "INSERT INTO users(host_id, uid, name) VALUES (?, ?, ?) ON CONFLICT(host_id, uid) "
                  "DO UPDATE SET name = excluded.name WHERE name != excluded.name"),
      close_span(db, "UPDATE socket_spans SET last_snapshot_id = ? WHERE span_id = ?"),
      insert_span(db,
                  "INSERT INTO socket_spans(netns_id, first_snapshot_id, prev_span_id, state_id, family, "
                  "local_addr_id, local_port, remote_addr, remote_port, tx_queue, rx_queue, timer, timer_ms, "
                  "retransmits, probes, uid, inode, cookie, backlog, peer_inode, sock_type, unix_flags, process_id, "
                  "owner_carried) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      insert_values(db,
                    "INSERT INTO socket_values(span_id, snapshot_id, tx_queue, rx_queue, timer, timer_expires_ms, "
                    "retransmits, probes, backlog) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      insert_count(db, "INSERT INTO state_counts(snapshot_id, proto, state, count) VALUES (?, ?, ?, ?)"),
      insert_value(db, "INSERT INTO counter_values(netns_id, counter_id, snapshot_id, value) VALUES (?, ?, ?, ?)"),
      finish_snapshot(db,
                      "UPDATE snapshots SET socket_count = ?, spans_opened = ?, spans_closed = ?, "
                      "counter_rows = ?, value_rows = ? WHERE snapshot_id = ?"),
      // The TIME_WAIT spans a snapshot opened, and those the ends stored with it or the one before
      // were joined to (a late join dates a span the previous snapshot opened).
      write_time_wait_entries(
          db, time_wait_entries_sql("sp.span_id IN (SELECT span_id FROM socket_spans WHERE netns_id = ?1 "
                                    "AND first_snapshot_id = ?2 UNION SELECT time_wait_span_id FROM connection_ends "
                                    "WHERE snapshot_id IN (?2, ?3) AND time_wait_span_id IS NOT NULL)")) {}

void SnapshotWriter::Impl::forget() {
  host_ids.clear();
  netns_ids.clear();
  process_ids.clear();
  counter_ids.clear();
  state_ids.clear();
  address_ids.clear();
  counter_cache.clear();
  open_cache.clear();
  closed_cache.clear();
  waiting_for_time_wait.clear();
  users_written.clear();
}

WriteStats SnapshotWriter::Impl::write_one(const Capture& cap) {
  stats = WriteStats{};
  const std::int64_t host_id = ensure_host(cap);
  const std::int64_t netns_id = ensure_netns(host_id, cap);
  const auto prev = previous_snapshot(netns_id);
  // A copied tree older than what is stored cannot join the spans. A live capture is the newest by
  // definition, even when the wall clock was stepped back; uptime_ms keeps its true order.
  if (prev && cap.proc_root && cap.time_ms < prev->time_ms) {
    throw Error(Exit::bad_input,
                fmt::format("a snapshot at {} is older than the newest snapshot of host {} in this database ({}); "
                            "snapshots of one host must be added in time order",
                            model::format_iso_utc(cap.time_ms), cap.host, model::format_iso_utc(prev->time_ms)));
  }
  const bool same_boot = prev && prev->boot_id == cap.boot_id.value_or("");
  // A sieve compared the capture with these very open spans: nothing can have moved them since
  // (the writer lock), and if something had, its verdicts would be wrong, so that is refused.
  auto* sieve = dynamic_cast<writer::Sieve*>(cap.sieve.get());
  if (cap.sieve &&
      (sieve == nullptr || sieve->netns_id() != netns_id || !prev || !same_boot || sieve->previous_id() != prev->id)) {
    throw Error(Exit::failure, fmt::format("the capture of host {} was sieved against other open spans than those "
                                           "stored now; nothing was written",
                                           cap.host));
  }
  const std::int64_t snapshot_id = insert_snapshot(cap, netns_id);
  write_diagnostics(cap, snapshot_id);
  write_users(cap, host_id);
  const auto process_of_pid = write_processes(cap, host_id);
  std::vector<OpenSpan> open;
  writer::OpenIndex open_by_key;
  if (sieve != nullptr) {
    open = sieve->take_open();
    open_by_key = sieve->take_index();
  } else if (prev) {
    open = open_spans_before(netns_id, *prev, same_boot);
    open_by_key = writer::OpenIndex(open);
  }
  auto matching = match_sockets(cap, open, open_by_key, process_of_pid);
  open_by_key = {};
  link_by_connection(open, matching);
  // The ends heard are joined to the spans alive before this snapshot, then to those it opens.
  std::optional<writer::EndJoin> join;
  if (cap.connections && !cap.connections->ends.empty()) {
    join.emplace(cap.connections->ends);
    if (const auto closed = closed_cache.find(netns_id);
        closed != closed_cache.end() && prev && closed->second.snapshot_id == prev->id) {
      join->look(closed->second.spans, writer::SpanAge::closed_before);
    }
    join->look(open, writer::SpanAge::alive_before);
  }
  if (prev) {
    close_ended(open, *prev);
  }
  if (cap.connections) {  // only a looping collector listens: it has a next snapshot to join them in
    auto& closed = closed_cache[netns_id];
    closed.snapshot_id = snapshot_id;
    closed.spans.clear();
    for (const auto& span : open) {
      if (!span.matched && span.proto != model::Proto::unix_domain && span.state != SockState::time_wait) {
        closed.spans.push_back(span);
      }
    }
  }
  write_values(cap, snapshot_id, open, matching);
  write_spans(cap, netns_id, snapshot_id, std::move(open), matching.fresh);
  if (cap.connections) {
    if (join) {
      join->look(opened_now, writer::SpanAge::opened_now);
    }
    link_late_time_waits(netns_id, prev, join ? &*join : nullptr);
    opened_now = {};
    write_connections(cap, netns_id, snapshot_id, prev, join ? &*join : nullptr);
  }
  write_time_wait_entries.reset();
  write_time_wait_entries.bind(1, netns_id);
  write_time_wait_entries.bind(2, snapshot_id);
  write_time_wait_entries.bind(3, prev ? prev->id : snapshot_id);
  stats.rows_written += static_cast<std::size_t>(write_time_wait_entries.exec());
  write_state_counts(cap, sieve, snapshot_id);
  write_counters(cap, netns_id, snapshot_id, prev, same_boot);
  finish(cap.sockets.size() + (sieve != nullptr ? sieve->left_out() : 0), snapshot_id);
  return stats;
}

std::optional<SnapshotWriter::Impl::Previous> SnapshotWriter::Impl::previous_snapshot(std::int64_t netns_id) {
  std::optional<Previous> prev;
  select_previous.reset();
  select_previous.bind(1, netns_id);
  if (select_previous.executeStep()) {
    prev = Previous{
        select_previous.getColumn(0).getInt64(), select_previous.getColumn(1).getInt64(),
        select_previous.getColumn(2).getString(), select_previous.getColumn(3).getInt64(),
        select_previous.getColumn(4).isNull() ? std::nullopt : std::optional(select_previous.getColumn(4).getInt64())};
  }
  select_previous.reset();  // a statement left on a row would hold its read open
  return prev;
}

std::int64_t SnapshotWriter::Impl::insert_snapshot(const Capture& cap, std::int64_t netns_id) {
  auto& q = insert_snapshot_row;
  q.reset();
  q.bind(1, netns_id);
  q.bind(2, cap.time_ms);
  bind_optional_text(q, 3, cap.boot_id);
  bind_optional(q, 4, cap.uptime_ms);
  q.bind(5, cap.hostname);
  bind_optional_text(q, 6, cap.kernel);
  q.bind(7, cap.user_hz);
  q.bind(8, cap.source);
  bind_optional_text(q, 9, cap.proc_root);
  q.bind(10, cap.capture_ms);
  bind_optional(q, 11, cap.settings.tcp_fin_timeout);
  bind_optional(q, 12, cap.settings.tcp_max_tw_buckets);
  bind_optional(q, 13, cap.settings.port_range_low);
  bind_optional(q, 14, cap.settings.port_range_high);
  bind_optional(q, 15, cap.settings.tcp_tw_reuse);
  bind_optional(q, 16, cap.settings.somaxconn);
  q.bind(17, std::string(model::name(cap.owners)));
  q.bind(18, static_cast<std::int64_t>(cap.skipped_lines));
  q.bind(19, SOCKHIST_VERSION);
  bind_optional(q, 20, cap.netns_pid);
  bind_optional(q, 21, cap.netns_cookie);
  q.exec();
  const std::int64_t snapshot_id = db.getLastInsertRowid();
  stats.snapshot_id = snapshot_id;
  ++stats.rows_written;
  return snapshot_id;
}

void SnapshotWriter::Impl::write_diagnostics(const Capture& cap, std::int64_t snapshot_id) {
  for (const auto& d : cap.diagnostics) {
    insert_diagnostic.reset();
    insert_diagnostic.bind(1, snapshot_id);
    insert_diagnostic.bind(2, d.file);
    insert_diagnostic.bind(3, static_cast<std::int64_t>(d.line));
    insert_diagnostic.bind(4, d.message);
    insert_diagnostic.exec();
    ++stats.rows_written;
  }
}

void SnapshotWriter::Impl::write_users(const Capture& cap, std::int64_t host_id) {
  for (const auto& [uid, user] : cap.users) {
    if (users_written.insert({host_id, uid, user}).second) {
      upsert_user.reset();
      upsert_user.bind(1, host_id);
      upsert_user.bind(2, static_cast<std::int64_t>(uid));
      upsert_user.bind(3, user);
      upsert_user.exec();
      stats.rows_written += static_cast<std::size_t>(db.getChanges());
    }
  }
}

std::unordered_map<std::int32_t, std::int64_t> SnapshotWriter::Impl::write_processes(const Capture& cap,
                                                                                     std::int64_t host_id) {
  std::unordered_map<std::int32_t, std::int64_t> process_of_pid;
  const std::string boot_id = cap.boot_id.value_or("");
  for (const auto& p : cap.processes) {
    process_of_pid[p.pid] = ensure_process(host_id, boot_id, p);
  }
  return process_of_pid;
}

// Per-state counts, so that trends never need to reconstruct snapshots.
void SnapshotWriter::Impl::write_state_counts(const Capture& cap, const writer::Sieve* sieve,
                                              std::int64_t snapshot_id) {
  std::map<std::pair<std::string_view, std::string_view>, std::int64_t> counts;
  for (const Socket& s : cap.sockets) {
    ++counts[{model::name(s.proto), model::name(s.state)}];
  }
  if (sieve != nullptr) {  // the sockets it left out are in the snapshot all the same
    for (const auto& [key, count] : sieve->counts()) {
      counts[{model::name(key.first), model::name(key.second)}] += count;
    }
  }
  for (const auto& [key, count] : counts) {
    insert_count.reset();
    insert_count.bind(1, snapshot_id);
    insert_count.bind(2, std::string(key.first));
    insert_count.bind(3, std::string(key.second));
    insert_count.bind(4, count);
    insert_count.exec();
    ++stats.rows_written;
  }
}

// Counters: in full on the first snapshot of a boot, afterwards only those that changed, and a
// NULL for a counter that disappeared.
void SnapshotWriter::Impl::write_counters(const Capture& cap, std::int64_t netns_id, std::int64_t snapshot_id,
                                          const std::optional<Previous>& prev, bool same_boot) {
  CounterCache previous_values;
  if (prev) {
    previous_values = counters_before(netns_id, prev->id);
  }
  CounterCache current;
  current.snapshot_id = snapshot_id;
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
}

void SnapshotWriter::Impl::finish(std::size_t sockets, std::int64_t snapshot_id) {
  stats.sockets = sockets;
  finish_snapshot.reset();
  finish_snapshot.bind(1, static_cast<std::int64_t>(stats.sockets));
  finish_snapshot.bind(2, static_cast<std::int64_t>(stats.spans_opened));
  finish_snapshot.bind(3, static_cast<std::int64_t>(stats.spans_closed));
  finish_snapshot.bind(4, static_cast<std::int64_t>(stats.counter_rows));
  finish_snapshot.bind(5, static_cast<std::int64_t>(stats.value_rows));
  finish_snapshot.bind(6, snapshot_id);
  finish_snapshot.exec();
}

SnapshotWriter::SnapshotWriter(SQLite::Database& db, OpenSpans open_spans)
    : m_impl(std::make_unique<Impl>(db, open_spans)) {}

SnapshotWriter::~SnapshotWriter() = default;

std::shared_ptr<model::SocketSieve> SnapshotWriter::sieve_for(const model::Capture& facts) {
  return m_impl->make_sieve(facts);
}

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
      // Each field within what the kernel can produce; a copy only when something was not.
      const auto bounded = model::bounded(capture);
      results.push_back(m_impl->write_one(bounded ? *bounded : capture));
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
