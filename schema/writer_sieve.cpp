// The writer's sieve: a live capture compares each socket, as it reads it, with its namespace's
// open spans, and leaves out those a span holds unchanged; write() then takes over the spans with
// the verdicts. The lookups here only read: the sieve is made before the snapshot's transaction.
#include <fmt/format.h>

#include "writer_impl.hpp"

namespace sockhist::store {

std::optional<std::int64_t> SnapshotWriter::Impl::find_host(const Capture& cap) {
  if (auto it = host_ids.find(cap.host); it != host_ids.end()) {
    return it->second.first;
  }
  SQLite::Statement select(db, "SELECT host_id FROM hosts WHERE name = ?");
  select.bind(1, cap.host);
  return select.executeStep() ? std::optional(select.getColumn(0).getInt64()) : std::nullopt;
}

// The namespace row ensure_netns would continue, when telling it needs no counters.
std::optional<std::int64_t> SnapshotWriter::Impl::find_netns(std::int64_t host_id, const Capture& cap) {
  const auto key = std::make_tuple(host_id, cap.netns_inode, cap.netns_cookie.value_or(0));
  if (auto it = netns_ids.find(key); cap.netns_cookie && it != netns_ids.end()) {
    return it->second;
  }
  const auto newest = newest_netns(host_id, cap.netns_inode);
  if (!newest) {
    return std::nullopt;
  }
  const auto same = same_namespace_by_identity(newest->second, cap, previous_snapshot(newest->first));
  return same.value_or(false) ? std::optional(newest->first) : std::nullopt;
}

std::optional<std::int64_t> SnapshotWriter::Impl::find_process(std::int64_t host_id, const std::string& boot_id,
                                                               const model::Process& p) {
  if (auto it = process_ids.find(std::make_tuple(host_id, boot_id, p.pid, p.start_ticks)); it != process_ids.end()) {
    return it->second;
  }
  SQLite::Statement select(db,
                           "SELECT process_id FROM processes WHERE host_id = ? AND boot_id = ? AND pid = ? AND "
                           "start_ticks = ?");
  select.bind(1, host_id);
  select.bind(2, boot_id);
  select.bind(3, p.pid);
  select.bind(4, static_cast<std::int64_t>(p.start_ticks));
  return select.executeStep() ? std::optional(select.getColumn(0).getInt64()) : std::nullopt;
}

std::shared_ptr<model::SocketSieve> SnapshotWriter::Impl::make_sieve(const Capture& facts) {
  const auto host_id = find_host(facts);
  const auto netns = host_id ? find_netns(*host_id, facts) : std::nullopt;
  if (!netns) {
    return nullptr;
  }
  const std::int64_t netns_id = *netns;
  const auto prev = previous_snapshot(netns_id);
  const std::string boot_id = facts.boot_id.value_or("");
  // Nothing to compare with, or another boot (whose spans write() closes): no sieve.
  if (!prev || prev->boot_id != boot_id) {
    return nullptr;
  }
  auto open = open_spans_before(netns_id, *prev, true);
  if (open.empty()) {
    return nullptr;
  }
  // The processes' rows as write() will find them; none yet for a process it has not stored.
  auto find = [this, host = *host_id, boot_id](const model::Process& p) { return find_process(host, boot_id, p); };
  return std::make_shared<writer::Sieve>(netns_id, prev->id, facts.time_ms, std::move(open), std::move(find));
}

namespace writer {

Sieve::Sieve(std::int64_t netns_id, std::int64_t previous_id, std::int64_t time_ms, std::vector<OpenSpan> open,
             FindProcess find_process)
    : m_netns_id(netns_id),
      m_previous_id(previous_id),
      m_time_ms(time_ms),
      m_open(std::move(open)),
      m_index(m_open),
      m_find_process(std::move(find_process)) {}

void Sieve::know_owners(const std::vector<model::Process>& processes) {
  m_process_of_pid.clear();
  for (const auto& process : processes) {
    m_process_of_pid[process.pid] = m_find_process(process).value_or(0);
  }
}

// Leaves out exactly what match_sockets would find matched with unchanged values. The first
// socket of an identity decides: a later one (a duplicate) is kept, as match_sockets would meet it.
bool Sieve::keep(const model::Socket& s) {
  const auto id = identity_of(s, s.inode);
  const auto found = m_index.find(m_open, id.hash);
  if (!found) {
    return true;
  }
  OpenSpan& span = m_open[*found];
  if (span.id != id || span.sieved) {
    return true;
  }
  span.sieved = true;
  m_touched.push_back(*found);
  std::optional<std::int64_t> owner;
  if (s.pid != 0) {
    if (const auto p = m_process_of_pid.find(s.pid); p != m_process_of_pid.end()) {
      owner = p->second != 0 ? p->second : -1;  // -1: a process with no row yet, never a span's owner
    }
  }
  if (!same_socket(span, s, owner, m_time_ms) || span.values.differ(SocketValues::of(s, m_time_ms), m_time_ms)) {
    return true;
  }
  span.matched = true;
  ++m_counts[{s.proto, s.state}];
  ++m_left_out;
  return false;
}

void Sieve::withdraw_table() {
  for (const std::size_t index : m_touched) {
    OpenSpan& span = m_open[index];
    span.sieved = false;
    if (span.matched) {
      span.matched = false;
      --m_counts[{span.proto, span.state}];
      --m_left_out;
    }
  }
  m_touched.clear();
}

}  // namespace writer

}  // namespace sockhist::store
