// Which host and network namespace a command looks at, and the hosts a database holds.
#include <algorithm>
#include <map>
#include <set>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/error.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::query {

using namespace detail;

namespace detail {

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) {
      out += sep;
    }
    out += item;
  }
  return out;
}

Scope scope_from_netns(SQLite::Database& db, std::int64_t netns_id) {
  SQLite::Statement q(db,
                      "SELECT h.host_id, h.name, h.machine_id, n.netns_id, n.inode, n.name, n.is_initial "
                      "FROM netns n JOIN hosts h ON h.host_id = n.host_id WHERE n.netns_id = ?");
  q.bind(1, netns_id);
  if (!q.executeStep()) {
    throw Error(Exit::usage, fmt::format("{}: no network namespace {}", db.getFilename(), netns_id));
  }
  Scope s;
  s.host_id = q.getColumn(0).getInt64();
  s.host = q.getColumn(1).getString();
  s.machine_id = opt_text(q.getColumn(2));
  s.netns_id = q.getColumn(3).getInt64();
  s.netns_inode = static_cast<std::uint64_t>(q.getColumn(4).getInt64());
  s.netns_name = opt_text(q.getColumn(5));
  s.netns_initial = q.getColumn(6).getInt() != 0;
  return s;
}

}  // namespace detail

namespace {

// A host's namespaces that have snapshots: (netns_id, inode, name, initial), its own first, then
// the one with the newest snapshot first.
using Namespaces = std::vector<std::tuple<std::int64_t, std::string, std::string, bool>>;
Namespaces host_namespaces(SQLite::Database& db, std::int64_t host_id) {
  SQLite::Statement q(db,
                      "SELECT n.netns_id, n.inode, coalesce(n.name, ''), n.is_initial FROM netns n WHERE n.host_id = ? "
                      "AND EXISTS (SELECT 1 FROM snapshots s WHERE s.netns_id = n.netns_id) "
                      "ORDER BY n.is_initial DESC, (SELECT max(snapshot_id) FROM snapshots s WHERE s.netns_id = "
                      "n.netns_id) DESC");
  q.bind(1, host_id);
  Namespaces spaces;
  while (q.executeStep()) {
    spaces.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                        q.getColumn(3).getInt() != 0);
  }
  return spaces;
}

// "its own", "shtest (4026532177)" or "4026532177", as --netns would name each; "#ID" added where
// a name or inode names more than one (the kernel reuses a deleted namespace's inode, and
// `ip netns` names are reused).
std::vector<std::string> namespace_labels(const Namespaces& spaces) {
  std::map<std::string, int> uses;
  for (const auto& [id, inode, name, initial] : spaces) {
    ++uses[inode];
    if (!name.empty() && name != inode) {
      ++uses[name];
    }
  }
  std::vector<std::string> out;
  for (const auto& [id, inode, name, initial] : spaces) {
    std::string label = initial ? std::string("its own") : name.empty() ? inode : fmt::format("{} ({})", name, inode);
    if (!initial && (uses[inode] > 1 || (!name.empty() && uses[name] > 1))) {
      label += fmt::format(" #{}", id);
    }
    out.push_back(std::move(label));
  }
  return out;
}

// "#7 (2026-11-24T00:55:57Z to 2026-11-24T01:02:03Z)": a namespace by id with the span of its snapshots.
std::string namespace_with_times(SQLite::Database& db, std::int64_t netns_id) {
  SQLite::Statement q(db, "SELECT min(time_ms), max(time_ms) FROM snapshots WHERE netns_id = ?");
  q.bind(1, netns_id);
  q.executeStep();
  return fmt::format("#{} ({} to {})", netns_id, model::format_iso_utc(q.getColumn(0).getInt64()),
                     model::format_iso_utc(q.getColumn(1).getInt64()));
}

}  // namespace

std::vector<HostSummary> list_hosts(SQLite::Database& db) {
  std::vector<HostSummary> hosts;
  std::vector<std::int64_t> ids;
  SQLite::Statement q(db,
                      "SELECT h.host_id, h.name, h.machine_id, min(s.time_ms), max(s.time_ms), count(*), "
                      "count(DISTINCT n.netns_id), count(DISTINCT s.boot_id) "
                      "FROM hosts h JOIN netns n ON n.host_id = h.host_id JOIN snapshots s ON s.netns_id = n.netns_id "
                      "GROUP BY h.host_id ORDER BY h.name");
  while (q.executeStep()) {
    HostSummary h;
    ids.push_back(q.getColumn(0).getInt64());
    h.name = q.getColumn(1).getString();
    h.machine_id = opt_text(q.getColumn(2));
    h.first_ms = q.getColumn(3).getInt64();
    h.last_ms = q.getColumn(4).getInt64();
    h.snapshots = q.getColumn(5).getInt64();
    h.namespaces = q.getColumn(6).getInt64();
    h.boots = q.getColumn(7).getInt64();
    hosts.push_back(std::move(h));
  }
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    // Its own namespace, or (never recorded) the one with the newest snapshot: no --netns needed.
    const auto spaces = host_namespaces(db, ids[i]);
    hosts[i].namespace_labels = namespace_labels(spaces);
    hosts[i].own_namespace = std::get<3>(spaces.front());
    const Scope scope = scope_from_netns(db, std::get<0>(spaces.front()));
    SQLite::Statement boots(db,
                            "SELECT time_ms FROM (SELECT time_ms, boot_id, lag(boot_id) OVER (ORDER BY snapshot_id) "
                            "AS prev FROM snapshots WHERE netns_id = ?) WHERE prev IS NOT NULL AND boot_id IS NOT NULL "
                            "AND prev <> boot_id");
    boots.bind(1, scope.netns_id);
    while (boots.executeStep()) {
      hosts[i].reboots_ms.push_back(boots.getColumn(0).getInt64());
    }
    if (const auto last = latest_snapshot(db, scope)) {
      hosts[i].last_socket_count = last->socket_count;
      hosts[i].kernel = last->kernel;
    }
  }
  return hosts;
}

namespace {

// --host resolved: the host's row and name. Without --host the database must hold one host.
std::pair<std::int64_t, std::string> resolve_host(SQLite::Database& db, const std::optional<std::string>& host) {
  std::vector<std::pair<std::int64_t, std::string>> hosts;
  {
    SQLite::Statement q(db,
                        "SELECT host_id, name FROM hosts h WHERE EXISTS (SELECT 1 FROM netns n JOIN snapshots s ON "
                        "s.netns_id = n.netns_id WHERE n.host_id = h.host_id) ORDER BY name");
    while (q.executeStep()) {
      hosts.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getString());
    }
  }
  std::vector<std::string> names;
  for (const auto& h : hosts) {
    names.push_back(h.second);
  }
  std::int64_t host_id = 0;
  std::string host_name;
  if (host) {
    const auto it = std::find_if(hosts.begin(), hosts.end(), [&](const auto& h) { return h.second == *host; });
    if (it == hosts.end()) {
      throw Error(Exit::usage, fmt::format("--host {}: no snapshots of that host in {} (hosts: {})", *host,
                                           db.getFilename(), names.empty() ? "none" : join(names, ", ")));
    }
    host_id = it->first;
    host_name = it->second;
  } else if (hosts.empty()) {
    throw Error(Exit::usage, fmt::format("{} holds no snapshots yet: run sockhist-collect", db.getFilename()));
  } else if (hosts.size() > 1) {
    throw Error(Exit::usage, fmt::format("--host is required: {} holds {} hosts ({})", db.getFilename(), hosts.size(),
                                         join(names, ", ")));
  } else {
    host_id = hosts.front().first;
    host_name = hosts.front().second;
  }
  return {host_id, host_name};
}

}  // namespace

std::vector<Scope> namespace_scopes(SQLite::Database& db, const std::optional<std::string>& host) {
  std::vector<Scope> scopes;
  for (const auto& space : host_namespaces(db, resolve_host(db, host).first)) {
    scopes.push_back(scope_from_netns(db, std::get<0>(space)));
  }
  return scopes;
}

Scope resolve_scope(SQLite::Database& db, const std::optional<std::string>& host,
                    const std::optional<std::string>& netns) {
  const auto [host_id, host_name] = resolve_host(db, host);
  const auto spaces = host_namespaces(db, host_id);
  if (netns) {
    std::vector<std::int64_t> matches;  // newest first
    for (const auto& [id, inode, name, initial] : spaces) {
      if (*netns == inode || (!name.empty() && *netns == name) || *netns == fmt::format("#{}", id)) {
        matches.push_back(id);
      }
    }
    if (!matches.empty()) {
      Scope scope = scope_from_netns(db, matches.front());
      if (matches.size() > 1) {
        std::vector<std::string> older;
        for (std::size_t i = 1; i < matches.size(); ++i) {
          older.push_back(namespace_with_times(db, matches[i]));
        }
        scope.note = fmt::format(
            "--netns {} names {} namespaces of host {} over time (the kernel reuses a deleted "
            "namespace's inode): using the newest, {}; --netns '#ID' names another: {}",
            *netns, matches.size(), host_name, namespace_with_times(db, matches.front()), join(older, ", "));
      }
      return scope;
    }
    throw Error(Exit::usage, fmt::format("--netns {}: no such namespace of host {} (namespaces: {})", *netns, host_name,
                                         join(namespace_labels(spaces), ", ")));
  }
  if (std::get<3>(spaces.front()) || spaces.size() == 1) {
    return scope_from_netns(db, std::get<0>(spaces.front()));
  }
  throw Error(Exit::usage, fmt::format("--netns is required: host {} recorded {} network namespaces, not its own: {}",
                                       host_name, spaces.size(), join(namespace_labels(spaces), ", ")));
}

Scope scope_of_snapshot(SQLite::Database& db, std::int64_t snapshot_id) {
  SQLite::Statement q(db, "SELECT netns_id FROM snapshots WHERE snapshot_id = ?");
  q.bind(1, snapshot_id);
  if (!q.executeStep()) {
    throw Error(Exit::usage, fmt::format("--snapshot {}: no such snapshot in {}", snapshot_id, db.getFilename()));
  }
  return scope_from_netns(db, q.getColumn(0).getInt64());
}

}  // namespace sockhist::query
