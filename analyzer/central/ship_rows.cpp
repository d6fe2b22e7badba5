// The rows of one round of a push, read from the source database (ship_rows.hpp). Each query reads
// through an index of the range it asks for: spans by their last or first snapshot, values and
// entries by span or namespace, counters by replaying the stored changes.
#include "ship_rows.hpp"

#include <algorithm>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "sockhist/central.hpp"
#include "sockhist/counters.hpp"

namespace sockhist::central::detail {

namespace {

constexpr std::int64_t k_open = 2147483647;  // socket_spans.last_snapshot_id while still seen

// A span's columns from prev_span_id to owner_carried, in the central tables' order.
constexpr const char* k_span_tail =
    "prev_span_id, proto, family, state, local_addr, local_port, remote_addr, remote_port, tx_queue, rx_queue, "
    "timer, timer_ms, retransmits, probes, uid, inode, cookie, backlog, peer_inode, sock_type, unix_flags, pid, "
    "process, cmdline, user, owner_carried, uid_user";

// Selected as: span_id, first_snapshot_id, last_snapshot_id, first_time_ms, then the tail (from 4).
constexpr const char* k_span_select =
    "SELECT sp.span_id, sp.first_snapshot_id, sp.last_snapshot_id, coalesce(sp.first_time_ms, f.time_ms), "
    "sp.prev_span_id, st.proto, sp.family, st.state, a.addr, sp.local_port, sp.remote_addr, sp.remote_port, "
    "sp.tx_queue, sp.rx_queue, sp.timer, sp.timer_ms, sp.retransmits, sp.probes, sp.uid, sp.inode, sp.cookie, "
    "sp.backlog, sp.peer_inode, sp.sock_type, sp.unix_flags, p.pid, p.comm, p.cmdline, coalesce(p.user, u.name), "
    "sp.owner_carried, u.name "
    "FROM socket_spans sp "
    "JOIN socket_states st ON st.state_id = sp.state_id "
    "JOIN addresses a ON a.addr_id = sp.local_addr_id "
    "LEFT JOIN snapshots f ON f.snapshot_id = sp.first_snapshot_id "
    "LEFT JOIN processes p ON p.process_id = sp.process_id "
    "LEFT JOIN users u ON u.host_id = ?1 AND u.uid = sp.uid "
    "WHERE sp.netns_id = ?2 AND ";

void tab(std::string& out) {
  out += '\t';
}

void number(std::string& out, std::int64_t v) {
  fmt::format_to(std::back_inserter(out), "{}", v);
}

// A column as a field: \N for NULL, the number, or the escaped text.
void column(std::string& out, const SQLite::Column& c) {
  if (c.isNull()) {
    out += k_null_field;
  } else if (c.isInteger()) {
    number(out, c.getInt64());
  } else {
    append_field(out, c.getString());
  }
}

// A DateTime field: epoch seconds as the exactly ten digits ClickHouse reads without a time zone.
std::string seconds(std::int64_t ms) {
  return fmt::format("{:010}", std::max<std::int64_t>(0, ms / 1000));
}

// Each column of `q` from `first` on, each after a tab.
void fields_from(std::string& out, SQLite::Statement& q, int first) {
  for (int i = first; i < q.getColumnCount(); ++i) {
    tab(out);
    column(out, q.getColumn(i));
  }
}

void optional_number(std::string& out, const std::optional<std::int64_t>& v) {
  if (v) {
    number(out, *v);
  } else {
    out += k_null_field;
  }
}

}  // namespace

RoundReader::RoundReader(SQLite::Database& db, const SourceNetns& netns,
                         const std::map<std::int64_t, CounterName>& counters, SourceTables tables)
    : db_(db), n_(netns), counter_names_(counters), tables_(tables) {
  append_field(lead_, n_.host);
  tab(lead_);
  append_field(lead_, n_.key);
  tab(lead_);
}

void RoundReader::lead(Body& body) const {
  body.rows += lead_;
  ++body.count;
}

std::int64_t RoundReader::next_after(std::int64_t id) const {
  const auto it = std::upper_bound(n_.ids.begin(), n_.ids.end(), id);
  return it == n_.ids.end() ? 0 : *it;
}

std::optional<std::int64_t> RoundReader::time_of(std::int64_t id) const {
  const auto it = std::lower_bound(n_.ids.begin(), n_.ids.end(), id);
  if (it == n_.ids.end() || *it != id) {
    return std::nullopt;
  }
  return n_.times[static_cast<std::size_t>(it - n_.ids.begin())];
}

std::vector<Body> RoundReader::read(std::int64_t after, std::int64_t upto) {
  std::vector<Body> out(2);
  spans(after, upto, out[0], out[1]);
  out.push_back(counters(after, upto));
  out.push_back(state_counts(after, upto));
  out.push_back(socket_values(after, upto));
  if (tables_.time_wait_entries) {
    out.push_back(time_wait(after, upto));
  }
  if (tables_.connection_log) {
    out.push_back(connection_logs(after, upto));
    out.push_back(connection_ends(after, upto));
    out.push_back(connection_aggregates(after, upto));
  }
  out.push_back(diagnostics(after, upto));
  out.push_back(snapshots(after, upto));
  return out;
}

void RoundReader::spans(std::int64_t after, std::int64_t upto, Body& closed, Body& open) {
  closed.table = "spans";
  closed.columns = fmt::format(
      "host, netns_key, span_id, closed_by, first_snapshot_id, last_snapshot_id, first_time_ms, last_time_ms, "
      "last_time, {}",
      k_span_tail);
  open.table = "open_spans";
  open.columns =
      fmt::format("host, netns_key, snapshot_id, sign, span_id, first_snapshot_id, first_time_ms, {}", k_span_tail);
  const auto tail = [](std::string& out, SQLite::Statement& q) {
    fields_from(out, q, 4);
    out += '\n';
  };
  const auto open_row = [&](SQLite::Statement& q, int sign) {
    lead(open);
    auto& r = open.rows;
    number(r, upto);
    fmt::format_to(std::back_inserter(r), "\t{}\t{}\t{}\t{}", sign, q.getColumn(0).getInt64(),
                   q.getColumn(1).getInt64(), q.getColumn(3).getInt64());
    tail(r, q);
  };
  // Ended in the round: last seen at `after` or later, before `upto`, so its next snapshot is in it.
  SQLite::Statement ended(db_, std::string(k_span_select) + "sp.last_snapshot_id >= ?3 AND sp.last_snapshot_id < ?4");
  ended.bind(1, n_.host_id);
  ended.bind(2, n_.netns_id);
  ended.bind(3, after);
  ended.bind(4, upto);
  while (ended.executeStep()) {
    const auto last = ended.getColumn(2).getInt64();
    const auto closed_by = next_after(last);
    const auto last_ms = time_of(last);
    lead(closed);
    auto& r = closed.rows;
    fmt::format_to(std::back_inserter(r), "{}\t{}\t{}\t{}\t{}\t", ended.getColumn(0).getInt64(), closed_by,
                   ended.getColumn(1).getInt64(), last, ended.getColumn(3).getInt64());
    optional_number(r, last_ms);
    tab(r);
    r += seconds(last_ms.value_or(time_of(closed_by).value_or(0)));
    tail(r, ended);
    if (after > 0 && ended.getColumn(1).getInt64() <= after) {
      open_row(ended, -1);  // shipped open by an earlier round: cancelled
    }
  }
  // Opened in the round and still seen at its end.
  SQLite::Statement opened(db_, std::string(k_span_select) +
                                    "sp.first_snapshot_id > ?3 AND sp.first_snapshot_id <= ?4 AND "
                                    "sp.last_snapshot_id >= ?4");
  opened.bind(1, n_.host_id);
  opened.bind(2, n_.netns_id);
  opened.bind(3, after);
  opened.bind(4, upto);
  while (opened.executeStep()) {
    open_row(opened, 1);
  }
}

Body RoundReader::counters(std::int64_t after, std::int64_t upto) {
  Body b{"counters", "host, netns_key, snapshot_id, time, section, name, value, is_gauge", {}, 0};
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < n_.ids.size(); ++i) {
    if (n_.ids[i] > after && n_.ids[i] <= upto) {
      ids.push_back(n_.ids[i]);
    }
  }
  if (ids.empty()) {
    return b;
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> sorted;  // one snapshot's values in name order
  store::replay_counters(db_, n_.netns_id, ids, [&](std::size_t i, const store::CounterValues& values) {
    const auto id = ids[i];
    const auto time = seconds(time_of(id).value_or(0));
    sorted.assign(values.begin(), values.end());
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [counter_id, value] : sorted) {
      const auto name = counter_names_.find(counter_id);
      if (name == counter_names_.end()) {
        continue;
      }
      lead(b);
      fmt::format_to(std::back_inserter(b.rows), "{}\t{}\t", id, time);
      append_field(b.rows, name->second.section);
      tab(b.rows);
      append_field(b.rows, name->second.name);
      fmt::format_to(std::back_inserter(b.rows), "\t{}\t{}\n", value, name->second.gauge ? 1 : 0);
    }
  });
  return b;
}

Body RoundReader::state_counts(std::int64_t after, std::int64_t upto) {
  Body b{"state_counts", "host, netns_key, snapshot_id, time, proto, state, count", {}, 0};
  SQLite::Statement q(db_,
                      "SELECT c.snapshot_id, s.time_ms, c.proto, c.state, c.count FROM state_counts c "
                      "JOIN snapshots s ON s.snapshot_id = c.snapshot_id "
                      "WHERE c.snapshot_id > ? AND c.snapshot_id <= ? AND s.netns_id = ?");
  q.bind(1, after);
  q.bind(2, upto);
  q.bind(3, n_.netns_id);
  while (q.executeStep()) {
    lead(b);
    fmt::format_to(std::back_inserter(b.rows), "{}\t{}\t", q.getColumn(0).getInt64(),
                   seconds(q.getColumn(1).getInt64()));
    append_field(b.rows, q.getColumn(2).getString());
    tab(b.rows);
    append_field(b.rows, q.getColumn(3).getString());
    fmt::format_to(std::back_inserter(b.rows), "\t{}\n", q.getColumn(4).getInt64());
  }
  return b;
}

Body RoundReader::socket_values(std::int64_t after, std::int64_t upto) {
  Body b{"socket_values",
         "host, netns_key, snapshot_id, time, span_id, tx_queue, rx_queue, timer, timer_expires_ms, retransmits, "
         "probes, backlog",
         {},
         0};
  // Spans alive in the round, then each one's values there by its primary key.
  SQLite::Statement q(db_,
                      "SELECT v.snapshot_id, v.span_id, v.tx_queue, v.rx_queue, v.timer, v.timer_expires_ms, "
                      "v.retransmits, v.probes, v.backlog FROM socket_spans sp "
                      "JOIN socket_values v ON v.span_id = sp.span_id AND v.snapshot_id > ?1 AND v.snapshot_id <= ?2 "
                      "WHERE sp.netns_id = ?3 AND sp.last_snapshot_id > ?1 AND sp.first_snapshot_id <= ?2");
  q.bind(1, after);
  q.bind(2, upto);
  q.bind(3, n_.netns_id);
  while (q.executeStep()) {
    const auto id = q.getColumn(0).getInt64();
    lead(b);
    fmt::format_to(std::back_inserter(b.rows), "{}\t{}", id, seconds(time_of(id).value_or(0)));
    fields_from(b.rows, q, 1);
    b.rows += '\n';
  }
  return b;
}

Body RoundReader::by_snapshot(Body b, const std::string& sql, std::int64_t after, std::int64_t upto, bool settled) {
  SQLite::Statement q(db_, sql);
  q.bind(1, n_.netns_id);
  q.bind(2, after);
  q.bind(3, upto);
  while (q.executeStep()) {
    const auto own = q.getColumn(0).getInt64();
    lead(b);
    if (settled) {
      fmt::format_to(std::back_inserter(b.rows), "{}\t", next_after(own));
    }
    fmt::format_to(std::back_inserter(b.rows), "{}\t{}", own, seconds(q.getColumn(1).getInt64()));
    fields_from(b.rows, q, 2);
    b.rows += '\n';
  }
  return b;
}

// Settled in a round: the row's next snapshot is in it, the snapshots of [after, upto).
constexpr const char* k_settled = " AND s.snapshot_id >= ?2 AND s.snapshot_id < ?3";
// Of the round's snapshots, (after, upto].
constexpr const char* k_in_round = " AND s.snapshot_id > ?2 AND s.snapshot_id <= ?3";

Body RoundReader::time_wait(std::int64_t after, std::int64_t upto) {
  // The writer may date an entry again as it writes the snapshot after the entry's first.
  return by_snapshot({"time_wait_entries",
                      "host, netns_key, settled_by, snapshot_id, time, span_id, entered_ms, exact, family, local_addr, "
                      "local_port, remote_addr, remote_port",
                      {},
                      0},
                     std::string("SELECT s.snapshot_id, s.entered_ms, s.span_id, s.entered_ms, s.exact, sp.family, "
                                 "a.addr, sp.local_port, sp.remote_addr, sp.remote_port FROM time_wait_entries s "
                                 "JOIN socket_spans sp ON sp.span_id = s.span_id "
                                 "JOIN addresses a ON a.addr_id = sp.local_addr_id WHERE s.netns_id = ?1") +
                         k_settled,
                     after, upto, true);
}

Body RoundReader::connection_logs(std::int64_t after, std::int64_t upto) {
  return by_snapshot({"connection_logs",
                      "host, netns_key, snapshot_id, time, since_ms, until_ms, listening, heard, stored, aggregated, "
                      "over_bound, overruns, malformed, budget",
                      {},
                      0},
                     std::string("SELECT s.snapshot_id, l.until_ms, l.since_ms, l.until_ms, l.listening, l.heard, "
                                 "l.stored, l.aggregated, l.over_bound, l.overruns, l.malformed, l.budget "
                                 "FROM connection_logs l JOIN snapshots s ON s.snapshot_id = l.snapshot_id "
                                 "WHERE s.netns_id = ?1") +
                         k_in_round,
                     after, upto, false);
}

Body RoundReader::connection_ends(std::int64_t after, std::int64_t upto) {
  // The collector links an end to the TIME_WAIT span that followed it as it writes the next snapshot.
  return by_snapshot(
      {"connection_ends",
       "host, netns_key, settled_by, snapshot_id, time, end_id, end_ms, proto, family, local_addr, local_port, "
       "remote_addr, remote_port, end_state, seen_state, entered_time_wait, bytes_acked, bytes_received, bytes_sent, "
       "bytes_retrans, segs_out, segs_in, data_segs_out, data_segs_in, total_retrans, lost, rtt_us, min_rtt_us, "
       "delivery_rate, born_after_ms, born_by_ms, owner_basis, pid, process, cmdline, user, owner_reason, cookie, "
       "span_id, time_wait_span_id",
       {},
       0},
      std::string("SELECT s.snapshot_id, e.time_ms, e.end_id, e.time_ms, st.proto, e.family, a.addr, e.local_port, "
                  "e.remote_addr, e.remote_port, st.state, ls.state, e.time_wait_span_id IS NOT NULL, e.bytes_acked, "
                  "e.bytes_received, e.bytes_sent, e.bytes_retrans, e.segs_out, e.segs_in, e.data_segs_out, "
                  "e.data_segs_in, e.total_retrans, e.lost, e.rtt_us, e.min_rtt_us, e.delivery_rate, e.born_after_ms, "
                  "e.born_by_ms, e.owner_basis, p.pid, p.comm, p.cmdline, p.user, e.owner_reason, e.cookie, "
                  "e.span_id, e.time_wait_span_id "
                  "FROM connection_ends e JOIN snapshots s ON s.snapshot_id = e.snapshot_id "
                  "JOIN socket_states st ON st.state_id = e.state_id JOIN addresses a ON a.addr_id = e.local_addr_id "
                  "LEFT JOIN socket_states ls ON ls.state_id = e.seen_state_id "
                  "LEFT JOIN processes p ON p.process_id = e.process_id WHERE s.netns_id = ?1") +
          k_settled,
      after, upto, true);
}

Body RoundReader::connection_aggregates(std::int64_t after, std::int64_t upto) {
  return by_snapshot({"connection_aggregates",
                      "host, netns_key, snapshot_id, time, second_ms, proto, family, local_port, remote_addr, "
                      "end_state, count, bytes_acked, bytes_received, bytes_sent, without_bytes_sent, total_retrans",
                      {},
                      0},
                     std::string("SELECT s.snapshot_id, g.second_ms, g.second_ms, st.proto, g.family, g.local_port, "
                                 "g.remote_addr, st.state, g.count, g.bytes_acked, g.bytes_received, g.bytes_sent, "
                                 "g.without_bytes_sent, g.total_retrans FROM connection_aggregates g "
                                 "JOIN snapshots s ON s.snapshot_id = g.snapshot_id "
                                 "JOIN socket_states st ON st.state_id = g.state_id WHERE s.netns_id = ?1") +
                         k_in_round,
                     after, upto, false);
}

Body RoundReader::diagnostics(std::int64_t after, std::int64_t upto) {
  return by_snapshot({"diagnostics", "host, netns_key, snapshot_id, time, seq, file, line, message", {}, 0},
                     std::string("SELECT s.snapshot_id, s.time_ms, d.rowid, d.file, d.line, d.message FROM "
                                 "diagnostics d JOIN snapshots s ON s.snapshot_id = d.snapshot_id "
                                 "WHERE s.netns_id = ?1") +
                         k_in_round,
                     after, upto, false);
}

Body RoundReader::snapshots(std::int64_t after, std::int64_t upto) {
  Body b{"snapshots",
         "host, netns_key, snapshot_id, time, time_ms, netns, netns_name, netns_initial, machine_id, boot_id, "
         "uptime_ms, hostname, kernel, user_hz, source, proc_root, capture_ms, tcp_fin_timeout, tcp_max_tw_buckets, "
         "port_range_low, port_range_high, tcp_tw_reuse, somaxconn, owners, socket_count, skipped_lines, "
         "collector_version, netns_pid, netns_cookie, shipped",
         {},
         0};
  SQLite::Statement q(db_,
                      "SELECT snapshot_id, time_ms, boot_id, uptime_ms, hostname, kernel, user_hz, source, proc_root, "
                      "capture_ms, tcp_fin_timeout, tcp_max_tw_buckets, port_range_low, port_range_high, "
                      "tcp_tw_reuse, somaxconn, owners, socket_count, skipped_lines, collector_version, netns_pid, "
                      "netns_cookie FROM snapshots WHERE netns_id = ? AND snapshot_id > ? AND snapshot_id <= ? "
                      "ORDER BY snapshot_id");
  q.bind(1, n_.netns_id);
  q.bind(2, after);
  q.bind(3, upto);
  std::string netns;  // the namespace's fields, the same in every row
  fmt::format_to(std::back_inserter(netns), "{}\t", n_.inode);
  if (n_.name) {
    append_field(netns, *n_.name);
  } else {
    netns += k_null_field;
  }
  fmt::format_to(std::back_inserter(netns), "\t{}\t", n_.initial ? 1 : 0);
  if (n_.machine_id) {
    append_field(netns, *n_.machine_id);
  } else {
    netns += k_null_field;
  }
  const auto shipped =
      seconds(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                  .count());
  while (q.executeStep()) {
    lead(b);
    const auto time_ms = q.getColumn(1).getInt64();
    fmt::format_to(std::back_inserter(b.rows), "{}\t{}\t{}\t{}", q.getColumn(0).getInt64(), seconds(time_ms), time_ms,
                   netns);
    fields_from(b.rows, q, 2);
    fmt::format_to(std::back_inserter(b.rows), "\t{}\n", shipped);
  }
  return b;
}

}  // namespace sockhist::central::detail
