// sockhist import netstat|ss FILE: a saved listing recorded as a snapshot of --host at --at, marked
// with its source, and from then on like any other snapshot (show, stats, lifecycles, diff).

#include <map>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/import.hpp"
#include "sockhist/input.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"

namespace sockhist::analyzer {

namespace {

// A capture already stored (the same host, time and file or report): importing it again would
// only duplicate it. Throws Error(usage) naming the snapshot.
void refuse_repeat(SQLite::Database& db, const model::Capture& c) {
  SQLite::Statement q(db,
                      "SELECT s.snapshot_id FROM snapshots s JOIN netns n ON n.netns_id = s.netns_id "
                      "JOIN hosts h ON h.host_id = n.host_id WHERE h.name = ? AND s.time_ms = ? AND s.proc_root = ? "
                      "LIMIT 1");
  q.bind(1, c.host);
  q.bind(2, c.time_ms);
  q.bind(3, c.proc_root.value_or(""));
  if (q.executeStep()) {
    throw Error(Exit::usage, fmt::format("{}: already imported as {} at {} (snapshot {}); nothing recorded",
                                         c.proc_root.value_or(""), c.host, model::format_iso_utc(c.time_ms),
                                         q.getColumn(0).getInt64()));
  }
}

struct ImportOptions {
  std::string kind;
  std::string file;
  std::optional<std::string> db;
  std::optional<std::string> host;
  std::optional<std::string> at;
  std::string lock_wait = "30s";
  std::optional<std::string> proto;  // an ss listing of one socket type (no Netid column): tcp, udp, unix_stream, ...
  std::optional<std::string> state;  // an ss listing of one state (no State column): established, time-wait, ...
  bool quiet = false;
  bool no_cmdline = false;
};

// Prints what each snapshot was read from, as `sockhist import sosreport` reports it.
std::string describe(const import::SosreportCapture& c, const store::WriteStats& stats) {
  const auto& cap = c.capture;
  const auto where = cap.netns_initial ? std::string("host namespace") : fmt::format("namespace {}", *cap.netns_name);
  std::string line = fmt::format("  {:<24} {:>6} sockets from {}", where, stats.sockets, c.sockets_from);
  line += c.owners_from.empty() ? ", no owners" : fmt::format("; owners from {}", c.owners_from);
  line += c.counters_from.empty() ? "; no counters"
                                  : fmt::format("; {} counters from {}", cap.counters.size(), c.counters_from);
  return fmt::format("{} (snapshot {})\n", line, stats.snapshot_id);
}

Result run_import_sosreport(const ImportOptions& o) {
  import::SosreportOptions options;
  options.host = o.host;
  if (o.at) {
    options.at_ms = parse_moment(*o.at, "--at", command_now_ms());
  }
  options.cmdlines = !o.no_cmdline;
  // Read whole before anything is written: a refused report stores nothing.
  auto captures = import::read_sosreport(o.file, options);
  std::vector<model::Capture> batch;
  batch.reserve(captures.size());
  for (const auto& c : captures) {
    batch.push_back(c.capture);
  }
  const auto db_path = store::resolve_db_path(o.db);
  store::WriterLock lock(db_path, std::chrono::milliseconds(parse_duration(o.lock_wait, "--lock-wait", true)));
  auto db = store::open_for_write(db_path);
  refuse_repeat(db, batch.front());
  store::SnapshotWriter writer(db, store::OpenSpans::forget);
  // Every namespace of the report in one transaction: all of it is stored, or none.
  const auto stats = writer.write_all(batch);
  store::truncate_wal(db);
  for (const auto& c : captures) {
    for (const auto& d : c.capture.diagnostics) {
      if (d.line > 0) {
        fmt::print(stderr, "{}:{}: {} (line skipped)\n", d.file, d.line, d.message);
      } else if (!d.message.starts_with("source of ")) {
        fmt::print(stderr, "{}: {}\n", d.file, d.message);
      }
    }
  }
  if (o.quiet) {
    return {"", 0};
  }
  const auto& first = captures.front();
  std::string time_from;
  for (const auto& [fact, file] : first.provenance) {
    if (fact == "time") {
      time_from = file;
    }
  }
  std::string out = fmt::format("{}: sosreport of {} at {} (time from {})\n", o.file, first.capture.host,
                                model::format_iso_utc(first.capture.time_ms), time_from);
  for (std::size_t i = 0; i < captures.size(); ++i) {
    out += describe(captures[i], stats[i]);
  }
  return {out, 0};
}

Result run_import(const ImportOptions& o) {
  if (o.kind == "sosreport") {
    return run_import_sosreport(o);
  }
  if (!o.host) {
    throw Error(Exit::usage, fmt::format("--host: {} listings do not say which host they are of; name it", o.kind));
  }
  if (!o.at) {
    throw Error(Exit::usage, fmt::format("--at: {} listings do not say when they were taken; give the time", o.kind));
  }
  const auto at_ms = parse_moment(*o.at, "--at", command_now_ms());
  const std::string text = input::read_file(o.file);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    throw Error(Exit::bad_input, fmt::format("{}: empty: no {} listing in it", o.file, o.kind));
  }
  // Parsed whole before anything is written: a refused file stores nothing.
  if ((o.proto || o.state) && o.kind != "ss") {
    throw Error(Exit::usage, fmt::format("{}: only for an ss listing", o.proto ? "--proto" : "--state"));
  }
  import::SsColumns given;
  if (o.proto) {
    // As ss -A names them, to ss's Netid.
    static const std::map<std::string, std::string> netid = {
        {"tcp", "tcp"}, {"udp", "udp"}, {"unix_stream", "u_str"}, {"unix_dgram", "u_dgr"}, {"unix_seqpacket", "u_seq"}};
    given.netid = netid.at(*o.proto);
  }
  if (o.state) {
    // As ss's state filter names them, to the names ss prints.
    static const std::map<std::string, std::string> printed = {
        {"established", "ESTAB"},     {"syn-sent", "SYN-SENT"},     {"syn-recv", "SYN-RECV"},
        {"fin-wait-1", "FIN-WAIT-1"}, {"fin-wait-2", "FIN-WAIT-2"}, {"time-wait", "TIME-WAIT"},
        {"closed", "UNCONN"},         {"close-wait", "CLOSE-WAIT"}, {"last-ack", "LAST-ACK"},
        {"listening", "LISTEN"},      {"closing", "CLOSING"}};
    given.state = printed.at(*o.state);
  }
  const auto listing =
      o.kind == "netstat" ? import::parse_netstat(text, o.file) : import::parse_ss(text, o.file, given);
  if (listing.sockets.empty()) {
    throw Error(Exit::bad_input, fmt::format("{}: no socket line could be read; nothing recorded", o.file));
  }
  const auto c = import::listing_capture(listing, *o.host, at_ms, o.file);
  const auto db_path = store::resolve_db_path(o.db);
  store::WriterLock lock(db_path, std::chrono::milliseconds(parse_duration(o.lock_wait, "--lock-wait", true)));
  auto db = store::open_for_write(db_path);
  refuse_repeat(db, c);
  store::SnapshotWriter writer(db, store::OpenSpans::forget);
  const auto stats = writer.write(c);
  store::truncate_wal(db);
  std::string out;
  for (const auto& d : listing.diagnostics) {
    if (d.line > 0) {
      fmt::print(stderr, "{}:{}: {} (line skipped)\n", d.file, d.line, d.message);
    } else {
      fmt::print(stderr, "{}: {}\n", d.file, d.message);
    }
  }
  if (!o.quiet) {
    out = fmt::format(
        "{}: {} listing of {}: {} sockets recorded as {} at {} (snapshot {}){}{}\n", o.file, listing.format,
        listing.dialect, stats.sockets, *o.host, model::format_iso_utc(at_ms), stats.snapshot_id,
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
                          "-peaonmi) as a snapshot of --host at --at, or every namespace of an unpacked sosreport",
                          selected, [o] { return run_import(*o); });
  sub->add_option("kind", o->kind, "netstat, ss or sosreport")
      ->required()
      ->check(CLI::IsMember({"netstat", "ss", "sosreport"}));
  sub->add_option("file", o->file, "The saved listing, or the sosreport's directory")->required();
  sub->add_option("--db", o->db, "Database file (default as for the collector)");
  sub->add_option("--host", o->host, "The host the listing is of (a sosreport: instead of its hostname)");
  sub->add_option("--at", o->at,
                  "When it was taken (ISO-8601, or 'YYYY-MM-DD HH:MM[:SS]' local; a sosreport: instead of its "
                  "date --utc)");
  sub->add_flag("--no-cmdline", o->no_cmdline, "Do not store command lines (a sosreport's ps auxwww)");
  sub->add_option("--proto", o->proto,
                  "An ss listing of one socket type (no Netid column), where its rows cannot tell: tcp, udp, "
                  "unix_stream, unix_dgram or unix_seqpacket")
      ->check(CLI::IsMember({"tcp", "udp", "unix_stream", "unix_dgram", "unix_seqpacket"}));
  sub->add_option("--state", o->state,
                  "An ss listing of one state (ss state STATE: no State column): established, syn-sent, "
                  "syn-recv, fin-wait-1, fin-wait-2, time-wait, closed, close-wait, last-ack, listening or closing")
      ->check(CLI::IsMember({"established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait", "closed",
                             "close-wait", "last-ack", "listening", "closing"}));
  sub->add_option("--lock-wait", o->lock_wait, "How long to wait for another writer")->capture_default_str();
  sub->add_flag("-q,--quiet", o->quiet, "Print nothing on success");
}

}  // namespace sockhist::analyzer
