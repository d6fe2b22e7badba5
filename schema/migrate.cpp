// The schema's versions: the migrations embedded from schema/*.sql, bringing a database to a
// version in one transaction, and the view SQL readers run with an index named.
#include <cstdint>
#include <limits>
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

std::string span_length_class(std::string_view alias) {
  const std::string prefix = alias.empty() ? std::string() : std::string(alias) + ".";
  // An open span first: every span is inserted open, and its class is then one test, not 31.
  std::string out = fmt::format("CASE WHEN {}last_snapshot_id = {} THEN 31", prefix, k_span_open);
  for (int c = 0; c < k_span_length_classes - 1; ++c) {
    out +=
        fmt::format(" WHEN {0}last_snapshot_id - {0}first_snapshot_id < {1} THEN {2}", prefix, std::int64_t{1} << c, c);
  }
  return out + fmt::format(" ELSE {} END", k_span_length_classes - 1);
}

std::string read_by_length(std::string sql, std::string_view after, std::string_view start) {
  constexpr std::string_view spans = "socket_spans sp ";
  const auto at = sql.find(spans);
  if (at == std::string::npos || at < 5) {
    throw std::logic_error("a span reader reads no socket_spans sp");
  }
  // Each class's window of first ids, the spans read in the loop inside it (CROSS JOIN keeps that
  // order: read the other way round, the planner would scan every span of a state).
  std::string windows = "(VALUES ";
  for (int c = 0; c < k_span_length_classes; ++c) {
    windows +=
        fmt::format("{}({}, {})", c ? ", " : "", c,
                    c + 1 < k_span_length_classes ? std::int64_t{1} << c : std::numeric_limits<std::int64_t>::max());
  }
  windows += ") lc CROSS JOIN ";
  const auto term =
      fmt::format(" AND {} = lc.column1 AND sp.first_snapshot_id > {} - lc.column2", span_length_class("sp"), start);
  const auto cond = sql.find(after, at);
  if (cond == std::string::npos) {
    throw std::logic_error(fmt::format("a span reader has no condition '{}'", after));
  }
  sql.insert(cond + after.size(), term);
  sql.insert(at + spans.size(), "INDEXED BY socket_spans_by_length ");
  if (sql.compare(at - 5, 5, "FROM ") == 0) {
    sql.insert(at, windows);
  } else if (sql.compare(at - 5, 5, "JOIN ") == 0) {
    sql.replace(at - 5, 5, "CROSS JOIN " + windows);
  } else {
    throw std::logic_error("a span reader names socket_spans sp after neither FROM nor JOIN");
  }
  return sql;
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
  constexpr std::string_view netns = "ON sp.netns_id = s.netns_id";
  if (select.find(netns, at) == std::string::npos) {
    throw std::logic_error("v_snapshot_sockets joins socket_spans otherwise than by namespace");
  }
  // The state-led indexes' second column: every state, one seek each.
  const auto every_state = [&] {
    select.insert(select.find(netns, at) + netns.size(), " AND sp.state_id IN (SELECT state_id FROM socket_states)");
  };
  if (index == "socket_spans_by_length") {
    every_state();
    return read_by_length(std::move(select), netns, "s.snapshot_id");
  }
  select.insert(at + spans.size(), fmt::format("INDEXED BY {} ", index));
  if (index == "socket_spans_by_state") {
    every_state();
  }
  return select;
}

int oldest_readable_schema_version() {
  return 6;  // 7 to 9 changed indexes only, 10 added the connection log: older files read as they are
}

bool has_connection_log(SQLite::Database& db) {
  return pragma_int(db, "user_version") >= 10;  // 010_connection_log.sql
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
