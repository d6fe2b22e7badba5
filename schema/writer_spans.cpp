// The writer's span phases: the spans a namespace left open, each socket of a capture matched
// against them (an unchanged socket costs no write), TCP connections linked across the inode
// changes of their last states, and the spans that end or begin.
#include <fmt/format.h>

#include "sockhist/raw_statement.hpp"
#include "sockhist/store.hpp"
#include "writer_impl.hpp"

namespace sockhist::store {

using model::SockState;
using writer::bind_id;
using writer::bind_optional;
using writer::identity_of;
using writer::k_timewait_slack_ms;

namespace {

// `next` continues `span` in another state (or with another owner): it links back to it, and a
// socket the kernel no longer ties to a process (inode 0: orphaned, a TIME_WAIT minisocket) keeps
// the span's owner, marked as carried.
void continue_span(writer::OpenSpan& span, writer::NewSpan& next) {
  span.linked = true;
  next.prev_span_id = span.span_id;
  if (next.socket->inode == 0 && next.process_id == 0 && span.process_id != 0) {
    next.process_id = span.process_id;
    next.carried = true;
  }
}

}  // namespace

std::vector<SnapshotWriter::Impl::OpenSpan> SnapshotWriter::Impl::open_spans_before(std::int64_t netns_id,
                                                                                    const Previous& prev,
                                                                                    bool same_boot) {
  std::vector<OpenSpan> open;
  if (!same_boot) {
    // A reboot (or a new boot_id) ends every socket of the previous boot.
    SQLite::Statement close_all(
        db, fmt::format("UPDATE socket_spans SET last_snapshot_id = ? WHERE netns_id = ? AND last_snapshot_id = {}",
                        k_span_open));
    close_all.bind(1, prev.id);
    close_all.bind(2, netns_id);
    const int closed = close_all.exec();
    stats.spans_closed += static_cast<std::size_t>(closed);
    stats.rows_written += static_cast<std::size_t>(closed);
    return open;
  }
  if (auto cached = open_cache.find(netns_id); cached != open_cache.end() && cached->second.snapshot_id == prev.id) {
    // What this writer left open last time is what the database holds: no need to read it back.
    open = std::move(cached->second.spans);
    for (auto& span : open) {
      span.matched = false;
      span.linked = false;
      span.sieved = false;
    }
    return open;
  }
  // Read raw, text as views into SQLite's row: 50,000 open spans are read back by every new process.
  RawStatement select(
      db, fmt::format("SELECT sp.span_id, st.proto, coalesce(sp.family, 0), a.addr, coalesce(sp.local_port, 0), "
                      "coalesce(sp.remote_addr, ''), coalesce(sp.remote_port, 0), sp.inode, st.state, "
                      "sp.process_id, sp.owner_carried, coalesce(sp.first_time_ms, f.time_ms, 0), sp.cookie, "
                      "sp.tx_queue, sp.rx_queue, sp.timer, sp.timer_ms, sp.retransmits, sp.probes, sp.backlog, "
                      "v.span_id IS NOT NULL, v.tx_queue, v.rx_queue, v.timer, v.timer_expires_ms, v.retransmits, "
                      "v.probes, v.backlog, sp.local_addr_id "
                      "FROM socket_spans sp JOIN socket_states st ON st.state_id = sp.state_id "
                      "JOIN addresses a ON a.addr_id = sp.local_addr_id "
                      "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
                      "LEFT JOIN socket_values v ON v.span_id = sp.span_id AND v.snapshot_id = "
                      "(SELECT max(x.snapshot_id) FROM socket_values x WHERE x.span_id = sp.span_id) "
                      "WHERE sp.netns_id = ? AND sp.last_snapshot_id = {}",
                      k_span_open));
  select.bind(1, netns_id);
  open.reserve(static_cast<std::size_t>(prev.socket_count));
  const auto u32 = [&](int column) { return static_cast<std::uint32_t>(select.integer(column)); };
  const auto optional_u32 = [&](int column) { return select.null(column) ? std::nullopt : std::optional(u32(column)); };
  while (select.step()) {
    OpenSpan& span = open.emplace_back();
    span.span_id = select.integer(0);
    const std::string_view proto = select.text(1);
    const int family = static_cast<int>(select.integer(2));
    const std::string_view local_addr = select.text(3);
    const int local_port = static_cast<int>(select.integer(4));
    const std::string_view remote_addr = select.text(5);
    const int remote_port = static_cast<int>(select.integer(6));
    const auto inode = static_cast<std::uint64_t>(select.integer(7));
    span.id = model::identity(proto, family, local_addr, local_port, remote_addr, remote_port, inode);
    span.local_addr_id = static_cast<std::int32_t>(select.integer(28));
    span.local_port = static_cast<std::uint16_t>(local_port);
    span.connection = model::identity(proto, family, local_addr, local_port, remote_addr, remote_port, 0);
    span.proto = model::proto_from_name(proto).value_or(model::Proto::tcp);
    // A state this build does not know cannot match any socket it reads: the span closes.
    span.state = model::sock_state_from_name(select.text(8)).value_or(SockState::bound_inactive);
    span.process_id = select.null(9) ? 0 : select.integer(9);
    span.carried = select.integer(10) != 0;
    const std::int64_t first_time_ms = select.integer(11);
    span.has_cookie = !select.null(12);
    span.cookie = span.has_cookie ? select.integer(12) : 0;
    // The values as last stored: the newest socket_values row, else the span's first ones.
    SocketValues& v = span.values;
    const int base = select.integer(20) != 0 ? 21 : 13;
    v.tx_queue = u32(base);
    v.rx_queue = u32(base + 1);
    v.timer = static_cast<std::uint8_t>(select.integer(base + 2));
    if (base == 21) {
      v.timer_expires_ms = select.integer(24);
      v.retransmits = u32(25);
      v.probes = u32(26);
      v.backlog = optional_u32(27);
    } else {
      const std::int64_t timer_ms = select.integer(16);
      if (v.timer == 0) {
        v.timer_off_ms = static_cast<std::uint32_t>(timer_ms);
      } else {
        v.timer_expires_ms = first_time_ms + timer_ms;
      }
      v.retransmits = u32(17);
      v.probes = u32(18);
      v.backlog = optional_u32(19);
    }
  }
  return open;
}

bool writer::same_socket(const OpenSpan& open, const Socket& s, const std::optional<std::int64_t>& owner,
                         std::int64_t time_ms) {
  if (open.state != s.state) {
    return false;
  }
  if (open.has_cookie && s.cookie && open.cookie != static_cast<std::int64_t>(*s.cookie)) {
    return false;
  }
  // A socket without an inode has no observable owner; its span keeps the carried one.
  if (s.inode != 0 && owner != open.owner()) {
    return false;
  }
  if (s.state == SockState::time_wait && open.values.timer == static_cast<int>(model::TimerKind::timewait)) {
    const std::int64_t expected = open.values.timer_ms_at(time_ms);
    if (static_cast<std::int64_t>(s.timer_ms) > expected + k_timewait_slack_ms) {
      return false;
    }
  }
  return true;
}

writer::OpenIndex::OpenIndex(const std::vector<OpenSpan>& open) {
  std::size_t capacity = 16;
  while (capacity < open.size() + open.size() / 3) {  // at most three quarters full
    capacity *= 2;
  }
  m_slots.assign(capacity, 0);
  m_mask = capacity - 1;
  for (std::size_t i = 0; i < open.size(); ++i) {
    const std::uint64_t hash = open[i].id.hash;
    std::size_t slot = slot_of(hash);
    while (m_slots[slot] != 0 && open[m_slots[slot] - 1].id.hash != hash) {
      slot = (slot + 1) & m_mask;
    }
    if (m_slots[slot] == 0) {  // a second span of one hash is never found, as in a map's emplace
      m_slots[slot] = static_cast<std::uint32_t>(i + 1);
    }
  }
}

std::optional<std::size_t> writer::OpenIndex::find(const std::vector<OpenSpan>& open, std::uint64_t hash) const {
  if (m_slots.empty()) {
    return std::nullopt;
  }
  for (std::size_t slot = slot_of(hash); m_slots[slot] != 0; slot = (slot + 1) & m_mask) {
    if (open[m_slots[slot] - 1].id.hash == hash) {
      return m_slots[slot] - 1;
    }
  }
  return std::nullopt;
}

SnapshotWriter::Impl::Matching SnapshotWriter::Impl::match_sockets(
    const Capture& cap, std::vector<OpenSpan>& open, const writer::OpenIndex& open_by_key,
    const std::unordered_map<std::int32_t, std::int64_t>& process_of_pid) const {
  const auto owner_of = [&](const Socket& s) -> std::optional<std::int64_t> {
    if (s.pid == 0) {
      return std::nullopt;
    }
    const auto it = process_of_pid.find(s.pid);
    return it == process_of_pid.end() ? std::nullopt : std::optional(it->second);
  };
  Matching out;
  // One per socket at most: reserved at once where most sockets are new (a first snapshot), left
  // to grow where most are expected to match.
  if (cap.sockets.size() > open.size()) {
    out.fresh.reserve(cap.sockets.size() - open.size() / 2);
  }
  for (const Socket& s : cap.sockets) {
    const auto owner = owner_of(s);
    const auto id = identity_of(s, s.inode);
    const auto found = open_by_key.find(open, id.hash);
    if (found && open[*found].id == id && !open[*found].matched && !open[*found].linked) {
      OpenSpan& span = open[*found];
      if (writer::same_socket(span, s, owner, cap.time_ms)) {
        span.matched = true;
        if (span.values.differ(SocketValues::of(s, cap.time_ms), cap.time_ms)) {
          out.changed.emplace_back(*found, &s);
        }
        continue;
      }
      NewSpan next{&s, owner.value_or(0), 0, false};
      const bool reused_tuple = span.state == s.state;  // same state, so TIME_WAIT reuse or a new owner
      if (!(reused_tuple && s.state == SockState::time_wait)) {
        continue_span(span, next);
      }
      out.fresh.push_back(next);
      continue;
    }
    out.fresh.push_back(NewSpan{&s, owner.value_or(0), 0, false});
    if (s.proto == model::Proto::tcp && s.state != SockState::listen) {
      out.unlinked.push_back(out.fresh.size() - 1);
    }
  }
  return out;
}

// A TCP connection changes inode when it is orphaned or becomes a TIME_WAIT minisocket: link it
// to its previous state by endpoints, and carry the owner forward (no other tool can).
void SnapshotWriter::Impl::link_by_connection(std::vector<OpenSpan>& open, Matching& matching) const {
  if (matching.unlinked.empty()) {
    return;
  }
  std::unordered_map<std::uint64_t, std::size_t> ending_by_connection;
  for (std::size_t i = 0; i < open.size(); ++i) {
    const OpenSpan& span = open[i];
    if (!span.matched && !span.linked && span.links_connections()) {
      ending_by_connection.emplace(span.connection.hash, i);
    }
  }
  for (const std::size_t index : matching.unlinked) {
    NewSpan& next = matching.fresh[index];
    const auto connection = identity_of(*next.socket, 0);
    const auto it = ending_by_connection.find(connection.hash);
    if (it == ending_by_connection.end() || open[it->second].linked || open[it->second].connection != connection) {
      continue;
    }
    continue_span(open[it->second], next);
  }
}

// Spans whose socket is gone (or changed) end at the previous snapshot.
void SnapshotWriter::Impl::close_ended(const std::vector<OpenSpan>& open, const Previous& prev) {
  for (const OpenSpan& span : open) {
    if (span.matched) {
      continue;
    }
    close_span.reset();
    close_span.bind(1, prev.id);
    close_span.bind(2, span.span_id);
    close_span.exec();
    ++stats.spans_closed;
    ++stats.rows_written;
  }
}

// A socket that kept its span but not its values (queues, timer, retransmits, probes, backlog)
// gets a socket_values row for this snapshot; the span then continues from these values.
void SnapshotWriter::Impl::write_values(const Capture& cap, std::int64_t snapshot_id, std::vector<OpenSpan>& open,
                                        const Matching& matching) {
  for (const auto& [index, socket] : matching.changed) {
    OpenSpan& span = open[index];
    span.values = SocketValues::of(*socket, cap.time_ms);
    const SocketValues& v = span.values;
    auto& q = insert_values;
    q.reset();
    q.bind(1, span.span_id);
    q.bind(2, snapshot_id);
    q.bind(3, v.tx_queue);
    q.bind(4, v.rx_queue);
    q.bind(5, v.timer);
    q.bind(6, v.timer_expires_ms);
    q.bind(7, v.retransmits);
    q.bind(8, v.probes);
    bind_optional(q, 9, v.backlog);
    q.exec();
    ++stats.value_rows;
    ++stats.rows_written;
  }
}

// Binds and inserts one new span; returns whether its owner is a carried one. Values are bound
// without copying: the names are string literals and the addresses live in the capture until the
// row is written.
bool SnapshotWriter::Impl::bind_span(const Capture& cap, const NewSpan& next, std::int64_t netns_id,
                                     std::int64_t snapshot_id) {
  const Socket& s = *next.socket;
  const bool is_unix = s.proto == model::Proto::unix_domain;
  auto& q = insert_span;
  q.reset();
  q.bind(1, netns_id);
  q.bind(2, snapshot_id);
  bind_id(q, 3, next.prev_span_id);
  q.bind(4, ensure_state(s.proto, s.state));
  if (is_unix) {
    q.bind(5);
  } else {
    q.bind(5, s.family);
  }
  q.bind(6, ensure_address(s.local_addr));
  if (is_unix) {
    q.bind(7);
    q.bind(8);
    q.bind(9);
  } else {
    q.bind(7, s.local_port);
    q.bindNoCopy(8, s.remote_addr);
    q.bind(9, s.remote_port);
  }
  q.bind(10, static_cast<std::int64_t>(s.tx_queue));
  q.bind(11, static_cast<std::int64_t>(s.rx_queue));
  q.bind(12, static_cast<int>(s.timer));
  q.bind(13, static_cast<std::int64_t>(s.timer_ms));
  q.bind(14, static_cast<std::int64_t>(s.retransmits));
  q.bind(15, static_cast<std::int64_t>(s.probes));
  q.bind(16, static_cast<std::int64_t>(s.uid));
  q.bind(17, static_cast<std::int64_t>(s.inode));
  bind_optional(q, 18, s.cookie);
  bind_optional(q, 19, s.backlog);
  bind_optional(q, 20, s.peer_inode);
  if (is_unix) {
    q.bindNoCopy(21, model::name(s.unix_type).data());
    q.bind(22, static_cast<std::int64_t>(s.unix_flags));
  } else {
    q.bind(21);
    q.bind(22);
  }
  bind_id(q, 23, next.process_id);
  // A merge names owners the input had carried forward: they stay marked as carried.
  const auto index = static_cast<std::size_t>(next.socket - cap.sockets.data());
  const bool carried = next.carried || (index < cap.owner_carried.size() && cap.owner_carried[index] != 0);
  q.bind(24, carried ? 1 : 0);
  q.exec();
  ++stats.spans_opened;
  ++stats.rows_written;
  return carried;
}

// Opens the new spans, and remembers (a looping collector) every span open after this snapshot:
// those that continued and those it opened.
void SnapshotWriter::Impl::write_spans(const Capture& cap, std::int64_t netns_id, std::int64_t snapshot_id,
                                       std::vector<OpenSpan> open, const std::vector<NewSpan>& fresh) {
  // A namespace's first snapshot (or its first of a boot) opens a span per socket: remembering
  // them would hold each socket twice, in the capture and in the memory, at the run's peak. The
  // next snapshot reads them back instead, once.
  const bool remember = open_spans == OpenSpans::remember && !open.empty();
  if (!remember) {
    open_cache.erase(netns_id);
  }
  // What matching needed is done: the spans that stay open are kept in place (a second vector of
  // them would hold a 100,000-socket namespace's spans twice), the rest given back before the
  // inserts.
  if (remember) {
    std::erase_if(open, [](const OpenSpan& span) { return !span.matched; });
    open.reserve(open.size() + fresh.size());
  } else {
    open = {};
  }
  opened_now.clear();
  // The connection log joins its ends to the spans this snapshot opens too, and the TIME_WAIT it
  // opens to the ends of the previous one.
  const bool for_ends = cap.connections.has_value();
  for (const NewSpan& next : fresh) {
    const bool carried = bind_span(cap, next, netns_id, snapshot_id);
    if (!remember && !for_ends) {
      continue;
    }
    const Socket& s = *next.socket;
    OpenSpan opened;
    opened.span_id = db.getLastInsertRowid();
    opened.id = identity_of(s, s.inode);
    opened.connection = identity_of(s, 0);
    opened.proto = s.proto;
    opened.state = s.state;
    opened.process_id = next.process_id;
    opened.carried = carried;
    opened.values = SocketValues::of(s, cap.time_ms);
    opened.has_cookie = s.cookie.has_value();
    opened.cookie = static_cast<std::int64_t>(s.cookie.value_or(0));
    opened.local_addr_id = static_cast<std::int32_t>(ensure_address(s.local_addr));
    opened.local_port = s.local_port;
    if (for_ends) {
      opened_now.push_back(opened);
    }
    if (remember) {
      open.push_back(std::move(opened));
    }
  }
  if (remember) {
    open_cache[netns_id] = OpenCache{snapshot_id, std::move(open)};
  }
}

}  // namespace sockhist::store
