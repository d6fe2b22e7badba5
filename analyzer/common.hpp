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

#include "sockhist/query.hpp"
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
  std::int64_t now_ms = command_now_ms();  // relative times count back from it
};

// --since and --until of a command that looks at a range (default: the last 24 hours).
struct Window {
  std::string since = "24h";
  std::optional<std::string> until;
};
void add_window(CLI::App& sub, Window& window);
// The range as epoch ms [since, until]; throws Error(usage) naming the option.
std::pair<std::int64_t, std::int64_t> resolve_window(const Window& window, std::int64_t now_ms);

// Adds --db, --host, --netns, --format and --utc to a subcommand (without --host and --netns for
// commands whose arguments name their hosts themselves: diff, sql).
void add_common(CLI::App& sub, Common& common, bool with_scope = true);

// Registers a subcommand whose callback stores `run` into `selected`.
CLI::App* add_command(CLI::App& app, const std::string& name, const std::string& description, Runner& selected,
                      std::function<Result()> run);

render::Options render_options(const Common& common);

// Opens the database read-only (store::open_read_only), after checking it exists.
SQLite::Database open_db(const Common& common);

// --at/--since/--until values as epoch ms; throws Error(usage) naming the option.
std::int64_t parse_moment(const std::string& text, const char* option, std::int64_t now_ms);
// --bucket and similar; throws Error(usage) naming the option.
std::int64_t parse_duration(const std::string& text, const char* option, bool allow_zero = false);

// The snapshot --at names (the newest at or before it), or the newest without --at; throws
// Error(usage) when none is that old.
query::SnapshotSummary snapshot_for(SQLite::Database& db, const query::Scope& scope,
                                       const std::optional<std::string>& at, std::int64_t now_ms);

// A JSON document's common head: the command, the database, the host and namespace.
nlohmann::ordered_json json_head(const std::string& command, const Common& common, const query::Scope* scope);

using query::program;

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
void setup_check(CLI::App& app, Runner& selected);
void setup_merge(CLI::App& app, Runner& selected);
void setup_export(CLI::App& app, Runner& selected);
void setup_sql(CLI::App& app, Runner& selected);
void setup_diff(CLI::App& app, Runner& selected);
void setup_import(CLI::App& app, Runner& selected);

}  // namespace sockhist::analyzer
