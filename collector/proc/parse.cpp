// Pure parsers of the socket tables: /proc/net/tcp, tcp6, udp, udp6 and unix. Formats and their
// quirks: docs/kernel.md and the kernel's net/ipv4/tcp_ipv4.c, net/ipv4/udp.c, net/unix/af_unix.c.
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "sockhist/proc.hpp"
#include "text.hpp"

namespace sockhist::proc {

std::string address_text(int family, const unsigned char* bytes) {
  if (family == 4) {
    // What inet_ntop prints, without the printf it prints through (a row's costliest step).
    std::array<char, 16> out{};
    char* at = out.data();
    for (int i = 0; i < 4; ++i) {
      if (i > 0) {
        *at++ = '.';
      }
      at = std::to_chars(at, out.data() + out.size(), static_cast<unsigned>(bytes[i])).ptr;
    }
    return std::string(out.data(), at);
  }
  std::array<char, INET6_ADDRSTRLEN> out{};
  if (::inet_ntop(AF_INET6, bytes, out.data(), out.size()) == nullptr) {
    return {};
  }
  return std::string(out.data());
}

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
  return address_text(hex.size() == 8 ? 4 : 6, bytes.data());
}

namespace {

// One line of /proc/net/tcp, tcp6, udp or udp6 into `s`; false with the reason in `why`.
bool inet_row(const Fields& f, Proto proto, int family, std::int64_t user_hz, Socket& s, std::string& why) {
  s.proto = proto;
  s.family = family;
  const std::size_t address_digits = family == 4 ? 8 : 32;
  unsigned slot = 0;
  if (f.at[0].size() < 2 || f.at[0].back() != ':' || !parse_number(f.at[0].substr(0, f.at[0].size() - 1), slot, 10)) {
    why = fmt::format("bad slot number '{}'", f.at[0]);
    return false;
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
    why = fmt::format("bad local address '{}'", f.at[1]);
    return false;
  }
  if (!parse_endpoint(f.at[2], s.remote_addr, s.remote_port)) {
    why = fmt::format("bad remote address '{}'", f.at[2]);
    return false;
  }
  unsigned state_code = 0;
  std::optional<SockState> state;
  if (f.at[3].size() == 2 && parse_number(f.at[3], state_code, 16)) {
    state = model::tcp_state_from_code(state_code);
  }
  if (!state) {
    why = fmt::format("bad state '{}'", f.at[3]);
    return false;
  }
  s.state = *state == SockState::new_syn_recv ? SockState::syn_recv : *state;
  if (!parse_hex_pair(f.at[4], s.tx_queue, s.rx_queue)) {
    why = fmt::format("bad queue field '{}'", f.at[4]);
    return false;
  }
  unsigned timer = 0;
  std::uint64_t ticks = 0;
  if (!parse_hex_pair(f.at[5], timer, ticks) || timer > 5) {
    why = fmt::format("bad timer field '{}'", f.at[5]);
    return false;
  }
  s.timer = static_cast<model::TimerKind>(timer);
  const std::uint64_t ms = ticks * 1000 / static_cast<std::uint64_t>(user_hz);
  s.timer_ms = static_cast<std::uint32_t>(std::min<std::uint64_t>(ms, std::numeric_limits<std::uint32_t>::max()));
  if (!parse_number(f.at[6], s.retransmits, 16)) {
    why = fmt::format("bad retransmit count '{}'", f.at[6]);
    return false;
  }
  if (!parse_number(f.at[7], s.uid, 10) || !parse_number(f.at[8], s.probes, 10) ||
      !parse_number(f.at[9], s.inode, 10)) {
    why = fmt::format("bad uid, probe count or inode '{} {} {}'", f.at[7], f.at[8], f.at[9]);
    return false;
  }
  return true;
}

// One line of /proc/net/unix into `s`; false with the reason in `why`.
bool unix_row(std::string_view line, const Fields& f, Socket& s, std::string& why) {
  s.proto = Proto::unix_domain;
  std::uint32_t refcount = 0;
  std::uint32_t protocol = 0;
  unsigned type = 0;
  unsigned st = 0;
  if (f.at[0].size() < 2 || f.at[0].back() != ':' || !parse_number(f.at[1], refcount, 16) ||
      !parse_number(f.at[2], protocol, 16) || !parse_number(f.at[3], s.unix_flags, 16) ||
      !parse_number(f.at[4], type, 16) || !parse_number(f.at[5], st, 16) || !parse_number(f.at[6], s.inode, 10)) {
    why = "bad hex or decimal field";
    return false;
  }
  if (type < 1 || type > 5 || st > 4) {
    why = fmt::format("unknown type {:04X} or state {:02X}", type, st);
    return false;
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
  return true;
}

}  // namespace

bool KeySet::insert(std::uint64_t key) {
  if (key == 0) {
    return !std::exchange(m_zero, true);
  }
  if ((m_size + 1) * 4 > m_slots.size() * 3) {
    grow();
  }
  if (!place(m_slots, key)) {
    return false;
  }
  ++m_size;
  return true;
}

bool KeySet::place(std::vector<std::uint64_t>& slots, std::uint64_t key) {
  const std::size_t mask = slots.size() - 1;
  // Keys may be consecutive (the inodes of sockets made together): unmixed, they would fill one
  // run of slots that every later probe walks. splitmix64's finalizer scatters them.
  std::uint64_t mixed = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ULL;
  mixed = (mixed ^ (mixed >> 27)) * 0x94d049bb133111ebULL;
  mixed ^= mixed >> 31;
  for (std::size_t slot = mixed & mask;; slot = (slot + 1) & mask) {
    if (slots[slot] == key) {
      return false;
    }
    if (slots[slot] == 0) {
      slots[slot] = key;
      return true;
    }
  }
}

void KeySet::grow() {
  std::vector<std::uint64_t> larger(m_slots.empty() ? 1024 : m_slots.size() * 2, 0);
  for (const std::uint64_t key : m_slots) {
    if (key != 0) {
      place(larger, key);
    }
  }
  m_slots = std::move(larger);
}

std::uint64_t repeat_key(const Socket& s) {
  if (s.inode != 0) {
    return s.inode;  // one socket's, whatever its table; a hash below is as unlikely to be one
  }
  return model::identity_hash(s) ^ (static_cast<std::uint64_t>(s.state) << 56);
}

struct SocketTableParser::Impl {
  // No line of a socket table comes near this (a UNIX path is at most 108 bytes): a longer one is
  // skipped, and never held whole.
  static constexpr std::size_t k_max_line_bytes = 64 * 1024;

  Impl(Proto p, int f, std::int64_t hz) : proto(p), family(f), user_hz(hz > 0 ? hz : 100) {}

  Proto proto;
  int family;
  std::int64_t user_hz;
  LineJoiner lines{k_max_line_bytes};
  bool header_seen = false;
  KeySet seen;
  Parsed<Socket> outcome;  // its rows stay empty: they go where the caller says
  std::string why;

  void refuse_header() {
    outcome.error = proto == Proto::unix_domain
                        ? "not a UNIX socket table (the first line is not the 'Num RefCount ...' header)"
                        : "not a socket table (the first line is not the 'sl local_address ...' header)";
  }

  // The walk every socket table shares: the header line checked, blank lines skipped, truncated
  // ones recorded, the rest parsed by the table's kind.
  void take(std::string_view line, std::size_t number, bool complete, std::vector<Socket>& rows) {
    const bool is_unix = proto == Proto::unix_domain;
    if (!header_seen) {
      header_seen = true;
      const auto h = split(line);
      const bool ok = is_unix ? h.count >= 7 && h.at[0] == "Num" && h.at[1] == "RefCount"
                              : h.count >= 3 && h.at[0] == "sl" && h.at[1] == "local_address";
      if (!ok) {
        refuse_header();
      }
      return;
    }
    if (outcome.error || is_blank(line)) {
      return;
    }
    if (line.size() > k_max_line_bytes) {
      outcome.issues.push_back(
          {number, fmt::format("longer than {} bytes, which no line of a socket table is", k_max_line_bytes)});
      return;
    }
    if (!complete) {
      outcome.issues.push_back({number, "truncated line (no end of line)"});
      return;
    }
    const auto fields = split(line);
    const std::size_t min_fields = is_unix ? 7 : 10;
    if (fields.count < min_fields) {
      outcome.issues.push_back(
          {number, fmt::format("truncated line ({} fields, at least {} expected)", fields.count, min_fields)});
      return;
    }
    Socket s;
    if (!(is_unix ? unix_row(line, fields, s, why) : inet_row(fields, proto, family, user_hz, s, why))) {
      outcome.issues.push_back({number, std::move(why)});
      return;
    }
    // Under churn the kernel's iterator can print a socket twice.
    if (!seen.insert(repeat_key(s))) {
      ++outcome.duplicates;
      return;
    }
    rows.push_back(std::move(s));
  }
};

SocketTableParser::SocketTableParser(Proto proto, int family, std::int64_t user_hz)
    : m_impl(std::make_unique<Impl>(proto, family, user_hz)) {}

SocketTableParser::~SocketTableParser() = default;
SocketTableParser::SocketTableParser(SocketTableParser&&) noexcept = default;
SocketTableParser& SocketTableParser::operator=(SocketTableParser&&) noexcept = default;

void SocketTableParser::feed(std::string_view text, std::vector<Socket>& rows) {
  m_impl->lines.feed(text, [&](std::string_view line, std::size_t number, bool complete) {
    m_impl->take(line, number, complete, rows);
  });
  // A first line longer than any header: refused now rather than at its end, which may be far.
  if (!m_impl->header_seen && !m_impl->outcome.error && m_impl->lines.pending() > Impl::k_max_line_bytes) {
    m_impl->header_seen = true;
    m_impl->refuse_header();
  }
}

void SocketTableParser::finish(std::vector<Socket>& rows) {
  m_impl->lines.finish(
      [&](std::string_view line, std::size_t number, bool complete) { m_impl->take(line, number, complete, rows); });
  if (!m_impl->header_seen && !m_impl->outcome.error) {
    m_impl->outcome.error = "empty file (no header line)";
  }
}

const Parsed<Socket>& SocketTableParser::outcome() const {
  return m_impl->outcome;
}

Parsed<Socket> SocketTableParser::take_outcome() {
  return std::exchange(m_impl->outcome, {});
}

namespace {

// A whole table's text through the streaming parser; `rows` are appended to, in place.
Parsed<Socket> parse_whole(SocketTableParser parser, std::string_view text, std::vector<Socket> rows) {
  rows.reserve(rows.size() + static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')));
  parser.feed(text, rows);
  parser.finish(rows);
  auto result = parser.take_outcome();
  result.rows = std::move(rows);
  return result;
}

}  // namespace

Parsed<Socket> parse_inet(std::string_view text, Proto proto, int family, std::int64_t user_hz,
                          std::vector<Socket> rows) {
  return parse_whole(SocketTableParser(proto, family, user_hz), text, std::move(rows));
}

Parsed<Socket> parse_unix(std::string_view text, std::vector<Socket> rows) {
  return parse_whole(SocketTableParser(Proto::unix_domain, 0, 0), text, std::move(rows));
}

}  // namespace sockhist::proc
