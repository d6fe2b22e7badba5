// sockhist diff: two snapshots side by side, of one host at two moments or of two hosts at (nearly)
// the same one. Listeners present on one side only, processes owning sockets on one side only,
// socket counts by state, by remote endpoint and by process that differ, and counters: per second
// of uptime between hosts, the change between moments. Exit 0 no differences, 1 differences.
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

namespace {

struct DiffOptions {
  Common common;
  std::vector<std::string> hosts;
  std::vector<std::string> ats;
  std::vector<std::int64_t> snapshots;
  double counter_threshold = 25.0;
  std::size_t top = 20;
};

struct Side {
  query::Scope scope;
  query::SnapshotSummary snapshot;
  std::vector<query::SocketRow> sockets;
  std::vector<query::CounterValue> counters;
};

std::string owner_name(const query::SocketRow& r) {
  return r.comm ? *r.comm : std::string("(unknown owner)");
}

std::string endpoint(model::Proto proto, const std::string& addr, std::int64_t port) {
  if (proto == model::Proto::unix_domain) {
    return addr.empty() ? std::string("(unnamed)") : addr;
  }
  return query::endpoint(addr, port);
}

// Counts print as integers, rates with their fraction.
render::Value number(double v) {
  if (std::abs(v) < 1e15 && v == std::floor(v)) {
    return static_cast<std::int64_t>(v);
  }
  return v;
}

// One difference: a section, what it is about, the two values.
struct Row {
  std::string section;
  std::string key;
  double a = 0, b = 0;
  std::string detail;
  bool counts = true;  // a difference for the exit code (the moments' counter changes are not)
};

Side side_of(SQLite::Database& db, const DiffOptions& o, std::size_t i) {
  Side s;
  if (!o.snapshots.empty()) {
    s.snapshot = query::snapshot_by_id(db, o.snapshots[i]);
    s.scope = query::scope_of_snapshot(db, o.snapshots[i]);
  } else {
    const std::optional<std::string> host =
        o.hosts.empty() ? std::nullopt : std::optional(o.hosts[std::min(i, o.hosts.size() - 1)]);
    s.scope = query::resolve_scope(db, host, std::nullopt);
    const std::optional<std::string> at =
        o.ats.empty() ? std::nullopt : std::optional(o.ats[std::min(i, o.ats.size() - 1)]);
    s.snapshot = snapshot_for(db, s.scope, at, o.common.now_ms);
  }
  s.sockets = query::snapshot_sockets(db, s.snapshot.id);
  s.counters = query::snapshot_counters(db, s.snapshot.id);
  return s;
}

// Counts per key on each side; the keys that differ become rows.
void compare_counts(std::vector<Row>& rows, const char* section, const std::map<std::string, std::int64_t>& a,
                    const std::map<std::string, std::int64_t>& b) {
  std::set<std::string> keys;
  for (const auto& [k, v] : a) {
    keys.insert(k);
  }
  for (const auto& [k, v] : b) {
    keys.insert(k);
  }
  for (const auto& k : keys) {
    const auto va = a.count(k) ? a.at(k) : 0, vb = b.count(k) ? b.at(k) : 0;
    if (va != vb) {
      rows.push_back({section, k, static_cast<double>(va), static_cast<double>(vb), {}, true});
    }
  }
}

Result run_diff(const DiffOptions& o) {
  if (!o.snapshots.empty() && (!o.hosts.empty() || !o.ats.empty())) {
    throw Error(Exit::usage, "--snapshot names both sides: give it twice, without --host or --at");
  }
  if (!o.snapshots.empty() && o.snapshots.size() != 2) {
    throw Error(Exit::usage, "--snapshot: give two (--snapshot 40 --snapshot 52)");
  }
  if (o.hosts.size() > 2 || o.ats.size() > 2) {
    throw Error(Exit::usage, "diff compares two sides: at most two --host and two --at");
  }
  if (o.snapshots.empty() && o.hosts.size() < 2 && o.ats.size() < 2) {
    throw Error(Exit::usage,
                "diff needs two sides: two --snapshot, two --host (at the same --at or the newest), or two --at");
  }
  auto db = open_db(o.common);
  const Side a = side_of(db, o, 0), b = side_of(db, o, 1);
  const bool two_hosts = a.scope.host_id != b.scope.host_id;
  std::vector<Row> rows;

  // Listeners on one side only (by protocol, address and port).
  const auto listeners = [](const Side& s) {
    std::map<std::string, std::string> out;
    for (const auto& r : s.sockets) {
      const bool listening = r.state == model::SockState::listen ||
                             (r.proto == model::Proto::udp && r.state == model::SockState::close);
      if (listening && !(r.proto == model::Proto::unix_domain && r.local_addr.empty())) {
        out[fmt::format("{} {}", r.proto, endpoint(r.proto, r.local_addr, r.local_port))] = owner_name(r);
      }
    }
    return out;
  };
  const auto la = listeners(a), lb = listeners(b);
  for (const auto& [k, owner] : la) {
    if (!lb.count(k)) {
      rows.push_back({"listening", k, 1, 0, owner, true});
    }
  }
  for (const auto& [k, owner] : lb) {
    if (!la.count(k)) {
      rows.push_back({"listening", k, 0, 1, owner, true});
    }
  }
  // Processes owning sockets on one side only, then socket counts that differ.
  const auto per = [](const Side& s, auto key_of) {
    std::map<std::string, std::int64_t> out;
    for (const auto& r : s.sockets) {
      if (const auto k = key_of(r); !k.empty()) {
        ++out[k];
      }
    }
    return out;
  };
  const auto by_process = [](const query::SocketRow& r) { return r.comm ? *r.comm : std::string(); };
  const auto pa = per(a, by_process), pb = per(b, by_process);
  for (const auto& [k, n] : pa) {
    if (!pb.count(k)) {
      rows.push_back({"process only on one side", k, static_cast<double>(n), 0, "sockets", true});
    }
  }
  for (const auto& [k, n] : pb) {
    if (!pa.count(k)) {
      rows.push_back({"process only on one side", k, 0, static_cast<double>(n), "sockets", true});
    }
  }
  const auto proto_state = [](const query::SocketRow& r) {
    return fmt::format("{} {}", model::name(r.proto), model::name(r.state));
  };
  compare_counts(rows, "state", per(a, proto_state), per(b, proto_state));
  // Connections by remote endpoint: a server's peers by address (their ports are their own).
  const auto remote_key = [](const Side& s) {
    std::set<std::int64_t> listening;
    for (const auto& r : s.sockets) {
      if (r.proto == model::Proto::tcp && r.state == model::SockState::listen) {
        listening.insert(r.local_port);
      }
    }
    return [listening](const query::SocketRow& r) {
      if (r.proto != model::Proto::tcp || r.state == model::SockState::listen) {
        return std::string();
      }
      if (!listening.count(r.local_port)) {
        return endpoint(r.proto, r.remote_addr, r.remote_port);
      }
      if (r.remote_addr.find(':') != std::string::npos) {
        return fmt::format("[{}]:* to :{}", r.remote_addr, r.local_port);
      }
      return fmt::format("{}:* to :{}", r.remote_addr, r.local_port);
    };
  };
  compare_counts(rows, "remote", per(a, remote_key(a)), per(b, remote_key(b)));
  {
    std::vector<Row> both;
    compare_counts(both, "process", pa, pb);
    for (auto& r : both) {
      if (r.a != 0 && r.b != 0) {  // one side only is listed above
        rows.push_back(std::move(r));
      }
    }
  }
  // Counters. Two hosts: each counter per second of its host's uptime, a difference when they
  // differ by more than --counter-threshold percent. One host: what each changed by between the
  // two moments (information, not a difference).
  std::map<std::string, std::pair<std::optional<std::int64_t>, std::optional<std::int64_t>>> values;
  std::map<std::string, bool> gauges;
  for (const auto& c : a.counters) {
    values[c.section + "." + c.name].first = c.value;
    gauges[c.section + "." + c.name] = c.is_gauge;
  }
  for (const auto& c : b.counters) {
    values[c.section + "." + c.name].second = c.value;
    gauges[c.section + "." + c.name] = c.is_gauge;
  }
  if (two_hosts) {
    for (const auto& [name, v] : values) {
      if (!v.first || !v.second || gauges[name] || !a.snapshot.uptime_ms || !b.snapshot.uptime_ms) {
        continue;
      }
      const double ra = static_cast<double>(*v.first) * 1000.0 / static_cast<double>(*a.snapshot.uptime_ms);
      const double rb = static_cast<double>(*v.second) * 1000.0 / static_cast<double>(*b.snapshot.uptime_ms);
      const double larger = std::max(std::abs(ra), std::abs(rb));
      if (larger > 0 && 100.0 * std::abs(ra - rb) / larger > o.counter_threshold) {
        rows.push_back({"counter per second of uptime", name, ra, rb, {}, true});
      }
    }
  } else {
    const auto interval = query::monotonic_interval_ms(a.snapshot, b.snapshot);
    for (const auto& [name, v] : values) {
      if (v.first && v.second && *v.first != *v.second) {
        rows.push_back({gauges[name] ? "gauge" : "counter change", name, static_cast<double>(*v.first),
                        static_cast<double>(*v.second),
                        !gauges[name] && interval && *v.second >= *v.first
                            ? fmt::format("{:.2f}/s", static_cast<double>(*v.second - *v.first) * 1000.0 /
                                                          static_cast<double>(*interval))
                            : std::string(),
                        false});
      }
    }
  }
  // The differences first, the largest first within each section.
  const std::vector<std::string> order = {"listening", "process only on one side",     "state", "remote",
                                          "process",   "counter per second of uptime", "gauge", "counter change"};
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& x, const Row& y) {
    const auto sx = std::find(order.begin(), order.end(), x.section) - order.begin();
    const auto sy = std::find(order.begin(), order.end(), y.section) - order.begin();
    if (sx != sy) {
      return sx < sy;
    }
    return std::abs(x.b - x.a) > std::abs(y.b - y.a);
  });
  const auto differences = std::count_if(rows.begin(), rows.end(), [](const Row& r) { return r.counts; });
  const int code = differences > 0 ? 1 : 0;

  using render::Kind;
  const auto label = [&](const Side& s) { return two_hosts ? s.scope.host : fmt::format("#{}", s.snapshot.id); };
  render::Table t;
  t.columns = {
      {"section", "SECTION"},
      {"key", "WHAT"},
      {"a", label(a), Kind::real, "", 4},
      {"b", label(b), Kind::real, "", 4},
      {"change", "B-A", Kind::real, "", 4},
      {"detail", "DETAIL"},
  };
  std::map<std::string, std::size_t> shown;
  const bool table = render_options(o.common).format == render::Format::table;
  std::size_t hidden = 0;
  for (const auto& r : rows) {
    if (table && o.top > 0 && shown[r.section]++ >= o.top) {
      ++hidden;
      continue;
    }
    t.rows.push_back({r.section, r.key, number(r.a), number(r.b), number(r.b - r.a), r.detail});
  }
  if (hidden > 0) {
    t.notes.push_back(fmt::format("({} more rows; --top 0 lists them all)", hidden));
  }
  const auto options = render_options(o.common);
  const auto describe = [&](const Side& s) {
    return fmt::format("{} snapshot {} at {}", s.scope.host, s.snapshot.id,
                       model::format_human(s.snapshot.time_ms, options.zone));
  };
  if (options.format == render::Format::json) {
    auto doc = json_head("diff", o.common, nullptr);
    for (const auto& [key, s] : {std::pair{"a", &a}, std::pair{"b", &b}}) {
      doc[key] = {{"host", s->scope.host},
                  {"snapshot_id", s->snapshot.id},
                  {"time", model::format_iso_utc(s->snapshot.time_ms)},
                  {"time_epoch", static_cast<double>(s->snapshot.time_ms) / 1000.0},
                  {"sockets", s->sockets.size()}};
    }
    doc["differences"] = differences;
    return {render::render(t, options, doc), code};
  }
  std::vector<std::string> heading = {fmt::format("# A: {}", describe(a)), fmt::format("# B: {}", describe(b))};
  if (a.scope.host_id == b.scope.host_id && a.snapshot.boot_id != b.snapshot.boot_id) {
    heading.push_back("# (the host rebooted between them: counter changes are not comparable)");
  }
  if (rows.empty()) {
    t.notes.push_back("(no differences)");
  }
  return {render::render(t, options, {}, heading), code};
}

}  // namespace

void setup_diff(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<DiffOptions>();
  auto* sub = add_command(app, "diff",
                          "Two snapshots side by side (two hosts, or one host at two moments): listeners, processes, "
                          "states, peers and counters that differ. Exit 0 none, 1 differences",
                          selected, [o] { return run_diff(*o); });
  add_common(*sub, o->common, false);  // --host names a side here
  sub->add_option("--host", o->hosts, "A side's host (twice for two hosts; once for one host at two --at)");
  sub->add_option("--at", o->ats, "A side's moment (twice, or once for both hosts; default: each newest)");
  sub->add_option("--snapshot", o->snapshots, "A side's snapshot id (twice)");
  sub->add_option("--counter-threshold", o->counter_threshold,
                  "Between hosts: a counter per second of uptime differing by more than this percent is listed")
      ->capture_default_str();
  sub->add_option("--top", o->top, "Rows per section in a table (0: all)")->capture_default_str();
}

}  // namespace sockhist::analyzer
