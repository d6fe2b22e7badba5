// sockhist fleet: questions asked of the central ClickHouse store that `ship` fills
// (schema/clickhouse/README.md): which hosts report and how fresh each is, and one host's sockets
// at a moment, in the columns `show` gives.
#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cmd_fleet.hpp"
#include "sockhist/central.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

nlohmann::ordered_json fleet_head(const std::string& command, const FleetCommand& o) {
  nlohmann::ordered_json doc;
  doc["command"] = command;
  doc["from"] = o.central.url;
  doc["database"] = o.central.database;
  return doc;
}

void require_hosts(central::Server& server, const std::vector<std::string>& hosts) {
  if (hosts.empty()) {
    return;
  }
  std::set<std::string> known;  // the store's hosts, from its small commits table
  for (const auto& row : server.select("SELECT DISTINCT host FROM v_newest")) {
    known.insert(row.at(0));
  }
  for (const auto& h : hosts) {
    if (!known.contains(h)) {
      throw Error(Exit::usage,
                  fmt::format("--host {}: not in the store (hosts: {})", h,
                              known.empty() ? std::string("none") : fmt::format("{}", fmt::join(known, ", "))));
    }
  }
}

namespace {

central::Server connect(const FleetCommand& o) {
  return central::Server(o.central.endpoint());
}

Result run_hosts(const FleetCommand& o) {
  auto server = connect(o);
  const auto namespaces = central::fleet_namespaces(server);
  const auto now = o.common.now_ms;
  std::int64_t given = 0;  // 0: each namespace's own limit
  if (o.max_age) {
    given = parse_duration(*o.max_age, "--max-age");
  }
  using render::Kind;
  render::Table t;
  t.columns = {{"host"},
               {"netns_key", "NETNS"},
               {"initial", "", Kind::integer},
               {"first", "FIRST SNAPSHOT", Kind::time_ms},
               {"newest", "NEWEST SNAPSHOT", Kind::time_ms},
               {"snapshots", "", Kind::integer},
               {"interval", "USUAL INTERVAL", Kind::duration_ms},
               {"age", "", Kind::duration_ms},
               {"max_age", "LIMIT", Kind::duration_ms},
               {"fresh"},
               {"kernel"},
               {"machine_id", "", Kind::text, "", 2, false, true}};
  int code = 0;
  for (const auto& n : namespaces) {
    const auto limit = given > 0 ? given : default_max_age_ms(n.interval_ms);
    const auto age = std::max<std::int64_t>(0, now - n.newest_ms);
    const bool stale = age > limit;
    if (stale) {
      code = 1;
      t.notes.push_back(fmt::format("{} {}: newest snapshot {} old, over its limit of {}: stale", n.host, n.netns_key,
                                    model::format_duration(age), model::format_duration(limit)));
    }
    t.rows.push_back({n.host, n.netns_key, std::int64_t{n.initial ? 1 : 0}, n.first_ms, n.newest_ms, n.snapshots,
                      n.interval_ms ? render::Value{*n.interval_ms} : render::Value{}, age, limit,
                      std::string(stale ? "STALE" : "yes"),
                      n.kernel.empty() ? render::Value{} : render::Value{n.kernel},
                      n.machine_id.empty() ? render::Value{} : render::Value{n.machine_id}});
  }
  if (namespaces.empty()) {
    t.notes.push_back(fmt::format("{} database {}: no host has shipped yet", o.central.url, o.central.database));
  } else if (given == 0) {
    t.notes.push_back("LIMIT: 3 usual intervals, at least 5m, as check's --max-age (--max-age sets one for all)");
  }
  const auto options = render_options(o.common);
  if (options.format == render::Format::json) {
    auto doc = fleet_head("fleet hosts", o);
    doc["stale_found"] = code == 1;
    doc["rows"] = render::to_json_rows(t);
    return {render::render(t, options, doc), code};
  }
  return {render::render(t, options), code};
}

// The namespace --host and --netns name: --netns as a key or an inode, else the host's own, else
// its only one.
central::FleetNamespace namespace_of(const FleetCommand& o, const std::vector<central::FleetNamespace>& of_host,
                                     central::Server& server) {
  if (of_host.empty()) {
    require_hosts(server, {*o.host});
  }
  std::vector<central::FleetNamespace> chosen;
  for (const auto& n : of_host) {
    if (o.netns ? (*o.netns == n.netns_key || *o.netns == std::to_string(n.netns)) : n.initial) {
      chosen.push_back(n);
    }
  }
  if (!o.netns && chosen.empty() && of_host.size() == 1) {
    chosen = of_host;
  }
  if (chosen.size() != 1) {
    std::vector<std::string> keys;
    for (const auto& n : of_host) {
      keys.push_back(n.netns_key);
    }
    throw Error(Exit::usage, fmt::format("--netns {}: {} of host {} ({}); give one key", o.netns.value_or("(none)"),
                                         chosen.empty() ? "names none of the namespaces" : "names several namespaces",
                                         *o.host, fmt::join(keys, ", ")));
  }
  return chosen.front();
}

Result run_show(const FleetCommand& o) {
  auto server = connect(o);
  const auto n = namespace_of(o, central::fleet_namespaces(server, o.host), server);
  const auto at = o.at ? parse_moment(*o.at, "--at", o.common.now_ms) : n.newest_ms;
  const auto snapshot = server.select(
      fmt::format("SELECT snapshot_id, time_ms FROM v_snapshots WHERE host = {} AND netns_key = {} AND time_ms <= {} "
                  "ORDER BY time_ms DESC, snapshot_id DESC LIMIT 1",
                  central::quote(n.host), central::quote(n.netns_key), at));
  if (snapshot.empty()) {
    throw Error(Exit::usage, fmt::format("--at {}: no snapshot of {} {} at or before it (the first: {})",
                                         o.at.value_or(""), n.host, n.netns_key, model::format_iso_utc(n.first_ms)));
  }
  const auto id = server.number(snapshot, 0, 0);
  const auto time_ms = server.number(snapshot, 0, 1);
  const auto rows = server.select(central::socket_list_sql(n.host, n.netns_key, id));
  const auto text = [](const std::string& field) {
    return field == central::k_null_field ? std::nullopt : std::optional(field);
  };
  const auto number = [&](std::size_t row, std::size_t column) -> std::optional<std::int64_t> {
    if (rows[row].at(column) == central::k_null_field) {
      return std::nullopt;
    }
    return server.number(rows, row, column);
  };
  std::vector<query::SocketRow> sockets(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto& r = sockets[i];
    const auto proto = model::proto_from_name(rows[i].at(1));
    const auto state = model::sock_state_from_name(rows[i].at(3));
    if (!proto || !state) {
      throw Error(Exit::failure, fmt::format("{}: snapshot {} of {}: unknown protocol or state '{} {}'", o.central.url,
                                             id, n.host, rows[i].at(1), rows[i].at(3)));
    }
    r.span_id = number(i, 0).value_or(0);
    r.proto = *proto;
    r.family = static_cast<int>(number(i, 2).value_or(0));
    r.state = *state;
    r.local_addr = rows[i].at(4);
    r.local_port = number(i, 5).value_or(0);
    r.remote_addr = text(rows[i].at(6)).value_or("");
    r.remote_port = number(i, 7).value_or(0);
    r.tx_queue = number(i, 8).value_or(0);
    r.rx_queue = number(i, 9).value_or(0);
    r.timer = static_cast<model::TimerKind>(number(i, 10).value_or(0));
    r.timer_ms = number(i, 11).value_or(0);
    r.retransmits = number(i, 12).value_or(0);
    r.probes = number(i, 13).value_or(0);
    r.backlog = number(i, 14);
    r.uid = number(i, 15).value_or(0);
    r.inode = static_cast<std::uint64_t>(number(i, 16).value_or(0));
    r.pid = number(i, 17);
    r.comm = text(rows[i].at(18));
    r.cmdline = text(rows[i].at(19));
    r.cookie = number(i, 21);
    r.owner_carried = number(i, 22).value_or(0) != 0;
    r.sock_type = text(rows[i].at(23));
    r.unix_flags = number(i, 24).value_or(0);
    r.peer_inode = number(i, 25);
    r.first_time_ms = number(i, 26).value_or(0);
    r.user = text(rows[i].at(28));
  }
  // show's order: tcp, tcp6, udp, udp6, then unix, each in span order.
  std::vector<const query::SocketRow*> ordered;
  for (const auto& r : sockets) {
    ordered.push_back(&r);
  }
  std::stable_sort(ordered.begin(), ordered.end(), [](const auto* a, const auto* b) {
    const auto rank = [](const query::SocketRow* r) {
      return std::pair(r->proto == model::Proto::unix_domain ? 2 : r->proto == model::Proto::tcp ? 0 : 1, r->family);
    };
    return rank(a) < rank(b);
  });
  auto t = socket_table(ordered, time_ms);
  const auto options = render_options(o.common);
  if (options.format == render::Format::json) {
    auto doc = fleet_head("fleet show", o);
    doc["host"] = n.host;
    doc["netns_key"] = n.netns_key;
    doc["snapshot"] = {
        {"id", id}, {"time", model::format_iso_utc(time_ms)}, {"time_epoch", static_cast<double>(time_ms) / 1000.0}};
    doc["rows"] = render::to_json_rows(t);
    return {render::render(t, options, doc), 0};
  }
  return {render::render(
              t, options, {},
              {fmt::format("# host {}, namespace {}: snapshot {} of {}, {} sockets (from {})", n.host, n.netns_key, id,
                           model::format_human(time_ms, options.zone), rows.size(), o.central.url)}),
          0};
}

}  // namespace

void setup_fleet(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<FleetCommand>();
  auto* fleet = app.add_subcommand(
      "fleet", "Ask the central ClickHouse store that `ship` fills: hosts, show, trend, close-wait, time-wait");
  fleet->require_subcommand(1);
  o->central.add_to(*fleet, "--from", "The central database");
  const auto formats = [o](CLI::App& sub) {
    sub.add_option("--format", o->common.format, "Output: table (for people), json or csv (for programs)")
        ->check(CLI::IsMember({"table", "json", "csv"}))
        ->capture_default_str();
    sub.add_flag("--utc", o->common.utc, "Print times in UTC instead of local time (json and csv are always UTC)");
    sub.fallthrough();
  };
  auto* hosts = add_command(*fleet, "hosts",
                            "Every host and namespace in the store: first and newest snapshot, and whether it is "
                            "fresh (exit 1 when one is stale)",
                            selected, [o] { return run_hosts(*o); });
  formats(*hosts);
  hosts->add_option("--max-age", o->max_age,
                    "Stale when the newest snapshot is older than this (default: 3 usual intervals, at least 5m)");
  auto* show =
      add_command(*fleet, "show", "Every socket of one host at a moment, in the columns of show -a --format json",
                  selected, [o] { return run_show(*o); });
  formats(*show);
  show->add_option("--host", o->host, "The host")->required();
  show->add_option("--netns", o->netns, "Its namespace: a key (inode@ms) or an inode (default: its own)");
  show->add_option("--at", o->at, "The newest snapshot at or before this moment (default: the newest)");
  setup_fleet_reports(*fleet, selected, o, formats);
}

}  // namespace sockhist::analyzer
