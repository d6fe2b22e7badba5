// Bounding a capture to what the kernel can produce (see bounds.hpp).
#include "sockhist/bounds.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::model {

namespace {

bool counter_name_ok(const std::string& name) {
  return !name.empty() && name.size() <= k_max_counter_name && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::size_t address_limit(const Socket& s) {
  return s.proto == Proto::unix_domain ? k_max_unix_path : k_max_inet_addr;
}

bool socket_ok(const Socket& s) {
  return s.local_addr.size() <= address_limit(s) && s.remote_addr.size() <= address_limit(s);
}

bool process_ok(const Process& p) {
  return p.comm.size() <= k_max_comm && (!p.cmdline || p.cmdline->size() <= k_max_cmdline) &&
         (!p.user || p.user->size() <= k_max_name);
}

bool text_ok(const std::optional<std::string>& text, std::size_t limit) {
  return !text || text->size() <= limit;
}

// A boot or machine id: the kernel's are 36 and 32 characters of hexadecimal digits and dashes;
// anything short and printable is kept (tests and other tools name boots their own way).
bool id_ok(const std::optional<std::string>& id) {
  return !id || (id->size() <= k_max_id && std::all_of(id->begin(), id->end(), [](char c) {
                   return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
                 }));
}

bool within(const Capture& c) {
  return c.hostname.size() <= k_max_hostname && c.host.size() <= k_max_name && text_ok(c.kernel, k_max_kernel) &&
         text_ok(c.netns_name, k_max_name) && text_ok(c.proc_root, k_max_path) && id_ok(c.boot_id) &&
         id_ok(c.machine_id) && (!c.uptime_ms || (*c.uptime_ms >= 0 && *c.uptime_ms <= k_max_uptime_ms)) &&
         c.counters.size() <= k_max_counters &&
         std::all_of(c.counters.begin(), c.counters.end(),
                     [](const Counter& k) { return counter_name_ok(k.name) && counter_name_ok(k.section); }) &&
         std::all_of(c.sockets.begin(), c.sockets.end(), socket_ok) &&
         std::all_of(c.processes.begin(), c.processes.end(), process_ok) &&
         std::all_of(c.users.begin(), c.users.end(), [](const auto& u) { return u.second.size() <= k_max_name; }) &&
         std::all_of(c.diagnostics.begin(), c.diagnostics.end(), [](const Diagnostic& d) {
           return d.file.size() <= k_max_path && d.message.size() <= k_max_diagnostic;
         });
}

void cut(std::string& text, std::size_t limit) {
  if (text.size() > limit) {
    text.resize(limit);
  }
}

}  // namespace

std::optional<std::int64_t> uptime_ms_of(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds * 1000.0 > static_cast<double>(k_max_uptime_ms)) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(seconds * 1000.0);
}

std::optional<Capture> bounded(const Capture& cap) {
  if (cap.time_ms < k_min_time_ms || cap.time_ms >= k_max_time_ms) {
    throw Error(Exit::bad_input, fmt::format("{}: the time {} ms since 1970 is no date a Linux system can have "
                                             "recorded (1970 to 2200); nothing recorded",
                                             cap.proc_root.value_or(cap.host), cap.time_ms));
  }
  if (within(cap)) {
    return std::nullopt;
  }
  Capture c = cap;
  std::vector<Diagnostic> notes;
  const auto note = [&](std::string message) { notes.push_back({"(bounds)", 0, std::move(message)}); };
  // Sockets with an address no kernel can print: refused.
  const auto before = c.sockets.size();
  std::erase_if(c.sockets, [](const Socket& s) { return !socket_ok(s); });
  if (const auto refused = before - c.sockets.size(); refused > 0) {
    c.skipped_lines += refused;
    note(fmt::format("{} sockets refused: an address longer than the kernel's (UNIX {}, Internet {} bytes)", refused,
                     k_max_unix_path, k_max_inet_addr));
  }
  // Counters: names the kernel uses, and no more of them than it has.
  const auto counters = c.counters.size();
  std::erase_if(c.counters, [](const Counter& k) { return !counter_name_ok(k.name) || !counter_name_ok(k.section); });
  if (c.counters.size() > k_max_counters) {
    c.counters.resize(k_max_counters);
  }
  if (const auto refused = counters - c.counters.size(); refused > 0) {
    note(fmt::format("{} of {} counters refused: a name no kernel uses, or more than {} counters", refused, counters,
                     k_max_counters));
  }
  std::size_t cmdlines = 0, names = 0;
  for (auto& p : c.processes) {
    if (p.cmdline && p.cmdline->size() > k_max_cmdline) {
      note(fmt::format("the command line of pid {} cut from {} to {} bytes", p.pid, p.cmdline->size(), k_max_cmdline));
      cut(*p.cmdline, k_max_cmdline);
      ++cmdlines;
    }
    names += p.comm.size() > k_max_comm || (p.user && p.user->size() > k_max_name);
    cut(p.comm, k_max_comm);
    if (p.user) {
      cut(*p.user, k_max_name);
    }
  }
  for (auto& [uid, name] : c.users) {
    names += name.size() > k_max_name;
    cut(name, k_max_name);
  }
  if (names > 0) {
    note(fmt::format("{} process or user names cut to {} bytes", names, k_max_name));
  }
  const auto field = [&](std::optional<std::string>& text, std::size_t limit, const char* what) {
    if (text && text->size() > limit) {
      note(fmt::format("{} of {} bytes cut to {}", what, text->size(), limit));
      cut(*text, limit);
    }
  };
  if (c.hostname.size() > k_max_hostname) {
    note(fmt::format("host name of {} bytes cut to {}", c.hostname.size(), k_max_hostname));
    cut(c.hostname, k_max_hostname);
  }
  if (c.host.size() > k_max_name) {
    note(fmt::format("recorded host name of {} bytes cut to {}", c.host.size(), k_max_name));
    cut(c.host, k_max_name);
  }
  field(c.kernel, k_max_kernel, "kernel release");
  field(c.netns_name, k_max_name, "namespace name");
  field(c.proc_root, k_max_path, "source path");
  if (!id_ok(c.boot_id)) {
    note(fmt::format("boot id refused: over {} bytes, or not printable", k_max_id));
    c.boot_id.reset();
  }
  if (!id_ok(c.machine_id)) {
    note(fmt::format("machine id refused: over {} bytes, or not printable", k_max_id));
    c.machine_id.reset();
  }
  if (c.uptime_ms && (*c.uptime_ms < 0 || *c.uptime_ms > k_max_uptime_ms)) {
    note(fmt::format("uptime of {} ms refused: no kernel counts it", *c.uptime_ms));
    c.uptime_ms.reset();
  }
  for (auto& d : c.diagnostics) {
    cut(d.file, k_max_path);
    cut(d.message, k_max_diagnostic);
  }
  c.diagnostics.insert(c.diagnostics.end(), notes.begin(), notes.end());
  return c;
}

}  // namespace sockhist::model
