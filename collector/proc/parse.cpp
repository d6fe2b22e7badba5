// Pure parsers of the socket tables: /proc/net/tcp, tcp6, udp, udp6 and unix. Formats and their
// quirks: docs/kernel.md and the kernel's net/ipv4/tcp_ipv4.c, net/ipv4/udp.c, net/unix/af_unix.c.
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <unordered_set>

#include <fmt/format.h>

#include "sockhist/proc.hpp"
#include "text.hpp"

namespace sockhist::proc {

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

namespace {

// Room for a row per line, so that a table of 100,000 sockets is not grown by doubling (each
// doubling copies every row into fresh pages, which cost more here than parsing them).
void reserve_rows(std::string_view text, Parsed<Socket>& result, std::unordered_set<std::uint64_t>& seen) {
  const auto lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
  result.rows.reserve(result.rows.size() + lines);
  seen.reserve(lines);
}

}  // namespace

// One function, not several: the columns are taken in order off one split line, and the three kinds
// of row (full socket, TIME_WAIT, request) share the fields read before they part.
Parsed<Socket> parse_inet(std::string_view text, Proto proto, int family, std::int64_t user_hz,
                          std::vector<Socket> rows) {
  Parsed<Socket> result;
  result.rows = std::move(rows);
  if (user_hz <= 0) {
    user_hz = 100;
  }
  const std::size_t address_digits = family == 4 ? 8 : 32;
  std::unordered_set<std::uint64_t> seen;
  reserve_rows(text, result, seen);
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

Parsed<Socket> parse_unix(std::string_view text, std::vector<Socket> rows) {
  Parsed<Socket> result;
  result.rows = std::move(rows);
  std::unordered_set<std::uint64_t> seen;
  reserve_rows(text, result, seen);
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

}  // namespace sockhist::proc
