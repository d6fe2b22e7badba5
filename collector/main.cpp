// sockhist-collect: parse, run, and turn the project's errors into one line and an exit code.
#include <malloc.h>

#include <cstdio>
#include <new>

#include <sqlite3.h>

#include <SQLiteCpp/Exception.h>
#include <fmt/format.h>

#include "collect.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"

namespace {

// Tells the allocator to keep what the program frees for its next allocations rather than hand it
// back to the kernel at once: a snapshot of 100,000 sockets grows and frees tables of megabytes,
// and every fresh page costs a page fault, which on a virtual machine costs more than the parsing
// that fills it. Only for one snapshot and out (bench/README.md): a looping collector would keep
// 5 MB more at 100,000 sockets for as long as it runs, and the analyzer's grouped trend of a week
// 1.3 MB more than its memory target.
void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);  // glibc's largest: blocks up to it come from the heap
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);  // the heap's top goes back only past 64 MiB
}

}  // namespace

int main(int argc, char** argv) {
  // One malloc arena for every thread: the owner scan's threads are short-lived, and an arena of
  // their own would keep what they free apart from the main thread's (2 MB of peak RSS at
  // 100,000 sockets, bench/README.md).
  mallopt(M_ARENA_MAX, 1);
  sockhist::store::skip_memory_statistics();  // the collector sets no SQLite heap limit
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
    keep_freed_memory();
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
