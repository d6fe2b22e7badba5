// Thresholds for cron and monitoring, evaluated over the newest snapshot or a range: the
// computation behind `sockhist check`, returning one outcome per threshold and owner.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "sockhist/query.hpp"
#include "sockhist/query/lifecycle.hpp"

namespace sockhist::query {

// What may be checked; each is off unless set.
struct Thresholds {
  std::optional<std::int64_t> close_wait_max_age_ms;       // a CLOSE_WAIT socket staying this long
  std::optional<std::int64_t> close_wait_max_per_process;  // more CLOSE_WAIT sockets in one process
  std::optional<std::int64_t> time_wait_max;               // more TIME_WAIT sockets
  std::optional<std::int64_t> syn_recv_max;                // more SYN_RECV sockets
  std::optional<double> port_pressure_max;                 // percent of the ephemeral ports to one destination
  std::optional<std::int64_t> listen_overflows;            // TcpExt.ListenOverflows growing by more
  std::optional<std::int64_t> time_wait_overflows;         // TcpExt.TCPTimeWaitOverflow growing by more
  // Staleness: the newest snapshot older than this at `now_ms` (a collector that stopped) is a
  // finding. Not counted by any(): the command sets it for every check that looks at now.
  std::optional<std::int64_t> max_age_ms;
  std::int64_t now_ms = 0;
  std::optional<std::int64_t> usual_interval_ms;  // the scope's (usual_interval_ms), for the message

  bool any() const;
};

enum class Check {
  max_age,
  close_wait_max_age,
  close_wait_max_per_process,
  time_wait_max,
  syn_recv_max,
  port_pressure_max,
  listen_overflows,
  time_wait_overflows,
};
// The option's name without its dashes: "close-wait-max-age".
std::string_view name(Check check);

// The snapshots a check looks at: the newest alone (counters: since the one before it), or every
// snapshot of a window (the worst moment counts).
struct CheckRange {
  bool window = false;
  std::vector<SnapshotSummary> snapshots;  // never empty
  std::vector<SnapshotSummary> pair;       // for counter increases: the two newest, or the window
};
// The newest snapshot of the scope; throws Error(usage) when there is none.
CheckRange newest_range(SQLite::Database& db, const Scope& scope);
// The snapshots in [since_ms, until_ms]; throws Error(usage) naming `since_text` when there are none.
CheckRange window_range(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                        const std::string& since_text);

// One threshold evaluated: a finding when `found`. `value` and `limit` are in the threshold's unit
// (seconds for ages, percent, counts); the fields after `found` are the facts a message names.
struct CheckOutcome {
  Check check = Check::time_wait_max;
  std::string subject;  // a process ("1234/api"), a destination, or "host"
  double value = 0;
  double limit = 0;
  std::optional<std::int64_t> at_ms;
  bool found = false;

  std::int64_t sockets = 0;                       // sockets over the limit (age), held (per process) or counted (state)
  bool still_held = false;                        // close-wait-max-age: some are still there
  std::int64_t limit_ms = 0;                      // close-wait-max-age: the limit itself
  std::int64_t longest_ms = 0;                    // close-wait-max-age: the longest stay (at least)
  std::string where;                              // close-wait-max-age: "serves :8080" or "peer 10.0.0.9:5432"
  bool none_seen = false;                         // close-wait-max-age: no CLOSE_WAIT socket at all
  std::string involved;                           // close-wait-max-per-process
  std::optional<double> per_hour;                 // close-wait-max-per-process: growth
  std::optional<PortPressure> ports;              // port-pressure-max: the destination's worst moment
  std::string counter;                            // increases: "TcpExt.ListenOverflows"
  std::int64_t covered_ms = 0;                    // increases: monotonic time compared (0: nothing to compare)
  std::int64_t worst_step = 0;                    // increases: the largest increase between two snapshots
  std::int64_t age_ms = 0;                        // max-age: how old the newest snapshot is
  std::optional<std::int64_t> usual_interval_ms;  // max-age: the usual time between snapshots
};

// Every threshold set in `limits`, in a fixed order (staleness first): one outcome per owner or
// destination over its limit, or one "host" outcome (not found) saying how far from it the range
// stayed.
std::vector<CheckOutcome> evaluate_checks(SQLite::Database& db, const Scope& scope, const CheckRange& range,
                                          const Thresholds& limits);

}  // namespace sockhist::query
