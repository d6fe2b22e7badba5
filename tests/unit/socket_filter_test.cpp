// The capture's SocketFilter (collector/socket_filter.hpp) when its owners and sieve come later
// (a /proc capture reads while the store reads its open spans back): the sockets read before are
// held, then given their owners and sieved with the rest, whether the arming comes at a read, at
// the read-ahead bound, or after the last read. The timing is the test's, so that every path is
// taken, not only the one a fast or slow machine happens to take.
#include <gtest/gtest.h>

#include <set>

#include "socket_filter.hpp"

using namespace sockhist;
using model::Socket;

namespace {

// Leaves out every socket with an even inode that arrives with its owner (pid = inode + 1000), and
// remembers what it was asked.
class EvenSieve final : public model::SocketSieve {
 public:
  void know_owners(const std::vector<model::Process>& processes) override { known = processes.size(); }
  bool keep(const Socket& s) override {
    asked.insert(s.inode);
    if (s.pid != static_cast<std::int32_t>(s.inode) + 1000) {
      ++unowned;
    }
    return s.inode % 2 == 1 || s.pid == 0;
  }
  void begin_table() override {}
  void withdraw_table() override {}
  std::size_t left_out() const override { return 0; }

  std::size_t known = 0;
  std::size_t unowned = 0;
  std::multiset<std::uint64_t> asked;
};

capture::OwnerMap owners_of(std::uint64_t count) {
  std::vector<std::pair<std::uint64_t, std::int32_t>> pairs;
  capture::OwnerMap map;
  for (std::uint64_t inode = 1; inode <= count; ++inode) {
    pairs.emplace_back(inode, static_cast<std::int32_t>(inode) + 1000);
    map.processes.push_back({static_cast<std::int32_t>(inode) + 1000, 0, "p", std::nullopt, 0, std::nullopt});
  }
  map.owner_of_inode = capture::InodeOwners(std::move(pairs));
  return map;
}

struct Outcome {
  std::vector<std::uint64_t> kept;  // inodes, in order
  std::size_t held_at_most = 0;     // sockets read but not yet sieved, at the most
  std::size_t armed_after = 0;      // reads done when the arming ran (0: after the last)
  std::size_t uids = 0;
};

// `reads` reads of `per_read` sockets (inodes 1, 2, ...); the store is ready after `ready_after`
// reads; the filter may hold `read_ahead` sockets.
Outcome read_with(std::size_t reads, std::size_t per_read, std::size_t ready_after, std::size_t read_ahead,
                  EvenSieve& sieve) {
  const auto owners = owners_of(reads * per_read);
  capture::SocketFilter filter(false);
  Outcome outcome;
  std::size_t done = 0;
  bool armed = false;
  bool reading = false;
  filter.compare_later([&] { return done >= ready_after; },
                       [&] {
                         armed = true;
                         outcome.armed_after = reading ? done : 0;
                         filter.compare_with(owners, &sieve);
                       },
                       read_ahead);
  std::vector<Socket> out;
  std::uint64_t inode = 0;
  for (std::size_t r = 0; r < reads; ++r) {
    const std::size_t first = out.size();
    for (std::size_t i = 0; i < per_read; ++i) {
      Socket s;
      s.inode = ++inode;
      s.uid = static_cast<std::uint32_t>(inode % 7);
      out.push_back(s);
    }
    ++done;
    reading = true;
    filter(out, first);
    reading = false;
    if (!armed) {
      outcome.held_at_most = std::max(outcome.held_at_most, out.size());
    }
  }
  filter.arm_now(out);
  for (const auto& s : out) {
    EXPECT_EQ(s.pid, static_cast<std::int32_t>(s.inode) + 1000) << "inode " << s.inode << " kept without its owner";
    outcome.kept.push_back(s.inode);
  }
  outcome.uids = filter.take_uids().size();
  return outcome;
}

std::vector<std::uint64_t> odd_up_to(std::uint64_t n) {
  std::vector<std::uint64_t> odd;
  for (std::uint64_t i = 1; i <= n; i += 2) {
    odd.push_back(i);
  }
  return odd;
}

}  // namespace

TEST(SocketFilterLater, TheSocketsReadBeforeTheArmingAreOwnedAndSievedWithTheRest) {
  struct Case {
    std::size_t ready_after, read_ahead, armed_after, held_at_most;
  };
  // Ready at the third read; at the bound (25 sockets, during the third read) before the store is;
  // never before the last read; ready at once; no read-ahead (an owner scan runs): at the first.
  for (const auto& c :
       {Case{3, 1000, 3, 20}, Case{100, 25, 3, 20}, Case{100, 1000, 0, 100}, Case{0, 1000, 1, 0}, Case{100, 0, 1, 0}}) {
    EvenSieve sieve;
    const auto outcome = read_with(10, 10, c.ready_after, c.read_ahead, sieve);
    SCOPED_TRACE(testing::Message() << "ready after " << c.ready_after << ", read-ahead " << c.read_ahead);
    EXPECT_EQ(outcome.armed_after, c.armed_after);
    EXPECT_EQ(outcome.held_at_most, c.held_at_most);
    EXPECT_EQ(outcome.kept, odd_up_to(100));
    EXPECT_EQ(sieve.known, 100U) << "the sieve learns the owners before its first keep()";
    EXPECT_EQ(sieve.unowned, 0U) << "every socket meets the sieve with its owner";
    EXPECT_EQ(sieve.asked.size(), 100U);
    EXPECT_EQ(std::set<std::uint64_t>(sieve.asked.begin(), sieve.asked.end()).size(), 100U) << "each asked once";
    EXPECT_EQ(outcome.uids, 7U) << "every socket's uid is noted, those left out included";
  }
}

TEST(SocketFilterLater, WithoutASieveNothingIsHeldBackOrDropped) {
  capture::SocketFilter filter(true);
  bool armed = false;
  filter.compare_later([] { return true; }, [&] { armed = true; }, 1000);
  std::vector<Socket> out(5);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i].inode = i + 1;
  }
  filter(out, 0);
  EXPECT_TRUE(armed);
  EXPECT_EQ(out.size(), 5U);
  EXPECT_EQ(filter.inodes().size(), 5U);
  filter.arm_now(out);  // a second arming does nothing
  EXPECT_EQ(out.size(), 5U);
}

// A netlink dump may fail part-way and its table be read again from /proc: what the filter held of
// it goes with it, and nothing held outlives its table (the sieve's verdicts stay in its window).
TEST(SocketFilterLater, HeldSocketsEndWithTheirTableOrGoWithItsWithdrawal) {
  EvenSieve sieve;
  const auto owners = owners_of(60);
  capture::SocketFilter filter(true);
  bool armed = false;
  filter.compare_later([] { return false; },
                       [&] {
                         armed = true;
                         filter.compare_with(owners, &sieve);
                       },
                       1000);
  std::vector<Socket> out;
  const auto read = [&](std::uint64_t from, std::uint64_t to) {
    const std::size_t first = out.size();
    for (std::uint64_t inode = from; inode <= to; ++inode) {
      Socket s;
      s.inode = inode;
      out.push_back(s);
    }
    filter(out, first);
  };
  // The first table's dump fails after two buffers: the dump removes what it appended.
  filter.begin_table();
  read(1, 10);
  read(11, 20);
  out.clear();
  filter.withdraw_table();
  EXPECT_FALSE(armed);
  EXPECT_TRUE(filter.inodes().empty());
  filter.end_table(out);  // nothing held: nothing to wait for
  EXPECT_FALSE(armed);
  // Read again (from /proc), then the next table.
  filter.begin_table();
  read(1, 10);
  read(11, 20);
  EXPECT_EQ(out.size(), 20U) << "held until the table ends";
  filter.end_table(out);
  EXPECT_TRUE(armed) << "the table's end waits for the owners and sieve";
  EXPECT_EQ(out.size(), 10U);
  filter.begin_table();
  read(21, 40);
  EXPECT_EQ(out.size(), 20U) << "sieved as it is read once armed";
  filter.end_table(out);
  filter.arm_now(out);
  EXPECT_EQ(sieve.asked.size(), 40U);
  EXPECT_EQ(std::set<std::uint64_t>(sieve.asked.begin(), sieve.asked.end()).size(), 40U) << "each asked once";
  EXPECT_EQ(sieve.unowned, 0U);
  EXPECT_EQ(filter.inodes().size(), 40U);
}
