// What the store's source files share: the one-line refusal of a database, and reading a pragma.
// Private to schema/.
#pragma once

#include <filesystem>
#include <string_view>

#include <SQLiteCpp/Database.h>

#include "sockhist/store.hpp"

namespace sockhist::store::detail {

// Throws Error(db_refused) "<path>: <why>".
[[noreturn]] void refuse(const std::filesystem::path& path, std::string_view why);

// Refuses what check_file found not to be a sockhist database this build can use.
void refuse_if_not_ours(const std::filesystem::path& path, const FileCheck& check);

int pragma_int(SQLite::Database& db, const char* pragma);

// Records a database this process opened, for name_databases.
void note_opened(const std::filesystem::path& path);

// Defensive mode, untrusted schema, no extensions, and the read time limit (set_read_time_limit)
// on a connection that reads.
void guard_reader(SQLite::Database& db);

// Refuses (Error(db_refused)) a database whose tables, indexes and views are not exactly those the
// migrations make, or that has a trigger: a file changed to hang or mislead its readers.
// `version`: the file's schema version (0: the current one).
void require_our_schema(SQLite::Database& db, const std::filesystem::path& path, int version = 0);

}  // namespace sockhist::store::detail
