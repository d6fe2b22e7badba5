// sockhist stats: netstat -s from the stored counters of a moment, or what each counter did over a
// range (deltas and per-second rates that never span a reboot and are never computed on gauges).
#include <array>
#include <map>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

namespace {

struct StatsOptions {
  Common common;
  std::optional<std::string> at;
  Window window;
  bool all = false;  // also counters that are zero (or did not move over a range)
};

// What --since and --until mean when not given.
const WindowDefaults k_window{std::nullopt, true, "one moment, --at"};

struct Label {
  const char* section;
  const char* name;
  const char* text;  // printed after the value, as netstat -s prints it
};

// netstat -s's wording where it is right, and correct wording where it is not (docs/kernel.md: its TW
// labels speak of fast and slow timers, which have nothing to do with these counters). TcpExt
// counters that sar and node_exporter leave out are labelled too. Counters without a label print
// as "Name: value", as netstat -s prints them.
constexpr std::array k_labels = {
    Label{"Ip", "InReceives", "total packets received"},
    Label{"Ip", "ForwDatagrams", "forwarded"},
    Label{"Ip", "InDiscards", "incoming packets discarded"},
    Label{"Ip", "InDelivers", "incoming packets delivered"},
    Label{"Ip", "OutRequests", "requests sent out"},
    Label{"Ip", "InHdrErrors", "with invalid headers"},
    Label{"Ip", "InAddrErrors", "with invalid addresses"},
    Label{"Ip", "OutDiscards", "outgoing packets dropped"},
    Label{"Ip", "OutNoRoutes", "dropped because of missing route"},
    Label{"Icmp", "InMsgs", "ICMP messages received"},
    Label{"Icmp", "InErrors", "input ICMP message failed"},
    Label{"Icmp", "OutMsgs", "ICMP messages sent"},
    Label{"Icmp", "OutErrors", "ICMP messages failed"},
    Label{"Tcp", "ActiveOpens", "active connection openings"},
    Label{"Tcp", "PassiveOpens", "passive connection openings"},
    Label{"Tcp", "AttemptFails", "failed connection attempts"},
    Label{"Tcp", "EstabResets", "connection resets received"},
    Label{"Tcp", "CurrEstab", "connections established"},
    Label{"Tcp", "InSegs", "segments received"},
    Label{"Tcp", "OutSegs", "segments sent out"},
    Label{"Tcp", "RetransSegs", "segments retransmitted"},
    Label{"Tcp", "InErrs", "bad segments received"},
    Label{"Tcp", "OutRsts", "resets sent"},
    Label{"Udp", "InDatagrams", "packets received"},
    Label{"Udp", "NoPorts", "packets to unknown port received"},
    Label{"Udp", "InErrors", "packet receive errors"},
    Label{"Udp", "OutDatagrams", "packets sent"},
    Label{"Udp", "RcvbufErrors", "receive buffer errors"},
    Label{"Udp", "SndbufErrors", "send buffer errors"},
    Label{"TcpExt", "TW", "sockets through TIME_WAIT with the full 60 s timeout (TW)"},
    Label{"TcpExt", "TWKilled", "sockets through TIME_WAIT with a timeout of 4 s or less (TWKilled)"},
    Label{"TcpExt", "TWRecycled", "TIME_WAIT slots taken over by a new outgoing connection (TWRecycled)"},
    Label{"TcpExt", "TCPTimeWaitOverflow",
          "sockets closed without TIME_WAIT: tcp_max_tw_buckets was reached (TCPTimeWaitOverflow)"},
    Label{"TcpExt", "ListenOverflows", "times the listen queue of a socket overflowed (ListenOverflows)"},
    Label{"TcpExt", "ListenDrops", "SYNs to LISTEN sockets dropped (ListenDrops)"},
    Label{"TcpExt", "TCPAbortOnData", "connections reset due to unexpected data (TCPAbortOnData)"},
    Label{"TcpExt", "TCPAbortOnClose", "connections reset due to early user close (TCPAbortOnClose)"},
    Label{"TcpExt", "TCPAbortOnTimeout", "connections aborted due to timeout (TCPAbortOnTimeout)"},
    Label{"TcpExt", "TCPAbortOnMemory", "connections aborted due to memory pressure (TCPAbortOnMemory)"},
    Label{"TcpExt", "TCPAbortOnLinger", "connections aborted after user close in linger timeout (TCPAbortOnLinger)"},
    Label{"TcpExt", "TCPAbortFailed", "times unable to send RST due to no memory (TCPAbortFailed)"},
    Label{"TcpExt", "TCPSynRetrans", "SYN and SYN/ACK retransmits (TCPSynRetrans)"},
    Label{"TcpExt", "TCPTimeouts", "retransmission timeouts (TCPTimeouts)"},
    Label{"TcpExt", "TCPLossProbes", "tail loss probes sent (TCPLossProbes)"},
    Label{"TcpExt", "TCPReqQFullDrop", "SYNs dropped because the request queue was full (TCPReqQFullDrop)"},
    Label{"TcpExt", "TCPReqQFullDoCookies", "SYN cookies sent because the request queue was full"},
    Label{"TcpExt", "SyncookiesSent", "SYN cookies sent (SyncookiesSent)"},
    Label{"TcpExt", "SyncookiesRecv", "SYN cookies received (SyncookiesRecv)"},
    Label{"TcpExt", "SyncookiesFailed", "invalid SYN cookies received (SyncookiesFailed)"},
    Label{"TcpExt", "TCPOrphanQueued", "orphaned sockets queued (TCPOrphanQueued)"},
    Label{"TcpExt", "OutOfWindowIcmps", "ICMP packets dropped because they were out-of-window"},
    Label{"TcpExt", "PruneCalled", "packets pruned from receive queue because of socket buffer overrun"},
    Label{"TcpExt", "RcvPruned", "packets pruned from receive queue (RcvPruned)"},
    Label{"TcpExt", "TCPBacklogDrop", "packets dropped from the socket backlog (TCPBacklogDrop)"},
    Label{"TcpExt", "TCPRcvQDrop", "packets dropped: receive queue full (TCPRcvQDrop)"},
    Label{"TcpExt", "TCPMemoryPressures", "times TCP entered memory pressure (TCPMemoryPressures)"},
    Label{"TcpExt", "DelayedACKs", "delayed acks sent"},
    Label{"TcpExt", "DelayedACKLocked", "delayed acks further delayed because of locked socket"},
    Label{"TcpExt", "TCPHPHits", "packet headers predicted"},
    Label{"TcpExt", "TCPPureAcks", "acknowledgments not containing data payload received"},
    Label{"TcpExt", "TCPHPAcks", "predicted acknowledgments"},
};

const char* label_of(const std::string& section, const std::string& name) {
  for (const auto& l : k_labels) {
    if (section == l.section && name == l.name) {
      return l.text;
    }
  }
  return nullptr;
}

// netstat -s's section order, then whatever else the kernel printed.
int section_rank(const std::string& section) {
  static const std::array<const char*, 16> k_order = {"Ip",       "Icmp",     "IcmpMsg",   "Tcp", "Udp",   "UdpLite",
                                                      "TcpExt",   "IpExt",    "MPTcpExt",  "Ip6", "Icmp6", "Udp6",
                                                      "UdpLite6", "Sockstat", "Sockstat6", ""};
  for (std::size_t i = 0; i < k_order.size(); ++i) {
    if (section == k_order[i]) {
      return static_cast<int>(i);
    }
  }
  return static_cast<int>(k_order.size());
}

// The Ip, Icmp, Tcp and Udp sections print every counter, as netstat does; the extension sections
// only those that are not zero, as netstat does for /proc/net/netstat.
bool always_printed(const std::string& section) {
  return section == "Ip" || section == "Icmp" || section == "Tcp" || section == "Udp";
}

template <class Item>
std::vector<const Item*> in_netstat_order(const std::vector<Item>& items) {
  std::vector<const Item*> out;
  for (const auto& c : items) {
    out.push_back(&c);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Item* a, const Item* b) { return section_rank(a->section) < section_rank(b->section); });
  return out;
}

std::string at_text(const std::vector<query::CounterValue>& counters, bool all) {
  std::string out;
  std::string section;
  for (const auto* c : in_netstat_order(counters)) {
    if (c->value == 0 && !all && !always_printed(c->section)) {
      continue;
    }
    if (c->section != section) {
      section = c->section;
      out += render::printable(section) + ":\n";
    }
    if (const char* label = label_of(c->section, c->name)) {
      out += fmt::format("    {} {}\n", c->value, label);
    } else {
      out += render::printable(fmt::format("    {}: {}", c->name, c->value)) + "\n";  // names from a file
    }
  }
  return out;
}

Result run_stats(const StatsOptions& o) {
  auto db = open_db(o.common);
  const auto scope = resolve_scope(db, o.common.host, o.common.netns);
  const auto options = render_options(o.common);
  using render::Kind;
  if (o.at && (o.window.since || o.window.until)) {
    throw Error(Exit::usage, "--at shows one moment; --since/--until a range: give one or the other");
  }
  if (!o.window.since && !o.window.until) {
    // One moment: netstat -s as it would have printed then.
    const auto snap = snapshot_for(db, scope, o.at, o.common.now_ms);
    const auto counters = query::snapshot_counters(db, snap.id);
    render::Table t;
    t.columns = {{"section"}, {"name"}, {"value", "", Kind::integer}, {"is_gauge", "", Kind::integer}, {"label"}};
    for (const auto* c : in_netstat_order(counters)) {
      const char* label = label_of(c->section, c->name);
      t.rows.push_back({c->section, c->name, c->value, std::int64_t{c->is_gauge ? 1 : 0},
                        label ? render::Value{std::string(label)} : render::Value{}});
    }
    if (options.format == render::Format::table) {
      return {fmt::format("# {}, snapshot {} at {}\n", scope_line(scope), snap.id,
                          model::format_human(snap.time_ms, options.zone)) +
                  at_text(counters, o.all),
              0};
    }
    auto doc = json_head("stats", o.common, &scope);
    doc["snapshot"] = {{"id", snap.id},
                       {"time", model::format_iso_utc(snap.time_ms)},
                       {"time_epoch", static_cast<double>(snap.time_ms) / 1000.0},
                       {"boot_id", snap.boot_id}};
    return {render::render(t, options, doc), 0};
  }
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
  const auto range = query::counter_range(db, scope, since, until);
  if (range.snapshots.size() < 2) {
    throw Error(Exit::usage,
                fmt::format("{} snapshot(s) of {} between {} and {}: a range needs two", range.snapshots.size(),
                            scope.host, o.window.since.value_or("the start"), o.window.until.value_or("now")));
  }
  render::Table t;
  t.columns = {{"section"},
               {"name"},
               {"delta", "", Kind::integer},
               {"per_second", "PER SECOND", Kind::real, "per_s"},
               {"first", "", Kind::integer},
               {"last", "", Kind::integer},
               {"min", "", Kind::integer},
               {"max", "", Kind::integer},
               {"kind", "", Kind::text},
               {"resets", "", Kind::integer, "", 2, false, true}};
  for (const auto* c : in_netstat_order(range.counters)) {
    const bool moved = c->is_gauge ? c->min != c->max : c->delta != 0 || c->resets != 0;
    if (!moved && !o.all) {
      continue;
    }
    const auto opt = [](const std::optional<std::int64_t>& v) { return v ? render::Value{*v} : render::Value{}; };
    t.rows.push_back({c->section, c->name, c->is_gauge ? render::Value{} : render::Value{c->delta},
                      c->rate_per_s ? render::Value{*c->rate_per_s} : render::Value{}, opt(c->first), opt(c->last),
                      c->is_gauge ? opt(c->min) : render::Value{}, c->is_gauge ? opt(c->max) : render::Value{},
                      std::string(c->is_gauge ? "gauge" : "counter"), c->resets});
  }
  const auto& first = range.snapshots.front();
  const auto& last = range.snapshots.back();
  std::vector<std::string> heading = {
      fmt::format("# {}: {} snapshots from {} to {}, {} of monotonic time{}", scope_line(scope), range.snapshots.size(),
                  model::format_human(first.time_ms, options.zone), model::format_human(last.time_ms, options.zone),
                  model::format_duration(range.covered_ms),
                  range.boots > 1 ? fmt::format(", {} boots (no delta spans a reboot)", range.boots) : "")};
  if (options.format == render::Format::json) {
    auto doc = json_head("stats", o.common, &scope);
    doc["range"] = {{"first_snapshot", first.id},
                    {"last_snapshot", last.id},
                    {"from", model::format_iso_utc(first.time_ms)},
                    {"to", model::format_iso_utc(last.time_ms)},
                    {"snapshots", range.snapshots.size()},
                    {"monotonic_seconds", static_cast<double>(range.covered_ms) / 1000.0},
                    {"boots", range.boots}};
    return {render::render(t, options, doc), 0};
  }
  if (t.rows.empty()) {
    t.notes.push_back("(no counter moved; --all lists them all)");
  }
  return {render::render(t, options, {}, heading), 0};
}

}  // namespace

void setup_stats(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<StatsOptions>();
  auto* sub = add_command(app, "stats", "netstat -s at a moment, or each counter's delta and rate over a range",
                          selected, [o] { return run_stats(*o); });
  add_common(*sub, o->common);
  sub->add_option("--at", o->at, "The moment (default: the newest snapshot)");
  add_window(*sub, o->window, k_window, "Start of a range");
  sub->add_flag("-a,--all", o->all, "Also counters that are zero (at a moment) or did not move (over a range)");
}

}  // namespace sockhist::analyzer
