// Value types shared by the collector, the store and the analyzer: what a socket, a counter and a
// snapshot are, independent of where they were read from.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace sockhist::model {

enum class Proto : std::uint8_t { tcp, udp, unix_domain };

// One enum for every state sockhist records. TCP and UDP use the kernel's TCP state codes
// (include/net/tcp_states.h); UNIX sockets use the socket states netstat -x prints.
enum class SockState : std::uint8_t {
  established = 1,
  syn_sent = 2,
  syn_recv = 3,
  fin_wait1 = 4,
  fin_wait2 = 5,
  time_wait = 6,
  close = 7,
  close_wait = 8,
  last_ack = 9,
  listen = 10,
  closing = 11,
  new_syn_recv = 12,  // kernel-internal; /proc prints it as SYN_RECV, sock_diag may report it
  bound_inactive = 13,
  unix_free = 32,
  unix_unconnected,
  unix_connecting,
  unix_connected,
  unix_disconnecting,
  unix_listening,
};

// Kernel timer kinds, as /proc's `tr` column and sock_diag's idiag_timer number them.
enum class TimerKind : std::uint8_t { off = 0, on = 1, keepalive = 2, timewait = 3, probe = 4, delack = 5 };

// TIME_WAIT lasts TCP_TIMEWAIT_LEN, 60 s, on Linux whatever the sysctls say (docs/kernel.md).
inline constexpr std::int64_t k_time_wait_ms = 60'000;
// A TIME_WAIT timer read at more than 60 s plus this came from a non-standard kernel: the socket's
// entry cannot be dated from it.
inline constexpr std::int64_t k_time_wait_timer_slack_ms = 500;
// Two sightings of a 4-tuple in TIME_WAIT whose entries differ by more than this are two sockets.
inline constexpr std::int64_t k_time_wait_reentry_ms = 2'000;

// UNIX socket types (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, ...); zero for TCP and UDP.
enum class UnixType : std::uint8_t { none = 0, stream = 1, dgram = 2, raw = 3, rdm = 4, seqpacket = 5 };

// The name stored in the database and printed by the analyzer: netstat's state names for TCP and
// UDP (UDP unconnected is CLOSE), netstat -x's for UNIX sockets (UNCONNECTED where netstat prints
// nothing). Every name is a NUL-terminated string literal, so .data() may be passed as a C string.
std::string_view name(SockState state);
std::string_view name(Proto proto);
std::string_view name(TimerKind timer);  // netstat -o's words: off, on, keepalive, timewait, probe
std::string_view name(UnixType type);

// Parses a stored name back; nullopt for an unknown name.
std::optional<SockState> sock_state_from_name(std::string_view text);
std::optional<Proto> proto_from_name(std::string_view text);

// A kernel TCP state code (1..13) as the enum; nullopt for codes the kernel never prints.
std::optional<SockState> tcp_state_from_code(unsigned code);

// One socket as observed in one snapshot. Addresses are decoded once, as netstat -n prints them.
// Fields are ordered by size: a busy host holds 100,000 of these at once.
struct Socket {
  std::string local_addr;  // for UNIX: the path (abstract names start with '@'), may be empty
  std::string remote_addr;
  std::uint64_t inode = 0;                  // 0 for TIME_WAIT, request and orphaned sockets
  std::optional<std::uint64_t> cookie;      // sock_diag only
  std::optional<std::uint64_t> peer_inode;  // UNIX_DIAG only
  std::optional<std::uint32_t> backlog;     // sock_diag only: a listener's backlog limit
  std::uint32_t tx_queue = 0;
  std::uint32_t rx_queue = 0;  // on LISTEN sockets: the current accept-queue length
  std::uint32_t timer_ms = 0;  // time remaining on the timer, milliseconds
  std::uint32_t retransmits = 0;
  std::uint32_t probes = 0;  // /proc's misnamed `timeout` column
  std::uint32_t uid = 0;
  std::uint32_t unix_flags = 0;
  int family = 0;        // 4 or 6 for TCP and UDP, 0 for UNIX
  std::int32_t pid = 0;  // owning process, 0 when unknown
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;
  Proto proto = Proto::tcp;
  SockState state = SockState::close;
  TimerKind timer = TimerKind::off;
  UnixType unix_type = UnixType::none;

  bool operator==(const Socket&) const = default;
};

// What tcp_info said of a TCP socket as the kernel destroyed it: its lifetime totals. Byte counts
// are the kernel's, in sequence space where it says so: bytes_acked and bytes_received count the
// SYN and FIN each takes as one (RFC 4898's ThruOctets), bytes_sent and bytes_retrans only payload.
struct TcpTotals {
  std::uint64_t bytes_acked = 0;               // tcpi_bytes_acked
  std::uint64_t bytes_received = 0;            // tcpi_bytes_received
  std::optional<std::uint64_t> bytes_sent;     // tcpi_bytes_sent, payload incl. retransmits (4.19+)
  std::optional<std::uint64_t> bytes_retrans;  // tcpi_bytes_retrans (4.19+)
  std::uint64_t delivery_rate = 0;             // bytes per second, the last estimate
  std::uint32_t segs_out = 0;
  std::uint32_t segs_in = 0;
  std::uint32_t data_segs_out = 0;
  std::uint32_t data_segs_in = 0;
  std::uint32_t total_retrans = 0;  // segments retransmitted over the connection's life
  std::uint32_t rtt_us = 0;         // smoothed RTT
  std::uint32_t min_rtt_us = 0;
  std::uint32_t lost = 0;

  bool operator==(const TcpTotals&) const = default;
};

// A TCP or UDP socket the kernel announced as destroyed (sock_diag's destroy multicast groups, what
// `ss -E` shows). A full TCP socket is destroyed when it closes or enters TIME_WAIT (the TIME_WAIT
// socket that follows has the same cookie); the kernel reports its state then as CLOSE. It says
// nothing of the owner: uid and inode are 0 once the socket has lost its file.
struct SocketEnd {
  std::string local_addr;
  std::string remote_addr;
  std::uint64_t cookie = 0;
  std::optional<TcpTotals> tcp;  // TCP only
  std::int64_t time_ms = 0;      // when the announcement was read (epoch ms); the kernel sends none
  int family = 0;                // 4 or 6
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;
  Proto proto = Proto::tcp;
  SockState state = SockState::close;  // as the kernel gave it at destruction

  bool operator==(const SocketEnd&) const = default;
};

// Ends heard beyond the per-connection budget, summed per second, local port, remote address, final
// state, protocol and family. Byte sums are of what tcp_info said; ends whose bytes_sent the kernel
// did not give (before 4.19) are counted apart.
struct EndAggregate {
  std::string remote_addr;
  std::int64_t second_ms = 0;  // the start of the second (epoch ms) in which they were read
  std::uint64_t count = 0;
  std::uint64_t bytes_acked = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t without_bytes_sent = 0;  // ends in `count` whose bytes_sent is unknown
  std::uint64_t total_retrans = 0;
  int family = 0;
  std::uint16_t local_port = 0;
  Proto proto = Proto::tcp;
  SockState state = SockState::close;

  bool operator==(const EndAggregate&) const = default;
};

// What was heard in one namespace between two takes. Every announcement read is in exactly one of
// ends, an aggregate's count, or over_bound: heard == ends.size() + sum of counts + over_bound.
struct HeardEnds {
  std::vector<SocketEnd> ends;           // the first `budget` read, whole, in the order they were read
  std::vector<EndAggregate> aggregates;  // the rest, in the order their keys first appeared
  std::int64_t since_ms = 0;             // listening since (the previous take, or when it began)
  std::int64_t until_ms = 0;             // the take: what was heard up to then
  std::size_t budget = 0;                // how many ends were to be kept whole
  std::size_t heard = 0;                 // announcements read and decoded
  std::size_t overruns = 0;              // times the receive buffer overflowed: announcements lost, how many unknown
  std::size_t malformed = 0;             // messages that could not be decoded
  std::size_t over_bound = 0;            // read but neither kept nor aggregated: more aggregate keys than allowed
  bool listening = false;                // false: nothing was heard because nobody listened (see problems())
};

// One kernel counter or gauge, stored by (section, name) as the kernel names them.
struct Counter {
  std::string section;  // Tcp, TcpExt, Udp, Ip6, Sockstat, ...
  std::string name;
  std::int64_t value = 0;
  bool is_gauge = false;  // a level, not a count: never compute a rate on it

  bool operator==(const Counter&) const = default;
};

// A 64-bit hash of what identifies a socket across snapshots (protocol, family, endpoints, inode),
// stable across builds (FNV-1a), computed without allocating. Equal identities hash equal; callers
// compare the fields on a hit.
std::uint64_t identity_hash(std::string_view proto, int family, std::string_view local_addr, int local_port,
                            std::string_view remote_addr, int remote_port, std::uint64_t inode);
std::uint64_t identity_hash(const Socket& socket);

// A 128-bit identity: identity_hash and a second, structurally different 64-bit hash of the same
// fields. Equal identities are taken as the same socket without comparing the text.
struct Identity {
  std::uint64_t hash = 0;
  std::uint64_t check = 0;
  bool operator==(const Identity&) const = default;
};
Identity identity(std::string_view proto, int family, std::string_view local_addr, int local_port,
                  std::string_view remote_addr, int remote_port, std::uint64_t inode);

// Whether (section, name) is a gauge: Ip Forwarding/DefaultTTL, Tcp Rto*/MaxConn/CurrEstab and
// everything in sockstat.
bool is_gauge(std::string_view section, std::string_view name);

// A line the parser skipped, and why.
struct LineIssue {
  std::size_t line = 0;  // 1-based
  std::string reason;

  bool operator==(const LineIssue&) const = default;
};

// A diagnostic attached to a snapshot: a skipped line or a missing optional file.
struct Diagnostic {
  std::string file;
  std::size_t line = 0;  // 0 when the diagnostic is about the whole file
  std::string message;

  bool operator==(const Diagnostic&) const = default;
};

// What a pure parser returns: the rows it understood, the lines it skipped, the duplicate rows it
// dropped (/proc tables are not atomic under churn), or an error for a file it cannot read at all.
template <class T>
struct Parsed {
  std::vector<T> rows;
  std::vector<LineIssue> issues;
  std::size_t duplicates = 0;
  std::optional<std::string> error;  // the whole file is malformed (wrong header, not this format)
};

// A process that owns sockets.
struct Process {
  std::int32_t pid = 0;
  std::uint64_t start_ticks = 0;  // /proc/PID/stat field 22; with pid and boot_id, a process identity
  std::string comm;
  std::optional<std::string> cmdline;  // absent when command lines are not stored or unreadable
  std::uint32_t uid = 0;               // effective uid
  std::optional<std::string> user;

  bool operator==(const Process&) const = default;
};

// Kernel settings that shape the analysis, read per network namespace; absent when unreadable.
struct Settings {
  std::optional<std::int64_t> tcp_fin_timeout;
  std::optional<std::int64_t> tcp_max_tw_buckets;
  std::optional<std::int64_t> port_range_low;
  std::optional<std::int64_t> port_range_high;
  std::optional<std::int64_t> tcp_tw_reuse;
  std::optional<std::int64_t> somaxconn;

  bool operator==(const Settings&) const = default;
};

// How much of the ownership picture a snapshot holds.
enum class OwnerScan : std::uint8_t { complete, partial, skipped };
std::string_view name(OwnerScan scan);

// Everything one capture produced, ready for the store.
// Leaves out of a live capture, as its sockets are read, those its namespace's open spans already
// hold unchanged, so that a snapshot of a busy, quiet host never holds every socket at once. The
// store's writer makes one per namespace (SnapshotWriter::sieve_for) and counts what it leaves out;
// the capture calls it with each socket's owner (pid) attached.
class SocketSieve {
 public:
  virtual ~SocketSieve() = default;
  // The processes the owner scan found, before the first keep(): their stored rows are the owners
  // a socket's pid is compared by.
  virtual void know_owners(const std::vector<Process>& processes) = 0;
  // False when the snapshot need not keep `socket`: its open span holds it as it is.
  virtual bool keep(const Socket& socket) = 0;
  // What follows up to the next begin_table may be withdrawn: a table whose netlink dump fails
  // part-way is read again from /proc.
  virtual void begin_table() = 0;
  virtual void withdraw_table() = 0;
  // How many sockets it left out.
  virtual std::size_t left_out() const = 0;
};

struct Capture {
  std::string host;      // the name the snapshot is recorded under
  std::string hostname;  // what the kernel calls itself (may differ from host)
  std::optional<std::string> machine_id;
  std::optional<std::string> boot_id;
  std::optional<std::int64_t> uptime_ms;
  std::optional<std::string> kernel;
  std::int64_t user_hz = 100;
  std::int64_t time_ms = 0;     // wall clock, UTC epoch milliseconds
  std::int64_t capture_ms = 0;  // how long the capture took
  // Where the capture's time went (reported by a verbose collector, not stored).
  std::int64_t sockets_ms = 0;           // reading the socket tables (netlink or /proc)
  std::int64_t owners_ms = 0;            // the owner scan
  std::size_t links_resolved = 0;        // /proc/PID/fd links the owner scan read
  std::string source = "proc";           // "proc" or "netlink"
  std::optional<std::string> proc_root;  // set when not the live /proc
  std::uint64_t netns_inode = 0;         // 0 when unknown (a copied tree)
  std::optional<std::string> netns_name;
  std::optional<std::int32_t> netns_pid;  // a process living in the namespace, when one is known
  bool netns_initial = true;              // the host's own namespace (PID 1's)
  std::optional<std::uint64_t>
      netns_cookie;  // SO_NETNS_COOKIE (Linux 5.14+): tells a namespace from a later one on its inode
  Settings settings;
  OwnerScan owners = OwnerScan::skipped;
  std::vector<Socket> sockets;         // with a sieve: only those it kept
  std::shared_ptr<SocketSieve> sieve;  // a live capture's, when its namespace had open spans
  std::vector<Counter> counters;
  std::vector<Process> processes;  // owners referenced by Socket::pid
  // Per socket, 1 when its owner (Socket::pid) was carried forward from the connection's earlier
  // life rather than seen: set only by merge and export, which copy stored history; empty otherwise.
  std::vector<std::uint8_t> owner_carried;
  std::vector<std::pair<std::uint32_t, std::string>> users;  // uid -> name, live captures only
  std::vector<Diagnostic> diagnostics;
  std::size_t skipped_lines = 0;
  // What the connection log heard in this namespace since the previous snapshot: only a looping
  // collector listens; absent otherwise.
  std::optional<HeardEnds> connections;
};

}  // namespace sockhist::model

// fmt 9 has no format_as; these formatters print the enums by their names.
template <>
struct fmt::formatter<sockhist::model::SockState> : fmt::formatter<std::string_view> {
  auto format(sockhist::model::SockState v, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(sockhist::model::name(v), ctx);
  }
};
template <>
struct fmt::formatter<sockhist::model::Proto> : fmt::formatter<std::string_view> {
  auto format(sockhist::model::Proto v, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(sockhist::model::name(v), ctx);
  }
};
template <>
struct fmt::formatter<sockhist::model::TimerKind> : fmt::formatter<std::string_view> {
  auto format(sockhist::model::TimerKind v, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(sockhist::model::name(v), ctx);
  }
};
