// sockhist ship: this database's history, what the central store does not hold yet, sent to
// ClickHouse (analyzer/central, schema/clickhouse/README.md).
#include <unistd.h>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/central.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"

namespace sockhist::analyzer {

namespace {

struct ShipCommand {
  Common common;
  CentralOptions central;
  std::int64_t round = 720;
  bool quiet = false;
};

Result run_ship(const ShipCommand& o) {
  const auto endpoint = o.central.endpoint();
  if (o.round < 1) {
    throw Error(Exit::usage, fmt::format("--round {}: at least 1 snapshot", o.round));
  }
  auto db = open_db(o.common);
  central::Server server(endpoint);
  central::ShipOptions options;
  options.source_file = store::database_file(db);
  options.chunk_snapshots = o.round;
  options.note = [](const std::string& line) { fmt::print(stderr, "sockhist: {}\n", line); };
  if (!o.quiet && ::isatty(STDERR_FILENO) != 0) {
    options.progress = [](const central::ShippedNetns& s, std::int64_t done, std::int64_t total) {
      fmt::print(stderr, "\r{} {}: {}/{} snapshots{}", s.host, s.netns_key, done, total, done == total ? "\n" : "");
    };
  }
  const auto shipped = central::ship(db, server, options);
  if (o.quiet) {
    return {"", 0};
  }
  using render::Kind;
  render::Table t;
  t.columns = {{"host"},
               {"netns_key", "NETNS"},
               {"from_snapshot", "FROM", Kind::integer},
               {"to_snapshot", "TO", Kind::integer},
               {"snapshots", "SNAPSHOTS SENT", Kind::integer},
               {"rows", "", Kind::integer},
               {"bytes", "BYTES SENT", Kind::integer}};
  for (const auto& s : shipped) {
    t.rows.push_back(
        {s.host, s.netns_key, s.from_snapshot, s.to_snapshot, s.snapshots, s.rows, static_cast<std::int64_t>(s.bytes)});
  }
  t.notes.push_back(
      fmt::format("to {} database {} (ClickHouse {}); FROM and TO are this database's snapshot ids, "
                  "FROM the server's newest before (0: none)",
                  endpoint.url, endpoint.database, server.version()));
  const auto options_r = render_options(o.common);
  if (options_r.format == render::Format::json) {
    auto doc = json_head("ship", o.common, nullptr);
    doc["to"] = endpoint.url;
    doc["database"] = endpoint.database;
    doc["rows"] = render::to_json_rows(t);
    return {render::render(t, options_r, doc), 0};
  }
  return {render::render(t, options_r), 0};
}

}  // namespace

void setup_ship(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<ShipCommand>();
  auto* sub = add_command(app, "ship",
                          "Send this database's history, what the central ClickHouse store lacks, over its HTTP "
                          "interface; killed and run again, or run twice, the store never answers with a row twice",
                          selected, [o] { return run_ship(*o); });
  add_common(*sub, o->common, false, false);
  o->central.add_to(*sub, "--to", "The central database, made when absent");
  sub->add_option("--round", o->round, "Snapshots of a namespace per round of INSERTs, each round committed")
      ->capture_default_str();
  sub->add_flag("-q,--quiet", o->quiet, "Print nothing when all went well (cron)");
}

}  // namespace sockhist::analyzer
