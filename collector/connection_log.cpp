// One reader thread polls every namespace's DestroyListener and an eventfd that wakes it when the
// set of namespaces changes or the log closes. Each listener is read only by that thread; what it
// read is handed over under the mutex, which takes() share.
#include "sockhist/connection_log.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "sockhist/capture.hpp"
#include "sockhist/error.hpp"
#include "sockhist/netlink.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::capture {

namespace {

// What an aggregate sums over: second, local port, remote address, state, protocol, family.
using AggregateKey = std::tuple<std::int64_t, std::uint16_t, std::string, model::SockState, model::Proto, int>;

// One namespace's listener and what it heard since the last take.
struct Ear {
  std::unique_ptr<netlink::DestroyListener> listener;
  // Held across one read of the listener and the hand-over of what it read (taken before
  // Impl::mutex), so that a take that reads the socket itself also has what the reader thread was
  // reading at that moment.
  std::mutex reading;
  HeardEnds heard;                                   // guarded by Impl::mutex
  std::map<AggregateKey, std::size_t> aggregate_of;  // guarded by Impl::mutex: index in heard.aggregates
  bool failed = false;                               // guarded by Impl::mutex: the listener broke; not polled
};

void add_to(EndAggregate& aggregate, const model::SocketEnd& end) {
  ++aggregate.count;
  if (end.tcp) {
    aggregate.bytes_acked += end.tcp->bytes_acked;
    aggregate.bytes_received += end.tcp->bytes_received;
    aggregate.total_retrans += end.tcp->total_retrans;
    if (end.tcp->bytes_sent) {
      aggregate.bytes_sent += *end.tcp->bytes_sent;
    } else {
      ++aggregate.without_bytes_sent;
    }
  }
}

// A listener opened inside the namespace `path` names (the calling thread's own when empty).
std::unique_ptr<netlink::DestroyListener> open_listener(const std::filesystem::path& path) {
  if (path.empty()) {
    return std::make_unique<netlink::DestroyListener>();
  }
  std::unique_ptr<netlink::DestroyListener> listener;
  run_in_network_namespace(path, [&] { listener = std::make_unique<netlink::DestroyListener>(); });
  return listener;
}

std::string reason_of(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace

struct ConnectionLog::Impl {
  std::size_t budget = 0;
  std::size_t aggregate_bound = 0;
  std::mutex mutex;
  std::map<std::uint64_t, std::shared_ptr<Ear>> ears;  // by namespace inode
  std::vector<std::string> problems;
  int wake = -1;
  std::atomic<bool> closing{false};
  std::thread reader;

  void poke() const {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wake, &one, sizeof(one));
  }

  void read_loop();
  // Reads what `ear`'s listener has queued and files it; hear_locked with ear.reading held.
  void hear(Ear& ear);
  void hear_locked(Ear& ear);
};

void ConnectionLog::Impl::hear(Ear& ear) {
  const std::lock_guard reading(ear.reading);
  hear_locked(ear);
}

void ConnectionLog::Impl::hear_locked(Ear& ear) {
  {
    const std::lock_guard lock(mutex);
    if (ear.failed) {
      return;
    }
  }
  std::vector<model::SocketEnd> fresh;
  netlink::DrainStats stats;
  std::string broke;
  try {
    stats = ear.listener->drain(fresh);
  } catch (const std::exception& e) {
    broke = e.what();
  }
  const std::lock_guard lock(mutex);
  auto& heard = ear.heard;
  heard.heard += fresh.size();
  for (auto& end : fresh) {
    if (heard.ends.size() < budget) {
      heard.ends.push_back(std::move(end));
      continue;
    }
    AggregateKey key{end.time_ms / 1000 * 1000, end.local_port, end.remote_addr, end.state, end.proto, end.family};
    auto it = ear.aggregate_of.find(key);
    if (it == ear.aggregate_of.end()) {
      if (heard.aggregates.size() >= aggregate_bound) {
        ++heard.over_bound;
        continue;
      }
      EndAggregate aggregate;
      aggregate.second_ms = std::get<0>(key);
      aggregate.local_port = end.local_port;
      aggregate.remote_addr = end.remote_addr;
      aggregate.state = end.state;
      aggregate.proto = end.proto;
      aggregate.family = end.family;
      heard.aggregates.push_back(std::move(aggregate));
      it = ear.aggregate_of.emplace(std::move(key), heard.aggregates.size() - 1).first;
    }
    add_to(heard.aggregates[it->second], end);
  }
  heard.overruns += stats.overruns;
  heard.malformed += stats.malformed;
  if (!broke.empty()) {
    ear.failed = true;
    problems.push_back(fmt::format("stopped hearing socket ends: {}", broke));
  }
}

void ConnectionLog::Impl::read_loop() {
  while (!closing.load()) {
    std::vector<std::shared_ptr<Ear>> current;
    std::vector<pollfd> fds{{wake, POLLIN, 0}};
    {
      const std::lock_guard lock(mutex);
      for (const auto& [inode, ear] : ears) {
        if (!ear->failed) {
          current.push_back(ear);
          fds.push_back({ear->listener->fd(), POLLIN, 0});
        }
      }
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      // Nothing more can be heard: say so, and let every take report that nobody listens.
      const std::lock_guard lock(mutex);
      problems.push_back(fmt::format("stopped hearing socket ends: poll: {}", std::strerror(errno)));
      for (auto& [inode, ear] : ears) {
        ear->failed = true;
      }
      return;
    }
    if ((fds[0].revents & POLLIN) != 0) {
      std::uint64_t count = 0;
      [[maybe_unused]] const auto got = ::read(wake, &count, sizeof(count));
      continue;  // the set changed, or the log closes: poll again with the new set
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents != 0) {
        hear(*current[i - 1]);
      }
    }
  }
}

ConnectionLog::ConnectionLog(std::size_t budget, std::size_t aggregate_bound) : m_impl(std::make_unique<Impl>()) {
  m_impl->budget = budget;
  m_impl->aggregate_bound = aggregate_bound;
  m_impl->wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m_impl->wake < 0) {
    throw Error(Exit::failure, fmt::format("eventfd: {}", std::strerror(errno)));
  }
  m_impl->reader = std::thread([impl = m_impl.get()] { impl->read_loop(); });
}

ConnectionLog::~ConnectionLog() {
  m_impl->closing.store(true);
  m_impl->poke();
  m_impl->reader.join();
  ::close(m_impl->wake);
}

void ConnectionLog::watch(const std::vector<ListenTarget>& targets) {
  auto& impl = *m_impl;
  std::map<std::uint64_t, std::shared_ptr<Ear>> opened;
  std::vector<std::string> problems;
  const auto now = model::now_ms();
  for (const auto& target : targets) {
    {
      const std::lock_guard lock(impl.mutex);
      if (impl.ears.contains(target.inode)) {
        continue;
      }
    }
    auto ear = std::make_shared<Ear>();
    ear->heard.since_ms = now;
    try {
      ear->listener = open_listener(target.path);
      opened.emplace(target.inode, std::move(ear));
    } catch (...) {
      problems.push_back(fmt::format("{}: cannot hear socket ends: {}",
                                     target.path.empty() ? "own namespace" : target.path.string(),
                                     reason_of(std::current_exception())));
    }
  }
  {
    const std::lock_guard lock(impl.mutex);
    std::erase_if(impl.ears, [&](const auto& entry) {
      return std::none_of(targets.begin(), targets.end(),
                          [&](const ListenTarget& target) { return target.inode == entry.first; });
    });
    impl.ears.merge(opened);
    impl.problems.insert(impl.problems.end(), problems.begin(), problems.end());
  }
  impl.poke();
}

HeardEnds ConnectionLog::take(std::uint64_t inode, std::int64_t now_ms) {
  std::shared_ptr<Ear> ear;
  {
    const std::lock_guard lock(m_impl->mutex);
    if (const auto it = m_impl->ears.find(inode); it != m_impl->ears.end()) {
      ear = it->second;
    }
  }
  if (!ear) {
    HeardEnds none;
    none.since_ms = now_ms;
    none.until_ms = now_ms;
    none.budget = m_impl->budget;
    return none;
  }
  // The kernel queues an announcement as it destroys the socket: reading what is queued now makes
  // this take hold every end that came before it, whatever the reader thread has got to.
  const std::lock_guard reading(ear->reading);
  m_impl->hear_locked(*ear);
  const std::lock_guard lock(m_impl->mutex);
  HeardEnds taken = std::move(ear->heard);
  taken.listening = !ear->failed;  // a listener that broke meanwhile heard only part
  // Ends are stamped as they are read, which the read above may have done after now_ms.
  taken.until_ms = std::max(now_ms, taken.ends.empty() ? now_ms : taken.ends.back().time_ms);
  taken.budget = m_impl->budget;
  ear->heard = HeardEnds{};
  ear->heard.since_ms = taken.until_ms;
  ear->aggregate_of.clear();
  return taken;
}

std::vector<std::string> ConnectionLog::take_problems() {
  const std::lock_guard lock(m_impl->mutex);
  return std::exchange(m_impl->problems, {});
}

}  // namespace sockhist::capture
