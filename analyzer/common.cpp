#include "common.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::analyzer {

std::int64_t command_now_ms() {
  if (const char* fixed = std::getenv("SOCKHIST_NOW"); fixed != nullptr && *fixed != '\0') {
    if (const auto ms = model::parse_time_ms(fixed)) {
      return *ms;
    }
    throw Error(Exit::usage,
                fmt::format("SOCKHIST_NOW={}: not a time (ISO-8601, for example 2026-11-20T03:12:00Z)", fixed));
  }
  return model::now_ms();
}

void add_common(CLI::App& sub, Common& common, bool with_scope, bool with_timeout, bool with_format) {
  sub.add_option("--db", common.db, "Database file (default: $SOCKHIST_DB, else the collector's default)");
  if (with_scope) {
    sub.add_option("--host", common.host, "Host to look at (required when the database holds several)");
    sub.add_option("--netns", common.netns,
                   "Network namespace: a /run/netns name or an inode (default: $SOCKHIST_NETNS, else the host's own "
                   "namespace, else its only one)")
        ->envname("SOCKHIST_NETNS");
  }
  if (with_format) {
    sub.add_option("--format", common.format, "Output: table (for people), json or csv (for programs)")
        ->check(CLI::IsMember({"table", "json", "csv"}))
        ->capture_default_str();
  }
  sub.add_flag("--utc", common.utc, "Print times in UTC instead of local time (json and csv are always UTC)");
  if (with_timeout) {
    sub.add_option("--timeout", common.timeout,
                   "Give up after this long, exit 2 (a guard against a damaged or hostile database; 0: never)")
        ->capture_default_str();
  }
}

void add_window(CLI::App& sub, Window& window, const WindowDefaults& defaults, const std::string& what) {
  sub.add_option(
      "--since", window.since,
      fmt::format("{} (ISO-8601, 'YYYY-MM-DD HH:MM', HH:MM, or a duration ago such as 24h; default: {})", what,
                  !defaults.without.empty() ? defaults.without
                  : defaults.since          ? *defaults.since + " ago"
                                            : std::string("the first snapshot")));
  sub.add_option("--until", window.until,
                 fmt::format("End (the same forms; default: {})", defaults.until_now ? "now" : "the newest snapshot"));
}

std::pair<std::int64_t, std::int64_t> resolve_window(const Window& window, const WindowDefaults& defaults,
                                                     std::int64_t now_ms) {
  const auto since_text = window.since ? window.since : defaults.since;
  const auto since = since_text ? parse_moment(*since_text, "--since", now_ms) : INT64_MIN;
  const auto until = window.until         ? parse_moment(*window.until, "--until", now_ms)
                     : defaults.until_now ? now_ms
                                          : INT64_MAX;
  if (since > until) {
    throw Error(Exit::usage, "--since is after --until");
  }
  return {since, until};
}

CLI::App* add_command(CLI::App& app, const std::string& name, const std::string& description, Runner& selected,
                      std::function<Result()> run) {
  auto* sub = app.add_subcommand(name, description);
  sub->callback([&selected, run = std::move(run)] { selected = run; });
  return sub;
}

render::Options render_options(const Common& common) {
  render::Options o;
  o.format = common.format == "json"  ? render::Format::json
             : common.format == "csv" ? render::Format::csv
                                      : render::Format::table;
  o.zone = common.utc ? model::Zone::utc : model::Zone::local;
  return o;
}

SQLite::Database open_db(const Common& common) {
  const auto path = store::resolve_db_path(common.db);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      throw Error(Exit::usage,
                  fmt::format("{}: no such database (--db, $SOCKHIST_DB; sockhist-collect creates it)", path.string()));
    }
    // Not ours to read: a directory of another user or group (the database is never world-readable).
    throw Error(Exit::db_refused, fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  }
  store::set_read_time_limit(std::chrono::milliseconds(parse_duration(common.timeout, "--timeout", true)));
  return store::open_read_only(path, [&](const std::string& damage) {
    fmt::print(stderr, "sockhist: warning: {}: is damaged: {}; what it answers may be incomplete or wrong\n",
               path.string(), damage);
  });
}

query::Scope resolve_scope(SQLite::Database& db, const std::optional<std::string>& host,
                           const std::optional<std::string>& netns) {
  auto scope = query::resolve_scope(db, host, netns);
  if (scope.note) {
    fmt::print(stderr, "sockhist: note: {}\n", *scope.note);
  }
  return scope;
}

std::int64_t parse_moment(const std::string& text, const char* option, std::int64_t now_ms) {
  const auto ms = model::parse_moment_ms(text, now_ms);
  if (!ms) {
    throw Error(Exit::usage,
                fmt::format("{} '{}': not a time (examples: 2026-11-20T03:12:00Z, '2026-11-20 03:12', 03:12, "
                            "90s, 15m, 2h, 3d)",
                            option, text));
  }
  return *ms;
}

std::int64_t parse_duration(const std::string& text, const char* option, bool allow_zero) {
  const auto ms = text == "0" && allow_zero ? std::optional<std::int64_t>(0) : model::parse_duration_ms(text);
  if (!ms || *ms < 0 || (*ms == 0 && !allow_zero)) {
    throw Error(Exit::usage, fmt::format("{} '{}': not a duration (examples: 30s, 5m, 1h, 1d)", option, text));
  }
  return *ms;
}

query::SnapshotSummary snapshot_for(SQLite::Database& db, const query::Scope& scope,
                                    const std::optional<std::string>& at, std::int64_t now_ms) {
  if (!at) {
    return *query::latest_snapshot(db, scope);
  }
  const auto when = parse_moment(*at, "--at", now_ms);
  auto found = query::snapshot_at(db, scope, when);
  if (!found) {
    throw Error(Exit::usage, fmt::format("--at {}: no snapshot of {} at or before {}", *at, scope.host,
                                         model::format_iso_utc(when)));
  }
  // A moment the history does not cover (the collector was not running then, or has stopped) is
  // answered from the snapshot before it: say so, on a terminal or not.
  const auto usual = query::usual_interval_ms(db, scope, found->id);
  const auto gap = when - found->time_ms;
  if (gap > std::max<std::int64_t>(usual.value_or(60'000), 1'000)) {
    fmt::print(
        stderr,
        "sockhist: note: --at {}: showing snapshot {} taken {} earlier, at {} (snapshots are usually {} apart)\n", *at,
        found->id, model::format_duration(gap), model::format_iso_utc(found->time_ms),
        usual ? model::format_duration(*usual) : std::string("more than a minute"));
  }
  return *found;
}

nlohmann::ordered_json json_head(const std::string& command, const Common& common, const query::Scope* scope) {
  nlohmann::ordered_json doc;
  doc["command"] = command;
  doc["database"] = store::resolve_db_path(common.db).string();
  doc["generated"] = model::format_iso_utc(common.now_ms);
  if (scope) {
    doc["host"] = {{"name", scope->host},
                   {"machine_id", scope->machine_id ? nlohmann::ordered_json(*scope->machine_id) : nullptr},
                   {"netns", scope->netns_inode},
                   {"netns_name", scope->netns_name ? nlohmann::ordered_json(*scope->netns_name) : nullptr},
                   {"netns_initial", scope->netns_initial}};
  }
  return doc;
}

std::string scope_line(const query::Scope& scope) {
  std::string ns =
      scope.netns_initial ? "its own network namespace" : fmt::format("network namespace {}", scope.netns_inode);
  if (scope.netns_name) {
    ns += fmt::format(" ({})", *scope.netns_name);
  }
  return fmt::format("host {}, {}", scope.host, ns);
}

std::string endpoint(const std::string& addr, std::int64_t port) {
  return fmt::format("{}:{}", addr, port);
}

render::Value optional_value(const std::optional<std::int64_t>& v) {
  return v ? render::Value(*v) : render::Value();
}

render::Value optional_value(const std::optional<std::string>& v) {
  return v ? render::Value(*v) : render::Value();
}

void write_atomically(const std::string& path, const std::string& text, const char* option, unsigned mode) {
  const std::filesystem::path target(path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
    throw Error(Exit::usage, fmt::format("{} {}: exists and is not a regular file; left as it was", option, path));
  }
  const auto dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  const auto tmp = dir / fmt::format(".{}.{}.tmp", target.filename().string(), ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    throw Error(Exit::usage,
                fmt::format("{} {}: cannot write in {}: {}", option, path, dir.string(), std::strerror(errno)));
  }
  std::size_t done = 0;
  int err = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) {
    err = errno;
  }
  if (::close(fd) != 0 && err == 0) {
    err = errno;
  }
  if (err == 0 && ::rename(tmp.c_str(), target.c_str()) != 0) {
    err = errno;
  }
  if (err != 0) {
    ::unlink(tmp.c_str());
    throw Error(Exit::usage, fmt::format("{} {}: {}; left as it was", option, path, std::strerror(err)));
  }
}

void CentralOptions::add_to(CLI::App& sub, const char* url_option, const std::string& database_help) {
  url_option_ = url_option;
  sub.add_option(url_option, url, "ClickHouse's HTTP interface: http://HOST:8123 or https://HOST:8443 (no credentials)")
      ->required();
  sub.add_option("--database", database, database_help)->capture_default_str();
  sub.add_option("--credentials", credentials,
                 "A file (mode 0600) whose first line is user:password; else SOCKHIST_CLICKHOUSE_USER and "
                 "SOCKHIST_CLICKHOUSE_PASSWORD, else the server's default user");
  sub.add_option("--cacert", cacert, "CA certificates for https (default: the system's)");
}

central::Endpoint CentralOptions::endpoint() const {
  auto e = central::endpoint_of(url, database, credentials, url_option_);
  e.cacert = cacert;
  return e;
}

}  // namespace sockhist::analyzer
