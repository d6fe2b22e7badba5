// sockhist merge and sockhist export: the two commands that write a database. Both take the
// output's writer lock (the collector's), so they never write beside a collector; the inputs are
// opened read-only and checked first.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/merge.hpp"
#include "sockhist/store.hpp"

namespace sockhist::analyzer {

namespace {

struct CopyOptions {
  std::string output;
  std::vector<std::string> inputs;
  std::optional<std::string> db;  // export's source
  std::optional<std::string> host;
  std::vector<std::string> join;  // FROM=TO
  Window window;
  std::string lock_wait = "30s";
  bool quiet = false;
};

// What --since and --until mean when not given.
const WindowDefaults k_window{std::nullopt, false, "every snapshot"};

store::CopyFilter filter_of(const CopyOptions& o) {
  store::CopyFilter f;
  f.host = o.host;
  for (const auto& spec : o.join) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      throw Error(Exit::usage,
                  fmt::format("--join {}: give FROM=TO (an input host and the name to write it as)", spec));
    }
    f.join[spec.substr(0, eq)] = spec.substr(eq + 1);
  }
  const auto [since, until] = resolve_window(o.window, k_window, command_now_ms());
  if (o.window.since) {
    f.since_ms = since;
  }
  if (o.window.until) {
    f.until_ms = until;
  }
  return f;
}

// Progress on a terminal: one line rewritten in place, nothing under cron.
std::function<void(std::int64_t, std::int64_t)> progress_line(bool quiet, const std::string& what) {
  if (quiet || ::isatty(STDERR_FILENO) == 0) {
    return {};
  }
  return [what](std::int64_t done, std::int64_t total) {
    if (done == total || done % 50 == 0) {
      fmt::print(stderr, "\r{}: {}/{} snapshots{}", what, done, total, done == total ? "\n" : "");
    }
  };
}

std::string describe(const store::MergeStats& s) {
  std::string text = fmt::format("{} snapshot{} added, {} already there", s.added, s.added == 1 ? "" : "s", s.present);
  if (s.too_old > 0) {
    text += fmt::format(", {} older than the output's history of their namespace (left out)", s.too_old);
  }
  if (s.filtered > 0) {
    text += fmt::format(", {} outside the filter", s.filtered);
  }
  return text;
}

Result run_merge(const CopyOptions& o) {
  const auto filter = filter_of(o);
  const std::filesystem::path output = o.output;
  // Every input is checked before the output is touched.
  std::vector<SQLite::Database> inputs;
  for (const auto& path : o.inputs) {
    if (std::filesystem::exists(output) && std::filesystem::equivalent(path, output)) {
      throw Error(Exit::usage, fmt::format("{}: is the output too", path));
    }
    inputs.push_back(store::open_input(path));
  }
  store::WriterLock lock(output, std::chrono::milliseconds(parse_duration(o.lock_wait, "--lock-wait", true)));
  auto out = store::open_for_write(output);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    store::merge_into(out, inputs[i], o.inputs[i], filter, {}, true);
  }
  std::string text;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const auto stats = store::merge_into(out, inputs[i], o.inputs[i], filter, progress_line(o.quiet, o.inputs[i]));
    for (const auto& warning : stats.warnings) {
      fmt::print(stderr, "sockhist: warning: {}\n", warning);  // even with -q: it is about the data
    }
    if (!o.quiet) {
      text += fmt::format("{}: {}\n", o.inputs[i], describe(stats));
    }
  }
  store::truncate_wal(out);  // what readers of the output held meanwhile is given back
  return {text, 0};
}

// A file in the output's directory that becomes the output by rename(2) once whole.
std::filesystem::path temporary_beside(const std::filesystem::path& output) {
  auto tmp = output;
  tmp += fmt::format(".export-{}.tmp", ::getpid());
  return tmp;
}

Result run_export(const CopyOptions& o) {
  const auto source = store::resolve_db_path(o.db);
  const std::filesystem::path output = o.output;
  if (std::filesystem::exists(output)) {
    throw Error(Exit::usage, fmt::format("{}: exists; export writes a new file", output.string()));
  }
  const auto tmp = temporary_beside(output);
  struct Cleanup {
    std::filesystem::path path;
    bool keep = false;
    ~Cleanup() {
      if (!keep) {
        std::error_code ignored;
        for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
          auto p = path;
          p += suffix;
          std::filesystem::remove(p, ignored);
        }
      }
    }
  } cleanup{tmp};
  std::string text;
  if (!o.host && !o.window.since && !o.window.until) {
    // The whole database: VACUUM INTO reads one consistent state (a read transaction, whatever a
    // collector commits meanwhile) and writes a compact copy; never a cp that can miss the WAL.
    auto db = store::open_input(source);
    const mode_t old = ::umask(027);
    try {
      SQLite::Statement vacuum(db, "VACUUM INTO ?");
      vacuum.bind(1, tmp.string());
      vacuum.exec();
    } catch (const SQLite::Exception& e) {
      ::umask(old);
      throw Error(Exit::failure, fmt::format("{}: cannot write: {}", output.string(), e.what()));
    }
    ::umask(old);
    ::chmod(tmp.c_str(), 0640);
    SQLite::Statement count(db, "SELECT count(*) FROM snapshots");
    count.executeStep();
    text = fmt::format("{}: {} snapshots, the whole of {}\n", output.string(), count.getColumn(0).getInt64(),
                       source.string());
  } else {
    auto input = store::open_input(source);
    {
      auto out = store::open_for_write(tmp);
      store::drop_wal_on_close(out);  // the export is one file
      const auto stats =
          store::merge_into(out, input, source.string(), filter_of(o), progress_line(o.quiet, output.string()));
      text = fmt::format("{}: {} snapshots of {}\n", output.string(), stats.added, source.string());
    }
  }
  std::filesystem::rename(tmp, output);
  cleanup.keep = true;
  return {o.quiet ? std::string() : text, 0};
}

void add_filters(CLI::App& sub, CopyOptions& o) {
  sub.add_option("--host", o.host, "Only this host");
  add_window(sub, o.window, k_window, "Only snapshots from then");
  sub.add_flag("-q,--quiet", o.quiet, "Print nothing on success");
}

}  // namespace

void setup_merge(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<CopyOptions>();
  auto* sub = add_command(app, "merge",
                          "Copies every host, snapshot, socket and counter of the inputs into OUTPUT (created if "
                          "absent), adding nothing twice: rerun it as the inputs grow",
                          selected, [o] { return run_merge(*o); });
  sub->add_option("output", o->output, "The database to merge into")->required();
  sub->add_option("inputs", o->inputs, "sockhist databases to copy from (read-only)")->required();
  sub->add_option("--lock-wait", o->lock_wait, "How long to wait for another writer of OUTPUT")->capture_default_str();
  sub->add_option("--join", o->join,
                  "Write input host FROM as host TO (repeatable): the one way two host names become one; hosts "
                  "that merely share a machine-id stay apart, with a warning");
  add_filters(*sub, *o);
}

void setup_export(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<CopyOptions>();
  auto* sub = add_command(app, "export",
                          "A consistent, self-contained copy of a database (while a collector writes to it), "
                          "optionally of one host or time range",
                          selected, [o] { return run_export(*o); });
  sub->add_option("--db", o->db, "The database to copy (default as for the collector)");
  sub->add_option("output", o->output, "The new file")->required();
  add_filters(*sub, *o);
}

}  // namespace sockhist::analyzer
