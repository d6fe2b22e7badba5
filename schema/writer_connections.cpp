// The writer's connection-log phase: the socket ends heard in a namespace since its previous
// snapshot, joined to the spans that saw those sockets alive, given an owner only on grounds the
// row names, and stored with what was summed and what was missed (schema/010_connection_log.sql).
#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "writer_impl.hpp"

namespace sockhist::store {

using writer::bind_id;
using writer::bind_optional;

namespace writer {

namespace {

model::Identity connection_of(const model::SocketEnd& end) {
  return model::identity(model::name(end.proto), end.family, end.local_addr, end.local_port, end.remote_addr,
                         end.remote_port, 0);
}

}  // namespace

bool began_at(const OpenSpan& time_wait, std::int64_t end_ms) {
  // Its start by its timer: when it fires, less the 60 s it runs.
  return time_wait.values.timer == static_cast<std::uint8_t>(model::TimerKind::timewait) &&
         time_wait.values.timer_expires_ms - model::k_time_wait_ms <= end_ms + k_time_wait_link_slack_ms;
}

EndJoin::EndJoin(const std::vector<model::SocketEnd>& ends) : m_ends(ends), m_matches(ends.size()) {
  m_by_connection.reserve(ends.size());
  for (std::size_t i = 0; i < ends.size(); ++i) {
    const auto id = connection_of(ends[i]);
    m_ids.push_back(id);
    m_by_connection[id.hash].push_back(i);
    m_ports.emplace(ends[i].proto, ends[i].local_port);
  }
}

void EndJoin::look(const std::vector<OpenSpan>& spans, SpanAge age) {
  const int rank = static_cast<int>(age);
  for (const OpenSpan& span : spans) {
    // A FIN_WAIT2 minisocket (the TIME_WAIT timer on a FIN_WAIT2 socket) is what an orphaned
    // socket becomes as the kernel frees it: it comes after the end, like TIME_WAIT, and says
    // nothing of the socket's life before.
    const bool minisocket = span.state == SockState::fin_wait2 &&
                            span.values.timer == static_cast<std::uint8_t>(model::TimerKind::timewait);
    if (span.proto != model::Proto::unix_domain && age != SpanAge::closed_before && !minisocket &&
        m_ports.contains({span.proto, span.local_port})) {
      if (span.proto == model::Proto::tcp && span.state == SockState::listen) {
        m_listeners[span.local_port].push_back({span.local_addr_id, span.process_id});
      } else if (span.state != SockState::time_wait && span.process_id != 0) {
        m_holders[{span.proto, span.local_addr_id, span.local_port}].insert(span.process_id);
      }
    }
    const auto hit = m_by_connection.find(span.connection.hash);
    if (hit == m_by_connection.end()) {
      continue;
    }
    for (const std::size_t i : hit->second) {
      if (m_ids[i] != span.connection) {
        continue;
      }
      EndMatch& m = m_matches[i];
      // The same endpoints, and where the span has one, the same cookie: the same socket.
      const bool same = !span.has_cookie || span.cookie == static_cast<std::int64_t>(m_ends[i].cookie);
      if (minisocket) {
        m.minisocket = m.minisocket || same;
        continue;
      }
      if (span.state == SockState::time_wait && !began_at(span, m_ends[i].time_ms)) {
        continue;
      }
      if (span.state == SockState::time_wait) {
        if (same) {
          m.time_wait_span_id = span.span_id;
        } else if (age == SpanAge::opened_now) {
          m.time_wait_by_endpoints = span.span_id;
        }
      } else if (same && rank >= m.seen_rank) {  // the newest state wins
        m.seen_span_id = span.span_id;
        m.seen_state = span.state;
        m.seen_process_id = span.process_id;
        m.seen_rank = rank;
      }
    }
  }
}

bool EndJoin::has_connection(const model::Identity& connection) const {
  const auto hit = m_by_connection.find(connection.hash);
  return hit != m_by_connection.end() &&
         std::any_of(hit->second.begin(), hit->second.end(), [&](std::size_t i) { return m_ids[i] == connection; });
}

std::int64_t EndJoin::time_wait_span(std::size_t i) const {
  const EndMatch& m = m_matches[i];
  if (m.minisocket) {
    return 0;
  }
  if (m.time_wait_span_id != 0 || m.time_wait_by_endpoints == 0 || m_ambiguous.contains(m_ids[i].hash)) {
    return m.time_wait_span_id;
  }
  const auto& others = m_by_connection.at(m_ids[i].hash);
  const auto alike = std::count_if(others.begin(), others.end(), [&](std::size_t j) { return m_ids[j] == m_ids[i]; });
  return alike == 1 ? m.time_wait_by_endpoints : 0;
}

Owner EndJoin::owner(std::size_t i, const Wildcards& wildcards) const {
  const model::SocketEnd& end = m_ends[i];
  const EndMatch& m = m_matches[i];
  if (m.seen_process_id != 0) {
    return {m.seen_process_id, "span", {}};
  }
  std::vector<std::string> why;
  if (m.seen_span_id != 0) {
    why.push_back(fmt::format("a snapshot saw it in {} with its owner unknown", model::name(m.seen_state)));
  } else if (time_wait_span(i) != 0) {
    why.push_back("snapshots saw it only in TIME_WAIT, which no process owns");
  } else {
    why.push_back("no snapshot saw it alive");
  }
  const std::int32_t addr_id = m_address_ids.at(i);
  const auto wildcard = end.family == 6 ? wildcards.v6 : wildcards.v4;
  if (end.proto == model::Proto::tcp) {
    if (const auto it = m_listeners.find(end.local_port); it != m_listeners.end()) {
      std::set<std::int64_t> owners;
      bool unknown = false;
      for (const auto& [listener_addr, process_id] : it->second) {
        if (listener_addr != addr_id && !(wildcard && listener_addr == *wildcard)) {
          continue;
        }
        if (process_id != 0) {
          owners.insert(process_id);
        } else {
          unknown = true;
        }
      }
      if (owners.size() == 1 && !unknown) {
        return {*owners.begin(), "listener", {}};
      }
      if (owners.size() > 1) {
        why.push_back(fmt::format("port {} was listened on by {} processes", end.local_port, owners.size()));
        return {0, "none", fmt::format("{}", fmt::join(why, "; "))};
      }
      if (unknown) {
        why.push_back(fmt::format("the owner of the listener on port {} is unknown", end.local_port));
        return {0, "none", fmt::format("{}", fmt::join(why, "; "))};
      }
    }
  }
  if (const auto it = m_holders.find({end.proto, addr_id, end.local_port}); it != m_holders.end()) {
    if (it->second.size() == 1) {
      return {*it->second.begin(), "inferred",
              fmt::format("held local port {} in the snapshots around its end", end.local_port)};
    }
    why.push_back(
        fmt::format("local port {} was held by {} processes around its end", end.local_port, it->second.size()));
  } else {
    why.push_back(fmt::format("no process held local port {} in the snapshots around its end", end.local_port));
  }
  return {0, "none", fmt::format("{}", fmt::join(why, "; "))};
}

}  // namespace writer

void SnapshotWriter::Impl::write_connections(const Capture& cap, std::int64_t netns_id, std::int64_t snapshot_id,
                                             const std::optional<Previous>& prev, writer::EndJoin* join) {
  const model::HeardEnds& heard = *cap.connections;
  if (!connection_statements) {
    connection_statements = std::make_unique<ConnectionStatements>(db);
  }
  auto& q = *connection_statements;
  std::uint64_t aggregated = 0;
  for (const auto& a : heard.aggregates) {
    aggregated += a.count;
  }
  q.insert_log.reset();
  q.insert_log.bind(1, snapshot_id);
  q.insert_log.bind(2, heard.since_ms);
  q.insert_log.bind(3, heard.until_ms);
  q.insert_log.bind(4, heard.listening ? 1 : 0);
  q.insert_log.bind(5, static_cast<std::int64_t>(heard.heard));
  q.insert_log.bind(6, static_cast<std::int64_t>(heard.ends.size()));
  q.insert_log.bind(7, static_cast<std::int64_t>(aggregated));
  q.insert_log.bind(8, static_cast<std::int64_t>(heard.over_bound));
  q.insert_log.bind(9, static_cast<std::int64_t>(heard.overruns));
  q.insert_log.bind(10, static_cast<std::int64_t>(heard.malformed));
  q.insert_log.bind(11, static_cast<std::int64_t>(heard.budget));
  q.insert_log.exec();
  ++stats.rows_written;
  auto& waiting = waiting_for_time_wait[netns_id];
  waiting = WaitingEnds{snapshot_id, {}};

  if (join != nullptr) {
    std::vector<std::int32_t> end_addresses;
    end_addresses.reserve(heard.ends.size());
    for (const auto& end : heard.ends) {
      end_addresses.push_back(static_cast<std::int32_t>(ensure_address(end.local_addr)));
    }
    join->set_address_ids(std::move(end_addresses));
    const auto id_of = [this](const char* addr) -> std::optional<std::int32_t> {
      if (const auto id = find_address(addr)) {
        return static_cast<std::int32_t>(*id);
      }
      return std::nullopt;
    };
    const writer::Wildcards wildcards{id_of("0.0.0.0"), id_of("::")};
    for (std::size_t i = 0; i < heard.ends.size(); ++i) {
      const std::int64_t end_id = write_end(heard.ends[i], i, *join, wildcards, netns_id, snapshot_id, prev);
      if (heard.ends[i].proto == model::Proto::tcp && join->time_wait_span(i) == 0 && !join->match(i).minisocket) {
        waiting.by_connection.emplace(
            join->connection(i).hash,
            WaitingEnd{join->connection(i), end_id, static_cast<std::int64_t>(heard.ends[i].cookie),
                       heard.ends[i].time_ms});
      }
    }
  }
  for (const auto& a : heard.aggregates) {
    auto& g = q.insert_aggregate;
    g.reset();
    g.bind(1, snapshot_id);
    g.bind(2, a.second_ms);
    g.bind(3, ensure_state(a.proto, a.state));
    g.bind(4, a.family);
    g.bind(5, static_cast<int>(a.local_port));
    g.bind(6, a.remote_addr);
    g.bind(7, static_cast<std::int64_t>(a.count));
    g.bind(8, static_cast<std::int64_t>(a.bytes_acked));
    g.bind(9, static_cast<std::int64_t>(a.bytes_received));
    g.bind(10, static_cast<std::int64_t>(a.bytes_sent));
    g.bind(11, static_cast<std::int64_t>(a.without_bytes_sent));
    g.bind(12, static_cast<std::int64_t>(a.total_retrans));
    g.exec();
    ++stats.rows_written;
  }
}

void SnapshotWriter::Impl::link_late_time_waits(std::int64_t netns_id, const std::optional<Previous>& prev,
                                                writer::EndJoin* join) {
  const auto waiting = waiting_for_time_wait.find(netns_id);
  if (waiting == waiting_for_time_wait.end() || !prev || waiting->second.snapshot_id != prev->id ||
      !connection_statements) {
    return;
  }
  const auto& by_connection = waiting->second.by_connection;
  for (const OpenSpan& span : opened_now) {
    if (span.state != SockState::time_wait) {
      continue;
    }
    const auto [first, last] = by_connection.equal_range(span.connection.hash);
    std::int64_t end_id = 0;
    std::size_t alike = 0;
    for (auto it = first; it != last; ++it) {
      if (it->second.connection != span.connection || !writer::began_at(span, it->second.time_ms)) {
        continue;
      }
      ++alike;
      if (span.has_cookie && span.cookie == it->second.cookie) {
        end_id = it->second.end_id;
        alike = 1;
        break;
      }
      end_id = it->second.end_id;
    }
    if (end_id == 0) {
      continue;
    }
    // By endpoints only when nothing else could have begun it: one such end then, none now.
    const bool exact = span.has_cookie && alike == 1 && std::any_of(first, last, [&](const auto& entry) {
                         return entry.second.end_id == end_id && entry.second.cookie == span.cookie;
                       });
    if (!exact && join != nullptr && join->has_connection(span.connection)) {
      join->ambiguous(span.connection);
      continue;
    }
    if (!exact && alike != 1) {
      continue;
    }
    auto& q = connection_statements->link_time_wait;
    q.reset();
    q.bind(1, span.span_id);
    q.bind(2, end_id);
    stats.rows_written += static_cast<std::size_t>(q.exec());
  }
}

// When the socket was born: after the namespace's snapshot before the first that saw it and by
// that first one, following the span's chain of earlier states back.
std::pair<std::optional<std::int64_t>, std::optional<std::int64_t>> SnapshotWriter::Impl::birth_bounds(
    std::int64_t span_id, std::int64_t netns_id) {
  auto& q = connection_statements->select_birth;
  q.reset();
  q.bind(1, span_id);
  q.bind(2, netns_id);
  std::pair<std::optional<std::int64_t>, std::optional<std::int64_t>> bounds;
  if (q.executeStep()) {
    // An earlier state removed by retention: when it began is not known.
    const bool whole = q.getColumn(0).isNull();
    if (whole && !q.getColumn(2).isNull()) {
      bounds.first = q.getColumn(2).getInt64();
    }
    if (!q.getColumn(1).isNull()) {
      bounds.second = q.getColumn(1).getInt64();
    }
  }
  q.reset();
  return bounds;
}

std::int64_t SnapshotWriter::Impl::write_end(const model::SocketEnd& end, std::size_t index,
                                             const writer::EndJoin& join, const writer::Wildcards& wildcards,
                                             std::int64_t netns_id, std::int64_t snapshot_id,
                                             const std::optional<Previous>& prev) {
  const writer::EndMatch& m = join.match(index);
  std::optional<std::int64_t> born_after;
  std::optional<std::int64_t> born_by;
  const std::int64_t time_wait_span_id = join.time_wait_span(index);
  if (m.seen_span_id != 0) {
    std::tie(born_after, born_by) = birth_bounds(m.seen_span_id, netns_id);
  } else if (prev) {
    // Not in the previous snapshot, which it would be in had it been alive then (its TIME_WAIT,
    // if seen, began at this end).
    born_after = prev->time_ms;
  }
  const auto owner = join.owner(index, wildcards);
  auto& q = connection_statements->insert_end;
  q.reset();
  q.bind(1, snapshot_id);
  q.bind(2, end.time_ms);
  q.bind(3, static_cast<std::int64_t>(end.cookie));
  q.bind(4, ensure_state(end.proto, end.state));
  q.bind(5, end.family);
  q.bind(6, static_cast<std::int64_t>(join.address_id(index)));
  q.bind(7, static_cast<int>(end.local_port));
  q.bindNoCopy(8, end.remote_addr);
  q.bind(9, static_cast<int>(end.remote_port));
  if (end.tcp) {
    const model::TcpTotals& t = *end.tcp;
    q.bind(10, static_cast<std::int64_t>(t.bytes_acked));
    q.bind(11, static_cast<std::int64_t>(t.bytes_received));
    bind_optional(q, 12, t.bytes_sent);
    bind_optional(q, 13, t.bytes_retrans);
    q.bind(14, static_cast<std::int64_t>(t.segs_out));
    q.bind(15, static_cast<std::int64_t>(t.segs_in));
    q.bind(16, static_cast<std::int64_t>(t.data_segs_out));
    q.bind(17, static_cast<std::int64_t>(t.data_segs_in));
    q.bind(18, static_cast<std::int64_t>(t.total_retrans));
    q.bind(19, static_cast<std::int64_t>(t.lost));
    q.bind(20, static_cast<std::int64_t>(t.rtt_us));
    q.bind(21, static_cast<std::int64_t>(t.min_rtt_us));
    q.bind(22, static_cast<std::int64_t>(t.delivery_rate));
  } else {
    for (int column = 10; column <= 22; ++column) {
      q.bind(column);
    }
  }
  bind_id(q, 23, m.seen_span_id);
  if (m.seen_span_id != 0) {
    q.bind(24, ensure_state(end.proto, m.seen_state));
  } else {
    q.bind(24);
  }
  bind_id(q, 25, time_wait_span_id);
  bind_optional(q, 26, born_after);
  bind_optional(q, 27, born_by);
  bind_id(q, 28, owner.process_id);
  q.bindNoCopy(29, owner.basis);
  if (owner.reason.empty()) {
    q.bind(30);
  } else {
    q.bind(30, owner.reason);
  }
  q.exec();
  ++stats.rows_written;
  return db.getLastInsertRowid();
}

SnapshotWriter::Impl::ConnectionStatements::ConnectionStatements(SQLite::Database& db)
    : insert_log(db,
                 "INSERT INTO connection_logs(snapshot_id, since_ms, until_ms, listening, heard, stored, aggregated, "
                 "over_bound, overruns, malformed, budget) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      insert_end(db,
                 "INSERT INTO connection_ends(snapshot_id, time_ms, cookie, state_id, family, local_addr_id, "
                 "local_port, remote_addr, remote_port, bytes_acked, bytes_received, bytes_sent, bytes_retrans, "
                 "segs_out, segs_in, data_segs_out, data_segs_in, total_retrans, lost, rtt_us, min_rtt_us, "
                 "delivery_rate, span_id, seen_state_id, time_wait_span_id, born_after_ms, born_by_ms, process_id, "
                 "owner_basis, owner_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                 "?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      insert_aggregate(db,
                       "INSERT INTO connection_aggregates(snapshot_id, second_ms, state_id, family, local_port, "
                       "remote_addr, count, bytes_acked, bytes_received, bytes_sent, without_bytes_sent, "
                       "total_retrans) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      // The chain's earliest span still stored: its prev_span_id (not NULL: an earlier state was
      // removed), its first time, and the time of the namespace's snapshot before it.
      select_birth(db,
                   "WITH RECURSIVE chain(span_id, prev_span_id, first_snapshot_id, first_time_ms, depth) AS ("
                   "SELECT span_id, prev_span_id, first_snapshot_id, first_time_ms, 0 FROM socket_spans "
                   "WHERE span_id = ?1 "
                   "UNION ALL SELECT sp.span_id, sp.prev_span_id, sp.first_snapshot_id, sp.first_time_ms, "
                   "c.depth + 1 FROM socket_spans sp JOIN chain c ON sp.span_id = c.prev_span_id "
                   "WHERE c.depth < 10000) "
                   "SELECT c.prev_span_id, coalesce(c.first_time_ms, f.time_ms), "
                   "(SELECT b.time_ms FROM snapshots b WHERE b.netns_id = ?2 AND b.snapshot_id < c.first_snapshot_id "
                   "ORDER BY b.snapshot_id DESC LIMIT 1) "
                   "FROM chain c LEFT JOIN snapshots f ON f.snapshot_id = c.first_snapshot_id "
                   "ORDER BY c.depth DESC LIMIT 1"),
      link_time_wait(
          db, "UPDATE connection_ends SET time_wait_span_id = ? WHERE end_id = ? AND time_wait_span_id IS NULL") {}

}  // namespace sockhist::store
