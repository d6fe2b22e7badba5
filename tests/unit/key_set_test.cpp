// proc::KeySet, with which the /proc parsers and the netlink dumps drop the rows a socket table
// repeats: it must answer as std::unordered_set does, for any keys, through its growth.
#include <gtest/gtest.h>

#include <random>
#include <unordered_set>

#include "sockhist/proc.hpp"

using sockhist::proc::KeySet;

TEST(KeySet, AnswersAsAHashSetDoesThroughItsGrowth) {
  std::mt19937_64 random(7);
  KeySet keys;
  std::unordered_set<std::uint64_t> reference;
  for (int i = 0; i < 200'000; ++i) {
    std::uint64_t key = random();
    switch (i % 5) {
      case 0:  // a repeat of an earlier key
        key = i / 7;
        break;
      case 1:  // keys that share their low bits (one probe sequence)
        key = (key << 20) | 5;
        break;
      case 2:
        key = static_cast<std::uint64_t>(i % 3);  // 0, 1 and 2 again and again; 0 marks an empty slot
        break;
      default:
        break;
    }
    ASSERT_EQ(keys.insert(key), reference.insert(key).second) << "key " << key << " at " << i;
  }
  EXPECT_GT(reference.size(), 100'000U);
}
