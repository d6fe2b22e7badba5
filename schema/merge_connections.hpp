// Reading an input database's connection log back for merge and export. Private to schema/.
#pragma once

#include <cstdint>
#include <optional>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include "sockhist/model.hpp"

namespace sockhist::store {

class ConnectionLogReader {
 public:
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
