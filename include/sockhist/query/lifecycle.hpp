// Socket lifecycles from the stored spans: how long CLOSE_WAIT sockets stay, who owns them, and
// how fast a process leaks them; TIME_WAIT entries, expiries and anomalies against the 60 s the
// kernel gives them; ephemeral-port pressure. Queries only; the commands render them (analyzer/cmd_*.cpp).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "sockhist/query.hpp"

namespace sockhist::query {

// The state a socket's connection was seen in just before (or after) the span a report is about.
struct Neighbour {
  std::optional<model::SockState> state;  // none: not seen (before), or nothing followed (after)
  bool minisocket = false;                // FIN_WAIT2 with the TIME_WAIT timer: an orphaned minisocket
  bool reboot = false;                    // after only: the host rebooted first
  bool operator==(const Neighbour&) const = default;
};
// "ESTABLISHED", "FIN_WAIT2 minisocket", "(reboot)", or "" when there is none.
std::string describe(const Neighbour& n);
// The neighbour a stored state name and timer kind describe; a name this build does not know
// reads as none.
Neighbour neighbour_of(const std::optional<std::string>& state, std::optional<int> timer = std::nullopt);

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
  bool serves_listener = false;     // its local port was listening: the server side of a connection
  std::int64_t rx_queue = 0;        // unread bytes in the last snapshot of the range that saw it
  std::int64_t rx_queue_first = 0;  // unread bytes in the first snapshot that saw it in CLOSE_WAIT
  Neighbour came_from;              // the state it was seen in before
  // It entered CLOSE_WAIT after `entered_after_ms` (the last snapshot that did not see it in
  // CLOSE_WAIT; nullopt when the kept history begins with it in CLOSE_WAIT) and no later than
  // `entered_by_ms` (the first snapshot that did).
  std::optional<std::int64_t> entered_after_ms;
  std::int64_t entered_by_ms = 0;
  std::int64_t last_seen_ms = 0;           // the last snapshot of the range that saw it
  std::int64_t last_seen_id = 0;           // that snapshot's id
  bool still_there = false;                // seen in the range's last snapshot
  std::optional<std::int64_t> gone_by_ms;  // the first snapshot (in the range) that no longer saw it
  // When the connection log heard its socket end (within a few ms): its owner had closed it by
  // then. Only for a socket gone from the range and heard by a looping collector.
  std::optional<std::int64_t> ended_ms;

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

using model::k_time_wait_ms;              // 60 s on Linux
using model::k_time_wait_timer_slack_ms;  // a timer above 60 s plus this: a non-standard kernel
// A TIME_WAIT socket gone this long before its expected expiry vanished early (reused or killed).
constexpr std::int64_t k_time_wait_early_ms = 5'000;
using model::k_time_wait_reentry_ms;  // two sightings of a 4-tuple entered further apart: two sockets
// How long after its 60 s a TIME_WAIT socket may still be there: the kernel's timers fire late, by
// up to an eighth of their length (the timer wheel's granularity: 2 s at HZ=250, 4.1 s at
// HZ=1000, 5.1 s at HZ=100), and kernels before 4.1 reaped TIME_WAIT in slots of 60 s / 8 = 7.5 s.
// Seen later than this, it overstayed; a new connection on its 4-tuple within it may have taken
// it over.
constexpr std::int64_t k_time_wait_overtime_ms = 7'500;

// Who closed a connection first, from the side of the TIME_WAIT (only the first closer has one).
enum class Closer {
  server,  // the local port was listening: this host's server closed first
  client,  // the local port is in ip_local_port_range: this host's client closed first
  other,   // a fixed local port that did not listen
};
std::string_view name(Closer closer);

// One socket in the kernel's TIME_WAIT table as the snapshots saw it: a real TIME_WAIT, or an
// orphaned FIN_WAIT2 minisocket (FIN_WAIT2 with the TIME_WAIT timer kind, ended by tcp_fin_timeout).
struct TimeWaitSocket {
  std::int64_t span_id = 0;
  bool fin_wait2 = false;  // a FIN_WAIT2 minisocket, not TIME_WAIT
  int family = 4;
  std::string local_addr;
  std::int64_t local_port = 0;
  std::string remote_addr;
  std::int64_t remote_port = 0;
  Closer closer = Closer::other;
  // The owner: carried from the connection's earlier life (client side) or the listener's (server).
  std::int32_t pid = 0;
  std::string comm;
  std::optional<std::string> cmdline;
  Neighbour came_from;  // the state seen before
  std::int64_t first_seen_ms = 0;
  std::int64_t last_seen_ms = 0;
  std::optional<std::int64_t> gone_by_ms;        // the first snapshot of the range that no longer saw it
  std::optional<std::int64_t> remaining_ms;      // the timer at the first sighting (nullopt: not recorded)
  std::optional<std::int64_t> entered_ms;        // first sighting - (60 s - remaining); TIME_WAIT only
  std::optional<std::int64_t> entered_after_ms;  // the snapshot before the first sighting (a bound)
  Neighbour next_state;                          // the state of the same 4-tuple's next span, if any
  // Anomalies.
  bool reused_tuple = false;    // it took over a 4-tuple whose earlier TIME_WAIT had not yet expired
  bool vanished_early = false;  // gone at least k_time_wait_early_ms before its expected expiry
  bool long_timer = false;      // remaining above 60 s (+ slack): a non-standard kernel
  bool overstayed = false;      // seen after its expected expiry (+ k_time_wait_overtime_ms)
  // Not an anomaly, a doubt: it entered after the 4-tuple's earlier TIME_WAIT was due to expire but
  // within that one's overtime, while TWRecycled rose (or was not recorded): a takeover of a
  // socket whose timer had not fired yet, or the port reused once it had. Nothing recorded says which.
  bool maybe_reused = false;

  std::optional<std::int64_t> expires_ms() const {
    return entered_ms ? std::optional(*entered_ms + k_time_wait_ms) : std::nullopt;
  }
};

// A counter's increase between two snapshots, for the report's examples.
struct CounterIncrease {
  std::string counter;
  std::int64_t from_ms = 0, to_ms = 0;
  std::int64_t increase = 0;
};

// One bucket of the TIME_WAIT story over time.
struct TimeWaitBucket {
  std::int64_t start_ms = 0;
  std::int64_t snapshots = 0;
  std::optional<std::int64_t> population;  // the highest TIME_WAIT count of its snapshots
  std::int64_t entries = 0;                // TIME_WAIT entries estimated inside it
  std::optional<double> counter_per_s;     // TcpExt.TW per second over its snapshot pairs
};

// TIME_WAIT grouped by remote endpoint (a server's peers by address: their ports are their own
// ephemeral ones) or by local address (a listening port keeps its port; ephemeral ports are summed
// under the address).
struct TimeWaitGroup {
  std::string key;
  std::string closer;  // "server", "client", "other" or "mixed"
  std::int64_t sockets = 0;
  std::int64_t peak = 0;  // the highest count in one snapshot
  std::int64_t peak_ms = 0;
  std::optional<double> entries_per_s;  // sockets entering over the span of the report's snapshots
  std::string owners;                   // the most frequent owner, "(+N more)"
};
enum class TimeWaitBy { remote, local };

// The anomalies a TIME_WAIT socket can show, in the order reports list them.
enum class TimeWaitAnomaly { reused_tuple, vanished_early, overstayed, long_timer, fin_wait2_minisocket };
inline constexpr std::size_t k_time_wait_anomaly_kinds = 5;
bool has(const TimeWaitSocket& s, TimeWaitAnomaly anomaly);

// The sockets with one anomaly: how many, and the first of them.
struct TimeWaitAnomalies {
  std::int64_t count = 0;
  std::optional<TimeWaitSocket> example;
};

// TIME_WAIT sockets by who closed first, and by whom: "serves :443 (752/nginx)" for a server's,
// "869/java" for a client's ("unknown owner" without one), the most sockets first.
struct TimeWaitClosers {
  Closer closer = Closer::other;
  std::int64_t sockets = 0;
  std::int64_t entered = 0;  // entered between the range's first and last snapshot
  std::vector<std::pair<std::string, std::int64_t>> owners;
  bool carried = false;  // some owner of a client's socket was carried from its open connection
};

// What a report keeps beyond its totals: a week of a busy host holds a million TIME_WAIT sockets,
// which are counted as they are read and kept only as asked.
struct TimeWaitAsk {
  enum class Keep { none, anomalies, all } keep = Keep::anomalies;
  std::optional<TimeWaitBy> by;  // groups to make
  // Sockets kept up to this many have what followed each looked up one by one; more, in one scan.
  std::size_t successor_lookups_max = 64;
  // false: only the counts over time (entries, buckets, population, the kernel's counters), read
  // from the entries the collector recorded (time_wait_entries, schema 11) where the file has them
  // and `keep` is none and `by` unset. sockets, anomalies, closers, groups and table_entries are
  // then left empty.
  bool per_socket = true;
};

struct TimeWaitReport {
  std::int64_t since_ms = 0, until_ms = 0;  // the range asked for
  std::int64_t snapshots = 0;
  std::vector<SnapshotSummary> snapshot_list;     // the range's snapshots, oldest first
  std::optional<std::int64_t> first_ms, last_ms;  // its first and last snapshot
  // The TIME_WAIT sockets and FIN_WAIT2 minisockets seen that TimeWaitAsk::keep asked for, oldest first.
  std::vector<TimeWaitSocket> sockets;
  std::array<TimeWaitAnomalies, k_time_wait_anomaly_kinds> anomalies;  // by TimeWaitAnomaly
  TimeWaitAnomalies maybe_reused;        // TimeWaitSocket::maybe_reused: perhaps takeovers (no anomaly)
  std::vector<TimeWaitClosers> closers;  // those with sockets: server, client, other
  std::vector<TimeWaitGroup> groups;     // TimeWaitAsk::by: the most at their peak first
  // Entries whose estimate falls between the first and the last snapshot, and their rate. They are
  // all seen only when no two consecutive snapshots are more than 60 s apart (`complete`).
  std::int64_t entries = 0;
  std::int64_t exact_entries = 0;  // of them, dated by the connection log (the end of their socket)
  bool recorded_entries = false;   // read from time_wait_entries, not from the spans (TimeWaitAsk::per_socket)
  std::optional<double> entries_per_s;
  bool complete = false;
  // The busiest bucket: its entries, their rate over the part of the bucket the snapshots observe
  // (so never below the mean), and its start. A storm shows here, not in the mean.
  std::int64_t peak_entries = 0;
  std::optional<double> peak_entries_per_s;
  std::int64_t peak_entries_ms = 0;
  std::int64_t peak_observed_ms = 0;  // how much of that bucket lies between the first and last snapshot
  // What TcpExt.TW counts of the same: TIME_WAIT entries, less those that were FIN_WAIT2
  // minisockets before (counted when they became one), plus the minisockets that appeared.
  std::int64_t table_entries = 0;
  std::optional<double> table_entries_per_s;
  std::int64_t longest_gap_ms = 0;
  // The population: mean and peak TIME_WAIT count over the snapshots; mean / 60 s is the entry
  // rate the population implies in steady state.
  std::optional<double> mean_population;
  std::int64_t peak_population = 0;
  std::int64_t peak_ms = 0;
  // The kernel's view over the same snapshots (within one boot): TcpExt.TW counts every socket
  // entering the TIME_WAIT table (FIN_WAIT2 minisockets included) with more than 4 s to live.
  std::optional<std::int64_t> counter_delta;
  std::optional<double> counter_per_s;
  std::int64_t covered_ms = 0;                  // monotonic time the counter pairs cover
  std::map<std::string, std::int64_t> related;  // TWKilled, TWRecycled, TCPTimeWaitOverflow deltas
  std::vector<CounterIncrease> overflows;       // steps where TCPTimeWaitOverflow grew
  std::int64_t bucket_ms = 0;
  std::vector<TimeWaitBucket> buckets;
  std::optional<std::int64_t> tcp_tw_reuse, tcp_max_tw_buckets, tcp_fin_timeout;  // newest snapshot's
};

// TIME_WAIT over the snapshots of [since_ms, until_ms]; bucket_ms 0 picks a size.
// `listed`: list_snapshots of the range, when the caller has it.
TimeWaitReport time_wait_report(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                                std::int64_t bucket_ms, const TimeWaitAsk& ask = {},
                                const std::vector<SnapshotSummary>* listed = nullptr);

// Ephemeral-port pressure towards one destination: connections from ports in ip_local_port_range
// (TIME_WAIT and open ones) per (local address, remote address, remote port), at the snapshot
// where they were most.
struct PortPressure {
  std::string local_addr;
  std::string remote_addr;
  std::int64_t remote_port = 0;
  int family = 4;
  std::int64_t at_ms = 0;  // the worst moment
  std::int64_t time_wait = 0;
  std::int64_t open = 0;
  std::int64_t range_size = 0;
  bool range_assumed = false;  // the snapshot did not record ip_local_port_range: 32768-60999
  double percent() const {
    return range_size > 0 ? 100.0 * static_cast<double>(time_wait + open) / static_cast<double>(range_size) : 0;
  }
};
// Sorted by pressure, the highest first.
std::vector<PortPressure> port_pressure(SQLite::Database& db, const Scope& scope,
                                        const std::vector<SnapshotSummary>& snapshots);

// The `top` destinations of port_pressure over time: each one's ephemeral connections (TIME_WAIT
// and open) in every snapshot of `snapshots`, in their order.
struct PortPressureSeries {
  PortPressure worst;
  std::vector<std::int64_t> in_use;
};
std::vector<PortPressureSeries> port_pressure_series(SQLite::Database& db, const Scope& scope,
                                                     const std::vector<SnapshotSummary>& snapshots, std::size_t top);

}  // namespace sockhist::query
