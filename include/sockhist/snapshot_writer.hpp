// Writes captures into the store as socket spans: one transaction per snapshot, and writes in
// proportion to what changed, not to how many sockets exist.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "sockhist/model.hpp"

namespace sockhist::store {

// What one snapshot wrote.
struct WriteStats {
  std::int64_t snapshot_id = 0;
  std::size_t sockets = 0;         // sockets in the snapshot
  std::size_t spans_opened = 0;    // sockets that appeared or changed state or owner
  std::size_t spans_closed = 0;    // sockets that disappeared or changed
  std::size_t counter_rows = 0;    // counters that changed (all of them on a first or post-reboot snapshot)
  std::size_t value_rows = 0;      // sockets that kept their span but changed queues, timer or retransmits
  std::size_t rows_written = 0;    // every row inserted or updated, the snapshot's own included
  std::int64_t bytes_written = 0;  // database pages the transaction wrote (to the WAL), in bytes
  std::int64_t db_growth = 0;      // how much the database grew, in bytes
};

// Whether a writer keeps the open spans it leaves in memory for its next snapshot (a looping
// collector: no need to read them back) or lets them go (a single run: nothing to come).
enum class OpenSpans { remember, forget };

// Keeps prepared statements and caches across the snapshots of a looping collector.
class SnapshotWriter {
 public:
  explicit SnapshotWriter(SQLite::Database& db, OpenSpans open_spans = OpenSpans::remember);
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  // Stores one capture in a single BEGIN IMMEDIATE transaction: a snapshot row, new spans for
  // sockets that appeared or changed, closure of spans whose socket is gone, per-state counts and
  // the counters that changed. A copied tree (proc_root set) older than the newest snapshot of its
  // host and network namespace is refused (Error bad_input): spans need snapshots in time order.
  WriteStats write(const model::Capture& capture);

  // Stores several captures (the namespaces of one run) in one transaction. bytes_written and
  // db_growth of each result are those of the whole transaction.
  std::vector<WriteStats> write_all(const std::vector<model::Capture>& captures);

  // A sieve for a live capture about to read its sockets (capture::CaptureOptions::sieve_for):
  // given the capture's host, boot and namespace (and, through know_owners, the processes its
  // owner scan found), it leaves
  // out each socket that the namespace's open span holds unchanged (same identity, state, owner
  // and values), so that write() then handles only the rest and counts those it left out. Null
  // when there is nothing to compare with (no snapshot of this namespace and boot yet), or when
  // telling the namespace apart would need the capture's counters (no namespace cookie). Reads the
  // database only, outside any transaction: the writer lock keeps it unchanged until write().
  std::shared_ptr<model::SocketSieve> sieve_for(const model::Capture& facts);

  // Forgets the row ids of processes and addresses it has cached: call after apply_retention has
  // removed snapshots, since it deletes the processes and addresses no span refers to any more.
  void forget_removable_ids();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// Removes snapshots older than cutoff_ms (epoch ms) in transactions of at most `batch` snapshots,
// keeping spans of sockets that are still alive and the counter values later snapshots need.
// `progress`, when given, is called after each batch with the number removed so far. Returns how
// many snapshots were removed.
std::size_t apply_retention(SQLite::Database& db, std::int64_t cutoff_ms, std::size_t batch = 500,
                            const std::function<void(std::size_t)>& progress = {});

}  // namespace sockhist::store
