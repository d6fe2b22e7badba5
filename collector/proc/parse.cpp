// Pure parsers of /proc text formats. Formats and their quirks: docs/kernel.md and the kernel's
// net/ipv4/tcp_ipv4.c, net/ipv4/udp.c, net/unix/af_unix.c, net/ipv4/proc.c.
#include <arpa/inet.h>

#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <unordered_set>

#include <fmt/format.h>

#include "sockhist/proc.hpp"

namespace sockhist::proc {

using model::Counter;
using model::LineIssue;
using model::Parsed;
using model::Proto;
using model::Socket;
using model::SockState;

namespace {

// Calls fn(line, line_number, complete) for each line; `complete` is false for a last line that
// lacks its newline: /proc always ends lines, so such a line comes from a truncated copy.
template <class Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  std::size_t number = 0;
  while (!text.empty()) {
    ++number;
    const auto end = text.find('\n');
    if (end == std::string_view::npos) {
      fn(text, number, false);
      return;
    }
    fn(text.substr(0, end), number, true);
    text.remove_prefix(end + 1);
  }
}

constexpr std::size_t k_max_fields = 32;

struct Fields {
  std::array<std::string_view, k_max_fields> at{};
  std::size_t count = 0;  // may exceed k_max_fields; only the first k_max_fields are kept
};

Fields split(std::string_view line) {
  Fields fields;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) {
      ++pos;
    }
    if (pos >= line.size()) {
      break;
    }
    const std::size_t start = pos;
    while (pos < line.size() && line[pos] != ' ' && line[pos] != '\t') {
      ++pos;
    }
    if (fields.count < k_max_fields) {
      fields.at[fields.count] = line.substr(start, pos - start);
    }
    ++fields.count;
  }
  return fields;
}

template <class T>
bool parse_number(std::string_view text, T& out, int base) {
  if (text.empty()) {
    return false;
  }
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out, base);
  return ec == std::errc{} && ptr == end;
}

// "HEX:HEX" as two unsigned numbers.
template <class A, class B>
bool parse_hex_pair(std::string_view text, A& first, B& second) {
  const auto colon = text.find(':');
  return colon != std::string_view::npos && parse_number(text.substr(0, colon), first, 16) &&
         parse_number(text.substr(colon + 1), second, 16);
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// The shared walk of a /proc socket table: checks the header line, skips blank lines, records
// truncated lines, and hands every other line to row(line, fields, skip).
template <class T, class HeaderOk, class RowFn>
void parse_table(std::string_view text, Parsed<T>& result, std::size_t min_fields, const char* wrong_header,
                 HeaderOk&& header_ok, RowFn&& row) {
  bool header_seen = false;
  for_each_line(text, [&](std::string_view line, std::size_t number, bool complete) {
    if (!header_seen) {
      header_seen = true;
      if (!header_ok(split(line))) {
        result.error = wrong_header;
      }
      return;
    }
    if (result.error || is_blank(line)) {
      return;
    }
    const auto skip = [&](std::string reason) { result.issues.push_back({number, std::move(reason)}); };
    if (!complete) {
      skip("truncated line (no end of line)");
      return;
    }
    const auto fields = split(line);
    if (fields.count < min_fields) {
      skip(fmt::format("truncated line ({} fields, at least {} expected)", fields.count, min_fields));
      return;
    }
    row(line, fields, skip);
  });
  if (!header_seen && !result.error) {
    result.error = "empty file (no header line)";
  }
}

}  // namespace

std::optional<std::string> decode_address(std::string_view hex) {
  if (hex.size() != 8 && hex.size() != 32) {
    return std::nullopt;
  }
  std::array<unsigned char, 16> bytes{};
  for (std::size_t word = 0; word < hex.size() / 8; ++word) {
    std::uint32_t value = 0;
    if (!parse_number(hex.substr(word * 8, 8), value, 16)) {
      return std::nullopt;
    }
    // The kernel prints each 32-bit word of the network-order address as a host-order integer,
    // so copying the integer's bytes back restores the address on the machine that printed it.
    std::memcpy(bytes.data() + word * 4, &value, 4);
  }
  std::array<char, INET6_ADDRSTRLEN> out{};
  const int af = hex.size() == 8 ? AF_INET : AF_INET6;
  if (::inet_ntop(af, bytes.data(), out.data(), out.size()) == nullptr) {
    return std::nullopt;
  }
  return std::string(out.data());
}

Parsed<Socket> parse_inet(std::string_view text, Proto proto, int family, std::int64_t user_hz) {
  Parsed<Socket> result;
  if (user_hz <= 0) {
    user_hz = 100;
  }
  const std::size_t address_digits = family == 4 ? 8 : 32;
  std::unordered_set<std::uint64_t> seen;
  const auto header_ok = [](const Fields& h) { return h.count >= 3 && h.at[0] == "sl" && h.at[1] == "local_address"; };
  parse_table(text, result, 10, "not a socket table (the first line is not the 'sl local_address ...' header)",
              header_ok, [&](std::string_view, const Fields& f, const auto& skip) {
                Socket s;
                s.proto = proto;
                s.family = family;
                unsigned slot = 0;
                if (f.at[0].size() < 2 || f.at[0].back() != ':' ||
                    !parse_number(f.at[0].substr(0, f.at[0].size() - 1), slot, 10)) {
                  skip(fmt::format("bad slot number '{}'", f.at[0]));
                  return;
                }
                const auto parse_endpoint = [&](std::string_view field, std::string& addr, std::uint16_t& port) {
                  const auto colon = field.find(':');
                  if (colon != address_digits || field.size() != colon + 5) {
                    return false;
                  }
                  auto decoded = decode_address(field.substr(0, colon));
                  if (!decoded || !parse_number(field.substr(colon + 1), port, 16)) {
                    return false;
                  }
                  addr = std::move(*decoded);
                  return true;
                };
                if (!parse_endpoint(f.at[1], s.local_addr, s.local_port)) {
                  skip(fmt::format("bad local address '{}'", f.at[1]));
                  return;
                }
                if (!parse_endpoint(f.at[2], s.remote_addr, s.remote_port)) {
                  skip(fmt::format("bad remote address '{}'", f.at[2]));
                  return;
                }
                unsigned state_code = 0;
                std::optional<SockState> state;
                if (f.at[3].size() == 2 && parse_number(f.at[3], state_code, 16)) {
                  state = model::tcp_state_from_code(state_code);
                }
                if (!state) {
                  skip(fmt::format("bad state '{}'", f.at[3]));
                  return;
                }
                s.state = *state == SockState::new_syn_recv ? SockState::syn_recv : *state;
                if (!parse_hex_pair(f.at[4], s.tx_queue, s.rx_queue)) {
                  skip(fmt::format("bad queue field '{}'", f.at[4]));
                  return;
                }
                unsigned timer = 0;
                std::uint64_t ticks = 0;
                if (!parse_hex_pair(f.at[5], timer, ticks) || timer > 5) {
                  skip(fmt::format("bad timer field '{}'", f.at[5]));
                  return;
                }
                s.timer = static_cast<model::TimerKind>(timer);
                const std::uint64_t ms = ticks * 1000 / static_cast<std::uint64_t>(user_hz);
                s.timer_ms =
                    static_cast<std::uint32_t>(std::min<std::uint64_t>(ms, std::numeric_limits<std::uint32_t>::max()));
                if (!parse_number(f.at[6], s.retransmits, 16)) {
                  skip(fmt::format("bad retransmit count '{}'", f.at[6]));
                  return;
                }
                if (!parse_number(f.at[7], s.uid, 10) || !parse_number(f.at[8], s.probes, 10) ||
                    !parse_number(f.at[9], s.inode, 10)) {
                  skip(fmt::format("bad uid, probe count or inode '{} {} {}'", f.at[7], f.at[8], f.at[9]));
                  return;
                }
                // Under churn the kernel's iterator can print a socket twice. Full sockets are unique by
                // inode; TIME_WAIT and request sockets (inode 0) by their endpoints.
                const std::uint64_t key =
                    model::identity_hash(s) ^ (s.inode == 0 ? static_cast<std::uint64_t>(s.state) << 56 : 0);
                if (!seen.insert(key).second) {
                  ++result.duplicates;
                  return;
                }
                result.rows.push_back(std::move(s));
              });
  return result;
}

Parsed<Socket> parse_unix(std::string_view text) {
  Parsed<Socket> result;
  std::unordered_set<std::uint64_t> seen;
  const auto header_ok = [](const Fields& h) { return h.count >= 7 && h.at[0] == "Num" && h.at[1] == "RefCount"; };
  parse_table(text, result, 7, "not a UNIX socket table (the first line is not the 'Num RefCount ...' header)",
              header_ok, [&](std::string_view line, const Fields& f, const auto& skip) {
                Socket s;
                s.proto = Proto::unix_domain;
                std::uint32_t refcount = 0;
                std::uint32_t protocol = 0;
                unsigned type = 0;
                unsigned st = 0;
                if (f.at[0].size() < 2 || f.at[0].back() != ':' || !parse_number(f.at[1], refcount, 16) ||
                    !parse_number(f.at[2], protocol, 16) || !parse_number(f.at[3], s.unix_flags, 16) ||
                    !parse_number(f.at[4], type, 16) || !parse_number(f.at[5], st, 16) ||
                    !parse_number(f.at[6], s.inode, 10)) {
                  skip("bad hex or decimal field");
                  return;
                }
                if (type < 1 || type > 5 || st > 4) {
                  skip(fmt::format("unknown type {:04X} or state {:02X}", type, st));
                  return;
                }
                s.unix_type = static_cast<model::UnixType>(type);
                constexpr std::uint32_t k_accept_con = 1U << 16;  // __SO_ACCEPTCON: a listening socket
                if ((s.unix_flags & k_accept_con) != 0) {
                  s.state = SockState::unix_listening;
                } else {
                  s.state = static_cast<SockState>(static_cast<unsigned>(SockState::unix_free) + st);
                }
                if (f.count > 7) {
                  // The path is the rest of the line: it may contain spaces.
                  const auto offset = static_cast<std::size_t>(f.at[6].data() + f.at[6].size() - line.data());
                  s.local_addr = std::string(line.substr(offset + 1));
                }
                if (!seen.insert(s.inode).second) {
                  ++result.duplicates;
                  return;
                }
                result.rows.push_back(std::move(s));
              });
  return result;
}

namespace {

bool parse_value(std::string_view text, std::int64_t& value) {
  return parse_number(text, value, 10);
}

// Adds a counter unless (section, name) is already there; returns false for a duplicate.
bool add_counter(Parsed<Counter>& result, std::unordered_set<std::string>& seen, std::string_view section,
                 std::string_view name, std::int64_t value, bool gauge) {
  if (!seen.insert(fmt::format("{}\n{}", section, name)).second) {
    ++result.duplicates;
    return false;
  }
  result.rows.push_back({std::string(section), std::string(name), value, gauge});
  return true;
}

}  // namespace

Parsed<Counter> parse_counter_pairs(std::string_view text) {
  Parsed<Counter> result;
  std::unordered_set<std::string> seen;
  struct Line {
    std::string_view text;
    std::size_t number;
    bool complete;
  };
  std::vector<Line> lines;
  for_each_line(text, [&](std::string_view line, std::size_t number, bool complete) {
    if (!is_blank(line)) {
      lines.push_back({line, number, complete});
    }
  });
  if (lines.empty()) {
    result.error = "empty file";
    return result;
  }
  const auto prefix_of = [](std::string_view line) -> std::string_view {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || line.substr(0, colon).find(' ') != std::string_view::npos) {
      return {};
    }
    return line.substr(0, colon);
  };
  if (prefix_of(lines.front().text).empty()) {
    result.error = "not a counter file (the first line is not 'Section: name ...')";
    return result;
  }
  std::size_t i = 0;
  while (i < lines.size()) {
    const Line& header = lines[i];
    const std::string_view section = prefix_of(header.text);
    if (section.empty()) {
      result.issues.push_back({header.number, "line without a 'Section:' prefix"});
      ++i;
      continue;
    }
    if (i + 1 >= lines.size() || prefix_of(lines[i + 1].text) != section) {
      result.issues.push_back({header.number, fmt::format("'{}:' names without a values line", section)});
      ++i;
      continue;
    }
    const Line& values = lines[i + 1];
    i += 2;
    if (!header.complete || !values.complete) {
      result.issues.push_back({values.number, "truncated line (no end of line)"});
      continue;
    }
    const auto names = split(header.text.substr(section.size() + 1));
    const auto numbers = split(values.text.substr(section.size() + 1));
    if (names.count != numbers.count) {
      result.issues.push_back(
          {values.number, fmt::format("'{}:' has {} names but {} values", section, names.count, numbers.count)});
      continue;
    }
    // The TcpExt line has far more names than split() keeps, so walk both lines in step.
    std::string_view name_rest = header.text.substr(section.size() + 1);
    std::string_view value_rest = values.text.substr(section.size() + 1);
    std::vector<std::pair<std::string_view, std::int64_t>> pair_fields;
    bool bad = false;
    auto next_token = [](std::string_view& rest) {
      const auto start = rest.find_first_not_of(" \t");
      if (start == std::string_view::npos) {
        rest = {};
        return std::string_view{};
      }
      auto end = rest.find_first_of(" \t", start);
      if (end == std::string_view::npos) {
        end = rest.size();
      }
      const auto token = rest.substr(start, end - start);
      rest.remove_prefix(end);
      return token;
    };
    for (std::size_t k = 0; k < names.count; ++k) {
      const auto name = next_token(name_rest);
      const auto value_text = next_token(value_rest);
      std::int64_t value = 0;
      if (!parse_value(value_text, value)) {
        result.issues.push_back({values.number, fmt::format("bad value '{}' for {}.{}", value_text, section, name)});
        bad = true;
        break;
      }
      pair_fields.emplace_back(name, value);
    }
    if (bad) {
      continue;
    }
    for (const auto& [name, value] : pair_fields) {
      add_counter(result, seen, section, name, value, model::is_gauge(section, name));
    }
  }
  return result;
}

Parsed<Counter> parse_snmp6(std::string_view text) {
  Parsed<Counter> result;
  std::unordered_set<std::string> seen;
  bool any = false;
  for_each_line(text, [&](std::string_view line, std::size_t number, bool complete) {
    if (is_blank(line)) {
      return;
    }
    any = true;
    if (!complete) {
      result.issues.push_back({number, "truncated line (no end of line)"});
      return;
    }
    const auto f = split(line);
    std::int64_t value = 0;
    const auto six = f.count == 2 ? f.at[0].find('6') : std::string_view::npos;
    if (f.count != 2 || six == std::string_view::npos || six + 1 >= f.at[0].size() || !parse_value(f.at[1], value)) {
      result.issues.push_back({number, "expected 'Ip6Name value'"});
      return;
    }
    // Ip6InReceives, Icmp6InMsgs, Udp6InErrors, UdpLite6...: the section ends at the first '6'.
    add_counter(result, seen, f.at[0].substr(0, six + 1), f.at[0].substr(six + 1), value, false);
  });
  if (!any) {
    result.error = "empty file";
  } else if (result.rows.empty() && !result.issues.empty()) {
    result.error = "not an snmp6 file (no 'Ip6Name value' line)";
  }
  return result;
}

Parsed<Counter> parse_sockstat(std::string_view text, std::string_view section) {
  Parsed<Counter> result;
  std::unordered_set<std::string> seen;
  bool any = false;
  for_each_line(text, [&](std::string_view line, std::size_t number, bool complete) {
    if (is_blank(line)) {
      return;
    }
    any = true;
    if (!complete) {
      result.issues.push_back({number, "truncated line (no end of line)"});
      return;
    }
    const auto f = split(line);
    if (f.count < 3 || f.count % 2 == 0 || f.count > k_max_fields || f.at[0].size() < 2 || f.at[0].back() != ':') {
      result.issues.push_back({number, "expected 'KIND: name value ...'"});
      return;
    }
    const auto kind = f.at[0].substr(0, f.at[0].size() - 1);
    std::vector<std::pair<std::string, std::int64_t>> fields;
    for (std::size_t k = 1; k + 1 < f.count; k += 2) {
      std::int64_t value = 0;
      if (!parse_value(f.at[k + 1], value)) {
        result.issues.push_back({number, fmt::format("bad value '{}' for {} {}", f.at[k + 1], kind, f.at[k])});
        return;
      }
      fields.emplace_back(fmt::format("{}_{}", kind, f.at[k]), value);
    }
    for (const auto& [name, value] : fields) {
      add_counter(result, seen, section, name, value, true);
    }
  });
  if (!any) {
    result.error = "empty file";
  }
  return result;
}

std::optional<std::uint64_t> socket_inode_of_link(std::string_view target) {
  constexpr std::string_view k_prefix = "socket:[";
  if (!target.starts_with(k_prefix) || !target.ends_with(']')) {
    return std::nullopt;
  }
  std::uint64_t inode = 0;
  if (!parse_number(target.substr(k_prefix.size(), target.size() - k_prefix.size() - 1), inode, 10)) {
    return std::nullopt;
  }
  return inode;
}

std::optional<StatFields> parse_pid_stat(std::string_view text) {
  // "pid (comm) state ppid ...": comm may itself contain ')' and spaces, so take the last ')'.
  const auto open = text.find('(');
  const auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  StatFields out;
  out.comm = std::string(text.substr(open + 1, close - open - 1));
  std::string_view rest = text.substr(close + 1);
  // Field 3 (state) is the first after ')'; starttime is field 22.
  std::size_t field = 2;
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) {
      break;
    }
    auto end = rest.find(' ', start);
    if (end == std::string_view::npos) {
      end = rest.size();
    }
    ++field;
    if (field == 22) {
      auto token = rest.substr(start, end - start);
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
        token.remove_suffix(1);
      }
      if (!parse_number(token, out.start_ticks, 10)) {
        return std::nullopt;
      }
      return out;
    }
    rest.remove_prefix(end);
  }
  return std::nullopt;
}

std::optional<std::uint32_t> parse_status_euid(std::string_view text) {
  std::optional<std::uint32_t> euid;
  for_each_line(text, [&](std::string_view line, std::size_t, bool) {
    if (!line.starts_with("Uid:")) {
      return;
    }
    const auto f = split(line);
    std::uint32_t value = 0;
    if (f.count >= 3 && parse_number(f.at[2], value, 10)) {
      euid = value;
    }
  });
  return euid;
}

std::string format_cmdline(std::string_view raw) {
  std::string out(raw);
  for (char& c : out) {
    if (c == '\0' || c == '\n') {
      c = ' ';
    }
  }
  while (!out.empty() && out.back() == ' ') {
    out.pop_back();
  }
  return out;
}

}  // namespace sockhist::proc
