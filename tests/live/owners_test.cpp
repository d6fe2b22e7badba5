// The owner scan on this process's real sockets: a looping collector's tracker re-resolves only fd
// tables that changed, and falls back to a full scan whenever it could have missed something.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>

#include "sockets.hpp"
#include "sockhist/capture.hpp"

using namespace sockhist;
using test::Fd;

namespace {

model::Socket socket_with_inode(std::uint64_t inode) {
  model::Socket s;
  s.inode = inode;
  return s;
}

std::int32_t owner(const capture::OwnerMap& map, std::uint64_t inode) {
  return map.owner_of_inode.find(inode).value_or(0);
}

}  // namespace

TEST(OwnerScan, OneShotFindsThisProcessAndDescribesIt) {
  Fd listener = test::listen_tcp(4);
  const auto map = capture::scan_owners(proc::ProcRoot("/proc"), capture::Cmdlines::store);
  EXPECT_EQ(owner(map, test::inode_of(listener)), ::getpid());
  const auto me = std::find_if(map.processes.begin(), map.processes.end(),
                               [](const model::Process& p) { return p.pid == ::getpid(); });
  ASSERT_NE(me, map.processes.end());
  EXPECT_NE(me->cmdline.value_or("").find("owners_test"), std::string::npos);
  EXPECT_GT(me->start_ticks, 0U);
  EXPECT_EQ(me->uid, ::geteuid());
}

namespace {

// A child process holding a listener and 50 established pairs; on each byte written to it, it
// opens one more UDP socket. It reports every socket inode it holds through a pipe.
class Holder {
 public:
  Holder() {
    int down[2];
    int up[2];
    if (::pipe(down) != 0 || ::pipe(up) != 0) {
      throw std::runtime_error("pipe");
    }
    m_pid = ::fork();
    if (m_pid == 0) {
      ::close(down[1]);
      ::close(up[0]);
      std::vector<Fd> held;
      held.push_back(test::listen_tcp(4));
      for (int i = 0; i < 50; ++i) {
        auto pair = test::connect_pair(4, held.front());
        held.push_back(std::move(pair.client));
        held.push_back(std::move(pair.server));
      }
      const auto report = [&](const Fd& fd) {
        const std::uint64_t inode = test::inode_of(fd);
        [[maybe_unused]] auto n = ::write(up[1], &inode, sizeof(inode));
      };
      for (const auto& fd : held) {
        report(fd);
      }
      char byte = 0;
      while (::read(down[0], &byte, 1) == 1) {
        if (byte == 'r') {
          held.back().reset();  // the lowest free fd number is the one just closed
          held.back() = test::udp_bound(4);
        } else {
          held.push_back(test::udp_bound(4));
        }
        report(held.back());
      }
      ::_exit(0);
    }
    ::close(down[0]);
    ::close(up[1]);
    m_down = down[1];
    m_up = up[0];
    for (int i = 0; i < 101; ++i) {
      inodes.push_back(next_inode());
    }
  }
  ~Holder() {
    ::close(m_down);
    ::close(m_up);
    ::waitpid(m_pid, nullptr, 0);
  }
  std::uint64_t add_socket() {
    const char byte = 1;
    [[maybe_unused]] auto n = ::write(m_down, &byte, 1);
    inodes.push_back(next_inode());
    return inodes.back();
  }
  // Closes the newest socket and opens another at the same fd number.
  std::uint64_t replace_socket() {
    const char byte = 'r';
    [[maybe_unused]] auto n = ::write(m_down, &byte, 1);
    inodes.back() = next_inode();
    return inodes.back();
  }
  pid_t pid() const { return m_pid; }
  std::vector<model::Socket> sockets() const {
    std::vector<model::Socket> out;
    for (const auto inode : inodes) {
      out.push_back(socket_with_inode(inode));
    }
    return out;
  }
  std::vector<std::uint64_t> inodes;

 private:
  std::uint64_t next_inode() {
    std::uint64_t inode = 0;
    if (::read(m_up, &inode, sizeof(inode)) != sizeof(inode)) {
      throw std::runtime_error("holder died");
    }
    return inode;
  }
  pid_t m_pid = 0;
  int m_down = -1;
  int m_up = -1;
};

}  // namespace

TEST(OwnerScan, TrackerResolvesOnlyChangedFdTables) {
  Holder holder;
  auto sockets = holder.sockets();
  capture::OwnerTracker tracker(capture::Cmdlines::omit, 100);
  const proc::ProcRoot root("/proc");
  const auto first = tracker.scan(root, {&sockets});
  EXPECT_TRUE(tracker.last_was_full());
  const auto resolved_full = tracker.last_resolved();
  EXPECT_GE(resolved_full, 101U);  // at least the holder's 101 sockets
  for (const auto inode : holder.inodes) {
    EXPECT_EQ(owner(first, inode), holder.pid());
  }
  const auto second = tracker.scan(root, {&sockets});
  EXPECT_FALSE(tracker.last_was_full());
  EXPECT_LT(tracker.last_resolved(), 100U);  // the holder's fd table did not change
  for (const auto inode : holder.inodes) {   // other processes may come and go meanwhile
    EXPECT_EQ(owner(second, inode), holder.pid());
  }

  // A new socket adds an fd number to the holder's table: it is re-resolved, the socket owned.
  const auto added = holder.add_socket();
  sockets = holder.sockets();
  const auto third = tracker.scan(root, {&sockets});
  EXPECT_FALSE(tracker.last_was_full());
  EXPECT_GE(tracker.last_resolved(), 102U);
  EXPECT_EQ(owner(third, added), holder.pid());
}

TEST(OwnerScan, ReusedFdNumberForcesAFullScan) {
  Holder holder;
  holder.add_socket();
  auto sockets = holder.sockets();
  capture::OwnerTracker tracker(capture::Cmdlines::omit, 100);
  const proc::ProcRoot root("/proc");
  tracker.scan(root, {&sockets});
  tracker.scan(root, {&sockets});
  ASSERT_FALSE(tracker.last_was_full());
  // Another socket behind the same fd number: the listing looks unchanged, the new inode has no
  // owner after the incremental pass, so the tracker must look at everything again.
  const auto replaced = holder.replace_socket();
  sockets = holder.sockets();
  const auto map = tracker.scan(root, {&sockets});
  EXPECT_TRUE(tracker.last_was_full());
  EXPECT_EQ(owner(map, replaced), holder.pid());
}

// The scan runs before (or beside) the reading of the sockets: a socket that appears after its
// process's table was read is found by listing the tables again, and only the changed one is read,
// in a collector that takes one snapshot (its first scan full) as in a looping one.
TEST(OwnerScan, ASocketMadeAfterItsTableWasReadIsFoundByListingAgain) {
  for (const bool one_shot : {true, false}) {
    Holder holder;
    capture::OwnerTracker tracker(capture::Cmdlines::omit, 100);
    if (one_shot) {
      tracker.keep_nothing();
    }
    const proc::ProcRoot root("/proc");
    auto sockets = holder.sockets();
    if (!one_shot) {
      tracker.scan(root, {&sockets});  // a loop's earlier snapshot
    }
    const auto first = tracker.scan_tables(root);
    const auto first_resolved = tracker.last_resolved();
    const auto added = holder.add_socket();  // made while the sockets are being read
    sockets = holder.sockets();
    EXPECT_EQ(owner(first, added), 0) << "not in the table read before it existed";
    std::vector<std::uint64_t> inodes(holder.inodes.begin(), holder.inodes.end());
    const auto unexplained = [&](const capture::OwnerMap& map) {
      return !map.owner_of_inode.contains(added) && tracker.is_new(added);
    };
    const auto better = tracker.settle(root, first, inodes, unexplained);
    ASSERT_TRUE(better.has_value()) << (one_shot ? "one shot" : "loop");
    EXPECT_EQ(owner(*better, added), holder.pid());
    // Listed again, and the holder's changed table read (its 102 links), not every table.
    EXPECT_GE(tracker.last_resolved(), first_resolved + 102U);
    EXPECT_FALSE(tracker.last_was_full()) << (one_shot ? "one shot" : "loop");
    // Nothing new without an owner: the first map stands.
    EXPECT_FALSE(tracker.settle(root, *better, inodes, unexplained).has_value());
  }
}

TEST(OwnerScan, TheLowestPidOwnsASharedSocket) {
  const capture::InodeOwners owners({{7, 300}, {5, 40}, {7, 12}, {9, 5}, {7, 55}});
  EXPECT_EQ(owners.find(7), 12);
  EXPECT_EQ(owners.find(5), 40);
  EXPECT_EQ(owners.find(9), 5);
  EXPECT_EQ(owners.find(6), std::nullopt);
  EXPECT_EQ(owners.size(), 3U);
}

TEST(OwnerScan, FullScanEveryNthTime) {
  capture::OwnerTracker tracker(capture::Cmdlines::omit, 3);
  const proc::ProcRoot root("/proc");
  std::vector<bool> full;
  for (int i = 0; i < 7; ++i) {
    tracker.scan(root, {});
    full.push_back(tracker.last_was_full());
  }
  EXPECT_EQ(full, (std::vector<bool>{true, false, false, true, false, false, true}));
}
