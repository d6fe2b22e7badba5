// One round of a push: the rows of each central table for the snapshots (after, upto] of one
// namespace, read from the source database as TabSeparated bodies. Private to analyzer/central.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace sockhist::central::detail {

// A source namespace, and where the central store files it.
struct SourceNetns {
  std::int64_t netns_id = 0;
  std::int64_t host_id = 0;
  std::string host;
  std::optional<std::string> machine_id;
  std::int64_t inode = 0;
  std::optional<std::string> name;
  bool initial = true;
  std::vector<std::int64_t> ids, times;  // its snapshots, oldest first
  std::vector<std::string> boots;
  std::string key;  // netns_key
};

// A table's rows for one round.
struct Body {
  std::string table;
  std::string columns;
  std::string rows;
  std::int64_t count = 0;
};

struct CounterName {
  std::string section, name;
  bool gauge = false;
};

// The tables a source file has beyond those of every version the store reads.
struct SourceTables {
  bool time_wait_entries = false;  // version 11
  bool connection_log = false;     // version 10
};

// Reads rounds of one namespace. The tables' rows come in the order they are to be sent: the
// snapshots last.
class RoundReader {
 public:
  RoundReader(SQLite::Database& db, const SourceNetns& netns, const std::map<std::int64_t, CounterName>& counters,
              SourceTables tables);
  // Every table's rows for the snapshots of (after, upto]: spans that ended there (their next
  // snapshot inside it), open_spans' +1 for spans first seen there and still seen at upto and -1
  // for those opened before `after` that ended there, counters, state counts, socket values,
  // TIME_WAIT entries and connection ends settled there (their next snapshot inside it), the
  // connection log's takes and aggregates, the diagnostics, the snapshots.
  std::vector<Body> read(std::int64_t after, std::int64_t upto);

 private:
  // The namespace's next snapshot after `id` (0 when none), and `id`'s time when it is one of its.
  std::int64_t next_after(std::int64_t id) const;
  std::optional<std::int64_t> time_of(std::int64_t id) const;
  void spans(std::int64_t after, std::int64_t upto, Body& closed, Body& open);
  Body counters(std::int64_t after, std::int64_t upto);
  Body state_counts(std::int64_t after, std::int64_t upto);
  Body socket_values(std::int64_t after, std::int64_t upto);
  // The rows of `sql`, which selects a snapshot id, the epoch ms of the partition key and the
  // table's other columns, bound to (netns_id, after, upto): host, key, [the snapshot after its own
  // (`settled`),] snapshot id, the key's DateTime, the other columns.
  Body by_snapshot(Body b, const std::string& sql, std::int64_t after, std::int64_t upto, bool settled);
  Body time_wait(std::int64_t after, std::int64_t upto);
  Body connection_logs(std::int64_t after, std::int64_t upto);
  Body connection_ends(std::int64_t after, std::int64_t upto);
  Body connection_aggregates(std::int64_t after, std::int64_t upto);
  Body diagnostics(std::int64_t after, std::int64_t upto);
  Body snapshots(std::int64_t after, std::int64_t upto);
  // host and netns_key, the first two fields of every row.
  void lead(Body& body) const;

  SQLite::Database& db_;
  const SourceNetns& n_;
  const std::map<std::int64_t, CounterName>& counter_names_;
  SourceTables tables_;
  std::string lead_;  // "host\tkey\t", escaped
};

}  // namespace sockhist::central::detail
