// The collector's run: options, the snapshot loop, and its reporting.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "sockhist/capture.hpp"

namespace sockhist::collector {

struct CollectOptions {
  std::optional<std::string> db;
  std::string proc_root = "/proc";
  std::optional<std::string> host;
  std::optional<std::string> at;
  std::optional<std::string> interval;
  std::optional<std::int64_t> count;
  std::string retain = "7d";
  std::string lock_wait = "30s";
  std::string check_every = "24h";  // quick_check before writing when the last is older (0: always)
  std::string source = "auto";
  bool all_netns = false;
  std::vector<std::string> netns;
  std::optional<std::string> group;  // the reader group; default `sockhist` when it exists
  bool no_cmdline = false;
  bool no_owners = false;
  bool no_connection_log = false;
  std::int64_t connection_budget = 100'000;  // socket ends kept whole per namespace and snapshot
  bool quiet = false;
  bool verbose = false;
};

// Declares the collector's options on `app`.
void setup_collect(CLI::App& app, CollectOptions& options);

// Takes one snapshot, or loops until --count or SIGINT/SIGTERM; returns the exit code.
// Throws Error for anything that stops the run.
int run_collect(const CollectOptions& options);

}  // namespace sockhist::collector
