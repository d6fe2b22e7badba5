// A 4-tuple of the TIME_WAIT reader (time_wait_read.cpp) as a hash key. Private to analyzer/queries.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sockhist::query::detail {

// A 4-tuple as plain words, hashed without reading text: the local address's addr_id, and the
// remote address's text itself when it fits in 16 bytes (every IPv4 address and short IPv6 ones),
// its 16 bytes for a longer IPv6 address, or else a number given to that text.
struct TupleKey {
  std::int64_t local_addr_id = 0;
  std::int64_t ports = 0;  // local << 32 | remote
  std::uint64_t remote[2] = {0, 0};
  std::uint64_t form = 0;  // 0 text, 1 IPv6 bytes, 2 numbered text
  bool operator==(const TupleKey& o) const {
    return local_addr_id == o.local_addr_id && ports == o.ports && remote[0] == o.remote[0] &&
           remote[1] == o.remote[1] && form == o.form;
  }
};

struct TupleHash {
  std::size_t operator()(const TupleKey& k) const noexcept {
    std::uint64_t h = static_cast<std::uint64_t>(k.local_addr_id) * 0x9E3779B97F4A7C15ULL;
    for (const std::uint64_t w : {static_cast<std::uint64_t>(k.ports), k.remote[0], k.remote[1], k.form}) {
      h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
      h ^= h >> 29;
    }
    return static_cast<std::size_t>(h);
  }
};

}  // namespace sockhist::query::detail
