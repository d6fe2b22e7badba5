// The connection log's ears: the kernel's socket-destroy announcements heard in every network
// namespace a looping collector captures, by a thread of their own that stamps each with the time
// it was read, held until the next snapshot takes them. Only the collector links it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "sockhist/model.hpp"

namespace sockhist::capture {

// Ends heard beyond the per-connection budget, summed per second, local port, remote address, final
// state, protocol and family. Byte sums are of what tcp_info said; ends whose bytes_sent the kernel
// did not give (before 4.19) are counted apart.
struct EndAggregate {
  std::string remote_addr;
  std::int64_t second_ms = 0;  // the start of the second (epoch ms) in which they were read
  std::uint64_t count = 0;
  std::uint64_t bytes_acked = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t without_bytes_sent = 0;  // ends in `count` whose bytes_sent is unknown
  std::uint64_t total_retrans = 0;
  int family = 0;
  std::uint16_t local_port = 0;
  model::Proto proto = model::Proto::tcp;
  model::SockState state = model::SockState::close;

  bool operator==(const EndAggregate&) const = default;
};

// What was heard in one namespace between two takes. Every announcement read is in exactly one of
// ends, an aggregate's count, or over_bound: heard == ends.size() + sum of counts + over_bound.
struct HeardEnds {
  std::vector<model::SocketEnd> ends;    // the first `budget` read, whole, in the order they were read
  std::vector<EndAggregate> aggregates;  // the rest, in the order their keys first appeared
  std::int64_t since_ms = 0;             // listening since (the previous take, or when it began)
  std::size_t heard = 0;                 // announcements read and decoded
  std::size_t overruns = 0;              // times the receive buffer overflowed: announcements lost, how many unknown
  std::size_t malformed = 0;             // messages that could not be decoded
  std::size_t over_bound = 0;            // read but neither kept nor aggregated: more aggregate keys than allowed
  bool listening = false;                // false: nothing was heard because nobody listened (see problems())
};

// One namespace to listen in: the file that names it (/proc/PID/ns/net, /run/netns/NAME) and its
// inode, by which takes find it. An empty path is the collector's own namespace.
struct ListenTarget {
  std::filesystem::path path;
  std::uint64_t inode = 0;
};

class ConnectionLog {
 public:
  // Per namespace between two takes: `budget` ends kept whole (about 0.47 KB each, measured in
  // bench/connections), the rest summed into at most `aggregate_bound` aggregates; beyond that
  // they are counted in over_bound and dropped, so a storm cannot take the collector's memory.
  explicit ConnectionLog(std::size_t budget = 100'000, std::size_t aggregate_bound = 100'000);
  ~ConnectionLog();
  ConnectionLog(const ConnectionLog&) = delete;
  ConnectionLog& operator=(const ConnectionLog&) = delete;

  // Listens in exactly these namespaces from now on: starts listening in new ones (entering each
  // in a helper thread), stops in those no longer named. A namespace that cannot be listened in is
  // named in problems() and taken as not listening; the others go on.
  void watch(const std::vector<ListenTarget>& targets);

  // Takes what was heard in the namespace of `inode` since the previous take, and starts afresh.
  HeardEnds take(std::uint64_t inode, std::int64_t now_ms);

  // One line per namespace that could not be listened in, and why; emptied as it is read.
  std::vector<std::string> take_problems();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace sockhist::capture
