// The connection log's reader in private network namespaces: every end of every connection heard
// in the namespace it happened in, a burst of thousands without loss, its bound counted, a
// namespace it cannot enter named while the others go on.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "netns.hpp"
#include "sockets.hpp"
#include "sockhist/connection_log.hpp"
#include "sockhist/timeutil.hpp"

using namespace sockhist;
using capture::ConnectionLog;
using capture::ListenTarget;

namespace {

std::uint64_t inode_of_namespace(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error("stat " + path);
  }
  return st.st_ino;
}

// `count` connections to a fresh listener, each carrying a few bytes and closed client first; the
// listener closes last. Ends: two per connection and the listener's.
void connections(int count) {
  test::Fd listener = test::listen_tcp(4);
  for (int i = 0; i < count; ++i) {
    auto pair = test::connect_pair(4, listener);
    char byte = 'x';
    ASSERT_EQ(::write(pair.client.get(), &byte, 1), 1);
    ASSERT_EQ(::read(pair.server.get(), &byte, 1), 1);
    test::make_time_wait(std::move(pair));
  }
}

// Takes from `log` until `want` ends of `inode` were heard or 10 s passed.
capture::HeardEnds gather(ConnectionLog& log, std::uint64_t inode, std::size_t want) {
  capture::HeardEnds all = log.take(inode, model::now_ms());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (all.ends.size() < want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto more = log.take(inode, model::now_ms());
    all.ends.insert(all.ends.end(), more.ends.begin(), more.ends.end());
    all.overruns += more.overruns;
    all.over_bound += more.over_bound;
  }
  return all;
}

// A thread living in a network namespace of its own, running what it is given there.
class NamespaceThread {
 public:
  NamespaceThread() {
    std::promise<void> ready;
    auto started = ready.get_future();
    m_thread = std::thread([this, &ready] {
      std::string why;
      if (::unshare(CLONE_NEWNET) != 0 || !test::bring_up_loopback(why)) {
        ready.set_exception(std::make_exception_ptr(std::runtime_error("private namespace: " + why)));
        return;
      }
      m_path = fmt::format("/proc/self/task/{}/ns/net", ::syscall(SYS_gettid));
      ready.set_value();
      std::unique_lock lock(m_mutex);
      for (;;) {
        m_wake.wait(lock, [this] { return m_stop || m_job; });
        if (m_stop) {
          return;
        }
        m_job();
        m_job = nullptr;
        m_wake.notify_all();
      }
    });
    started.get();
  }
  ~NamespaceThread() {
    {
      const std::lock_guard lock(m_mutex);
      m_stop = true;
    }
    m_wake.notify_all();
    m_thread.join();
  }
  const std::string& path() const { return m_path; }
  void run(std::function<void()> job) {
    std::unique_lock lock(m_mutex);
    m_job = std::move(job);
    m_wake.notify_all();
    m_wake.wait(lock, [this] { return !m_job; });
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_wake;
  std::function<void()> m_job;
  bool m_stop = false;
  std::string m_path;
  std::thread m_thread;
};

}  // namespace

TEST(ConnectionLogLive, EachNamespaceHearsItsOwnEnds) {
  std::string why;
  if (!test::enter_private_netns(why)) {
    GTEST_SKIP() << "needs private network namespaces (root): " << why;
  }
  const auto own = inode_of_namespace("/proc/self/ns/net");
  NamespaceThread other;
  const auto other_inode = inode_of_namespace(other.path());
  ASSERT_NE(own, other_inode);
  ConnectionLog log;
  log.watch({{"", own}, {other.path(), other_inode}});
  EXPECT_TRUE(log.take_problems().empty());
  const auto started = model::now_ms();
  connections(20);
  other.run([] { connections(7); });
  const auto here = gather(log, own, 41);
  const auto there = gather(log, other_inode, 15);
  EXPECT_EQ(here.ends.size(), 41U);
  EXPECT_EQ(there.ends.size(), 15U);
  EXPECT_EQ(here.overruns + there.overruns, 0U);
  EXPECT_TRUE(here.listening && there.listening);
  for (const auto& end : here.ends) {
    EXPECT_GE(end.time_ms, started);
  }
  // A namespace no longer watched is no longer heard, and says so.
  log.watch({{"", own}});
  other.run([] { connections(3); });
  const auto after = log.take(other_inode, model::now_ms());
  EXPECT_FALSE(after.listening);
  EXPECT_TRUE(after.ends.empty());
}

TEST(ConnectionLogLive, ABurstIsHeardWhole) {
  std::string why;
  if (!test::enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root): " << why;
  }
  const auto own = inode_of_namespace("/proc/self/ns/net");
  ConnectionLog log;
  log.watch({{"", own}});
  constexpr int k_connections = 5000;
  const auto started = std::chrono::steady_clock::now();
  connections(k_connections);
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto heard = gather(log, own, 2 * k_connections + 1);
  EXPECT_EQ(heard.ends.size(), 2U * k_connections + 1);
  EXPECT_TRUE(heard.aggregates.empty());
  EXPECT_EQ(heard.overruns, 0U);
  EXPECT_EQ(heard.over_bound, 0U);
  std::cout << k_connections << " connections in " << seconds << " s (" << k_connections / seconds
            << " a second): " << heard.ends.size() << " ends heard, " << heard.overruns << " overruns\n";
}

// Takes from `log` until `want` announcements were heard across the takes (10 s at most). Usually
// the first take, 300 ms after the last close, holds them all; on a loaded machine the reader may
// still be catching up, and the budget and bounds then apply to each take.
std::vector<capture::HeardEnds> takes_until(ConnectionLog& log, std::uint64_t inode, std::size_t want) {
  std::vector<capture::HeardEnds> takes;
  std::size_t heard = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  while (heard < want && std::chrono::steady_clock::now() < deadline) {
    takes.push_back(log.take(inode, model::now_ms()));
    heard += takes.back().heard;
    if (heard < want) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return takes;
}

// Beyond its budget the log sums ends per second, port, peer and state: every end read is kept
// whole, summed, or counted over the bound, and the byte totals survive the summing exactly.
TEST(ConnectionLogLive, BeyondItsBudgetEndsAreSummedAndNoneGoesUnaccounted) {
  std::string why;
  if (!test::enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root): " << why;
  }
  const auto own = inode_of_namespace("/proc/self/ns/net");
  ConnectionLog log(10);
  log.watch({{"", own}, {"/nonexistent/ns/net", 12345}});
  const auto problems = log.take_problems();
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_NE(problems[0].find("/nonexistent/ns/net"), std::string::npos) << problems[0];
  EXPECT_FALSE(log.take(12345, model::now_ms()).listening);
  connections(30);  // each client sends 1 byte: 30 sent, 30 + 30 FINs + 30 FINs received
  std::uint64_t heard = 0, kept = 0, summed = 0, aggregates = 0, over_bound = 0, sent = 0, received = 0;
  for (const auto& take : takes_until(log, own, 61)) {
    heard += take.heard;
    kept += take.ends.size();
    aggregates += take.aggregates.size();
    over_bound += take.over_bound;
    EXPECT_EQ(take.ends.size(), std::min<std::size_t>(take.heard, 10));  // the budget, per take
    for (const auto& end : take.ends) {
      sent += end.tcp->bytes_sent.value_or(0);
      received += end.tcp->bytes_received;
    }
    for (const auto& aggregate : take.aggregates) {
      summed += aggregate.count;
      sent += aggregate.bytes_sent;
      received += aggregate.bytes_received;
      EXPECT_EQ(aggregate.without_bytes_sent, 0U);
      EXPECT_EQ(aggregate.second_ms % 1000, 0);
    }
  }
  EXPECT_EQ(heard, 61U);
  EXPECT_EQ(kept + summed, 61U);
  EXPECT_GT(summed, 0U);
  EXPECT_EQ(over_bound, 0U);
  EXPECT_EQ(sent, 30U);
  EXPECT_EQ(received, 90U);
  // The server's ends share its port and its peer's address: fewer aggregates than ends summed.
  EXPECT_LT(aggregates, summed);
}

TEST(ConnectionLogLive, MoreKeysThanItsBoundAreCountedNotHidden) {
  std::string why;
  if (!test::enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root): " << why;
  }
  const auto own = inode_of_namespace("/proc/self/ns/net");
  ConnectionLog log(0, 2);
  log.watch({{"", own}});
  connections(30);
  std::uint64_t heard = 0, summed = 0, over_bound = 0;
  for (const auto& take : takes_until(log, own, 61)) {
    heard += take.heard;
    over_bound += take.over_bound;
    EXPECT_TRUE(take.ends.empty());
    EXPECT_LE(take.aggregates.size(), 2U);
    for (const auto& aggregate : take.aggregates) {
      summed += aggregate.count;
    }
  }
  EXPECT_GT(over_bound, 0U);
  EXPECT_EQ(heard, 61U);
  EXPECT_EQ(summed + over_bound, heard);
}
