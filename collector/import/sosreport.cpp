// sockhist import sosreport: every network namespace of an unpacked sosreport, each fact from
// its richest source (the host facts and files: sosreport_facts.cpp).
#include <algorithm>
#include <set>

#include "sockhist/proc.hpp"
#include "sosreport_files.hpp"

namespace sockhist::import {

namespace {

using namespace sosreport;
using text::Lines;
using text::number;
using text::trim;
using text::words;

void read_listed_counters(model::Capture& c, const Report& r, SosreportCapture& out, std::string_view nstat_file,
                          std::string_view netstat_s_file) {
  const auto take = [&](std::string_view file, const model::Parsed<model::Counter>& parsed, std::string label) {
    for (const auto& issue : parsed.issues) {
      c.diagnostics.push_back({std::string(file), issue.line, issue.reason});
      c.skipped_lines += issue.line > 0 ? 1 : 0;
    }
    out.counters_unread = !parsed.issues.empty();
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
    if (!parsed.counters.error && !parsed.counters.rows.empty()) {
      take(netstat_s_file, parsed.counters, fmt::format("netstat -s of {}", parsed.dialect));
      out.counters_zeros = parsed.zeros;
      c.diagnostics.push_back(
          {std::string(netstat_s_file), 0, fmt::format("read as netstat -s of {}", parsed.dialect)});
      for (const auto& note : parsed.notes) {
        c.diagnostics.push_back({std::string(netstat_s_file), 0, note});
      }
      return;
    }
    c.diagnostics.push_back({std::string(netstat_s_file), 0, parsed.counters.error.value_or("no counter in it")});
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
  static constexpr std::array<const char*, 5> tables = {"tcp", "tcp6", "udp", "udp6", "unix"};
  const bool has_copies = r.is_directory("proc/net") &&
                          std::any_of(tables.begin(), tables.end(),
                                      [&](const char* table) { return r.is_file(fmt::format("proc/net/{}", table)); });
  const auto listing_file =
      r.first({"sos_commands/networking/ss_-peaonmi", "sos_commands/networking/netstat_-W_-neopa",
               "sos_commands/networking/netstat_-T_-neopa", "sos_commands/networking/netstat_-neopa", "netstat"});
  if (has_copies) {
    c = proc::read_tree({proc, f.host, f.time_ms, r.dir()});
    for (auto& d : c.diagnostics) {
      d.file = r.relative(d.file);
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
        c.diagnostics.push_back(dialect_diagnostic(listing, listing_file->first));
      }
    }
  } else if (listing_file) {
    const auto listing = parse_listing(listing_file->second, listing_file->first);
    if (listing.sockets.empty()) {
      return std::nullopt;
    }
    c = listing_capture(listing, f.host, f.time_ms, listing_file->first);
    c.source = fmt::format("sosreport:{}", source_of(listing));
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
  c.source = fmt::format("sosreport:{}", source_of(listing));
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

std::vector<SosreportCapture> read_sosreport(const std::filesystem::path& dir, const SosreportOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw Error(Exit::bad_input,
                fmt::format("{}: not a directory (unpack the sosreport first: tar xf ...)", dir.string()));
  }
  const Report r(dir);
  const bool has_sos = r.is_directory("sos_commands") || r.is_directory("proc/net");
  const auto namespaces = find_namespaces(r);
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
      if (ns.counters_unread) {
        // A line that did not read may have been any of them: none is taken to be zero.
        const auto from = std::find_if(ns.provenance.begin(), ns.provenance.end(),
                                       [](const auto& p) { return p.first == "counters"; });
        ns.capture.diagnostics.push_back({from == ns.provenance.end() ? std::string() : from->second, 0,
                                          "the host's counters netstat -s left out are not taken to be zero here: a "
                                          "line of it did not read"});
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
      ns.counters_zeros += zeros;
    }
  }
  for (auto& ns : out) {
    if (ns.counters_zeros > 0) {
      ns.counters_from += fmt::format(" ({} of them 0: netstat leaves zeros out)", ns.counters_zeros);
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
