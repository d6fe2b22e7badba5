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
#include "sockhist/query/diff.hpp"

namespace sockhist::analyzer {

namespace {

struct DiffOptions {
  Common common;
  std::vector<std::string> hosts;
  std::vector<std::string> ats;
  std::vector<std::int64_t> snapshots;
  std::optional<std::string> netns;  // the same namespace on both sides
  double counter_threshold = 25.0;
  std::string owners = "name";
  std::size_t top = 20;
};

// Counts print as integers, rates with their fraction.
render::Value number(double v) {
  if (std::abs(v) < 1e15 && v == std::floor(v)) {
    return static_cast<std::int64_t>(v);
  }
  return v;
}

// The side `i` (0 or 1) the options name.
query::DiffSide side_of(SQLite::Database& db, const DiffOptions& o, std::size_t i) {
  if (!o.snapshots.empty()) {
    const auto snapshot = query::snapshot_by_id(db, o.snapshots[i]);
    return query::load_side(db, query::scope_of_snapshot(db, o.snapshots[i]), snapshot);
  }
  const std::optional<std::string> host =
      o.hosts.empty() ? std::nullopt : std::optional(o.hosts[std::min(i, o.hosts.size() - 1)]);
  const auto scope = resolve_scope(db, host, o.netns);
  const std::optional<std::string> at =
      o.ats.empty() ? std::nullopt : std::optional(o.ats[std::min(i, o.ats.size() - 1)]);
  return query::load_side(db, scope, snapshot_for(db, scope, at, o.common.now_ms));
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
  const query::DiffSide a = side_of(db, o, 0), b = side_of(db, o, 1);
  const bool two_hosts = a.scope.host_id != b.scope.host_id;
  const auto rows = query::diff_sides(a, b, o.counter_threshold,
                                      o.owners == "pid" ? query::OwnerMatch::pid : query::OwnerMatch::name);
  const auto differences = std::count_if(rows.begin(), rows.end(), [](const auto& r) { return r.counts; });
  const int code = differences > 0 ? 1 : 0;

  using render::Kind;
  const auto label = [&](const query::DiffSide& s) {
    return two_hosts ? s.scope.host : fmt::format("#{}", s.snapshot.id);
  };
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
  const auto describe = [&](const query::DiffSide& s) {
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
  sub->add_option("--netns", o->netns,
                  "The network namespace of both sides: a /run/netns name or an inode (default: $SOCKHIST_NETNS, "
                  "else each host's own, else its only one)")
      ->envname("SOCKHIST_NETNS");
  sub->add_option("--at", o->ats, "A side's moment (twice, or once for both hosts; default: each newest)");
  sub->add_option("--snapshot", o->snapshots, "A side's snapshot id (twice)");
  sub->add_option("--counter-threshold", o->counter_threshold,
                  "Between hosts: a counter per second of uptime differing by more than this percent is listed")
      ->capture_default_str();
  sub->add_option("--top", o->top, "Rows per section in a table (0: all)")->capture_default_str();
  sub->add_option("--owners", o->owners,
                  "Match owners by process name (a name cut to 15 or netstat's 19 characters matches the longer one "
                  "it begins), or by pid: for one machine at one moment recorded twice (a sosreport's /proc copies, "
                  "ss and netstat listings), where ss names a process by its comm and netstat by its command line")
      ->check(CLI::IsMember({"name", "pid"}))
      ->capture_default_str();
}

}  // namespace sockhist::analyzer
