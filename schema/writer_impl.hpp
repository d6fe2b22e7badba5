// The snapshot writer's insides, shared by its three source files: writer.cpp (one snapshot as
// named phases, and the public API), writer_ids.cpp (the row ids of hosts, namespaces, processes,
// counters, states and addresses, cached across snapshots) and writer_spans.cpp (matching a
// capture's sockets against the open spans). Private to schema/.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <SQLiteCpp/Statement.h>

#include "socket_values.hpp"
#include "sockhist/counters.hpp"
#include "sockhist/snapshot_writer.hpp"

namespace sockhist::store::writer {

using model::Capture;
using model::Socket;
using model::SockState;

// A TIME_WAIT span is linked to a socket end only when its timer puts its start no later than
// this after the end was read (the timer's start is seen early by up to the capture's length,
// never late): a socket closed before its peer's FIN waits in FIN_WAIT2 first, and its TIME_WAIT
// begins when the FIN comes.
inline constexpr std::int64_t k_time_wait_link_slack_ms = 1000;

// A TIME_WAIT socket whose time remaining exceeds what the span's first observation predicts by
// more than this is a new socket on a reused 4-tuple (docs/kernel.md: TIME_WAIT counts down from 60 s).
inline constexpr std::int64_t k_timewait_slack_ms = model::k_time_wait_reentry_ms;  // the readers' rule too

template <class T>
inline void bind_optional(SQLite::Statement& stmt, int index, const std::optional<T>& value) {
  if (value) {
    stmt.bind(index, static_cast<std::int64_t>(*value));
  } else {
    stmt.bind(index);
  }
}

// Binds a row id, or NULL for 0 (row ids start at 1).
inline void bind_id(SQLite::Statement& stmt, int index, std::int64_t id) {
  if (id != 0) {
    stmt.bind(index, id);
  } else {
    stmt.bind(index);
  }
}

inline void bind_optional_text(SQLite::Statement& stmt, int index, const std::optional<std::string>& value) {
  if (value) {
    stmt.bind(index, *value);
  } else {
    stmt.bind(index);
  }
}

// What identifies a socket across snapshots: protocol, endpoints and inode. TIME_WAIT, request and
// orphaned sockets have inode 0 and are told apart by their endpoints.
inline model::Identity identity_of(const Socket& s, std::uint64_t inode) {
  return model::identity(model::name(s.proto), s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port,
                         inode);
}

// An open span as matching needs it: fixed-size, no text (a host may have 100,000 of them).
struct OpenSpan {
  std::int64_t span_id = 0;
  model::Identity id;           // protocol, endpoints, inode
  model::Identity connection;   // protocol and endpoints: links a TCP connection's states
  std::int64_t process_id = 0;  // 0: no owner (process ids start at 1)
  SocketValues values;          // as last stored: the span's own, or its newest socket_values row
  std::int64_t cookie = 0;
  std::int32_t local_addr_id = 0;  // addresses.addr_id: with local_port, who held a port (connection log)
  std::uint16_t local_port = 0;
  bool has_cookie = false;
  SockState state = SockState::close;
  model::Proto proto = model::Proto::tcp;
  bool carried = false;
  bool matched = false;  // seen again unchanged: stays open
  bool linked = false;   // a new span already continues it
  bool sieved = false;   // a capture's sieve met a socket of its identity (the first one decides)

  std::optional<std::int64_t> owner() const { return process_id != 0 ? std::optional(process_id) : std::nullopt; }
  // A TCP connection (not a listener) whose later states may carry other inodes.
  bool links_connections() const { return proto == model::Proto::tcp && state != SockState::listen; }
};

// A span to open, pointing at its socket in the capture; a first snapshot holds one per socket, so
// ids are plain (0: no owner, no previous span; row ids start at 1).
struct NewSpan {
  const Socket* socket = nullptr;
  std::int64_t process_id = 0;
  std::int64_t prev_span_id = 0;
  bool carried = false;
};

// Whether socket `s` (owned by process row `owner`), seen at time_ms, is still `open`'s socket:
// the same state, cookie and owner, and not a new TIME_WAIT socket on a reused 4-tuple.
bool same_socket(const OpenSpan& open, const Socket& s, const std::optional<std::int64_t>& owner, std::int64_t time_ms);

// A namespace's open spans by identity hash: the first span with a hash, found by linear probing
// in a table of 32-bit positions (1 MiB at 100,000 spans, where a hash map of them took 3.3).
class OpenIndex {
 public:
  OpenIndex() = default;
  explicit OpenIndex(const std::vector<OpenSpan>& open);
  // The position in `open` (the vector it was built from, or that vector moved) of the first span
  // whose identity hash is `hash`.
  std::optional<std::size_t> find(const std::vector<OpenSpan>& open, std::uint64_t hash) const;

 private:
  std::size_t slot_of(std::uint64_t hash) const { return (hash ^ (hash >> 31)) & m_mask; }
  std::vector<std::uint32_t> m_slots;  // position + 1; 0: empty
  std::size_t m_mask = 0;
};

class Sieve;

struct CounterCache {
  std::int64_t snapshot_id = 0;  // the snapshot these values describe
  CounterValues values;
};

// The newest snapshot already stored for a namespace.
struct Previous {
  std::int64_t id = 0;
  std::int64_t time_ms = 0;
  std::string boot_id;
  std::int64_t socket_count = 0;
  std::optional<std::int64_t> netns_cookie;
};

// What matching a capture against the open spans decided.
struct Matching {
  std::vector<NewSpan> fresh;                                  // spans to open
  std::vector<std::pair<std::size_t, const Socket*>> changed;  // open spans (by index) whose values changed
  std::vector<std::size_t> unlinked;  // indexes into `fresh` of TCP connections with no previous state yet
};

// How one socket end joined the spans (writer_connections.cpp). Span ids are row ids: 0 is none.
struct EndMatch {
  std::int64_t seen_span_id = 0;            // its newest span in a state other than TIME_WAIT
  std::int64_t seen_process_id = 0;         // that span's owner
  std::int64_t time_wait_span_id = 0;       // a TIME_WAIT span with its endpoints and cookie
  std::int64_t time_wait_by_endpoints = 0;  // one this snapshot opened with its endpoints, another cookie
  SockState seen_state = SockState::close;
  int seen_rank = -1;
  bool minisocket = false;  // a FIN_WAIT2 minisocket followed it: its TIME_WAIT began later
};

// Whether `time_wait`'s timer puts its start at an end read at `end_ms` (k_time_wait_link_slack_ms).
bool began_at(const OpenSpan& time_wait, std::int64_t end_ms);

// Which spans EndJoin::look is shown, oldest first: a later rank's span is a newer state.
enum class SpanAge : int { closed_before = 0, alive_before = 1, opened_now = 2 };

// Who owned an end, and on what grounds (connection_ends.owner_basis, owner_reason).
struct Owner {
  std::int64_t process_id = 0;
  const char* basis = "none";
  std::string reason;
};

// The addresses.addr_id of the wildcard addresses a listener binds, where stored.
struct Wildcards {
  std::optional<std::int32_t> v4;
  std::optional<std::int32_t> v6;
};

// Joins a snapshot's socket ends to the spans of its namespace: looks at the spans alive before
// the snapshot and those it opened, remembering per end the spans of the same socket (endpoints,
// and cookie where the span has one) and, for the local ports the ends used, who listened on them
// and who held them.
class EndJoin {
 public:
  explicit EndJoin(const std::vector<model::SocketEnd>& ends);
  void look(const std::vector<OpenSpan>& spans, SpanAge age);
  // Each end's local address id (addresses.addr_id), in the order of the ends.
  void set_address_ids(std::vector<std::int32_t> ids) { m_address_ids = std::move(ids); }
  std::int32_t address_id(std::size_t i) const { return m_address_ids.at(i); }
  const EndMatch& match(std::size_t i) const { return m_matches[i]; }
  // The TIME_WAIT span its end began: one with its cookie, else the one this snapshot opened with
  // its endpoints when no other end of this snapshot has them (the kernel gives a cookie only when
  // asked: a TIME_WAIT socket copies its socket's, which was none unless a dump had asked).
  std::int64_t time_wait_span(std::size_t i) const;
  Owner owner(std::size_t i, const Wildcards& wildcards) const;
  // Another end (of the previous snapshot) had these endpoints: a TIME_WAIT span with them is
  // linked to an end of this one only by cookie.
  void ambiguous(const model::Identity& connection) { m_ambiguous.insert(connection.hash); }
  // Whether one of the ends has these endpoints.
  bool has_connection(const model::Identity& connection) const;
  const model::Identity& connection(std::size_t i) const { return m_ids[i]; }

 private:
  const std::vector<model::SocketEnd>& m_ends;
  std::vector<EndMatch> m_matches;
  std::vector<model::Identity> m_ids;
  std::unordered_map<std::uint64_t, std::vector<std::size_t>> m_by_connection;  // identity hash -> ends
  std::set<std::pair<model::Proto, std::uint16_t>> m_ports;
  std::map<std::uint16_t, std::vector<std::pair<std::int32_t, std::int64_t>>> m_listeners;  // addr id, owner
  std::map<std::tuple<model::Proto, std::int32_t, std::uint16_t>, std::set<std::int64_t>> m_holders;
  std::vector<std::int32_t> m_address_ids;
  std::set<std::uint64_t> m_ambiguous;
};

}  // namespace sockhist::store::writer

namespace sockhist::store {

struct SnapshotWriter::Impl {
  using Capture = model::Capture;
  using Socket = model::Socket;
  using OpenSpan = writer::OpenSpan;
  using NewSpan = writer::NewSpan;
  using CounterCache = writer::CounterCache;
  using Previous = writer::Previous;
  using Matching = writer::Matching;
  using SockState = model::SockState;

  Impl(SQLite::Database& database, OpenSpans keep);

  SQLite::Database& db;
  OpenSpans open_spans;
  std::unordered_map<std::string, std::pair<std::int64_t, std::string>> host_ids;            // name -> id, machine-id
  std::map<std::tuple<std::int64_t, std::uint64_t, std::uint64_t>, std::int64_t> netns_ids;  // host, inode, cookie
  std::map<std::tuple<std::int64_t, std::string, std::int32_t, std::uint64_t>, std::int64_t> process_ids;
  std::unordered_map<std::string, std::int64_t> counter_ids;
  std::map<std::pair<model::Proto, std::string_view>, std::int64_t> state_ids;  // names are literals
  std::unordered_map<std::string, std::int64_t> address_ids;
  std::unordered_map<std::int64_t, CounterCache> counter_cache;  // by netns_id
  // A looping collector's open spans, by netns_id, as of the snapshot it last wrote there.
  struct OpenCache {
    std::int64_t snapshot_id = 0;
    std::vector<OpenSpan> spans;
  };
  std::unordered_map<std::int64_t, OpenCache> open_cache;
  // A looping collector's TCP and UDP spans (not TIME_WAIT) that the snapshot it last wrote in a
  // namespace closed: an end announced late (the kernel queues announcements from a work queue) is
  // joined to them in the next snapshot.
  std::unordered_map<std::int64_t, OpenCache> closed_cache;
  // The ends the last snapshot in a namespace stored without the TIME_WAIT they may have begun: a
  // socket freed as that snapshot was taken shows its TIME_WAIT only in the next one.
  struct WaitingEnd {
    model::Identity connection;
    std::int64_t end_id = 0;
    std::int64_t cookie = 0;
    std::int64_t time_ms = 0;
  };
  struct WaitingEnds {
    std::int64_t snapshot_id = 0;
    std::unordered_multimap<std::uint64_t, WaitingEnd> by_connection;
  };
  std::unordered_map<std::int64_t, WaitingEnds> waiting_for_time_wait;
  std::set<std::tuple<std::int64_t, std::uint32_t, std::string>> users_written;
  std::vector<OpenSpan> opened_now;  // the spans write_spans opened, when the connection log needs them
  WriteStats stats;

  // The statements every snapshot runs, prepared once for the writer's life.
  SQLite::Statement select_previous;
  SQLite::Statement insert_snapshot_row;
  SQLite::Statement insert_diagnostic;
  SQLite::Statement upsert_user;
  SQLite::Statement close_span;
  SQLite::Statement insert_span;
  SQLite::Statement insert_values;
  SQLite::Statement insert_count;
  SQLite::Statement insert_value;
  SQLite::Statement finish_snapshot;
  SQLite::Statement write_time_wait_entries;
  // The connection log's, prepared at its first use.
  struct ConnectionStatements {
    explicit ConnectionStatements(SQLite::Database& db);
    SQLite::Statement insert_log;
    SQLite::Statement insert_end;
    SQLite::Statement insert_aggregate;
    SQLite::Statement select_birth;
    SQLite::Statement link_time_wait;
  };
  std::unique_ptr<ConnectionStatements> connection_statements;

  // Forgets every cached id and open span (after a rollback, they may not exist).
  void forget();

  // Row ids, created when new (writer_ids.cpp).
  std::int64_t ensure_host(const Capture& cap);
  std::int64_t ensure_netns(std::int64_t host_id, const Capture& cap);
  std::optional<std::pair<std::int64_t, bool>> newest_netns(std::int64_t host_id, std::uint64_t inode);
  bool same_namespace(std::int64_t netns_id, bool initial, const Capture& cap);
  std::int64_t ensure_process(std::int64_t host_id, const std::string& boot_id, const model::Process& p);
  std::int64_t ensure_counter(const model::Counter& c);
  std::int64_t ensure_state(model::Proto proto, SockState state);
  std::int64_t ensure_address(const std::string& addr);
  std::optional<std::int64_t> find_address(const std::string& addr);  // nothing written
  // The value of every counter of a namespace as of one snapshot: a looping collector's last
  // write, else read back.
  const CounterCache& counters_before(std::int64_t netns_id, std::int64_t snapshot_id);

  // The phases of one snapshot (writer.cpp), in the order write_one runs them.
  WriteStats write_one(const Capture& cap);
  std::optional<Previous> previous_snapshot(std::int64_t netns_id);
  std::int64_t insert_snapshot(const Capture& cap, std::int64_t netns_id);
  void write_diagnostics(const Capture& cap, std::int64_t snapshot_id);
  void write_users(const Capture& cap, std::int64_t host_id);
  std::unordered_map<std::int32_t, std::int64_t> write_processes(const Capture& cap, std::int64_t host_id);
  void write_state_counts(const Capture& cap, const writer::Sieve* sieve, std::int64_t snapshot_id);
  void write_counters(const Capture& cap, std::int64_t netns_id, std::int64_t snapshot_id,
                      const std::optional<Previous>& prev, bool same_boot);
  void finish(std::size_t sockets, std::int64_t snapshot_id);

  // The connection log (writer_connections.cpp): a log row, the ends joined (join is null when
  // none was heard) and the aggregates.
  void write_connections(const Capture& cap, std::int64_t netns_id, std::int64_t snapshot_id,
                         const std::optional<Previous>& prev, writer::EndJoin* join);
  std::int64_t write_end(const model::SocketEnd& end, std::size_t index, const writer::EndJoin& join,
                         const writer::Wildcards& wildcards, std::int64_t netns_id, std::int64_t snapshot_id,
                         const std::optional<Previous>& prev);
  // Links the TIME_WAIT spans this snapshot opened to the previous snapshot's ends they began.
  void link_late_time_waits(std::int64_t netns_id, const std::optional<Previous>& prev, writer::EndJoin* join);
  std::pair<std::optional<std::int64_t>, std::optional<std::int64_t>> birth_bounds(std::int64_t span_id,
                                                                                   std::int64_t netns_id);

  // The span phases (writer_spans.cpp).
  std::vector<OpenSpan> open_spans_before(std::int64_t netns_id, const Previous& prev, bool same_boot);
  Matching match_sockets(const Capture& cap, std::vector<OpenSpan>& open, const writer::OpenIndex& open_by_key,
                         const std::unordered_map<std::int32_t, std::int64_t>& process_of_pid) const;
  void link_by_connection(std::vector<OpenSpan>& open, Matching& matching) const;
  void close_ended(const std::vector<OpenSpan>& open, const Previous& prev);
  void write_values(const Capture& cap, std::int64_t snapshot_id, std::vector<OpenSpan>& open,
                    const Matching& matching);
  void write_spans(const Capture& cap, std::int64_t netns_id, std::int64_t snapshot_id, std::vector<OpenSpan> open,
                   const std::vector<NewSpan>& fresh);
  bool bind_span(const Capture& cap, const NewSpan& next, std::int64_t netns_id, std::int64_t snapshot_id);

  // The sieve (writer_sieve.cpp) and its lookups: ids that exist already, nothing written.
  std::shared_ptr<model::SocketSieve> make_sieve(const Capture& facts);
  std::optional<std::int64_t> find_host(const Capture& cap);
  std::optional<std::int64_t> find_netns(std::int64_t host_id, const Capture& cap);
  std::optional<bool> same_namespace_by_identity(bool initial, const Capture& cap, const std::optional<Previous>& prev);
  std::optional<std::int64_t> find_process(std::int64_t host_id, const std::string& boot_id, const model::Process& p);
};

namespace writer {

// A namespace's open spans, as a capture's sieve compares its sockets with them before write()
// takes them over (SnapshotWriter::sieve_for).
class Sieve final : public model::SocketSieve {
 public:
  // find_process: a process's stored row, nullopt when it has none yet.
  using FindProcess = std::function<std::optional<std::int64_t>(const model::Process&)>;
  Sieve(std::int64_t netns_id, std::int64_t previous_id, std::int64_t time_ms, std::vector<OpenSpan> open,
        FindProcess find_process);

  void know_owners(const std::vector<model::Process>& processes) override;
  bool keep(const model::Socket& socket) override;
  void begin_table() override { m_touched.clear(); }
  void withdraw_table() override;
  std::size_t left_out() const override { return m_left_out; }

  std::int64_t netns_id() const { return m_netns_id; }
  std::int64_t previous_id() const { return m_previous_id; }
  // What write() takes over: the open spans (those whose socket was left out marked matched) and
  // their index.
  std::vector<OpenSpan> take_open() { return std::move(m_open); }
  OpenIndex take_index() { return std::move(m_index); }
  // The sockets left out, per protocol and state.
  const std::map<std::pair<model::Proto, SockState>, std::int64_t>& counts() const { return m_counts; }

 private:
  std::int64_t m_netns_id;
  std::int64_t m_previous_id;
  std::int64_t m_time_ms;
  std::vector<OpenSpan> m_open;
  OpenIndex m_index;
  FindProcess m_find_process;
  std::unordered_map<std::int32_t, std::int64_t> m_process_of_pid;  // 0: no row yet (a new process)
  std::vector<std::size_t> m_touched;                               // open spans met since begin_table
  std::map<std::pair<model::Proto, SockState>, std::int64_t> m_counts;
  std::size_t m_left_out = 0;
};

}  // namespace writer

}  // namespace sockhist::store
