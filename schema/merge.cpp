#include "sockhist/merge.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "sockhist/counters.hpp"
#include "sockhist/error.hpp"
#include "sockhist/model.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"

namespace sockhist::store {

namespace {

std::optional<std::string> opt_text(const SQLite::Column& c) {
  return c.isNull() ? std::nullopt : std::optional(c.getString());
}
std::optional<std::int64_t> opt_int(const SQLite::Column& c) {
  return c.isNull() ? std::nullopt : std::optional(c.getInt64());
}

model::UnixType unix_type_of(const std::optional<std::string>& text) {
  for (int t = 0; t <= static_cast<int>(model::UnixType::seqpacket); ++t) {
    if (text && model::name(static_cast<model::UnixType>(t)) == *text) {
      return static_cast<model::UnixType>(t);
    }
  }
  return model::UnixType::none;
}

model::OwnerScan owner_scan_of(const std::string& text) {
  for (const auto scan : {model::OwnerScan::complete, model::OwnerScan::partial}) {
    if (model::name(scan) == text) {
      return scan;
    }
  }
  return model::OwnerScan::skipped;
}

struct InputHost {
  std::int64_t id = 0;
  std::string name;
  std::optional<std::string> machine_id;
  std::string target;  // the output's name for it
};

struct InputNetns {
  std::int64_t id = 0;
  std::int64_t host_id = 0;
  std::uint64_t inode = 0;
  std::optional<std::string> name;
  bool initial = true;
};

// One span of the input as a socket of the snapshots it covers.
struct LiveSpan {
  std::int64_t last_id = 0;
  std::int64_t first_time_ms = 0;
  std::optional<std::int64_t> process_id;
  bool carried = false;
  model::Socket socket;
};

// The process rows the spans of one namespace refer to.
struct InputProcess {
  model::Process process;
  std::string boot_id;
};

// Where the output's history of a namespace stands: its newest time and the times it holds.
struct OutputHistory {
  std::optional<std::int64_t> newest_ms;
  std::vector<std::int64_t> times;  // sorted
};

OutputHistory output_history(SQLite::Database& out, const std::string& host, std::uint64_t inode) {
  OutputHistory h;
  SQLite::Statement q(out,
                      "SELECT s.time_ms FROM snapshots s JOIN netns n ON n.netns_id = s.netns_id "
                      "JOIN hosts h ON h.host_id = n.host_id WHERE h.name = ? AND n.inode = ? ORDER BY s.time_ms");
  q.bind(1, host);
  q.bind(2, static_cast<std::int64_t>(inode));
  while (q.executeStep()) {
    h.times.push_back(q.getColumn(0).getInt64());
  }
  if (!h.times.empty()) {
    h.newest_ms = h.times.back();
  }
  return h;
}

}  // namespace

SQLite::Database open_input(const std::filesystem::path& path) {
  auto db = open_read_only(path);
  try {
    SQLite::Statement q(db, "PRAGMA quick_check");
    std::string first;
    if (q.executeStep()) {
      first = q.getColumn(0).getString();
    }
    if (first != "ok") {
      // quick_check's first row may hold several lines: keep the message on one.
      std::replace(first.begin(), first.end(), '\n', ' ');
      if (first.size() > 160) {
        first = first.substr(0, 160) + "...";
      }
      throw Error(Exit::db_refused, fmt::format("{}: corrupt (quick_check: {})", path.string(), first));
    }
  } catch (const SQLite::Exception& e) {
    throw Error(Exit::db_refused, fmt::format("{}: corrupt ({})", path.string(), e.what()));
  }
  return db;
}

MergeStats merge_into(SQLite::Database& output, SQLite::Database& input, const std::string& input_name,
                      const CopyFilter& filter, const std::function<void(std::int64_t, std::int64_t)>& progress,
                      bool plan_only) {
  MergeStats stats;
  // Hosts: map each to the output's, refusing before anything is written.
  std::vector<InputHost> hosts;
  {
    SQLite::Statement q(input, "SELECT host_id, name, machine_id FROM hosts ORDER BY host_id");
    while (q.executeStep()) {
      InputHost h{q.getColumn(0).getInt64(), q.getColumn(1).getString(), opt_text(q.getColumn(2)), {}};
      if (filter.host && *filter.host != h.name) {
        continue;
      }
      h.target = h.name;
      if (h.machine_id) {
        SQLite::Statement same(output, "SELECT name FROM hosts WHERE machine_id = ?");
        same.bind(1, *h.machine_id);
        if (same.executeStep()) {
          h.target = same.getColumn(0).getString();  // the same machine, perhaps under another name
        } else {
          SQLite::Statement named(output, "SELECT machine_id FROM hosts WHERE name = ?");
          named.bind(1, h.name);
          if (named.executeStep() && !named.getColumn(0).isNull()) {
            throw Error(
                Exit::db_refused,
                fmt::format("{}: host {} has machine-id {}, but the output's {} is machine {}: two machines "
                            "with one name; nothing merged from {}",
                            input_name, h.name, *h.machine_id, h.name, named.getColumn(0).getString(), input_name));
          }
        }
      }
      hosts.push_back(std::move(h));
    }
  }
  if (filter.host && hosts.empty()) {
    throw Error(Exit::usage, fmt::format("--host {}: {} holds no such host", *filter.host, input_name));
  }
  std::map<std::int64_t, const InputHost*> host_by_id;
  for (const auto& h : hosts) {
    host_by_id[h.id] = &h;
  }
  std::vector<InputNetns> namespaces;
  {
    SQLite::Statement q(input, "SELECT netns_id, host_id, inode, name, is_initial FROM netns ORDER BY netns_id");
    while (q.executeStep()) {
      InputNetns n{q.getColumn(0).getInt64(), q.getColumn(1).getInt64(),
                   static_cast<std::uint64_t>(q.getColumn(2).getInt64()), opt_text(q.getColumn(3)),
                   q.getColumn(4).getInt() != 0};
      if (host_by_id.count(n.host_id) > 0) {
        namespaces.push_back(std::move(n));
      }
    }
  }
  stats.hosts = static_cast<std::int64_t>(hosts.size());
  stats.namespaces = static_cast<std::int64_t>(namespaces.size());

  // Which snapshots to copy, namespace by namespace (the output may already hold some).
  struct Plan {
    const InputNetns* netns = nullptr;
    std::vector<std::int64_t> ids;  // input snapshot ids to write, in order
  };
  std::vector<Plan> plans;
  std::int64_t total = 0;
  for (const auto& n : namespaces) {
    const auto& host = *host_by_id[n.host_id];
    const auto history = output_history(output, host.target, n.inode);
    Plan plan{&n, {}};
    SQLite::Statement q(input, "SELECT snapshot_id, time_ms FROM snapshots WHERE netns_id = ? ORDER BY snapshot_id");
    q.bind(1, n.id);
    std::int64_t last_time = std::numeric_limits<std::int64_t>::min();
    while (q.executeStep()) {
      const auto id = q.getColumn(0).getInt64();
      const auto time = q.getColumn(1).getInt64();
      if ((filter.since_ms && time < *filter.since_ms) || (filter.until_ms && time > *filter.until_ms)) {
        ++stats.filtered;
        continue;
      }
      if (std::binary_search(history.times.begin(), history.times.end(), time)) {
        ++stats.present;
        continue;
      }
      if ((history.newest_ms && time < *history.newest_ms) || time <= last_time) {
        ++stats.too_old;  // spans need snapshots in time order
        continue;
      }
      last_time = time;
      plan.ids.push_back(id);
    }
    total += static_cast<std::int64_t>(plan.ids.size());
    if (!plan.ids.empty()) {
      plans.push_back(std::move(plan));
    }
  }

  if (plan_only) {
    stats.added = total;
    return stats;
  }
  SnapshotWriter writer(output);
  std::int64_t done = 0;
  for (const auto& plan : plans) {
    const auto& n = *plan.netns;
    const auto& host = *host_by_id[n.host_id];
    // The input's processes and states for this namespace, and the host's users.
    std::unordered_map<std::int64_t, InputProcess> processes;
    {
      SQLite::Statement q(input,
                          "SELECT process_id, boot_id, pid, start_ticks, comm, cmdline, uid, user FROM processes "
                          "WHERE host_id = ?");
      q.bind(1, n.host_id);
      while (q.executeStep()) {
        InputProcess p;
        p.boot_id = q.getColumn(1).getString();
        p.process.pid = q.getColumn(2).getInt();
        p.process.start_ticks = static_cast<std::uint64_t>(q.getColumn(3).getInt64());
        p.process.comm = q.getColumn(4).getString();
        p.process.cmdline = opt_text(q.getColumn(5));
        p.process.uid = static_cast<std::uint32_t>(q.getColumn(6).getInt64());
        p.process.user = opt_text(q.getColumn(7));
        processes.emplace(q.getColumn(0).getInt64(), std::move(p));
      }
    }
    std::vector<std::pair<std::uint32_t, std::string>> users;
    {
      SQLite::Statement q(input, "SELECT uid, name FROM users WHERE host_id = ?");
      q.bind(1, n.host_id);
      while (q.executeStep()) {
        users.emplace_back(static_cast<std::uint32_t>(q.getColumn(0).getInt64()), q.getColumn(1).getString());
      }
    }
    std::unordered_map<std::int64_t, std::pair<model::Proto, model::SockState>> states;
    {
      SQLite::Statement q(input, "SELECT state_id, proto, state FROM socket_states");
      while (q.executeStep()) {
        const auto proto = model::proto_from_name(q.getColumn(1).getString());
        const auto state = model::sock_state_from_name(q.getColumn(2).getString());
        if (proto && state) {
          states[q.getColumn(0).getInt64()] = {*proto, *state};
        }
      }
    }
    const auto names = store::counter_names(input);
    // The spans alive at the first snapshot to copy, then those that begin later, in order.
    SQLite::Statement spans(
        input,
        "SELECT sp.first_snapshot_id, sp.last_snapshot_id, coalesce(sp.first_time_ms, f.time_ms), sp.state_id, "
        "coalesce(sp.family, 0), a.addr, coalesce(sp.local_port, 0), coalesce(sp.remote_addr, ''), "
        "coalesce(sp.remote_port, 0), sp.tx_queue, sp.rx_queue, sp.timer, sp.timer_ms, sp.retransmits, sp.probes, "
        "sp.uid, sp.inode, sp.cookie, sp.backlog, sp.peer_inode, sp.sock_type, coalesce(sp.unix_flags, 0), "
        "sp.process_id, sp.owner_carried FROM socket_spans sp JOIN addresses a ON a.addr_id = sp.local_addr_id "
        "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
        "WHERE sp.netns_id = ? AND sp.first_snapshot_id <= ? AND sp.last_snapshot_id >= ? "
        "ORDER BY sp.first_snapshot_id, sp.span_id");
    spans.bind(1, n.id);
    spans.bind(2, plan.ids.back());
    spans.bind(3, plan.ids.front());
    bool have_span = spans.executeStep();
    std::vector<LiveSpan> live;
    SQLite::Statement snapshot(
        input,
        "SELECT time_ms, boot_id, uptime_ms, hostname, kernel, user_hz, source, proc_root, capture_ms, "
        "tcp_fin_timeout, tcp_max_tw_buckets, port_range_low, port_range_high, tcp_tw_reuse, somaxconn, owners, "
        "skipped_lines, netns_pid FROM snapshots WHERE snapshot_id = ?");
    SQLite::Statement diagnostics(input, "SELECT file, line, message FROM diagnostics WHERE snapshot_id = ?");
    bool first = true;
    // One capture per snapshot, with the counters as they stood then.
    replay_counters(input, n.id, plan.ids, [&](std::size_t index, const CounterValues& counters) {
      const auto id = plan.ids[index];
      snapshot.reset();
      snapshot.bind(1, id);
      if (!snapshot.executeStep()) {
        throw Error(Exit::db_refused, fmt::format("{}: snapshot {} vanished while merging", input_name, id));
      }
      model::Capture c;
      c.host = host.target;
      c.machine_id = host.machine_id;
      c.time_ms = snapshot.getColumn(0).getInt64();
      c.boot_id = opt_text(snapshot.getColumn(1));
      c.uptime_ms = opt_int(snapshot.getColumn(2));
      c.hostname = snapshot.getColumn(3).isNull() ? host.name : snapshot.getColumn(3).getString();
      c.kernel = opt_text(snapshot.getColumn(4));
      c.user_hz = snapshot.getColumn(5).getInt64();
      c.source = snapshot.getColumn(6).getString();
      c.proc_root = opt_text(snapshot.getColumn(7));
      c.capture_ms = snapshot.getColumn(8).getInt64();
      c.settings = {opt_int(snapshot.getColumn(9)),  opt_int(snapshot.getColumn(10)), opt_int(snapshot.getColumn(11)),
                    opt_int(snapshot.getColumn(12)), opt_int(snapshot.getColumn(13)), opt_int(snapshot.getColumn(14))};
      c.owners = owner_scan_of(snapshot.getColumn(15).getString());
      c.skipped_lines = static_cast<std::size_t>(snapshot.getColumn(16).getInt64());
      if (!snapshot.getColumn(17).isNull()) {
        c.netns_pid = snapshot.getColumn(17).getInt();
      }
      c.netns_inode = n.inode;
      c.netns_name = n.name;
      c.netns_initial = n.initial;
      if (first) {
        c.users = users;
      }
      diagnostics.reset();
      diagnostics.bind(1, id);
      while (diagnostics.executeStep()) {
        c.diagnostics.push_back({diagnostics.getColumn(0).getString(),
                                 static_cast<std::size_t>(diagnostics.getColumn(1).getInt64()),
                                 diagnostics.getColumn(2).getString()});
      }
      // Spans: drop those that ended, add those that begin at this snapshot.
      std::erase_if(live, [&](const LiveSpan& s) { return s.last_id < id; });
      while (have_span && spans.getColumn(0).getInt64() <= id) {
        LiveSpan s;
        s.last_id = spans.getColumn(1).getInt64();
        s.first_time_ms = spans.getColumn(2).isNull() ? c.time_ms : spans.getColumn(2).getInt64();
        const auto state = states.find(spans.getColumn(3).getInt64());
        if (s.last_id >= id && state != states.end()) {
          auto& k = s.socket;
          k.proto = state->second.first;
          k.state = state->second.second;
          k.family = spans.getColumn(4).getInt();
          k.local_addr = spans.getColumn(5).getString();
          k.local_port = static_cast<std::uint16_t>(spans.getColumn(6).getInt());
          k.remote_addr = spans.getColumn(7).getString();
          k.remote_port = static_cast<std::uint16_t>(spans.getColumn(8).getInt());
          k.tx_queue = static_cast<std::uint32_t>(spans.getColumn(9).getInt64());
          k.rx_queue = static_cast<std::uint32_t>(spans.getColumn(10).getInt64());
          k.timer = static_cast<model::TimerKind>(spans.getColumn(11).getInt());
          k.timer_ms = static_cast<std::uint32_t>(spans.getColumn(12).getInt64());
          k.retransmits = static_cast<std::uint32_t>(spans.getColumn(13).getInt64());
          k.probes = static_cast<std::uint32_t>(spans.getColumn(14).getInt64());
          k.uid = static_cast<std::uint32_t>(spans.getColumn(15).getInt64());
          k.inode = static_cast<std::uint64_t>(spans.getColumn(16).getInt64());
          if (!spans.getColumn(17).isNull()) {
            k.cookie = static_cast<std::uint64_t>(spans.getColumn(17).getInt64());
          }
          if (!spans.getColumn(18).isNull()) {
            k.backlog = static_cast<std::uint32_t>(spans.getColumn(18).getInt64());
          }
          if (!spans.getColumn(19).isNull()) {
            k.peer_inode = static_cast<std::uint64_t>(spans.getColumn(19).getInt64());
          }
          k.unix_type = unix_type_of(opt_text(spans.getColumn(20)));
          k.unix_flags = static_cast<std::uint32_t>(spans.getColumn(21).getInt64());
          s.process_id = opt_int(spans.getColumn(22));
          s.carried = spans.getColumn(23).getInt() != 0;
          live.push_back(std::move(s));
        }
        have_span = spans.executeStep();
      }
      std::map<std::int64_t, bool> referenced;  // process_id -> used
      for (const auto& s : live) {
        model::Socket k = s.socket;
        // A TIME_WAIT timer counts down as the kernel's did (the span holds its first value).
        if (k.timer == model::TimerKind::timewait) {
          const auto elapsed = c.time_ms - s.first_time_ms;
          k.timer_ms = static_cast<std::uint32_t>(std::max<std::int64_t>(0, k.timer_ms - elapsed));
        }
        if (s.process_id) {
          if (const auto p = processes.find(*s.process_id); p != processes.end()) {
            k.pid = p->second.process.pid;
            referenced[*s.process_id] = true;
          }
        }
        c.sockets.push_back(std::move(k));
        c.owner_carried.push_back(s.carried ? 1 : 0);
      }
      for (const auto& [process_id, used] : referenced) {
        c.processes.push_back(processes.at(process_id).process);
      }
      // In the input's counter order (its ids follow the kernel's order), as stats lists them.
      for (const auto& [counter_id, name] : names) {
        if (const auto value = counters.find(counter_id); value != counters.end()) {
          c.counters.push_back({name.section, name.name, value->second, name.is_gauge});
        }
      }
      writer.write(c);
      first = false;
      ++stats.added;
      ++done;
      if (progress) {
        progress(done, total);
      }
    });
  }
  return stats;
}

}  // namespace sockhist::store
