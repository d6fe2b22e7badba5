// The central store: many hosts' histories in ClickHouse (schema/clickhouse/), reached over its
// HTTP interface. `sockhist ship` sends a database's history there; `sockhist fleet` asks it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace SQLite {
class Database;
}

namespace sockhist::central {

// Where the server is and who we are to it. The password never comes from the command line: a
// credentials file (mode 0600 or stricter, "user:password" on its first line) or the environment
// (SOCKHIST_CLICKHOUSE_USER, SOCKHIST_CLICKHOUSE_PASSWORD).
struct Endpoint {
  std::string url;                    // http://host:8123 or https://host:8443, no user or password in it
  std::string database = "sockhist";  // made when absent
  std::optional<std::string> user;
  std::optional<std::string> password;
  std::optional<std::string> cacert;  // a CA bundle for https (default: the system's)
  std::chrono::seconds timeout{600};  // a whole request, sending included
};

// The endpoint of --to/--from URL, --database and --credentials FILE, with the environment's
// credentials when no file is given. Throws Error(usage) naming the option at fault: a URL with a
// password or a query in it, a scheme other than http and https, a credentials file others can read.
Endpoint endpoint_of(const std::string& url, const std::string& database, const std::optional<std::string>& credentials,
                     const char* url_option);

// One ClickHouse server over HTTP (libcurl). Every failure throws Error(failure) with the server's
// own first line of explanation.
class Server {
 public:
  explicit Server(Endpoint endpoint);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Runs one statement in the endpoint's database (`in_database` false: none, to create it) and
  // returns what the server answered.
  std::string run(std::string_view sql, bool in_database = true);
  // INSERT INTO table (columns) FORMAT TabSeparated, with `rows` as the body, sent as one block.
  void insert(std::string_view table, std::string_view columns, const std::string& rows);
  // Names the inserts from now on: query_id `tag` followed by the process id and a count, so that
  // the server's system.processes shows which are still being read (an empty tag: the server's ids).
  void set_insert_tag(std::string tag);
  // The rows of a SELECT as TabSeparated fields (\N for NULL left as it is), unescaped.
  std::vector<std::vector<std::string>> select(std::string_view sql, bool in_database = true);

  // A field of a reply as a number; Error(failure) naming the server when it is not one (a server
  // that is not ClickHouse, or a reply cut short).
  std::int64_t number(const std::vector<std::vector<std::string>>& rows, std::size_t row, std::size_t column) const;

  const Endpoint& endpoint() const;
  std::uint64_t bytes_sent() const;  // request bodies so far
  std::string version();             // SELECT version()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Creates the database, the tables (schema/clickhouse/NNN_*.sql) and the views when missing, and
// records the central schema's version. Refuses (Error(db_refused)) a store of a newer version.
void prepare(Server& server);
// The central schema's version this build writes.
int schema_version();

// Field text for a TabSeparated body: \ \t \n \r and NUL escaped; `null` writes \N.
void append_field(std::string& out, std::string_view text);
inline constexpr std::string_view k_null_field = "\\N";

// What `ship` did for one namespace of one host.
struct ShippedNetns {
  std::string host;
  std::string netns_key;
  std::int64_t from_snapshot = 0;  // the server's newest before (0: none)
  std::int64_t to_snapshot = 0;    // and after
  std::int64_t snapshots = 0;
  std::int64_t rows = 0;           // every row of every table
  std::uint64_t bytes = 0;         // request bodies
  bool new_key = false;            // first shipped now
  std::vector<std::string> notes;  // said on stderr too: a gap, a history that ended
};

struct ShipOptions {
  std::string source_file;             // as the pushes table records it
  std::int64_t chunk_snapshots = 720;  // a namespace's snapshots per round of INSERTs
  // Called after each round: namespace index, snapshots shipped of it, its total.
  std::function<void(const ShippedNetns&, std::int64_t done, std::int64_t total)> progress;
  std::function<void(const std::string&)> note;  // one line about the source or the server
};

// Sends every snapshot of `source` the server does not have yet, namespace by namespace, in rounds of
// chunk_snapshots: each round's rows table by table, its snapshots last (a snapshot stored on the
// server means every row about it is), after removing what an interrupted push left beyond the
// server's newest snapshot. Refuses (Error(db_refused)) a host whose machine-id differs from the one
// the server holds under that name.
std::vector<ShippedNetns> ship(SQLite::Database& source, Server& server, const ShipOptions& options);

// A string literal for ClickHouse SQL, quotes and backslashes escaped.
std::string quote(std::string_view text);

// The sockets one snapshot of one namespace saw, as the SQLite store's v_snapshot_sockets gives
// them (ClickHouse 18.16 has no view that takes a parameter): the spans alive at it, each with its
// values as of it. Columns: span_id, proto, family, state, local_addr, local_port, remote_addr,
// remote_port, tx_queue, rx_queue, timer_code, timer_ms, retransmits, probes, backlog, uid, inode,
// pid, process, cmdline, user, cookie, owner_carried, sock_type, unix_flags, peer_inode,
// first_time_ms, values_snapshot_id, uid_user; ordered by span_id.
std::string socket_list_sql(std::string_view host, std::string_view netns_key, std::int64_t snapshot_id);

// One namespace of one host as the central store holds it.
struct FleetNamespace {
  std::string host, netns_key;
  std::int64_t netns = 0;  // inode
  bool initial = true;
  std::int64_t first_ms = 0, newest_ms = 0, snapshots = 0;
  std::optional<std::int64_t> interval_ms;  // the usual interval, as `check` takes it (model::usual_interval_ms)
  std::string kernel, machine_id;           // the newest snapshot's ("" unknown)
};
// `host`: that host's alone (what `fleet show` needs), not the whole store's.
std::vector<FleetNamespace> fleet_namespaces(Server& server, const std::optional<std::string>& host = std::nullopt);

// The hosts a fleet question covers: all when empty.
using HostList = std::vector<std::string>;

// One snapshot of one namespace, as the fleet's trends place it.
struct FleetSnapshot {
  std::string host, netns_key;
  std::int64_t id = 0, time_ms = 0;
  std::string boot_id;  // "" unknown
};
// The snapshots taken in [since_ms, until_ms], by host, namespace and id.
std::vector<FleetSnapshot> fleet_snapshots(Server& server, const HostList& hosts, std::int64_t since_ms,
                                           std::int64_t until_ms);

// The highest count of sockets in one bucket of bucket_ms (aligned to the epoch, as trend's),
// per key: "tcp ESTABLISHED" for a (protocol, state) as state_counts stores it, or a protocol
// alone ("udp", "unix") for its total over states. Only keys some snapshot counted are listed.
struct FleetStateMax {
  std::string host, netns_key;
  std::int64_t bucket_ms = 0;
  std::string key;
  std::int64_t count = 0;
};
std::vector<FleetStateMax> fleet_state_maxima(Server& server, const HostList& hosts, std::int64_t since_ms,
                                              std::int64_t until_ms, std::int64_t bucket_ms);

// A TCP span of one namespace as close-wait needs it.
struct FleetSpan {
  std::string host, netns_key;
  std::int64_t span_id = 0;
  std::optional<std::int64_t> prev_span_id;
  std::int64_t first_snapshot_id = 0;
  std::optional<std::int64_t> last_snapshot_id;  // nullopt: still seen by the newest snapshot
  std::int64_t first_time_ms = 0;
  std::string state;
  int family = 4;
  std::string local_addr, remote_addr;
  std::int64_t local_port = 0, remote_port = 0;
  std::optional<std::int64_t> pid;
  std::string process;
  std::optional<std::string> cmdline;
};
// The TCP spans in `state` alive at some snapshot of their namespace in [since_ms, until_ms], by
// host, namespace and span id.
std::vector<FleetSpan> fleet_spans_in_state(Server& server, const HostList& hosts, const std::string& state,
                                            std::int64_t since_ms, std::int64_t until_ms);
// Spans of one namespace by id (the earlier links of a chain).
std::vector<FleetSpan> fleet_spans_by_id(Server& server, const std::string& host, const std::string& netns_key,
                                         const std::vector<std::int64_t>& ids);
// The TCP ports that listened at some snapshot of their namespace in [since_ms, until_ms].
struct FleetPort {
  std::string host, netns_key;
  std::int64_t port = 0;
};
std::vector<FleetPort> fleet_listening_ports(Server& server, const HostList& hosts, std::int64_t since_ms,
                                             std::int64_t until_ms);

// TIME_WAIT per namespace over the snapshots of [since_ms, until_ms]: the entries recorded by those
// after the first (time_wait_entries: what entered between the range's first snapshot and its last;
// a namespace's newest snapshot's arrive with the next push) and the TIME_WAIT population: its
// highest, when first at that height, and in the range's last snapshot.
struct FleetTimeWaitHost {
  std::string host, netns_key;
  std::int64_t snapshots = 0, entries = 0;
  std::int64_t first_ms = 0, last_ms = 0;  // the range's first and last snapshot
  std::int64_t peak = 0, peak_ms = 0, now = 0;
};
std::vector<FleetTimeWaitHost> fleet_time_wait_hosts(Server& server, const HostList& hosts, std::int64_t since_ms,
                                                     std::int64_t until_ms);
// TIME_WAIT entries per remote address across the hosts (as counted above), most first (`top` 0: all): how many hosts
// saw some, and the one that saw the most (on a tie, the first by name).
struct FleetTimeWaitRemote {
  std::string remote_addr;
  std::int64_t entries = 0, hosts = 0;
  std::string worst_host;
  std::int64_t worst_entries = 0;
};
// TIME_WAIT entries (as counted above) per host, namespace and owner (its TIME_WAIT span's pid and
// process; none where no owner was known), most first (`top` 0: all).
struct FleetTimeWaitOwner {
  std::string host, netns_key;
  std::optional<std::int64_t> pid;
  std::string process;
  std::int64_t entries = 0;
};
std::vector<FleetTimeWaitOwner> fleet_time_wait_owners(Server& server, const HostList& hosts, std::int64_t since_ms,
                                                       std::int64_t until_ms, std::size_t top);
std::vector<FleetTimeWaitRemote> fleet_time_wait_remotes(Server& server, const HostList& hosts, std::int64_t since_ms,
                                                         std::int64_t until_ms, std::size_t top);

}  // namespace sockhist::central
