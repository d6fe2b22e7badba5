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

using model::EndAggregate;
using model::HeardEnds;

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
  // It reads the listener's queue itself first, so every announcement the kernel had queued by
  // the call is in this take or an earlier one. The kernel queues them from a work queue, within
  // a few ms of the end: one may still come after the snapshot that no longer saw its socket, and
  // the writer joins it to the spans that snapshot closed.
  HeardEnds take(std::uint64_t inode, std::int64_t now_ms);

  // One line per namespace that could not be listened in, and why; emptied as it is read.
  std::vector<std::string> take_problems();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace sockhist::capture
