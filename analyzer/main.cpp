// sockhist: the analyzer. Parses the command line, runs one subcommand, prints what it returned,
// and turns every error into one line and exit code 2.
#include <algorithm>
#include <cstdio>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <SQLiteCpp/Exception.h>
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
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

// The arguments in the order the subcommands parse them: common options written before the
// subcommand (`sockhist --db x.db show`, as with git -C) are moved after its name, since each
// subcommand declares them. Returned in reverse, as CLI::App::parse(std::vector&) takes them.
std::vector<std::string> hoist_common_options(int argc, char** argv) {
  static const std::set<std::string, std::less<>> with_value = {"--db", "--host", "--netns", "--format"};
  std::vector<std::string> early, rest;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto eq = arg.find('=');
    const auto name = arg.substr(0, eq);
    if (arg == "--utc" || (eq != std::string_view::npos && with_value.count(name))) {
      early.emplace_back(arg);
    } else if (with_value.count(arg) && i + 1 < argc) {
      early.emplace_back(arg);
      early.emplace_back(argv[++i]);
    } else {
      break;
    }
  }
  if (i < argc)
    rest.emplace_back(argv[i++]);  // the subcommand (or whatever CLI11 will complain of)
  rest.insert(rest.end(), early.begin(), early.end());
  for (; i < argc; ++i)
    rest.emplace_back(argv[i]);
  std::reverse(rest.begin(), rest.end());
  return rest;
}

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
    sockhist::analyzer::setup_check(app, run);
    sockhist::analyzer::setup_merge(app, run);
    sockhist::analyzer::setup_export(app, run);
    sockhist::analyzer::setup_sql(app, run);
    sockhist::analyzer::setup_diff(app, run);
    sockhist::analyzer::setup_import(app, run);
  } catch (const sockhist::Error& e) {
    fmt::print(stderr, "sockhist: error: {}\n", e.what());
    return k_error;
  }
  try {
    auto args = hoist_common_options(argc, argv);
    app.parse(args);
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
    fmt::print(stderr, "sockhist: error: database: {}\n", e.what());
    return k_error;
  } catch (const std::exception& e) {
    fmt::print(stderr, "sockhist: error: {}\n", e.what());
    return k_error;
  }
}
