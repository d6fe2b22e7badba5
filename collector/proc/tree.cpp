// A /proc tree read as text: one namespace's socket tables, counters and settings, and the host
// facts a copied tree carries. The live capture (collector/capture.cpp) reads through the same
// functions wherever it falls back to /proc text.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "sockhist/bounds.hpp"
#include "sockhist/error.hpp"
#include "sockhist/proc.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::proc {

namespace {

std::string trim(std::string_view text) {
  const auto start = text.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) {
    return {};
  }
  const auto end = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(start, end - start + 1));
}

}  // namespace

std::optional<std::int64_t> parse_int(std::string_view text) {
  const std::string t = trim(text);
  std::int64_t value = 0;
  const auto* end = t.data() + t.size();
  auto [ptr, ec] = std::from_chars(t.data(), end, value);
  if (ec != std::errc{} || ptr == t.data()) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> read_trimmed(const ProcRoot& root, std::string_view relative) {
  auto content = root.try_read(relative);
  if (!content) {
    return std::nullopt;
  }
  auto trimmed = trim(*content);
  return trimmed.empty() ? std::nullopt : std::optional(trimmed);
}

void Loader::note(const std::string& file, std::size_t line, std::string message) {
  if (m_cap.diagnostics.size() < k_max_diagnostics) {
    m_cap.diagnostics.push_back({file, line, std::move(message)});
  }
}

void Loader::report(const std::string& path, std::vector<model::LineIssue>& issues, std::size_t duplicates) {
  for (auto& issue : issues) {
    note(path, issue.line, std::move(issue.reason));
  }
  m_cap.skipped_lines += issues.size();
  if (duplicates > 0) {
    note(path, 0, std::to_string(duplicates) + " duplicate rows dropped");
  }
}

bool Loader::load_table(const ProcRoot& root, std::string_view relative, SocketTableParser& parser,
                        std::vector<model::Socket>& out, const AfterRows& after_rows) {
  const std::string path = (root.path() / relative).string();
  const auto after = [&](std::size_t first) {
    if (const auto& error = parser.outcome().error) {
      fail(path, *error);
    }
    if (after_rows && out.size() > first) {
      after_rows(out, first);
    }
  };
  const bool present = root.read_each(relative, [&](std::string_view chunk) {
    const std::size_t first = out.size();
    parser.feed(chunk, out);
    after(first);
  });
  if (!present) {
    note(path, 0, "not present");
    return false;
  }
  const std::size_t first = out.size();
  parser.finish(out);
  after(first);
  auto outcome = parser.take_outcome();
  report(path, outcome.issues, outcome.duplicates);
  return true;
}

void Loader::fail(const std::string& path, const std::string& error) {
  throw Error(Exit::bad_input, fmt::format("{}: {}", path, error));
}

void read_kernel_facts(model::Capture& cap, const ProcRoot& root) {
  if (const long hz = ::sysconf(_SC_CLK_TCK); hz > 0) {
    cap.user_hz = hz;
  }
  cap.boot_id = read_trimmed(root, "sys/kernel/random/boot_id");
  cap.kernel = read_trimmed(root, "sys/kernel/osrelease");
  cap.hostname = read_trimmed(root, "sys/kernel/hostname").value_or("");
}

void reserve_sockets(model::Capture& cap, const ProcRoot& net) {
  // Room for every socket the kernel counts, so that the table never grows by doubling (which
  // would hold two copies of it at once).
  if (const auto sockstat = net.try_read("net/sockstat")) {
    std::size_t expected = 64;
    for (const auto& counter : parse_sockstat(*sockstat, "Sockstat").rows) {
      if (counter.name == "sockets_used" || counter.name == "TCP_tw") {
        expected += static_cast<std::size_t>(std::max<std::int64_t>(counter.value, 0));
      }
    }
    cap.sockets.reserve(expected + expected / 32);
  }
}

bool read_socket_table(model::Capture& cap, Loader& loader, const ProcRoot& net, const SocketTable& table,
                       const AfterRows& after_rows) {
  SocketTableParser parser(table.proto, table.family, cap.user_hz);
  return loader.load_table(net, table.file, parser, cap.sockets, after_rows);
}

void require_a_table(bool any_table, const ProcRoot& net) {
  if (!any_table) {
    throw Error(
        Exit::bad_input,
        fmt::format("{}: no socket table (net/tcp, tcp6, udp, udp6, unix) under this /proc root", net.path().string()));
  }
}

void read_counters(model::Capture& cap, Loader& loader, const ProcRoot& net) {
  loader.load(
      net, "net/snmp", [](std::string_view t) { return parse_counter_pairs(t); }, cap.counters);
  loader.load(
      net, "net/netstat", [](std::string_view t) { return parse_counter_pairs(t); }, cap.counters);
  loader.load(
      net, "net/snmp6", [](std::string_view t) { return parse_snmp6(t); }, cap.counters);
  loader.load(
      net, "net/sockstat", [](std::string_view t) { return parse_sockstat(t, "Sockstat"); }, cap.counters);
  loader.load(
      net, "net/sockstat6", [](std::string_view t) { return parse_sockstat(t, "Sockstat6"); }, cap.counters);
}

void read_settings(model::Capture& cap, const ProcRoot& sys) {
  const auto number = [&](std::string_view relative) { return parse_int(read_trimmed(sys, relative).value_or("")); };
  cap.settings.tcp_fin_timeout = number("sys/net/ipv4/tcp_fin_timeout");
  cap.settings.tcp_max_tw_buckets = number("sys/net/ipv4/tcp_max_tw_buckets");
  cap.settings.tcp_tw_reuse = number("sys/net/ipv4/tcp_tw_reuse");
  cap.settings.somaxconn = number("sys/net/core/somaxconn");
  if (const auto range = read_trimmed(sys, "sys/net/ipv4/ip_local_port_range")) {
    long long low = 0;
    long long high = 0;
    if (std::sscanf(range->c_str(), "%lld %lld", &low, &high) == 2) {
      cap.settings.port_range_low = low;
      cap.settings.port_range_high = high;
    }
  }
}

std::uint64_t netns_inode_of(const ProcRoot& root) {
  if (const auto link = root.read_link("self/ns/net"); link && link->starts_with("net:[")) {
    return static_cast<std::uint64_t>(parse_int(link->substr(5)).value_or(0));
  }
  return 0;
}

void require_directory(const std::filesystem::path& root) {
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw Error(Exit::bad_input, fmt::format("{}: not a directory (--proc-root)", root.string()));
  }
}

model::Capture read_tree(const TreeOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  if (options.boundary) {
    // The root itself is resolved inside the tree that bounds it: a `proc -> /proc` link is refused.
    const auto below = options.root.lexically_relative(*options.boundary).generic_string();
    if (!input::Tree(*options.boundary).is_directory(below)) {
      throw Error(Exit::bad_input, fmt::format("{}: not a directory", options.root.string()));
    }
  } else {
    require_directory(options.root);
  }
  const ProcRoot root = options.boundary ? ProcRoot(options.root, *options.boundary) : ProcRoot(options.root);
  model::Capture cap;
  Loader loader(cap);
  cap.time_ms = options.at_ms.value_or(model::now_ms());
  cap.proc_root = std::filesystem::absolute(options.root).lexically_normal().string();
  read_kernel_facts(cap, root);
  if (const auto uptime = root.try_read("uptime")) {
    // "12345.67 23456.78": seconds since boot with centiseconds.
    double seconds = 0;
    if (std::sscanf(uptime->c_str(), "%lf", &seconds) == 1) {
      cap.uptime_ms = model::uptime_ms_of(seconds);
      if (!cap.uptime_ms) {
        loader.note((root.path() / "uptime").string(), 1,
                    fmt::format("{} s is no uptime a kernel counts: ignored", seconds));
      }
    }
  }
  cap.host = options.host.value_or(cap.hostname.empty() ? std::string("unknown") : cap.hostname);

  const auto tables_started = std::chrono::steady_clock::now();
  reserve_sockets(cap, root);
  bool any_table = false;
  for (const auto& table : k_socket_tables) {
    any_table |= read_socket_table(cap, loader, root, table);
  }
  cap.source = "proc";
  cap.sockets_ms = model::ms_since(tables_started);
  require_a_table(any_table, root);
  read_counters(cap, loader, root);
  read_settings(cap, root);
  cap.netns_inode = netns_inode_of(root);
  cap.netns_initial = true;  // a copied tree is taken to be its host's own view
  cap.capture_ms = model::ms_since(started);
  return cap;
}

}  // namespace sockhist::proc
