// Merge: every snapshot of another sockhist database that the output lacks, rebuilt from the
// input's spans, processes and counters and written through the snapshot writer.
#include "sockhist/merge.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "merge_connections.hpp"
#include "socket_values.hpp"
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
  std::optional<std::int64_t> process_id;
  bool carried = false;
  model::Socket socket;
  SocketValues values;  // as of the snapshot being rebuilt
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

// Maps each input host to the output's (the same machine-id, else the same name), refusing two
// machines with one name before anything is written.
std::vector<InputHost> map_hosts(SQLite::Database& output, SQLite::Database& input, const std::string& input_name,
                                 const CopyFilter& filter, std::vector<std::string>& warnings) {
  std::vector<InputHost> hosts;
  SQLite::Statement q(input, "SELECT host_id, name, machine_id FROM hosts ORDER BY host_id");
  while (q.executeStep()) {
    InputHost h{q.getColumn(0).getInt64(), q.getColumn(1).getString(), opt_text(q.getColumn(2)), {}};
    if (filter.host && *filter.host != h.name) {
      continue;
    }
    const auto joined = filter.join.find(h.name);
    h.target = joined != filter.join.end() ? joined->second : h.name;
    if (h.machine_id) {
      SQLite::Statement named(output, "SELECT machine_id FROM hosts WHERE name = ?");
      named.bind(1, h.target);
      if (named.executeStep() && !named.getColumn(0).isNull() && named.getColumn(0).getString() != *h.machine_id) {
        throw Error(
            Exit::db_refused,
            fmt::format("{}: host {} has machine-id {}, but the output's {} is machine {}: two machines "
                        "with one name; nothing merged from {}",
                        input_name, h.name, *h.machine_id, h.target, named.getColumn(0).getString(), input_name));
      }
      SQLite::Statement same(output, "SELECT name FROM hosts WHERE machine_id = ? AND name != ? ORDER BY name");
      same.bind(1, *h.machine_id);
      same.bind(2, h.target);
      while (same.executeStep()) {
        warnings.push_back(
            fmt::format("{}: host {} has the machine-id of host {} already in the output (cloned "
                        "images and containers share them): kept as two hosts; merge --join {}={} "
                        "makes them one",
                        input_name, h.target, same.getColumn(0).getString(), h.name, same.getColumn(0).getString()));
      }
    }
    hosts.push_back(std::move(h));
  }
  if (filter.host && hosts.empty()) {
    throw Error(Exit::usage, fmt::format("--host {}: {} holds no such host", *filter.host, input_name));
  }
  return hosts;
}

// The input's namespaces of the hosts being copied.
std::vector<InputNetns> input_namespaces(SQLite::Database& input,
                                         const std::map<std::int64_t, const InputHost*>& hosts) {
  std::vector<InputNetns> namespaces;
  SQLite::Statement q(input, "SELECT netns_id, host_id, inode, name, is_initial FROM netns ORDER BY netns_id");
  while (q.executeStep()) {
    InputNetns n{q.getColumn(0).getInt64(), q.getColumn(1).getInt64(),
                 static_cast<std::uint64_t>(q.getColumn(2).getInt64()), opt_text(q.getColumn(3)),
                 q.getColumn(4).getInt() != 0};
    if (hosts.count(n.host_id) > 0) {
      namespaces.push_back(std::move(n));
    }
  }
  return namespaces;
}

// Which snapshots of one namespace to copy: inside the filter, not yet in the output, and newer
// than the output's newest of that namespace (spans need snapshots in time order).
std::vector<std::int64_t> plan_namespace(SQLite::Database& output, SQLite::Database& input, const InputNetns& n,
                                         const InputHost& host, const CopyFilter& filter, MergeStats& stats) {
  const auto history = output_history(output, host.target, n.inode);
  std::vector<std::int64_t> ids;
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
      ++stats.too_old;
      continue;
    }
    last_time = time;
    ids.push_back(id);
  }
  return ids;
}

// What the snapshots of one input namespace refer to: processes, users, states, counter names.
struct NamespaceInputs {
  std::unordered_map<std::int64_t, InputProcess> processes;
  std::vector<std::pair<std::uint32_t, std::string>> users;
  std::unordered_map<std::int64_t, std::pair<model::Proto, model::SockState>> states;
  std::map<std::int64_t, CounterName> counter_names;
};

NamespaceInputs read_inputs(SQLite::Database& input, std::int64_t host_id) {
  NamespaceInputs in;
  SQLite::Statement processes(input,
                              "SELECT process_id, boot_id, pid, start_ticks, comm, cmdline, uid, user FROM processes "
                              "WHERE host_id = ?");
  processes.bind(1, host_id);
  while (processes.executeStep()) {
    InputProcess p;
    p.boot_id = processes.getColumn(1).getString();
    p.process.pid = processes.getColumn(2).getInt();
    p.process.start_ticks = static_cast<std::uint64_t>(processes.getColumn(3).getInt64());
    p.process.comm = processes.getColumn(4).getString();
    p.process.cmdline = opt_text(processes.getColumn(5));
    p.process.uid = static_cast<std::uint32_t>(processes.getColumn(6).getInt64());
    p.process.user = opt_text(processes.getColumn(7));
    in.processes.emplace(processes.getColumn(0).getInt64(), std::move(p));
  }
  SQLite::Statement users(input, "SELECT uid, name FROM users WHERE host_id = ?");
  users.bind(1, host_id);
  while (users.executeStep()) {
    in.users.emplace_back(static_cast<std::uint32_t>(users.getColumn(0).getInt64()), users.getColumn(1).getString());
  }
  SQLite::Statement states(input, "SELECT state_id, proto, state FROM socket_states");
  while (states.executeStep()) {
    const auto proto = model::proto_from_name(states.getColumn(1).getString());
    const auto state = model::sock_state_from_name(states.getColumn(2).getString());
    if (proto && state) {
      in.states[states.getColumn(0).getInt64()] = {*proto, *state};
    }
  }
  in.counter_names = counter_names(input);
  return in;
}

// The spans of one namespace, read once in order and kept while they cover the snapshot being
// rebuilt: those alive at the first snapshot to copy, then those that begin later; and the values
// each of them changed to, applied as their snapshots come.
class SpanReplay {
 public:
  SpanReplay(SQLite::Database& input, std::int64_t netns_id, const std::vector<std::int64_t>& ids,
             const NamespaceInputs& in)
      : m_spans(input,
                "SELECT sp.first_snapshot_id, sp.last_snapshot_id, coalesce(sp.first_time_ms, f.time_ms), "
                "sp.state_id, coalesce(sp.family, 0), a.addr, coalesce(sp.local_port, 0), "
                "coalesce(sp.remote_addr, ''), coalesce(sp.remote_port, 0), sp.tx_queue, sp.rx_queue, sp.timer, "
                "sp.timer_ms, sp.retransmits, sp.probes, sp.uid, sp.inode, sp.cookie, sp.backlog, sp.peer_inode, "
                "sp.sock_type, coalesce(sp.unix_flags, 0), sp.process_id, sp.owner_carried, sp.span_id "
                "FROM socket_spans sp JOIN addresses a ON a.addr_id = sp.local_addr_id "
                "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
                "WHERE sp.netns_id = ? AND sp.first_snapshot_id <= ? AND sp.last_snapshot_id >= ? "
                "ORDER BY sp.first_snapshot_id, sp.span_id"),
        m_values(input,
                 "SELECT v.snapshot_id, v.span_id, v.tx_queue, v.rx_queue, v.timer, v.timer_expires_ms, "
                 "v.retransmits, v.probes, v.backlog FROM socket_values v "
                 "JOIN socket_spans sp ON sp.span_id = v.span_id "
                 "WHERE sp.netns_id = ?1 AND sp.first_snapshot_id <= ?2 AND sp.last_snapshot_id >= ?3 "
                 "AND v.snapshot_id <= ?2 ORDER BY v.snapshot_id, v.span_id"),
        m_in(in) {
    for (SQLite::Statement* q : {&m_spans, &m_values}) {
      q->bind(1, netns_id);
      q->bind(2, ids.back());
      q->bind(3, ids.front());
    }
    m_have = m_spans.executeStep();
    m_have_values = m_values.executeStep();
  }

  // Moves to snapshot `id` (taken at time_ms): drops the spans that ended, adds those that begin,
  // and gives each the values it had there.
  void advance(std::int64_t id, std::int64_t time_ms) {
    std::erase_if(m_live, [&](const auto& entry) { return entry.second.last_id < id; });
    for (; m_have && m_spans.getColumn(0).getInt64() <= id; m_have = m_spans.executeStep()) {
      LiveSpan s;
      s.last_id = m_spans.getColumn(1).getInt64();
      const std::int64_t first_time_ms = m_spans.getColumn(2).isNull() ? time_ms : m_spans.getColumn(2).getInt64();
      const auto state = m_in.states.find(m_spans.getColumn(3).getInt64());
      if (s.last_id >= id && state != m_in.states.end()) {
        s.socket = socket_of(state->second);
        s.values = SocketValues::of(s.socket, first_time_ms);
        s.process_id = opt_int(m_spans.getColumn(22));
        s.carried = m_spans.getColumn(23).getInt() != 0;
        m_live.emplace(m_spans.getColumn(24).getInt64(), std::move(s));
      }
    }
    for (; m_have_values && m_values.getColumn(0).getInt64() <= id; m_have_values = m_values.executeStep()) {
      const auto live = m_live.find(m_values.getColumn(1).getInt64());
      if (live == m_live.end()) {
        continue;  // a span that ended before the first snapshot to copy
      }
      SocketValues& v = live->second.values;
      const auto u32 = [&](int column) { return static_cast<std::uint32_t>(m_values.getColumn(column).getInt64()); };
      v.tx_queue = u32(2);
      v.rx_queue = u32(3);
      v.timer = static_cast<std::uint8_t>(m_values.getColumn(4).getInt());
      v.timer_expires_ms = m_values.getColumn(5).getInt64();
      v.timer_off_ms = 0;
      v.retransmits = u32(6);
      v.probes = u32(7);
      v.backlog = m_values.getColumn(8).isNull() ? std::nullopt : std::optional(u32(8));
    }
  }

  // The sockets of the current snapshot, with their values and owners, into the capture.
  void add_sockets(model::Capture& c) const {
    std::map<std::int64_t, bool> referenced;  // process_id -> used
    for (const auto& [span_id, s] : m_live) {
      model::Socket k = s.socket;
      k.tx_queue = s.values.tx_queue;
      k.rx_queue = s.values.rx_queue;
      k.timer = static_cast<model::TimerKind>(s.values.timer);
      // A running timer counts down as the kernel's did.
      k.timer_ms = static_cast<std::uint32_t>(s.values.timer_ms_at(c.time_ms));
      k.retransmits = s.values.retransmits;
      k.probes = s.values.probes;
      k.backlog = s.values.backlog;
      if (s.process_id) {
        if (const auto p = m_in.processes.find(*s.process_id); p != m_in.processes.end()) {
          k.pid = p->second.process.pid;
          referenced[*s.process_id] = true;
        }
      }
      c.sockets.push_back(std::move(k));
      c.owner_carried.push_back(s.carried ? 1 : 0);
    }
    for (const auto& [process_id, used] : referenced) {
      c.processes.push_back(m_in.processes.at(process_id).process);
    }
  }

 private:
  model::Socket socket_of(std::pair<model::Proto, model::SockState> state) {
    model::Socket k;
    k.proto = state.first;
    k.state = state.second;
    k.family = m_spans.getColumn(4).getInt();
    k.local_addr = m_spans.getColumn(5).getString();
    k.local_port = static_cast<std::uint16_t>(m_spans.getColumn(6).getInt());
    k.remote_addr = m_spans.getColumn(7).getString();
    k.remote_port = static_cast<std::uint16_t>(m_spans.getColumn(8).getInt());
    k.tx_queue = static_cast<std::uint32_t>(m_spans.getColumn(9).getInt64());
    k.rx_queue = static_cast<std::uint32_t>(m_spans.getColumn(10).getInt64());
    k.timer = static_cast<model::TimerKind>(m_spans.getColumn(11).getInt());
    k.timer_ms = static_cast<std::uint32_t>(m_spans.getColumn(12).getInt64());
    k.retransmits = static_cast<std::uint32_t>(m_spans.getColumn(13).getInt64());
    k.probes = static_cast<std::uint32_t>(m_spans.getColumn(14).getInt64());
    k.uid = static_cast<std::uint32_t>(m_spans.getColumn(15).getInt64());
    k.inode = static_cast<std::uint64_t>(m_spans.getColumn(16).getInt64());
    if (!m_spans.getColumn(17).isNull()) {
      k.cookie = static_cast<std::uint64_t>(m_spans.getColumn(17).getInt64());
    }
    if (!m_spans.getColumn(18).isNull()) {
      k.backlog = static_cast<std::uint32_t>(m_spans.getColumn(18).getInt64());
    }
    if (!m_spans.getColumn(19).isNull()) {
      k.peer_inode = static_cast<std::uint64_t>(m_spans.getColumn(19).getInt64());
    }
    k.unix_type = unix_type_of(opt_text(m_spans.getColumn(20)));
    k.unix_flags = static_cast<std::uint32_t>(m_spans.getColumn(21).getInt64());
    return k;
  }

  SQLite::Statement m_spans;
  SQLite::Statement m_values;
  const NamespaceInputs& m_in;
  bool m_have = false;
  bool m_have_values = false;
  std::map<std::int64_t, LiveSpan> m_live;  // by span_id
};

// The snapshot row of an input snapshot as the head of a capture (no sockets or counters yet).
model::Capture snapshot_head(SQLite::Statement& snapshot, SQLite::Statement& diagnostics, std::int64_t id,
                             const InputHost& host, const InputNetns& n, const std::string& input_name) {
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
  if (!snapshot.getColumn(18).isNull()) {
    c.netns_cookie = static_cast<std::uint64_t>(snapshot.getColumn(18).getInt64());
  }
  c.netns_inode = n.inode;
  c.netns_name = n.name;
  c.netns_initial = n.initial;
  diagnostics.reset();
  diagnostics.bind(1, id);
  while (diagnostics.executeStep()) {
    c.diagnostics.push_back({diagnostics.getColumn(0).getString(),
                             static_cast<std::size_t>(diagnostics.getColumn(1).getInt64()),
                             diagnostics.getColumn(2).getString()});
  }
  return c;
}

// Rebuilds each planned snapshot of one namespace and writes it: one capture per snapshot, with
// its sockets and the counters as they stood then.
void copy_namespace(SnapshotWriter& writer, SQLite::Database& input, const std::string& input_name,
                    const InputHost& host, const InputNetns& n, const std::vector<std::int64_t>& ids,
                    const std::function<void()>& written) {
  const auto in = read_inputs(input, n.host_id);
  SpanReplay spans(input, n.id, ids, in);
  SQLite::Statement snapshot(
      input,
      "SELECT time_ms, boot_id, uptime_ms, hostname, kernel, user_hz, source, proc_root, capture_ms, "
      "tcp_fin_timeout, tcp_max_tw_buckets, port_range_low, port_range_high, tcp_tw_reuse, somaxconn, owners, "
      "skipped_lines, netns_pid, netns_cookie FROM snapshots WHERE snapshot_id = ?");
  SQLite::Statement diagnostics(input, "SELECT file, line, message FROM diagnostics WHERE snapshot_id = ?");
  ConnectionLogReader connections(input);
  replay_counters(input, n.id, ids, [&](std::size_t index, const CounterValues& counters) {
    const auto id = ids[index];
    auto c = snapshot_head(snapshot, diagnostics, id, host, n, input_name);
    if (index == 0) {
      c.users = in.users;
    }
    spans.advance(id, c.time_ms);
    spans.add_sockets(c);
    c.connections = connections.read(id);
    // In the input's counter order (its ids follow the kernel's order), as stats lists them.
    for (const auto& [counter_id, name] : in.counter_names) {
      if (const auto value = counters.find(counter_id); value != counters.end()) {
        c.counters.push_back({name.section, name.name, value->second, name.is_gauge});
      }
    }
    writer.write(c);
    written();
  });
}

}  // namespace

MergeStats merge_into(SQLite::Database& output, SQLite::Database& input, const std::string& input_name,
                      const CopyFilter& filter, const std::function<void(std::int64_t, std::int64_t)>& progress,
                      bool plan_only) {
  MergeStats stats;
  const auto hosts = map_hosts(output, input, input_name, filter, stats.warnings);
  std::map<std::int64_t, const InputHost*> host_by_id;
  for (const auto& h : hosts) {
    host_by_id[h.id] = &h;
  }
  const auto namespaces = input_namespaces(input, host_by_id);
  stats.hosts = static_cast<std::int64_t>(hosts.size());
  stats.namespaces = static_cast<std::int64_t>(namespaces.size());
  std::vector<std::pair<const InputNetns*, std::vector<std::int64_t>>> plans;
  std::int64_t total = 0;
  for (const auto& n : namespaces) {
    auto ids = plan_namespace(output, input, n, *host_by_id.at(n.host_id), filter, stats);
    total += static_cast<std::int64_t>(ids.size());
    if (!ids.empty()) {
      plans.emplace_back(&n, std::move(ids));
    }
  }
  check_connection_log(input, input_name);
  if (plan_only) {
    stats.added = total;
    return stats;
  }
  SnapshotWriter writer(output);
  std::int64_t done = 0;
  for (const auto& [n, ids] : plans) {
    copy_namespace(writer, input, input_name, *host_by_id.at(n->host_id), *n, ids, [&] {
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
