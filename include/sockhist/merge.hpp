// Copying history between sockhist databases: merge (many files into one, again and again, adding
// nothing twice) and export (a consistent copy of a database a collector may be writing).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <SQLiteCpp/Database.h>

namespace sockhist::store {

// Opens another sockhist database to copy from, read-only, after checking it: a sockhist file of
// this build's schema version whose PRAGMA quick_check passes. Throws Error(db_refused) naming the
// file and the reason (missing, not SQLite, foreign, older or newer, corrupt).
SQLite::Database open_input(const std::filesystem::path& path);

// What to copy: one host (by name), snapshots in [since_ms, until_ms].
struct CopyFilter {
  std::optional<std::string> host;
  std::optional<std::int64_t> since_ms, until_ms;
  // Input host name -> the output host it is written as (merge --join FROM=TO). Nothing else ever
  // renames a host.
  std::map<std::string, std::string> join;
};

struct MergeStats {
  std::int64_t hosts = 0;             // hosts of the input that had something to copy or already copied
  std::int64_t namespaces = 0;        // network namespaces looked at
  std::int64_t added = 0;             // snapshots written to the output
  std::int64_t present = 0;           // snapshots the output already held (same host, namespace, time)
  std::int64_t too_old = 0;           // older than the output's newest of their namespace, not held: left out
  std::int64_t filtered = 0;          // outside the filter
  std::vector<std::string> warnings;  // hosts kept apart that share a machine-id, one line each
};

// Copies into `output` (open for writing, its writer lock held) every snapshot of `input` that the
// output does not hold, host by host and namespace by namespace, in time order: each snapshot is
// rebuilt from the input's spans, processes and counters and written through SnapshotWriter, so
// the output's spans, owners and counters are what a collector would have written (one
// transaction per snapshot). A host keeps its name (or the one filter.join gives it): two names
// are never joined because they share a machine-id (cloned images and containers share them),
// which only adds a warning. One name with two different machine-ids is refused (Error
// db_refused) before anything is written, as is a filter naming a host the input does not hold.
// `progress(done, total)` is called after each snapshot.
// With plan_only nothing is written: the checks run and `added` counts what would be.
MergeStats merge_into(SQLite::Database& output, SQLite::Database& input, const std::string& input_name,
                      const CopyFilter& filter = {},
                      const std::function<void(std::int64_t, std::int64_t)>& progress = {}, bool plan_only = false);

}  // namespace sockhist::store
