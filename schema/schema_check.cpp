// A database is read only as sockhist made it: its tables, indexes and views are those the
// migrations make, exactly, and it has no trigger; and every connection that reads runs with
// SQLite's defences up and a time limit. A file that claims to be ours but was changed (a table
// replaced by a view that never ends, a trigger) is refused before any query touches it.
#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include <sqlite3.h>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "sockhist/timeutil.hpp"
#include "store_impl.hpp"

namespace sockhist::store {

namespace {

// type, table, sql: an object of the schema as sqlite_schema holds it.
using Object = std::tuple<std::string, std::string, std::string>;

std::map<std::string, Object> objects_of(SQLite::Database& db) {
  std::map<std::string, Object> out;
  SQLite::Statement q(db, "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema");
  while (q.executeStep()) {
    out.emplace(q.getColumn(1).getString(),
                Object{q.getColumn(0).getString(), q.getColumn(2).getString(), q.getColumn(3).getString()});
  }
  return out;
}

}  // namespace
}  // namespace sockhist::store

namespace sockhist::store::built {
extern const int k_version;
extern const std::vector<std::array<std::string_view, 4>> k_objects;
}  // namespace sockhist::store::built

namespace sockhist::store {
namespace {

// What the migrations make at the current version, as the build dumped it (sockhist-schema-dump).
const std::map<std::string, Object>& built_objects() {
  static const std::map<std::string, Object> built = [] {
    std::map<std::string, Object> out;
    for (const auto& [type, name, table, sql] : built::k_objects) {
      out.emplace(std::string(name), Object{std::string(type), std::string(table), std::string(sql)});
    }
    return out;
  }();
  return built;
}

// What the migrations of this build make up to `version`, read once per version from a database
// made in memory.
const std::map<std::string, Object>& expected_objects(int version) {
  static std::mutex lock;
  static std::map<int, std::map<std::string, Object>> made;
  const std::lock_guard guard(lock);
  auto it = made.find(version);
  if (it == made.end()) {
    SQLite::Database memory(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    initialize_to(memory, version);
    it = made.emplace(version, objects_of(memory)).first;
  }
  return it->second;
}

// SQLite's own tables, made as it needs them (AUTOINCREMENT, ANALYZE).
bool sqlite_internal(const std::string& name, const Object& object) {
  return std::get<0>(object) == "table" &&
         (name == "sqlite_sequence" || name == "sqlite_stat1" || name == "sqlite_stat4");
}

std::atomic<std::int64_t> g_deadline_ns{0};  // steady clock; 0: no limit
std::atomic<std::int64_t> g_limit_ms{0};
std::atomic<bool> g_passed{false};

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int past_deadline(void*) {
  const auto deadline = g_deadline_ns.load(std::memory_order_relaxed);
  if (deadline != 0 && steady_ns() >= deadline) {
    g_passed.store(true);
    return 1;  // interrupts the statement
  }
  return 0;
}

}  // namespace

void set_read_time_limit(std::chrono::milliseconds limit) {
  g_limit_ms.store(limit.count());
  g_deadline_ns.store(limit.count() > 0 ? steady_ns() + limit.count() * 1'000'000 : 0);
}

std::optional<std::string> read_interrupted() {
  if (!g_passed.load()) {
    return std::nullopt;
  }
  return fmt::format("interrupted after {} (--timeout)", model::format_duration(g_limit_ms.load()));
}

bool schema_as_built(SQLite::Database& db) {
  return built::k_version == schema_version() && objects_of(db) == built_objects();
}

namespace detail {

void guard_reader(SQLite::Database& db) {
  sqlite3* h = db.getHandle();
  sqlite3_db_config(h, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(h, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_progress_handler(h, 1000, past_deadline, nullptr);
}

void require_our_schema(SQLite::Database& db, const std::filesystem::path& path, int version) {
  const auto actual = objects_of(db);
  // The usual case, at once: exactly what this build's migrations make, and nothing else. Anything
  // else (an older version, tables of the user's own, another SQLite's text) is compared with the
  // objects the migrations make in memory, here and now.
  if ((version == 0 || version == schema_version()) && built::k_version == schema_version() &&
      actual == built_objects()) {
    return;
  }
  const auto& expected = expected_objects(version == 0 ? schema_version() : version);
  for (const auto& [name, object] : expected) {
    const auto it = actual.find(name);
    if (it == actual.end()) {
      refuse(path, fmt::format("has no {} {}: not as sockhist made it; refused", std::get<0>(object), name));
    }
    if (std::get<0>(it->second) != std::get<0>(object)) {
      refuse(path, fmt::format("has {} as a {}, where sockhist makes a {}: not as sockhist made it; refused", name,
                               std::get<0>(it->second), std::get<0>(object)));
    }
    if (it->second != object) {
      refuse(path, fmt::format("has {} {} defined otherwise than sockhist defines it: not as sockhist made it; "
                               "refused",
                               std::get<0>(object), name));
    }
  }
  for (const auto& [name, object] : actual) {
    if (std::get<0>(object) == "trigger") {
      refuse(path, fmt::format("has a trigger, {}, which sockhist never makes: refused", name));
    }
    if (name.starts_with("sqlite_") && !expected.contains(name) && !sqlite_internal(name, object)) {
      refuse(path, fmt::format("has {} {}, not one of SQLite's own: refused", std::get<0>(object), name));
    }
  }
}

}  // namespace detail

}  // namespace sockhist::store
