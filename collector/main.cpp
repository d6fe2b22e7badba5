// sockhist-collect: parse, run, and turn the project's errors into one line and an exit code.
#include <cstdio>
#include <new>

#include <sqlite3.h>

#include <SQLiteCpp/Exception.h>
#include <fmt/format.h>

#include "collect.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"

int main(int argc, char** argv) {
  CLI::App app("sockhist-collect", "sockhist-collect");
  sockhist::collector::CollectOptions options;
  sockhist::collector::setup_collect(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "sockhist-collect: error: {}\nRun 'sockhist-collect --help' for the options.\n", e.what());
    return static_cast<int>(sockhist::Exit::usage);
  }
  if (!options.interval) {
    // One snapshot and out: memory kept for reuse is speed; a loop lives on, and keeps its size.
    sockhist::model::keep_freed_memory();
  }
  try {
    return sockhist::collector::run_collect(options);
  } catch (const sockhist::Error& e) {
    fmt::print(stderr, "sockhist-collect: error: {}\n", e.what());
    return static_cast<int>(e.code());
  } catch (const SQLite::Exception& e) {
    if ((e.getErrorCode() & 0xff) == SQLITE_CORRUPT) {
      fmt::print(stderr, "sockhist-collect: error: {}\n", sockhist::store::damaged_while_writing(e.what()));
      return static_cast<int>(sockhist::Exit::db_refused);
    }
    fmt::print(stderr, "sockhist-collect: error: {}\n", sockhist::store::name_databases(e.what()));
    return static_cast<int>(sockhist::Exit::failure);
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "sockhist-collect: error: {}\n", sockhist::store::name_databases("out of memory"));
    return static_cast<int>(sockhist::Exit::failure);
  } catch (const std::exception& e) {
    fmt::print(stderr, "sockhist-collect: error: {}\n", e.what());
    return static_cast<int>(sockhist::Exit::failure);
  }
}
