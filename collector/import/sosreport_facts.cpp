// A sosreport's host facts: hostname, machine and boot ids, kernel, uptime, its UTC time, ps, sysctl
// and the namespaces sos ran commands in.
#include <time.h>

#include <algorithm>
#include <set>

#include "sockhist/bounds.hpp"
#include "sosreport_files.hpp"

namespace sockhist::import::sosreport {

using text::Lines;
using text::number;
using text::words;

// "Tue Nov 24 06:08:40 UTC 2026" (date --utc under LC_ALL=C) as epoch ms; nullopt for another zone.
std::optional<std::int64_t> parse_date_utc(std::string_view text) {
  const auto w = words(trim(text.substr(0, text.find('\n'))));
  if (w.size() != 6 || (w[4] != "UTC" && w[4] != "GMT")) {
    return std::nullopt;
  }
  static constexpr std::array<std::string_view, 12> months = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const auto month = std::find(months.begin(), months.end(), w[1]);
  const auto day = number<int>(w[2]);
  const auto year = number<int>(w[5]);
  int h = 0;
  int m = 0;
  int s = 0;
  if (month == months.end() || !day || !year || std::sscanf(std::string(w[3]).c_str(), "%d:%d:%d", &h, &m, &s) != 3) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = static_cast<int>(month - months.begin());
  tm.tm_mday = *day;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = s;
  return static_cast<std::int64_t>(::timegm(&tm)) * 1000;
}

// uptime(1): "06:08:40 up  5:35,  0 user, ...", "up 12 days,  3:04,", "up 3 days, 14 min,", "up 7 min,".
std::optional<std::int64_t> parse_uptime_command(std::string_view text) {
  const auto up = text.find(" up ");
  if (up == std::string_view::npos) {
    return std::nullopt;
  }
  std::string rest(text.substr(up + 4));
  std::int64_t minutes = 0;
  int days = 0;
  int consumed = 0;
  if (std::sscanf(rest.c_str(), " %d day%*[s], %n", &days, &consumed) == 1 && consumed > 0) {
    minutes += static_cast<std::int64_t>(days) * 24 * 60;
    rest.erase(0, static_cast<std::size_t>(consumed));
  } else if (std::sscanf(rest.c_str(), " %d day, %n", &days, &consumed) == 1 && consumed > 0) {
    minutes += static_cast<std::int64_t>(days) * 24 * 60;
    rest.erase(0, static_cast<std::size_t>(consumed));
  }
  int h = 0;
  int m = 0;
  if (std::sscanf(rest.c_str(), " %d:%d", &h, &m) == 2) {
    minutes += h * 60 + m;
  } else if (std::sscanf(rest.c_str(), " %d min", &m) == 1) {
    minutes += m;
  } else if (days == 0) {
    return std::nullopt;
  }
  return minutes * 60 * 1000;
}

// The settings sockhist keeps, from `sysctl -a` lines ("net.ipv4.tcp_fin_timeout = 60").
model::Settings parse_sysctl(std::string_view text) {
  model::Settings s;
  for (const auto& [n, line] : Lines(text).lines) {
    const auto eq = line.find(" = ");
    if (eq == std::string_view::npos) {
      continue;
    }
    const auto key = trim(line.substr(0, eq));
    const auto value = trim(line.substr(eq + 3));
    const auto as_int = [&] { return number<std::int64_t>(value); };
    if (key == "net.ipv4.tcp_fin_timeout") {
      s.tcp_fin_timeout = as_int();
    } else if (key == "net.ipv4.tcp_max_tw_buckets") {
      s.tcp_max_tw_buckets = as_int();
    } else if (key == "net.ipv4.tcp_tw_reuse") {
      s.tcp_tw_reuse = as_int();
    } else if (key == "net.core.somaxconn") {
      s.somaxconn = as_int();
    } else if (key == "net.ipv4.ip_local_port_range") {
      const auto w = words(value);
      if (w.size() == 2) {
        s.port_range_low = number<std::int64_t>(w[0]);
        s.port_range_high = number<std::int64_t>(w[1]);
      }
    }
  }
  return s;
}

std::unordered_map<std::int32_t, PsEntry> parse_ps_aux(std::string_view text) {
  std::unordered_map<std::int32_t, PsEntry> out;
  bool header = false;
  for (const auto& [n, line] : Lines(text).lines) {
    const auto w = words(line);
    if (!header) {
      header = w.size() >= 11 && w[0] == "USER" && w[1] == "PID" && w.back() == "COMMAND";
      continue;
    }
    if (w.size() < 11) {
      continue;
    }
    const auto pid = number<std::int32_t>(w[1]);
    if (!pid) {
      continue;
    }
    const auto command_at = static_cast<std::size_t>(w[10].data() - line.data());
    const auto command = trim(line.substr(command_at));
    // Kernel threads show as [name]: no command line.
    if (command.size() >= 2 && command.front() == '[' && command.back() == ']') {
      continue;
    }
    out[*pid] = PsEntry{std::string(w[0]), std::string(command)};
  }
  return out;
}

// A namespace known only by its name gets an inode of its own above any real one (real inodes fit
// 32 bits): 2^32 + the name's 32-bit FNV-1a hash, so that reports of one host share its history.
std::uint64_t named_namespace_key(std::string_view name) {
  std::uint32_t h = 2166136261u;
  for (const char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return (std::uint64_t{1} << 32) | h;
}

std::map<std::string, NamespaceFiles> find_namespaces(const Report& r) {
  std::map<std::string, NamespaceFiles> out;
  const auto& dir = r.dir();
  // The folder is resolved inside the report (a link out of it is refused); below it, the walk
  // follows no link to a folder, and every file found is read through the report again.
  constexpr std::string_view networking = "sos_commands/networking";
  if (!r.is_directory(networking)) {
    return out;
  }
  const auto scan = [&](const std::filesystem::path& folder) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(folder, ec)) {
      if (!entry.is_regular_file(ec)) {
        continue;
      }
      const auto file = entry.path().filename().string();
      constexpr std::string_view prefix = "ip_netns_exec_";
      if (!std::string_view(file).starts_with(prefix)) {
        continue;
      }
      for (const auto command : namespace_commands) {
        const auto suffix = fmt::format("_{}", command);
        if (file.size() > prefix.size() + suffix.size() && std::string_view(file).ends_with(suffix)) {
          const auto name = file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
          out[name].by_command.emplace(std::string(command),
                                       std::filesystem::relative(entry.path(), dir).generic_string());
          break;
        }
      }
    }
  };
  scan(dir / networking);
  return out;
}

std::optional<std::string> hostnamectl_field(const Report& r, std::string_view field) {
  if (const auto text = r.read("sos_commands/host/hostnamectl_status")) {
    for (const auto& [n, line] : Lines(*text).lines) {
      const auto t = trim(line);
      if (t.starts_with(field) && t.substr(field.size()).starts_with(":")) {
        const auto value = trim(t.substr(field.size() + 1));
        if (!value.empty()) {
          return std::string(value);
        }
      }
    }
  }
  return std::nullopt;
}

HostFacts read_host_facts(const Report& r, const SosreportOptions& options) {
  HostFacts f;
  const auto note = [&f](std::string fact, std::string file) {
    f.provenance.emplace_back(std::move(fact), std::move(file));
  };
  const auto name = r.first({"sos_commands/host/hostname", "hostname", "etc/hostname"});
  const auto first_line =
      name ? trim(std::string_view(name->second).substr(0, name->second.find('\n'))) : std::string_view();
  if (!first_line.empty()) {
    f.hostname = std::string(first_line);
    note("hostname", name->first);
  } else if (auto static_name = hostnamectl_field(r, "Static hostname")) {
    f.hostname = *static_name;
    note("hostname", "sos_commands/host/hostnamectl_status");
  }
  if (options.host) {
    f.host = *options.host;
  } else if (!f.hostname.empty()) {
    f.host = f.hostname;
  } else {
    throw Error(Exit::usage, fmt::format("{}: the report does not name its host (no sos_commands/host/hostname); "
                                         "give --host",
                                         r.dir().string()));
  }
  if (options.at_ms) {
    f.time_ms = *options.at_ms;
    note("time", "--at");
  } else if (const auto utc = r.first({"sos_commands/date/date_--utc", "sos_commands/date/date", "date"});
             utc && parse_date_utc(utc->second)) {
    f.time_ms = *parse_date_utc(utc->second);
    note("time", utc->first);
  } else {
    throw Error(Exit::usage, fmt::format("{}: the report does not say in UTC when it was taken (no "
                                         "sos_commands/date/date_--utc, and date is not in UTC); give --at",
                                         r.dir().string()));
  }
  if (auto id = r.line({"etc/machine-id"})) {
    f.machine_id = *id;
    note("machine id", "etc/machine-id");
  } else if (auto from_ctl = hostnamectl_field(r, "Machine ID")) {
    f.machine_id = *from_ctl;
    note("machine id", "sos_commands/host/hostnamectl_status");
  }
  if (auto boot = r.line({"proc/sys/kernel/random/boot_id"})) {
    f.boot_id = *boot;
    note("boot id", "proc/sys/kernel/random/boot_id");
  } else if (auto from_ctl = hostnamectl_field(r, "Boot ID")) {
    // hostnamectl prints it without dashes; /proc with them, as the collector stores it.
    auto id = *from_ctl;
    if (id.size() == 32) {
      id = fmt::format("{}-{}-{}-{}-{}", id.substr(0, 8), id.substr(8, 4), id.substr(12, 4), id.substr(16, 4),
                       id.substr(20));
    }
    f.boot_id = id;
    note("boot id", "sos_commands/host/hostnamectl_status");
  }
  if (auto uname = r.first({"sos_commands/kernel/uname_-a", "uname"})) {
    const std::string_view text = uname->second;
    const auto w = words(text.substr(0, text.find('\n')));
    if (w.size() >= 3) {
      f.kernel = std::string(w[2]);
      note("kernel", uname->first);
    }
  }
  if (const auto proc_uptime = r.read("proc/uptime")) {
    double seconds = 0;
    if (std::sscanf(proc_uptime->c_str(), "%lf", &seconds) == 1 && (f.uptime_ms = model::uptime_ms_of(seconds))) {
      note("uptime", "proc/uptime");
    }
  }
  if (!f.uptime_ms) {
    if (const auto up = r.first({"sos_commands/host/uptime", "uptime"})) {
      if ((f.uptime_ms = parse_uptime_command(up->second))) {
        note("uptime", fmt::format("{} (to the minute)", up->first));
      }
    }
  }
  if (const auto ps = r.first({"sos_commands/process/ps_auxwww", "ps"})) {
    f.ps = parse_ps_aux(ps->second);
    if (!f.ps.empty()) {
      note("process users and command lines", ps->first);
    }
  }
  return f;
}

void apply_host_facts(model::Capture& c, const HostFacts& f, const std::filesystem::path& dir) {
  c.host = f.host;
  c.hostname = f.hostname;
  c.machine_id = f.machine_id;
  c.boot_id = f.boot_id;
  c.kernel = f.kernel;
  c.uptime_ms = f.uptime_ms;
  c.time_ms = f.time_ms;
  c.proc_root = std::filesystem::absolute(dir).lexically_normal().string();
  c.users.clear();
}

// Users and command lines from ps for the processes a capture names; uid from a socket each owns.
void enrich_processes(model::Capture& c, const HostFacts& f, bool cmdlines) {
  std::unordered_map<std::int32_t, std::uint32_t> uid_of;
  for (const auto& s : c.sockets) {
    if (s.pid != 0) {
      uid_of.emplace(s.pid, s.uid);
    }
  }
  for (auto& p : c.processes) {
    if (const auto it = uid_of.find(p.pid); it != uid_of.end()) {
      p.uid = it->second;
    }
    if (const auto it = f.ps.find(p.pid); it != f.ps.end()) {
      p.user = it->second.user;
      if (cmdlines) {
        p.cmdline = it->second.cmdline;
      }
      // The store names uids through the capture's users, as a live capture's passwd lookups.
      if (std::none_of(c.users.begin(), c.users.end(), [&](const auto& u) { return u.first == p.uid; })) {
        c.users.emplace_back(p.uid, it->second.user);
      }
    }
  }
  std::sort(c.users.begin(), c.users.end());
}

// Counters of a namespace from nstat -zas, else netstat -s.
}  // namespace sockhist::import::sosreport
