// Saved socket listings: what netstat's and ss's readers share, recognising which one a file is,
// and turning a listing into a capture.
#include <algorithm>
#include <charconv>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "listing.hpp"
#include "sockhist/error.hpp"
#include "text_lines.hpp"

namespace sockhist::import {

namespace listing {

using model::SockState;
using text::Lines;
using text::number;
using text::words;

std::optional<Endpoint> endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view addr = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  // An interface scope, after the address or after its brackets: 127.0.0.53%lo, [fe80::1]%eth0.
  // The kernel's tables do not print it either.
  if (const auto pct = addr.find('%'); pct != std::string_view::npos) {
    addr = addr.substr(0, pct);
  }
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') {
    addr = addr.substr(1, addr.size() - 2);
  }
  Endpoint e;
  if (addr == "*") {
    e.addr = "0.0.0.0";
  } else {
    e.addr = std::string(addr);
    e.family = addr.find(':') != std::string_view::npos ? 6 : 4;
    // Numeric output only: a name (localhost, www.example.com) is not an address.
    const bool numeric = std::all_of(addr.begin(), addr.end(), [](char c) {
      return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == '.' || c == ':';
    });
    if (addr.empty() || !numeric || (e.family == 4 && std::count(addr.begin(), addr.end(), '.') != 3)) {
      return std::nullopt;
    }
  }
  if (port != "*") {
    const auto p = number<unsigned>(port);
    if (!p || *p > 65535) {
      return std::nullopt;
    }
    e.port = static_cast<std::uint16_t>(*p);
  }
  return e;
}

// netstat's and ss's state names, to the stored (netstat) names.
std::optional<SockState> state_of(std::string_view name) {
  static const std::map<std::string_view, SockState> names = {
      {"ESTABLISHED", SockState::established},
      {"ESTAB", SockState::established},
      {"SYN_SENT", SockState::syn_sent},
      {"SYN-SENT", SockState::syn_sent},
      {"SYN_RECV", SockState::syn_recv},
      {"SYN-RECV", SockState::syn_recv},
      {"FIN_WAIT1", SockState::fin_wait1},
      {"FIN-WAIT-1", SockState::fin_wait1},
      {"FIN_WAIT2", SockState::fin_wait2},
      {"FIN-WAIT-2", SockState::fin_wait2},
      {"TIME_WAIT", SockState::time_wait},
      {"TIME-WAIT", SockState::time_wait},
      {"CLOSE", SockState::close},
      {"UNCONN", SockState::close},
      {"CLOSE_WAIT", SockState::close_wait},
      {"CLOSE-WAIT", SockState::close_wait},
      {"LAST_ACK", SockState::last_ack},
      {"LAST-ACK", SockState::last_ack},
      {"LISTEN", SockState::listen},
      {"CLOSING", SockState::closing},
  };
  const auto it = names.find(name);
  return it == names.end() ? std::nullopt : std::optional(it->second);
}

model::TimerKind timer_kind(std::string_view name) {
  if (name == "on") {
    return model::TimerKind::on;
  }
  if (name == "keepalive") {
    return model::TimerKind::keepalive;
  }
  if (name == "timewait") {
    return model::TimerKind::timewait;
  }
  if (name == "probe" || name == "persist") {
    return model::TimerKind::probe;
  }
  return model::TimerKind::off;
}

// ss's durations: "52sec", "1min8sec", "200ms", "1h2min", "" (zero).
std::optional<std::uint32_t> ss_duration_ms(std::string_view text) {
  std::uint64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t j = i;
    while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) != 0 || text[j] == '.')) {
      ++j;
    }
    std::size_t k = j;
    while (k < text.size() && std::isalpha(static_cast<unsigned char>(text[k])) != 0) {
      ++k;
    }
    const auto value = number<double>(text.substr(i, j - i));
    const auto unit = text.substr(j, k - j);
    if (!value || j == i) {
      return std::nullopt;
    }
    double scale = 0;
    if (unit == "ms") {
      scale = 1;
    } else if (unit == "sec") {
      scale = 1000;
    } else if (unit == "min") {
      scale = 60'000;
    } else if (unit == "h") {
      scale = 3'600'000;
    } else if (unit == "d") {
      scale = 86'400'000;
    } else {
      return std::nullopt;
    }
    total += static_cast<std::uint64_t>(*value * scale);
    i = k;
  }
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(total, 0xffffffffU));
}

void skip(Listing& l, const std::string& file, std::size_t line, std::string message) {
  l.diagnostics.push_back({file, line, std::move(message)});
  ++l.skipped_lines;
}

void add_owner(Listing& l, model::Socket& s, std::int32_t pid, std::string_view name) {
  s.pid = pid;
  if (std::none_of(l.processes.begin(), l.processes.end(), [&](const model::Process& p) { return p.pid == pid; })) {
    model::Process p;
    p.pid = pid;
    p.comm = std::string(name);
    l.processes.push_back(std::move(p));
  }
}

// netstat's PID/Program column: "1104/python3", or "-" when unknown.
void netstat_owner(Listing& l, model::Socket& s, std::string_view word) {
  const auto slash = word.find('/');
  if (slash != std::string_view::npos) {
    if (const auto pid = number<std::int32_t>(word.substr(0, slash))) {
      add_owner(l, s, *pid, word.substr(slash + 1));
    }
  }
}

}  // namespace listing

using text::Lines;
using text::words;

std::string source_of(const Listing& listing) {
  return listing.dialect.empty() ? listing.tool : fmt::format("{} ({})", listing.tool, listing.dialect);
}

model::Diagnostic dialect_diagnostic(const Listing& listing, const std::string& file) {
  return {file, 0, fmt::format("read as {} of {}: {}", listing.tool, listing.dialect, listing.dialect_signs)};
}

model::Capture listing_capture(const Listing& listing, const std::string& host, std::int64_t at_ms,
                               const std::string& file) {
  model::Capture c;
  c.host = host;
  c.hostname = host;
  c.time_ms = at_ms;
  c.source = source_of(listing);
  c.proc_root = std::filesystem::absolute(file).string();
  c.owners = listing.owners ? model::OwnerScan::complete : model::OwnerScan::skipped;
  c.sockets = listing.sockets;
  c.processes = listing.processes;
  c.diagnostics = listing.diagnostics;
  c.diagnostics.push_back(dialect_diagnostic(listing, file));
  c.skipped_lines = listing.skipped_lines;
  return c;
}

Listing parse_listing(std::string_view text, const std::string& file) {
  for (const auto& [n, line] : Lines(text).lines) {
    const auto w = words(line);
    if (w.empty()) {
      continue;
    }
    if (w[0] == "Active" || w[0] == "Proto") {
      return parse_netstat(text, file);
    }
    if (w[0] == "State" || w[0] == "Netid" || w[0] == "Recv-Q" || listing::ss_row(w)) {
      return parse_ss(text, file);
    }
    throw Error(Exit::bad_input, fmt::format("{}:{}: not a netstat or ss listing (it begins '{}')", file, n,
                                             std::string(line.substr(0, std::min<std::size_t>(line.size(), 40)))));
  }
  throw Error(Exit::bad_input, fmt::format("{}: empty: not a netstat or ss listing", file));
}

}  // namespace sockhist::import
