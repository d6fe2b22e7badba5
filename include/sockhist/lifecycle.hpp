// Socket lifecycles from the stored spans: how long CLOSE_WAIT sockets stay, who owns them, and
// how fast a process leaks them. Queries only; the commands render them (analyzer/cmd_*.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "sockhist/analysis.hpp"

namespace sockhist::analysis {

// One socket's stay in CLOSE_WAIT as the snapshots bound it. The peer closed; the owner has not.
struct CloseWaitSocket {
  std::int64_t span_id = 0;  // the span of its first snapshot in CLOSE_WAIT
  std::optional<std::int64_t> process_id;
  std::int32_t pid = 0;
  std::string comm;
  std::optional<std::string> cmdline;
  std::optional<std::string> user;
  int family = 4;
  std::string local_addr;
  std::int64_t local_port = 0;
  std::string remote_addr;
  std::int64_t remote_port = 0;
  bool serves_listener = false;  // its local port was listening: the server side of a connection
  std::int64_t rx_queue = 0;     // unread bytes when first seen in CLOSE_WAIT
  std::string came_from;         // the state it was seen in before ("" when not seen before)
  // It entered CLOSE_WAIT after `entered_after_ms` (the last snapshot that did not see it in
  // CLOSE_WAIT; nullopt when the kept history begins with it in CLOSE_WAIT) and no later than
  // `entered_by_ms` (the first snapshot that did).
  std::optional<std::int64_t> entered_after_ms;
  std::int64_t entered_by_ms = 0;
  std::int64_t last_seen_ms = 0;           // the last snapshot of the range that saw it
  bool still_there = false;                // seen in the range's last snapshot
  std::optional<std::int64_t> gone_by_ms;  // the first snapshot (in the range) that no longer saw it

  // How long it has been in CLOSE_WAIT at last_seen_ms: at least, and at most (nullopt: unbounded).
  std::int64_t min_age_ms() const { return last_seen_ms - entered_by_ms; }
  std::optional<std::int64_t> max_age_ms() const {
    return entered_after_ms ? std::optional(last_seen_ms - *entered_after_ms) : std::nullopt;
  }
};

// Every CLOSE_WAIT socket seen in `snapshots` (list_snapshots of a range), whatever its age. A socket
// whose owner changed while in CLOSE_WAIT is one entry (its entry bounds from the first span).
// Sorted for fixing: those still there first, then the longest in CLOSE_WAIT.
std::vector<CloseWaitSocket> close_wait_sockets(SQLite::Database& db, const Scope& scope,
                                                const std::vector<SnapshotSummary>& snapshots);

// CLOSE_WAIT per owning process over a range: a leak shows as a count that grows.
struct CloseWaitByProcess {
  std::optional<std::int64_t> process_id;
  std::int32_t pid = 0;
  std::string comm;
  std::optional<std::string> cmdline;
  std::int64_t now = 0;            // in the range's last snapshot
  std::int64_t peak = 0;           // highest count in one snapshot of the range
  std::int64_t seen = 0;           // distinct sockets in the range
  std::int64_t oldest_min_ms = 0;  // the longest stay among them (at least)
  std::optional<double> per_hour;  // least-squares slope of the count over the range's snapshots
  std::string involved;            // "serves :8080" or "peer 10.0.9.40:8443": where most of them are
};

// Groups `sockets` (close_wait_sockets of the same snapshots) by owner, counting them in every
// snapshot of the range; the growth is fitted over the snapshots from the owner's first CLOSE_WAIT
// to its last. Owners still holding some come first, then by growth per hour, then by count now.
std::vector<CloseWaitByProcess> close_wait_by_process(const std::vector<SnapshotSummary>& snapshots,
                                                      const std::vector<CloseWaitSocket>& sockets);

}  // namespace sockhist::analysis
