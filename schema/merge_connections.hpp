// Reading an input database's connection log back for merge and export. Private to schema/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include "sockhist/model.hpp"

namespace sockhist::store {

// Refuses (Error db_refused, naming the input) a connection log holding what no kernel gives: a
// port beyond 65535, a family other than 4 and 6. Run before anything is written.
void check_connection_log(SQLite::Database& input, const std::string& input_name);

class ConnectionLogReader {
 public:
  // Its values as stored: merge_into has run check_connection_log on the input first.
  explicit ConnectionLogReader(SQLite::Database& input);
  // What the collector heard with one input snapshot; nullopt when it did not listen (or the
  // input predates the connection log).
  std::optional<model::HeardEnds> read(std::int64_t snapshot_id);

 private:
  bool m_has_log = false;
  std::optional<SQLite::Statement> m_log;
  std::optional<SQLite::Statement> m_ends;
  std::optional<SQLite::Statement> m_aggregates;
};

}  // namespace sockhist::store
