// sockhist fleet trend, close-wait and time-wait: the questions trend, close-wait and time-wait
// answer for one host, asked of every host in the central store at once. The store sums what it
// can (the highest count per bucket, entries per address); what a single-host command works out
// from the snapshots (gaps, reboots, each owner's growth) is worked out here by the same code.
#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cmd_fleet.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

namespace {

const WindowDefaults k_window{"24h", true, {}};

// The snapshots of one namespace in the range, as the single-host queries take them.
struct FleetNetns {
  std::string host, netns_key;
  std::vector<query::SnapshotSummary> snapshots;
};

// The range's snapshots grouped by namespace (host, then key); Error(usage) for a --host the store
// does not hold, naming those it does.
std::vector<FleetNetns> namespaces_in(central::Server& server, const FleetCommand& o, std::int64_t since,
                                      std::int64_t until) {
  require_hosts(server, o.hosts);
  std::vector<FleetNetns> out;
  for (auto& s : central::fleet_snapshots(server, o.hosts, since, until)) {
    if (out.empty() || out.back().host != s.host || out.back().netns_key != s.netns_key) {
      out.push_back({s.host, s.netns_key, {}});
    }
    query::SnapshotSummary summary;
    summary.id = s.id;
    summary.time_ms = s.time_ms;
    summary.boot_id = std::move(s.boot_id);
    out.back().snapshots.push_back(std::move(summary));
  }
  return out;
}

// Hosts asked for that no snapshot of the range belongs to, as a note.
void note_silent_hosts(const FleetCommand& o, const std::vector<FleetNetns>& found, render::Table& t) {
  for (const auto& h : o.hosts) {
    if (std::none_of(found.begin(), found.end(), [&](const auto& n) { return n.host == h; })) {
      t.notes.push_back(fmt::format("{}: no snapshot in the range", h));
    }
  }
  if (found.empty() && o.hosts.empty()) {
    t.notes.push_back("(no snapshot of any host in the range)");
  }
}

// `t` with a host and a namespace column before its own, each row from `tables`, one per namespace.
render::Table with_namespaces(const std::vector<FleetNetns>& namespaces, const std::vector<render::Table>& tables) {
  render::Table t;
  t.columns = {{"host"}, {"netns_key", "NETNS"}};
  if (tables.empty()) {
    return t;
  }
  t.columns.insert(t.columns.end(), tables.front().columns.begin(), tables.front().columns.end());
  t.notes = tables.front().notes;
  for (std::size_t i = 0; i < tables.size(); ++i) {
    for (const auto& row : tables[i].rows) {
      std::vector<render::Value> r{namespaces[i].host, namespaces[i].netns_key};
      r.insert(r.end(), row.begin(), row.end());
      t.rows.push_back(std::move(r));
    }
  }
  return t;
}

Result output(const FleetCommand& o, const std::string& command, render::Table t, std::int64_t since,
              std::int64_t until, const std::string& what, int code,
              const std::function<void(nlohmann::ordered_json&)>& more = {}) {
  const auto options = render_options(o.common);
  if (options.format == render::Format::json) {
    auto doc = fleet_head(command, o);
    doc["what"] = what;
    doc["since"] = model::format_iso_utc(since);
    doc["until"] = model::format_iso_utc(until);
    if (more) {
      more(doc);
    }
    return {render::render(t, options, doc), code};
  }
  return {
      render::render(t, options, {},
                     {fmt::format("# {} (from {}), {} to {}", what, o.central.url,
                                  model::format_human(since, options.zone), model::format_human(until, options.zone))}),
      code};
}

Result run_trend(const FleetCommand& o) {
  central::Server server(o.central.endpoint());
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
  const auto bucket = o.bucket ? parse_duration(*o.bucket, "--bucket") : query::choose_bucket_ms(until - since);
  if ((until - since) / bucket > 100'000) {
    throw Error(Exit::usage,
                fmt::format("--bucket {}: more than 100000 buckets over the range; choose a larger one", *o.bucket));
  }
  const auto namespaces = namespaces_in(server, o, since, until);
  const auto maxima = central::fleet_state_maxima(server, o.hosts, since, until, bucket);
  // One set of columns for every host: the TCP states any of them counted, as trend orders them.
  std::set<std::string> seen;
  for (const auto& m : maxima) {
    if (m.key.find(' ') != std::string::npos) {
      seen.insert(m.key);
    }
  }
  const auto series = query::state_series(seen, o.states);
  std::map<std::pair<std::string, std::string>, std::vector<const central::FleetStateMax*>> by_netns;
  for (const auto& m : maxima) {
    by_netns[{m.host, m.netns_key}].push_back(&m);
  }
  std::vector<render::Table> tables;
  for (const auto& n : namespaces) {
    auto t = query::trend_frame(n.snapshots, since, until, bucket, series.names,
                                std::vector<std::string>(series.names.size(), "sockets"));
    // A bucket with snapshots counted every series: what no snapshot counted was 0.
    for (auto& b : t.buckets) {
      if (b.snapshots > 0) {
        std::fill(b.values.begin(), b.values.end(), 0.0);
      }
    }
    for (const auto* m : by_netns[{n.host, n.netns_key}]) {
      const auto k = std::find(series.keys.begin(), series.keys.end(), m->key) - series.keys.begin();
      const auto idx = query::bucket_of(t, m->bucket_ms);
      if (k < std::ssize(series.keys) && idx) {
        t.buckets[*idx].values[static_cast<std::size_t>(k)] = static_cast<double>(m->count);
      }
    }
    tables.push_back(trend_table(t));
  }
  auto t = with_namespaces(namespaces, tables);
  if (tables.empty()) {
    t.columns.push_back({"time", "BUCKET START", render::Kind::time_ms});
  }
  note_silent_hosts(o, namespaces, t);
  return output(
      o, "fleet trend", std::move(t), since, until,
      fmt::format("sockets per state per host (highest count in each bucket of {})", model::format_duration(bucket)), 0,
      [&](auto& doc) { doc["bucket_seconds"] = static_cast<double>(bucket) / 1000.0; });
}

// One namespace's CLOSE_WAIT sockets over its snapshots, as close-wait makes them from the SQLite
// store: a chain of CLOSE_WAIT spans (the owner changed) is one socket, counted from its first.
// `spans`: its CLOSE_WAIT spans in the range, by id; `listening`: its ports that listened then.
std::vector<query::CloseWaitSocket> close_wait_sockets(central::Server& server, const FleetNetns& n,
                                                       const std::vector<central::FleetSpan>& spans,
                                                       const std::set<std::int64_t>& listening) {
  const auto& snaps = n.snapshots;
  std::vector<std::int64_t> ids;
  for (const auto& s : snaps) {
    ids.push_back(s.id);
  }
  // The spans before them: each one's state, and the chains of CLOSE_WAIT back to their first.
  std::unordered_map<std::int64_t, central::FleetSpan> known;
  for (const auto& s : spans) {
    known.emplace(s.span_id, s);
  }
  std::vector<std::int64_t> wanted;
  for (const auto& s : spans) {
    if (s.prev_span_id && !known.contains(*s.prev_span_id)) {
      wanted.push_back(*s.prev_span_id);
    }
  }
  while (!wanted.empty()) {
    std::vector<std::int64_t> next;
    for (auto& s : central::fleet_spans_by_id(server, n.host, n.netns_key, wanted)) {
      if (s.state == "CLOSE_WAIT" && s.prev_span_id && !known.contains(*s.prev_span_id)) {
        next.push_back(*s.prev_span_id);
      }
      known.emplace(s.span_id, std::move(s));
    }
    std::erase_if(next, [&](auto id) { return known.contains(id); });
    wanted = std::move(next);
  }
  const auto state_of = [&](const std::optional<std::int64_t>& id) -> std::optional<std::string> {
    if (!id) {
      return std::nullopt;
    }
    const auto it = known.find(*id);
    return it == known.end() ? std::nullopt : std::optional(it->second.state);
  };
  // An owner is its pid, name and command line (the store keeps no process ids).
  std::map<std::tuple<std::int64_t, std::string, std::string>, std::int64_t> owner_ids;
  std::vector<query::CloseWaitSocket> out;
  std::unordered_map<std::int64_t, std::size_t> by_span;  // the last span of each entry -> its index
  for (const auto& s : spans) {
    auto came_from = query::neighbour_of(state_of(s.prev_span_id));
    std::int64_t first_ms = s.first_time_ms;
    query::CloseWaitSocket* entry = nullptr;
    const auto in_close_wait = [&] { return came_from.state == model::SockState::close_wait; };
    if (in_close_wait() && s.prev_span_id) {
      if (auto it = by_span.find(*s.prev_span_id); it != by_span.end()) {
        entry = &out[it->second];
        by_span.erase(it);
      } else {
        for (auto at = s.prev_span_id; at && in_close_wait();) {
          const auto it_at = known.find(*at);
          if (it_at == known.end()) {
            came_from = {};  // removed by retention: where it came from is lost
            break;
          }
          first_ms = it_at->second.first_time_ms;
          came_from = query::neighbour_of(state_of(it_at->second.prev_span_id));
          at = it_at->second.prev_span_id;
        }
      }
    }
    if (entry == nullptr) {
      out.emplace_back();
      entry = &out.back();
      entry->span_id = s.span_id;
      entry->came_from = came_from;
      entry->entered_by_ms = first_ms;
      entry->family = s.family;
      entry->local_addr = s.local_addr;
      entry->local_port = s.local_port;
      entry->remote_addr = s.remote_addr;
      entry->remote_port = s.remote_port;
      entry->serves_listener = listening.contains(s.local_port);
    }
    // The owner is the newest span's.
    if (s.pid) {
      const auto key = std::tuple(*s.pid, s.process, s.cmdline.value_or(""));
      entry->process_id = owner_ids.try_emplace(key, static_cast<std::int64_t>(owner_ids.size()) + 1).first->second;
    } else {
      entry->process_id.reset();
    }
    entry->pid = static_cast<std::int32_t>(s.pid.value_or(0));
    entry->comm = s.process;
    entry->cmdline = s.cmdline;
    // A span still open was seen by the namespace's newest snapshot, at or after the range's last.
    const auto last_id = s.last_snapshot_id.value_or(INT64_MAX);
    const auto last_pos = std::upper_bound(ids.begin(), ids.end(), last_id) - ids.begin() - 1;
    entry->last_seen_ms = snaps[static_cast<std::size_t>(std::max<std::ptrdiff_t>(last_pos, 0))].time_ms;
    entry->last_seen_id = std::min(last_id, ids.back());
    entry->still_there = last_id >= ids.back();
    by_span[s.span_id] = static_cast<std::size_t>(entry - out.data());
  }
  return out;
}

Result run_close_wait(const FleetCommand& o) {
  central::Server server(o.central.endpoint());
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
  const auto min_age = parse_duration(o.min_age, "--min-age", true);
  auto namespaces = namespaces_in(server, o, since, until);
  // Every namespace's CLOSE_WAIT spans and listening ports in two queries, then each namespace's.
  using Key = std::pair<std::string, std::string>;
  std::map<Key, std::vector<central::FleetSpan>> spans;
  for (auto& s : central::fleet_spans_in_state(server, o.hosts, "CLOSE_WAIT", since, until)) {
    spans[{s.host, s.netns_key}].push_back(std::move(s));
  }
  std::map<Key, std::set<std::int64_t>> ports;
  for (const auto& p : central::fleet_listening_ports(server, o.hosts, since, until)) {
    ports[{p.host, p.netns_key}].insert(p.port);
  }
  struct Found {
    std::size_t netns;
    std::vector<query::CloseWaitByProcess> owners;
    std::int64_t now = 0, peak = 0;
  };
  std::vector<Found> found;
  for (std::size_t i = 0; i < namespaces.size(); ++i) {
    // --min-age chooses the owners listed, never what is counted, as close-wait --by process.
    const Key key{namespaces[i].host, namespaces[i].netns_key};
    auto owners = query::close_wait_by_process(namespaces[i].snapshots,
                                               close_wait_sockets(server, namespaces[i], spans[key], ports[key]));
    std::erase_if(owners, [&](const auto& g) { return g.oldest_min_ms < min_age; });
    if (owners.empty()) {
      continue;
    }
    Found f{i, std::move(owners)};
    for (const auto& g : f.owners) {
      f.now += g.now;
      f.peak = std::max(f.peak, g.peak);
    }
    found.push_back(std::move(f));
  }
  // The worst hosts first: the most CLOSE_WAIT held now, then the highest owner's peak.
  std::stable_sort(found.begin(), found.end(),
                   [](const Found& a, const Found& b) { return std::pair(a.now, a.peak) > std::pair(b.now, b.peak); });
  std::vector<FleetNetns> listed;
  std::vector<render::Table> tables;
  for (const auto& f : found) {
    listed.push_back({namespaces[f.netns].host, namespaces[f.netns].netns_key, {}});
    tables.push_back(close_wait_owner_table(f.owners));
  }
  auto t = with_namespaces(listed, tables);
  if (tables.empty()) {
    t = with_namespaces({}, {close_wait_owner_table({})});
    t.notes.clear();
    t.notes.push_back(namespaces.empty() ? "(no snapshot of any host in the range)" : "(none)");
  }
  if (!o.hosts.empty()) {
    note_silent_hosts(o, namespaces, t);
  }
  return output(o, "fleet close-wait", std::move(t), since, until,
                fmt::format("owners of CLOSE_WAIT sockets seen for at least {} per host, the worst host first",
                            model::format_duration(min_age)),
                found.empty() ? 0 : 1,
                [&](auto& doc) { doc["min_age_seconds"] = static_cast<double>(min_age) / 1000.0; });
}

Result run_time_wait(const FleetCommand& o) {
  central::Server server(o.central.endpoint());
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
  const auto namespaces = namespaces_in(server, o, since, until);
  using render::Kind;
  render::Table t;
  if (o.by == "owner") {
    t.columns = {{"host"},
                 {"netns_key", "NETNS"},
                 {"program", "PID/PROGRAM"},
                 {"entries", "ENTRIES", Kind::integer, "sockets"},
                 {"pid", "", Kind::integer, {}, 2, false},
                 {"process", "", Kind::text, {}, 2, false}};
    for (const auto& w : central::fleet_time_wait_owners(server, o.hosts, since, until, o.top)) {
      t.rows.push_back({w.host, w.netns_key, program(static_cast<std::int32_t>(w.pid.value_or(0)), w.process),
                        w.entries, w.pid ? render::Value(*w.pid) : render::Value(),
                        w.process.empty() ? render::Value() : render::Value(w.process)});
    }
    t.notes.push_back("ENTRIES: TIME_WAIT sockets entered after each host's first snapshot of the range, by the owner");
    t.notes.push_back("of the connection (carried into TIME_WAIT from its earlier life; - where none was known). A");
    t.notes.push_back("host's newest snapshot's entries come with its next push.");
  } else if (o.by == "remote") {
    t.columns = {{"remote_addr", "REMOTE ADDRESS"},
                 {"entries", "ENTRIES", Kind::integer, "sockets"},
                 {"hosts", "HOSTS", Kind::integer},
                 {"worst_host", "MOST FROM"},
                 {"worst_entries", "ITS ENTRIES", Kind::integer, "sockets"}};
    for (const auto& r : central::fleet_time_wait_remotes(server, o.hosts, since, until, o.top)) {
      t.rows.push_back({r.remote_addr, r.entries, r.hosts, r.worst_host, r.worst_entries});
    }
    t.notes.push_back("ENTRIES: TIME_WAIT sockets entered toward the address after each host's first snapshot of the");
    t.notes.push_back("range, on every host. MOST FROM: the host with the most of them. A host's newest snapshot's");
    t.notes.push_back("entries come with its next push (the collector may date them again).");
  } else {
    // Entries are counted up to the newest snapshot whose entries the store has: the range's last,
    // or the one before it where that is the namespace's newest (its entries come next push).
    std::map<std::pair<std::string, std::string>, std::int64_t> newest_id;
    for (const auto& row : server.select("SELECT host, netns_key, newest_id FROM v_newest")) {
      newest_id[{row.at(0), row.at(1)}] = std::stoll(row.at(2));
    }
    std::map<std::pair<std::string, std::string>, std::optional<std::int64_t>> settled_ms;
    for (const auto& n : namespaces) {
      const auto& last = n.snapshots.back();
      auto& at = settled_ms[{n.host, n.netns_key}];
      const auto settled = n.snapshots.size() - (last.id == newest_id[{n.host, n.netns_key}] ? 2 : 1);
      if (settled > 0 && settled < n.snapshots.size()) {
        at = n.snapshots[settled].time_ms;  // after the first: what entered before it is not counted
      }
    }
    auto hosts = central::fleet_time_wait_hosts(server, o.hosts, since, until);
    std::stable_sort(hosts.begin(), hosts.end(), [](const auto& a, const auto& b) {
      return std::pair(a.entries, a.peak) > std::pair(b.entries, b.peak);
    });
    t.columns = {{"host"},
                 {"netns_key", "NETNS"},
                 {"snapshots", "", Kind::integer},
                 {"entries", "ENTRIES", Kind::integer, "sockets"},
                 {"entries_until", "ENTRIES UNTIL", Kind::time_ms},
                 {"entries_per_s", "ENTERED/S", Kind::real, "per_s", 2},
                 {"peak", "PEAK", Kind::integer, "sockets"},
                 {"peak_at", "PEAK AT", Kind::time_ms},
                 {"now", "NOW", Kind::integer, "sockets"}};
    for (const auto& h : hosts) {
      const auto until_ms = settled_ms[{h.host, h.netns_key}];
      const auto span = until_ms.value_or(h.first_ms) - h.first_ms;
      t.rows.push_back({h.host, h.netns_key, h.snapshots, h.entries,
                        until_ms ? render::Value(*until_ms) : render::Value(),
                        span > 0 ? render::Value(static_cast<double>(h.entries) * 1000.0 / static_cast<double>(span))
                                 : render::Value(),
                        h.peak, h.peak_ms, h.now});
    }
    t.notes.push_back("ENTRIES: TIME_WAIT sockets entered between the range's first snapshot and ENTRIES UNTIL (a");
    t.notes.push_back("host's newest snapshot's entries come with its next push: the collector may date them again),");
    t.notes.push_back("ENTERED/S over that time. PEAK: the most TIME_WAIT sockets in one snapshot, first reached at");
    t.notes.push_back("PEAK AT. NOW: in the range's last snapshot.");
  }
  if (t.rows.empty()) {
    t.notes.insert(t.notes.begin(), "(no snapshot of any host in the range)");
  }
  return output(o, "fleet time-wait", std::move(t), since, until,
                o.by == "remote"  ? "TIME_WAIT entries per remote address across the hosts, the most first"
                : o.by == "owner" ? "TIME_WAIT entries per host and owner, the most first"
                                  : "TIME_WAIT per host, the most entries first",
                0);
}

}  // namespace

void setup_fleet_reports(CLI::App& fleet, Runner& selected, const std::shared_ptr<FleetCommand>& o,
                         const std::function<void(CLI::App&)>& formats) {
  const auto common = [&](CLI::App& sub) {
    formats(sub);
    sub.add_option("--host", o->hosts, "Only these hosts (default: every host in the store)")->delimiter(',');
    add_window(sub, o->window, k_window);
  };
  auto* trend =
      add_command(fleet, "trend", "Sockets per state over time, per host and namespace, one row per bucket (as trend)",
                  selected, [o] { return run_trend(*o); });
  common(*trend);
  trend->add_option("--bucket", o->bucket, "Bucket size (default: chosen for 24 to 60 buckets)");
  trend->add_option("--state", o->states, "Only these states (CLOSE_WAIT, udp:ESTABLISHED, unix:CONNECTED)")
      ->delimiter(',');
  auto* close_wait = add_command(fleet, "close-wait",
                                 "CLOSE_WAIT owners per host, the worst host first (as close-wait --by process; "
                                 "exit 1 when any is listed)",
                                 selected, [o] { return run_close_wait(*o); });
  common(*close_wait);
  close_wait->add_option("--min-age", o->min_age, "Only owners of a socket seen in CLOSE_WAIT this long (0: all)")
      ->capture_default_str();
  auto* time_wait =
      add_command(fleet, "time-wait", "TIME_WAIT entries and population per host, or per remote address across hosts",
                  selected, [o] { return run_time_wait(*o); });
  common(*time_wait);
  time_wait
      ->add_option("--by", o->by,
                   "host: per host, the most entries first; owner: per host and owning process; remote: per remote "
                   "address across the hosts")
      ->check(CLI::IsMember({"host", "owner", "remote"}))
      ->capture_default_str();
  time_wait->add_option("--top", o->top, "Rows of --by owner and --by remote (0: all)")->capture_default_str();
}

}  // namespace sockhist::analyzer
