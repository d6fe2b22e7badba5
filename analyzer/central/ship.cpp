// sockhist ship: a database's history sent to the central store, namespace by namespace, in rounds
// that each end with a commit row (schema/clickhouse/001_central.sql says why that is exact).
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ship_rows.hpp"
#include "sockhist/central.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"

namespace sockhist::central {

using detail::Body;
using detail::SourceNetns;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What the server holds of one namespace: its newest committed snapshot.
struct Held {
  std::string host, key;
  std::int64_t newest = 0, newest_ms = 0;
  std::string boot_id, machine_id;
  std::int64_t inode = 0;
};

std::vector<Held> held_by(Server& server) {
  std::vector<Held> out;
  const auto exists =
      server.select(fmt::format("SELECT count() FROM system.tables WHERE database = {} AND name = 'commits'",
                                quote(server.endpoint().database)),
                    false);
  if (server.number(exists, 0, 0) == 0) {
    return out;
  }
  const auto rows = server.select(
      "SELECT host, netns_key, max(to_snapshot), argMax(to_time_ms, to_snapshot), argMax(ifNull(boot_id, ''), "
      "to_snapshot), any(netns), argMax(ifNull(machine_id, ''), to_snapshot) FROM commits GROUP BY host, netns_key");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    out.push_back({rows[i].at(0), rows[i].at(1), server.number(rows, i, 2), server.number(rows, i, 3), rows[i].at(4),
                   rows[i].at(6), server.number(rows, i, 5)});
  }
  return out;
}

std::vector<SourceNetns> read_sources(SQLite::Database& db) {
  std::vector<SourceNetns> out;
  SQLite::Statement q(db,
                      "SELECT n.netns_id, h.host_id, h.name, h.machine_id, n.inode, n.name, n.is_initial FROM netns n "
                      "JOIN hosts h ON h.host_id = n.host_id ORDER BY h.name, n.netns_id");
  while (q.executeStep()) {
    SourceNetns n;
    n.netns_id = q.getColumn(0).getInt64();
    n.host_id = q.getColumn(1).getInt64();
    n.host = q.getColumn(2).getString();
    if (!q.getColumn(3).isNull() && !q.getColumn(3).getString().empty()) {
      n.machine_id = q.getColumn(3).getString();
    }
    n.inode = q.getColumn(4).getInt64();
    if (!q.getColumn(5).isNull()) {
      n.name = q.getColumn(5).getString();
    }
    n.initial = q.getColumn(6).getInt() != 0;
    out.push_back(std::move(n));
  }
  SQLite::Statement snaps(db,
                          "SELECT snapshot_id, time_ms, coalesce(boot_id, '') FROM snapshots WHERE netns_id = ? "
                          "ORDER BY snapshot_id");
  for (auto& n : out) {
    snaps.reset();
    snaps.bind(1, n.netns_id);
    while (snaps.executeStep()) {
      n.ids.push_back(snaps.getColumn(0).getInt64());
      n.times.push_back(snaps.getColumn(1).getInt64());
      n.boots.push_back(snaps.getColumn(2).getString());
    }
  }
  std::erase_if(out, [](const SourceNetns& n) { return n.ids.empty(); });
  return out;
}

// Files each source namespace under its central key, and says where its server history ends.
// Refuses, before anything is sent, a host the server knows as another machine and a namespace
// another database shipped.
std::map<std::int64_t, std::int64_t> match(std::vector<SourceNetns>& sources, const std::vector<Held>& held,
                                           const std::function<void(const std::string&)>& note) {
  std::map<std::int64_t, std::int64_t> watermark;  // netns_id -> the server's newest snapshot
  std::set<std::string> taken;
  for (auto& n : sources) {
    for (const auto& h : held) {
      if (h.host == n.host && n.machine_id && !h.machine_id.empty() && h.machine_id != *n.machine_id) {
        throw Error(Exit::db_refused,
                    fmt::format("host {}: the server holds a host of that name with machine-id {}, this database's "
                                "is {}: two machines would read as one; nothing was sent",
                                n.host, h.machine_id, *n.machine_id));
      }
    }
    const Held* found = nullptr;
    std::vector<std::string> others;
    for (const auto& h : held) {
      if (h.host != n.host || h.inode != n.inode) {
        continue;
      }
      const auto it = std::lower_bound(n.ids.begin(), n.ids.end(), h.newest);
      const auto i = static_cast<std::size_t>(it - n.ids.begin());
      if (it != n.ids.end() && *it == h.newest && n.times[i] == h.newest_ms &&
          (h.boot_id.empty() || n.boots[i] == h.boot_id) && !taken.contains(h.key)) {
        found = &h;
        break;
      }
      others.push_back(h.key);
    }
    if (found) {
      n.key = found->key;
      watermark[n.netns_id] = found->newest;
    } else {
      n.key = fmt::format("{}@{}", n.inode, n.times.front());
      if (std::find(others.begin(), others.end(), n.key) != others.end()) {
        throw Error(Exit::db_refused,
                    fmt::format("host {} namespace {}: the server's history of it ends at a snapshot this database "
                                "does not hold (another database shipped it): nothing was sent",
                                n.host, n.key));
      }
      watermark[n.netns_id] = 0;
      if (!others.empty()) {
        note(
            fmt::format("host {} namespace {}: the server's history ({}) does not go on in this database (its "
                        "newest shipped snapshot is not here: retention removed it, or another database shipped "
                        "it); shipping this one as {}",
                        n.host, n.inode, fmt::join(others, ", "), n.key));
      }
    }
    taken.insert(n.key);
  }
  return watermark;
}

// The query_id prefix of a namespace's inserts.
std::string insert_tag(const SourceNetns& n) {
  return fmt::format("sockhist-ship:{}:{}:", n.host, n.key);
}

// Waits until the server has finished every insert an earlier push of this namespace began: one
// that died half-way may still be being read, and its rows must land before the leftovers are
// counted, or they would land after the rows sent again and read twice.
void wait_for_inserts(Server& server, const SourceNetns& n, const std::function<void(const std::string&)>& note) {
  const auto tag = insert_tag(n);
  const auto deadline = std::chrono::steady_clock::now() + server.endpoint().timeout;
  for (bool told = false;; std::this_thread::sleep_for(std::chrono::milliseconds(100))) {
    const auto running =
        server.select(fmt::format("SELECT count() FROM system.processes WHERE substring(query_id, 1, {}) = {}",
                                  tag.size(), quote(tag)),
                      false);
    if (running.empty() || running.front().front() == "0") {
      return;
    }
    if (!told) {
      note(fmt::format("host {} namespace {}: waiting for the server to finish an earlier push's insert", n.host,
                       n.key));
      told = true;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(Exit::failure, fmt::format("{}: an earlier push's insert into host {} namespace {} was still running "
                                             "after {} s; nothing was sent",
                                             server.endpoint().url, n.host, n.key, server.endpoint().timeout.count()));
    }
  }
}

// Removes what an interrupted push left beyond the namespace's newest committed snapshot, and
// waits until the server has: rows sent again must not meet the ones they replace.
void remove_leftovers(Server& server, const SourceNetns& n, std::int64_t newest,
                      const std::function<void(const std::string&)>& note) {
  wait_for_inserts(server, n, note);
  static const std::pair<const char*, const char*> k_tables[] = {{"spans", "closed_by"},
                                                                 {"open_spans", "snapshot_id"},
                                                                 {"counters", "snapshot_id"},
                                                                 {"state_counts", "snapshot_id"},
                                                                 {"socket_values", "snapshot_id"},
                                                                 {"time_wait_entries", "settled_by"},
                                                                 {"connection_logs", "snapshot_id"},
                                                                 {"connection_ends", "settled_by"},
                                                                 {"connection_aggregates", "snapshot_id"},
                                                                 {"diagnostics", "snapshot_id"},
                                                                 {"snapshots", "snapshot_id"}};
  const auto where = [&](const char* column) {
    return fmt::format("host = {} AND netns_key = {} AND {} > {}", quote(n.host), quote(n.key), column, newest);
  };
  std::vector<std::string> counts;
  for (const auto& [table, column] : k_tables) {
    counts.push_back(fmt::format("SELECT {}, count() FROM {} WHERE {}", quote(table), table, where(column)));
  }
  bool removed = false;
  for (const auto& row : server.select(fmt::format("{}", fmt::join(counts, " UNION ALL ")))) {
    if (row.at(1) == "0") {
      continue;
    }
    const auto table = row.at(0);
    const auto column =
        std::find_if(std::begin(k_tables), std::end(k_tables), [&](const auto& t) { return table == t.first; })->second;
    note(fmt::format("host {} namespace {}: removing {} rows of {} an interrupted push left beyond snapshot {}", n.host,
                     n.key, row.at(1), table, newest));
    server.run(fmt::format("ALTER TABLE {} DELETE WHERE {}", table, where(column)));
    removed = true;
  }
  const auto deadline = std::chrono::steady_clock::now() + server.endpoint().timeout;
  while (removed) {
    const auto left = server.select(fmt::format(
        "SELECT count() FROM system.mutations WHERE database = {} AND is_done = 0", quote(server.endpoint().database)));
    if (left.empty() || left.front().front() == "0") {
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(Exit::failure, fmt::format("{}: the server did not finish removing an interrupted push's rows "
                                             "within {} s; nothing more was sent",
                                             server.endpoint().url, server.endpoint().timeout.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// A read transaction over the whole push, so that every round reads one state of the file.
class ReadTransaction {
 public:
  explicit ReadTransaction(SQLite::Database& db) : db_(db) { db_.exec("BEGIN"); }
  ~ReadTransaction() {
    try {
      db_.exec("ROLLBACK");
    } catch (...) {
    }
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;

 private:
  SQLite::Database& db_;
};

}  // namespace

std::vector<ShippedNetns> ship(SQLite::Database& db, Server& server, const ShipOptions& options) {
  const auto note = [&](const std::string& line) {
    if (options.note) {
      options.note(line);
    }
  };
  ReadTransaction reading(db);
  auto sources = read_sources(db);
  const auto held = held_by(server);
  const auto watermark = match(sources, held, note);
  prepare(server);

  std::map<std::int64_t, detail::CounterName> counter_names;
  SQLite::Statement names(db, "SELECT counter_id, section, name, is_gauge FROM counter_names");
  while (names.executeStep()) {
    counter_names[names.getColumn(0).getInt64()] = {names.getColumn(1).getString(), names.getColumn(2).getString(),
                                                    names.getColumn(3).getInt() != 0};
  }
  const detail::SourceTables tables{store::has_time_wait_entries(db), store::has_connection_log(db)};
  std::vector<ShippedNetns> out;
  for (const auto& n : sources) {
    ShippedNetns s;
    s.host = n.host;
    s.netns_key = n.key;
    s.from_snapshot = s.to_snapshot = watermark.at(n.netns_id);
    s.new_key = s.from_snapshot == 0;
    remove_leftovers(server, n, s.from_snapshot, note);
    server.set_insert_tag(insert_tag(n));
    std::vector<std::int64_t> todo;
    std::copy_if(n.ids.begin(), n.ids.end(), std::back_inserter(todo), [&](auto id) { return id > s.from_snapshot; });
    detail::RoundReader reader(db, n, counter_names, tables);
    const auto bytes_before = server.bytes_sent();
    const auto step = static_cast<std::size_t>(std::max<std::int64_t>(1, options.chunk_snapshots));
    for (std::size_t done = 0; done < todo.size(); done += step) {
      const auto upto = todo[std::min(todo.size(), done + step) - 1];
      for (const auto& body : reader.read(s.to_snapshot, upto)) {
        server.insert(body.table, body.columns, body.rows);
        s.rows += body.count;
      }
      const auto i = static_cast<std::size_t>(std::lower_bound(n.ids.begin(), n.ids.end(), upto) - n.ids.begin());
      std::string commit;
      for (const auto& field : {n.host, n.key}) {
        append_field(commit, field);
        commit += '\t';
      }
      commit += fmt::format("{}\t{}\t", upto, n.times[i]);
      append_field(commit, n.boots[i]);
      commit += fmt::format("\t{}\t", n.inode);
      if (n.machine_id) {
        append_field(commit, *n.machine_id);
      } else {
        commit += k_null_field;
      }
      commit += fmt::format("\t{:010}\n", now_ms() / 1000);
      server.insert("commits", "host, netns_key, to_snapshot, to_time_ms, boot_id, netns, machine_id, committed",
                    commit);
      s.snapshots += static_cast<std::int64_t>(std::min(todo.size(), done + step) - done);
      s.to_snapshot = upto;
      if (options.progress) {
        options.progress(s, static_cast<std::int64_t>(std::min(todo.size(), done + step)),
                         static_cast<std::int64_t>(todo.size()));
      }
    }
    s.bytes = server.bytes_sent() - bytes_before;
    if (s.snapshots > 0) {
      std::string push;
      for (const auto& field : {n.host, n.key}) {
        append_field(push, field);
        push += '\t';
      }
      push += fmt::format("{:010}\t{}\t{}\t{}\t{}\t{}\t", now_ms() / 1000, s.from_snapshot, s.to_snapshot, s.snapshots,
                          s.rows, s.bytes);
      append_field(push, options.source_file);
      push += fmt::format("\t{}\n", SOCKHIST_VERSION);
      server.insert("pushes",
                    "host, netns_key, pushed, from_snapshot, to_snapshot, snapshots, rows, bytes, "
                    "source_file, sockhist",
                    push);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace sockhist::central
