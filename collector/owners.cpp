// Process attribution: which process holds each socket inode, from the fd tables below a /proc root,
// scanned in full or incrementally across a looping collector's snapshots.
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <functional>
#include <thread>

#include <fmt/format.h>

#include "sockhist/capture.hpp"

namespace sockhist::capture {

using proc::format_cmdline;
using proc::parse_pid_stat;
using proc::parse_status_euid;
using proc::ProcRoot;
using proc::socket_inode_of_link;

std::optional<std::string> user_name(std::uint32_t uid) {
  std::array<char, 4096> buffer{};
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    return std::string(found->pw_name);
  }
  return std::nullopt;
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

OwnerTracker::OwnerTracker(Cmdlines cmdlines, int full_scan_every)
    : m_cmdlines(cmdlines), m_full_scan_every(std::max(1, full_scan_every)) {}

OwnerTracker::~OwnerTracker() = default;

OwnerMap OwnerTracker::scan(const ProcRoot& root, const std::vector<const std::vector<model::Socket>*>& sockets) {
  auto result = scan_tables(root);
  std::vector<std::uint64_t> inodes;
  for (const auto* list : sockets) {
    for (const auto& s : *list) {
      if (s.inode != 0) {
        inodes.push_back(s.inode);
      }
    }
  }
  const auto unexplained = [&](const OwnerMap& map) {
    return std::any_of(inodes.begin(), inodes.end(),
                       [&](std::uint64_t inode) { return !map.owner_of_inode.contains(inode) && is_new(inode); });
  };
  if (auto better = settle(root, result, inodes, unexplained)) {
    return std::move(*better);
  }
  return result;
}

OwnerMap OwnerTracker::scan_tables(const ProcRoot& root) {
  const bool due = m_scans_since_full + 1 >= m_full_scan_every || m_known.empty();
  m_full_this_snapshot = due;
  m_last_resolved = 0;
  return scan_once(root, due);
}

bool OwnerTracker::is_new(std::uint64_t inode) const {
  return !std::binary_search(m_seen.begin(), m_seen.end(), inode);
}

std::optional<OwnerMap> OwnerTracker::settle(const ProcRoot& root, const OwnerMap& first,
                                             std::vector<std::uint64_t> inodes,
                                             const std::function<bool(const OwnerMap&)>& unexplained) {
  std::optional<OwnerMap> better;
  if (unexplained(first)) {
    // A socket new since the last snapshot has no owner. It may have appeared after its
    // process's table was read (the scan runs before or beside the reading of the sockets): the
    // tables are listed again and those whose fd numbers changed are read.
    better = scan_once(root, false);
    // Or it lives in an fd number the listing cannot show as changed (one reused): unless a scan
    // of this snapshot was full, every table is read.
    if (!m_full_this_snapshot && unexplained(*better)) {
      better = scan_once(root, true);
    }
  }
  m_seen.clear();
  if (m_remember) {
    std::sort(inodes.begin(), inodes.end());
    inodes.erase(std::unique(inodes.begin(), inodes.end()), inodes.end());
    inodes.shrink_to_fit();
    m_seen = std::move(inodes);
  } else {
    m_known = {};  // one snapshot and out: nothing is kept while it is written
  }
  return better;
}

namespace {

// One process's fd table: the one known from the last scan when its fd numbers are unchanged
// (and so is its start time: not a reused pid), else every link read; appended to `out`.
void scan_process(const ProcRoot& root, std::int32_t pid, bool full,
                  const std::unordered_map<std::int32_t, OwnerTracker::ProcessFds>& known, ScanSlice& out) {
  using ProcessFds = OwnerTracker::ProcessFds;
  std::array<char, 64> target{};
  // Resolved inside the root: a copied tree's fd folder that links elsewhere is refused, named.
  const int dir_fd = root.open_directory(fmt::format("{}/fd", pid)).release();
  if (dir_fd < 0) {
    // EACCES: another user's process and no CAP_DAC_READ_SEARCH; ENOENT: it exited, or a
    // copied tree without fd links. Only the former makes the picture partial.
    if (errno == EACCES || errno == EPERM) {
      ++out.unreadable;
    }
    return;
  }
  DIR* dir = ::fdopendir(dir_fd);
  if (dir == nullptr) {
    ::close(dir_fd);
    return;
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
  const auto it = known.find(pid);
  bool reuse = false;
  if (!full && it != known.end() && it->second.fds == now.fds) {
    // The same fd numbers: the same process (not a reused pid) keeps its fd table.
    reuse = identify(root, pid, now) && now.start_ticks == it->second.start_ticks;
  }
  if (reuse) {
    now.sockets = it->second.sockets;
    now.description = it->second.description;
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
      return;
    }
  }
  ::closedir(dir);
  out.processes.emplace_back(pid, std::move(now));
}

// Describes the processes that own some socket (name, uid, command line, user), reading what
// cannot change for a process only once; a process that exited meanwhile loses its sockets.
void describe_owners(const ProcRoot& root, std::unordered_map<std::int32_t, OwnerTracker::ProcessFds>& current,
                     OwnerMap& result, Cmdlines cmdlines) {
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
      if (cmdlines == Cmdlines::store) {
        if (const auto raw = root.try_read(fmt::format("{}/cmdline", pid))) {
          process.cmdline = format_cmdline(*raw);
        }
      }
      fds.description = std::move(process);
    }
    result.processes.push_back(*fds.description);
  }
}

}  // namespace

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
    for (std::size_t i = first; i < pids.size(); i += workers) {
      scan_process(root, pids[i], full, m_known, out);
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
  for (auto& slice : slices) {
    result.unreadable_processes += slice.unreadable;
    m_last_resolved += slice.resolved;
    for (auto& [pid, fds] : slice.processes) {
      current.emplace(pid, std::move(fds));
    }
  }
  std::vector<std::pair<std::uint64_t, std::int32_t>> pairs;
  std::size_t links = 0;
  for (const auto& [pid, fds] : current) {
    links += fds.sockets.size();
  }
  pairs.reserve(links);
  for (const auto& [pid, fds] : current) {
    for (const std::uint64_t inode : fds.sockets) {
      pairs.emplace_back(inode, pid);
    }
  }
  result.owner_of_inode = InodeOwners(std::move(pairs));
  describe_owners(root, current, result, m_cmdlines);
  result.owner_of_inode.erase_pids([&current](std::int32_t pid) { return current.at(pid).sockets.empty(); });
  std::sort(result.processes.begin(), result.processes.end(),
            [](const model::Process& a, const model::Process& b) { return a.pid < b.pid; });
  result.links_resolved = m_last_resolved;
  // Kept for a listing later in this snapshot (settle) and, unless keep_nothing, for the next one:
  // only what can be trusted to identify its process.
  std::erase_if(current, [](const auto& item) { return !item.second.identified && !item.second.sockets.empty(); });
  m_known = std::move(current);
  m_full_this_snapshot |= full;
  m_scans_since_full = full ? 0 : m_scans_since_full + 1;
  m_last_full = full;
  if (result.unreadable_processes > 0) {
    result.completeness = model::OwnerScan::partial;
  }
  return result;
}

OwnerMap scan_owners(const ProcRoot& root, Cmdlines cmdlines) {
  OwnerTracker tracker(cmdlines, 1);
  tracker.keep_nothing();
  return tracker.scan(root, {});
}

}  // namespace sockhist::capture
