// Reading the socket listings people save during incidents (netstat and ss outputs) into the same
// model as a live snapshot, so that an imported snapshot is stored, shown and analysed like any
// other. Recognised from their header; a malformed line is reported with its line number and
// skipped; a file that is not one of these formats is refused.
#pragma once

#include <string>
#include <string_view>

#include "sockhist/model.hpp"

namespace sockhist::import {

// What a listing holds, and what its format could carry.
struct Listing {
  std::string format;   // "netstat -antp", "netstat -neopa", "ss -tanpo", "ss -peaonmi", ...
  std::string tool;     // "netstat" or "ss": the snapshot's source
  bool owners = false;  // a PID/Program or users:(...) column
  bool timers = false;  // netstat -o or ss -o
  bool inodes = false;  // netstat -e or ss -e
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
Listing parse_ss(std::string_view text, const std::string& file);

}  // namespace sockhist::import
