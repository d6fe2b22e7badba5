// net-tools netstat listings (-antp, -neopa, -tunapo, ...): Internet and UNIX sections.
#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "listing.hpp"
#include "sockhist/error.hpp"
#include "text_lines.hpp"

namespace sockhist::import {

using namespace listing::names;

namespace {

// net-tools prints PID/Program name into 20 columns: "pid/name" cut to 19 characters (its buffer is
// 20 with the NUL), then padded. The name may hold spaces (a process title: "sshd: core [priv]"
// prints as "3002/sshd: core [pr"), so the field is read by its width, not as one word. Returns the
// field and the index of the first word after it.
std::pair<std::string_view, std::size_t> program_field(std::string_view line, const std::vector<std::string_view>& w,
                                                       std::size_t i) {
  constexpr std::size_t k_width = 19;
  const auto at = static_cast<std::size_t>(w[i].data() - line.data());
  auto field = line.substr(at, k_width);
  while (!field.empty() && field.back() == ' ') {
    field.remove_suffix(1);
  }
  const auto end = at + field.size();
  std::size_t next = i + 1;
  while (next < w.size() && static_cast<std::size_t>(w[next].data() - line.data()) < end) {
    ++next;
  }
  return {field, next};
}

// Without -W, net-tools fits address:port into 23 columns by cutting the address (its
// addr_do_one: more than 22 characters of address and port, and the address is cut to fit): a cut
// IPv6 address is then 23 characters long with its port, and so, by chance, is an uncut one. With
// -W nothing is cut, and an endpoint may be longer: one longer than 23 shows the listing is wide.
constexpr std::size_t k_narrow_endpoint = 23;

bool wide_listing(std::string_view text) {
  for (const auto& [n, line] : Lines(text).lines) {
    const auto w = words(line);
    if (w.size() >= 5 && (w[0].starts_with("tcp") || w[0].starts_with("udp")) &&
        (w[3].size() > k_narrow_endpoint || w[4].size() > k_narrow_endpoint)) {
      return true;
    }
  }
  return false;
}

// Why an endpoint of a listing that is not wide may be cut: nullopt when it cannot be.
std::optional<std::string> maybe_cut(std::string_view word, const listing::Endpoint& e) {
  if (word.size() != k_narrow_endpoint || e.family != 6) {
    return std::nullopt;
  }
  in6_addr parsed{};
  if (::inet_pton(AF_INET6, e.addr.c_str(), &parsed) != 1) {
    return fmt::format("{} is an IPv6 address cut to 23 columns (netstat without -W)", word);
  }
  return fmt::format("{} fills the 23 columns netstat without -W cuts IPv6 addresses to: it may be cut", word);
}

}  // namespace

Listing parse_netstat(std::string_view text, const std::string& file) {
  Listing l;
  l.tool = "netstat";
  enum class Section { none, inet, unix_domain, other } section = Section::none;
  bool have_user = false, have_inode = false, have_program = false, have_timer = false;
  bool saw_header = false;
  const bool wide = wide_listing(text);
  std::string letters;  // what the columns say about the options used
  for (const auto& [n, line] : Lines(text).lines) {
    if (line.starts_with("Active Internet connections")) {
      section = Section::inet;
      continue;
    }
    if (line.starts_with("Active UNIX domain sockets")) {
      section = Section::unix_domain;
      continue;
    }
    if (line.starts_with("Active ")) {
      section = Section::other;  // Bluetooth and the like: not recorded
      continue;
    }
    if (line.starts_with("Proto ")) {
      saw_header = true;
      if (section == Section::none) {
        // A listing pasted from its column header on: the header tells the section.
        section = line.find(" RefCnt ") != std::string_view::npos ? Section::unix_domain : Section::inet;
      }
      have_user = line.find(" User ") != std::string_view::npos;
      have_inode = line.find(" Inode ") != std::string_view::npos || line.find(" I-Node ") != std::string_view::npos;
      have_program = line.find("PID/Program name") != std::string_view::npos;
      have_timer = line.find(" Timer") != std::string_view::npos;
      l.owners = l.owners || have_program;
      l.timers = l.timers || have_timer;
      l.inodes = l.inodes || have_inode;
      continue;
    }
    const auto w = words(line);
    if (w.empty()) {
      continue;
    }
    if (section == Section::other) {
      ++l.other_families;  // a Bluetooth or other section's socket: not recorded
      continue;
    }
    if (section == Section::none) {
      skip(l, file, n, "before any 'Active ...' section or 'Proto' header");
      continue;
    }
    if (section == Section::unix_domain) {
      // unix  2      [ ACC ]     STREAM     LISTENING     24093    4864/prog  /tmp/x.sock
      if (w.size() < 5 || w[0] != "unix") {
        skip(l, file, n, "not a UNIX socket line");
        continue;
      }
      std::size_t i = 2;
      std::string flags;
      if (w[i] != "[") {
        skip(l, file, n, "no [ flags ] column");
        continue;
      }
      for (++i; i < w.size() && w[i] != "]"; ++i) {
        flags += w[i];
      }
      ++i;
      if (i + 1 >= w.size()) {
        skip(l, file, n, "cut short after the flags");
        continue;
      }
      model::Socket s;
      s.proto = model::Proto::unix_domain;
      const auto type = w[i++];
      s.unix_type = type == "STREAM"      ? model::UnixType::stream
                    : type == "DGRAM"     ? model::UnixType::dgram
                    : type == "SEQPACKET" ? model::UnixType::seqpacket
                    : type == "RAW"       ? model::UnixType::raw
                                          : model::UnixType::none;
      if (s.unix_type == model::UnixType::none) {
        skip(l, file, n, fmt::format("unknown UNIX socket type {}", type));
        continue;
      }
      std::string_view state;
      if (w[i] == "LISTENING" || w[i] == "CONNECTED" || w[i] == "CONNECTING" || w[i] == "DISCONNECTING" ||
          w[i] == "UNKNOWN") {
        state = w[i++];
      }
      s.state = state == "LISTENING"       ? SockState::unix_listening
                : state == "CONNECTED"     ? SockState::unix_connected
                : state == "CONNECTING"    ? SockState::unix_connecting
                : state == "DISCONNECTING" ? SockState::unix_disconnecting
                                           : SockState::unix_unconnected;
      if (flags.find("ACC") != std::string::npos) {
        s.unix_flags = 0x10000;
      }
      const auto inode = i < w.size() ? number<std::uint64_t>(w[i]) : std::nullopt;
      if (!inode) {
        skip(l, file, n, "no inode");
        continue;
      }
      s.inode = *inode;
      ++i;
      if (have_program && i < w.size()) {
        const auto [field, next] = program_field(line, w, i);
        netstat_owner(l, s, field);
        i = next;
      }
      if (i < w.size()) {
        // The path is the rest of the line (it may hold spaces).
        const auto at = line.find(w[i]);
        s.local_addr = std::string(line.substr(at));
      }
      l.sockets.push_back(std::move(s));
      continue;
    }
    // Internet: Proto Recv-Q Send-Q Local Foreign [State] [User Inode] [PID/Program] [Timer]
    if (w.size() < 5) {
      skip(l, file, n, "fewer than 5 fields");
      continue;
    }
    model::Socket s;
    const auto proto = w[0];
    if (proto == "tcp" || proto == "tcp6") {
      s.proto = model::Proto::tcp;
    } else if (proto == "udp" || proto == "udp6" || proto == "udplite" || proto == "udpl6") {
      s.proto = model::Proto::udp;
    } else if (proto.starts_with("raw")) {
      ++l.other_families;
      continue;
    } else {
      skip(l, file, n, fmt::format("unknown protocol {}", proto));
      continue;
    }
    const auto rx = number<std::uint32_t>(w[1]), tx = number<std::uint32_t>(w[2]);
    const auto local = endpoint(w[3]), remote = endpoint(w[4]);
    if (!rx || !tx) {
      skip(l, file, n, "Recv-Q or Send-Q is not a number");
      continue;
    }
    if (!local || !remote) {
      skip(l, file, n, "an address is not numeric (netstat -n) or was cut short (netstat -W)");
      continue;
    }
    if (!wide) {
      auto cut = maybe_cut(w[3], *local);
      if (!cut) {
        cut = maybe_cut(w[4], *remote);
      }
      if (cut) {
        skip(l, file, n, *cut);
        continue;
      }
    }
    s.rx_queue = *rx;
    s.tx_queue = *tx;
    s.local_addr = local->addr;
    s.local_port = local->port;
    s.remote_addr = remote->addr;
    s.remote_port = remote->port;
    s.family = proto.ends_with('6') ? 6 : local->family;
    std::size_t i = 5;
    const auto state = i < w.size() ? state_of(w[i]) : std::nullopt;
    if (state) {
      s.state = *state;
      ++i;
    } else if (s.proto == model::Proto::tcp) {
      skip(l, file, n, fmt::format("unknown TCP state {}", i < w.size() ? w[i] : std::string_view("(none)")));
      continue;
    } else {
      s.state = SockState::close;  // UDP without a state column: unconnected
    }
    if (have_user) {
      if (i >= w.size()) {
        skip(l, file, n, "no User column");
        continue;
      }
      if (const auto uid = number<std::uint32_t>(w[i])) {
        s.uid = *uid;
      }
      ++i;
    }
    if (have_inode) {
      const auto inode = i < w.size() ? number<std::uint64_t>(w[i]) : std::nullopt;
      if (!inode) {
        skip(l, file, n, "no Inode column");
        continue;
      }
      s.inode = *inode;
      ++i;
    }
    if (have_program && i < w.size()) {
      const auto [field, next] = program_field(line, w, i);
      netstat_owner(l, s, field);
      i = next;
    }
    if (have_timer && i < w.size()) {
      // "off (0.00/0/0)", "timewait (52.31/0/0)", "keepalive (6580.48/0/0)"
      s.timer = timer_kind(w[i]);
      if (i + 1 < w.size() && w[i + 1].size() > 2 && w[i + 1].front() == '(' && w[i + 1].back() == ')') {
        const auto inner = w[i + 1].substr(1, w[i + 1].size() - 2);
        const auto a = inner.find('/'), b = inner.rfind('/');
        const auto secs = number<double>(inner.substr(0, a));
        const auto retrans = number<std::uint32_t>(inner.substr(a + 1, b - a - 1));
        const auto probes = number<std::uint32_t>(inner.substr(b + 1));
        if (!secs || !retrans || !probes) {
          skip(l, file, n, fmt::format("a timer that does not read: {}", w[i + 1]));
          continue;
        }
        s.timer_ms = static_cast<std::uint32_t>(*secs * 1000.0 + 0.5);
        s.retransmits = *retrans;
        s.probes = *probes;
        if (s.timer == model::TimerKind::keepalive) {
          s.probes = *retrans;  // netstat prints the keepalive probe count where retransmits stand
          s.retransmits = 0;
        }
      }
    }
    l.sockets.push_back(std::move(s));
  }
  if (!saw_header) {
    throw Error(Exit::bad_input, fmt::format("{}: not a netstat listing (no 'Proto Recv-Q Send-Q' header)", file));
  }
  letters = std::string(l.owners ? "p" : "") + (l.inodes ? "e" : "") + (l.timers ? "o" : "");
  l.format = fmt::format("netstat -an{}", letters);
  // The socket listing of net-tools 1.60 to 2.10 reads alike; only -W shows, by an endpoint longer
  // than 23 columns.
  l.dialect = wide ? "net-tools -W" : "net-tools";
  l.dialect_signs = wide ? "an endpoint longer than 23 columns"
                         : "no endpoint longer than 23 columns, so -W or not is not told; nor is the version";
  return l;
}

}  // namespace sockhist::import
