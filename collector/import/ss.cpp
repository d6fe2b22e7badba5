// iproute2 ss listings (-tanp, -tanpo, -peaonmi, ...).
#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "listing.hpp"
#include "sockhist/error.hpp"
#include "text_lines.hpp"

namespace sockhist::import {

using namespace listing::names;

namespace {

// A socket's kernel address, which sk: carried before the kernel gave sockets cookies: kernel
// addresses sit at the top of the address space, cookies count up from 1.
constexpr std::uint64_t k_kernel_addresses = 0xffff000000000000ULL;

// The owner of a socket from users:(...): ("name",pid=1,fd=3) since iproute2 3.14, ("name",1,3)
// before. Of several (a socket shared across fork), the lowest pid: the one the collector and
// netstat -p name, whatever order ss listed them in.
std::optional<std::pair<std::string_view, std::int32_t>> lowest_owner(std::string_view rest) {
  const auto users = rest.find("users:((");
  if (users == std::string_view::npos) {
    return std::nullopt;
  }
  std::optional<std::pair<std::string_view, std::int32_t>> lowest;
  for (auto at = rest.find("(\"", users); at != std::string_view::npos; at = rest.find("(\"", at + 1)) {
    const auto name_at = at + 2;
    const auto name_end = rest.find("\",", name_at);
    if (name_end == std::string_view::npos) {
      return std::nullopt;
    }
    auto pid_at = name_end + 2;
    if (rest.substr(pid_at).starts_with("pid=")) {
      pid_at += 4;
    }
    const auto pid_end = rest.find_first_of(",)", pid_at);
    const auto pid = number<std::int32_t>(rest.substr(pid_at, pid_end - pid_at));
    if (!pid) {
      return std::nullopt;
    }
    if (!lowest || *pid < lowest->second) {
      lowest = std::pair(rest.substr(name_at, name_end - name_at), *pid);
    }
    const auto close = rest.find(')', pid_end);
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ',') {
      break;  // the last owner
    }
    at = close;
  }
  return lowest;
}

// Which protocol a listing without a Netid column is of (see parse_ss in import.hpp).
// `tcp_info`: an -i line with TCP's own fields (rto:, cwnd:), which no UDP socket has.
model::Proto one_protocol(Listing& l, const std::string& file, std::optional<model::Proto> given, bool tcp_info) {
  const bool tcp_only = tcp_info || std::any_of(l.sockets.begin(), l.sockets.end(), [](const model::Socket& s) {
                          return s.state != SockState::established && s.state != SockState::close;
                        });
  const bool unconn = std::any_of(l.sockets.begin(), l.sockets.end(),
                                  [](const model::Socket& s) { return s.state == SockState::close; });
  if (given) {
    if (*given == model::Proto::udp && tcp_only) {
      throw Error(Exit::bad_input, fmt::format("{}: --proto udp, but the listing has TCP states (LISTEN, TIME-WAIT, "
                                               "...) or TCP's -i fields (rto:, cwnd:): it is ss -t",
                                               file));
    }
    return *given;
  }
  if (tcp_only || l.sockets.empty()) {
    return model::Proto::tcp;
  }
  if (unconn) {
    l.diagnostics.push_back({file, 0,
                             "no Netid column, UNCONN rows and no TCP-only state: read as ss -u (UDP); give "
                             "--proto tcp if it was ss -t"});
    return model::Proto::udp;
  }
  throw Error(Exit::bad_input, fmt::format("{}: no Netid column and only ESTAB rows: ss -t and ss -u print them "
                                           "alike; say which with --proto tcp or --proto udp",
                                           file));
}

// Which columns a listing has. ss leaves Netid out when it lists one socket type (ss -t) and State
// when it lists one state (ss state established).
struct Columns {
  bool netid = false;
  bool state = true;
};

// From the header: "Netid State Recv-Q", "State Recv-Q", "Netid Recv-Q", "Recv-Q".
std::optional<Columns> header_columns(const std::vector<std::string_view>& w, std::string_view line) {
  const std::size_t k = w[0] == "Netid" ? 1 : 0;
  if (k < w.size() && (w[k] == "State" || w[k] == "Recv-Q") && line.find("Send-Q") != std::string_view::npos) {
    return Columns{k == 1, w[k] == "State"};
  }
  return std::nullopt;
}

bool netid_word(std::string_view w) {
  static const std::set<std::string_view> names = {"tcp",   "udp",   "u_str", "u_dgr", "u_seq", "raw",
                                                   "nl",    "p_raw", "p_dgr", "mptcp", "sctp",  "tipc",
                                                   "v_str", "v_dgr", "xdp",   "icmp6", "dccp"};
  return names.contains(w);
}

// From a first row, when ss printed no header (-H): a Netid word, a state, or the Recv-Q number.
std::optional<Columns> row_columns(const std::vector<std::string_view>& w) {
  if (netid_word(w[0])) {
    return Columns{true, w.size() > 1 && state_of(w[1]).has_value()};
  }
  if (state_of(w[0])) {
    return Columns{false, true};
  }
  if (number<std::uint32_t>(w[0]) && w.size() > 1 && number<std::uint32_t>(w[1])) {
    return Columns{false, false};
  }
  return std::nullopt;
}

// Which iproute2 printed the listing, from what changed between versions: the owners' pid= (3.14),
// brackets around IPv6 addresses (4.13), 0.0.0.0 and [::] for any (4.14), -H (4.8). Versions are 100 * major
// + minor; `since` is the first that prints a sign seen, `before` the first that no longer does.
std::pair<std::string, std::string> ss_dialect(std::string_view text, bool owners_with_pid, bool owners_old_form,
                                               bool headerless) {
  int since = 0, before = 0;
  std::vector<std::string> signs;
  const auto sign = [&](bool seen, int since_version, int before_version, const char* what) {
    if (!seen) {
      return;
    }
    since = std::max(since, since_version);
    before = before_version == 0 ? before : before == 0 ? before_version : std::min(before, before_version);
    signs.emplace_back(what);
  };
  sign(owners_with_pid, 314, 0, "owners as pid=");
  sign(headerless, 408, 0, "no header (-H)");
  sign(owners_old_form, 0, 314, "owners as (\"name\",pid,fd)");
  sign(text.find("0.0.0.0:") != std::string_view::npos || text.find("[::]:") != std::string_view::npos, 414, 0,
       "any as 0.0.0.0 or [::]");
  sign(text.find("]:") != std::string_view::npos, 413, 0, "IPv6 in brackets");
  sign(text.find(":::") != std::string_view::npos, 0, 413, "IPv6 any as :::");
  const auto version = [](int v) { return fmt::format("{}.{}", v / 100, v % 100); };
  std::string range;
  if (since != 0 && before != 0 && since >= before) {
    range = "iproute2, version not told (its signs disagree)";
  } else if (since != 0 && before != 0) {
    range = fmt::format("iproute2 {} or later, before {}", version(since), version(before));
  } else if (since != 0) {
    range = fmt::format("iproute2 {} or later", version(since));
  } else if (before != 0) {
    range = fmt::format("iproute2 before {}", version(before));
  } else {
    range = "iproute2, version not told";
  }
  return {range, signs.empty() ? std::string("nothing in it tells") : fmt::format("{}", fmt::join(signs, ", "))};
}

}  // namespace

bool listing::ss_row(const std::vector<std::string_view>& w) {
  return !w.empty() && row_columns(w).has_value();
}

Listing parse_ss(std::string_view text, const std::string& file, const SsColumns& given) {
  Listing l;
  l.tool = "ss";
  bool saw_header = false, netid = false, state_column = true, headerless = false;
  // A listing of one UNIX type (ss -A unix_stream) has no Netid column either: its type is given.
  const bool given_unix = given.netid && given.netid->starts_with("u_");
  const std::optional<model::Proto> proto =
      !given.netid || given_unix ? std::nullopt
                                 : std::optional(*given.netid == "udp" ? model::Proto::udp : model::Proto::tcp);
  // What `*` is in this listing. iproute2 before 4.13 printed IPv4 any as `*` and IPv6 any as
  // `:::port`; 4.13 put IPv6 addresses in brackets and printed `*` for either any; since 4.14,
  // IPv4 any is 0.0.0.0, IPv6-only any [::], and `*` an IPv6 socket that also takes IPv4.
  const bool star_is_dual_stack =
      text.find("0.0.0.0:") != std::string_view::npos || text.find("[::]:") != std::string_view::npos;
  const bool star_is_either =
      !star_is_dual_stack && text.find(":::") == std::string_view::npos && text.find("]:") != std::string_view::npos;
  bool star_seen = false;
  std::size_t kernel_addresses = 0;
  std::size_t unread_owners = 0;
  bool owners_with_pid = false, owners_old_form = false;
  bool tcp_info = false;          // an -i line with TCP's own fields
  model::Socket* last = nullptr;  // a -i line continues the socket before it
  for (const auto& [n, line] : Lines(text).lines) {
    if (!saw_header) {
      const auto w = words(line);
      if (w.empty()) {
        continue;
      }
      const auto columns = header_columns(w, line);
      const auto first_row = columns ? std::nullopt : row_columns(w);
      if (!columns && !first_row) {
        throw Error(Exit::bad_input,
                    fmt::format("{}:{}: not an ss listing (expected the 'State Recv-Q Send-Q' header)", file, n));
      }
      const auto& c = columns ? *columns : *first_row;
      saw_header = true;
      netid = c.netid;
      state_column = c.state;
      if (netid && given.netid) {
        throw Error(Exit::usage, fmt::format("--proto: {} has a Netid column, which says each row's protocol", file));
      }
      if (!state_column && !given.state) {
        throw Error(Exit::bad_input, fmt::format("{}:{}: no State column: ss prints none when it lists one state (ss "
                                                 "state established); say which with --state",
                                                 file, n));
      }
      if (state_column && given.state) {
        throw Error(Exit::usage, fmt::format("--state: {} has a State column, which says each row's state", file));
      }
      if (columns) {
        continue;
      }
      // ss -H: no header; the columns were read from this first row, which is a row like the others.
      headerless = true;
      l.diagnostics.push_back({file, 0, "no header (ss -H): its columns read from its first row"});
    }
    if (line.empty()) {
      continue;
    }
    if (line.front() == '\t' || line.front() == ' ') {
      if (words(line).empty()) {
        continue;
      }
      // ss -i's and -m's second line (tcp_info, skmem) belongs to the row above: nothing the model
      // keeps. After a row that was skipped, it goes with it.
      if (last == nullptr) {
        skip(l, file, n, "continues a row that was skipped, or no row");
      }
      tcp_info =
          tcp_info || line.find(" rto:") != std::string_view::npos || line.find(" cwnd:") != std::string_view::npos;
      continue;
    }
    const auto w = words(line);
    std::size_t i = 0;
    model::Socket s;
    last = nullptr;
    if (netid || given_unix) {
      const auto id = netid ? w[i++] : std::string_view(*given.netid);
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
      s.proto = model::Proto::tcp;  // ss -t without -u/-x prints no Netid column: told after (one_protocol)
      // A UNIX row (path or *, then an inode) in a listing of one type: which type is not printed.
      if (w.size() >= i + (state_column ? 5 : 4)) {
        const auto local = w[i + (state_column ? 3 : 2)];
        const auto inode = w[i + (state_column ? 4 : 3)];
        if (!endpoint(local) && number<std::uint64_t>(inode) &&
            (local == "*" || local.starts_with('/') || local.starts_with('@'))) {
          throw Error(Exit::bad_input,
                      fmt::format("{}:{}: UNIX rows without a Netid column (ss -A unix_stream): their type is not "
                                  "printed; say which with --proto unix_stream, unix_dgram or unix_seqpacket",
                                  file, n));
        }
      }
    }
    if (w.size() < i + (state_column ? 5 : 4)) {
      skip(l, file, n,
           state_column ? "fewer fields than State Recv-Q Send-Q Local Peer"
                        : "fewer fields than Recv-Q Send-Q Local Peer");
      continue;
    }
    const auto state_name = state_column ? w[i++] : std::string_view(*given.state);
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
      auto local = endpoint(w[i]), peer = endpoint(w[i + 1]);
      if (!local || !peer) {
        skip(l, file, n, "an address is not numeric (ss -n)");
        continue;
      }
      const auto star = [&](std::string_view word, listing::Endpoint& end) {
        if (word.starts_with("*:")) {
          star_seen = true;
          if (star_is_dual_stack) {
            end.addr = "::";
            end.family = 6;
          }
        }
      };
      star(w[i], *local);
      star(w[i + 1], *peer);
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
    if (rest.find("users:((") != std::string_view::npos) {
      l.owners = true;
      if (const auto owner = lowest_owner(rest)) {
        add_owner(l, s, owner->second, owner->first);
        (rest.find(",pid=") != std::string_view::npos ? owners_with_pid : owners_old_form) = true;
      } else {
        ++unread_owners;
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
          if (cookie >= k_kernel_addresses) {
            ++kernel_addresses;  // the socket's address in the kernel, not a cookie
          } else {
            s.cookie = cookie;
          }
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
  if (unread_owners > 0) {
    l.diagnostics.push_back(
        {file, 0, fmt::format("{} users:(...) fields do not read: those sockets have no owner", unread_owners)});
  }
  if (kernel_addresses > 0) {
    l.diagnostics.push_back({file, 0,
                             fmt::format("{} sk: values are kernel addresses (ss before socket cookies, kernel 4.1), "
                                         "not cookies: no cookie stored for them",
                                         kernel_addresses)});
  }
  if (star_seen) {
    l.diagnostics.push_back(
        {file, 0,
         star_is_dual_stack ? "* read as an IPv6 socket that also takes IPv4 (this ss prints 0.0.0.0 and [::] for any, "
                              "as iproute2 since 4.14)"
         : star_is_either   ? "* read as IPv4 any, which may be wrong: this ss brackets IPv6 addresses but prints no "
                              "0.0.0.0 or [::], as iproute2 4.13, which printed * for IPv4 and IPv6 any alike"
                            : "* read as IPv4 any (this ss prints IPv6 any as :::, as iproute2 before 4.13)"});
  }
  std::tie(l.dialect, l.dialect_signs) = ss_dialect(text, owners_with_pid, owners_old_form, headerless);
  std::string letters = std::string(l.owners ? "p" : "") + (l.timers ? "o" : "") + (l.inodes ? "e" : "");
  const auto state_filter = state_column ? std::string() : fmt::format(" (one state: {})", *given.state);
  if (netid) {
    l.format = fmt::format("ss -an{} (all families){}", letters, state_filter);
  } else if (given_unix) {
    l.format = fmt::format("ss -an{} -A {}{}", letters,
                           *given.netid == "u_str"   ? "unix_stream"
                           : *given.netid == "u_dgr" ? "unix_dgram"
                                                     : "unix_seqpacket",
                           state_filter);
  } else {
    const auto one = one_protocol(l, file, proto, tcp_info);
    for (auto& s : l.sockets) {
      s.proto = one;
    }
    l.format = fmt::format("ss -{}an{}{}", one == model::Proto::udp ? 'u' : 't', letters, state_filter);
  }
  return l;
}

}  // namespace sockhist::import
