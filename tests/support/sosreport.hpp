// A sosreport-shaped directory of this network namespace, saved the way sos saves one: what the
// live import tests read back and compare with the collector.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "files.hpp"
#include "process.hpp"

namespace sockhist::test {

// Runs `program args` and saves its output as `report/relative`; empty when that worked, else why.
inline std::string save_output(const std::filesystem::path& report, const std::string& relative,
                               const std::string& program, std::vector<std::string> args) {
  const auto r = run(program, std::move(args));
  if (r.exit_code != 0) {
    return program + ": " + r.err;
  }
  write_text(report / relative, r.out);
  return {};
}

// The host's part of a sosreport of `host`: the copies of /proc/net and boot_id, netstat -W -neopa
// and netstat -s, ss -peaonmi when `with_ss`, date --utc, uname -a, sysctl -a, ps auxwww and the
// hostname. Empty when that worked, else why.
inline std::string save_host_report(const std::filesystem::path& report, const std::string& host, bool with_ss) {
  for (const char* f : {"tcp", "tcp6", "udp", "udp6", "unix", "snmp", "snmp6", "netstat", "sockstat", "sockstat6"}) {
    write_text(report / "proc/net" / f, read_text(std::filesystem::path("/proc/net") / f));
  }
  write_text(report / "proc/sys/kernel/random/boot_id", read_text("/proc/sys/kernel/random/boot_id"));
  write_text(report / "sos_commands/host/hostname", host + "\n");
  const std::string net = "sos_commands/networking/";
  const auto netstat = find_tool("netstat"), ss = find_tool("ss");
  std::vector<std::tuple<std::string, std::string, std::vector<std::string>>> commands = {
      {net + "netstat_-W_-neopa", netstat, {"-W", "-neopa"}},
      {net + "netstat_-s", netstat, {"-s"}},
      {"sos_commands/date/date_--utc", "/usr/bin/env", {"LC_ALL=C", "date", "--utc"}},
      {"sos_commands/kernel/uname_-a", "/usr/bin/env", {"uname", "-a"}},
      {"sos_commands/kernel/sysctl_-a", "/usr/bin/env", {"sysctl", "-a"}},
      {"sos_commands/process/ps_auxwww", "/usr/bin/env", {"ps", "auxwww"}},
  };
  if (with_ss) {
    commands.push_back({net + "ss_-peaonmi", ss, {"-peaonmi"}});
  }
  for (auto& [relative, program, args] : commands) {
    if (auto why = save_output(report, relative, program, std::move(args)); !why.empty()) {
      return why;
    }
  }
  return {};
}

}  // namespace sockhist::test
