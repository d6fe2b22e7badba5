// A set of 64-bit keys for the collector's hot paths (private to collector/): a netlink dump drops
// the replies it repeats under churn by key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sockhist::netlink {

// 64-bit keys in a table probed linearly, at most three quarters full (1 MiB for a dump of 75,000
// sockets, where a std::unordered_set of them took 3).
class KeySet {
 public:
  // False when `key` was there already.
  bool insert(std::uint64_t key) {
    if (key == 0) {  // the empty slot's mark, kept aside
      return !std::exchange(m_zero, true);
    }
    if ((m_size + 1) * 4 > m_slots.size() * 3) {
      grow();
    }
    if (!place(m_slots, key)) {
      return false;
    }
    ++m_size;
    return true;
  }

 private:
  static bool place(std::vector<std::uint64_t>& slots, std::uint64_t key) {
    const std::size_t mask = slots.size() - 1;
    for (std::size_t slot = (key ^ (key >> 31)) & mask;; slot = (slot + 1) & mask) {
      if (slots[slot] == key) {
        return false;
      }
      if (slots[slot] == 0) {
        slots[slot] = key;
        return true;
      }
    }
  }
  void grow() {
    std::vector<std::uint64_t> larger(m_slots.empty() ? 1024 : m_slots.size() * 2, 0);
    for (const std::uint64_t key : m_slots) {
      if (key != 0) {
        place(larger, key);
      }
    }
    m_slots = std::move(larger);
  }

  std::vector<std::uint64_t> m_slots;
  std::size_t m_size = 0;
  bool m_zero = false;
};

}  // namespace sockhist::netlink
