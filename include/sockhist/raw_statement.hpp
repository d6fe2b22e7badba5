// A prepared statement read through SQLite's own column functions, for the readers that step over
// a million rows (the analyzer's range readers, the writer reading a namespace's open spans back):
// SQLite::Statement::getColumn copies a shared pointer (two atomic operations) per column read,
// which costs more than the read itself at that scale.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <sqlite3.h>

namespace sockhist::store {

class RawStatement {
 public:
  RawStatement(SQLite::Database& db, std::string_view sql) : handle_(db.getHandle()), stmt_(nullptr, sqlite3_finalize) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v2(handle_, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    stmt_.reset(raw);
    check(rc);
  }
  void bind(int index, std::int64_t value) { check(sqlite3_bind_int64(stmt_.get(), index, value)); }
  // Whether a row is there to read; throws SQLite::Exception on an error.
  bool step() {
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc != SQLITE_DONE) {
      throw SQLite::Exception(handle_, rc);
    }
    return false;
  }
  void reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
  }
  bool null(int column) const { return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL; }
  std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_.get(), column); }
  std::string_view text(int column) const {
    const auto* chars = reinterpret_cast<const char*>(sqlite3_column_text(stmt_.get(), column));
    return chars == nullptr
               ? std::string_view()
               : std::string_view(chars, static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), column)));
  }

 private:
  void check(int rc) const {
    if (rc != SQLITE_OK) {
      throw SQLite::Exception(handle_, rc);
    }
  }
  sqlite3* handle_;
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt_;
};

}  // namespace sockhist::store
