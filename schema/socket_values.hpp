// A socket's changing values as the store keeps them: Recv-Q, Send-Q, timer, retransmits, probes
// and backlog limit, with a running timer held as the moment it fires so that it counts down
// between two stored values (schema/005_socket_values.sql). Shared by the writer, which stores a
// row when a socket's values differ from what the stored ones project, and by merge, which
// replays them. Private to schema/.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

#include "sockhist/model.hpp"

namespace sockhist::store {

// How far the kernel's timer may stray from the projection of the last stored value before a new
// value is stored: the jitter of one socket's place in a capture, well under a second.
inline constexpr std::int64_t k_timer_tolerance_ms = 250;

struct SocketValues {
  std::int64_t timer_expires_ms = 0;  // when the timer fires (epoch ms); 0 while it is off
  std::uint32_t tx_queue = 0;
  std::uint32_t rx_queue = 0;
  std::uint32_t retransmits = 0;
  std::uint32_t probes = 0;
  std::uint32_t timer_off_ms = 0;  // a span's first timer_ms with the timer off (kept as stored)
  std::optional<std::uint32_t> backlog;
  std::uint8_t timer = 0;

  // The values a capture taken at time_ms saw.
  static SocketValues of(const model::Socket& s, std::int64_t time_ms) {
    SocketValues v;
    v.tx_queue = s.tx_queue;
    v.rx_queue = s.rx_queue;
    v.timer = static_cast<std::uint8_t>(s.timer);
    if (s.timer == model::TimerKind::off) {
      v.timer_off_ms = s.timer_ms;
    } else {
      v.timer_expires_ms = time_ms + static_cast<std::int64_t>(s.timer_ms);
    }
    v.retransmits = s.retransmits;
    v.probes = s.probes;
    v.backlog = s.backlog;
    return v;
  }

  // The timer's time remaining at time_ms.
  std::int64_t timer_ms_at(std::int64_t time_ms) const {
    return timer == 0 ? std::int64_t{timer_off_ms} : std::max<std::int64_t>(0, timer_expires_ms - time_ms);
  }

  // Whether a socket seen at time_ms shows values these do not: a new row is due.
  bool differ(const SocketValues& seen, std::int64_t time_ms) const {
    if (tx_queue != seen.tx_queue || rx_queue != seen.rx_queue || timer != seen.timer ||
        retransmits != seen.retransmits || probes != seen.probes || backlog != seen.backlog) {
      return true;
    }
    if (timer == 0) {
      return false;  // an idle timer has nothing to count down (the kernel reports 0)
    }
    const std::int64_t drift = timer_ms_at(time_ms) - seen.timer_ms_at(time_ms);
    return drift > k_timer_tolerance_ms || drift < -k_timer_tolerance_ms;
  }
};

// A looping collector keeps one per open span (100,000 on a busy host): kept narrow.
static_assert(sizeof(SocketValues) <= 40);

}  // namespace sockhist::store
