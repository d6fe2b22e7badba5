// The read layer's span readers shared by several questions.
#include <SQLiteCpp/Statement.h>

#include "read.hpp"

namespace sockhist::query::detail {

// Listening ports of the range, each with its listeners' spans and owners, oldest first.
Listeners listeners(SQLite::Database& db, const Scope& scope, std::int64_t first_id, std::int64_t last_id) {
  Listeners out;
  const auto listen = state_id(db, model::Proto::tcp, model::SockState::listen);
  if (!listen) {
    return out;
  }
  SQLite::Statement q(db,
                      "SELECT sp.local_port, sp.first_snapshot_id, p.pid, p.comm, p.cmdline FROM socket_spans sp "
                      "LEFT JOIN processes p ON p.process_id = sp.process_id "
                      "WHERE sp.netns_id = ? AND sp.first_snapshot_id <= ? AND sp.last_snapshot_id >= ? "
                      "AND sp.state_id = ? ORDER BY sp.first_snapshot_id");
  q.bind(1, scope.netns_id);
  q.bind(2, last_id);
  q.bind(3, first_id);
  q.bind(4, *listen);
  while (q.executeStep()) {
    auto& list = out[q.getColumn(0).getInt64()];
    if (!q.getColumn(2).isNull()) {
      list.push_back({q.getColumn(1).getInt64(), q.getColumn(2).getInt(), q.getColumn(3).getString(),
                      opt_text(q.getColumn(4))});
    }
  }
  return out;
}

// The owner of the listener that was there when snapshot `id` was taken (else the first one).
const Listener* listener_at(const std::vector<Listener>& list, std::int64_t id) {
  const Listener* found = list.empty() ? nullptr : &list.front();
  for (const auto& l : list) {
    if (l.first_id <= id) {
      found = &l;
    }
  }
  return found;
}

}  // namespace sockhist::query::detail
