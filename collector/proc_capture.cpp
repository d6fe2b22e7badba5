// Reading a /proc root: files, process ownership, and one whole capture.
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
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

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/proc.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::proc {

namespace {

std::int64_t elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

// A snapshot keeps at most this many diagnostics; skipped_lines still counts them all.
constexpr std::size_t k_max_diagnostics = 100;

bool read_fd_to_end(int fd, std::string& out) {
  out.clear();
  std::array<char, 65536> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    if (n == 0) {
      return true;
    }
    out.append(buffer.data(), static_cast<std::size_t>(n));
  }
}

std::string trim(std::string_view text) {
  const auto start = text.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) {
    return {};
  }
  const auto end = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(start, end - start + 1));
}

std::optional<std::int64_t> to_int(std::string_view text) {
  const std::string t = trim(text);
  std::int64_t value = 0;
  const auto* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, value);
  if (ec != std::errc{} || ptr == t.data()) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> user_name(std::uint32_t uid) {
  std::array<char, 4096> buffer{};
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    return std::string(found->pw_name);
  }
  return std::nullopt;
}

}  // namespace

ProcRoot::ProcRoot(std::filesystem::path root) : m_root(std::move(root)) {}

std::optional<std::string> ProcRoot::read(std::string_view relative) const {
  const auto path = m_root / relative;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return std::nullopt;
    }
    throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  }
  std::string content;
  const bool ok = read_fd_to_end(fd, content);
  const int err = errno;
  ::close(fd);
  if (!ok) {
    throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", path.string(), std::strerror(err)));
  }
  return content;
}

std::optional<std::string> ProcRoot::try_read(std::string_view relative) const {
  try {
    return read(relative);
  } catch (const Error&) {
    return std::nullopt;
  }
}

std::optional<std::string> ProcRoot::read_link(std::string_view relative) const {
  std::array<char, 256> buffer{};
  const auto path = m_root / relative;
  const ssize_t n = ::readlink(path.c_str(), buffer.data(), buffer.size());
  if (n <= 0 || static_cast<std::size_t>(n) >= buffer.size()) {
    return std::nullopt;
  }
  return std::string(buffer.data(), static_cast<std::size_t>(n));
}

namespace {

std::vector<std::int32_t> list_pids(const ProcRoot& root) {
  std::vector<std::int32_t> pids;
  DIR* proc = ::opendir(root.path().c_str());
  if (proc == nullptr) {
    return pids;
  }
  while (const dirent* entry = ::readdir(proc)) {
    std::int32_t pid = 0;
    const std::string_view name(entry->d_name);
    const auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec == std::errc{} && ptr == name.data() + name.size() && pid > 0) {
      pids.push_back(pid);
    }
  }
  ::closedir(proc);
  return pids;
}

}  // namespace

namespace {

// One worker's share of a scan: for its pids, either the known fd table (unchanged) or a fresh one.
struct ScanSlice {
  std::vector<std::pair<std::int32_t, OwnerTracker::ProcessFds>> processes;
  std::size_t unreadable = 0;
  std::size_t resolved = 0;  // fd links read
};

// Reads /proc/PID/stat once into what identifies the process; false if it exited.
bool identify(const ProcRoot& root, std::int32_t pid, OwnerTracker::ProcessFds& process) {
  const auto stat = root.try_read(fmt::format("{}/stat", pid));
  const auto fields = stat ? parse_pid_stat(*stat) : std::nullopt;
  process.identified = fields.has_value();
  if (fields) {
    process.start_ticks = fields->start_ticks;
    process.comm = fields->comm;
  }
  return process.identified;
}

}  // namespace

InodeOwners::InodeOwners(std::vector<std::pair<std::uint64_t, std::int32_t>> pairs) : m_pairs(std::move(pairs)) {
  // By inode, then pid: the first of each inode is its lowest pid, the owner netstat -p shows.
  std::sort(m_pairs.begin(), m_pairs.end());
  m_pairs.erase(
      std::unique(m_pairs.begin(), m_pairs.end(), [](const auto& a, const auto& b) { return a.first == b.first; }),
      m_pairs.end());
  m_pairs.shrink_to_fit();
}

std::optional<std::int32_t> InodeOwners::find(std::uint64_t inode) const {
  const auto it = std::lower_bound(m_pairs.begin(), m_pairs.end(), inode,
                                   [](const auto& item, std::uint64_t key) { return item.first < key; });
  if (it == m_pairs.end() || it->first != inode) {
    return std::nullopt;
  }
  return it->second;
}

OwnerTracker::OwnerTracker(Cmdlines cmdlines, bool resolve_users, int full_scan_every)
    : m_cmdlines(cmdlines), m_resolve_users(resolve_users), m_full_scan_every(std::max(1, full_scan_every)) {}

OwnerTracker::~OwnerTracker() = default;

OwnerMap OwnerTracker::scan(const ProcRoot& root, const std::vector<const std::vector<model::Socket>*>& sockets) {
  const bool due = m_scans_since_full + 1 >= m_full_scan_every || m_known.empty();
  auto result = scan_once(root, due);
  if (!due) {
    // A socket that is new since the last snapshot and has no owner lives in an fd table the
    // listing could not show as changed (an fd number reused): look at every process again.
    bool unexplained = false;
    for (const auto* list : sockets) {
      for (const auto& s : *list) {
        if (s.inode != 0 && !result.owner_of_inode.contains(s.inode) && !m_seen.contains(s.inode)) {
          unexplained = true;
          break;
        }
      }
    }
    if (unexplained) {
      result = scan_once(root, true);
    }
  }
  m_seen.clear();
  for (const auto* list : sockets) {
    for (const auto& s : *list) {
      if (s.inode != 0) {
        m_seen.insert(s.inode);
      }
    }
  }
  return result;
}

OwnerMap OwnerTracker::scan_once(const ProcRoot& root, bool full) {
  OwnerMap result;
  if (!std::filesystem::is_directory(root.path())) {
    result.completeness = model::OwnerScan::skipped;
    return result;
  }
  const auto pids = list_pids(root);
  // Resolving fd links is kernel work on independent fd tables: spread it over the cores.
  const std::size_t workers = pids.size() < 64 ? 1 : std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 4);
  std::vector<ScanSlice> slices(workers);
  const auto work = [&](std::size_t first, ScanSlice& out) {
    std::array<char, 64> target{};
    for (std::size_t i = first; i < pids.size(); i += workers) {
      const std::int32_t pid = pids[i];
      const int dir_fd =
          ::open(fmt::format("{}/{}/fd", root.path().string(), pid).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dir_fd < 0) {
        // EACCES: another user's process and no CAP_DAC_READ_SEARCH; ENOENT: it exited, or a
        // copied tree without fd links. Only the former makes the picture partial.
        if (errno == EACCES || errno == EPERM) {
          ++out.unreadable;
        }
        continue;
      }
      DIR* dir = ::fdopendir(dir_fd);
      if (dir == nullptr) {
        ::close(dir_fd);
        continue;
      }
      ProcessFds now;
      while (const dirent* entry = ::readdir(dir)) {
        std::uint32_t fd = 0;
        const std::string_view name(entry->d_name);
        const auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), fd);
        if (ec == std::errc{} && ptr == name.data() + name.size()) {
          now.fds.push_back(fd);
        }
      }
      std::sort(now.fds.begin(), now.fds.end());
      const auto known = m_known.find(pid);
      bool reuse = false;
      if (!full && known != m_known.end() && known->second.fds == now.fds) {
        // The same fd numbers: the same process (not a reused pid) keeps its fd table.
        reuse = identify(root, pid, now) && now.start_ticks == known->second.start_ticks;
      }
      if (reuse) {
        now.sockets = known->second.sockets;
        now.description = known->second.description;
      } else if (!now.fds.empty()) {
        // Its start time lets the next scan recognise this very process behind the same pid.
        if (!now.identified) {
          identify(root, pid, now);
        }
        bool denied = false;
        for (const std::uint32_t fd : now.fds) {
          const std::string name = std::to_string(fd);
          const ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
          ++out.resolved;
          if (n <= 0 || static_cast<std::size_t>(n) >= target.size()) {
            if (n < 0 && (errno == EACCES || errno == EPERM)) {
              denied = true;
              break;
            }
            continue;
          }
          if (const auto inode = socket_inode_of_link(std::string_view(target.data(), static_cast<std::size_t>(n)))) {
            now.sockets.push_back(*inode);
          }
        }
        if (denied) {
          ++out.unreadable;
          ::closedir(dir);
          continue;
        }
      }
      ::closedir(dir);
      out.processes.emplace_back(pid, std::move(now));
    }
  };
  std::vector<std::thread> threads;
  for (std::size_t w = 1; w < workers; ++w) {
    threads.emplace_back(work, w, std::ref(slices[w]));
  }
  work(0, slices[0]);
  for (auto& thread : threads) {
    thread.join();
  }

  std::unordered_map<std::int32_t, ProcessFds> current;
  m_last_resolved = 0;
  for (auto& slice : slices) {
    result.unreadable_processes += slice.unreadable;
    m_last_resolved += slice.resolved;
    for (auto& [pid, fds] : slice.processes) {
      current.emplace(pid, std::move(fds));
    }
  }
  std::vector<std::pair<std::uint64_t, std::int32_t>> pairs;
  pairs.reserve(m_seen.size());
  for (const auto& [pid, fds] : current) {
    for (const std::uint64_t inode : fds.sockets) {
      pairs.emplace_back(inode, pid);
    }
  }
  result.owner_of_inode = InodeOwners(std::move(pairs));

  // Only processes that are some socket's owner are described; what cannot change for a process
  // (its name, command line, user) is read once.
  std::unordered_set<std::int32_t> owners;
  for (const auto& [inode, pid] : result.owner_of_inode.pairs()) {
    owners.insert(pid);
  }
  for (const std::int32_t pid : owners) {
    auto& fds = current.at(pid);
    if (!fds.description) {
      // The fd scan usually read its stat already; read it only if not.
      if (!fds.identified && !identify(root, pid, fds)) {
        fds.sockets.clear();  // it exited meanwhile: its sockets lose their owner
        continue;
      }
      model::Process process;
      process.pid = pid;
      process.comm = fds.comm;
      process.start_ticks = fds.start_ticks;
      if (const auto status = root.try_read(fmt::format("{}/status", pid))) {
        process.uid = parse_status_euid(*status).value_or(0);
      }
      if (m_cmdlines == Cmdlines::store) {
        if (const auto raw = root.try_read(fmt::format("{}/cmdline", pid))) {
          process.cmdline = format_cmdline(*raw);
        }
      }
      if (m_resolve_users) {
        process.user = user_name(process.uid);
      }
      fds.description = std::move(process);
    }
    result.processes.push_back(*fds.description);
  }
  result.owner_of_inode.erase_pids([&current](std::int32_t pid) { return current.at(pid).sockets.empty(); });
  std::sort(result.processes.begin(), result.processes.end(),
            [](const model::Process& a, const model::Process& b) { return a.pid < b.pid; });
  // Keep for next time only what can be trusted to identify its process.
  std::erase_if(current, [](const auto& item) { return !item.second.identified && !item.second.sockets.empty(); });
  result.links_resolved = m_last_resolved;
  m_known = std::move(current);
  m_scans_since_full = full ? 0 : m_scans_since_full + 1;
  m_last_full = full;
  if (result.unreadable_processes > 0) {
    result.completeness = model::OwnerScan::partial;
  }
  return result;
}

OwnerMap scan_owners(const ProcRoot& root, Cmdlines cmdlines, bool resolve_users) {
  OwnerTracker tracker(cmdlines, resolve_users, 1);
  return tracker.scan(root, {});
}

namespace {

// Collects a capture's diagnostics (at most k_max_diagnostics) and reads files through parsers.
class Reader {
 public:
  explicit Reader(model::Capture& cap) : m_cap(cap) {}

  void note(const std::string& file, std::size_t line, std::string message) {
    if (m_cap.diagnostics.size() < k_max_diagnostics) {
      m_cap.diagnostics.push_back({file, line, std::move(message)});
    }
  }

  // Reads and parses one file below `root`; a missing file is a diagnostic, a malformed one an error.
  template <class Parse, class Out>
  bool load(const ProcRoot& root, std::string_view relative, Parse&& parse, Out& out) {
    const std::string path = (root.path() / relative).string();
    const auto text = root.read(relative);
    if (!text) {
      note(path, 0, "not present");
      return false;
    }
    auto parsed = parse(*text);
    if (parsed.error) {
      throw Error(Exit::bad_input, fmt::format("{}: {}", path, *parsed.error));
    }
    for (auto& issue : parsed.issues) {
      note(path, issue.line, std::move(issue.reason));
    }
    m_cap.skipped_lines += parsed.issues.size();
    if (parsed.duplicates > 0) {
      note(path, 0, fmt::format("{} duplicate rows dropped", parsed.duplicates));
    }
    std::move(parsed.rows.begin(), parsed.rows.end(), std::back_inserter(out));
    return true;
  }

 private:
  model::Capture& m_cap;
};

std::optional<std::string> text_of(const ProcRoot& root, std::string_view relative) {
  auto content = root.try_read(relative);
  if (!content) {
    return std::nullopt;
  }
  auto trimmed = trim(*content);
  return trimmed.empty() ? std::nullopt : std::optional(trimmed);
}

// What is the same for every namespace of the host: identity, boot, kernel, clock.
void read_host_facts(model::Capture& cap, const ProcRoot& root, const CaptureOptions& options) {
  cap.time_ms = options.at_ms.value_or(model::now_ms());
  if (!options.live) {
    cap.proc_root = std::filesystem::absolute(options.proc_root).lexically_normal().string();
  }
  if (const long hz = ::sysconf(_SC_CLK_TCK); hz > 0) {
    cap.user_hz = hz;
  }
  cap.boot_id = text_of(root, "sys/kernel/random/boot_id");
  cap.kernel = text_of(root, "sys/kernel/osrelease");
  cap.hostname = text_of(root, "sys/kernel/hostname").value_or("");
  if (options.live) {
    timespec ts{};
    if (::clock_gettime(CLOCK_BOOTTIME, &ts) == 0) {
      cap.uptime_ms = static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
    }
    std::array<char, 256> name{};
    if (cap.hostname.empty() && ::gethostname(name.data(), name.size() - 1) == 0) {
      cap.hostname = name.data();
    }
    if (auto id = ProcRoot("/etc").try_read("machine-id")) {
      if (auto trimmed = trim(*id); !trimmed.empty()) {
        cap.machine_id = trimmed;
      }
    }
  } else if (const auto uptime = root.try_read("uptime")) {
    // "12345.67 23456.78": seconds since boot with centiseconds.
    double seconds = 0;
    if (std::sscanf(uptime->c_str(), "%lf", &seconds) == 1 && seconds >= 0) {
      cap.uptime_ms = static_cast<std::int64_t>(seconds * 1000.0);
    }
  }
  cap.host = options.host.value_or(cap.hostname.empty() ? std::string("unknown") : cap.hostname);
}

// A netlink socket for the calling thread's namespace, unless /proc is demanded or none can be had
// (then a diagnostic, or an error when netlink was demanded).
netlink::DiagSocket* open_diag(const CaptureOptions& options, std::optional<netlink::DiagSocket>& own, Reader& reader) {
  if (!options.live || options.source == Source::proc) {
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

// The sockets, counters and settings of one network namespace: `net` is a root whose net/ files
// show it, `sys` one whose sys/net files do (the calling thread's namespace for the live /proc).
void read_namespace(model::Capture& cap, Reader& reader, const ProcRoot& net, const ProcRoot& sys,
                    netlink::DiagSocket* diag, const CaptureOptions& options) {
  const std::int64_t hz = cap.user_hz;
  using model::Proto;
  const auto tables_started = std::chrono::steady_clock::now();
  // Room for every socket the kernel counts, so that the table never grows by doubling (which
  // would hold two copies of it at once).
  if (const auto sockstat = net.try_read("net/sockstat")) {
    std::size_t expected = 64;
    for (const auto& counter : parse_sockstat(*sockstat, "Sockstat").rows) {
      if (counter.name == "sockets_used" || counter.name == "TCP_tw") {
        expected += static_cast<std::size_t>(std::max<std::int64_t>(counter.value, 0));
      }
    }
    cap.sockets.reserve(expected + expected / 32);
  }
  bool any_table = false;
  bool used_netlink = false;
  bool used_proc = false;
  struct Table {
    const char* file;
    Proto proto;
    int family;
  };
  for (const Table& table :
       {Table{"net/tcp", Proto::tcp, 4}, Table{"net/tcp6", Proto::tcp, 6}, Table{"net/udp", Proto::udp, 4},
        Table{"net/udp6", Proto::udp, 6}, Table{"net/unix", Proto::unix_domain, 0}}) {
    if (diag != nullptr) {
      try {
        const auto dump = table.proto == Proto::unix_domain ? diag->dump_unix(cap.sockets)
                                                            : diag->dump_inet(table.family, table.proto, cap.sockets);
        if (dump.malformed > 0) {
          cap.skipped_lines += dump.malformed;
          reader.note(fmt::format("netlink {}", table.file), 0,
                      fmt::format("{} replies could not be decoded", dump.malformed));
        }
        if (dump.duplicates > 0) {
          reader.note(fmt::format("netlink {}", table.file), 0,
                      fmt::format("{} duplicate rows dropped", dump.duplicates));
        }
        any_table = used_netlink = true;
        continue;
      } catch (const netlink::Unavailable& e) {
        if (options.source == Source::netlink) {
          throw Error(Exit::failure, fmt::format("--source netlink: {}", e.what()));
        }
        reader.note(fmt::format("netlink {}", table.file), 0, fmt::format("{}; read /proc instead", e.what()));
      }
    }
    bool present = false;
    if (table.proto == Proto::unix_domain) {
      present = reader.load(
          net, table.file, [](std::string_view t) { return parse_unix(t); }, cap.sockets);
    } else {
      present = reader.load(
          net, table.file, [&](std::string_view t) { return parse_inet(t, table.proto, table.family, hz); },
          cap.sockets);
    }
    any_table |= present;
    used_proc |= present;
  }
  cap.source = used_netlink && used_proc ? "netlink+proc" : used_netlink ? "netlink" : "proc";
  cap.sockets_ms = elapsed_ms(tables_started);
  if (!any_table) {
    throw Error(
        Exit::bad_input,
        fmt::format("{}: no socket table (net/tcp, tcp6, udp, udp6, unix) under this /proc root", net.path().string()));
  }
  reader.load(
      net, "net/snmp", [](std::string_view t) { return parse_counter_pairs(t); }, cap.counters);
  reader.load(
      net, "net/netstat", [](std::string_view t) { return parse_counter_pairs(t); }, cap.counters);
  reader.load(
      net, "net/snmp6", [](std::string_view t) { return parse_snmp6(t); }, cap.counters);
  reader.load(
      net, "net/sockstat", [](std::string_view t) { return parse_sockstat(t, "Sockstat"); }, cap.counters);
  reader.load(
      net, "net/sockstat6", [](std::string_view t) { return parse_sockstat(t, "Sockstat6"); }, cap.counters);

  const auto number = [&](std::string_view relative) { return to_int(text_of(sys, relative).value_or("")); };
  cap.settings.tcp_fin_timeout = number("sys/net/ipv4/tcp_fin_timeout");
  cap.settings.tcp_max_tw_buckets = number("sys/net/ipv4/tcp_max_tw_buckets");
  cap.settings.tcp_tw_reuse = number("sys/net/ipv4/tcp_tw_reuse");
  cap.settings.somaxconn = number("sys/net/core/somaxconn");
  if (const auto range = text_of(sys, "sys/net/ipv4/ip_local_port_range")) {
    long long low = 0;
    long long high = 0;
    if (std::sscanf(range->c_str(), "%lld %lld", &low, &high) == 2) {
      cap.settings.port_range_low = low;
      cap.settings.port_range_high = high;
    }
  }
}

// Gives each socket its owner from one scan, and keeps the processes that own something.
void attach_owners(model::Capture& cap, Reader& reader, const OwnerMap& owners, const std::string& root) {
  cap.owners = owners.completeness;
  std::unordered_set<std::int32_t> used;
  for (auto& socket : cap.sockets) {
    if (socket.inode == 0) {
      continue;
    }
    if (const auto pid = owners.owner_of_inode.find(socket.inode)) {
      socket.pid = *pid;
      used.insert(*pid);
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

void attach_users(model::Capture& cap) {
  std::unordered_set<std::uint32_t> uids;
  for (const auto& socket : cap.sockets) {
    uids.insert(socket.uid);
  }
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

}  // namespace

model::Capture capture(const CaptureOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  struct stat st {};
  if (::stat(options.proc_root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw Error(Exit::bad_input, fmt::format("{}: not a directory (--proc-root)", options.proc_root.string()));
  }
  const ProcRoot root(options.proc_root);
  model::Capture cap;
  Reader reader(cap);
  read_host_facts(cap, root, options);
  std::optional<netlink::DiagSocket> own_diag;
  read_namespace(cap, reader, root, root, open_diag(options, own_diag, reader), options);
  if (const auto link = root.read_link("self/ns/net"); link && link->starts_with("net:[")) {
    cap.netns_inode = static_cast<std::uint64_t>(to_int(link->substr(5)).value_or(0));
  }
  // A copied tree is taken to be its host's own view; live, compare with the host's namespace.
  cap.netns_initial = !options.live || cap.netns_inode == initial_namespace_inode(root.path());
  if (options.owners) {
    const auto owners_started = std::chrono::steady_clock::now();
    const auto owners = options.owner_tracker != nullptr ? options.owner_tracker->scan(root, {&cap.sockets})
                                                         : scan_owners(root, options.cmdlines, options.live);
    attach_owners(cap, reader, owners, root.path().string());
    cap.owners_ms = elapsed_ms(owners_started);
    cap.links_resolved = owners.links_resolved;
  }
  if (options.live) {
    attach_users(cap);
  }
  cap.capture_ms = elapsed_ms(started);
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

std::vector<model::Capture> capture_namespaces(const CaptureOptions& options,
                                               const std::vector<NamespaceTarget>& targets) {
  const auto started = std::chrono::steady_clock::now();
  const ProcRoot root("/proc");
  model::Capture host;
  read_host_facts(host, root, options);
  const auto shared_ms = elapsed_ms(started);
  std::vector<model::Capture> captures;
  for (const auto& target : targets) {
    const auto namespace_started = std::chrono::steady_clock::now();
    model::Capture cap = host;
    Reader reader(cap);
    cap.netns_inode = target.inode;
    cap.netns_name = target.name;
    cap.netns_pid = target.pid;
    cap.netns_initial = target.initial;
    // setns() moves only the calling thread, so a helper thread enters the namespace, reads it
    // (net/ through /proc/thread-self, sys/net through /proc, both then show its namespace), ends.
    std::exception_ptr failure;
    std::thread worker([&] {
      try {
        const int fd = ::open(target.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          throw Error(Exit::failure,
                      fmt::format("{}: cannot open network namespace: {}", target.path.string(), std::strerror(errno)));
        }
        const int entered = ::setns(fd, CLONE_NEWNET);
        const int err = errno;
        ::close(fd);
        if (entered != 0) {
          throw Error(Exit::failure, fmt::format("{}: cannot enter network namespace: {} (needs CAP_SYS_ADMIN)",
                                                 target.path.string(), std::strerror(err)));
        }
        CaptureOptions inside = options;
        inside.diag = nullptr;  // a netlink socket belongs to the namespace it was opened in
        std::optional<netlink::DiagSocket> diag;
        read_namespace(cap, reader, ProcRoot("/proc/thread-self"), root, open_diag(inside, diag, reader), inside);
      } catch (...) {
        failure = std::current_exception();
      }
    });
    worker.join();
    if (failure) {
      std::rethrow_exception(failure);
    }
    cap.capture_ms = shared_ms + elapsed_ms(namespace_started);
    captures.push_back(std::move(cap));
  }
  // Socket inodes are unique across namespaces: one scan of the fd tables serves them all.
  if (options.owners) {
    const auto owners_started = std::chrono::steady_clock::now();
    std::vector<const std::vector<model::Socket>*> lists;
    for (const auto& cap : captures) {
      lists.push_back(&cap.sockets);
    }
    const auto owners = options.owner_tracker != nullptr ? options.owner_tracker->scan(root, lists)
                                                         : scan_owners(root, options.cmdlines, true);
    const auto owners_ms = elapsed_ms(owners_started);
    for (auto& cap : captures) {
      Reader reader(cap);
      attach_owners(cap, reader, owners, "/proc");
      cap.capture_ms += owners_ms;
      cap.owners_ms = owners_ms;
      cap.links_resolved = owners.links_resolved;
    }
  }
  for (auto& cap : captures) {
    attach_users(cap);
  }
  return captures;
}

}  // namespace sockhist::proc
