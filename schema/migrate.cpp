// The schema's versions: the migrations embedded from schema/*.sql, bringing a database to a
// version in one transaction, and the view SQL readers run with an index named.
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <SQLiteCpp/Transaction.h>
#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/store.hpp"
#include "store_impl.hpp"

namespace sockhist::store::sql {
extern const std::vector<std::string_view> k_migrations;
extern const std::string_view k_views;
}  // namespace sockhist::store::sql

namespace sockhist::store {

using detail::pragma_int;

int schema_version() {
  return static_cast<int>(sql::k_migrations.size());
}

std::string snapshot_sockets_select(std::string_view index) {
  const std::string_view views = sql::k_views;
  constexpr std::string_view head = "CREATE VIEW v_snapshot_sockets AS\n";
  constexpr std::string_view spans = "JOIN socket_spans sp ";
  const auto start = views.find(head);
  const auto end = start == std::string_view::npos ? start : views.find(";\n", start);
  if (end == std::string_view::npos) {
    throw std::logic_error("views.sql has no v_snapshot_sockets");
  }
  std::string select(views.substr(start + head.size(), end - start - head.size()));
  const auto at = select.find(spans);
  if (at == std::string::npos) {
    throw std::logic_error("v_snapshot_sockets reads no socket_spans sp");
  }
  select.insert(at + spans.size(), fmt::format("INDEXED BY {} ", index));
  if (index == "socket_spans_by_state") {
    // Its second column: every state, one seek each.
    constexpr std::string_view netns = "ON sp.netns_id = s.netns_id";
    const auto on = select.find(netns, at);
    if (on == std::string::npos) {
      throw std::logic_error("v_snapshot_sockets joins socket_spans otherwise than by namespace");
    }
    select.insert(on + netns.size(), " AND sp.state_id IN (SELECT state_id FROM socket_states)");
  }
  return select;
}

int oldest_readable_schema_version() {
  return 6;  // versions 7 and 8 changed indexes only: a version 6 or 7 file reads as it is
}

std::string_view migration_sql(int version) {
  if (version < 1 || version > schema_version()) {
    throw std::out_of_range(fmt::format("no migration to schema version {}", version));
  }
  return sql::k_migrations[static_cast<std::size_t>(version - 1)];
}

void initialize(SQLite::Database& db) {
  initialize_to(db, schema_version());
}

void initialize_to(SQLite::Database& db, int target) {
  int app_id = 0;
  int version = 0;
  int objects = 0;
  try {
    app_id = pragma_int(db, "application_id");
    version = pragma_int(db, "user_version");
    objects = db.execAndGet("SELECT count(*) FROM sqlite_schema").getInt();
  } catch (const SQLite::Exception& e) {
    throw Error(Exit::db_refused, fmt::format("{}: not a usable database: {}", db.getFilename(), e.what()));
  }
  const bool fresh = app_id == 0 && version == 0 && objects == 0;
  if (!fresh && app_id != k_application_id) {
    throw Error(Exit::db_refused, fmt::format("{}: not a sockhist database (application_id {:#x}); left untouched",
                                              db.getFilename(), static_cast<std::uint32_t>(app_id)));
  }
  if (version > schema_version()) {
    throw Error(Exit::db_refused,
                fmt::format("{}: schema version {} is newer than this sockhist's {}; upgrade sockhist",
                            db.getFilename(), version, schema_version()));
  }
  if (version >= target) {
    return;
  }
  // A migration may rebuild a table others refer to (SQLite's way to change a constraint): foreign
  // keys are off while it runs (the pragma cannot change inside a transaction) and checked in full
  // before the commit.
  db.exec("PRAGMA foreign_keys = OFF");
  try {
    SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
    // Re-read under the write lock: another process may have migrated meanwhile.
    version = pragma_int(db, "user_version");
    for (auto step = static_cast<std::size_t>(version); step < static_cast<std::size_t>(target); ++step) {
      db.exec(std::string(sql::k_migrations[step]));
    }
    db.exec(std::string(sql::k_views));
    SQLite::Statement check(db, "PRAGMA foreign_key_check");
    if (check.executeStep()) {
      throw Error(Exit::db_refused, fmt::format("{}: migration to schema version {} left a row of {} without its "
                                                "{} row; nothing was changed",
                                                db.getFilename(), target, check.getColumn(0).getString(),
                                                check.getColumn(2).getString()));
    }
    check.reset();
    db.exec(fmt::format("PRAGMA application_id = {}", k_application_id));
    db.exec(fmt::format("PRAGMA user_version = {}", target));
    transaction.commit();
  } catch (...) {
    db.exec("PRAGMA foreign_keys = ON");
    throw;
  }
  db.exec("PRAGMA foreign_keys = ON");
}

}  // namespace sockhist::store
