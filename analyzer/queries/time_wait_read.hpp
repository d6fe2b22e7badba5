// The TIME_WAIT reader: every TIME_WAIT socket and FIN_WAIT2 minisocket of a range read once, in
// the order the snapshots first saw them, and handed on as soon as nothing read later can change
// it. A week of a busy host holds a million; each is carried as ids, and text is looked up only for
// the sockets a report prints. Private to analyzer/queries.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "read.hpp"
#include "sockhist/query/lifecycle.hpp"

namespace sockhist::query::detail {

// A socket's owner: the process its connection had, or the listener's for a server's socket.
struct Owner {
  std::int32_t pid = 0;
  std::string comm;
  std::optional<std::string> cmdline;
};

// One socket as read: TimeWaitSocket without its text, its neighbours left to look up.
struct TimeWaitSeen {
  std::int64_t span_id = 0;  // its first span; with first_id, the order sockets are listed in
  std::int64_t first_id = 0;
  std::int64_t last_span_id = 0;  // the span it was last seen in: a span split by a reboot record or an
  std::int64_t last_id = 0;       // owner change is one socket; that span's last snapshot
  std::int64_t prev_span_id = 0;  // the span before its first; 0 for none
  bool fin_wait2 = false;
  // Its previous span was a FIN_WAIT2 minisocket of the range (exact for every socket that entered
  // TIME_WAIT after the range's first snapshot: its minisocket was seen in the range).
  bool from_minisocket = false;
  int family = 4;
  std::int64_t local_addr_id = 0, local_port = 0;
  std::string remote_addr;  // held inline (short-string storage) for an IPv4 address
  std::int64_t remote_port = 0;
  std::int64_t cookie = 0;  // sock_diag's socket cookie; 0 where none was read (/proc)
  Closer closer = Closer::other;
  std::uint32_t owner = 0;  // TimeWaitReader::owner; 0 for none
  std::int64_t first_seen_ms = 0, last_seen_ms = 0;
  std::optional<std::int64_t> gone_by_ms, remaining_ms, entered_ms, entered_after_ms;
  bool entered_exact = false;  // entered_ms is when the connection log heard its socket end
  bool rebooted = false;       // gone because the host rebooted
  bool followed = false;       // its 4-tuple was next in TIME_WAIT with a fresh timer
  bool reused_tuple = false, vanished_early = false, long_timer = false, overstayed = false;
  bool maybe_reused = false;

  std::optional<std::int64_t> expires_ms() const {
    return entered_ms ? std::optional(*entered_ms + k_time_wait_ms) : std::nullopt;
  }
};

class TimeWaitReader {
 public:
  // `snapshots`: list_snapshots of the range, not empty.
  TimeWaitReader(SQLite::Database& db, const Scope& scope, const std::vector<SnapshotSummary>& snapshots);
  ~TimeWaitReader();
  TimeWaitReader(const TimeWaitReader&) = delete;
  TimeWaitReader& operator=(const TimeWaitReader&) = delete;

  // Reads the range, calling `done` once for every socket when it is complete: a 4-tuple's
  // TIME_WAIT seen again with a fresh timer marks the earlier one (a takeover, or the tuple reused),
  // and one seen again with the same timer is the same socket, merged back into one. Not in order.
  // Where scan_whole_table says, it first reads the table in the order it was written; if that is
  // not the order of first snapshot (a file another program wrote), it stops and returns false,
  // and the caller forgets what `done` was given and calls again with `may_scan` false.
  bool read(const std::function<void(const TimeWaitSeen&)>& done, bool may_scan = true);

  // Whether TcpExt.TWRecycled rose in the interval that ends at each snapshot of the range: 1 it
  // did, 0 it did not, -1 unknown (not recorded, the first snapshot, a reboot). A 4-tuple seen in
  // TIME_WAIT again in the overtime of its earlier entry is a possible takeover unless it is 0.
  // Unset: unknown everywhere.
  void takeovers_counted(std::vector<std::int8_t> rose);

  const Owner& owner(std::uint32_t id) const;
  const std::string& local_addr(std::int64_t addr_id);
  // The range's snapshot times, oldest first.
  const std::vector<std::int64_t>& times() const;

  // The sockets with their text, the state seen before each and what followed it on its 4-tuple,
  // in the order given. Up to `lookups_max` sockets have their successor looked up one by one;
  // more are matched in one scan of the range's successors.
  std::vector<TimeWaitSocket> sockets(const std::vector<TimeWaitSeen>& seen, std::size_t lookups_max);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sockhist::query::detail
