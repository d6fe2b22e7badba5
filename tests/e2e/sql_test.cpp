// sockhist sql end to end: every write refused with the file left as it was, runaway queries
// interrupted at the timeout, rows streamed in bounded memory, reading pragmas allowed, NUL bytes
// and tokenizers refused, and every documented example run in every format.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "histories.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/query.hpp"
#include "sockhist/query/lifecycle.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

// sql: the read-only guarantee, the interrupt, one-line errors with the position, and every
// example query of schema/README.md.
TEST(Sql, RefusesEveryWriteAndLeavesTheFileAsItWas) {
  const auto dir = scratch_dir("analyzer-sql-" + std::to_string(::getpid()));
  const auto copy = dir / "copy.db";
  std::filesystem::copy_file(sample_db(), copy, std::filesystem::copy_options::overwrite_existing);
  const auto before = read_text(copy);
  const auto outside = dir / "outside.db";
  for (const std::string& sql : std::vector<std::string>{
           "INSERT INTO hosts(name) VALUES ('intruder')",
           "DELETE FROM snapshots",
           "UPDATE hosts SET name = 'x'",
           "DROP TABLE socket_spans",
           "CREATE TABLE notes(t TEXT)",
           "ATTACH DATABASE '" + outside.string() + "' AS other",
           "PRAGMA user_version = 99",
           "PRAGMA journal_mode = DELETE",
           "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')",
           "SELECT 1; DROP TABLE hosts",
           "VACUUM INTO '" + outside.string() + "'",
       }) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", copy.string(), sql});
    EXPECT_EQ(r.exit_code, 2) << sql << ": " << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << sql << ": " << r.err;
    EXPECT_TRUE(r.err.starts_with("sockhist: error: sql: ")) << sql << ": " << r.err;
    EXPECT_EQ(r.out, "") << sql;
  }
  EXPECT_EQ(read_text(copy), before);
  EXPECT_FALSE(std::filesystem::exists(outside));
  // Reading a pragma is fine.
  const auto pragma =
      run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", copy.string(), "PRAGMA user_version", "--format", "csv"});
  EXPECT_EQ(pragma.exit_code, 0) << pragma.err;
  EXPECT_EQ(pragma.out, fmt::format("user_version\r\n{}\r\n", store::schema_version()));
}

TEST(Sql, InterruptsARunawayQueryAndPointsAtSyntaxErrors) {
  const auto started = std::chrono::steady_clock::now();
  const auto runaway = run(SOCKHIST_ANALYZER_BIN,
                           {"sql", "--db", sample_db(), "--timeout", "1s",
                            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(runaway.exit_code, 2);
  EXPECT_EQ(runaway.err, "sockhist: error: sql: interrupted after 1s (--timeout)\n");
  EXPECT_LT(took, std::chrono::seconds(20));
  const auto syntax = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "SELECT * FORM v_snapshots"});
  EXPECT_EQ(syntax.exit_code, 2);
  EXPECT_EQ(syntax.err, "sockhist: error: sql: near \"FORM\": syntax error at offset 9 ('FORM v_snapshots')\n");
  const auto neither = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db()});
  EXPECT_EQ(neither.exit_code, 2);
}

// One slow function call is a single step SQLite cannot interrupt: --timeout still holds (before,
// a 1 s timeout let this run for minutes), the error is the same one line.
TEST(Sql, TimeoutHoldsWhateverTheQuery) {
  const auto started = std::chrono::steady_clock::now();
  const auto slow =
      run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "--timeout", "1s",
                                  "SELECT instr(printf('%.*c', 5000000, 'a'), printf('%.*c', 2500000, 'a') || 'b') "
                                  "FROM v_snapshots"});
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(slow.exit_code, 2);
  EXPECT_EQ(slow.err, "sockhist: error: sql: interrupted after 1s (--timeout)\n");
  EXPECT_LT(took, std::chrono::seconds(4)) << "1 s and its grace (a tenth, at least 100 ms, at most 2 s)";
}

// Rows are written as they come: two million rows (about 300 MB held before) under a 128 MiB
// address-space limit, in every format.
TEST(Sql, StreamsRowsInBoundedMemory) {
  std::string why;
  const auto prlimit = address_limit_tool(why);
  if (prlimit.empty()) {
    GTEST_SKIP() << why;
  }
  const std::string query =
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000000) "
      "SELECT x, printf('%.*c', 100, 'w') AS w FROM c";
  for (const std::string format : {"table", "csv", "json"}) {
    const auto r = run("/bin/bash", {"-o", "pipefail", "-c",
                                     fmt::format("{} --as=134217728 {} sql --db {} --timeout 5m --format {} \"{}\" | "
                                                 "grep -c wwwwwwwwww",
                                                 prlimit, SOCKHIST_ANALYZER_BIN, sample_db(), format, query)});
    EXPECT_EQ(r.exit_code, 0) << format << ": " << r.err;
    EXPECT_EQ(r.out, "2000000\n") << format;
  }
}

// What sql took for writes or second statements and is not: a pragma about a table, a trailing
// comment. What it let through and must not: a NUL byte cutting the query short, fts3_tokenizer().
TEST(Sql, ReadsPragmasAndCommentsAndRefusesNulAndTokenizers) {
  const auto info =
      run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "--format", "csv", "PRAGMA table_info(v_snapshots)"});
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(info.out.starts_with("cid,name,type,notnull,dflt_value,pk\r\n0,snapshot_id,")) << info.out;
  for (const std::string sql : {"SELECT 1; -- the end", "SELECT 1; /* two */ ;", "SELECT 1;\n-- a\n"}) {
    const auto r = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "--format", "csv", sql});
    EXPECT_EQ(r.exit_code, 0) << sql << ": " << r.err;
    EXPECT_EQ(r.out, "1\r\n1\r\n") << sql;
  }
  const auto dir = scratch_dir("analyzer-sql-nul-" + std::to_string(::getpid()));
  write_text(dir / "nul.sql", std::string("SELECT 1 AS one\0; DELETE FROM hosts", 35));
  const auto nul = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "--file", (dir / "nul.sql").string()});
  EXPECT_EQ(nul.exit_code, 2);
  EXPECT_EQ(nul.err, "sockhist: error: sql: a NUL byte at offset 15: the query would end there\n");
  const auto tokenizer = run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "SELECT fts3_tokenizer('simple')"});
  EXPECT_EQ(tokenizer.exit_code, 2);
  EXPECT_EQ(tokenizer.err, "sockhist: error: sql: fts3_tokenizer() is not allowed\n");
  EXPECT_EQ(tokenizer.out, "");
}

TEST(Sql, RunsEveryDocumentedExampleInEveryFormat) {
  const auto dir = scratch_dir("analyzer-sql-docs-" + std::to_string(::getpid()));
  const auto doc = read_text(std::filesystem::path(SOCKHIST_SAMPLES_DIR) / ".." / "schema" / "README.md");
  std::size_t queries = 0;
  for (std::size_t start = doc.find("```sql\n"); start != std::string::npos; start = doc.find("```sql\n", start)) {
    start += 7;
    std::string sql = doc.substr(start, doc.find("```", start) - start);
    for (const auto& [macro, value] :
         {std::pair{"$__unixEpochFrom()", "0"}, std::pair{"$__unixEpochTo()", "99999999999"}}) {
      for (auto at = sql.find(macro); at != std::string::npos; at = sql.find(macro)) {
        sql.replace(at, std::string(macro).size(), value);
      }
    }
    const auto file = dir / fmt::format("q{}.sql", queries++);
    write_text(file, sql);
    for (const char* format : {"table", "json", "csv"}) {
      const auto r =
          run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "--file", file.string(), "--format", format});
      EXPECT_EQ(r.exit_code, 0) << sql << "\n" << r.err;
      EXPECT_EQ(r.err, "") << sql;
      if (std::string(format) == "json") {
        EXPECT_TRUE(nlohmann::json::parse(r.out).contains("rows")) << r.out;
      }
    }
  }
  EXPECT_GE(queries, 8U);
  const auto counts =
      run(SOCKHIST_ANALYZER_BIN, {"sql", "--db", sample_db(), "--format", "csv",
                                  "SELECT count(*) AS snapshots, min(socket_count) AS fewest FROM snapshots"});
  EXPECT_EQ(counts.out, "snapshots,fewest\r\n4,116\r\n");
}

}  // namespace
