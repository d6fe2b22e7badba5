// Two snapshots compared: of one host at two moments, or of two hosts at (nearly) the same one.
// The computation behind `sockhist diff`.
#pragma once

#include <string>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "sockhist/query.hpp"

namespace sockhist::query {

// One side of a comparison: a snapshot with its sockets and counters.
struct DiffSide {
  Scope scope;
  SnapshotSummary snapshot;
  std::vector<SocketRow> sockets;
  std::vector<CounterValue> counters;
};
// Reads a snapshot's sockets and counters.
DiffSide load_side(SQLite::Database& db, const Scope& scope, const SnapshotSummary& snapshot);

// One difference: a section, what it is about, the two values.
struct Difference {
  std::string section;  // listening, process only on one side, state, remote, process, counter ...
  std::string key;
  double a = 0, b = 0;
  std::string detail;
  bool counts = true;  // a difference for the exit code (the moments' counter changes are not)
};

// How owners are matched across the two sides.
enum class OwnerMatch {
  // By process name. A name one side cut (comm at 15 characters, netstat's pid/name at 19) matches
  // the one longer name on the other side it begins.
  name,
  // By pid: for one machine at one moment recorded twice (a sosreport's listings, a listing and a
  // snapshot), where ss names a process by its comm and netstat by its command line's first word.
  pid,
};

// Listeners and owning processes on one side only; socket counts by state, by remote endpoint
// and by process that differ; counters: between two hosts, each per second of its host's uptime
// where they differ by more than `counter_threshold` percent; between two moments of one host,
// what each changed by (information, counts = false). Sorted by section, the largest first.
std::vector<Difference> diff_sides(const DiffSide& a, const DiffSide& b, double counter_threshold,
                                   OwnerMatch owners = OwnerMatch::name);

}  // namespace sockhist::query
