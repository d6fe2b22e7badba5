// The analyzer's queries: what a sockhist database holds, computed into plain values. Nothing here
// reads /proc or netlink or prints; renderers turn these values into text (render.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "sockhist/counters.hpp"
#include "sockhist/model.hpp"

namespace sockhist::query {

// A host in the database, with the span of its history.
struct HostSummary {
  std::string name;
  std::optional<std::string> machine_id;
  std::int64_t first_ms = 0;  // first snapshot (any namespace)
  std::int64_t last_ms = 0;
  std::int64_t snapshots = 0;
  std::int64_t namespaces = 0;
  std::int64_t boots = 0;                // distinct boot ids seen
  std::vector<std::int64_t> reboots_ms;  // time of the first snapshot of each boot after the first
  std::int64_t last_socket_count = 0;    // sockets in the newest snapshot of the initial namespace
  std::optional<std::string> kernel;     // of the newest snapshot
  // Its namespaces as --netns names them ("its own", "blue (4026532177)"), the one the figures above
  // describe first: its own when recorded, else the one with the newest snapshot.
  std::vector<std::string> namespace_labels;
  bool own_namespace = true;
};
std::vector<HostSummary> list_hosts(SQLite::Database& db);

// The host and network namespace a command looks at.
struct Scope {
  std::int64_t host_id = 0;
  std::string host;
  std::optional<std::string> machine_id;
  std::int64_t netns_id = 0;
  std::uint64_t netns_inode = 0;
  std::optional<std::string> netns_name;
  bool netns_initial = true;
  // Set when --netns named several namespaces over time and the newest was chosen: which, and how
  // to name the others. For stderr.
  std::optional<std::string> note;
};

// Resolves --host and --netns. Without --host the database must hold one host; without --netns
// the host's initial namespace is chosen (else its only one). `netns` is a /run/netns name, an
// inode number, or "#ID" (a namespace's row, as `hosts` shows where a name or inode was reused). Throws Error(usage)
// naming the option when the choice is missing or unknown.
Scope resolve_scope(SQLite::Database& db, const std::optional<std::string>& host,
                    const std::optional<std::string>& netns);

// Every namespace of the host (--host as for resolve_scope) that has snapshots, its own first, then
// the one with the newest snapshot first.
std::vector<Scope> namespace_scopes(SQLite::Database& db, const std::optional<std::string>& host);

// The scope a snapshot id belongs to; throws Error(usage) for an unknown id.
Scope scope_of_snapshot(SQLite::Database& db, std::int64_t snapshot_id);

// One snapshot at a glance.
struct SnapshotSummary {
  std::int64_t id = 0;
  std::int64_t time_ms = 0;
  std::string boot_id;
  std::optional<std::int64_t> uptime_ms;
  std::string source;
  std::string owners;
  std::int64_t socket_count = 0;
  std::int64_t capture_ms = 0;
  std::optional<std::string> kernel;
  std::optional<std::int64_t> port_range_low, port_range_high;
  std::map<std::string, std::int64_t> counts;  // "tcp ESTABLISHED" -> n, "udp CLOSE" -> n, ...

  std::int64_t count(model::Proto proto, model::SockState state) const;
  std::int64_t proto_total(model::Proto proto) const;
  std::int64_t proto_total(const std::string& proto) const;
};

// "10.0.0.1:8080" or "[::1]:8080".
std::string endpoint(const std::string& addr, std::int64_t port);

// "1234/nginx" as netstat -p prints an owner, or `unknown` without one (pid 0).
std::string program(std::int32_t pid, const std::string& comm, const char* unknown = "-");

// The socket_states id of (proto, state), e.g. ("tcp", "CLOSE_WAIT"); nullopt when never stored.
std::optional<std::int64_t> state_id(SQLite::Database& db, const std::string& proto, const std::string& state);
std::optional<std::int64_t> state_id(SQLite::Database& db, model::Proto proto, model::SockState state);

// Snapshots of a scope with since_ms <= time <= until_ms, oldest first.
std::vector<SnapshotSummary> list_snapshots(SQLite::Database& db, const Scope& scope, std::int64_t since_ms,
                                            std::int64_t until_ms);
// The newest snapshot taken at or before at_ms; nullopt when none is that old.
std::optional<SnapshotSummary> snapshot_at(SQLite::Database& db, const Scope& scope, std::int64_t at_ms);
// The usual time between the scope's snapshots: the median of the last 20 intervals up to snapshot
// `up_to_id` (default: the newest); nullopt with fewer than two snapshots.
std::optional<std::int64_t> usual_interval_ms(SQLite::Database& db, const Scope& scope,
                                              std::optional<std::int64_t> up_to_id = std::nullopt);
// The newest snapshot of the scope; nullopt when there is none.
std::optional<SnapshotSummary> latest_snapshot(SQLite::Database& db, const Scope& scope);
SnapshotSummary snapshot_by_id(SQLite::Database& db, std::int64_t id);

// One socket as a snapshot recorded it (a row of v_snapshot_sockets).
struct SocketRow {
  model::Proto proto = model::Proto::tcp;
  int family = 0;  // 4, 6; 0 for unix
  model::SockState state = model::SockState::close;
  std::string local_addr;
  std::int64_t local_port = 0;
  std::string remote_addr;
  std::int64_t remote_port = 0;
  std::int64_t tx_queue = 0;
  std::int64_t rx_queue = 0;
  model::TimerKind timer = model::TimerKind::off;  // as stored: a code past `delack` keeps its number
  std::int64_t timer_ms = 0;
  std::int64_t retransmits = 0;
  std::int64_t probes = 0;
  std::int64_t uid = 0;
  std::optional<std::string> user;
  std::uint64_t inode = 0;
  std::optional<std::int64_t> pid;
  std::optional<std::string> comm;
  std::optional<std::string> cmdline;
  bool owner_carried = false;
  std::optional<std::string> sock_type;  // unix
  std::int64_t unix_flags = 0;
  std::optional<std::int64_t> backlog;
  std::optional<std::int64_t> peer_inode;
  std::optional<std::int64_t> cookie;
  std::int64_t first_time_ms = 0;  // when the span (this state, this owner) was first seen
  std::int64_t span_id = 0;
};
std::vector<SocketRow> snapshot_sockets(SQLite::Database& db, std::int64_t snapshot_id);

// A counter's value in one snapshot.
struct CounterValue {
  std::string section;
  std::string name;
  std::int64_t value = 0;
  bool is_gauge = false;
};
// Every counter of a snapshot, in the kernel's section order (snmp, then netstat, then sockstat).
std::vector<CounterValue> snapshot_counters(SQLite::Database& db, std::int64_t snapshot_id);

// What one counter did over a range of snapshots.
struct CounterChange {
  std::string section;
  std::string name;
  bool is_gauge = false;
  std::optional<std::int64_t> first, last;  // values in the first and last snapshot holding it
  // Counters: the increase summed over pairs of consecutive snapshots within one boot (a value
  // that went down without a reboot counts as a reset: that pair adds nothing), and that increase
  // per second of the monotonic time those pairs cover. Gauges: the lowest and highest value seen.
  std::int64_t delta = 0;
  std::optional<double> rate_per_s;
  std::optional<std::int64_t> min, max;
  std::int64_t resets = 0;  // decreases seen without a reboot
};

struct RangeStats {
  std::vector<SnapshotSummary> snapshots;  // the range's snapshots, oldest first
  std::int64_t covered_ms = 0;             // monotonic time covered by pairs within one boot
  std::int64_t boots = 0;
  std::vector<CounterChange> counters;
};
// Counter deltas and rates over the snapshots of a scope in [since_ms, until_ms].
RangeStats counter_range(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms);

// Counter names and values as stored (counters.hpp).
using store::counter_names;
using store::CounterName;
using store::CounterValues;
using store::replay_counters;

// One counter between two consecutive snapshots of one boot that both hold it (a decrease without
// a reboot is a reset: increase 0, reset true).
struct CounterStep {
  std::string counter;  // "Section.Name"
  std::size_t to = 0;   // index of the later snapshot in the list given
  std::int64_t increase = 0;
  std::int64_t interval_ms = 0;  // monotonic time between the two snapshots
  bool reset = false;
};
// Every step of the named counters ("TcpExt.TW") over `snapshots` (list_snapshots of a range), in
// snapshot order. A name the database never recorded has no steps.
std::vector<CounterStep> counter_steps(SQLite::Database& db, const Scope& scope,
                                       const std::vector<SnapshotSummary>& snapshots,
                                       const std::vector<std::string>& counters);

// The time between consecutive snapshots of one boot: by the kernel's uptime (CLOCK_BOOTTIME)
// when both have it, else by the wall clock; nullopt across a reboot or when time ran backwards.
std::optional<std::int64_t> monotonic_interval_ms(const SnapshotSummary& earlier, const SnapshotSummary& later);

// One bucket of a trend: the snapshots whose time falls in [start_ms, start_ms + bucket).
struct TrendBucket {
  std::int64_t start_ms = 0;
  std::int64_t snapshots = 0;
  bool gap = false;     // no snapshot in the bucket (the collector did not run)
  bool reboot = false;  // a boot id change happened in the bucket or just before it
  // Per series: for states and groups the highest count seen in the bucket; for counters the
  // rate per second over the bucket's pairs; for gauges the highest value. Absent: no data.
  std::vector<std::optional<double>> values;
};
struct Trend {
  std::int64_t bucket_ms = 0;
  std::vector<std::string> series;  // column names
  std::vector<std::string> units;   // "sockets", "per_s", "value"
  std::vector<TrendBucket> buckets;
};

// Each trend reads the snapshots of [since_ms, until_ms] (list_snapshots); `listed`, when given,
// is that list, made once by a caller that asks several questions of one range.

// A bucket size giving about 24 to 60 buckets over the range, from a fixed ladder (10s ... 1d).
std::int64_t choose_bucket_ms(std::int64_t range_ms);

// The series of a states trend: keys as state_counts stores them ("tcp ESTABLISHED"; "udp" and
// "unix" alone for those protocols' totals) and the names a person reads. Without `states`: every
// TCP state in `seen` in the order of a connection's life, then UDP and UNIX; else `states`
// ("CLOSE_WAIT", "tcp:LISTEN", "unix:CONNECTED").
struct StateSeries {
  std::vector<std::string> keys, names;
};
StateSeries state_series(const std::set<std::string>& seen, const std::vector<std::string>& states);

// The buckets of [since_ms, until_ms] with the snapshots placed in them (counted; gaps and reboots
// marked) and a value slot per series, all empty: what every trend fills. Exposed for a caller that
// reads the values elsewhere (fleet trend, from the central store).
Trend trend_frame(const std::vector<SnapshotSummary>& snapshots, std::int64_t since_ms, std::int64_t until_ms,
                  std::int64_t bucket_ms, std::vector<std::string> series, std::vector<std::string> units);
// The bucket holding `time_ms`, if any.
std::optional<std::size_t> bucket_of(const Trend& t, std::int64_t time_ms);

// Socket counts per state (the series of state_series) per bucket, the highest count of each.
Trend trend_states(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                   std::int64_t bucket_ms, const std::vector<std::string>& states,
                   const std::vector<SnapshotSummary>* listed = nullptr);

// Counter rates (and gauge values) per bucket for "Section.Name" counters. Throws Error(usage)
// naming a counter the database never recorded.
Trend trend_counters(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                     std::int64_t bucket_ms, const std::vector<std::string>& counters,
                     const std::vector<SnapshotSummary>* listed = nullptr);

// Sockets in one state, one series per owning process ("pid/comm"), local port or remote address;
// the `top` largest series are kept and the rest summed as "other".
enum class GroupBy { process, local_port, remote_addr };
Trend trend_grouped(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                    std::int64_t bucket_ms, const std::string& state, GroupBy by, std::size_t top,
                    const std::vector<SnapshotSummary>* listed = nullptr);

}  // namespace sockhist::query
