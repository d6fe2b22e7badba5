// Opening, checking and migrating sockhist databases, and the one-writer lock. Both programs link
// this; the collector writes through it, the analyzer only ever opens read-only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include <SQLiteCpp/Database.h>

namespace sockhist::store {

// `PRAGMA application_id` of every sockhist database ("SKHI").
inline constexpr std::int32_t k_application_id = 0x534B4849;

// socket_spans.last_snapshot_id of a span whose socket is still seen (v_spans shows NULL).
inline constexpr std::int64_t k_span_open = 2147483647;

// The schema version this build writes (`PRAGMA user_version`).
int schema_version();

// Turns off SQLite's memory statistics for the process, and with them the mutex SQLite takes
// around every allocation and free (the 3.9 % of a first snapshot's perf samples that were still
// mutex calls once the writer's connection was opened without its own mutex). For
// a program that sets no heap limit (`sockhist sql` does, and needs them); call it before any
// database is opened. Returns false when SQLite was already initialised and kept them.
bool skip_memory_statistics();

// The SELECT of the view v_snapshot_sockets, its own text, with its spans read through `index`
// (socket_spans_by_length; an older file's socket_spans_by_first, socket_spans_by_state (version 8)
// or socket_spans_by_last (version 7)): what a reader runs instead of the view when it knows which
// index reads less (the planner picks one for every moment).
std::string snapshot_sockets_select(std::string_view index);

// Schema 9's span length classes (socket_spans_by_length): class c holds the spans whose
// last_snapshot_id - first_snapshot_id has c bits (0 for a span seen once), 31 the open spans
// (whose length to k_span_open is under 2^31), the last one every longer span. What the readers
// rely on: a span of class c is shorter than 2^c.
inline constexpr int k_span_length_classes = 33;

// The expression socket_spans_by_length indexes, its columns named through `alias` ("sp" gives
// sp.first_snapshot_id): SQLite uses the index only for a query that writes this same expression.
std::string span_length_class(std::string_view alias);

// `sql`, a query that reads `socket_spans sp` (after FROM or JOIN), rewritten to read it through
// socket_spans_by_length: the classes' windows joined before it, and after the condition text
// `after` a term keeping each class to the spans that began late enough to reach the snapshot id
// `start` (SQL text: a parameter or a column). The query must name the states it reads.
std::string read_by_length(std::string sql, std::string_view after, std::string_view start);

// Whether a database's tables, indexes and views are exactly those this build's migrations make,
// and nothing else: the schema check's fast path, against the objects the build dumped (an older
// file, or one with tables of the user's own, is checked against the migrations run in memory).
bool schema_as_built(SQLite::Database& db);

// The oldest schema version this build reads without migrating it: one whose tables and views are
// the current ones (later versions added indexes, and the connection log, which has_connection_log
// tells). Readers refuse older files.
int oldest_readable_schema_version();

// Whether the database's schema has the connection log (version 10 and later): older files, which
// readers read as they are, have none.
bool has_connection_log(SQLite::Database& db);

// Whether the database records every TIME_WAIT entry in time_wait_entries (version 11 and later).
bool has_time_wait_entries(SQLite::Database& db);

// The statement that (re)writes the time_wait_entries rows of the TIME_WAIT spans `spans` selects
// (an SQL condition on socket_spans sp): the writer's for each snapshot, the migration's for all.
std::string time_wait_entries_sql(std::string_view spans);

// The SQL that brings a database from version - 1 to `version` (1-based); for tests and tools that
// need a database of an older version.
std::string_view migration_sql(int version);

// What the first 100 bytes of a file say it is, read without SQLite so nothing can change it.
enum class FileKind { missing, empty, not_sqlite, foreign_sqlite, sockhist };
struct FileCheck {
  FileKind kind = FileKind::missing;
  std::int32_t application_id = 0;
  std::int32_t user_version = 0;  // as the main file's header says; the WAL may hold a newer one
  // What the header shows is wrong with the file (a truncated copy, a size that is no whole number
  // of pages): writers refuse it, readers are warned. Deeper damage needs quick_check.
  std::optional<std::string> damage;
  bool wal_mode = false;  // the header says WAL (a reader then needs a -shm beside it)
};
FileCheck check_file(const std::filesystem::path& path);

// How to get on after a damaged database, for messages and the README: one line.
std::string recovery_advice(const std::filesystem::path& path);

// Runs SQLite's quick_check on an open database; the first problem it reports (on one line), or
// nullopt when it finds none.
std::optional<std::string> quick_check(SQLite::Database& db);

// Brings an open connection to the current schema: creates it when the database is empty,
// migrates an older one in one transaction, and refuses (Error db_refused) a foreign or newer one
// without writing anything. Used directly by tests on ":memory:".
void initialize(SQLite::Database& db);
// The same, to version `target` (at most schema_version()): for a database of an older version, as
// tests and the schema check need one.
void initialize_to(SQLite::Database& db, int target);

// The group that may read a database: a group id, or none (owner only).
using ReaderGroup = std::optional<gid_t>;

// The reader group by name: "" for none; throws Error(usage) naming `option` for an unknown group.
ReaderGroup reader_group(const std::string& name, const char* option);

// The default reader group: `sockhist` when the system has such a group and this process may give
// files to it (root, or a member), else none.
ReaderGroup default_reader_group();

// Opens a database for writing, creating it (mode 0640, directory 0750) when absent: the file is
// built under a temporary name and linked into place, so the path never names a half-made
// database. Sets WAL, a busy timeout and foreign keys. Call only while holding a WriterLock.
// The -wal and -shm files are kept when the connection closes (the -wal emptied), so that a reader
// who may not create files beside the database (a member of its group) can always open it.
// Throws Error(db_refused) for a file that is not a sockhist database or is newer than this build.
SQLite::Database open_for_write(const std::filesystem::path& path, const ReaderGroup& group = std::nullopt);

// Checkpoints the whole -wal into the database and truncates it to nothing, when no reader is in
// the middle of a transaction that still needs it; never waits for one (returns false then, and a
// later call does it). A reader holding a transaction makes the -wal grow until it ends: this
// gives the room back after. Only the writer, holding the WriterLock, may call it.
bool truncate_wal(SQLite::Database& db);

// Lets the connection remove the -wal and -shm files when it closes (the database is then one
// file): for a new file handed over whole, such as an export.
void drop_wal_on_close(SQLite::Database& db);

// Gives the database, its -wal and -shm files the reader group (mode 0640, as created) when they
// have another: what `group` members need to read it while writers come and go. Returns a line
// saying what could not be changed (not the owner, not a member), empty when all is well.
std::string share_with_group(const std::filesystem::path& path, const ReaderGroup& group);

// Opens an existing database read-only, after the same checks; a database older than this build
// is refused with a message saying to run the collector, which migrates it. A copy that cannot be
// written (a read-only file or file system) and has no -shm beside it is opened as immutable when
// its -wal holds nothing; when the -wal holds changes it cannot apply, it is refused, saying so.
// A WAL-mode copy with no -wal, -shm or <db>.lock beside it (no sockhist writer has run there:
// the collector keeps all three) is opened as immutable too, so that reading it creates nothing.
// `on_damage`, when given, hears what the header shows to be damaged (FileCheck::damage) before
// anything is opened: a reader warns, merge refuses by throwing.
SQLite::Database open_read_only(const std::filesystem::path& path,
                                const std::function<void(const std::string&)>& on_damage = {});

// Every statement of a connection opened to read (open_read_only, open_input) is interrupted once
// `limit` has passed since this call (0: never): the analyzer's --timeout.
void set_read_time_limit(std::chrono::milliseconds limit);

// "interrupted after 10m (--timeout)" once that limit interrupted a statement; nullopt before.
std::optional<std::string> read_interrupted();

// The file a connection reads, as its path: a copy opened as immutable is opened by a URI
// ("file:PATH?immutable=1"), which Database::getFilename() gives back as it was passed.
std::string database_file(SQLite::Database& db);

// `what` (a failure with no file in it: SQLite's "out of memory", "disk I/O error") prefixed with
// the databases this process opened, so that the message names the file: "<db>: what".
std::string name_databases(std::string_view what);

// A page SQLite found damaged (SQLITE_CORRUPT) while a writer worked: "<db>: is damaged (what);
// nothing was written. <recovery_advice>" (the transaction rolled back, and closing never
// checkpoints, so the file and its -wal are as they were).
std::string damaged_while_writing(std::string_view what);

// The database used when neither --db nor SOCKHIST_DB names one: /var/lib/sockhist/sockhist.db
// for root, $XDG_DATA_HOME/sockhist/sockhist.db (default ~/.local/share) for other users.
std::filesystem::path default_db_path();

// --db if given, else $SOCKHIST_DB, else default_db_path().
std::filesystem::path resolve_db_path(const std::optional<std::string>& option);

// An exclusive flock(2) on "<db>.lock", so that only one process writes a database at a time
// (this also rules out SQLite's WAL-reset bug, which needs two concurrent writers). Waits up to
// `wait` for a holder to finish, then throws Error(locked) naming the holder's pid if known.
class WriterLock {
 public:
  // Creates the database's directory when missing (0750, in `group` when there is one).
  WriterLock(const std::filesystem::path& db, std::chrono::milliseconds wait, const ReaderGroup& group = std::nullopt);
  ~WriterLock();
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  int m_fd = -1;
};

}  // namespace sockhist::store
