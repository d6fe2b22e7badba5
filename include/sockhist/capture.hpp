// The live capture (library sockhist_capture): sock_diag netlink with /proc text as fallback, the
// owner scan of /proc/PID/fd, network namespaces entered with setns(). Only the collector links it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sockhist/model.hpp"
#include "sockhist/netlink.hpp"
#include "sockhist/proc.hpp"

namespace sockhist::capture {

using proc::ProcRoot;

// The user name of a uid through this machine's passwd database; nullopt when it has none.
std::optional<std::string> user_name(std::uint32_t uid);

// Maps socket inodes to the processes holding them by scanning ROOT/PID/fd. The lowest pid wins
// where several processes share a socket, as netstat -p does.
// Socket inode -> owning pid, as a sorted vector: a third of a hash map's memory at 100,000 sockets.
class InodeOwners {
 public:
  // Builds the map from (inode, pid) pairs in any order; the lowest pid wins for an inode.
  explicit InodeOwners(std::vector<std::pair<std::uint64_t, std::int32_t>> pairs = {});
  std::optional<std::int32_t> find(std::uint64_t inode) const;
  bool contains(std::uint64_t inode) const { return find(inode).has_value(); }
  std::size_t size() const { return m_pairs.size(); }
  const std::vector<std::pair<std::uint64_t, std::int32_t>>& pairs() const { return m_pairs; }
  // Drops the entries of pids for which `drop` is true.
  template <class Predicate>
  void erase_pids(Predicate drop) {
    std::erase_if(m_pairs, [&drop](const auto& item) { return drop(item.second); });
  }

 private:
  std::vector<std::pair<std::uint64_t, std::int32_t>> m_pairs;
};

struct OwnerMap {
  InodeOwners owner_of_inode;
  std::vector<model::Process> processes;  // one per pid that owns at least one socket
  model::OwnerScan completeness = model::OwnerScan::complete;
  std::size_t unreadable_processes = 0;  // fd directories we were not allowed to read
  std::size_t links_resolved = 0;        // fd links read (all of them in a full scan)
};

enum class Cmdlines { store, omit };

// Remembers, across the snapshots of a looping collector, each process's fd numbers and the socket
// inodes behind them, so that a later scan lists every fd directory (cheap) but resolves the links
// (expensive) only of processes whose fd numbers changed or that are new. A full scan is done on
// the first call, every `full_scan_every` calls, and at once whenever a socket inode that is new
// since the last call has no owner. What listing cannot see (an fd re-pointed with dup2() while
// another process still holds the old socket) is thereby bounded to full_scan_every snapshots.
class OwnerTracker {
 public:
  // Processes are described without their user's name: looking it up may open a socket (NSS, nscd)
  // while the capture reads the sockets; the capture names them after.
  explicit OwnerTracker(Cmdlines cmdlines, int full_scan_every = 30);
  ~OwnerTracker();
  OwnerTracker(const OwnerTracker&) = delete;
  OwnerTracker& operator=(const OwnerTracker&) = delete;

  // The owners of the sockets in `sockets` (the lists of one snapshot's namespaces): scan_tables,
  // then settle with what the lists show.
  OwnerMap scan(const ProcRoot& root, const std::vector<const std::vector<model::Socket>*>& sockets);

  // The same in two steps, for a capture that attaches owners as it reads its sockets. First the
  // fd tables: all of them when a full scan is due, else those whose fd numbers changed.
  OwnerMap scan_tables(const ProcRoot& root);
  // Whether a socket inode was not in the last snapshot the tracker settled.
  bool is_new(std::uint64_t inode) const;
  // Then, once every socket of the snapshot was read: `inodes` are all their inodes, and
  // `unexplained` tells whether, by a map, a socket that is new since the last snapshot has no
  // owner. When one has none by `first` (scan_tables' map), the tables are listed again and those
  // whose fd numbers changed are read (the socket appeared after its process's table was read);
  // when one still has none and no scan of this snapshot was full, every table is read (an fd
  // number reused). Returns the newer map, or nullopt when `first` stands.
  std::optional<OwnerMap> settle(const ProcRoot& root, const OwnerMap& first, std::vector<std::uint64_t> inodes,
                                 const std::function<bool(const OwnerMap&)>& unexplained);

  // For a run with no next scan (a collector that takes one snapshot): nothing is kept for one.
  // At 100,000 sockets that is about 5 MB of fd tables and inodes less while the snapshot is written.
  void keep_nothing() { m_remember = false; }

  std::size_t last_resolved() const { return m_last_resolved; }  // fd links the last scan read
  bool last_was_full() const { return m_last_full; }

  // What one scan learnt of one process.
  struct ProcessFds {
    std::uint64_t start_ticks = 0;
    std::string comm;
    bool identified = false;             // start_ticks and comm read
    std::vector<std::uint32_t> fds;      // the fd numbers, ascending
    std::vector<std::uint64_t> sockets;  // the socket inodes those fds point to
    std::optional<model::Process> description;
  };

 private:
  OwnerMap scan_once(const ProcRoot& root, bool full);

  Cmdlines m_cmdlines;
  int m_full_scan_every;
  int m_scans_since_full = 0;
  bool m_remember = true;
  bool m_full_this_snapshot = false;  // scan_tables or settle read every table
  std::unordered_map<std::int32_t, ProcessFds> m_known;
  std::vector<std::uint64_t> m_seen;  // socket inodes of the previous snapshot, sorted
  std::size_t m_last_resolved = 0;
  bool m_last_full = false;
};

// One full scan, for a single snapshot.
OwnerMap scan_owners(const ProcRoot& root, Cmdlines cmdlines);

// Where live sockets are read from: sock_diag netlink with /proc as fallback (automatic), or only one.
enum class Source { automatic, netlink, proc };

// What to capture, and from where.
struct CaptureOptions {
  std::filesystem::path proc_root = "/proc";
  bool live = true;  // false for a copied tree: host facts come from the tree, not this machine
  std::optional<std::string> host;
  std::optional<std::int64_t> at_ms;  // the time to record (copied trees only)
  bool owners = true;
  Cmdlines cmdlines = Cmdlines::store;
  // A live capture asks this, once its namespace, boot and owners are known and before reading its
  // sockets, for a sieve that leaves out the sockets already stored unchanged (may return null).
  // Called on the thread that reads the namespace, while no other thread uses what it reads.
  std::function<std::shared_ptr<model::SocketSieve>(const model::Capture&)> sieve_for;
  Source source = Source::automatic;      // copied trees are always read as /proc text
  netlink::DiagSocket* diag = nullptr;    // a socket to reuse across snapshots; opened per capture if null
  OwnerTracker* owner_tracker = nullptr;  // a looping collector's memory of fd tables; a full scan if null
};

// Reads one snapshot of sockets, counters, owners and host facts. Live sockets come from sock_diag
// netlink unless options.source says otherwise; a table netlink cannot dump is read from /proc
// (source "netlink+proc") unless netlink was demanded, which throws Error(failure). Missing
// optional files (tcp6 with IPv6 disabled, snmp6, ...) become diagnostics; a malformed file, or a
// root without a single socket table, throws Error(bad_input) naming it.
model::Capture take(const CaptureOptions& options);

// A network namespace to capture, and what is known of it.
struct NamespaceTarget {
  std::filesystem::path path;  // a file naming it: /run/netns/NAME or /proc/PID/ns/net
  std::uint64_t inode = 0;
  std::optional<std::string> name;  // its /run/netns name
  std::optional<std::int32_t> pid;  // the lowest pid living in it
  bool initial = false;             // PID 1's namespace: the host's own
};

// Every network namespace of the live host, from /proc/PID/ns/net (deduplicated by inode) and
// /run/netns, the initial one first. Processes whose namespace cannot be read are passed over.
std::vector<NamespaceTarget> discover_namespaces(const std::filesystem::path& proc = "/proc",
                                                 const std::filesystem::path& run_netns = "/run/netns");

// The namespace --netns names: a pid, a path (contains '/') or a /run/netns name. Throws
// Error(usage) naming the spec when there is no such namespace.
NamespaceTarget resolve_namespace(std::string_view spec, const std::filesystem::path& proc = "/proc",
                                  const std::filesystem::path& run_netns = "/run/netns");

// The same, looking up name and pid in namespaces already discovered (one /proc walk for many specs).
NamespaceTarget resolve_namespace(std::string_view spec, const std::vector<NamespaceTarget>& known,
                                  const std::filesystem::path& proc = "/proc",
                                  const std::filesystem::path& run_netns = "/run/netns");

// Runs fn() in a helper thread that entered the network namespace `path` names (setns moves one
// thread; CAP_SYS_ADMIN), so that sockets it opens belong there; waits, and rethrows what fn threw.
// Throws Error(failure) naming the path when the namespace cannot be entered.
void run_in_network_namespace(const std::filesystem::path& path, const std::function<void()>& fn);

// One capture per namespace, entering each with setns() in a helper thread (CAP_SYS_ADMIN). Host
// facts and the owner scan are read once and shared. Throws Error(failure) for a namespace that
// cannot be entered.
std::vector<model::Capture> take_namespaces(const CaptureOptions& options, const std::vector<NamespaceTarget>& targets);

}  // namespace sockhist::capture
