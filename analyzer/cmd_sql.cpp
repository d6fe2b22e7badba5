// sockhist sql: the user's own query on a read-only connection, guarded as SQLite advises for SQL
// from elsewhere (https://www.sqlite.org/security.html): defensive mode, no ATTACH, no extension
// loading, no untrusted schema functions, tight limits, read-only statements only. --timeout holds
// whatever the query: SQLite is interrupted at the deadline, and a single step that runs on past it
// (one slow function call) ends the process. Rows are written as they come, never all held.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

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

// What sql holds in memory, whatever the query (README "The guarded query"): SQLite's heap, the
// rows a table waits for to size its columns, and one row.
constexpr std::int64_t k_sqlite_heap_bytes = 256LL << 20;
constexpr std::size_t k_table_sample_rows = 1000;
constexpr std::size_t k_table_sample_bytes = 16U << 20;
constexpr std::size_t k_row_bytes = 64U << 20;

// Interrupts the statement at the deadline; if one step of it runs on past the grace (a single slow
// function call, which SQLite cannot interrupt), says so and ends the process: the connection is
// read-only, so nothing is left half-written.
class Watchdog {
 public:
  Watchdog(sqlite3* db, std::chrono::milliseconds timeout, std::string message)
      : m_message(std::move(message)), m_thread([this, db, timeout] {
          std::unique_lock lock(m_mutex);
          if (m_wake.wait_for(lock, timeout, [this] { return m_done; })) {
            return;
          }
          m_fired = true;
          sqlite3_interrupt(db);
          const auto grace = std::clamp(timeout / 10, std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
          if (!m_wake.wait_for(lock, grace, [this] { return m_done; })) {
            const std::string line = fmt::format("sockhist: error: {}\n", m_message);
            [[maybe_unused]] const auto n = ::write(STDERR_FILENO, line.data(), line.size());
            ::_exit(static_cast<int>(Exit::usage));
          }
        }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      const std::lock_guard lock(m_mutex);
      m_done = true;
    }
    m_wake.notify_all();
    m_thread.join();
  }
  bool fired() {
    const std::lock_guard lock(m_mutex);
    return m_fired;
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_wake;
  bool m_done = false;
  bool m_fired = false;
  std::string m_message;
  std::thread m_thread;
};

// Pragmas that take an argument and still only read.
const std::set<std::string_view> k_reading_pragmas = {
    "table_info", "table_xinfo",      "table_list",        "index_info",      "index_xinfo",
    "index_list", "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"};

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
      // Reading a pragma is fine, and so is asking one about a table; setting one is not.
      if (arg2 != nullptr && (arg1 == nullptr || !k_reading_pragmas.contains(arg1))) {
        why = fmt::format("setting PRAGMA {} is not allowed", arg1 != nullptr ? arg1 : "");
        return SQLITE_DENY;
      }
      return SQLITE_OK;
    case SQLITE_FUNCTION:
      // fts3_tokenizer() with one argument hands out a pointer into this process.
      for (const char* function : {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}) {
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

// The statement prepared and checked: one statement that reads, the rest of the text only blanks
// and comments, no NUL byte.
std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> prepare(sqlite3* h, const std::string& sql,
                                                              const std::string& denied) {
  if (const auto nul = sql.find('\0'); nul != std::string::npos) {
    throw Error(Exit::usage, fmt::format("sql: a NUL byte at offset {}: the query would end there", nul));
  }
  const auto fail = [&](const char* text) {
    if (!denied.empty()) {
      throw Error(Exit::usage, fmt::format("sql: {}", denied));
    }
    throw Error(Exit::usage, fmt::format("sql: {}{}", sqlite3_errmsg(h), position(text, sqlite3_error_offset(h))));
  };
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  if (sqlite3_prepare_v2(h, sql.c_str(), static_cast<int>(sql.size()), &raw, &tail) != SQLITE_OK) {
    fail(sql.c_str());
  }
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
  if (!stmt) {
    throw Error(Exit::usage, "sql: the query is empty");
  }
  // What follows must compile to nothing: blanks, semicolons and comments.
  const auto offset = static_cast<std::size_t>(tail - sql.c_str());
  const std::string rest = sql.substr(offset);
  sqlite3_stmt* more = nullptr;
  const int rc = sqlite3_prepare_v2(h, rest.c_str(), static_cast<int>(rest.size()), &more, nullptr);
  sqlite3_finalize(more);
  if (rc != SQLITE_OK || more != nullptr) {
    throw Error(Exit::usage, fmt::format("sql: one statement at a time; more follows{}",
                                         position(sql, static_cast<int>(offset + rest.find_first_not_of(" \t\r\n;")))));
  }
  if (sqlite3_stmt_readonly(stmt.get()) == 0) {
    throw Error(Exit::usage, "sql: only statements that read are allowed (SELECT, WITH, EXPLAIN, reading a PRAGMA)");
  }
  return stmt;
}

// The row the statement is on, each value as SQLite typed it; throws past k_row_bytes.
std::vector<render::Value> row_of(sqlite3_stmt* stmt, int columns, std::size_t number) {
  std::size_t bytes = 0;
  for (int c = 0; c < columns; ++c) {
    bytes += static_cast<std::size_t>(sqlite3_column_bytes(stmt, c));
  }
  if (bytes > k_row_bytes) {
    throw Error(Exit::usage, fmt::format("sql: row {} holds {} bytes, more than sql writes in one row ({} MiB)", number,
                                         bytes, k_row_bytes >> 20));
  }
  std::vector<render::Value> row;
  row.reserve(static_cast<std::size_t>(columns));
  for (int c = 0; c < columns; ++c) {
    row.push_back(value_of(stmt, c));
  }
  return row;
}

// A value shown as its column is: integers and reals as text in a text column, integers as reals
// in a real one.
void conform(std::vector<render::Value>& row, const std::vector<render::Column>& columns) {
  for (std::size_t c = 0; c < row.size(); ++c) {
    auto& v = row[c];
    if (columns[c].kind == render::Kind::text) {
      if (std::holds_alternative<std::int64_t>(v)) {
        v = std::to_string(std::get<std::int64_t>(v));
      } else if (std::holds_alternative<double>(v)) {
        v = fmt::format("{}", std::get<double>(v));
      }
    } else if (columns[c].kind == render::Kind::real && std::holds_alternative<std::int64_t>(v)) {
      v = static_cast<double>(std::get<std::int64_t>(v));
    }
  }
}

// Each column shown as what its first values are (the rows a table sizes its columns by): text if
// any is text, else real if any is real, else integer.
std::vector<render::Column> columns_of(sqlite3_stmt* stmt, int count,
                                       const std::vector<std::vector<render::Value>>& sample) {
  std::vector<render::Column> columns;
  for (int c = 0; c < count; ++c) {
    bool any_text = false, any_real = false;
    for (const auto& row : sample) {
      any_text = any_text || std::holds_alternative<std::string>(row[static_cast<std::size_t>(c)]);
      any_real = any_real || std::holds_alternative<double>(row[static_cast<std::size_t>(c)]);
    }
    const char* name = sqlite3_column_name(stmt, c);
    const auto kind = any_text ? render::Kind::text : any_real ? render::Kind::real : render::Kind::integer;
    columns.push_back(
        {name != nullptr ? name : fmt::format("column{}", c + 1), name != nullptr ? name : "", kind, {}, 6});
  }
  return columns;
}

void write_out(const std::string& text) {
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) {
    throw Error(Exit::usage, "writing the output failed");
  }
}

Result run_sql(const SqlOptions& o) {
  if (o.query.has_value() == o.file.has_value()) {
    throw Error(Exit::usage, "sql: give the query as an argument or with --file, one of the two");
  }
  const std::string sql = o.file ? input::read_file(*o.file) : *o.query;
  const auto timeout = parse_duration(o.timeout, "--timeout");
  const auto options = render_options(o.common);
  auto db = open_db(o.common);
  sqlite3* h = db.getHandle();
  sqlite3_db_config(h, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(h, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_limit(h, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(h, SQLITE_LIMIT_LENGTH, 10'000'000);
  sqlite3_limit(h, SQLITE_LIMIT_SQL_LENGTH, 100'000);
  sqlite3_limit(h, SQLITE_LIMIT_COLUMN, 200);
  sqlite3_limit(h, SQLITE_LIMIT_EXPR_DEPTH, 100);
  sqlite3_limit(h, SQLITE_LIMIT_COMPOUND_SELECT, 50);
  sqlite3_limit(h, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 100);
  sqlite3_limit(h, SQLITE_LIMIT_VARIABLE_NUMBER, 10);
  sqlite3_limit(h, SQLITE_LIMIT_TRIGGER_DEPTH, 10);
  sqlite3_hard_heap_limit64(k_sqlite_heap_bytes);
  std::string denied;
  sqlite3_set_authorizer(h, authorize, &denied);
  const auto stmt = prepare(h, sql, denied);
  const std::string interrupted = fmt::format("sql: interrupted after {} (--timeout)", model::format_duration(timeout));
  Watchdog watchdog(h, std::chrono::milliseconds(timeout), interrupted);
  const auto step = [&] {
    const int rc = sqlite3_step(stmt.get());
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      throw Error(Exit::usage, watchdog.fired() ? interrupted : fmt::format("sql: {}", sqlite3_errmsg(h)));
    }
    return rc == SQLITE_ROW;
  };
  const int count = sqlite3_column_count(stmt.get());
  // The first rows, to size a table's columns and to type every column; then each row as it comes.
  std::vector<std::vector<render::Value>> sample;
  std::size_t sample_bytes = 0;
  bool more = true;
  while (sample.size() < k_table_sample_rows && sample_bytes < k_table_sample_bytes && (more = step())) {
    sample.push_back(row_of(stmt.get(), count, sample.size() + 1));
    for (int c = 0; c < count; ++c) {
      sample_bytes += static_cast<std::size_t>(sqlite3_column_bytes(stmt.get(), c)) + sizeof(render::Value);
    }
  }
  const auto columns = columns_of(stmt.get(), count, sample);
  for (auto& row : sample) {
    conform(row, columns);
  }
  std::size_t rows = sample.size();
  const auto each_further_row = [&](const std::function<void(const std::vector<render::Value>&)>& emit) {
    while (more && step()) {
      auto row = row_of(stmt.get(), count, ++rows);
      conform(row, columns);
      emit(row);
    }
  };
  if (options.format == render::Format::json) {
    auto doc = json_head("sql", o.common, nullptr);
    doc["query"] = sql;
    render::Table shape;
    shape.columns = columns;
    doc["columns"] = render::to_json_columns(shape);
    render::JsonStream stream;
    write_out(render::JsonStream::open(doc));
    for (const auto& row : sample) {
      write_out(stream.row(render::json_row(columns, row)));
    }
    each_further_row([&](const auto& row) { write_out(stream.row(render::json_row(columns, row))); });
    write_out(stream.close());
  } else if (options.format == render::Format::csv) {
    write_out(render::csv_header(columns));
    for (const auto& row : sample) {
      write_out(render::csv_row(columns, row));
    }
    each_further_row([&](const auto& row) { write_out(render::csv_row(columns, row)); });
  } else {
    const render::TextStream table(columns, sample, options);
    write_out(table.header());
    for (const auto& row : sample) {
      write_out(table.line(row));
    }
    each_further_row([&](const auto& row) { write_out(table.line(row)); });
    if (rows == 0) {
      write_out(render::printable("(no rows)") + "\n");
    }
  }
  return {"", 0};
}

}  // namespace

void setup_sql(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<SqlOptions>();
  auto* sub = add_command(app, "sql",
                          "Runs one read-only SQL statement (the views of schema/README.md, installed under "
                          "/usr/share/doc/sockhist, make most questions one "
                          "line), guarded: no writes, no ATTACH, no extensions, interrupted after --timeout",
                          selected, [o] { return run_sql(*o); });
  add_common(*sub, o->common, false, false);  // the statement says which hosts; --timeout is its own
  sub->add_option("query", o->query, "The statement (or --file)");
  sub->add_option("--file", o->file, "Read the statement from this file");
  sub->add_option("--timeout", o->timeout, "Interrupt the statement after this long")->capture_default_str();
}

}  // namespace sockhist::analyzer
