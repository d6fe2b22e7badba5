// The snapshot writer's insides, shared by its three source files: writer.cpp (one snapshot as
// named phases, and the public API), writer_ids.cpp (the row ids of hosts, namespaces, processes,
// counters, states and addresses, cached across snapshots) and writer_spans.cpp (matching a
// capture's sockets against the open spans). Private to schema/.
#pragma once

#include <functional>
#include <map>
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

// A TIME_WAIT socket whose time remaining exceeds what the span's first observation predicts by
// more than this is a new socket on a reused 4-tuple (docs/kernel.md: TIME_WAIT counts down from 60 s).
inline constexpr std::int64_t k_timewait_slack_ms = 2000;

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
  std::set<std::tuple<std::int64_t, std::uint32_t, std::string>> users_written;
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
