// What the store's unit tests and the query tests share: sockets and captures made in code,
// snapshot rows read back for comparison, and the sample history written through the real store
// into a database (usually ":memory:").
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>
#include <tuple>

#include <SQLiteCpp/SQLiteCpp.h>

#include "files.hpp"
#include "sockhist/capture.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::test {

using model::Capture;
using model::Proto;
using model::Socket;
using model::SockState;

inline Socket tcp(SockState state, std::uint16_t local_port, std::uint16_t remote_port, std::uint64_t inode,
                  std::int32_t pid = 0) {
  Socket s;
  s.proto = Proto::tcp;
  s.family = 4;
  s.state = state;
  s.local_addr = "127.0.0.1";
  s.local_port = local_port;
  s.remote_addr = remote_port == 0 ? "0.0.0.0" : "127.0.0.1";
  s.remote_port = remote_port;
  s.inode = inode;
  s.pid = pid;
  if (state == SockState::time_wait) {
    s.timer = model::TimerKind::timewait;
    s.timer_ms = 59'000;
  }
  return s;
}

inline Capture capture_at(std::int64_t time_ms, std::vector<Socket> sockets, std::string boot = "boot-a") {
  Capture c;
  c.host = "web1";
  c.hostname = "web1";
  c.boot_id = std::move(boot);
  c.time_ms = time_ms;
  c.netns_inode = 4026531840;
  c.owners = model::OwnerScan::complete;
  c.sockets = std::move(sockets);
  std::set<std::int32_t> pids;
  for (const auto& s : c.sockets) {
    if (s.pid != 0) {
      pids.insert(s.pid);
    }
  }
  for (const auto pid : pids) {
    c.processes.push_back(
        {pid, static_cast<std::uint64_t>(pid) * 100, "proc" + std::to_string(pid), "cmd", 0, std::nullopt});
  }
  c.counters = {{"Tcp", "InSegs", 100, false}, {"Tcp", "CurrEstab", 3, true}, {"TcpExt", "TW", 5, false}};
  return c;
}

struct Row {
  std::string proto, state, local;
  int lport;
  std::string remote;
  int rport;
  std::int64_t inode;
  std::int64_t pid;
  auto operator<=>(const Row&) const = default;
};

inline void PrintTo(const Row& r, std::ostream* out) {
  *out << r.proto << ' ' << r.state << ' ' << r.local << ':' << r.lport << ' ' << r.remote << ':' << r.rport
       << " inode " << r.inode << " pid " << r.pid;
}

// The rows only one side has, for a readable failure message.
inline std::string difference(const std::multiset<Row>& stored, const std::multiset<Row>& expected) {
  std::string out;
  const auto add = [&out](const char* label, const std::multiset<Row>& a, const std::multiset<Row>& b) {
    std::vector<Row> only;
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only));
    for (const auto& r : only) {
      std::ostringstream line;
      PrintTo(r, &line);
      out += std::string(label) + line.str() + "\n";
    }
  };
  add("only stored:   ", stored, expected);
  add("only captured: ", expected, stored);
  return out;
}

inline std::multiset<Row> snapshot_rows(SQLite::Database& db, std::int64_t snapshot_id) {
  SQLite::Statement q(db,
                      "SELECT proto, state, local_addr, coalesce(local_port, -1), coalesce(remote_addr, ''), "
                      "coalesce(remote_port, -1), inode, CASE WHEN owner_carried = 1 THEN 0 ELSE coalesce(pid, 0) END "
                      "FROM v_snapshot_sockets "
                      "WHERE snapshot_id = ?");
  q.bind(1, snapshot_id);
  std::multiset<Row> rows;
  while (q.executeStep()) {
    rows.insert({q.getColumn(0).getString(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                 q.getColumn(3).getInt(), q.getColumn(4).getString(), q.getColumn(5).getInt(),
                 q.getColumn(6).getInt64(), q.getColumn(7).getInt64()});
  }
  return rows;
}

inline std::multiset<Row> capture_rows(const Capture& c) {
  std::multiset<Row> rows;
  for (const auto& s : c.sockets) {
    const bool unix_socket = s.proto == Proto::unix_domain;
    rows.insert({std::string(model::name(s.proto)), std::string(model::name(s.state)), s.local_addr,
                 unix_socket ? -1 : s.local_port, unix_socket ? "" : s.remote_addr, unix_socket ? -1 : s.remote_port,
                 static_cast<std::int64_t>(s.inode), s.pid});
  }
  return rows;
}

inline std::int64_t scalar(SQLite::Database& db, const std::string& sql) {
  return db.execAndGet(sql).getInt64();
}

// Every row a query returns, each as its columns' texts joined by '|', for comparing two databases.
inline std::vector<std::string> dump_rows(SQLite::Database& db, const std::string& sql) {
  std::vector<std::string> rows;
  SQLite::Statement q(db, sql);
  while (q.executeStep()) {
    std::string row;
    for (int i = 0; i < q.getColumnCount(); ++i) {
      row += q.getColumn(i).getString() + "|";
    }
    rows.push_back(row);
  }
  return rows;
}

// Writes samples/history-busy/NAME for each name, as copied trees of `host` at their capture times.
enum class Writers { one, one_per_snapshot };

inline std::vector<std::pair<std::int64_t, Capture>> write_sample_history(SQLite::Database& db,
                                                                          const std::vector<std::string>& names,
                                                                          const std::string& host) {
  store::SnapshotWriter writer(db);
  std::vector<std::pair<std::int64_t, Capture>> written;
  for (const auto& name : names) {
    const auto sample = test::samples_dir() / "history-busy" / name;
    capture::CaptureOptions options;
    options.proc_root = sample / "proc";
    options.live = false;
    options.host = host;
    options.at_ms = model::parse_time_ms(test::read_text(sample / "captured_at").substr(0, 24));
    if (!options.at_ms) {
      throw std::runtime_error("bad captured_at in " + sample.string());
    }
    auto cap = capture::take(options);
    const auto stats = writer.write(cap);
    written.emplace_back(stats.snapshot_id, std::move(cap));
  }
  return written;
}

class Store : public testing::Test {
 protected:
  SQLite::Database db{":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE};
  void SetUp() override {
    db.exec("PRAGMA foreign_keys = ON");
    store::initialize(db);
  }
};

}  // namespace sockhist::test
