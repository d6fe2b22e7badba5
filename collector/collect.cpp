#include "collect.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include <sqlite3.h>

#include <fmt/format.h>

#include "sockhist/connection_log.hpp"
#include "sockhist/error.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::collector {

namespace {

std::int64_t duration_option(const std::string& text, const char* option) {
  const auto ms = model::parse_duration_ms(text);
  if (!ms) {
    throw Error(Exit::usage, fmt::format("{} {}: not a duration (examples: 500ms, 10s, 5m, 7d)", option, text));
  }
  return *ms;
}

// CPU time of the whole process (every thread), milliseconds.
std::int64_t cpu_ms() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000 +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000;
}

}  // namespace

void setup_collect(CLI::App& app, CollectOptions& o) {
  app.description(
      "Records every TCP, UDP and UNIX socket and the kernel's network counters into a SQLite history.\n"
      "One snapshot per run (for cron or a systemd timer), or a loop with --interval.");
  app.add_option("--db", o.db, "Database file (default: $SOCKHIST_DB, else /var/lib/sockhist/sockhist.db as root)");
  auto* root = app.add_option("--proc-root", o.proc_root, "Read this /proc tree instead of the live /proc");
  app.add_option("--host", o.host, "Record the snapshot under this host name");
  app.add_option("--at", o.at, "Record this time for a copied tree (ISO-8601, or 'YYYY-MM-DD HH:MM[:SS]' local)")
      ->needs(root);
  auto* interval = app.add_option("--interval", o.interval, "Take a snapshot every DURATION until SIGINT/SIGTERM");
  app.add_option("--count", o.count, "With --interval: stop after N snapshots")
      ->needs(interval)
      ->check(CLI::PositiveNumber);
  app.add_option("--retain", o.retain, "Remove live snapshots older than this (0: keep everything)")
      ->capture_default_str();
  app.add_option("--lock-wait", o.lock_wait, "How long to wait for another writer of the database")
      ->capture_default_str();
  app.add_option("--check-every", o.check_every,
                 "Run SQLite's quick_check on the database before writing to it when the last one recorded is "
                 "older than this (0: before every snapshot); a damaged database is refused, exit 3")
      ->capture_default_str();
  app.add_option("--source", o.source,
                 "Read live sockets through sock_diag netlink (falling back to /proc per table), or only one")
      ->check(CLI::IsMember({"auto", "netlink", "proc"}))
      ->capture_default_str();
  app.add_flag("--all-netns", o.all_netns,
               "Capture every network namespace (containers, ip netns): one snapshot each, one transaction");
  app.add_option("--netns", o.netns, "Capture this namespace: a /run/netns NAME, a PID in it, or a PATH (repeatable)");
  app.add_option("--group", o.group,
                 "The group that may read the database (its file, -wal and -shm: group NAME, mode 0640); "
                 "default sockhist when that group exists, '' for none");
  app.add_flag("--no-cmdline", o.no_cmdline, "Do not store process command lines");
  app.add_flag("--no-owners", o.no_owners, "Do not scan /proc/PID/fd for socket owners");
  app.add_flag("--no-connection-log", o.no_connection_log,
               "With --interval: do not record the TCP and UDP sockets the kernel destroys between snapshots");
  app.add_option("--connection-budget", o.connection_budget,
                 "With --interval: socket ends kept whole per namespace and snapshot; beyond, they are summed per "
                 "second, local port, remote address and state")
      ->needs(interval)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("-q,--quiet", o.quiet, "Print nothing on success, even on a terminal");
  app.add_flag("-v,--verbose", o.verbose, "Print a line per snapshot, even when not on a terminal");
  app.set_version_flag("--version", std::string("sockhist-collect ") + SOCKHIST_VERSION);
}

namespace {

// The options checked and turned into what a run needs.
struct RunSettings {
  capture::CaptureOptions capture;
  store::ReaderGroup group;
  std::int64_t interval_ms = 0;  // 0: one snapshot
  std::int64_t retain_ms = 0;
  std::int64_t lock_wait_ms = 0;
  std::int64_t check_every_ms = 0;
  bool namespaces = false;  // --all-netns or --netns
  bool report = false;      // a line per snapshot on stderr
};

RunSettings settings_of(const CollectOptions& o) {
  RunSettings r;
  auto& c = r.capture;
  c.proc_root = o.proc_root;
  std::error_code ignored;
  c.live = std::filesystem::weakly_canonical(o.proc_root, ignored) == "/proc";
  c.host = o.host;
  c.owners = !o.no_owners;
  c.cmdlines = o.no_cmdline ? capture::Cmdlines::omit : capture::Cmdlines::store;
  c.source = o.source == "netlink" ? capture::Source::netlink
             : o.source == "proc"  ? capture::Source::proc
                                   : capture::Source::automatic;
  if (!c.live && c.source == capture::Source::netlink) {
    throw Error(Exit::usage, "--source netlink reads the live kernel; it cannot be combined with --proc-root");
  }
  if ((o.all_netns || !o.netns.empty()) && !c.live) {
    throw Error(Exit::usage, "--all-netns and --netns read the live kernel; they cannot be combined with --proc-root");
  }
  if (o.all_netns && !o.netns.empty()) {
    throw Error(Exit::usage, "--all-netns already includes every namespace; drop --netns");
  }
  if (o.host && o.host->empty()) {
    throw Error(Exit::usage, "--host: the name must not be empty");
  }
  if (o.at) {
    c.at_ms = model::parse_time_ms(*o.at);
    if (!c.at_ms) {
      throw Error(Exit::usage,
                  fmt::format("--at {}: not a time (examples: 2026-11-20T03:12:00Z, '2026-11-20 03:12')", *o.at));
    }
  }
  r.interval_ms = o.interval ? duration_option(*o.interval, "--interval") : 0;
  if (o.interval && r.interval_ms <= 0) {
    throw Error(Exit::usage, "--interval: must be greater than zero");
  }
  if (o.interval && o.at) {
    throw Error(Exit::usage, "--interval cannot be combined with --at: a copied tree is one moment");
  }
  r.retain_ms = duration_option(o.retain, "--retain");
  r.lock_wait_ms = duration_option(o.lock_wait, "--lock-wait");
  r.check_every_ms = duration_option(o.check_every, "--check-every");
  r.group = o.group ? store::reader_group(*o.group, "--group") : store::default_reader_group();
  r.namespaces = o.all_netns || !o.netns.empty();
  r.report = o.verbose || (!o.quiet && ::isatty(STDERR_FILENO) != 0);
  return r;
}

// The namespaces asked for, looked up again for every snapshot (namespaces come and go); empty
// without --all-netns and --netns: the collector's own namespace.
std::vector<capture::NamespaceTarget> namespaces_asked(const CollectOptions& o, const RunSettings& r) {
  if (!r.namespaces) {
    return {};
  }
  if (o.all_netns) {
    return capture::discover_namespaces();
  }
  const auto known = capture::discover_namespaces();  // one walk of /proc for every spec
  std::vector<capture::NamespaceTarget> targets;
  for (const auto& spec : o.netns) {
    auto target = capture::resolve_namespace(spec, known);
    // Two names of one namespace (a pid in it and its /run/netns name) make one snapshot.
    if (std::none_of(targets.begin(), targets.end(), [&](const auto& t) { return t.inode == target.inode; })) {
      targets.push_back(std::move(target));
    }
  }
  return targets;
}

// One capture per namespace asked for, or one of the collector's own namespace.
std::vector<model::Capture> take_snapshot(const RunSettings& r, const std::vector<capture::NamespaceTarget>& targets) {
  if (!r.namespaces) {
    std::vector<model::Capture> one;  // not {take()}: an initializer list would copy every socket
    one.push_back(capture::take(r.capture));
    return one;
  }
  return capture::take_namespaces(r.capture, targets);
}

// The inode of the collector's own network namespace; 0 when it cannot be read.
std::uint64_t own_namespace_inode() {
  struct stat st {};
  return ::stat("/proc/self/ns/net", &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

// A looping collector's connection log: listens in the namespaces of each snapshot from just before
// it is captured, and gives each capture what was heard there since the previous one.
class Ends {
 public:
  explicit Ends(std::size_t budget) : m_log(budget) {}

  void listen(const RunSettings& r, const std::vector<capture::NamespaceTarget>& targets) {
    const auto own = own_namespace_inode();
    std::vector<capture::ListenTarget> listen;
    if (!r.namespaces) {
      listen.push_back({{}, own});
    }
    for (const auto& t : targets) {
      listen.push_back({t.inode == own ? std::filesystem::path() : t.path, t.inode});
    }
    m_log.watch(listen);
  }

  // Each capture gets its take; what could not be listened in is said once on stderr and stored
  // with every snapshot it concerns.
  void hand_over(std::vector<model::Capture>& captures) {
    for (auto& problem : m_log.take_problems()) {
      if (m_said.insert(problem).second) {
        fmt::print(stderr, "sockhist-collect: warning: connection log: {}; the snapshots go on\n", problem);
      }
      m_problems.push_back(std::move(problem));
    }
    for (auto& capture : captures) {
      capture.connections = m_log.take(capture.netns_inode, model::now_ms());
      if (!capture.connections->listening) {
        for (const auto& problem : m_problems) {
          capture.diagnostics.push_back({"(connection log)", 0, problem});
        }
      }
    }
    m_problems.clear();
  }

 private:
  capture::ConnectionLog m_log;
  std::set<std::string> m_said;
  std::vector<std::string> m_problems;
};

// Removes what --retain lets go; after a long outage this can be many batches, shown on a terminal.
std::size_t expire(SQLite::Database& db, store::SnapshotWriter& writer, const RunSettings& r) {
  if (!r.capture.live || r.retain_ms <= 0) {
    return 0;
  }
  const bool terminal = r.report && ::isatty(STDERR_FILENO) != 0;
  const auto expired = store::apply_retention(db, model::now_ms() - r.retain_ms, 500, [terminal](std::size_t so_far) {
    if (terminal && so_far >= 2000) {
      fmt::print(stderr, "\rsockhist-collect: removing old snapshots: {} so far", so_far);
    }
  });
  if (terminal && expired >= 2000) {
    fmt::print(stderr, "\n");
  }
  if (expired > 0) {
    writer.forget_removable_ids();
  }
  return expired;
}

// What one snapshot did, a line per namespace and one for the whole, where the time went.
struct SnapshotTimes {
  std::int64_t took_ms = 0, cpu_ms = 0, write_ms = 0;
};
void report_snapshot(const std::vector<model::Capture>& captures, const std::vector<store::WriteStats>& written,
                     std::size_t expired, const SnapshotTimes& times, bool namespaces) {
  for (std::size_t i = 0; i < captures.size(); ++i) {
    const auto& capture = captures[i];
    const auto& stats = written[i];
    const std::string where =
        namespaces ? fmt::format(" netns {}", capture.netns_name.value_or(std::to_string(capture.netns_inode))) : "";
    fmt::print(stderr,
               "sockhist-collect: snapshot {} of {}{} at {}: {} sockets, {} spans opened, {} closed, {} with new "
               "values, {} counter rows, {} rows written, capture {} ms{}\n",
               stats.snapshot_id, capture.host, where, model::format_iso_utc(capture.time_ms), stats.sockets,
               stats.spans_opened, stats.spans_closed, stats.value_rows, stats.counter_rows, stats.rows_written,
               capture.capture_ms,
               capture.skipped_lines > 0 ? fmt::format(", {} malformed lines skipped", capture.skipped_lines) : "");
    if (const auto& heard = capture.connections) {
      fmt::print(stderr, "sockhist-collect:   connection log: {} socket ends heard, {} stored, {} summed{}{}\n",
                 heard->heard, heard->ends.size(), heard->heard - heard->ends.size() - heard->over_bound,
                 heard->over_bound > 0 ? fmt::format(", {} only counted", heard->over_bound) : "",
                 heard->overruns > 0 ? fmt::format(", {} buffer overruns (ends lost)", heard->overruns)
                 : heard->listening  ? ""
                                     : ", not listening");
    }
  }
  std::int64_t sockets_ms = 0;
  for (const auto& capture : captures) {
    sockets_ms += capture.sockets_ms;
  }
  fmt::print(stderr,
             "sockhist-collect: {} KiB written, database +{} KiB{}, took {} ms (CPU {} ms): sockets {} ms, "
             "owners {} ms ({} fd links read), write {} ms\n",
             written.front().bytes_written / 1024, written.front().db_growth / 1024,
             expired > 0 ? fmt::format(", {} old snapshots removed", expired) : "", times.took_ms, times.cpu_ms,
             sockets_ms, captures.front().owners_ms, captures.front().links_resolved, times.write_ms);
}

// Waits until `next` (moved on by the interval); false when SIGINT or SIGTERM came first.
bool wait_for_next(std::chrono::steady_clock::time_point& next, std::int64_t interval_ms,
                   const sigset_t& stop_signals) {
  next += std::chrono::milliseconds(interval_ms);
  const auto now = std::chrono::steady_clock::now();
  if (next < now) {
    next = now;  // a snapshot took longer than the interval: start the next one at once
  }
  const auto wait_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(next - now).count();
  timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
  return ::sigtimedwait(&stop_signals, nullptr, &timeout) <= 0;
}

// The time of the last quick_check recorded in the database (a diagnostic of the snapshot written
// after it), or nullopt when none is.
std::optional<std::int64_t> last_check_ms(SQLite::Database& db) {
  SQLite::Statement q(db,
                      "SELECT max(s.time_ms) FROM diagnostics d JOIN snapshots s ON s.snapshot_id = d.snapshot_id "
                      "WHERE d.file = '(database)' AND d.message LIKE 'quick_check: ok%'");
  if (q.executeStep() && !q.getColumn(0).isNull()) {
    return q.getColumn(0).getInt64();
  }
  return std::nullopt;
}

// SQLite's quick_check when the last one is older than --check-every: a damaged database is refused
// before anything is written to it; a sound one gets the check recorded with the snapshot.
void check_when_due(SQLite::Database& db, const std::filesystem::path& path, std::int64_t every_ms,
                    std::optional<std::int64_t>& last_ms, std::vector<model::Capture>& captures) {
  const std::int64_t now = captures.front().time_ms;
  if (last_ms && now - *last_ms < every_ms && every_ms > 0) {
    return;
  }
  const auto started = std::chrono::steady_clock::now();
  if (const auto problem = store::quick_check(db)) {
    throw Error(Exit::db_refused, fmt::format("{}: is damaged (quick_check: {}); nothing was written. {}",
                                              path.string(), *problem, store::recovery_advice(path)));
  }
  captures.front().diagnostics.push_back(
      {"(database)", 0, fmt::format("quick_check: ok, {} ms", model::ms_since(started))});
  last_ms = now;
}

}  // namespace

int run_collect(const CollectOptions& o) {
  auto r = settings_of(o);
  // Signals end a loop only between snapshots: the one in flight is finished and committed.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (r.interval_ms > 0) {
    sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  }

  ::umask(027);
  const auto db_path = store::resolve_db_path(o.db);
  store::WriterLock lock(db_path, std::chrono::milliseconds(r.lock_wait_ms), r.group);
  auto db = store::open_for_write(db_path, r.group);
  // Members of the reader group read it while collectors come and go; what stops them is said.
  if (const auto problem = store::share_with_group(db_path, r.group); !problem.empty()) {
    fmt::print(stderr, "sockhist-collect: warning: {}\n", problem);
  }
  // Only a loop has a next snapshot to keep the open spans in memory for.
  store::SnapshotWriter writer(db, r.interval_ms > 0 ? store::OpenSpans::remember : store::OpenSpans::forget);
  // What a loop learns of the processes' fd tables spares most of the owner scan next time.
  capture::OwnerTracker owner_tracker(r.capture.cmdlines);
  if (r.interval_ms == 0) {
    owner_tracker.keep_nothing();  // one snapshot and out: no next scan to spare
  }
  if (r.capture.live) {
    r.capture.owner_tracker = &owner_tracker;
    // Sockets the open spans hold unchanged are counted as they are read, never held.
    r.capture.sieve_for = [&writer](const model::Capture& facts) { return writer.sieve_for(facts); };
  }
  // One netlink socket for the whole run; a failure to open it is handled by the capture itself.
  std::optional<netlink::DiagSocket> diag;
  if (r.capture.live && r.capture.source != capture::Source::proc) {
    try {
      r.capture.diag = &diag.emplace();
    } catch (const netlink::Unavailable&) {
      r.capture.diag = nullptr;
    }
  }

  // Only a loop has a time between snapshots to hear the sockets that live and die within it.
  std::optional<Ends> ends;
  if (r.interval_ms > 0 && r.capture.live && !o.no_connection_log) {
    ends.emplace(static_cast<std::size_t>(o.connection_budget));
  }

  using clock = std::chrono::steady_clock;
  auto next = clock::now();
  std::optional<std::int64_t> last_check;
  for (std::int64_t taken = 0; !o.count || taken < *o.count; ++taken) {
    const auto snapshot_started = clock::now();
    const auto cpu_started = cpu_ms();
    const auto targets = namespaces_asked(o, r);
    if (ends) {
      ends->listen(r, targets);
    }
    auto captures = take_snapshot(r, targets);
    if (ends) {
      ends->hand_over(captures);
    }
    if (taken == 0) {
      last_check = last_check_ms(db);
    }
    check_when_due(db, db_path, r.check_every_ms, last_check, captures);
    const auto write_started = clock::now();
    std::vector<store::WriteStats> written;
    std::size_t expired = 0;
    SnapshotTimes times;
    // A full disk or a failing device: say which file, and what was kept.
    try {
      written = writer.write_all(captures);
    } catch (const SQLite::Exception& e) {
      if ((e.getErrorCode() & 0xff) == SQLITE_CORRUPT) {
        throw Error(Exit::db_refused, store::damaged_while_writing(e.what()));
      }
      throw Error(Exit::failure, fmt::format("{}: cannot write the snapshot: {} (rolled back: nothing of it was "
                                             "stored)",
                                             db_path.string(), e.what()));
    }
    times.write_ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - write_started).count();
    try {
      expired = expire(db, writer, r);
    } catch (const SQLite::Exception& e) {
      throw Error(Exit::failure, fmt::format("{}: cannot remove expired snapshots: {} (the new snapshot is stored)",
                                             db_path.string(), e.what()));
    }
    // What a long reader made the -wal grow to is given back once no reader needs it.
    store::truncate_wal(db);
    if (r.report) {
      times.took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - snapshot_started).count();
      times.cpu_ms = cpu_ms() - cpu_started;
      report_snapshot(captures, written, expired, times, r.namespaces);
    }
    if (r.interval_ms == 0 || (o.count && taken + 1 >= *o.count)) {
      break;
    }
    if (!wait_for_next(next, r.interval_ms, stop_signals)) {
      if (r.report) {
        fmt::print(stderr, "sockhist-collect: stopping on signal after {} snapshots\n", taken + 1);
      }
      break;
    }
  }
  return static_cast<int>(Exit::ok);
}

}  // namespace sockhist::collector
