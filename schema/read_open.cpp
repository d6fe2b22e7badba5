// Opening a database to read it: checked, and a copy nobody can write read as it is (immutable)
// when its log holds nothing, refused with the reason when it does; merge's inputs besides.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>

#include <sqlite3.h>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/merge.hpp"
#include "sockhist/store.hpp"
#include "store_impl.hpp"

namespace sockhist::store {

namespace {

using detail::pragma_int;
using detail::refuse;
using detail::refuse_if_not_ours;

// A file name as an SQLite URI's path: '%', '?' and '#' escaped.
std::string uri_path(const std::filesystem::path& path) {
  std::string out;
  for (const char c : std::filesystem::absolute(path).string()) {
    if (c == '%' || c == '?' || c == '#') {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out;
}

// A database nobody can write here: no write permission on the file for anyone, or a read-only
// file system (a copy on read-only media).
bool read_only_copy(const std::filesystem::path& path) {
  struct stat st {};
  struct statvfs fs {};
  return (::stat(path.c_str(), &st) == 0 && (st.st_mode & 0222) == 0) ||
         (::statvfs(path.c_str(), &fs) == 0 && (fs.f_flag & ST_RDONLY) != 0);
}

}  // namespace

namespace {

// Opens `name` (a path, or a URI with `flags` holding SQLITE_OPEN_URI) and checks it is a current
// sockhist database.
SQLite::Database open_checked(const std::filesystem::path& path, const std::string& name, int flags) {
  detail::note_opened(path);
  SQLite::Database db(name, flags);
  db.setBusyTimeout(10'000);
  const int app_id = pragma_int(db, "application_id");
  const int version = pragma_int(db, "user_version");
  if (app_id != k_application_id) {
    refuse(path, "is not a sockhist database");
  }
  if (version > schema_version()) {
    refuse(path, fmt::format("has schema version {}, newer than this sockhist's {}; upgrade sockhist", version,
                             schema_version()));
  }
  if (version < oldest_readable_schema_version()) {
    refuse(path, fmt::format("has schema version {}, older than this sockhist's {}; run sockhist-collect "
                             "--db on it once to migrate it",
                             version, schema_version()));
  }
  detail::require_our_schema(db, path, version);
  detail::guard_reader(db);
  return db;
}

// Why a database whose -shm cannot be created here can or cannot be read: nothing when it is a
// read-only copy with nothing in its -wal (it is then opened as immutable), else the reason.
std::optional<std::string> why_not_immutable(const std::filesystem::path& path) {
  const std::filesystem::path wal = path.string() + "-wal";
  std::error_code ec;
  const auto wal_bytes = std::filesystem::is_regular_file(wal, ec) ? std::filesystem::file_size(wal, ec) : 0;
  const auto dir = std::filesystem::absolute(path).parent_path().string();
  if (wal_bytes > 0) {
    return fmt::format(
        "its write-ahead log {} holds {} bytes of changes not yet in the database file, and reading "
        "them needs {}-shm, which is missing and cannot be created in {}: copy {} and {} to a writable "
        "directory and read the copy (or copy the -shm file along with them)",
        wal.string(), wal_bytes, path.string(), dir, path.string(), wal.string());
  }
  if (!read_only_copy(path)) {
    return fmt::format(
        "a reader needs {}-shm beside it, which is missing and cannot be created in {}: run "
        "sockhist-collect on it once (it keeps its -wal and -shm files for readers), or read a copy",
        path.string(), dir);
  }
  return std::nullopt;
}

}  // namespace

std::string database_file(SQLite::Database& db) {
  const char* file = sqlite3_db_filename(db.getHandle(), "main");
  return file != nullptr && *file != '\0' ? std::string(file) : db.getFilename();
}

SQLite::Database open_read_only(const std::filesystem::path& path,
                                const std::function<void(const std::string&)>& on_damage) {
  const auto check = check_file(path);
  if (check.kind == FileKind::missing) {
    throw Error(Exit::db_refused, fmt::format("{}: no such database", path.string()));
  }
  if (check.damage && on_damage) {
    on_damage(*check.damage);
  }
  refuse_if_not_ours(path, check);
  // A reader's connection serves one thread: no mutex around every column read.
  const int k_flags = SQLite::OPEN_READONLY | SQLITE_OPEN_NOMUTEX;
  const auto immutable = [&] {
    try {
      return open_checked(path, "file:" + uri_path(path) + "?immutable=1", k_flags | SQLITE_OPEN_URI);
    } catch (const SQLite::Exception& e) {
      throw Error(Exit::db_refused, fmt::format("{}: cannot open: {}", path.string(), e.what()));
    }
  };
  // A copy no sockhist writer has run beside: SQLite would leave a -wal and a -shm it made there.
  std::error_code ec;
  if (check.wal_mode && !std::filesystem::exists(path.string() + "-wal", ec) &&
      !std::filesystem::exists(path.string() + "-shm", ec) && !std::filesystem::exists(path.string() + ".lock", ec)) {
    return immutable();
  }
  try {
    return open_checked(path, path.string(), k_flags);
  } catch (const SQLite::Exception& e) {
    const int code = e.getErrorCode() & 0xff;
    const std::filesystem::path shm = path.string() + "-shm";
    if ((code != SQLITE_READONLY && code != SQLITE_CANTOPEN) || std::filesystem::exists(shm, ec)) {
      throw Error(Exit::db_refused, fmt::format("{}: cannot open: {}", path.string(), e.what()));
    }
    // WAL mode needs a -shm file this reader cannot create.
    if (const auto why = why_not_immutable(path)) {
      throw Error(Exit::db_refused, fmt::format("{}: cannot read: {}", path.string(), *why));
    }
  }
  // A copy nobody writes, with no log to apply: read the file as it is, without locks or -shm.
  return immutable();
}

SQLite::Database open_input(const std::filesystem::path& path) {
  auto db =
      open_read_only(path, [&](const std::string& damage) { refuse(path, fmt::format("is damaged: {}", damage)); });
  // Read whole anyway: the full integrity_check (indexes against their tables too) and every
  // reference, since quick_check passes some mixes of a -wal and an older copy of its file.
  try {
    SQLite::Statement q(db, "PRAGMA integrity_check(1)");
    std::string first = q.executeStep() ? q.getColumn(0).getString() : std::string("no answer");
    if (first != "ok") {
      std::replace(first.begin(), first.end(), '\n', ' ');
      throw Error(Exit::db_refused,
                  fmt::format("{}: corrupt (integrity_check: {})", path.string(), first.substr(0, 160)));
    }
    SQLite::Statement keys(db, "PRAGMA foreign_key_check");
    if (keys.executeStep()) {
      throw Error(Exit::db_refused,
                  fmt::format("{}: corrupt (a row of {} refers to a missing row of {})", path.string(),
                              keys.getColumn(0).getString(), keys.getColumn(2).getString()));
    }
  } catch (const SQLite::Exception& e) {
    throw Error(Exit::db_refused, fmt::format("{}: corrupt ({})", path.string(), e.what()));
  }
  return db;
}

}  // namespace sockhist::store
