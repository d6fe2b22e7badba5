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

}  // namespace sockhist::store::detail
