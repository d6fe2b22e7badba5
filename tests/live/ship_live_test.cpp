// sockhist ship while the collector writes the file it reads: in a network namespace of its own,
// the real collector loops every second over a churning population (connections opened and closed
// client-first into TIME_WAIT, every tenth server end held in CLOSE_WAIT for 3 s), and
// `sockhist ship` pushes the same file to a ClickHouse server of the test's own about once a second.
// After every push the store's snapshots are the file's first ones, each once, and no span is
// there twice; once the collector has stopped and a last push is made, every central view equals
// the file's, row for row.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
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

  LoopingCollector collector(db, {"--host", "live1"});
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
  std::cout << fmt::format(
      "[ figures ] {} pushes while writing ({} found new snapshots), {} connections churned, {} "
      "snapshots and {} TIME_WAIT entries equal at the end\n",
      pushes, growing, churn.made(), snapshots, tw.at(0).at(0));
}

}  // namespace
