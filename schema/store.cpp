#include "sockhist/store.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include <sqlite3.h>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "store_impl.hpp"

namespace sockhist::store {

bool skip_memory_statistics() {
  return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
}

namespace detail {

[[noreturn]] void refuse(const std::filesystem::path& path, std::string_view why) {
  throw Error(Exit::db_refused, fmt::format("{}: {}", path.string(), why));
}

void refuse_if_not_ours(const std::filesystem::path& path, const FileCheck& check) {
  switch (check.kind) {
    case FileKind::empty:
      refuse(path, "is an empty file, not a sockhist database (left untouched; remove it or choose another --db)");
    case FileKind::not_sqlite:
      refuse(path, "is not an SQLite database (left untouched)");
    case FileKind::foreign_sqlite:
      refuse(path, fmt::format("is an SQLite database of another application (application_id {:#x}); "
                               "left untouched",
                               static_cast<std::uint32_t>(check.application_id)));
    case FileKind::missing:
    case FileKind::sockhist:
      break;
  }
  if (check.user_version > schema_version()) {
    refuse(path, fmt::format("has schema version {}, newer than this sockhist's {}; upgrade sockhist "
                             "(the database was left untouched)",
                             check.user_version, schema_version()));
  }
}

int pragma_int(SQLite::Database& db, const char* pragma) {
  return db.execAndGet(fmt::format("PRAGMA {}", pragma)).getInt();
}

}  // namespace detail

namespace {

using detail::pragma_int;
using detail::refuse;
using detail::refuse_if_not_ours;

// A file this process is about to write or create through `path` must be its own: not a symbolic
// link (another user may have planted it to make root overwrite a file of its choosing), a
// regular file (a FIFO would block, a device is no database), and owned by this user or root.
// Nothing there is fine: it will be created. Throws Error(db_refused) saying why.
void require_own_regular_file(const std::filesystem::path& path, const struct stat& st) {
  if (S_ISLNK(st.st_mode)) {
    refuse(path, "is a symbolic link: refusing to write through it (remove it, or give the real path)");
  }
  if (S_ISDIR(st.st_mode)) {
    refuse(path, "is a directory, not a database file");
  }
  if (!S_ISREG(st.st_mode)) {
    refuse(path, "is not a regular file (a FIFO, socket or device): refusing to use it");
  }
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    refuse(path, fmt::format("is owned by uid {}, neither this user ({}) nor root: refusing to write to it", st.st_uid,
                             ::geteuid()));
  }
}

void require_own_regular_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    require_own_regular_file(path, st);
  } else if (errno != ENOENT) {
    refuse(path, fmt::format("cannot look at it: {}", std::strerror(errno)));
  }
}

// mkdir -p with mode 0750 (whatever the umask) for the directories it creates, in the reader
// group when there is one.
void make_parent_dirs(const std::filesystem::path& path, const ReaderGroup& group = std::nullopt) {
  const auto parent = path.parent_path();
  if (parent.empty() || std::filesystem::exists(parent)) {
    return;
  }
  make_parent_dirs(parent, group);
  if (::mkdir(parent.c_str(), 0750) != 0) {
    if (errno == EEXIST) {
      return;
    }
    throw Error(Exit::failure, fmt::format("{}: cannot create directory: {}", parent.string(), std::strerror(errno)));
  }
  if ((group && ::chown(parent.c_str(), static_cast<uid_t>(-1), *group) != 0) || ::chmod(parent.c_str(), 0750) != 0) {
    throw Error(Exit::failure, fmt::format("{}: cannot give the directory its group and mode: {}", parent.string(),
                                           std::strerror(errno)));
  }
}

// How long a writer waits on SQLite's own locks (the WriterLock keeps other writers away; this
// covers a reader starting up).
constexpr int k_busy_timeout_ms = 10'000;

void configure_connection(SQLite::Database& db) {
  db.setBusyTimeout(k_busy_timeout_ms);
  db.exec("PRAGMA foreign_keys = ON");
}

// Builds a new database under a temporary name and links it into place, so that `path` never
// names a half-initialised file, even if we are killed midway.
void create_database(const std::filesystem::path& path, const ReaderGroup& group) {
  make_parent_dirs(path, group);
  // A creator killed midway leaves its temporary file; under the writer lock none is in use.
  const std::string stale_prefix = path.filename().string() + ".new-";
  std::error_code ignored;
  for (const auto& entry :
       std::filesystem::directory_iterator(path.parent_path().empty() ? "." : path.parent_path(), ignored)) {
    if (entry.path().filename().string().starts_with(stale_prefix)) {
      std::filesystem::remove(entry.path(), ignored);
    }
  }
  const std::filesystem::path temp = fmt::format("{}.new-{}", path.string(), ::getpid());
  std::filesystem::remove(temp);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) {
    throw Error(Exit::failure, fmt::format("{}: cannot create database: {}", path.string(), std::strerror(errno)));
  }
  // 0640 whatever the umask, in the reader group: SQLite gives the -wal and -shm files the same.
  if ((group && ::fchown(fd, static_cast<uid_t>(-1), *group) != 0) || ::fchmod(fd, 0640) != 0) {
    const int err = errno;
    ::close(fd);
    std::filesystem::remove(temp);
    throw Error(Exit::failure,
                fmt::format("{}: cannot give the database its group and mode: {}", path.string(), std::strerror(err)));
  }
  ::close(fd);
  try {
    SQLite::Database db(temp.string(), SQLite::OPEN_READWRITE | SQLITE_OPEN_NOMUTEX);
    configure_connection(db);
    db.exec("PRAGMA journal_mode = WAL");
    initialize(db);
  } catch (...) {
    std::filesystem::remove(temp);
    throw;
  }
  // The connection is closed: its WAL was checkpointed into the file and removed.
  if (::link(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::filesystem::remove(temp);
    if (err != EEXIST) {
      throw Error(Exit::failure, fmt::format("{}: cannot create database: {}", path.string(), std::strerror(err)));
    }
    // Someone else created it meanwhile; it is checked like any existing file.
    return;
  }
  std::filesystem::remove(temp);
}

}  // namespace

namespace {
std::mutex g_opened_mutex;
std::vector<std::string> g_opened;
}  // namespace

void detail::note_opened(const std::filesystem::path& path) {
  const std::lock_guard lock(g_opened_mutex);
  if (std::find(g_opened.begin(), g_opened.end(), path.string()) == g_opened.end()) {
    g_opened.push_back(path.string());
  }
}

std::string name_databases(std::string_view what) {
  const std::lock_guard lock(g_opened_mutex);
  if (g_opened.empty()) {
    return fmt::format("database: {}", what);
  }
  std::string names;
  for (const auto& name : g_opened) {
    names += names.empty() ? name : ", " + name;
  }
  return fmt::format("{}: {}", names, what);
}

std::string recovery_advice(const std::filesystem::path& path) {
  return fmt::format(
      "Move it aside (the collector then starts a new file) and read it with sockhist, or what "
      "`sqlite3 {} .recover | sqlite3 recovered.db` saves of it",
      path.string());
}

std::optional<std::string> quick_check(SQLite::Database& db) {
  SQLite::Statement q(db, "PRAGMA quick_check");
  std::string first = q.executeStep() ? q.getColumn(0).getString() : std::string("no answer");
  if (first == "ok") {
    return std::nullopt;
  }
  // Its first row may hold several lines: keep the message on one.
  std::replace(first.begin(), first.end(), '\n', ' ');
  if (first.size() > 160) {
    first = first.substr(0, 160) + "...";
  }
  return first;
}

std::string damaged_while_writing(std::string_view what) {
  std::string first;
  {
    const std::lock_guard lock(g_opened_mutex);
    first = g_opened.empty() ? std::string("FILE") : g_opened.front();
  }
  return name_databases(
      fmt::format("is damaged ({}); nothing was written. {}", what, recovery_advice(std::filesystem::path(first))));
}

SQLite::Database open_for_write(const std::filesystem::path& path, const ReaderGroup& group) {
  require_own_regular_file(path);
  detail::note_opened(path);
  auto check = check_file(path);
  if (check.kind == FileKind::missing) {
    create_database(path, group);
    check = check_file(path);
  }
  refuse_if_not_ours(path, check);
  if (check.damage) {
    refuse(path, fmt::format("is damaged: {}; nothing was written. {}", *check.damage, recovery_advice(path)));
  }
  try {
    // NOFOLLOW: a link planted between the check above and this open is refused too. NOMUTEX: a
    // writer's connection is used by one thread (the collector's helper threads read /proc and
    // netlink, never SQLite), so SQLite need not lock it around every call. perf of a first snapshot
    // of 50,000 sockets: 6.4 % of samples in mutex calls before, 3.9 % after this, 0.2 % with the
    // collector's skip_memory_statistics.
    SQLite::Database db(path.string(), SQLite::OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX);
    // Closing never checkpoints: a connection closed on a refusal (a damaged file, a schema that is
    // not ours) leaves the file as it was, its -wal included. The writers checkpoint after they
    // write (truncate_wal); an export, handed over as one file, turns it back on.
    sqlite3_db_config(db.getHandle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    configure_connection(db);
    // Readers who may not create files beside the database (its group, on a 0750 directory) need
    // the -wal and -shm files to exist: keep them when this connection closes (journal_size_limit
    // bounds the -wal once it is reset).
    int persist = 1;
    sqlite3_file_control(db.getHandle(), "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    db.exec("PRAGMA journal_size_limit = 67108864");
    initialize(db);
    detail::require_our_schema(db, path);
    db.exec("PRAGMA journal_mode = WAL");
    return db;
  } catch (const SQLite::Exception& e) {
    const bool damaged = (e.getErrorCode() & 0xff) == SQLITE_CORRUPT;
    throw Error(Exit::db_refused,
                fmt::format("{}: cannot open for writing: {}{}", path.string(), e.what(),
                            damaged ? fmt::format("; nothing was written. {}", recovery_advice(path)) : std::string()));
  }
}

bool truncate_wal(SQLite::Database& db) {
  sqlite3* h = db.getHandle();
  // Without a busy handler: a reader's transaction makes it return SQLITE_BUSY at once.
  sqlite3_busy_timeout(h, 0);
  const int rc = sqlite3_wal_checkpoint_v2(h, "main", SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  sqlite3_busy_timeout(h, k_busy_timeout_ms);
  return rc == SQLITE_OK;
}

void drop_wal_on_close(SQLite::Database& db) {
  sqlite3_db_config(db.getHandle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);
  int persist = 0;
  sqlite3_file_control(db.getHandle(), "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
}

ReaderGroup reader_group(const std::string& name, const char* option) {
  if (name.empty()) {
    return std::nullopt;
  }
  const group* g = ::getgrnam(name.c_str());
  if (g == nullptr) {
    throw Error(Exit::usage, fmt::format("{} {}: no such group (groupadd --system {} creates it)", option, name, name));
  }
  return g->gr_gid;
}

ReaderGroup default_reader_group() {
  const group* g = ::getgrnam("sockhist");
  if (g == nullptr) {
    return std::nullopt;
  }
  // Only a group this process may give its files: root's choice, or one of its own groups (a user
  // outside it keeps a private database instead of failing).
  if (::geteuid() == 0 || ::getegid() == g->gr_gid) {
    return g->gr_gid;
  }
  std::vector<gid_t> groups(static_cast<std::size_t>(std::max(::getgroups(0, nullptr), 0)));
  const int n = ::getgroups(static_cast<int>(groups.size()), groups.data());
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<std::size_t>(i)] == g->gr_gid) {
      return g->gr_gid;
    }
  }
  return std::nullopt;
}

std::string share_with_group(const std::filesystem::path& path, const ReaderGroup& group) {
  if (!group) {
    return {};
  }
  const struct group* g = ::getgrgid(*group);
  const std::string name = g != nullptr ? std::string(g->gr_name) : std::to_string(*group);
  std::vector<std::string> problems;
  for (const std::string suffix : {"", "-wal", "-shm"}) {
    const std::string file = path.string() + suffix;
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      continue;
    }
    if (st.st_gid != *group && ::chown(file.c_str(), static_cast<uid_t>(-1), *group) != 0) {
      problems.push_back(fmt::format("{}: cannot give it group {}: {}", file, name, std::strerror(errno)));
    } else if ((st.st_mode & S_IRGRP) == 0 && ::chmod(file.c_str(), (st.st_mode & 07777) | S_IRGRP) != 0) {
      problems.push_back(fmt::format("{}: cannot make it readable by its group: {}", file, std::strerror(errno)));
    }
  }
  // An existing directory is the administrator's: say what keeps the group out, change nothing.
  const auto dir = std::filesystem::absolute(path).parent_path();
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0 &&
      (st.st_gid != *group || (st.st_mode & S_IXGRP) == 0)) {
    problems.push_back(fmt::format("{}: members of group {} cannot enter this directory (chgrp {} {} && chmod g+x {})",
                                   dir.string(), name, name, dir.string(), dir.string()));
  }
  std::string out;
  for (const auto& p : problems) {
    out += (out.empty() ? "" : "; ") + p;
  }
  return out;
}

std::filesystem::path default_db_path() {
  if (::geteuid() == 0) {
    return "/var/lib/sockhist/sockhist.db";
  }
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && *xdg == '/') {
    return std::filesystem::path(xdg) / "sockhist" / "sockhist.db";
  }
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    throw Error(Exit::usage, "no default database: HOME is not set; pass --db or set SOCKHIST_DB");
  }
  return std::filesystem::path(home) / ".local" / "share" / "sockhist" / "sockhist.db";
}

std::filesystem::path resolve_db_path(const std::optional<std::string>& option) {
  if (option && !option->empty()) {
    return *option;
  }
  if (const char* env = std::getenv("SOCKHIST_DB"); env != nullptr && *env != '\0') {
    return env;
  }
  return default_db_path();
}

WriterLock::WriterLock(const std::filesystem::path& db, std::chrono::milliseconds wait, const ReaderGroup& group) {
  make_parent_dirs(db, group);
  const std::string lock_path = db.string() + ".lock";
  // Never through a link, never blocking on a FIFO; then it must be a regular file of our own.
  m_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0640);
  if (m_fd < 0) {
    if (errno == ELOOP) {
      refuse(lock_path, "is a symbolic link: refusing to follow it (another user may have planted it; remove it)");
    }
    throw Error(Exit::failure, fmt::format("{}: cannot open lock file: {}", lock_path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(m_fd, &st) != 0) {
    const int err = errno;
    ::close(m_fd);
    throw Error(Exit::failure, fmt::format("{}: cannot look at the lock file: {}", lock_path, std::strerror(err)));
  }
  try {
    require_own_regular_file(lock_path, st);
  } catch (...) {
    ::close(m_fd);
    throw;
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (::flock(m_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      const int err = errno;
      ::close(m_fd);
      throw Error(Exit::failure, fmt::format("{}: cannot lock: {}", lock_path, std::strerror(err)));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      std::array<char, 32> holder{};
      const ssize_t n = ::pread(m_fd, holder.data(), holder.size() - 1, 0);
      ::close(m_fd);
      const std::string pid = n > 0 ? std::string(holder.data(), static_cast<std::size_t>(n)) : "unknown";
      throw Error(Exit::locked, fmt::format("{}: another sockhist process (pid {}) is writing it; gave up after {} ms",
                                            db.string(), pid, wait.count()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(m_fd, 0) == 0) {
    [[maybe_unused]] const ssize_t written = ::pwrite(m_fd, pid.data(), pid.size(), 0);
  }
}

WriterLock::~WriterLock() {
  if (m_fd >= 0) {
    ::close(m_fd);  // releases the flock
  }
}

}  // namespace sockhist::store
