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

}  // namespace sockhist::central
