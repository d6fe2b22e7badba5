// The read layer's NearSearch (analyzer/queries/read.hpp, private to the query library, tested here
// directly): searched outwards from its previous answer, it answers as std::lower_bound and
// at_or_before do, for any order of questions, on sorted values with repeats and gaps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "read.hpp"

using sockhist::query::detail::NearSearch;

TEST(NearSearch, AnswersAsABinarySearchWhateverTheOrderOfQuestions) {
  std::mt19937_64 rng(17);
  for (const std::size_t size : {0, 1, 2, 3, 7, 64, 1000}) {
    std::vector<std::int64_t> values;
    std::int64_t v = 0;
    for (std::size_t i = 0; i < size; ++i) {
      v += static_cast<std::int64_t>(rng() % 4);  // repeats (0) and gaps
      values.push_back(v);
    }
    NearSearch near(values);
    std::int64_t x = -3;
    for (int q = 0; q < 5000; ++q) {
      // Mostly a small step from the last question, either way; sometimes a jump anywhere.
      x = q % 50 == 0 ? static_cast<std::int64_t>(rng() % (size * 4 + 8)) - 4
                      : x + static_cast<std::int64_t>(rng() % 7) - 3;
      const auto want = static_cast<std::size_t>(std::lower_bound(values.begin(), values.end(), x) - values.begin());
      ASSERT_EQ(near.lower(x), want) << "size " << size << ", value " << x << ", question " << q;
      ASSERT_EQ(near.at_or_before(x), sockhist::query::detail::at_or_before(values, x))
          << "size " << size << ", id " << x;
    }
  }
}
