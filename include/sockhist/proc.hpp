// Readers of the kernel's /proc text formats (library sockhist_proc). The parse_* functions are pure:
// text in, values out, no I/O. ProcRoot does the reading, always relative to a root so that a copied
// tree reads like the live one; read_tree reads a whole copied tree. Nothing here uses netlink or
// enters a namespace: that is the live capture's (capture.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sockhist/input.hpp"
#include "sockhist/model.hpp"

namespace sockhist::proc {

// A set of 64-bit keys probed linearly in one flat table, at most three quarters full (1 MiB for
// 75,000 keys, where a std::unordered_set of them takes 3).
class KeySet {
 public:
  // False when `key` was there already.
  bool insert(std::uint64_t key);

 private:
  static bool place(std::vector<std::uint64_t>& slots, std::uint64_t key);
  void grow();

  std::vector<std::uint64_t> m_slots;
  std::size_t m_size = 0;
  bool m_zero = false;  // 0 marks an empty slot, so it is kept aside
};

// What tells the rows a socket table repeats under churn (the kernel's walk of a hash that
// changes under it) from distinct sockets, in /proc text and netlink dumps alike: a socket's
// inode (unique to it while it lives), or for a TIME_WAIT or request socket (inode 0) its
// identity and state. A 64-bit collision would at worst drop one row of one snapshot.
std::uint64_t repeat_key(const model::Socket& socket);

// A socket table parsed as it is read: the text is fed in pieces split anywhere (a line split
// between them is joined), each row appended as its line is complete, so that no table is held
// whole. The checks and outcome are parse_inet's and parse_unix's (which are this parser fed once).
class SocketTableParser {
 public:
  // proto tcp or udp with family 4 or 6, or unix_domain (family 0); user_hz converts timers.
  SocketTableParser(model::Proto proto, int family, std::int64_t user_hz);
  ~SocketTableParser();
  SocketTableParser(SocketTableParser&&) noexcept;
  SocketTableParser& operator=(SocketTableParser&&) noexcept;

  // Parses the lines of `text` that are complete, appending their rows to `rows`.
  void feed(std::string_view text, std::vector<model::Socket>& rows);
  // The end of the file: a last line without its newline is recorded as truncated; a file with
  // no header line is an error.
  void finish(std::vector<model::Socket>& rows);
  // The skipped lines, dropped repeats and the error (a foreign header) so far; rows stay empty.
  const model::Parsed<model::Socket>& outcome() const;
  model::Parsed<model::Socket> take_outcome();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// Parses /proc/net/tcp, tcp6, udp or udp6 (family 4 or 6). Timer values are converted from
// USER_HZ ticks to milliseconds. Rows repeated under churn are dropped and counted; malformed
// lines are skipped and listed; a missing or foreign header is an error. The rows are appended to
// `rows` (the tables read before, moved in), so that a namespace's sockets are parsed in place.
model::Parsed<model::Socket> parse_inet(std::string_view text, model::Proto proto, int family, std::int64_t user_hz,
                                        std::vector<model::Socket> rows = {});

// Parses /proc/net/unix; `rows` as for parse_inet.
model::Parsed<model::Socket> parse_unix(std::string_view text, std::vector<model::Socket> rows = {});

// Parses /proc/net/snmp or /proc/net/netstat: pairs of `Section: names` / `Section: values` lines.
// Fields are taken by name; a section may repeat (IcmpMsg) or be absent. A pair whose name and
// value counts differ is skipped whole.
model::Parsed<model::Counter> parse_counter_pairs(std::string_view text);

// Parses /proc/net/snmp6: one `Ip6InReceives <value>` line per counter.
model::Parsed<model::Counter> parse_snmp6(std::string_view text);

// Parses /proc/net/sockstat or sockstat6 into section "Sockstat" or "Sockstat6" (pass it), with
// names such as TCP_inuse and sockets_used. Every value is a gauge.
model::Parsed<model::Counter> parse_sockstat(std::string_view text, std::string_view section);

// An address (family 4: 4 bytes, 6: 16, network order) as inet_ntop prints it, which is what
// netstat -n and ss -n print: "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1".
std::string address_text(int family, const unsigned char* bytes);

// Parses an IPv4 or IPv6 address as /proc prints it (host-order 32-bit words in hex) into the
// text netstat -n prints; nullopt on bad hex or a wrong length.
std::optional<std::string> decode_address(std::string_view hex);

// The socket inode in a /proc/PID/fd link target such as "socket:[12345]"; nullopt otherwise.
std::optional<std::uint64_t> socket_inode_of_link(std::string_view target);

// The fields of /proc/PID/stat that identify a process: comm and start time (field 22).
struct StatFields {
  std::string comm;
  std::uint64_t start_ticks = 0;
};
std::optional<StatFields> parse_pid_stat(std::string_view text);

// The effective uid from /proc/PID/status; nullopt if absent.
std::optional<std::uint32_t> parse_status_euid(std::string_view text);

// A /proc/PID/cmdline (NUL-separated) as one space-separated line.
std::string format_cmdline(std::string_view raw);

// Reads files below a /proc root, to end of file, never trusting the size /proc reports. Every path
// is resolved inside `boundary` (the root itself unless given): a copied tree's links that leave
// it, FIFOs, devices and files over input::k_max_file_bytes are refused (input::Refused), named.
class ProcRoot {
 public:
  explicit ProcRoot(std::filesystem::path root);
  // A root below a larger tree that bounds it (an unpacked sosreport's proc/).
  ProcRoot(std::filesystem::path root, const std::filesystem::path& boundary);

  const std::filesystem::path& path() const { return m_root; }

  // The file's whole content; nullopt if it does not exist. Other failures throw Error naming it.
  std::optional<std::string> read(std::string_view relative) const;

  // The same, but a failure to read (a process that exited, permission) is reported as nullopt.
  // A refusal (input::Refused) still throws: a hostile tree is never read as a sparse one.
  std::optional<std::string> try_read(std::string_view relative) const;

  // The target of a symbolic link below the root (its parents resolved inside the boundary);
  // nullopt on any failure.
  std::optional<std::string> read_link(std::string_view relative) const;

  // The file handed over a read at a time (input::Tree::read_each); false if it does not exist.
  bool read_each(std::string_view relative, const std::function<void(std::string_view)>& chunk) const;

  // A directory below the root opened for its entries; an empty Fd with errno set if it cannot be.
  input::Fd open_directory(std::string_view relative) const;

 private:
  std::string inside(std::string_view relative) const;

  std::filesystem::path m_root;
  input::Tree m_tree;
  std::string m_prefix;  // the root's path below the boundary, "" when it is the boundary
};

// A decimal integer, surrounding blanks ignored; nullopt on anything else.
std::optional<std::int64_t> parse_int(std::string_view text);

// A small file's content (hostname, boot_id, a sysctl) with surrounding blanks removed; nullopt
// when it is missing, unreadable or blank.
std::optional<std::string> read_trimmed(const ProcRoot& root, std::string_view relative);

// A snapshot keeps at most this many diagnostics; skipped_lines still counts them all.
inline constexpr std::size_t k_max_diagnostics = 100;

// Called after each read of a socket table with the rows so far and the index of the first row
// that read appended (a live capture's owners and sieve).
using AfterRows = std::function<void(std::vector<model::Socket>& out, std::size_t first)>;

// Reads files of a capture through their parsers, keeping what went wrong as the capture's
// diagnostics: a missing file is a diagnostic, a malformed one an error.
class Loader {
 public:
  explicit Loader(model::Capture& cap) : m_cap(cap) {}

  // Adds a diagnostic (up to k_max_diagnostics).
  void note(const std::string& file, std::size_t line, std::string message);

  // Reads `relative` below `root`, parses it with `parse` and appends its rows to `out`. Returns
  // false (and notes it) when the file is missing; throws Error(bad_input) naming it when the
  // parser refuses it; skipped lines and dropped duplicates become diagnostics.
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
      fail(path, *parsed.error);
    }
    report(path, parsed.issues, parsed.duplicates);
    if (out.empty()) {
      out = std::move(parsed.rows);  // a parser that appended to `out` moved in: no copy
    } else {
      std::move(parsed.rows.begin(), parsed.rows.end(), std::back_inserter(out));
    }
    return true;
  }

  // Reads the socket table `relative` below `root` a read at a time through `parser`, appending
  // its rows to `out`; after each read whose lines gave rows, after_rows(out, first) with the
  // index of the first of them (it may remove any of those, and nothing before them). Missing,
  // refused and malformed files as for load(); a foreign header is refused at the first read.
  bool load_table(const ProcRoot& root, std::string_view relative, SocketTableParser& parser,
                  std::vector<model::Socket>& out, const AfterRows& after_rows);

 private:
  // The skipped lines and dropped repeats of a file read, as diagnostics.
  void report(const std::string& path, std::vector<model::LineIssue>& issues, std::size_t duplicates);
  [[noreturn]] static void fail(const std::string& path, const std::string& error);
  model::Capture& m_cap;
};

// The socket tables of a namespace, in the order they are read.
struct SocketTable {
  const char* file;  // below the root: "net/tcp"
  model::Proto proto;
  int family;  // 4, 6; 0 for unix
};
inline constexpr std::array<SocketTable, 5> k_socket_tables = {
    SocketTable{"net/tcp", model::Proto::tcp, 4}, SocketTable{"net/tcp6", model::Proto::tcp, 6},
    SocketTable{"net/udp", model::Proto::udp, 4}, SocketTable{"net/udp6", model::Proto::udp, 6},
    SocketTable{"net/unix", model::Proto::unix_domain, 0}};

// user_hz, boot id, kernel release and hostname from ROOT/sys/kernel.
void read_kernel_facts(model::Capture& cap, const ProcRoot& root);

// Reserves room in cap.sockets for every socket ROOT/net/sockstat counts.
void reserve_sockets(model::Capture& cap, const ProcRoot& net);

// Appends one socket table's rows from its /proc text, read and parsed a read at a time, with
// after_rows (if given) called on each read's rows; false when the file is missing.
bool read_socket_table(model::Capture& cap, Loader& loader, const ProcRoot& net, const SocketTable& table,
                       const AfterRows& after_rows = {});

// Throws Error(bad_input) naming the root when no socket table was found below it.
void require_a_table(bool any_table, const ProcRoot& net);

// Appends the counters of net/snmp, netstat, snmp6, sockstat and sockstat6 (each optional).
void read_counters(model::Capture& cap, Loader& loader, const ProcRoot& net);

// The sysctls that shape the analysis, from ROOT/sys/net (absent ones stay unset).
void read_settings(model::Capture& cap, const ProcRoot& sys);

// The network namespace inode ROOT/self/ns/net names; 0 when it names none.
std::uint64_t netns_inode_of(const ProcRoot& root);

// Throws Error(bad_input) "not a directory (--proc-root)" unless `root` is a directory.
void require_directory(const std::filesystem::path& root);

// What to read of a copied /proc tree.
struct TreeOptions {
  std::filesystem::path root;
  std::optional<std::string> host;    // instead of the tree's hostname
  std::optional<std::int64_t> at_ms;  // the time to record (default: now)
  // The tree every path must stay in (an unpacked sosreport around its proc/); default: root.
  std::optional<std::filesystem::path> boundary;
};

// Reads a copied /proc tree (a sample, a sosreport's proc/) as one snapshot of its host's own
// namespace: sockets, counters, settings and the host facts the tree holds, without owners.
// Throws Error(bad_input) for a root that is not a directory, holds no socket table, or holds a
// malformed file, naming it; input::Refused for a link that leaves the tree, or a FIFO, device or
// oversized file in it.
model::Capture read_tree(const TreeOptions& options);

}  // namespace sockhist::proc
