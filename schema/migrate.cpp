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
#include "sockhist/model.hpp"
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

bool has_time_wait_entries(SQLite::Database& db) {
  return pragma_int(db, "user_version") >= 11;  // 011_time_wait_entries.sql
}

namespace {

// When span `a` (of socket_spans) entered TIME_WAIT, or NULL where it cannot be dated: the end the
// connection log joined to it (the first by snapshot and time), else a TIME_WAIT timer of at most
// 60 s plus slack at its first sighting, counted back from that sighting.
std::string entered_sql(std::string_view a) {
  return fmt::format(
      "coalesce((SELECT e.time_ms FROM connection_ends e WHERE e.time_wait_span_id = {0}.span_id "
      "ORDER BY e.snapshot_id, e.time_ms LIMIT 1), CASE WHEN {0}.timer = {1} AND {0}.timer_ms <= {2} THEN "
      "coalesce({0}.first_time_ms, (SELECT f.time_ms FROM snapshots f WHERE f.snapshot_id = {0}.first_snapshot_id)) "
      "- ({3} - {0}.timer_ms) END)",
      a, static_cast<int>(model::TimerKind::timewait), model::k_time_wait_ms + model::k_time_wait_timer_slack_ms,
      model::k_time_wait_ms);
}

}  // namespace

std::string time_wait_entries_sql(std::string_view spans) {
  // The reader's rule (query::time_wait_report): a span is a socket's first unless it continues a
  // TIME_WAIT of the same 4-tuple seen in the snapshot before, entered at most 2 s earlier (and
  // with the same cookie, where both have one). The collector continues such a socket in one span,
  // except across a new boot id (a copied tree, or a capture whose boot id changed while its
  // sockets stayed): only at the first snapshot of a boot is the one before looked up. Each
  // candidate span is read once (d), each of their first snapshots once (f): a week is a million
  // spans over 10,080 snapshots.
  return fmt::format(
      "WITH d AS MATERIALIZED (SELECT sp.netns_id, sp.first_snapshot_id, sp.span_id, sp.state_id, sp.local_addr_id, "
      "sp.local_port, sp.remote_addr, sp.remote_port, sp.cookie, {0} AS entered, EXISTS (SELECT 1 FROM "
      "connection_ends x WHERE x.time_wait_span_id = sp.span_id) AS exact FROM socket_spans sp "
      "WHERE sp.state_id = (SELECT state_id FROM socket_states WHERE proto = 'tcp' AND state = 'TIME_WAIT') "
      "AND ({1})), "
      "f AS MATERIALIZED (SELECT s.snapshot_id, s.boot_id, (SELECT p.snapshot_id FROM snapshots p "
      "WHERE p.netns_id = s.netns_id AND p.snapshot_id < s.snapshot_id ORDER BY p.snapshot_id DESC LIMIT 1) AS prev_id "
      "FROM snapshots s WHERE s.snapshot_id IN (SELECT first_snapshot_id FROM d)), "
      "starts AS MATERIALIZED (SELECT f.snapshot_id, f.prev_id FROM f JOIN snapshots p ON p.snapshot_id = f.prev_id "
      "WHERE coalesce(p.boot_id, '') IS NOT coalesce(f.boot_id, '')) "
      "INSERT OR REPLACE INTO time_wait_entries(netns_id, snapshot_id, span_id, entered_ms, exact) "
      "SELECT d.netns_id, d.first_snapshot_id, d.span_id, d.entered, d.exact FROM d "
      "LEFT JOIN starts ON starts.snapshot_id = d.first_snapshot_id WHERE d.entered IS NOT NULL AND "
      "(starts.snapshot_id IS NULL OR NOT EXISTS (SELECT 1 FROM socket_spans b INDEXED BY socket_spans_by_first "
      "WHERE b.netns_id = d.netns_id "
      // b lasted until the snapshot before and entered at most 2 s before d: it was first seen in
      // the minute or so before, so only the spans first seen then are read
      "AND b.first_snapshot_id > coalesce((SELECT max(o.snapshot_id) FROM snapshots o WHERE o.netns_id = d.netns_id "
      "AND o.time_ms < d.entered - {4}), 0) AND b.first_snapshot_id <= starts.prev_id "
      "AND b.last_snapshot_id = starts.prev_id AND b.state_id = d.state_id AND b.local_addr_id = d.local_addr_id "
      "AND b.local_port = d.local_port AND b.remote_port = d.remote_port AND b.remote_addr = d.remote_addr "
      "AND (b.cookie IS NULL OR d.cookie IS NULL OR b.cookie = d.cookie) AND d.entered <= {2} + {3}))",
      entered_sql("sp"), spans, entered_sql("b"), model::k_time_wait_reentry_ms,
      model::k_time_wait_reentry_ms + model::k_time_wait_ms + 3 * model::k_time_wait_timer_slack_ms);
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
      if (step + 1 == 11) {
        db.exec(time_wait_entries_sql("1"));  // the spans already stored (011_time_wait_entries.sql)
      }
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
