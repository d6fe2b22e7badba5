// sockhist import netstat|ss FILE: a saved listing recorded as a snapshot of --host at --at, marked
// with its source, and from then on like any other snapshot (show, stats, lifecycles, diff).
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/import.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"

namespace sockhist::analyzer {

namespace {

struct ImportOptions {
  std::string kind;
  std::string file;
  std::optional<std::string> db;
  std::optional<std::string> host;
  std::optional<std::string> at;
  std::string lock_wait = "30s";
  bool quiet = false;
};

Result run_import(const ImportOptions& o) {
  if (!o.host) {
    throw Error(Exit::usage, fmt::format("--host: {} listings do not say which host they are of; name it", o.kind));
  }
  if (!o.at) {
    throw Error(Exit::usage, fmt::format("--at: {} listings do not say when they were taken; give the time", o.kind));
  }
  const auto at_ms = parse_moment(*o.at, "--at", command_now_ms());
  std::ifstream in(o.file, std::ios::binary);
  if (!in) {
    throw Error(Exit::bad_input, fmt::format("{}: cannot read it", o.file));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().find_first_not_of(" \t\r\n") == std::string::npos) {
    throw Error(Exit::bad_input, fmt::format("{}: empty: no {} listing in it", o.file, o.kind));
  }
  // Parsed whole before anything is written: a refused file stores nothing.
  const auto listing =
      o.kind == "netstat" ? import::parse_netstat(text.str(), o.file) : import::parse_ss(text.str(), o.file);
  if (listing.sockets.empty()) {
    throw Error(Exit::bad_input, fmt::format("{}: no socket line could be read; nothing recorded", o.file));
  }
  model::Capture c;
  c.host = *o.host;
  c.hostname = *o.host;
  c.time_ms = at_ms;
  c.source = listing.tool;
  c.proc_root = std::filesystem::absolute(o.file).string();
  c.owners = listing.owners ? model::OwnerScan::complete : model::OwnerScan::skipped;
  c.sockets = listing.sockets;
  c.processes = listing.processes;
  c.diagnostics = listing.diagnostics;
  c.skipped_lines = listing.skipped_lines;
  const auto db_path = store::resolve_db_path(o.db);
  store::WriterLock lock(db_path, std::chrono::milliseconds(parse_duration(o.lock_wait, "--lock-wait", true)));
  auto db = store::open_for_write(db_path);
  store::SnapshotWriter writer(db, store::OpenSpans::forget);
  const auto stats = writer.write(c);
  std::string out;
  for (const auto& d : listing.diagnostics) {
    fmt::print(stderr, "{}:{}: {} (line skipped)\n", d.file, d.line, d.message);
  }
  if (!o.quiet) {
    out = fmt::format(
        "{}: {} listing: {} sockets recorded as {} at {} (snapshot {}){}{}\n", o.file, listing.format, stats.sockets,
        *o.host, model::format_iso_utc(at_ms), stats.snapshot_id,
        listing.skipped_lines > 0 ? fmt::format(", {} lines skipped", listing.skipped_lines) : "",
        listing.other_families > 0
            ? fmt::format(", {} sockets of other families (netlink, raw, packet) not recorded", listing.other_families)
            : "");
  }
  return {out, 0};
}

}  // namespace

void setup_import(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<ImportOptions>();
  auto* sub = add_command(app, "import",
                          "Records a saved netstat or ss listing (netstat -antp/-neopa/-tunapo, ss -tanp/-tanpo/"
                          "-peaonmi) as a snapshot of --host at --at",
                          selected, [o] { return run_import(*o); });
  sub->add_option("kind", o->kind, "netstat or ss")->required()->check(CLI::IsMember({"netstat", "ss"}));
  sub->add_option("file", o->file, "The saved listing")->required();
  sub->add_option("--db", o->db, "Database file (default as for the collector)");
  sub->add_option("--host", o->host, "The host the listing is of");
  sub->add_option("--at", o->at, "When it was taken (ISO-8601, or 'YYYY-MM-DD HH:MM[:SS]' local)");
  sub->add_option("--lock-wait", o->lock_wait, "How long to wait for another writer")->capture_default_str();
  sub->add_flag("-q,--quiet", o->quiet, "Print nothing on success");
}

}  // namespace sockhist::analyzer
