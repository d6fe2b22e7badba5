// Reading the socket listings people save during incidents (netstat and ss outputs) into the same
// model as a live snapshot, so that an imported snapshot is stored, shown and analysed like any
// other. Recognised from their header; a malformed line is reported with its line number and
// skipped; a file that is not one of these formats is refused.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sockhist/model.hpp"

namespace sockhist::import {

// What a listing holds, and what its format could carry.
struct Listing {
  std::string format;         // "netstat -antp", "netstat -neopa", "ss -tanpo", "ss -peaonmi", ...
  std::string tool;           // "netstat" or "ss": the snapshot's source
  std::string dialect;        // which version printed it, as far as the listing tells: "iproute2 4.14 or later"
  std::string dialect_signs;  // what in the listing tells it: "owners as pid=, any as 0.0.0.0 or [::]"
  bool owners = false;        // a PID/Program or users:(...) column
  bool timers = false;        // netstat -o or ss -o
  bool inodes = false;        // netstat -e or ss -e
  std::vector<model::Socket> sockets;
  std::vector<model::Process> processes;  // pid and name only: that is all these formats say
  std::vector<model::Diagnostic> diagnostics;
  std::size_t skipped_lines = 0;
  std::size_t other_families = 0;  // ss rows of netlink, raw, packet, ... sockets: not recorded
};

// Parses `text`, the content of `file` (named in diagnostics). Throws Error(bad_input) naming the
// file when it is neither a netstat nor an ss listing, or holds no socket line at all.
Listing parse_listing(std::string_view text, const std::string& file);
Listing parse_netstat(std::string_view text, const std::string& file);
// What an ss listing leaves out and the user says. ss prints no Netid column when it lists one socket
// type (ss -t, ss -u, ss -A unix_stream) and no State column when it lists one state (ss state
// established). `netid` is the type as ss's Netid names it (tcp, udp, u_str, u_dgr, u_seq), `state`
// the state as ss prints it (ESTAB, TIME-WAIT, LISTEN, ...).
struct SsColumns {
  std::optional<std::string> netid;
  std::optional<std::string> state;
};
// Without a Netid column and without `netid`, a TCP-only state (LISTEN, TIME-WAIT, ...) or -i's
// TCP fields (rto:, cwnd:) make the listing TCP and an UNCONN row UDP (ss -t prints UNCONN only for
// a TCP socket in CLOSE, which needs -a, where a listener is all but sure); a listing of ESTAB rows
// only is refused, asking for it, and UNIX rows (whose type is not printed) too. Without a State
// column and without `state`, refused.
Listing parse_ss(std::string_view text, const std::string& file, const SsColumns& given = {});

// Counters saved by `nstat -zas` (or -as): "TcpExtTW  1234  0.0" lines, names split into the
// kernel's section and name (TcpExt, TW) as /proc/net/snmp, netstat and snmp6 give them.
model::Parsed<model::Counter> parse_nstat(std::string_view text);

// Counters saved by net-tools' `netstat -s`: its English lines ("12 active connection openings")
// mapped back to the kernel's names, and its "Name: value" lines taken as they are. The phrases
// changed between net-tools versions; a table learnt by running each version's own code
// (netstat_s_table.inc) holds them for 1.60, 2.0 of 2013, 2015-2019 and 2.10, and the version is
// recognised from the listing itself: the one whose phrases read the most lines. netstat leaves
// some counters out when they are zero: a counter every matching version leaves out at zero,
// missing from a section that is there, is recorded as 0 (unless a line of that section did not
// read). A line no version prints is an issue; a value it cannot carry (negative) is one too.
struct NetstatStatistics {
  model::Parsed<model::Counter> counters;
  std::string dialect;             // "net-tools 2.10", or "net-tools 2015-2019 or net-tools 2.10"
  std::size_t zeros = 0;           // counters recorded as 0 because these versions leave zeros out
  std::vector<std::string> notes;  // what the version could not say
};
NetstatStatistics parse_netstat_statistics(std::string_view text);

// What a sosreport (a directory sos report wrote, unpacked) holds of one network namespace, read
// into a capture, and which file each fact came from.
struct SosreportCapture {
  model::Capture capture;
  std::vector<std::pair<std::string, std::string>> provenance;  // fact -> the file(s) it was read from
  std::string sockets_from;                                     // for messages: "proc/net copies", "ss -peaonmi", ...
  std::string owners_from;
  std::string counters_from;
  bool counters_unread = false;    // a line of its netstat -s did not read: no zero may be inferred
  std::size_t counters_zeros = 0;  // counters recorded as 0 because netstat -s leaves zeros out
};

struct SosreportOptions {
  std::optional<std::string> host;    // instead of the report's hostname
  std::optional<std::int64_t> at_ms;  // instead of the report's date --utc
  bool cmdlines = true;               // store command lines from ps auxwww
};

// Reads every capture a sosreport directory holds: the host's own namespace from the copies of
// /proc/net/* (owners joined by inode from ss -peaonmi or netstat -W -neopa, command lines from
// ps auxwww), and each namespace sos ran `ip netns exec` in from its ss/netstat listings and
// nstat/netstat -s counters. Throws Error(bad_input) naming the directory when it holds none of
// these, or Error(usage) when the report does not say when or of which host it was taken and no
// option does.
std::vector<SosreportCapture> read_sosreport(const std::filesystem::path& dir, const SosreportOptions& options);

// The snapshot's source for a listing: its tool and, as far as the listing tells, its version
// ("ss (iproute2 4.14 or later)"); and a diagnostic saying what in `file` told it.
std::string source_of(const Listing& listing);
model::Diagnostic dialect_diagnostic(const Listing& listing, const std::string& file);

// A listing parsed whole, as the capture of `host` at `at_ms` (source: the tool, proc_root: file).
model::Capture listing_capture(const Listing& listing, const std::string& host, std::int64_t at_ms,
                               const std::string& file);

}  // namespace sockhist::import
