// sockhist fleet trend, close-wait and time-wait against a real ClickHouse (Debian's
// clickhouse-server, started by the test): three hosts' databases recorded by the real collector
// are shipped, and merged into one SQLite file with `sockhist merge`; each fleet question must
// answer exactly as the same question asked of the merged file, host by host: `trend`,
// `close-wait --by process`, and the SQLite views' TIME_WAIT entries and state counts.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "clickhouse.hpp"
#include "histories.hpp"

using namespace sockhist::test;
using nlohmann::json;

namespace {

ClickHouseServer& server() {
  static const auto dir = scratch_dir(fmt::format("clickhouse-{}", ::getpid()));
  static ClickHouseServer s(dir);
  return s;
}

const std::vector<std::pair<std::string, std::string>>& hosts() {
  static const std::vector<std::pair<std::string, std::string>> list{
      {lifecycle_db(), "api1"}, {sample_db(), "web1"}, {web2_db(), "web2"}};
  return list;
}

class Fleet : public testing::Test {
 protected:
  void SetUp() override {
    if (const auto why = ClickHouseServer::missing()) {
      GTEST_SKIP() << *why;
    }
    database_ = testing::UnitTest::GetInstance()->current_test_info()->name();
    merged_ = (scratch() / (database_ + ".db")).string();
    std::filesystem::remove(merged_);
    std::vector<std::string> args{"merge", "-q", merged_};
    for (const auto& [db, host] : hosts()) {
      args.push_back(db);
      const auto r =
          run(SOCKHIST_ANALYZER_BIN, {"ship", "--db", db, "--to", server().url(), "--database", database_, "-q"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const auto r = run(SOCKHIST_ANALYZER_BIN, args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  Result fleet(std::vector<std::string> args) {
    const std::vector<std::string> from{"fleet", "--from", server().url(), "--database", database_};
    args.insert(args.begin(), from.begin(), from.end());
    return run(SOCKHIST_ANALYZER_BIN, args);
  }
  Result local(const std::string& command, const std::string& host, std::vector<std::string> args) {
    args.insert(args.begin(), {command, "--db", merged_, "--host", host});
    return run(SOCKHIST_ANALYZER_BIN, args);
  }
  // The fleet's JSON rows of one host, without the host and namespace columns.
  static std::vector<json> rows_of(const json& doc, const std::string& host) {
    std::vector<json> out;
    for (auto row : doc["rows"]) {
      if (row["host"] == host) {
        row.erase("host");
        row.erase("netns_key");
        out.push_back(std::move(row));
      }
    }
    return out;
  }

  std::string database_, merged_;
};

// The three hosts' snapshots lie between 00:55:57 and 02:02:45 of 2026-11-24.
const std::vector<std::string> k_whole{"--since", "2026-11-24T00:55:00Z", "--until", "2026-11-24T02:03:00Z"};

TEST_F(Fleet, TrendAnswersAsTrendOnMergesOutputForEveryHost) {
  std::size_t buckets = 0, values = 0;
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--bucket", "30s"},
        {"--bucket", "2s"},
        {"--bucket", "15s", "--state", "CLOSE_WAIT,udp:CLOSE,unix:CONNECTED"}}) {
    auto args = k_whole;
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--format", "json"});
    args.insert(args.begin(), "trend");
    const auto mine = fleet(args);
    ASSERT_EQ(mine.exit_code, 0) << mine.err;
    const auto doc = json::parse(mine.out);
    for (const auto& [db, host] : hosts()) {
      args.erase(args.begin());
      const auto theirs = local("trend", host, args);
      args.insert(args.begin(), "trend");
      ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
      const auto expected = json::parse(theirs.out)["rows"];
      const auto got = rows_of(doc, host);
      ASSERT_EQ(got.size(), expected.size()) << host << " " << extra.at(1);
      for (std::size_t i = 0; i < got.size(); ++i) {
        // Every column trend gives, equal; a state another host counted and this one never did:
        // 0 where the bucket had snapshots, empty where it had none.
        for (const auto& [key, value] : got[i].items()) {
          if (expected[i].contains(key)) {
            EXPECT_EQ(value, expected[i][key]) << host << " bucket " << i << " " << key;
          } else {
            EXPECT_EQ(value, got[i]["snapshots"] == 0 ? json() : json(0)) << host << " bucket " << i << " " << key;
          }
        }
        for (const auto& [key, value] : expected[i].items()) {
          EXPECT_TRUE(got[i].contains(key)) << host << " lacks " << key;
          values += !value.is_null() && key != "time" && key != "note" && key != "snapshots";
        }
        ++buckets;
      }
    }
  }
  EXPECT_GT(values, 500U) << "the buckets compared held no value";
  std::cout << fmt::format("[ figures ] fleet trend = trend: {} buckets of 3 hosts, {} values\n", buckets, values);
  // A host that is not in the store is an error naming those that are.
  const auto r = fleet({"trend", "--host", "web9"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--host web9: not in the store (hosts: api1, web1, web2)"), std::string::npos) << r.err;
}

TEST_F(Fleet, CloseWaitAnswersAsCloseWaitByProcessOnMergesOutputForEveryHost) {
  std::size_t owners = 0;
  for (const char* min_age : {"0", "60s"}) {
    auto args = k_whole;
    args.insert(args.end(), {"--min-age", min_age, "--format", "json"});
    auto fleet_args = args;
    fleet_args.insert(fleet_args.begin(), "close-wait");
    const auto mine = fleet(fleet_args);
    const auto doc = json::parse(mine.out);
    int expected_code = 0;
    std::vector<std::string> order;  // hosts as listed
    for (const auto& row : doc["rows"]) {
      if (order.empty() || order.back() != row["host"]) {
        order.push_back(row["host"]);
      }
    }
    for (const auto& [db, host] : hosts()) {
      auto local_args = args;
      local_args.insert(local_args.begin(), {"--by", "process"});
      const auto theirs = local("close-wait", host, local_args);
      ASSERT_LE(theirs.exit_code, 1) << theirs.err;
      expected_code = std::max(expected_code, theirs.exit_code);
      const auto expected = json::parse(theirs.out)["rows"];
      EXPECT_EQ(json(rows_of(doc, host)), expected) << host << " --min-age " << min_age;
      owners += expected.size();
    }
    EXPECT_EQ(mine.exit_code, expected_code) << "exit 1 when any owner is listed, as close-wait";
    // Each host once, the one holding the most CLOSE_WAIT now first.
    EXPECT_EQ(std::set<std::string>(order.begin(), order.end()).size(), order.size());
    std::int64_t previous = INT64_MAX;
    for (const auto& host : order) {
      std::int64_t now = 0;
      for (const auto& row : rows_of(doc, host)) {
        now += row["now"].get<std::int64_t>();
      }
      EXPECT_LE(now, previous) << host;
      previous = now;
    }
  }
  EXPECT_GE(owners, 5U) << "too few owners compared";
  std::cout << fmt::format("[ figures ] fleet close-wait = close-wait --by process: {} owners\n", owners);
}

TEST_F(Fleet, ACloseWaitSocketWhoseOwnerChangedIsOneSocketOfItsNewestOwnerAsInCloseWait) {
  // api1's first eight captures, with the socket 2100/api holds in CLOSE_WAIT from the start
  // (socket:[2000]) handed to 2200/fetcher from the fifth on: two CLOSE_WAIT spans, one socket.
  const auto root = scratch() / "handed-over";
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  const std::string db = (scratch() / "handed-over.db").string();
  std::filesystem::remove(db);
  for (int i = 0; i < 8; ++i) {
    const auto name = fmt::format("{:02d}", i);
    const auto capture = root / name;
    std::filesystem::copy(samples_dir() / "history-lifecycle" / name, capture,
                          std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
    if (i >= 4) {
      ASSERT_EQ(std::filesystem::read_symlink(capture / "proc/2100/fd/4"), "socket:[2000]");
      std::filesystem::remove(capture / "proc/2100/fd/4");
      std::filesystem::create_symlink("socket:[2000]", capture / "proc/2200/fd/99");
    }
    const auto r = run(SOCKHIST_COLLECT_BIN, {"--db", db, "--proc-root", (capture / "proc").string(), "--host", "api9",
                                              "--at", read_text(capture / "captured_at").substr(0, 24)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_EQ(sqlite_rows(db,
                        "SELECT count(*) FROM v_spans a JOIN v_spans b ON b.span_id = a.prev_span_id WHERE "
                        "a.state = 'CLOSE_WAIT' AND b.state = 'CLOSE_WAIT'")
                .at(0)
                .at(0),
            "1")
      << "the handed-over socket is not a chain of two CLOSE_WAIT spans";
  const auto r =
      run(SOCKHIST_ANALYZER_BIN, {"ship", "--db", db, "--to", server().url(), "--database", database_, "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The whole history, and a range that begins after the hand-over (the chain walked back to the
  // span before the range, for when the socket entered CLOSE_WAIT).
  const auto fifth =
      sqlite_rows(db, "SELECT time_iso FROM v_snapshots ORDER BY snapshot_id LIMIT 1 OFFSET 5").at(0).at(0);
  for (const auto& since : {std::string("2026-11-24T01:00:00Z"), fifth}) {
    const std::vector<std::string> range{"--since",   since, "--until",  "2026-11-24T03:00:00Z",
                                         "--min-age", "0",   "--format", "json"};
    auto args = range;
    args.insert(args.begin(), {"close-wait", "--host", "api9"});
    const auto mine = fleet(args);
    ASSERT_EQ(mine.exit_code, 1) << mine.err;
    args = range;
    args.insert(args.begin(), {"close-wait", "--db", db, "--by", "process"});
    const auto theirs = run(SOCKHIST_ANALYZER_BIN, args);
    ASSERT_EQ(theirs.exit_code, 1) << theirs.err;
    const auto expected = json::parse(theirs.out)["rows"];
    EXPECT_EQ(json(rows_of(json::parse(mine.out), "api9")), expected) << "since " << since;
    bool fetcher = false;
    for (const auto& row : expected) {
      fetcher = fetcher || row["program"] == "2200/fetcher";
    }
    EXPECT_TRUE(fetcher) << "2200/fetcher holds the handed-over socket: " << expected.dump();
  }
}

TEST_F(Fleet, TimeWaitAnswersAsTheEntriesAndCountsOfMergesOutput) {
  // Two ranges: the whole history (each host's newest snapshot's entries not sent yet), and one
  // ending at api1's sixth snapshot (settled: its entries are all there).
  const auto sixth =
      sqlite_rows(lifecycle_db(), "SELECT time_iso FROM v_snapshots ORDER BY snapshot_id LIMIT 1 OFFSET 5").at(0).at(0);
  std::size_t compared = 0;
  for (const auto& range : {k_whole, std::vector<std::string>{"--since", "2026-11-24T00:55:00Z", "--until", sixth}}) {
    auto args = std::vector<std::string>{"time-wait"};
    args.insert(args.end(), range.begin(), range.end());
    args.insert(args.end(), {"--format", "json"});
    auto r = fleet(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto by_host = json::parse(r.out)["rows"];
    args.insert(args.end(), {"--by", "remote", "--top", "0"});
    r = fleet(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto by_remote = json::parse(r.out)["rows"];
    // The same question in SQL over the merged file's views: the snapshots of the range after each
    // host's first, less each host's newest (its entries are sent with the next push).
    const auto since = range.at(1), until = range.at(3);
    const std::string in_range = fmt::format(
        "SELECT snapshot_id FROM v_snapshots s WHERE time_iso >= '{0}' AND time_iso <= '{1}' AND snapshot_id > (SELECT "
        "min(snapshot_id) FROM v_snapshots f WHERE f.host = s.host AND f.time_iso >= '{0}' AND f.time_iso <= '{1}') "
        "AND snapshot_id < (SELECT max(snapshot_id) FROM v_snapshots n WHERE n.host = s.host)",
        since, until);
    const auto entries = sqlite_rows(
        merged_, fmt::format("SELECT host, count(*) FROM v_time_wait_entries WHERE snapshot_id IN ({}) GROUP BY host "
                             "ORDER BY host",
                             in_range));
    const auto counts = sqlite_rows(
        merged_, fmt::format("SELECT s.host, s.time_iso, coalesce((SELECT count FROM v_state_counts c WHERE "
                             "c.snapshot_id = s.snapshot_id AND c.proto = 'tcp' AND c.state = 'TIME_WAIT'), 0) FROM "
                             "v_snapshots s WHERE time_iso >= '{}' AND time_iso <= '{}' ORDER BY s.snapshot_id",
                             since, until));
    ASSERT_FALSE(counts.empty());
    for (const auto& row : by_host) {
      const std::string host = row["host"];
      std::int64_t want = 0;
      for (const auto& e : entries) {
        want += e.at(0) == host ? std::stoll(e.at(1)) : 0;
      }
      EXPECT_EQ(row["entries"], want) << host << " until " << until;
      std::int64_t peak = -1, now = 0;
      std::string peak_at;
      for (const auto& c : counts) {
        if (c.at(0) == host) {
          now = std::stoll(c.at(2));
          if (now > peak) {
            peak = now;
            peak_at = c.at(1);
          }
        }
      }
      EXPECT_EQ(row["peak"], peak) << host;
      EXPECT_EQ(row["peak_at"], peak_at) << host;
      EXPECT_EQ(row["now"], now) << host;
      ++compared;
    }
    EXPECT_EQ(by_host.size(), 3U) << "web1 and web2 lie in both ranges, api1 too";
    const auto remotes = sqlite_rows(
        merged_, fmt::format("SELECT remote_addr, count(*), count(DISTINCT host) FROM v_time_wait_entries WHERE "
                             "snapshot_id IN ({}) GROUP BY remote_addr ORDER BY count(*) DESC, remote_addr",
                             in_range));
    ASSERT_EQ(by_remote.size(), remotes.size()) << until;
    std::map<std::string, std::pair<std::int64_t, std::int64_t>> want;
    for (const auto& remote : remotes) {
      want[remote.at(0)] = {std::stoll(remote.at(1)), std::stoll(remote.at(2))};
    }
    for (const auto& row : by_remote) {
      const auto it = want.find(row["remote_addr"]);
      ASSERT_NE(it, want.end()) << row.dump();
      EXPECT_EQ(row["entries"], it->second.first) << row.dump();
      EXPECT_EQ(row["hosts"], it->second.second) << row.dump();
      EXPECT_LE(row["worst_entries"].get<std::int64_t>(), it->second.first);
    }
    EXPECT_GE(by_remote.size(), 3U);
    // Per owner: each entry's TIME_WAIT span's pid and process.
    args.erase(args.end() - 4, args.end());
    args.insert(args.end(), {"--by", "owner", "--top", "0"});
    r = fleet(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::map<std::vector<std::string>, std::int64_t> owners_got, owners_want;
    const auto by_owner = json::parse(r.out);
    for (const auto& row : by_owner["rows"]) {
      owners_got[{row["host"], row["pid"].is_null() ? "\\N" : row["pid"].dump(),
                  row["process"].is_null() ? "\\N" : row["process"].get<std::string>()}] = row["entries"];
    }
    for (const auto& row : sqlite_rows(
             merged_, fmt::format("SELECT e.host, s.pid, s.process, count(*) FROM v_time_wait_entries e JOIN v_spans s "
                                  "USING (span_id) WHERE e.snapshot_id IN ({}) GROUP BY e.host, s.pid, s.process",
                                  in_range))) {
      owners_want[{row.at(0), row.at(1), row.at(2)}] = std::stoll(row.at(3));
    }
    EXPECT_EQ(owners_got, owners_want) << until;
    EXPECT_GE(owners_want.size(), 3U);
  }
  std::cout << fmt::format("[ figures ] fleet time-wait = the merged file's entries and counts: {} host rows\n",
                           compared);
}

}  // namespace
