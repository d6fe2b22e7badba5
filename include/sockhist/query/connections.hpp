// The connection log read back: the TCP and UDP sockets the kernel destroyed in a namespace, with
// their final totals, lifetimes as bounded by the snapshots and owners on the grounds stored; the
// ends summed beyond the collector's budget; and what the log covered and missed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "sockhist/query.hpp"

namespace sockhist::query {

// One socket end kept whole (v_connections).
struct ConnectionEnd {
  std::int64_t end_id = 0;
  std::int64_t time_ms = 0;  // when the announcement was read, a few ms after the end
  std::uint64_t cookie = 0;
  model::Proto proto = model::Proto::tcp;
  int family = 4;
  std::string local_addr;
  int local_port = 0;
  std::string remote_addr;
  int remote_port = 0;
  std::string end_state;                  // as the kernel gave it
  std::optional<std::string> seen_state;  // the last state a snapshot saw it in
  bool entered_time_wait = false;
  std::optional<std::int64_t> bytes_acked, bytes_received, bytes_sent, bytes_retrans;
  std::optional<std::int64_t> segs_out, segs_in, total_retrans, rtt_us, min_rtt_us;
  std::optional<std::int64_t> born_after_ms, born_by_ms;
  std::string owner_basis;  // span, listener, inferred, none
  std::optional<std::string> owner_reason;
  std::int32_t pid = 0;  // 0: no owner
  std::string comm;
  std::optional<std::string> cmdline;
  std::optional<std::string> user;

  // Lifetime bounds: at least, at most (none where unknown).
  std::optional<std::int64_t> lifetime_min_ms() const;
  std::optional<std::int64_t> lifetime_max_ms() const;
};

// Ends summed per second, local port, remote address and final state (v_connection_aggregates).
struct ConnectionAggregate {
  std::int64_t second_ms = 0;
  model::Proto proto = model::Proto::tcp;
  int family = 4;
  int local_port = 0;
  std::string remote_addr;
  std::string end_state;
  std::int64_t count = 0;
  std::int64_t bytes_acked = 0, bytes_received = 0, bytes_sent = 0, without_bytes_sent = 0, total_retrans = 0;
};

// What the log heard over the window, and where it was deaf or incomplete.
struct ConnectionCoverage {
  std::int64_t takes = 0;  // snapshots that carried a log
  std::optional<std::int64_t> since_ms, until_ms;
  std::int64_t heard = 0, stored = 0, aggregated = 0, over_bound = 0, overruns = 0, malformed = 0;
  // Stretches of the window the log does not cover: not listening, a listener that broke, or time
  // between two logs (a collector that was not looping, or stopped).
  std::vector<std::pair<std::int64_t, std::int64_t>> gaps;
  // Takes whose buffer overflowed: [since, until] and how many times.
  std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>> overrun_takes;
};

struct Connections {
  bool has_log = false;  // false: the file predates the connection log (schema version < 10)
  std::vector<ConnectionEnd> ends;
  std::vector<ConnectionAggregate> aggregates;
  ConnectionCoverage coverage;
};

// The connection log of `scope` for ends read in [since_ms, until_ms], oldest first.
Connections read_connections(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms);

}  // namespace sockhist::query
