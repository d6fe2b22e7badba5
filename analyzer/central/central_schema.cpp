// The central schema on a server: the database, each migration's statements, the views, and the
// version recorded in schema_version.
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sockhist/central.hpp"
#include "sockhist/error.hpp"

namespace sockhist::central {

namespace sql {
extern const std::vector<std::string_view> k_migrations;
extern const std::string_view k_views;
}  // namespace sql

namespace {

// A file's statements: lines up to one ending in ';', comment lines and blank lines left out
// (ClickHouse's HTTP interface takes one statement per request).
std::vector<std::string> statements(std::string_view text) {
  std::vector<std::string> out;
  std::string current;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line.substr(first, 2) == "--") {
      continue;
    }
    current.append(line);
    current += '\n';
    const auto last = line.find_last_not_of(" \t\r");
    if (line[last] == ';') {
      current.erase(current.rfind(';'));
      out.push_back(std::move(current));
      current.clear();
    }
  }
  if (current.find_first_not_of(" \t\n") != std::string::npos) {
    out.push_back(std::move(current));
  }
  return out;
}

}  // namespace

int schema_version() {
  return static_cast<int>(sql::k_migrations.size());
}

void prepare(Server& server) {
  server.run(fmt::format("CREATE DATABASE IF NOT EXISTS {}", server.endpoint().database), false);
  int have = 0;
  const auto tables =
      server.select(fmt::format("SELECT count() FROM system.tables WHERE database = '{}' AND name = 'schema_version'",
                                server.endpoint().database));
  if (!tables.empty() && tables.front().front() != "0") {
    const auto rows = server.select("SELECT max(version) FROM schema_version");
    have = static_cast<int>(server.number(rows, 0, 0));
  }
  if (have > schema_version()) {
    throw Error(Exit::db_refused,
                fmt::format("{} database {}: central schema version {} is newer than this sockhist's {}; upgrade "
                            "sockhist on this host",
                            server.endpoint().url, server.endpoint().database, have, schema_version()));
  }
  for (int v = have; v < schema_version(); ++v) {
    for (const auto& statement : statements(sql::k_migrations[static_cast<std::size_t>(v)])) {
      server.run(statement);
    }
    server.run(fmt::format("INSERT INTO schema_version (version, applied) VALUES ({}, now())", v + 1));
  }
  // The views are remade only from a text this store has not had: a DROP and CREATE at every push
  // would have readers meet them missing.
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : sql::k_views) {
    hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  }
  const auto text = fmt::format("{:016x}", hash);
  const auto made = server.select(fmt::format("SELECT count() FROM views_made WHERE hash = '{}'", text));
  if (!made.empty() && made.front().front() != "0") {
    return;
  }
  for (const auto& statement : statements(sql::k_views)) {
    server.run(statement);
  }
  server.run(fmt::format("INSERT INTO views_made (hash, made) VALUES ('{}', now())", text));
}

}  // namespace sockhist::central
