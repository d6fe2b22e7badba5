// The sosreport reader's insides: the report's files, and the facts every namespace of it
// shares (sosreport_facts.cpp). Private to collector/import.
#pragma once

#include <array>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/import.hpp"
#include "sockhist/input.hpp"
#include "text_lines.hpp"

namespace sockhist::import::sosreport {

using text::trim;

// An unpacked sosreport: every path read is resolved inside it (input::Tree), so a link that leaves
// the report, a FIFO or device in it, or a file over input::k_max_file_bytes is refused, named.
class Report {
 public:
  explicit Report(std::filesystem::path dir) : m_dir(std::move(dir)), m_tree(m_dir) {}
  const std::filesystem::path& dir() const { return m_dir; }

  // The content of the first of `candidates` (paths relative to the report) that exists.
  std::optional<std::pair<std::string, std::string>> first(std::initializer_list<std::string_view> candidates) const {
    for (const auto relative : candidates) {
      if (auto text = read(relative)) {
        return std::make_pair(std::string(relative), std::move(*text));
      }
    }
    return std::nullopt;
  }

  // A file's content; nullopt when the report does not have it.
  std::optional<std::string> read(std::string_view relative) const { return m_tree.read(relative); }

  // `relative` when it names a file of the report, "" otherwise (nothing read).
  std::string file_if_present(std::string_view relative) const {
    return m_tree.is_file(relative) ? std::string(relative) : std::string();
  }

  bool is_file(std::string_view relative) const { return m_tree.is_file(relative); }
  bool is_directory(std::string_view relative) const { return m_tree.is_directory(relative); }

  // A path as the report names it: relative to its folder.
  std::string relative(const std::string& path) const {
    const auto below = std::filesystem::path(path).lexically_relative(m_dir).generic_string();
    return below.empty() || below.starts_with("..") ? path : below;
  }

  // The first line of a file, trimmed; nullopt when missing or empty.
  std::optional<std::string> line(std::initializer_list<std::string_view> candidates) const {
    if (auto found = first(candidates)) {
      const auto l = trim(std::string_view(found->second).substr(0, found->second.find('\n')));
      if (!l.empty()) {
        return std::string(l);
      }
    }
    return std::nullopt;
  }

 private:
  std::filesystem::path m_dir;
  input::Tree m_tree;
};

// "Tue Nov 24 06:08:40 UTC 2026" (date --utc under LC_ALL=C) as epoch ms; nullopt for another zone.
std::optional<std::int64_t> parse_date_utc(std::string_view text);

// The kernel's settings from `sysctl -a` output.
model::Settings parse_sysctl(std::string_view text);

// ps auxwww: USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND (the command line, to the end).
struct PsEntry {
  std::string user;
  std::string cmdline;
};
std::unordered_map<std::int32_t, PsEntry> parse_ps_aux(std::string_view text);

// A namespace known only by its name gets an inode of its own above any real one (real inodes fit
// 32 bits): 2^32 + the name's 32-bit FNV-1a hash, so that reports of one host share its history.
std::uint64_t named_namespace_key(std::string_view name);

// Where sos put the outputs of `ip netns exec NAME <command>`: sos_commands/networking/namespaces/
// NAME/ (sos 4.1 on) or directly in sos_commands/networking (4.0), named by sos's mangling of the
// command line (ip_netns_exec_NAME_netstat_-W_-neopa).
struct NamespaceFiles {
  std::map<std::string, std::string> by_command;  // "netstat_-W_-neopa" -> path relative to the report
};

constexpr std::array<std::string_view, 8> namespace_commands = {
    "ss_-peaonmi", "netstat_-W_-neopa", "netstat_-T_-neopa", "netstat_-neopa",
    "nstat_-zas",  "nstat_-as",         "netstat_-s",        "sysctl_-a"};

// Every namespace sos ran commands in, by name.
std::map<std::string, NamespaceFiles> find_namespaces(const Report& r);

// What is the same for every namespace of the report.
struct HostFacts {
  std::string host;
  std::string hostname;
  std::optional<std::string> machine_id;
  std::optional<std::string> boot_id;
  std::optional<std::string> kernel;
  std::optional<std::int64_t> uptime_ms;
  std::int64_t time_ms = 0;
  std::vector<std::pair<std::string, std::string>> provenance;
  std::unordered_map<std::int32_t, PsEntry> ps;
};

// The host facts of the report: name, machine and boot ids, kernel, uptime, time, ps.
HostFacts read_host_facts(const Report& r, const SosreportOptions& options);

// Gives a capture the report's host facts.
void apply_host_facts(model::Capture& c, const HostFacts& f, const std::filesystem::path& dir);

// Adds users and (unless `cmdlines` is false) command lines from ps to the capture's processes.
void enrich_processes(model::Capture& c, const HostFacts& f, bool cmdlines);

}  // namespace sockhist::import::sosreport
