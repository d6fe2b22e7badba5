// sockhist sql: the user's own query on a read-only connection, guarded as SQLite advises for SQL
// from elsewhere (https://www.sqlite.org/security.html): defensive mode, no ATTACH, no extension
// loading, no untrusted schema functions, tight limits, read-only statements only, and an interrupt
// after --timeout.
#include <sqlite3.h>

#include <chrono>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/input.hpp"

namespace sockhist::analyzer {

namespace {

struct SqlOptions {
  Common common;
  std::optional<std::string> query;
  std::optional<std::string> file;
  std::string timeout = "30s";
};

struct Deadline {
  std::chrono::steady_clock::time_point at;
  bool passed = false;
};

int check_deadline(void* data) {
  auto* d = static_cast<Deadline*>(data);
  if (std::chrono::steady_clock::now() >= d->at) {
    d->passed = true;
    return 1;  // interrupts the statement
  }
  return 0;
}

// Refuses what a read-only connection would still allow: attaching files, setting pragmas and
// calling functions that reach outside the database. `denied` (the user data) says what it refused.
int authorize(void* denied, int action, const char* arg1, const char* arg2, const char*, const char*) {
  auto& why = *static_cast<std::string*>(denied);
  switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      why = "ATTACH and DETACH are not allowed: sql reads this database only";
      return SQLITE_DENY;
    case SQLITE_PRAGMA:
      if (arg2 != nullptr) {  // reading a pragma is fine, setting one is not
        why = fmt::format("setting PRAGMA {} is not allowed", arg1 != nullptr ? arg1 : "");
        return SQLITE_DENY;
      }
      return SQLITE_OK;
    case SQLITE_FUNCTION:
      for (const char* function : {"load_extension", "readfile", "writefile", "edit"}) {
        if (arg2 != nullptr && std::string_view(arg2) == function) {
          why = fmt::format("{}() is not allowed", function);
          return SQLITE_DENY;
        }
      }
      return SQLITE_OK;
    default:
      return SQLITE_OK;
  }
}

// Where in the query an error points, for a one-line message: "at offset 14 (near 'FORM v_sn')".
std::string position(const std::string& sql, int offset) {
  if (offset < 0 || static_cast<std::size_t>(offset) >= sql.size()) {
    return {};
  }
  std::string near = sql.substr(static_cast<std::size_t>(offset), 24);
  for (auto& ch : near) {
    if (ch == '\n' || ch == '\r' || ch == '\t') {
      ch = ' ';
    }
  }
  return fmt::format(" at offset {} ('{}')", offset, near);
}

render::Value value_of(sqlite3_stmt* stmt, int column) {
  switch (sqlite3_column_type(stmt, column)) {
    case SQLITE_INTEGER:
      return static_cast<std::int64_t>(sqlite3_column_int64(stmt, column));
    case SQLITE_FLOAT:
      return sqlite3_column_double(stmt, column);
    case SQLITE_NULL:
      return {};
    case SQLITE_BLOB: {
      const auto* bytes = static_cast<const unsigned char*>(sqlite3_column_blob(stmt, column));
      std::string hex = "x'";
      for (int i = 0; i < sqlite3_column_bytes(stmt, column); ++i) {
        hex += fmt::format("{:02x}", bytes[i]);
      }
      return hex + "'";
    }
    default:
      return std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, column)),
                         static_cast<std::size_t>(sqlite3_column_bytes(stmt, column)));
  }
}

Result run_sql(const SqlOptions& o) {
  if (o.query.has_value() == o.file.has_value()) {
    throw Error(Exit::usage, "sql: give the query as an argument or with --file, one of the two");
  }
  std::string sql;
  if (o.file) {
    sql = input::read_file(*o.file);
  } else {
    sql = *o.query;
  }
  const auto timeout = parse_duration(o.timeout, "--timeout");
  auto db = open_db(o.common);
  sqlite3* h = db.getHandle();
  sqlite3_db_config(h, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(h, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_limit(h, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(h, SQLITE_LIMIT_LENGTH, 10'000'000);
  sqlite3_limit(h, SQLITE_LIMIT_SQL_LENGTH, 100'000);
  sqlite3_limit(h, SQLITE_LIMIT_EXPR_DEPTH, 100);
  sqlite3_limit(h, SQLITE_LIMIT_COMPOUND_SELECT, 50);
  sqlite3_limit(h, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 100);
  sqlite3_limit(h, SQLITE_LIMIT_VARIABLE_NUMBER, 10);
  sqlite3_limit(h, SQLITE_LIMIT_TRIGGER_DEPTH, 10);
  std::string denied;
  sqlite3_set_authorizer(h, authorize, &denied);
  Deadline deadline{std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout)};
  sqlite3_progress_handler(h, 10'000, check_deadline, &deadline);

  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  if (sqlite3_prepare_v2(h, sql.c_str(), static_cast<int>(sql.size()), &raw, &tail) != SQLITE_OK) {
    if (!denied.empty()) {
      throw Error(Exit::usage, fmt::format("sql: {}", denied));
    }
    throw Error(Exit::usage, fmt::format("sql: {}{}", sqlite3_errmsg(h), position(sql, sqlite3_error_offset(h))));
  }
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
  if (!stmt) {
    throw Error(Exit::usage, "sql: the query is empty");
  }
  const std::string rest(tail != nullptr ? tail : "");
  if (rest.find_first_not_of(" \t\r\n;") != std::string::npos) {
    throw Error(Exit::usage, fmt::format("sql: one statement at a time; more follows{}",
                                         position(sql, static_cast<int>(sql.size() - rest.size()))));
  }
  if (sqlite3_stmt_readonly(stmt.get()) == 0) {
    throw Error(Exit::usage, "sql: only statements that read are allowed (SELECT, WITH, EXPLAIN, reading a PRAGMA)");
  }
  const int columns = sqlite3_column_count(stmt.get());
  std::vector<std::vector<render::Value>> rows;
  int rc = 0;
  while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
    std::vector<render::Value> row;
    for (int c = 0; c < columns; ++c) {
      row.push_back(value_of(stmt.get(), c));
    }
    rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) {
    if (deadline.passed) {
      throw Error(Exit::usage, fmt::format("sql: interrupted after {} (--timeout)", model::format_duration(timeout)));
    }
    throw Error(Exit::usage, fmt::format("sql: {}", sqlite3_errmsg(h)));
  }
  // Each column is shown as what its values are: integers, reals, or text.
  render::Table t;
  for (int c = 0; c < columns; ++c) {
    bool any_text = false, any_real = false;
    for (const auto& row : rows) {
      any_text = any_text || std::holds_alternative<std::string>(row[static_cast<std::size_t>(c)]);
      any_real = any_real || std::holds_alternative<double>(row[static_cast<std::size_t>(c)]);
    }
    const char* name = sqlite3_column_name(stmt.get(), c);
    const auto kind = any_text ? render::Kind::text : any_real ? render::Kind::real : render::Kind::integer;
    t.columns.push_back(
        {name != nullptr ? name : fmt::format("column{}", c + 1), name != nullptr ? name : "", kind, {}, 6});
  }
  for (auto& row : rows) {
    for (int c = 0; c < columns; ++c) {
      auto& v = row[static_cast<std::size_t>(c)];
      if (t.columns[static_cast<std::size_t>(c)].kind == render::Kind::text) {
        if (std::holds_alternative<std::int64_t>(v)) {
          v = std::to_string(std::get<std::int64_t>(v));
        } else if (std::holds_alternative<double>(v)) {
          v = fmt::format("{}", std::get<double>(v));
        }
      } else if (t.columns[static_cast<std::size_t>(c)].kind == render::Kind::real &&
                 std::holds_alternative<std::int64_t>(v)) {
        v = static_cast<double>(std::get<std::int64_t>(v));
      }
    }
  }
  t.rows = std::move(rows);
  const auto options = render_options(o.common);
  if (options.format == render::Format::json) {
    auto doc = json_head("sql", o.common, nullptr);
    doc["query"] = sql;
    return {render::render(t, options, doc), 0};
  }
  if (options.format == render::Format::table && t.rows.empty()) {
    t.notes.push_back("(no rows)");
  }
  return {render::render(t, options), 0};
}

}  // namespace

void setup_sql(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<SqlOptions>();
  auto* sub = add_command(app, "sql",
                          "Runs one read-only SQL statement (the views of schema/README.md make most questions one "
                          "line), guarded: no writes, no ATTACH, no extensions, interrupted after --timeout",
                          selected, [o] { return run_sql(*o); });
  add_common(*sub, o->common, false);  // the statement says which hosts it reads
  sub->add_option("query", o->query, "The statement (or --file)");
  sub->add_option("--file", o->file, "Read the statement from this file");
  sub->add_option("--timeout", o->timeout, "Interrupt the statement after this long")->capture_default_str();
}

}  // namespace sockhist::analyzer
