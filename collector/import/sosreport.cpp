// Reading a sosreport: the copies of /proc/net, the socket listings and counters sos saved per
// network namespace, and the host facts around them, into captures like live ones.
#include <time.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/import.hpp"
#include "sockhist/proc.hpp"
#include "text_lines.hpp"

namespace sockhist::import {

namespace {

using text::Lines;
using text::number;
using text::words;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// Adds (section, name) once; later duplicates are dropped and counted.
void add_counter(model::Parsed<model::Counter>& out, std::set<std::pair<std::string, std::string>>& seen,
                 std::string_view section, std::string_view name, std::int64_t value) {
  if (!seen.emplace(std::string(section), std::string(name)).second) {
    return;
  }
  out.rows.push_back({std::string(section), std::string(name), value, model::is_gauge(section, name)});
}

// nstat joins section and name: TcpExtTW, Ip6InReceives, IcmpMsgInType3.
std::optional<std::pair<std::string_view, std::string_view>> split_nstat_name(std::string_view full) {
  // Longest first, so that TcpExt is not taken for Tcp, nor Ip6 for Ip.
  static constexpr std::array<std::string_view, 15> sections = {"UdpLite6", "MPTcpExt", "IcmpMsg", "UdpLite", "TcpExt",
                                                                "Icmp6",    "IpExt",    "TlsExt",  "Icmp",    "Sctp",
                                                                "Udp6",     "Ip6",      "Tcp",     "Udp",     "Ip"};
  for (const auto section : sections) {
    if (full.size() > section.size() && full.starts_with(section)) {
      return std::make_pair(full.substr(0, section.size()), full.substr(section.size()));
    }
  }
  return std::nullopt;
}

struct Phrase {
  const char* heading;
  const char* subheading;
  const char* line;  // with % where the value goes
  const char* section;
  const char* name;
  bool shown_when_zero;
};
constexpr Phrase netstat_s_table[] = {
#include "netstat_s_table.inc"
};

const Phrase* find_phrase(std::string_view heading, std::string_view subheading, std::string_view line) {
  for (const auto& p : netstat_s_table) {
    if (heading == p.heading && subheading == p.subheading && line == p.line) {
      return &p;
    }
  }
  return nullptr;
}

// "Name: 123" (a counter netstat has no phrase for).
std::optional<std::pair<std::string_view, std::int64_t>> name_value(std::string_view body) {
  const auto colon = body.find(": ");
  if (colon == std::string_view::npos || colon == 0) {
    return std::nullopt;
  }
  const auto name = body.substr(0, colon);
  if (!std::all_of(name.begin(), name.end(),
                   [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; })) {
    return std::nullopt;
  }
  const auto value = number<std::int64_t>(trim(body.substr(colon + 2)));
  if (!value) {
    return std::nullopt;
  }
  return std::make_pair(name, *value);
}

// ---- the report's files --------------------------------------------------------------------

class Report {
 public:
  explicit Report(std::filesystem::path dir) : m_dir(std::move(dir)) {}
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

  std::optional<std::string> read(std::string_view relative) const {
    const auto path = m_dir / relative;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
      return std::nullopt;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      throw Error(Exit::bad_input, fmt::format("{}: cannot read it", path.string()));
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // `relative` when it names a file of the report, "" otherwise (nothing read).
  std::string file_if_present(std::string_view relative) const {
    std::error_code ec;
    return std::filesystem::is_regular_file(m_dir / relative, ec) ? std::string(relative) : std::string();
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
};

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

// ps auxwww: USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND (the command line, to the end).
struct PsEntry {
  std::string user;
  std::string cmdline;
};
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

// Where sos put the outputs of `ip netns exec NAME <command>`: sos_commands/networking/namespaces/
// NAME/ (sos 4.1 on) or directly in sos_commands/networking (4.0), named by sos's mangling of the
// command line (ip_netns_exec_NAME_netstat_-W_-neopa).
struct NamespaceFiles {
  std::map<std::string, std::string> by_command;  // "netstat_-W_-neopa" -> path relative to the report
};

constexpr std::array<std::string_view, 8> namespace_commands = {
    "ss_-peaonmi", "netstat_-W_-neopa", "netstat_-T_-neopa", "netstat_-neopa",
    "nstat_-zas",  "nstat_-as",         "netstat_-s",        "sysctl_-a"};

std::map<std::string, NamespaceFiles> find_namespaces(const std::filesystem::path& dir) {
  std::map<std::string, NamespaceFiles> out;
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
  scan(dir / "sos_commands" / "networking");
  return out;
}

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
    if (std::sscanf(proc_uptime->c_str(), "%lf", &seconds) == 1 && seconds >= 0) {
      f.uptime_ms = static_cast<std::int64_t>(seconds * 1000.0);
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
void read_listed_counters(model::Capture& c, const Report& r, SosreportCapture& out, std::string_view nstat_file,
                          std::string_view netstat_s_file) {
  const auto take = [&](std::string_view file, const model::Parsed<model::Counter>& parsed, std::string label) {
    for (const auto& issue : parsed.issues) {
      c.diagnostics.push_back({std::string(file), issue.line, issue.reason});
      ++c.skipped_lines;
    }
    c.counters = parsed.rows;
    out.counters_from = std::move(label);
    out.provenance.emplace_back("counters", std::string(file));
  };
  if (!nstat_file.empty()) {
    const auto parsed = parse_nstat(*r.read(nstat_file));
    if (!parsed.error && !parsed.rows.empty()) {
      take(nstat_file, parsed, "nstat -zas");
      return;
    }
    c.diagnostics.push_back({std::string(nstat_file), 0, parsed.error.value_or("no counter in it")});
  }
  if (!netstat_s_file.empty()) {
    const auto parsed = parse_netstat_statistics(*r.read(netstat_s_file));
    if (!parsed.error && !parsed.rows.empty()) {
      take(netstat_s_file, parsed,
           parsed.duplicates > 0 ? fmt::format("netstat -s ({} of them 0: netstat leaves zeros out)", parsed.duplicates)
                                 : std::string("netstat -s"));
      return;
    }
    c.diagnostics.push_back({std::string(netstat_s_file), 0, parsed.error.value_or("no counter in it")});
  }
}

// Owners, cookies and UNIX peers of the /proc/net copies' sockets, joined by inode from a listing.
void join_owners(model::Capture& c, const Listing& listing, const std::string& file, SosreportCapture& out) {
  std::unordered_map<std::uint64_t, const model::Socket*> by_inode;
  for (const auto& s : listing.sockets) {
    if (s.inode != 0) {
      by_inode.emplace(s.inode, &s);
    }
  }
  std::size_t with_inode = 0;
  std::size_t matched = 0;
  std::set<std::int32_t> used;
  for (auto& s : c.sockets) {
    if (s.inode == 0) {
      continue;
    }
    ++with_inode;
    const auto it = by_inode.find(s.inode);
    if (it == by_inode.end()) {
      continue;
    }
    ++matched;
    s.pid = it->second->pid;
    if (!s.cookie) {
      s.cookie = it->second->cookie;
    }
    if (!s.peer_inode) {
      s.peer_inode = it->second->peer_inode;
    }
    if (s.pid != 0) {
      used.insert(s.pid);
    }
  }
  for (const auto& p : listing.processes) {
    if (used.contains(p.pid)) {
      c.processes.push_back(p);
    }
  }
  c.owners = matched == with_inode ? model::OwnerScan::complete : model::OwnerScan::partial;
  if (matched < with_inode) {
    c.diagnostics.push_back({file, 0,
                             fmt::format("{} of {} sockets of the /proc/net copies are not in this listing (opened "
                                         "between the two): no owner",
                                         with_inode - matched, with_inode)});
  }
  out.owners_from = fmt::format("{}, {} of {} sockets by inode", listing.format, matched, with_inode);
  out.provenance.emplace_back("owners",
                              fmt::format("{} ({} of {} sockets joined by inode)", file, matched, with_inode));
}

// The host's own namespace: sockets and counters from the /proc/net copies when there are any.
std::optional<SosreportCapture> read_initial(const Report& r, const HostFacts& f, const SosreportOptions& options) {
  SosreportCapture out;
  auto& c = out.capture;
  const auto proc = r.dir() / "proc";
  std::error_code ec;
  static constexpr std::array<const char*, 5> tables = {"tcp", "tcp6", "udp", "udp6", "unix"};
  const bool has_copies = std::filesystem::is_directory(proc / "net", ec) &&
                          std::any_of(tables.begin(), tables.end(), [&](const char* table) {
                            return std::filesystem::is_regular_file(proc / "net" / table, ec);
                          });
  const auto listing_file =
      r.first({"sos_commands/networking/ss_-peaonmi", "sos_commands/networking/netstat_-W_-neopa",
               "sos_commands/networking/netstat_-T_-neopa", "sos_commands/networking/netstat_-neopa", "netstat"});
  if (has_copies) {
    c = proc::read_tree({proc, f.host, f.time_ms});
    for (auto& d : c.diagnostics) {
      d.file = fmt::format("proc/{}", d.file);
    }
    c.source = "sosreport:proc";
    out.sockets_from = "/proc/net copies";
    out.provenance.emplace_back("sockets", "proc/net/tcp, tcp6, udp, udp6, unix");
    if (!c.counters.empty()) {
      out.counters_from = "/proc/net copies";
      out.provenance.emplace_back("counters", "proc/net/snmp, netstat, snmp6, sockstat, sockstat6");
    }
    c.owners = model::OwnerScan::skipped;
    if (listing_file) {
      const auto listing = parse_listing(listing_file->second, listing_file->first);
      if (listing.owners) {
        join_owners(c, listing, listing_file->first, out);
      }
    }
  } else if (listing_file) {
    const auto listing = parse_listing(listing_file->second, listing_file->first);
    if (listing.sockets.empty()) {
      return std::nullopt;
    }
    c = listing_capture(listing, f.host, f.time_ms, listing_file->first);
    c.source = fmt::format("sosreport:{}", listing.tool);
    out.sockets_from = listing.format;
    out.owners_from = listing.owners ? listing.format : "";
    out.provenance.emplace_back("sockets", listing_file->first);
    if (listing.owners) {
      out.provenance.emplace_back("owners", listing_file->first);
    }
  } else {
    return std::nullopt;
  }
  if (c.counters.empty()) {
    read_listed_counters(c, r, out, r.file_if_present("sos_commands/networking/nstat_-zas"),
                         r.file_if_present("sos_commands/networking/netstat_-s"));
  }
  if (const auto sysctl = r.first({"sos_commands/kernel/sysctl_-a"})) {
    c.settings = parse_sysctl(sysctl->second);
    out.provenance.emplace_back("settings", sysctl->first);
  }
  apply_host_facts(c, f, r.dir());
  c.netns_inode = 0;
  c.netns_initial = true;
  enrich_processes(c, f, options.cmdlines);
  return out;
}

std::optional<SosreportCapture> read_namespace(const Report& r, const HostFacts& f, const std::string& name,
                                               const NamespaceFiles& files, const SosreportOptions& options) {
  const auto file_of = [&](std::string_view command) -> std::string {
    const auto it = files.by_command.find(std::string(command));
    return it == files.by_command.end() ? std::string() : it->second;
  };
  std::string listing_path;
  for (const auto command : {"ss_-peaonmi", "netstat_-W_-neopa", "netstat_-T_-neopa", "netstat_-neopa"}) {
    if (!(listing_path = file_of(command)).empty()) {
      break;
    }
  }
  if (listing_path.empty()) {
    return std::nullopt;
  }
  const auto text = r.read(listing_path);
  if (!text || text->find_first_not_of(" \t\r\n") == std::string::npos) {
    return std::nullopt;
  }
  const auto listing = parse_listing(*text, listing_path);
  SosreportCapture out;
  auto& c = out.capture;
  c = listing_capture(listing, f.host, f.time_ms, listing_path);
  c.source = fmt::format("sosreport:{}", listing.tool);
  out.sockets_from = listing.format;
  out.owners_from = listing.owners ? listing.format : "";
  out.provenance.emplace_back("sockets", listing_path);
  if (listing.owners) {
    out.provenance.emplace_back("owners", listing_path);
  }
  auto nstat = file_of("nstat_-zas");
  if (nstat.empty()) {
    nstat = file_of("nstat_-as");
  }
  read_listed_counters(c, r, out, nstat, file_of("netstat_-s"));
  if (const auto sysctl = file_of("sysctl_-a"); !sysctl.empty()) {
    c.settings = parse_sysctl(*r.read(sysctl));
    out.provenance.emplace_back("settings", sysctl);
  }
  apply_host_facts(c, f, r.dir());
  c.netns_inode = named_namespace_key(name);
  c.netns_name = name;
  c.netns_initial = false;
  enrich_processes(c, f, options.cmdlines);
  return out;
}

}  // namespace

model::Parsed<model::Counter> parse_nstat(std::string_view text) {
  model::Parsed<model::Counter> out;
  std::set<std::pair<std::string, std::string>> seen;
  bool header = false;
  for (const auto& [n, line] : Lines(text).lines) {
    const auto w = words(line);
    if (w.empty()) {
      continue;
    }
    if (!header) {
      if (w[0] != "#kernel") {
        out.error = fmt::format("line {}: not an nstat listing (no '#kernel' first line)", n);
        return out;
      }
      header = true;
      continue;
    }
    const auto split = split_nstat_name(w[0]);
    const auto value = w.size() >= 2 ? number<std::int64_t>(w[1]) : std::nullopt;
    if (!split || !value) {
      out.issues.push_back({n, fmt::format("expected 'SectionName value [rate]', not '{}'", std::string(trim(line)))});
      continue;
    }
    add_counter(out, seen, split->first, split->second, *value);
  }
  if (!header) {
    out.error = "empty: not an nstat listing";
  }
  return out;
}

model::Parsed<model::Counter> parse_netstat_statistics(std::string_view text) {
  model::Parsed<model::Counter> out;
  std::set<std::pair<std::string, std::string>> seen;
  std::set<std::string> headings;
  std::string heading;
  std::string subheading;
  for (const auto& [n, line] : Lines(text).lines) {
    const auto body = trim(line);
    if (body.empty()) {
      continue;
    }
    if (line.front() != ' ' && line.front() != '\t') {
      if (!body.ends_with(":") || body.find(' ') != std::string_view::npos) {
        if (headings.empty()) {
          out.error =
              fmt::format("line {}: not a netstat -s listing (it begins '{}')", n, std::string(body.substr(0, 40)));
          return out;
        }
        out.issues.push_back({n, fmt::format("'{}' is not a section heading", std::string(body))});
        continue;
      }
      heading = std::string(body.substr(0, body.size() - 1));
      headings.insert(heading);
      subheading.clear();
      continue;
    }
    if (heading.empty()) {
      out.error = fmt::format("line {}: not a netstat -s listing (an indented line before any heading)", n);
      return out;
    }
    const auto indent = line.find_first_not_of(" \t");
    const std::string_view sub = indent > 4 ? std::string_view(subheading) : std::string_view();
    // Any run of digits may be the value: the table says which reading is a line netstat prints.
    bool any_digits = false;
    const Phrase* phrase = nullptr;
    std::int64_t value = 0;
    for (std::size_t i = 0; i < body.size() && phrase == nullptr;) {
      if (!std::isdigit(static_cast<unsigned char>(body[i]))) {
        ++i;
        continue;
      }
      auto end = i;
      while (end < body.size() && std::isdigit(static_cast<unsigned char>(body[end]))) {
        ++end;
      }
      any_digits = true;
      const auto templated = fmt::format("{}%{}", body.substr(0, i), body.substr(end));
      if ((phrase = find_phrase(heading, sub, templated))) {
        value = number<std::int64_t>(body.substr(i, end - i)).value_or(0);
      }
      i = end;
    }
    // A phrase first: some histogram lines ("redirects: 3") look like "Name: value" lines.
    if (phrase != nullptr) {
      add_counter(out, seen, phrase->section, phrase->name, value);
    } else if (const auto nv = name_value(body)) {
      add_counter(out, seen, heading, nv->first, nv->second);
    } else if (!any_digits) {
      subheading = std::string(body);  // "ICMP input histogram:"
    } else {
      out.issues.push_back(
          {n, fmt::format("'{}' is not a line net-tools 2.10's netstat -s prints", std::string(body))});
    }
  }
  if (headings.empty()) {
    out.error = "empty: not a netstat -s listing";
    return out;
  }
  // netstat prints some counters only when they are not zero.
  for (const auto& p : netstat_s_table) {
    if (!p.shown_when_zero && headings.contains(p.heading) && !seen.contains({p.section, p.name})) {
      add_counter(out, seen, p.section, p.name, 0);
      ++out.duplicates;
    }
  }
  return out;
}

std::vector<SosreportCapture> read_sosreport(const std::filesystem::path& dir, const SosreportOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw Error(Exit::bad_input,
                fmt::format("{}: not a directory (unpack the sosreport first: tar xf ...)", dir.string()));
  }
  const Report r(dir);
  const auto namespaces = find_namespaces(dir);
  const bool has_sos = std::filesystem::is_directory(dir / "sos_commands", ec) ||
                       std::filesystem::is_directory(dir / "proc" / "net", ec);
  if (!has_sos) {
    throw Error(Exit::bad_input,
                fmt::format("{}: not a sosreport (neither sos_commands/ nor proc/net/ in it)", dir.string()));
  }
  const auto facts = read_host_facts(r, options);
  std::vector<SosreportCapture> out;
  if (auto initial = read_initial(r, facts, options)) {
    out.push_back(std::move(*initial));
  }
  for (const auto& [name, files] : namespaces) {
    if (auto ns = read_namespace(r, facts, name, files, options)) {
      out.push_back(std::move(*ns));
    }
  }
  if (out.empty()) {
    throw Error(Exit::bad_input,
                fmt::format("{}: no socket table in this sosreport (no proc/net/tcp, tcp6, udp, udp6 or unix, no "
                            "sos_commands/networking/ss_-peaonmi or netstat_-W_-neopa)",
                            dir.string()));
  }
  // netstat -s leaves out every counter that is zero, not only those its table names. A namespace
  // runs the host's kernel, so the counters the host's /proc/net/snmp and netstat copies list and
  // netstat -s did not print in a namespace are zero there (gauges aside, which it never prints).
  if (!out.empty() && out.front().capture.netns_initial && out.front().capture.source == "sosreport:proc") {
    const auto host_counters = out.front().capture.counters;
    for (auto& ns : out) {
      if (ns.capture.netns_initial || !ns.counters_from.starts_with("netstat -s")) {
        continue;
      }
      std::set<std::pair<std::string, std::string>> have;
      for (const auto& c : ns.capture.counters) {
        have.emplace(c.section, c.name);
      }
      std::size_t zeros = 0;
      for (const auto& c : host_counters) {
        const bool netstat_s_section = !c.section.ends_with("6") && !c.section.starts_with("Sockstat");
        if (netstat_s_section && !c.is_gauge && !have.contains({c.section, c.name})) {
          ns.capture.counters.push_back({c.section, c.name, 0, false});
          ++zeros;
        }
      }
      const auto table_zeros = ns.counters_from == "netstat -s" ? std::size_t{0} : [&] {
        std::size_t n = 0;
        std::sscanf(ns.counters_from.c_str(), "netstat -s (%zu", &n);
        return n;
      }();
      if (zeros + table_zeros > 0) {
        ns.counters_from = fmt::format("netstat -s ({} of them 0: netstat leaves zeros out)", zeros + table_zeros);
      }
    }
  }
  for (auto& capture : out) {
    for (const auto& [fact, file] : facts.provenance) {
      capture.provenance.emplace_back(fact, file);
    }
    for (const auto& [fact, file] : capture.provenance) {
      capture.capture.diagnostics.push_back({file, 0, fmt::format("source of {}", fact)});
    }
  }
  return out;
}

}  // namespace sockhist::import
