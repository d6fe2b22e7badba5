// sockhist ship while the collector writes the file it reads: in a network namespace of its own,
// the real collector loops every second over a churning population (connections opened and closed
// client-first into TIME_WAIT, every tenth server end held in CLOSE_WAIT for 3 s), and
// `sockhist ship` pushes the same file to a ClickHouse server of the test's own about once a second.
// The collector keeps 10 ends a snapshot whole and sums the rest, so the connection log ships both.
// After every push the store's snapshots are the file's first ones, each once, and no span is
// there twice; once the collector has stopped and a last push is made, every central view equals
// the file's, row for row. Then that file, with its connection log, is shipped again into fresh
// stores, each push killed half-way through one of its INSERTs and run again: what the kill left is
// hidden, then removed, and every view is exact.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "central_views.hpp"
#include "clickhouse.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

using Clock = std::chrono::steady_clock;

// Connections opened and closed as fast as a small service churns, until stopped.
class Churn {
 public:
  Churn() : m_listener(listen_tcp(4)), m_thread([this] { loop(); }) {}
  ~Churn() { stop(); }
  Churn(const Churn&) = delete;
  Churn& operator=(const Churn&) = delete;
  void stop() {
    m_stop = true;
    if (m_thread.joinable()) {
      m_thread.join();
    }
  }
  int made() const { return m_made; }

 private:
  void loop() {
    std::deque<std::pair<Clock::time_point, Fd>> held;  // server ends in CLOSE_WAIT, and until when
    while (!m_stop) {
      Pair pair = connect_pair(4, m_listener);
      if (m_made % 10 == 9) {
        held.emplace_back(Clock::now() + std::chrono::seconds(3), make_close_wait(std::move(pair)));
      } else {
        make_time_wait(std::move(pair));
      }
      ++m_made;
      while (!held.empty() && held.front().first < Clock::now()) {
        held.pop_front();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  Fd m_listener;
  std::atomic<bool> m_stop{false};
  std::atomic<int> m_made{0};
  std::thread m_thread;
};

TEST(ShipLive, AFileShippedWhileTheCollectorWritesItIsAPrefixAtEveryPushAndExactAtTheEnd) {
  if (const auto why = ClickHouseServer::missing()) {
    GTEST_SKIP() << *why;
  }
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root; CI runs it): " << why;
  }
  const auto dir = scratch_dir("ship-live");
  ClickHouseServer server(dir / "clickhouse");  // in the namespace too: its sockets are part of the history
  const std::string db = (dir / "live.db").string();
  central::Endpoint endpoint;
  endpoint.url = server.url();
  endpoint.database = "live";
  central::Server store(endpoint);
  const auto central = [&](const std::string& sql) { return store.select(sql); };
  const char* const list = "SELECT snapshot_id, time_ms FROM v_snapshots ORDER BY snapshot_id";

  // A small budget, so that the connection log sums some of the churn's ends too.
  LoopingCollector collector(db, {"--host", "live1", "--connection-budget", "10"});
  Churn churn;
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::size_t pushes = 0, growing = 0, shipped = 0;
  for (; pushes < 10; ++pushes) {
    const auto r = run(SOCKHIST_ANALYZER_BIN,
                       {"ship", "--db", db, "--to", server.url(), "--database", "live", "--round", "2", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto mine = central(list);
    const auto theirs = sqlite_rows(db, list);  // read after the push: the file only grew since
    ASSERT_LE(mine.size(), theirs.size());
    EXPECT_EQ(mine, Rows(theirs.begin(), theirs.begin() + static_cast<std::ptrdiff_t>(mine.size())))
        << "push " << pushes << ": the store's snapshots are not the file's first ones";
    const auto spans = central("SELECT count(), uniqExact(span_id) FROM v_spans");
    EXPECT_EQ(spans.at(0).at(0), spans.at(0).at(1)) << "push " << pushes << ": a span twice";
    growing += mine.size() > shipped;
    shipped = mine.size();
    std::this_thread::sleep_for(std::chrono::milliseconds(900));
  }
  churn.stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  collector.stop();
  const auto r =
      run(SOCKHIST_ANALYZER_BIN, {"ship", "--db", db, "--to", server.url(), "--database", "live", "--format", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto snapshots = expect_same_views(central, db, "live1", false);
  EXPECT_GE(snapshots, 12U);
  EXPECT_GE(growing, 8U) << "most pushes should have found new snapshots to send";
  EXPECT_GT(churn.made(), 200);
  const auto tw = central("SELECT count() FROM v_time_wait_entries");
  EXPECT_GT(std::stoll(tw.at(0).at(0)), 150) << "the churn's TIME_WAIT entries are not in the store";
  const auto ends = central("SELECT count() FROM v_connections"),
             summed = central("SELECT count(), sum(count) FROM v_connection_aggregates");
  EXPECT_GT(std::stoll(ends.at(0).at(0)), 50) << "the connection log's ends are not in the store";
  EXPECT_GT(std::stoll(summed.at(0).at(0)), 0) << "no aggregate beyond the budget of 10 ends a snapshot";
  std::cout << fmt::format(
      "[ figures ] {} pushes while writing ({} found new snapshots), {} connections churned; "
      "equal at the end: {} snapshots, {} TIME_WAIT entries, {} connection ends, {} aggregates "
      "summing {} ends\n",
      pushes, growing, churn.made(), snapshots, tw.at(0).at(0), ends.at(0).at(0), summed.at(0).at(0),
      summed.at(0).at(1));

  // Kills half-way through each INSERT of the first rounds (the server keeps a body cut at a row
  // as far as it got): the connection log's tables and the diagnostics among them.
  std::map<std::string, int> hidden;  // rows a kill left in a table, unseen through its view
  int points = 0;
  for (int k = 1; k <= 14; ++k) {
    const auto database = fmt::format("killed_{}", k);
    ::setenv("SOCKHIST_TEST_SHIP_DIE_AT", fmt::format("{}.5", k).c_str(), 1);
    const auto killed =
        run(SOCKHIST_ANALYZER_BIN, {"ship", "--db", db, "--to", server.url(), "--database", database, "--round", "3"});
    ::unsetenv("SOCKHIST_TEST_SHIP_DIE_AT");
    if (killed.exit_code == 0) {
      break;
    }
    ASSERT_EQ(killed.exit_code, 86) << k << ": " << killed.err;
    ++points;
    central::Endpoint e = endpoint;
    e.database = database;
    central::Server killed_store(e);
    for (const auto& [table, view] :
         std::vector<std::pair<std::string, std::string>>{{"connection_logs", "v_connection_logs"},
                                                          {"connection_ends", "v_connections"},
                                                          {"connection_aggregates", "v_connection_aggregates"},
                                                          {"diagnostics", "v_diagnostics"}}) {
      const auto n =
          killed_store.select(fmt::format("SELECT (SELECT count() FROM {}) - (SELECT count() FROM {})", table, view));
      hidden[table] += std::stoi(n.at(0).at(0)) > 0;
    }
    const auto again = run(SOCKHIST_ANALYZER_BIN,
                           {"ship", "--db", db, "--to", server.url(), "--database", database, "--round", "3", "-q"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(expect_same_views([&](const std::string& sql) { return killed_store.select(sql); }, db, "live1", false),
              snapshots)
        << "after a kill half-way through INSERT " << k;
  }
  EXPECT_EQ(points, 14);
  for (const auto& table : {"connection_logs", "connection_ends", "connection_aggregates"}) {
    EXPECT_GT(hidden[table], 0) << "no kill left rows of " << table << " behind to hide and remove";
  }
  std::cout << fmt::format(
      "[ figures ] {} kills half-way through an INSERT, each retried to an exact copy; kills "
      "that left rows behind: {} connection_logs, {} connection_ends, {} "
      "connection_aggregates, {} diagnostics\n",
      points, hidden["connection_logs"], hidden["connection_ends"], hidden["connection_aggregates"],
      hidden["diagnostics"]);
}

}  // namespace
