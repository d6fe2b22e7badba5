// sockhist fleet's options and helpers, shared by cmd_fleet.cpp (hosts, show, the setup) and
// cmd_fleet_reports.cpp (trend, close-wait, time-wait). Private to the analyzer.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"

namespace sockhist::analyzer {

struct FleetCommand {
  Common common;
  CentralOptions central;
  std::optional<std::string> max_age;  // hosts
  std::optional<std::string> host;     // show
  std::optional<std::string> netns;
  std::optional<std::string> at;
  std::vector<std::string> hosts;  // trend, close-wait, time-wait: only these (default: all)
  Window window;
  std::optional<std::string> bucket;  // trend
  std::vector<std::string> states;
  std::string min_age = "60s";  // close-wait
  std::string by = "host";      // time-wait
  std::size_t top = 20;
};

// The fleet's JSON documents begin alike: the command and the store asked.
nlohmann::ordered_json fleet_head(const std::string& command, const FleetCommand& o);

// Error(usage) for the first of `hosts` the store does not hold, naming those it does.
void require_hosts(central::Server& server, const std::vector<std::string>& hosts);

// Declares trend, close-wait and time-wait under `fleet`; `formats` adds --format and --utc.
void setup_fleet_reports(CLI::App& fleet, Runner& selected, const std::shared_ptr<FleetCommand>& o,
                         const std::function<void(CLI::App&)>& formats);

}  // namespace sockhist::analyzer
