// merge and export carry the connection log: each input snapshot's log, its ends and aggregates,
// read back as the capture's HeardEnds, so that the writer stores and joins them in the output as
// the collector's writer did in the input.
#include "merge_connections.hpp"

#include <string_view>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/store.hpp"

namespace sockhist::store {

namespace {

std::optional<std::uint64_t> optional_u64(const SQLite::Column& c) {
  return c.isNull() ? std::nullopt : std::optional(static_cast<std::uint64_t>(c.getInt64()));
}

std::uint32_t u32(const SQLite::Column& c) {
  return static_cast<std::uint32_t>(c.getInt64());
}

}  // namespace

void check_connection_log(SQLite::Database& input, const std::string& input_name) {
  if (!has_connection_log(input)) {
    return;
  }
  for (const char* table : {"connection_ends", "connection_aggregates"}) {
    const bool remote = std::string_view(table) == "connection_ends";
    SQLite::Statement q(input, fmt::format("SELECT family, local_port, {} FROM {} WHERE family NOT IN (4, 6) OR "
                                           "local_port NOT BETWEEN 0 AND 65535{} LIMIT 1",
                                           remote ? "remote_port" : "0", table,
                                           remote ? " OR remote_port NOT BETWEEN 0 AND 65535" : ""));
    if (!q.executeStep()) {
      continue;
    }
    const auto family = q.getColumn(0).getInt64();
    const auto local_port = q.getColumn(1).getInt64();
    const auto [what, value] = family != 4 && family != 6 ? std::pair("family", family)
                               : local_port < 0 || local_port > 65535
                                   ? std::pair("local_port", local_port)
                                   : std::pair("remote_port", q.getColumn(2).getInt64());
    throw Error(Exit::db_refused, fmt::format("{}: {} holds {} {}, which no kernel gives; refused, nothing was merged",
                                              input_name, table, what, value));
  }
}

ConnectionLogReader::ConnectionLogReader(SQLite::Database& input) : m_has_log(has_connection_log(input)) {
  if (!m_has_log) {
    return;
  }
  m_log.emplace(input,
                "SELECT since_ms, until_ms, listening, heard, over_bound, overruns, malformed, budget "
                "FROM connection_logs WHERE snapshot_id = ?");
  m_ends.emplace(input,
                 "SELECT e.time_ms, e.cookie, st.proto, st.state, e.family, a.addr, e.local_port, e.remote_addr, "
                 "e.remote_port, e.bytes_acked, e.bytes_received, e.bytes_sent, e.bytes_retrans, e.segs_out, "
                 "e.segs_in, e.data_segs_out, e.data_segs_in, e.total_retrans, e.lost, e.rtt_us, e.min_rtt_us, "
                 "e.delivery_rate FROM connection_ends e JOIN socket_states st ON st.state_id = e.state_id "
                 "JOIN addresses a ON a.addr_id = e.local_addr_id WHERE e.snapshot_id = ? ORDER BY e.end_id");
  m_aggregates.emplace(input,
                       "SELECT g.second_ms, st.proto, st.state, g.family, g.local_port, g.remote_addr, g.count, "
                       "g.bytes_acked, g.bytes_received, g.bytes_sent, g.without_bytes_sent, g.total_retrans "
                       "FROM connection_aggregates g JOIN socket_states st ON st.state_id = g.state_id "
                       "WHERE g.snapshot_id = ? ORDER BY g.rowid");
}

std::optional<model::HeardEnds> ConnectionLogReader::read(std::int64_t snapshot_id) {
  if (!m_has_log) {
    return std::nullopt;
  }
  auto& log = *m_log;
  log.reset();
  log.bind(1, snapshot_id);
  if (!log.executeStep()) {
    log.reset();
    return std::nullopt;  // a snapshot taken without listening
  }
  model::HeardEnds heard;
  heard.since_ms = log.getColumn(0).getInt64();
  heard.until_ms = log.getColumn(1).getInt64();
  heard.listening = log.getColumn(2).getInt() != 0;
  heard.heard = static_cast<std::size_t>(log.getColumn(3).getInt64());
  heard.over_bound = static_cast<std::size_t>(log.getColumn(4).getInt64());
  heard.overruns = static_cast<std::size_t>(log.getColumn(5).getInt64());
  heard.malformed = static_cast<std::size_t>(log.getColumn(6).getInt64());
  heard.budget = static_cast<std::size_t>(log.getColumn(7).getInt64());
  log.reset();
  auto& e = *m_ends;
  e.reset();
  e.bind(1, snapshot_id);
  while (e.executeStep()) {
    model::SocketEnd end;
    end.time_ms = e.getColumn(0).getInt64();
    end.cookie = static_cast<std::uint64_t>(e.getColumn(1).getInt64());
    end.proto = model::proto_from_name(e.getColumn(2).getString()).value_or(model::Proto::tcp);
    end.state = model::sock_state_from_name(e.getColumn(3).getString()).value_or(model::SockState::close);
    end.family = e.getColumn(4).getInt();
    end.local_addr = e.getColumn(5).getString();
    end.local_port = static_cast<std::uint16_t>(e.getColumn(6).getInt());
    end.remote_addr = e.getColumn(7).getString();
    end.remote_port = static_cast<std::uint16_t>(e.getColumn(8).getInt());
    if (!e.getColumn(9).isNull()) {
      model::TcpTotals t;
      t.bytes_acked = static_cast<std::uint64_t>(e.getColumn(9).getInt64());
      t.bytes_received = static_cast<std::uint64_t>(e.getColumn(10).getInt64());
      t.bytes_sent = optional_u64(e.getColumn(11));
      t.bytes_retrans = optional_u64(e.getColumn(12));
      t.segs_out = u32(e.getColumn(13));
      t.segs_in = u32(e.getColumn(14));
      t.data_segs_out = u32(e.getColumn(15));
      t.data_segs_in = u32(e.getColumn(16));
      t.total_retrans = u32(e.getColumn(17));
      t.lost = u32(e.getColumn(18));
      t.rtt_us = u32(e.getColumn(19));
      t.min_rtt_us = u32(e.getColumn(20));
      t.delivery_rate = static_cast<std::uint64_t>(e.getColumn(21).getInt64());
      end.tcp = t;
    }
    heard.ends.push_back(std::move(end));
  }
  e.reset();
  auto& g = *m_aggregates;
  g.reset();
  g.bind(1, snapshot_id);
  while (g.executeStep()) {
    model::EndAggregate a;
    a.second_ms = g.getColumn(0).getInt64();
    a.proto = model::proto_from_name(g.getColumn(1).getString()).value_or(model::Proto::tcp);
    a.state = model::sock_state_from_name(g.getColumn(2).getString()).value_or(model::SockState::close);
    a.family = g.getColumn(3).getInt();
    a.local_port = static_cast<std::uint16_t>(g.getColumn(4).getInt());
    a.remote_addr = g.getColumn(5).getString();
    a.count = static_cast<std::uint64_t>(g.getColumn(6).getInt64());
    a.bytes_acked = static_cast<std::uint64_t>(g.getColumn(7).getInt64());
    a.bytes_received = static_cast<std::uint64_t>(g.getColumn(8).getInt64());
    a.bytes_sent = static_cast<std::uint64_t>(g.getColumn(9).getInt64());
    a.without_bytes_sent = static_cast<std::uint64_t>(g.getColumn(10).getInt64());
    a.total_retrans = static_cast<std::uint64_t>(g.getColumn(11).getInt64());
    heard.aggregates.push_back(std::move(a));
  }
  g.reset();
  return heard;
}

}  // namespace sockhist::store
