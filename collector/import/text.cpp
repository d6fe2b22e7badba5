#include "sockhist/import.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "text_lines.hpp"

namespace sockhist::import {

namespace {

using model::SockState;
using text::Lines;
using text::number;
using text::words;

// "127.0.0.1:80", "::1:18443", ":::*", "[::1]:443", "*:*", "127.0.0.53%lo:53".
struct Endpoint {
  std::string addr;
  std::uint16_t port = 0;
  int family = 4;
};
std::optional<Endpoint> endpoint(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view addr = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') {
    addr = addr.substr(1, addr.size() - 2);
  }
  if (const auto pct = addr.find('%'); pct != std::string_view::npos) {
    addr = addr.substr(0, pct);  // an interface scope: 127.0.0.53%lo
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

}  // namespace

Listing parse_netstat(std::string_view text, const std::string& file) {
  Listing l;
  l.tool = "netstat";
  enum class Section { none, inet, unix_domain, other } section = Section::none;
  bool have_user = false, have_inode = false, have_program = false, have_timer = false;
  bool saw_header = false;
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
    if (w.empty() || section == Section::other || section == Section::none) {
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
        netstat_owner(l, s, w[i++]);
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
      netstat_owner(l, s, w[i++]);
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
  return l;
}

Listing parse_ss(std::string_view text, const std::string& file) {
  Listing l;
  l.tool = "ss";
  bool saw_header = false, netid = false;
  model::Socket* last = nullptr;  // a -i line continues the socket before it
  for (const auto& [n, line] : Lines(text).lines) {
    if (!saw_header) {
      const auto w = words(line);
      if (w.empty()) {
        continue;
      }
      if ((w[0] == "State" || (w[0] == "Netid" && w.size() > 1 && w[1] == "State")) &&
          line.find("Recv-Q") != std::string_view::npos) {
        saw_header = true;
        netid = w[0] == "Netid";
        continue;
      }
      throw Error(Exit::bad_input,
                  fmt::format("{}:{}: not an ss listing (expected the 'State Recv-Q Send-Q' header)", file, n));
    }
    if (line.empty()) {
      continue;
    }
    if (line.front() == '\t' || line.front() == ' ') {
      if (last == nullptr && words(line).empty()) {
        continue;
      }
      // ss -i's second line (tcp_info, skmem): nothing the model keeps.
      continue;
    }
    const auto w = words(line);
    std::size_t i = 0;
    model::Socket s;
    last = nullptr;
    if (netid) {
      const auto id = w[i++];
      if (id == "tcp") {
        s.proto = model::Proto::tcp;
      } else if (id == "udp") {
        s.proto = model::Proto::udp;
      } else if (id == "u_str" || id == "u_dgr" || id == "u_seq") {
        s.proto = model::Proto::unix_domain;
        s.unix_type = id == "u_str"   ? model::UnixType::stream
                      : id == "u_dgr" ? model::UnixType::dgram
                                      : model::UnixType::seqpacket;
      } else {
        ++l.other_families;  // nl, raw, p_raw, p_dgr, mptcp, sctp, ...: not recorded
        continue;
      }
    } else {
      s.proto = model::Proto::tcp;  // ss -t without -u/-x prints no Netid column
    }
    if (w.size() < i + 5) {
      skip(l, file, n, "fewer fields than State Recv-Q Send-Q Local Peer");
      continue;
    }
    const auto state_name = w[i++];
    const auto rx = number<std::uint32_t>(w[i]), tx = number<std::uint32_t>(w[i + 1]);
    i += 2;
    if (!rx || !tx) {
      skip(l, file, n, "Recv-Q or Send-Q is not a number");
      continue;
    }
    if (s.proto == model::Proto::unix_domain) {
      // u_str LISTEN 0 128 /tmp/x.sock 4407341 * 0 users:(...)
      s.state = state_name == "LISTEN"  ? SockState::unix_listening
                : state_name == "ESTAB" ? SockState::unix_connected
                                        : SockState::unix_unconnected;
      if (state_name == "LISTEN") {
        s.unix_flags = 0x10000;
        s.backlog = *tx;
      }
      s.rx_queue = *rx;
      s.tx_queue = state_name == "LISTEN" ? 0 : *tx;
      const auto path = w[i++];
      s.local_addr = path == "*" ? std::string() : std::string(path);
      const auto inode = number<std::uint64_t>(w[i++]);
      if (!inode || i + 1 >= w.size() + 1) {
        skip(l, file, n, "no inode after the UNIX path");
        continue;
      }
      s.inode = *inode;
      i += 2;  // the peer's path and inode
      if (i <= w.size()) {
        if (const auto peer = number<std::uint64_t>(w[i - 1]); peer && *peer != 0) {
          s.peer_inode = *peer;
        }
      }
    } else {
      const auto state = state_of(state_name);
      if (!state) {
        skip(l, file, n, fmt::format("unknown state {}", state_name));
        continue;
      }
      s.state = *state;
      const auto local = endpoint(w[i]), peer = endpoint(w[i + 1]);
      if (!local || !peer) {
        skip(l, file, n, "an address is not numeric (ss -n)");
        continue;
      }
      i += 2;
      s.local_addr = local->addr;
      s.local_port = local->port;
      s.remote_addr = peer->addr;
      s.remote_port = peer->port;
      s.family = local->family == 6 || peer->family == 6 ? 6 : 4;
      s.rx_queue = *rx;
      if (s.state == SockState::listen) {
        s.backlog = *tx;  // ss prints a listener's backlog limit as Send-Q
      } else {
        s.tx_queue = *tx;
      }
    }
    // The rest: users:((...)), timer:(...), uid:N, ino:N, sk:..., cookie:..., skmem:(...), ...
    const auto rest_at = i < w.size() ? static_cast<std::size_t>(w[i].data() - line.data()) : line.size();
    const std::string_view rest = line.substr(rest_at);
    if (const auto users = rest.find("users:(("); users != std::string_view::npos) {
      l.owners = true;
      // users:(("name",pid=1,fd=3),("name",pid=2,fd=4)): the first owner.
      const auto q1 = rest.find('"', users), q2 = rest.find("\",pid=", users);
      if (q1 != std::string_view::npos && q2 != std::string_view::npos) {
        const auto pid_end = rest.find_first_of(",)", q2 + 6);
        if (const auto pid = number<std::int32_t>(rest.substr(q2 + 6, pid_end - q2 - 6))) {
          add_owner(l, s, *pid, rest.substr(q1 + 1, q2 - q1 - 1));
        }
      }
    }
    bool bad = false;
    for (const auto word : words(rest)) {
      if (word.starts_with("timer:(") && word.ends_with(")")) {
        l.timers = true;
        const auto inner = word.substr(7, word.size() - 8);
        const auto a = inner.find(','), b = inner.rfind(',');
        if (a == std::string_view::npos || a == b) {
          bad = true;
          break;
        }
        s.timer = timer_kind(inner.substr(0, a));
        const auto ms = ss_duration_ms(inner.substr(a + 1, b - a - 1));
        const auto count = number<std::uint32_t>(inner.substr(b + 1));
        if (!ms || !count) {
          bad = true;
          break;
        }
        s.timer_ms = *ms;
        (s.timer == model::TimerKind::keepalive || s.timer == model::TimerKind::probe ? s.probes : s.retransmits) =
            *count;
      } else if (word.starts_with("ino:") && s.proto != model::Proto::unix_domain) {
        // (for a UNIX socket, ino: is the inode of its file on disk, not of the socket)
        l.inodes = true;
        if (const auto inode = number<std::uint64_t>(word.substr(4))) {
          s.inode = *inode;
        }
      } else if (word.starts_with("uid:")) {
        if (const auto uid = number<std::uint32_t>(word.substr(4))) {
          s.uid = *uid;
        }
      } else if (word.starts_with("cookie:")) {
        // hex (ss prints it as sk:HEX on older versions, cookie:HEX on some)
        std::uint64_t cookie = 0;
        const auto hex = word.substr(7);
        if (std::from_chars(hex.data(), hex.data() + hex.size(), cookie, 16).ec == std::errc()) {
          s.cookie = cookie;
        }
      } else if (word.starts_with("sk:")) {
        std::uint64_t cookie = 0;
        const auto hex = word.substr(3);
        if (std::from_chars(hex.data(), hex.data() + hex.size(), cookie, 16).ec == std::errc()) {
          s.cookie = cookie;
        }
      }
    }
    if (bad) {
      skip(l, file, n, "a timer that does not read");
      continue;
    }
    l.sockets.push_back(std::move(s));
    last = &l.sockets.back();
  }
  if (!saw_header) {
    throw Error(Exit::bad_input, fmt::format("{}: empty: not an ss listing", file));
  }
  std::string letters = std::string(l.owners ? "p" : "") + (l.timers ? "o" : "") + (l.inodes ? "e" : "");
  l.format = netid ? fmt::format("ss -an{} (all families)", letters) : fmt::format("ss -tan{}", letters);
  return l;
}

model::Capture listing_capture(const Listing& listing, const std::string& host, std::int64_t at_ms,
                               const std::string& file) {
  model::Capture c;
  c.host = host;
  c.hostname = host;
  c.time_ms = at_ms;
  c.source = listing.tool;
  c.proc_root = std::filesystem::absolute(file).string();
  c.owners = listing.owners ? model::OwnerScan::complete : model::OwnerScan::skipped;
  c.sockets = listing.sockets;
  c.processes = listing.processes;
  c.diagnostics = listing.diagnostics;
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
    if (w[0] == "State" || w[0] == "Netid") {
      return parse_ss(text, file);
    }
    throw Error(Exit::bad_input, fmt::format("{}:{}: not a netstat or ss listing (it begins '{}')", file, n,
                                             std::string(line.substr(0, std::min<std::size_t>(line.size(), 40)))));
  }
  throw Error(Exit::bad_input, fmt::format("{}: empty: not a netstat or ss listing", file));
}

}  // namespace sockhist::import
