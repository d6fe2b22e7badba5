// One live capture: host facts of this machine, each namespace's sockets through sock_diag netlink
// (falling back to /proc text per table), counters and settings as /proc text, and the owners.
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>

#include "socket_filter.hpp"
#include "sockhist/capture.hpp"
#include "sockhist/error.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::capture {

namespace {

using proc::Loader;

// How many sockets a capture without an owner scan holds unsieved while the store reads its open
// spans back: about 160 bytes each, so at most 8 MB. At 100,000 sockets the store takes as long as
// 60,000 rows of /proc take to read; bench/README.md has the time and memory of other bounds.
constexpr std::size_t k_read_ahead = 49152;

// What is the same for every namespace of the live host: identity, boot, kernel, clock.
void read_host_facts(model::Capture& cap, const ProcRoot& root, const CaptureOptions& options) {
  cap.time_ms = options.at_ms.value_or(model::now_ms());
  proc::read_kernel_facts(cap, root);
  timespec ts{};
  if (::clock_gettime(CLOCK_BOOTTIME, &ts) == 0) {
    cap.uptime_ms = static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
  }
  std::array<char, 256> name{};
  if (cap.hostname.empty() && ::gethostname(name.data(), name.size() - 1) == 0) {
    cap.hostname = name.data();
  }
  if (auto id = proc::read_trimmed(ProcRoot("/etc"), "machine-id")) {
    cap.machine_id = std::move(*id);
  }
  cap.host = options.host.value_or(cap.hostname.empty() ? std::string("unknown") : cap.hostname);
}

// A netlink socket for the calling thread's namespace, unless /proc is demanded or none can be had
// (then a diagnostic, or an error when netlink was demanded).
netlink::DiagSocket* open_diag(const CaptureOptions& options, std::optional<netlink::DiagSocket>& own, Loader& reader) {
  if (options.source == Source::proc) {
    return nullptr;
  }
  try {
    return options.diag != nullptr ? options.diag : &own.emplace();
  } catch (const netlink::Unavailable& e) {
    if (options.source == Source::netlink) {
      throw Error(Exit::failure, fmt::format("--source netlink: {}", e.what()));
    }
    reader.note("netlink", 0, fmt::format("{}; read /proc instead", e.what()));
    return nullptr;
  }
}

// One table through netlink; false when netlink cannot dump it (then /proc is read instead).
bool dump_table(model::Capture& cap, Loader& reader, netlink::DiagSocket& diag, const proc::SocketTable& table,
                const CaptureOptions& options, SocketFilter& filter) {
  filter.begin_table();
  try {
    const netlink::AfterBatch after_batch = [&filter](std::vector<model::Socket>& out, std::size_t first) {
      filter(out, first);
    };
    const auto dump = table.proto == model::Proto::unix_domain
                          ? diag.dump_unix(cap.sockets, after_batch)
                          : diag.dump_inet(table.family, table.proto, cap.sockets, after_batch);
    if (dump.malformed > 0) {
      cap.skipped_lines += dump.malformed;
      reader.note(fmt::format("netlink {}", table.file), 0,
                  fmt::format("{} replies could not be decoded", dump.malformed));
    }
    if (dump.duplicates > 0) {
      reader.note(fmt::format("netlink {}", table.file), 0, fmt::format("{} duplicate rows dropped", dump.duplicates));
    }
    return true;
  } catch (const netlink::Unavailable& e) {
    filter.withdraw_table();  // the dump removed what it had appended; the sieve forgets it too
    if (options.source == Source::netlink) {
      throw Error(Exit::failure, fmt::format("--source netlink: {}", e.what()));
    }
    reader.note(fmt::format("netlink {}", table.file), 0, fmt::format("{}; read /proc instead", e.what()));
    return false;
  }
}

// The sockets, counters and settings of one network namespace: `net` is a root whose net/ files
// show it, `sys` one whose sys/net files do (the calling thread's namespace for the live /proc).
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // asm-generic/socket.h, Linux 5.14
#endif

// The kernel's cookie of the calling thread's network namespace: unique for the boot, never
// reused, unlike the namespace's inode. None before Linux 5.14 (ENOPROTOOPT).
std::optional<std::uint64_t> current_netns_cookie() {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);  // created in the thread's namespace
  if (fd < 0) {
    return std::nullopt;
  }
  std::uint64_t cookie = 0;
  socklen_t size = sizeof cookie;
  const bool known = ::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &size) == 0 && size == sizeof cookie;
  ::close(fd);
  return known ? std::optional(cookie) : std::nullopt;
}

// Reads a namespace's sockets, counters and settings, each socket table through `filter`.
void read_namespace(model::Capture& cap, Loader& reader, const ProcRoot& net, const ProcRoot& sys,
                    netlink::DiagSocket* diag, const CaptureOptions& options, SocketFilter& filter) {
  const auto tables_started = std::chrono::steady_clock::now();
  proc::reserve_sockets(cap, net);
  bool any_table = false;
  bool used_netlink = false;
  bool used_proc = false;
  for (const auto& table : proc::k_socket_tables) {
    if (diag != nullptr && dump_table(cap, reader, *diag, table, options, filter)) {
      filter.end_table(cap.sockets);
      any_table = used_netlink = true;
      continue;
    }
    filter.begin_table();
    const bool present = proc::read_socket_table(
        cap, reader, net, table, [&filter](std::vector<model::Socket>& out, std::size_t first) { filter(out, first); });
    filter.end_table(cap.sockets);
    any_table |= present;
    used_proc |= present;
  }
  cap.source = used_netlink && used_proc ? "netlink+proc" : used_netlink ? "netlink" : "proc";
  cap.sockets_ms = model::ms_since(tables_started);
  proc::require_a_table(any_table, net);
  proc::read_counters(cap, reader, net);
  proc::read_settings(cap, sys);
}

// Keeps the processes that own one of the capture's sockets, giving each socket its owner from
// `owners` first when `attach`: a copied tree's sockets, and a live capture's when they were read
// before its scan ended or the tables were read again (else its filter gave them as it read).
void keep_owners(model::Capture& cap, Loader& reader, const OwnerMap& owners, const std::string& root, bool attach) {
  cap.owners = owners.completeness;
  std::unordered_set<std::int32_t> used;
  for (auto& socket : cap.sockets) {
    if (socket.inode == 0) {
      continue;
    }
    if (attach) {
      socket.pid = owners.owner_of_inode.find(socket.inode).value_or(0);
    }
    if (socket.pid != 0) {
      used.insert(socket.pid);
    }
  }
  for (const auto& process : owners.processes) {
    if (used.contains(process.pid)) {
      cap.processes.push_back(process);
    }
  }
  if (owners.unreadable_processes > 0) {
    reader.note(root, 0,
                fmt::format("{} processes' fds unreadable: their sockets have no owner (needs CAP_DAC_READ_SEARCH "
                            "and CAP_SYS_PTRACE)",
                            owners.unreadable_processes));
  }
}

// The names of the uids of every socket the capture read (those a sieve left out included).
void attach_users(model::Capture& cap, const std::unordered_set<std::uint32_t>& uids) {
  for (const auto uid : uids) {
    if (auto user = user_name(uid)) {
      cap.users.emplace_back(uid, std::move(*user));
    }
  }
  std::sort(cap.users.begin(), cap.users.end());
}

std::uint64_t namespace_inode(const std::filesystem::path& file) {
  struct stat st {};
  return ::stat(file.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

// The host's own namespace is PID 1's. Where PID 1 hides it (a hardened init, a sandbox), the
// collector's own namespace stands in.
std::uint64_t initial_namespace_inode(const std::filesystem::path& proc) {
  const auto inode = namespace_inode(proc / "1/ns/net");
  return inode != 0 ? inode : namespace_inode(proc / "self/ns/net");
}

// The owners of a copied tree's sockets.
void scan_and_attach(model::Capture& cap, const ProcRoot& root, const CaptureOptions& options) {
  const auto owners_started = std::chrono::steady_clock::now();
  const auto owners = scan_owners(root, options.cmdlines);
  Loader reader(cap);
  keep_owners(cap, reader, owners, root.path().string(), true);
  cap.owners_ms = model::ms_since(owners_started);
  cap.links_resolved = owners.links_resolved;
}

// A live capture's owner scan, done before its sockets are read so that each is read with its
// owner (a sieve compares owners): one full scan, or the tracker's.
OwnerMap scan_live_owners(const ProcRoot& root, const CaptureOptions& options) {
  if (!options.owners) {
    OwnerMap none;
    none.completeness = model::OwnerScan::skipped;
    return none;
  }
  return options.owner_tracker != nullptr ? options.owner_tracker->scan_tables(root)
                                          : scan_owners(root, options.cmdlines);
}

// Once every namespace was read: the tracker's verdict (the tables read again when a new socket
// found no owner), then each capture keeps the processes its sockets name. `attached`: the filter
// gave each socket its owner as it was read; else they are given now. owners_ms: the scan so far.
void settle_owners(std::vector<model::Capture*> captures, OwnerMap owners, SocketFilter& filter, bool attached,
                   const ProcRoot& root, const CaptureOptions& options, std::int64_t owners_ms) {
  if (!options.owners) {
    return;
  }
  bool attach = !attached;
  if (auto* tracker = options.owner_tracker) {
    const auto started = std::chrono::steady_clock::now();
    const auto unexplained = [&](const OwnerMap& map) {
      for (const auto* cap : captures) {
        for (const auto& s : cap->sockets) {
          if (s.inode != 0 && !map.owner_of_inode.contains(s.inode) && tracker->is_new(s.inode)) {
            return true;
          }
        }
      }
      return false;
    };
    if (auto better = tracker->settle(root, owners, std::move(filter.inodes()), unexplained)) {
      // Sockets a sieve left out keep the first scan's owners: each matched its span by it.
      owners = std::move(*better);
      attach = true;
    }
    owners_ms += model::ms_since(started);
  }
  std::map<std::uint32_t, std::optional<std::string>> users;  // looked up now the sockets are read
  for (auto* cap : captures) {
    Loader reader(*cap);
    keep_owners(*cap, reader, owners, root.path().string(), attach);
    for (auto& process : cap->processes) {
      auto [it, added] = users.try_emplace(process.uid);
      if (added) {
        it->second = user_name(process.uid);
      }
      process.user = it->second;
    }
    cap->owners_ms = owners_ms;
    cap->links_resolved =
        options.owner_tracker != nullptr ? options.owner_tracker->last_resolved() : owners.links_resolved;
  }
}

}  // namespace

model::Capture take(const CaptureOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  if (!options.live) {
    auto cap = proc::read_tree({options.proc_root, options.host, options.at_ms, std::nullopt});
    if (options.owners) {
      scan_and_attach(cap, ProcRoot(options.proc_root), options);
    }
    cap.capture_ms = model::ms_since(started);
    return cap;
  }
  proc::require_directory(options.proc_root);
  const ProcRoot root(options.proc_root);
  model::Capture cap;
  Loader reader(cap);
  read_host_facts(cap, root, options);
  cap.netns_inode = proc::netns_inode_of(root);
  cap.netns_initial = cap.netns_inode == initial_namespace_inode(root.path());
  // The cookie is the calling thread's namespace's: the one read only when reading the live /proc.
  if (root.path() == "/proc") {
    cap.netns_cookie = current_netns_cookie();
  }
  // The fd tables are kernel work of their own: scanned while the store reads what it holds open.
  OwnerMap owners;
  std::int64_t owners_ms = 0;
  Background scan([&] {
    const auto owners_started = std::chrono::steady_clock::now();
    owners = scan_live_owners(root, options);
    owners_ms = model::ms_since(owners_started);
  });
  SocketFilter filter(options.owners && options.owner_tracker != nullptr);
  std::optional<netlink::DiagSocket> own_diag;
  auto* diag = open_diag(options, own_diag, reader);
  // The sockets are read while the store reads back what it holds open: without an owner scan, up
  // to k_read_ahead of a table are held until it is done, and every later read is compared with
  // the open spans as it comes. With one, the reading waits at its first read for the scan (which
  // takes longer than the store, and holds its map of every fd meanwhile: at 100,000 sockets,
  // holding both would pass 32 MB). Without a sieve (a first snapshot) nothing waits: the owners
  // are given once the scan is done.
  std::shared_ptr<model::SocketSieve> sieve;
  const model::Capture facts = cap;
  Background store_read([&] { sieve = options.sieve_for ? options.sieve_for(facts) : nullptr; });
  filter.compare_later([&] { return store_read.done() && (sieve == nullptr || scan.done()); },
                       [&] {
                         store_read.finish();
                         if (sieve) {
                           scan.finish();
                           filter.compare_with(owners, sieve.get());
                         }
                       },
                       options.owners ? 0 : k_read_ahead);
  read_namespace(cap, reader, root, root, diag, options, filter);
  filter.arm_now(cap.sockets);
  cap.sieve = std::move(sieve);
  scan.finish();
  attach_users(cap, filter.take_uids());
  settle_owners({&cap}, std::move(owners), filter, cap.sieve != nullptr, root, options, owners_ms);
  cap.capture_ms = model::ms_since(started);
  return cap;
}

std::vector<NamespaceTarget> discover_namespaces(const std::filesystem::path& proc,
                                                 const std::filesystem::path& run_netns) {
  std::map<std::uint64_t, NamespaceTarget> by_inode;
  const std::uint64_t initial = initial_namespace_inode(proc);
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator(run_netns, ignored)) {
    const auto inode = namespace_inode(entry.path());
    if (inode != 0) {
      auto& target = by_inode[inode];
      target.path = entry.path();
      target.inode = inode;
      target.name = entry.path().filename().string();
    }
  }
  for (const auto& entry : std::filesystem::directory_iterator(proc, ignored)) {
    const std::string name = entry.path().filename().string();
    std::int32_t pid = 0;
    const auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec != std::errc{} || ptr != name.data() + name.size()) {
      continue;
    }
    const auto file = entry.path() / "ns/net";
    const auto inode = namespace_inode(file);
    if (inode == 0) {
      continue;  // a kernel thread, an exited process, or one we may not look into
    }
    auto& target = by_inode[inode];
    if (target.inode == 0) {
      target.path = file;
      target.inode = inode;
    }
    if (!target.pid || pid < *target.pid) {
      target.pid = pid;
    }
  }
  std::vector<NamespaceTarget> targets;
  for (auto& [inode, target] : by_inode) {
    target.initial = inode == initial;
    targets.push_back(std::move(target));
  }
  std::stable_partition(targets.begin(), targets.end(), [](const auto& t) { return t.initial; });
  return targets;
}

NamespaceTarget resolve_namespace(std::string_view spec, const std::filesystem::path& proc,
                                  const std::filesystem::path& run_netns) {
  return resolve_namespace(spec, discover_namespaces(proc, run_netns), proc, run_netns);
}

NamespaceTarget resolve_namespace(std::string_view spec, const std::vector<NamespaceTarget>& known,
                                  const std::filesystem::path& proc, const std::filesystem::path& run_netns) {
  std::filesystem::path file;
  std::int32_t pid = 0;
  const auto [ptr, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), pid);
  if (!spec.empty() && ec == std::errc{} && ptr == spec.data() + spec.size()) {
    file = proc / std::to_string(pid) / "ns/net";
  } else if (spec.find('/') != std::string_view::npos) {
    file = std::string(spec);
  } else {
    file = run_netns / std::string(spec);
  }
  const auto inode = namespace_inode(file);
  if (inode == 0) {
    throw Error(Exit::usage, fmt::format("--netns {}: no network namespace at {}", spec, file.string()));
  }
  for (const auto& candidate : known) {
    if (candidate.inode == inode) {
      NamespaceTarget target = candidate;
      target.path = file;
      return target;
    }
  }
  NamespaceTarget target;
  target.path = file;
  target.inode = inode;
  return target;
}

void run_in_network_namespace(const std::filesystem::path& path, const std::function<void()>& fn) {
  // setns() moves only the calling thread, so a helper thread enters the namespace, runs fn, ends.
  std::exception_ptr failure;
  std::thread helper([&] {
    try {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        throw Error(Exit::failure,
                    fmt::format("{}: cannot open network namespace: {}", path.string(), std::strerror(errno)));
      }
      const int entered = ::setns(fd, CLONE_NEWNET);
      const int err = errno;
      ::close(fd);
      if (entered != 0) {
        throw Error(Exit::failure, fmt::format("{}: cannot enter network namespace: {} (needs CAP_SYS_ADMIN)",
                                               path.string(), std::strerror(err)));
      }
      fn();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  helper.join();
  if (failure) {
    std::rethrow_exception(failure);
  }
}

std::vector<model::Capture> take_namespaces(const CaptureOptions& options,
                                            const std::vector<NamespaceTarget>& targets) {
  const auto started = std::chrono::steady_clock::now();
  const ProcRoot root("/proc");
  model::Capture host;
  read_host_facts(host, root, options);
  const auto shared_ms = model::ms_since(started);
  // Socket inodes are unique across namespaces: one scan of the fd tables serves them all.
  const auto owners_started = std::chrono::steady_clock::now();
  auto owners = scan_live_owners(root, options);
  const auto owners_ms = model::ms_since(owners_started);
  SocketFilter filter(options.owners && options.owner_tracker != nullptr);
  std::vector<model::Capture> captures;
  captures.reserve(targets.size());
  for (const auto& target : targets) {
    const auto namespace_started = std::chrono::steady_clock::now();
    model::Capture cap = host;
    Loader reader(cap);
    cap.netns_inode = target.inode;
    cap.netns_name = target.name;
    cap.netns_pid = target.pid;
    cap.netns_initial = target.initial;
    // Read inside the namespace (net/ through /proc/thread-self, sys/net through /proc, both then
    // show it), with the namespace's sieve asked for in there too (the cookie is read there).
    run_in_network_namespace(target.path, [&] {
      cap.netns_cookie = current_netns_cookie();
      cap.sieve = options.sieve_for ? options.sieve_for(cap) : nullptr;
      SocketFilter inside_filter = std::move(filter);
      inside_filter.compare_with(owners, cap.sieve.get());
      CaptureOptions inside = options;
      inside.diag = nullptr;  // a netlink socket belongs to the namespace it was opened in
      std::optional<netlink::DiagSocket> diag;
      read_namespace(cap, reader, ProcRoot("/proc/thread-self"), root, open_diag(inside, diag, reader), inside,
                     inside_filter);
      attach_users(cap, inside_filter.take_uids());
      filter = std::move(inside_filter);
    });
    cap.capture_ms = shared_ms + model::ms_since(namespace_started);
    captures.push_back(std::move(cap));
  }
  std::vector<model::Capture*> all;
  for (auto& cap : captures) {
    all.push_back(&cap);
  }
  settle_owners(all, std::move(owners), filter, true, root, options, owners_ms);
  for (auto& cap : captures) {
    cap.capture_ms += cap.owners_ms;
  }
  return captures;
}

}  // namespace sockhist::capture