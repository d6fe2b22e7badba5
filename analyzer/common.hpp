// What every analyzer subcommand shares: the database, host and namespace options, the output
// format, and the parsing of times. Each subcommand lives in its own file (cmd_*.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <SQLiteCpp/Database.h>
#include <CLI/CLI.hpp>

#include "sockhist/central.hpp"
#include "sockhist/query.hpp"
#include "sockhist/query/check.hpp"
#include "sockhist/render.hpp"

namespace sockhist::analyzer {

// What a subcommand produced: the text for stdout and the exit code (0, or 1 where a command
// reports findings, like diff).
struct Result {
  std::string out;
  int code = 0;
};
using Runner = std::function<Result()>;

// Now, for relative times: $SOCKHIST_NOW (an absolute time, for reproducible output) or the clock.
std::int64_t command_now_ms();

struct Common {
  std::optional<std::string> db;
  std::optional<std::string> host;
  std::optional<std::string> netns;
  std::string format = "table";
  bool utc = false;
  std::string timeout = "10m";             // every statement interrupted after this long ("0": never)
  std::int64_t now_ms = command_now_ms();  // relative times count back from it
};

// --since and --until as given, and what a command takes when they are not: every command that
// looks at a range declares and resolves them through add_window and resolve_window, so that they
// parse alike and each --help states its own defaults.
struct Window {
  std::optional<std::string> since;
  std::optional<std::string> until;
};
struct WindowDefaults {
  std::optional<std::string> since;  // a moment ("24h": that long ago); none: from the first snapshot
  bool until_now = true;             // false: up to the newest snapshot, even one dated after now
  std::string without;               // for --help: what the command looks at without --since, if not a range
};
// Declares --since and --until on `sub`, their help saying what `defaults` means.
void add_window(CLI::App& sub, Window& window, const WindowDefaults& defaults, const std::string& what = "Start");
// The range as epoch ms [since, until]; throws Error(usage) naming the option at fault.
std::pair<std::int64_t, std::int64_t> resolve_window(const Window& window, const WindowDefaults& defaults,
                                                     std::int64_t now_ms);

// Adds --db, --host, --netns, --format and --utc to a subcommand (without --host and --netns for
// commands whose arguments name their hosts themselves: diff, sql; without --format for report, whose
// formats are its own).
void add_common(CLI::App& sub, Common& common, bool with_scope = true, bool with_timeout = true,
                bool with_format = true);

// Registers a subcommand whose callback stores `run` into `selected`.
CLI::App* add_command(CLI::App& app, const std::string& name, const std::string& description, Runner& selected,
                      std::function<Result()> run);

render::Options render_options(const Common& common);

// Opens the database read-only (store::open_read_only), after checking it exists.
SQLite::Database open_db(const Common& common);

// query::resolve_scope, with its note (a --netns that named several namespaces over time) on stderr.
query::Scope resolve_scope(SQLite::Database& db, const std::optional<std::string>& host,
                           const std::optional<std::string>& netns);

// --at/--since/--until values as epoch ms; throws Error(usage) naming the option.
std::int64_t parse_moment(const std::string& text, const char* option, std::int64_t now_ms);
// --bucket and similar; throws Error(usage) naming the option.
std::int64_t parse_duration(const std::string& text, const char* option, bool allow_zero = false);

// The snapshot --at names (the newest at or before it), or the newest without --at; throws
// Error(usage) when none is that old.
query::SnapshotSummary snapshot_for(SQLite::Database& db, const query::Scope& scope,
                                    const std::optional<std::string>& at, std::int64_t now_ms);

// The thresholds `check` takes, and `metrics` with it, as given.
struct ThresholdOptions {
  std::optional<std::string> close_wait_max_age;
  std::optional<std::string> max_age;
  std::optional<std::int64_t> close_wait_max_per_process;
  std::optional<std::int64_t> time_wait_max;
  std::optional<double> port_pressure_max;
  std::optional<std::int64_t> listen_overflows;
  std::optional<std::int64_t> time_wait_overflows;
  std::optional<std::int64_t> syn_recv_max;

  bool any() const;
  // Declares --max-age, --close-wait-max-age and the others on `sub`.
  void add_to(CLI::App& sub);
  // As query::Thresholds, durations parsed (Error(usage) naming the option). With `now_ms` (a check
  // that reaches now), staleness too: --max-age, by default 3 usual intervals and at least 5m.
  query::Thresholds resolve(SQLite::Database& db, const query::Scope& scope, std::optional<std::int64_t> now_ms) const;
};

// check's default --max-age for a scope whose snapshots come every `usual_interval_ms`: 3 intervals,
// at least 5 minutes (query::usual_interval_ms gives the interval).
std::int64_t default_max_age_ms(std::optional<std::int64_t> usual_interval_ms);

// What a check's outcome says, in one line (`window`: it looked at a range, not the newest snapshot),
// and its limit as the user gave it: a duration for ages, a percentage, or a count.
std::string check_message(const query::CheckOutcome& outcome, bool window, const render::Options& options);
std::string check_limit(const query::CheckOutcome& outcome);

// A JSON document's common head: the command, the database, the host and namespace.
nlohmann::ordered_json json_head(const std::string& command, const Common& common, const query::Scope* scope);

using query::program;

// An endpoint as netstat -n prints it: "10.0.0.1:443".
std::string endpoint(const std::string& addr, std::int64_t port);
// A table cell for an optional value: empty (null in JSON) when absent.
render::Value optional_value(const std::optional<std::int64_t>& v);
render::Value optional_value(const std::optional<std::string>& v);

// Replaces `path` with `text` whole or not at all: a temporary file in the same directory, created
// with `mode` (less the umask) and never through a link, renamed over it; an existing path that is
// neither a regular file nor a link is refused. Errors name `option` and leave the path as it was.
void write_atomically(const std::string& path, const std::string& text, const char* option, unsigned mode);

// Where the central ClickHouse store is (ship's --to, fleet's --from), which database, and the
// credentials file and CA certificates; the password never comes from the command line.
struct CentralOptions {
  std::string url;
  std::string database = "sockhist";
  std::optional<std::string> credentials;
  std::optional<std::string> cacert;
  // Declares `url_option` (required), --database, --credentials and --cacert on `sub`.
  void add_to(CLI::App& sub, const char* url_option, const std::string& database_help);
  // The endpoint they name (central::endpoint_of: Error(usage) naming the option at fault).
  central::Endpoint endpoint() const;

 private:
  const char* url_option_ = "--to";
};

// Sockets as `show --format json|csv` gives them, one row each (in_state_for counted to `snapshot_ms`).
render::Table socket_table(const std::vector<const query::SocketRow*>& rows, std::int64_t snapshot_ms);

// A trend as `trend` prints it: a row per bucket (its start, each series, snapshots, a note for a
// gap or a reboot).
render::Table trend_table(const query::Trend& trend);

// CLOSE_WAIT per owner as `close-wait --by process` prints it.
render::Table close_wait_owner_table(const std::vector<query::CloseWaitByProcess>& groups);

// One line naming the host and namespace for a table's heading.
std::string scope_line(const query::Scope& scope);

void setup_hosts(CLI::App& app, Runner& selected);
void setup_snapshots(CLI::App& app, Runner& selected);
void setup_show(CLI::App& app, Runner& selected);
void setup_stats(CLI::App& app, Runner& selected);
void setup_trend(CLI::App& app, Runner& selected);
void setup_explain(CLI::App& app, Runner& selected);
void setup_close_wait(CLI::App& app, Runner& selected);
void setup_time_wait(CLI::App& app, Runner& selected);
void setup_connections(CLI::App& app, Runner& selected);
void setup_check(CLI::App& app, Runner& selected);
void setup_metrics(CLI::App& app, Runner& selected);
void setup_merge(CLI::App& app, Runner& selected);
void setup_ship(CLI::App& app, Runner& selected);
void setup_fleet(CLI::App& app, Runner& selected);
void setup_export(CLI::App& app, Runner& selected);
void setup_sql(CLI::App& app, Runner& selected);
void setup_diff(CLI::App& app, Runner& selected);
void setup_import(CLI::App& app, Runner& selected);
void setup_report(CLI::App& app, Runner& selected);

}  // namespace sockhist::analyzer
