// sockhist: the analyzer. Parses the command line, runs one subcommand, prints what it returned,
// and turns every error into one line and exit code 2.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include <sqlite3.h>

#include <SQLiteCpp/Exception.h>
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

namespace {

constexpr int k_error = 2;

// The help of the subcommand a usage error is about (the top level's when none was named).
std::string relevant_help(CLI::App& app) {
  for (auto* sub : app.get_subcommands()) {
    return sub->help();
  }
  return app.help();
}

// Options that may stand before the subcommand, as with git -C (`sockhist --db x.db show`). A
// CLI11 prefix command reads them up to the subcommand's name; each is then given to the
// subcommand's own option of that name, which decides what it means there (a side for diff, the
// host to record for import) and validates it; a subcommand without it refuses it.
struct Leading {
  CLI::App app{"", "sockhist"};
  std::vector<std::pair<std::string, std::string>> given;  // option name -> value, in order

  Leading() {
    app.prefix_command();
    app.set_help_flag();
    for (const char* name : {"--db", "--host", "--netns", "--format"}) {
      app.add_option_function<std::string>(name, [this, name](const std::string& v) { given.emplace_back(name, v); });
    }
    app.add_flag_callback("--utc", [this] { given.emplace_back("--utc", "true"); });
  }

  // Gives the leading options to the subcommand that was parsed; throws CLI::ParseError.
  void apply(CLI::App& top) const {
    for (auto* sub : top.get_subcommands()) {
      for (const auto& [name, value] : given) {
        auto* option = sub->get_option_no_throw(name);
        if (option == nullptr) {
          throw CLI::ArgumentMismatch(
              fmt::format("{} before {}: {} takes no {}", name, sub->get_name(), sub->get_name(), name));
        }
        // A value taken from the environment ($SOCKHIST_NETNS) gives way to one on the command line.
        if (const auto env = option->get_envname();
            !env.empty() && std::getenv(env.c_str()) != nullptr &&
            option->results() == std::vector<std::string>{std::getenv(env.c_str())}) {
          option->clear();
        }
        if (option->count() > 0 && option->get_expected_max() <= 1) {
          throw CLI::ArgumentMismatch(fmt::format("{} given both before and after {}", name, sub->get_name()));
        }
        option->add_result(value);
        option->run_callback();
      }
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "Answers questions about the socket history sockhist-collect recorded: netstat at any past\n"
      "moment, netstat -s then and since, trends, CLOSE_WAIT and TIME_WAIT lifecycles. Opens the\n"
      "database read-only; only merge, export and import write, under the collector's writer lock.",
      "sockhist");
  app.set_version_flag("--version", "sockhist " SOCKHIST_VERSION);
  app.require_subcommand(1);
  sockhist::analyzer::Runner run;
  try {
    sockhist::analyzer::setup_hosts(app, run);
    sockhist::analyzer::setup_snapshots(app, run);
    sockhist::analyzer::setup_show(app, run);
    sockhist::analyzer::setup_stats(app, run);
    sockhist::analyzer::setup_trend(app, run);
    sockhist::analyzer::setup_explain(app, run);
    sockhist::analyzer::setup_close_wait(app, run);
    sockhist::analyzer::setup_time_wait(app, run);
    sockhist::analyzer::setup_connections(app, run);
    sockhist::analyzer::setup_report(app, run);
    sockhist::analyzer::setup_check(app, run);
    sockhist::analyzer::setup_metrics(app, run);
    sockhist::analyzer::setup_merge(app, run);
    sockhist::analyzer::setup_ship(app, run);
    sockhist::analyzer::setup_fleet(app, run);
    sockhist::analyzer::setup_export(app, run);
    sockhist::analyzer::setup_sql(app, run);
    sockhist::analyzer::setup_diff(app, run);
    sockhist::analyzer::setup_import(app, run);
  } catch (const sockhist::Error& e) {
    fmt::print(stderr, "sockhist: error: {}\n", e.what());
    return k_error;
  }
  try {
    Leading leading;
    leading.app.parse(argc, argv);
    auto args = leading.app.remaining();
    std::reverse(args.begin(), args.end());  // CLI::App::parse(std::vector&) takes them last first
    app.parse(args);
    leading.apply(app);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "sockhist: error: {}\n\n{}", e.what(), relevant_help(app));
    return k_error;
  }
  try {
    const auto result = run();
    std::fwrite(result.out.data(), 1, result.out.size(), stdout);
    if (std::fflush(stdout) != 0) {
      fmt::print(stderr, "sockhist: error: writing the output failed\n");
      return k_error;
    }
    return result.code;
  } catch (const sockhist::Error& e) {
    fmt::print(stderr, "sockhist: error: {}\n", e.what());
    return k_error;
  } catch (const SQLite::Exception& e) {
    // A page SQLite found damaged while answering: say so, and how to get on.
    const bool damaged = (e.getErrorCode() & 0xff) == SQLITE_CORRUPT;
    fmt::print(stderr, "sockhist: error: {}{}\n",
               sockhist::store::name_databases(sockhist::store::read_interrupted().value_or(e.what())),
               damaged ? " (the file is damaged: `sqlite3 FILE .recover` saves what is readable)" : "");
    return k_error;
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "sockhist: error: {}\n", sockhist::store::name_databases("out of memory"));
    return k_error;
  } catch (const std::exception& e) {
    fmt::print(stderr, "sockhist: error: {}\n", e.what());
    return k_error;
  }
}
