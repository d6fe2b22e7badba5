// What a live capture does to each socket as it reads it, and the thread its owner scan runs on
// meanwhile. Private to collector/ (capture.cpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "sockhist/capture.hpp"

namespace sockhist::capture {

// What happens to each socket as a live capture reads it: its uid and inode are noted and, once
// the owner scan is done, its owner attached and the sieve (if any) asked whether the snapshot
// keeps it. Runs over each receive buffer of a netlink dump, or over a /proc table once read, so
// that a sieved socket is never held for long.
class SocketFilter {
 public:
  // keep_inodes: note every socket inode for an owner tracker's next snapshot.
  explicit SocketFilter(bool keep_inodes) : m_keep_inodes(keep_inodes) {}

  // From now on, each socket gets its owner from the scan's map and meets `sieve` (the namespace
  // read next; none when null), which learns the scan's processes first.
  void compare_with(const OwnerMap& owners, model::SocketSieve* sieve) {
    m_owners = &owners;
    m_sieve = sieve;
    if (sieve != nullptr) {
      sieve->know_owners(owners.processes);
    }
  }

  // The owners and sieve come later (the owner scan runs and the store reads what it holds open
  // meanwhile): until ready() says they are there (asked after each read), `read_ahead` sockets
  // wait, or the table ends (end_table), sockets are only noted and held; then arm() (which waits
  // for them and calls compare_with) runs and the held sockets are attached and sieved with the
  // rest. Held sockets never outlive their table, so that a dump failing part-way withdraws them
  // with it, and the sieve's verdicts on them fall in their table's window.
  void compare_later(std::function<bool()> ready, std::function<void()> arm, std::size_t read_ahead) {
    m_ready = std::move(ready);
    m_arm = std::move(arm);
    m_read_ahead = read_ahead;
    m_held_from.reset();
  }

  // Arms the filter if compare_later's arm has not run yet (the reading ended first), and
  // attaches and sieves what it held.
  void arm_now(std::vector<model::Socket>& out) {
    if (!m_arm) {
      return;
    }
    std::exchange(m_arm, {})();
    m_ready = {};
    if (m_held_from) {
      attach_and_sieve(out, *std::exchange(m_held_from, std::nullopt));
    }
  }

  // Notes, attaches and sieves out[first..], keeping what stays in order (once armed).
  void operator()(std::vector<model::Socket>& out, std::size_t first) {
    note(out, first);
    if (m_arm) {
      if (!m_held_from) {
        m_held_from = first;
      }
      if (m_ready() || out.size() - *m_held_from >= m_read_ahead) {
        arm_now(out);
      }
      return;
    }
    attach_and_sieve(out, first);
  }

  // Notes each socket's uid and inode (every socket read, whatever the sieve decides).
  void note(const std::vector<model::Socket>& out, std::size_t first) {
    for (std::size_t i = first; i < out.size(); ++i) {
      m_uids.insert(out[i].uid);
      if (m_keep_inodes && out[i].inode != 0) {
        m_inodes.push_back(out[i].inode);
      }
    }
  }

  // Gives out[first..] their owners (once the scan's map is in use) and keeps what the sieve keeps.
  void attach_and_sieve(std::vector<model::Socket>& out, std::size_t first) {
    std::size_t kept = first;
    for (std::size_t i = first; i < out.size(); ++i) {
      model::Socket& s = out[i];
      if (s.inode != 0 && m_owners != nullptr) {
        s.pid = m_owners->owner_of_inode.find(s.inode).value_or(0);
      }
      if (m_sieve != nullptr && !m_sieve->keep(s)) {
        continue;
      }
      if (kept != i) {
        out[kept] = std::move(s);
      }
      ++kept;
    }
    out.resize(kept);
  }

  // A table that may be withdrawn (its netlink dump failing part-way) begins, ends (what it held
  // is then sieved, once the owners and sieve are there), or is withdrawn (with what it held).
  void begin_table() {
    m_inodes_at_table = m_inodes.size();
    if (m_sieve != nullptr) {
      m_sieve->begin_table();
    }
  }
  void end_table(std::vector<model::Socket>& out) {
    if (m_held_from) {
      arm_now(out);
    }
  }
  void withdraw_table() {
    m_inodes.resize(m_inodes_at_table);
    m_held_from.reset();
    if (m_sieve != nullptr) {
      m_sieve->withdraw_table();
    }
  }

  // The uids of the sockets read since the last call (those sieved out included).
  std::unordered_set<std::uint32_t> take_uids() { return std::exchange(m_uids, {}); }
  std::vector<std::uint64_t>& inodes() { return m_inodes; }

 private:
  bool m_keep_inodes;
  std::function<bool()> m_ready;  // compare_later's
  std::function<void()> m_arm;
  std::size_t m_read_ahead = 0;
  std::optional<std::size_t> m_held_from;  // the first socket held for the arming
  const OwnerMap* m_owners = nullptr;
  model::SocketSieve* m_sieve = nullptr;
  std::unordered_set<std::uint32_t> m_uids;
  std::vector<std::uint64_t> m_inodes;  // every socket inode, for the tracker's next snapshot
  std::size_t m_inodes_at_table = 0;
};

// Runs a function on its own thread and joins it however the caller's scope is left.
class Background {
 public:
  template <class F>
  explicit Background(F work)
      : m_thread([this, work = std::move(work)]() mutable {
          try {
            work();
          } catch (...) {
            m_failure = std::current_exception();
          }
          m_done.store(true, std::memory_order_release);
        }) {}
  ~Background() { join(); }
  // Whether the work has ended (finish() then does not wait).
  bool done() const { return m_done.load(std::memory_order_acquire); }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  // Waits for it; rethrows what it threw.
  void finish() {
    join();
    if (m_failure) {
      std::rethrow_exception(std::exchange(m_failure, nullptr));
    }
  }

 private:
  void join() {
    if (m_thread.joinable()) {
      m_thread.join();
    }
  }
  std::exception_ptr m_failure;
  std::atomic<bool> m_done{false};
  std::thread m_thread;  // last: started once the members it uses are made
};

}  // namespace sockhist::capture
