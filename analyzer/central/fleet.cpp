// The central store's questions (sockhist fleet): SQL over its views, read back as rows.
#include <fmt/format.h>

#include "sockhist/central.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::central {

std::string quote(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out + "'";
}

std::string socket_list_sql(std::string_view host, std::string_view netns_key, std::int64_t snapshot_id) {
  const auto h = quote(host), k = quote(netns_key);
  // A running timer counts down: later snapshots show the time left projected from the last
  // value stored, as the SQLite view does.
  return fmt::format(
      "SELECT span_id, proto, family, state, local_addr, local_port, remote_addr, remote_port, "
      "if(values_at = 0, tx_queue, v_tx_queue) AS tx_queue, if(values_at = 0, rx_queue, v_rx_queue) AS rx_queue, "
      "if(values_at = 0, timer_code, v_timer) AS timer_code, "
      "multiIf(values_at != 0, if(v_timer = 0, 0, greatest(0, v_expires_ms - at_ms)), timer_code = 0, timer_ms, "
      "greatest(0, timer_ms - (at_ms - first_time_ms))) AS timer_ms, "
      "if(values_at = 0, retransmits, v_retransmits) AS retransmits, if(values_at = 0, probes, v_probes) AS probes, "
      "if(values_at = 0, backlog, v_backlog) AS backlog, uid, inode, pid, process, cmdline, user, cookie, "
      "owner_carried, sock_type, unix_flags, peer_inode, first_time_ms, "
      "if(values_at = 0, first_snapshot_id, values_at) AS values_snapshot_id, uid_user "
      "FROM (SELECT *, (SELECT any(time_ms) FROM v_snapshots WHERE host = {0} AND netns_key = {1} AND "
      "snapshot_id = {2}) AS at_ms FROM v_spans WHERE host = {0} AND netns_key = {1} AND first_snapshot_id <= {2} "
      "AND (last_snapshot_id IS NULL OR last_snapshot_id >= {2})) "
      "ANY LEFT JOIN (SELECT span_id, max(snapshot_id) AS values_at, argMax(tx_queue, snapshot_id) AS v_tx_queue, "
      "argMax(rx_queue, snapshot_id) AS v_rx_queue, argMax(timer_code, snapshot_id) AS v_timer, "
      "argMax(timer_expires_ms, snapshot_id) AS v_expires_ms, argMax(retransmits, snapshot_id) AS v_retransmits, "
      "argMax(probes, snapshot_id) AS v_probes, argMax(backlog, snapshot_id) AS v_backlog FROM v_socket_values "
      "WHERE host = {0} AND netns_key = {1} AND snapshot_id <= {2} GROUP BY span_id) USING span_id "
      "ORDER BY span_id",
      h, k, snapshot_id);
}

std::vector<FleetNamespace> fleet_namespaces(Server& server, const std::optional<std::string>& host) {
  // Each namespace's newest 21 snapshot times come back newest first, for the usual interval.
  const auto rows = server.select(
      fmt::format("SELECT host, netns_key, any(netns), max(netns_initial), min(time_ms), count(), "
                  "argMax(ifNull(kernel, ''), snapshot_id), argMax(ifNull(machine_id, ''), snapshot_id), max(time_ms), "
                  "arrayStringConcat(arrayMap(x -> toString(x.2), arraySlice(arraySort(x -> -x.1, "
                  "groupArray((snapshot_id, time_ms))), 1, 21)), ',') "
                  "FROM v_snapshots {} GROUP BY host, netns_key ORDER BY host, netns_key",
                  host ? "WHERE host = " + quote(*host) : std::string()));
  std::vector<FleetNamespace> out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    FleetNamespace n;
    n.host = rows[i].at(0);
    n.netns_key = rows[i].at(1);
    n.netns = server.number(rows, i, 2);
    n.initial = server.number(rows, i, 3) != 0;
    n.first_ms = server.number(rows, i, 4);
    n.snapshots = server.number(rows, i, 5);
    n.kernel = rows[i].at(6);
    n.machine_id = rows[i].at(7);
    n.newest_ms = server.number(rows, i, 8);
    std::vector<std::int64_t> times;
    const auto& list = rows[i].at(9);
    for (std::size_t start = 0; start < list.size();) {
      auto end = list.find(',', start);
      if (end == std::string::npos) {
        end = list.size();
      }
      times.push_back(std::stoll(list.substr(start, end - start)));
      start = end + 1;
    }
    n.interval_ms = model::usual_interval_ms(std::move(times));
    out.push_back(std::move(n));
  }
  return out;
}

}  // namespace sockhist::central
