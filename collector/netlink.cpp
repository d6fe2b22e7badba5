// sock_diag dumps with libmnl. Message formats: include/uapi/linux/inet_diag.h, unix_diag.h; the
// kernel fills them in net/ipv4/inet_diag.c and net/unix/diag.c.
#include "sockhist/netlink.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "sockhist/proc.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::netlink {

using model::Proto;
using model::Socket;
using model::SockState;

namespace {

// TCP states 1..12 (everything /proc prints; not BOUND_INACTIVE, which /proc never shows).
constexpr std::uint32_t k_all_inet_states = 0x1FFE;

// A dump's replies come in buffers of at most 32 KiB (the kernel caps its dump skbs there).
constexpr std::size_t k_receive_buffer = 32768;

std::uint64_t cookie_of(const std::uint32_t (&cookie)[2]) {
  return static_cast<std::uint64_t>(cookie[0]) | (static_cast<std::uint64_t>(cookie[1]) << 32);
}

// The payload of a validated message, or nullptr if it is shorter than its header says or than `need`.
const nlmsghdr* checked(std::span<const unsigned char> message, std::size_t need) {
  if (message.size() < sizeof(nlmsghdr)) {
    return nullptr;
  }
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(message.data());
  if (nlh->nlmsg_len > message.size() || nlh->nlmsg_len < NLMSG_LENGTH(need)) {
    return nullptr;
  }
  return nlh;
}

// A message's attributes after its fixed header, by type (types above Max are ignored); nullopt
// when they do not parse.
template <int Max>
std::optional<std::array<const nlattr*, Max + 1>> attributes_of(const nlmsghdr* nlh, std::size_t header) {
  std::array<const nlattr*, Max + 1> by_type{};
  const auto collect = [](const nlattr* attr, void* data) -> int {
    const auto type = mnl_attr_get_type(attr);
    if (type <= Max) {
      (*static_cast<std::array<const nlattr*, Max + 1>*>(data))[type] = attr;
    }
    return MNL_CB_OK;
  };
  if (mnl_attr_parse(nlh, static_cast<unsigned>(header), collect, &by_type) < 0) {
    return std::nullopt;
  }
  return by_type;
}

}  // namespace

std::optional<Socket> parse_inet_diag(std::span<const unsigned char> message, Proto proto) {
  const nlmsghdr* nlh = checked(message, sizeof(inet_diag_msg));
  if (nlh == nullptr) {
    return std::nullopt;
  }
  const auto* r = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(nlh));
  if (r->idiag_family != AF_INET && r->idiag_family != AF_INET6) {
    return std::nullopt;
  }
  const auto state = model::tcp_state_from_code(r->idiag_state);
  if (!state || r->idiag_timer > 5) {
    return std::nullopt;
  }
  Socket s;
  s.proto = proto;
  s.family = r->idiag_family == AF_INET ? 4 : 6;
  s.state = *state == SockState::new_syn_recv ? SockState::syn_recv : *state;
  s.local_addr = proc::address_text(s.family, reinterpret_cast<const unsigned char*>(r->id.idiag_src));
  s.remote_addr = proc::address_text(s.family, reinterpret_cast<const unsigned char*>(r->id.idiag_dst));
  s.local_port = ntohs(r->id.idiag_sport);
  s.remote_port = ntohs(r->id.idiag_dport);
  s.timer = static_cast<model::TimerKind>(r->idiag_timer);
  s.timer_ms = r->idiag_expires;
  if (s.timer == model::TimerKind::keepalive || s.timer == model::TimerKind::probe) {
    s.probes = r->idiag_retrans;
  } else {
    s.retransmits = r->idiag_retrans;
  }
  s.uid = r->idiag_uid;
  s.inode = r->idiag_inode;
  s.cookie = cookie_of(r->id.idiag_cookie);
  if (proto == Proto::tcp && s.state == SockState::listen) {
    // A listener reports its accept queue and backlog limit where others report their queues.
    s.rx_queue = r->idiag_rqueue;
    s.backlog = r->idiag_wqueue;
  } else {
    s.rx_queue = r->idiag_rqueue;
    s.tx_queue = r->idiag_wqueue;
  }
  return s;
}

std::optional<Socket> parse_unix_diag(std::span<const unsigned char> message) {
  const nlmsghdr* nlh = checked(message, sizeof(unix_diag_msg));
  if (nlh == nullptr) {
    return std::nullopt;
  }
  const auto* r = static_cast<const unix_diag_msg*>(mnl_nlmsg_get_payload(nlh));
  if (r->udiag_family != AF_UNIX || r->udiag_type < 1 || r->udiag_type > 5) {
    return std::nullopt;
  }
  Socket s;
  s.proto = Proto::unix_domain;
  s.unix_type = static_cast<model::UnixType>(r->udiag_type);
  s.inode = r->udiag_ino;
  s.cookie = cookie_of(r->udiag_cookie);
  // The socket-level states /proc prints, from the kernel's sk_state (TCP state codes).
  switch (model::tcp_state_from_code(r->udiag_state).value_or(SockState::close)) {
    case SockState::listen:
      s.state = SockState::unix_listening;
      break;
    case SockState::established:
      s.state = SockState::unix_connected;
      break;
    case SockState::syn_sent:
      s.state = SockState::unix_connecting;
      break;
    default:
      s.state = SockState::unix_unconnected;
      break;
  }
  const auto attributes = attributes_of<UNIX_DIAG_MAX>(nlh, sizeof(unix_diag_msg));
  if (!attributes) {
    return std::nullopt;
  }
  const auto& by_type = *attributes;
  if (const nlattr* name = by_type[UNIX_DIAG_NAME]) {
    const auto* bytes = static_cast<const char*>(mnl_attr_get_payload(name));
    std::size_t length = mnl_attr_get_payload_len(name);
    if (length > 0 && bytes[0] == '\0') {
      // Abstract: '@' and the name, with embedded NULs shown as '@' as /proc/net/unix does.
      s.local_addr.assign(bytes, length);
      for (char& c : s.local_addr) {
        c = c == '\0' ? '@' : c;
      }
    } else {
      while (length > 0 && bytes[length - 1] == '\0') {
        --length;  // a path's terminating NUL is part of the bound address
      }
      s.local_addr.assign(bytes, length);
    }
  }
  if (const nlattr* peer = by_type[UNIX_DIAG_PEER]; peer && mnl_attr_get_payload_len(peer) >= 4) {
    s.peer_inode = mnl_attr_get_u32(peer);
  }
  if (const nlattr* rq = by_type[UNIX_DIAG_RQLEN]; rq && mnl_attr_get_payload_len(rq) >= sizeof(unix_diag_rqlen)) {
    unix_diag_rqlen lengths{};
    std::memcpy(&lengths, mnl_attr_get_payload(rq), sizeof(lengths));
    s.rx_queue = lengths.udiag_rqueue;
    if (s.state == SockState::unix_listening) {
      s.backlog = lengths.udiag_wqueue;
    } else {
      s.tx_queue = lengths.udiag_wqueue;
    }
  }
  if (const nlattr* uid = by_type[UNIX_DIAG_UID]; uid && mnl_attr_get_payload_len(uid) >= 4) {
    s.uid = mnl_attr_get_u32(uid);
  }
  return s;
}

struct DiagSocket::Impl {
  mnl_socket* socket = nullptr;
  unsigned port_id = 0;
  unsigned sequence = 0;
  std::vector<unsigned char> buffer = std::vector<unsigned char>(k_receive_buffer);
};

DiagSocket::DiagSocket() : m_impl(std::make_unique<Impl>()) {
  m_impl->socket = mnl_socket_open(NETLINK_SOCK_DIAG);
  if (m_impl->socket == nullptr) {
    throw Unavailable(fmt::format("netlink sock_diag socket: {}", std::strerror(errno)));
  }
  if (mnl_socket_bind(m_impl->socket, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int err = errno;
    mnl_socket_close(m_impl->socket);
    throw Unavailable(fmt::format("netlink sock_diag bind: {}", std::strerror(err)));
  }
  m_impl->port_id = mnl_socket_get_portid(m_impl->socket);
}

DiagSocket::~DiagSocket() {
  if (m_impl && m_impl->socket != nullptr) {
    mnl_socket_close(m_impl->socket);
  }
}

template <class Request>
DumpStats DiagSocket::dump(const Request& request, std::size_t request_size, Proto proto, const char* what,
                           std::vector<Socket>& out, const AfterBatch& after_batch) {
  auto& impl = *m_impl;
  std::array<unsigned char, 256> message{};
  nlmsghdr* nlh = mnl_nlmsg_put_header(message.data());
  nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = ++impl.sequence;
  std::memcpy(mnl_nlmsg_put_extra_header(nlh, request_size), &request, request_size);
  if (mnl_socket_sendto(impl.socket, nlh, nlh->nlmsg_len) < 0) {
    throw Unavailable(fmt::format("netlink {} dump request: {}", what, std::strerror(errno)));
  }
  struct Context {
    std::vector<Socket>& out;
    Proto proto;
    DumpStats stats;
    proc::KeySet seen;
  } context{out, proto, {}, {}};
  const std::size_t first = out.size();
  const auto on_message = [](const nlmsghdr* reply, void* data) -> int {
    auto& ctx = *static_cast<Context*>(data);
    const std::span bytes(reinterpret_cast<const unsigned char*>(reply), reply->nlmsg_len);
    auto socket = ctx.proto == Proto::unix_domain ? parse_unix_diag(bytes) : parse_inet_diag(bytes, ctx.proto);
    if (!socket) {
      ++ctx.stats.malformed;
      return MNL_CB_OK;
    }
    if (!ctx.seen.insert(proc::repeat_key(*socket))) {
      ++ctx.stats.duplicates;
      return MNL_CB_OK;
    }
    ctx.out.push_back(std::move(*socket));
    ++ctx.stats.added;
    return MNL_CB_OK;
  };
  try {
    for (;;) {
      const ssize_t received = mnl_socket_recvfrom(impl.socket, impl.buffer.data(), impl.buffer.size());
      if (received < 0) {
        throw Unavailable(fmt::format("netlink {} dump: {}", what, std::strerror(errno)));
      }
      const std::size_t batch = out.size();
      const int status = mnl_cb_run(impl.buffer.data(), static_cast<std::size_t>(received), nlh->nlmsg_seq,
                                    impl.port_id, on_message, &context);
      if (after_batch && out.size() > batch) {
        after_batch(out, batch);
      }
      if (status == MNL_CB_ERROR) {
        throw Unavailable(fmt::format("netlink {} dump: {}", what, std::strerror(errno)));
      }
      if (status == MNL_CB_STOP) {
        return context.stats;
      }
    }
  } catch (...) {
    out.resize(first);  // a table is taken whole or not at all
    throw;
  }
}

DumpStats DiagSocket::dump_inet(int family, Proto proto, std::vector<Socket>& out, const AfterBatch& after_batch) {
  inet_diag_req_v2 request{};
  request.sdiag_family = family == 6 ? AF_INET6 : AF_INET;
  request.sdiag_protocol = proto == Proto::udp ? IPPROTO_UDP : IPPROTO_TCP;
  request.idiag_states = k_all_inet_states;
  const auto what = fmt::format("{}{}", model::name(proto), family == 6 ? "6" : "");
  return dump(request, sizeof(request), proto, what.c_str(), out, after_batch);
}

DumpStats DiagSocket::dump_unix(std::vector<Socket>& out, const AfterBatch& after_batch) {
  unix_diag_req request{};
  request.sdiag_family = AF_UNIX;
  request.udiag_states = 0xFFFFFFFF;
  request.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID;
  return dump(request, sizeof(request), Proto::unix_domain, "unix", out, after_batch);
}

std::optional<model::SocketEnd> parse_destroy_event(std::span<const unsigned char> message) {
  const nlmsghdr* nlh = checked(message, sizeof(inet_diag_msg));
  if (nlh == nullptr || nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY) {
    return std::nullopt;
  }
  const auto* r = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(nlh));
  const auto state = model::tcp_state_from_code(r->idiag_state);
  const auto attributes = attributes_of<INET_DIAG_MAX>(nlh, sizeof(inet_diag_msg));
  if ((r->idiag_family != AF_INET && r->idiag_family != AF_INET6) || !state || !attributes) {
    return std::nullopt;
  }
  const auto& by_type = *attributes;
  const nlattr* protocol = by_type[INET_DIAG_PROTOCOL];
  if (protocol == nullptr || mnl_attr_get_payload_len(protocol) < 1) {
    return std::nullopt;
  }
  model::SocketEnd end;
  switch (mnl_attr_get_u8(protocol)) {
    case IPPROTO_TCP:
      end.proto = Proto::tcp;
      break;
    case IPPROTO_UDP:
      end.proto = Proto::udp;
      break;
    default:
      return std::nullopt;  // UDP-Lite, SCTP, MPTCP...: not recorded
  }
  end.family = r->idiag_family == AF_INET ? 4 : 6;
  end.state = *state;
  end.local_addr = proc::address_text(end.family, reinterpret_cast<const unsigned char*>(r->id.idiag_src));
  end.remote_addr = proc::address_text(end.family, reinterpret_cast<const unsigned char*>(r->id.idiag_dst));
  end.local_port = ntohs(r->id.idiag_sport);
  end.remote_port = ntohs(r->id.idiag_dport);
  end.cookie = cookie_of(r->id.idiag_cookie);  // idiag_uid and idiag_inode are 0 here: not kept
  if (const nlattr* info = by_type[INET_DIAG_INFO]; info && end.proto == Proto::tcp) {
    // The kernel's tcp_info may be longer (newer) or shorter (older) than this build's.
    tcp_info ti{};
    const std::size_t length = mnl_attr_get_payload_len(info);
    if (length < offsetof(tcp_info, tcpi_segs_out)) {
      return std::nullopt;  // older than 4.2: no byte counts
    }
    std::memcpy(&ti, mnl_attr_get_payload(info), std::min(length, sizeof(ti)));
    model::TcpTotals totals;
    totals.bytes_acked = ti.tcpi_bytes_acked;
    totals.bytes_received = ti.tcpi_bytes_received;
    if (length >= offsetof(tcp_info, tcpi_dsack_dups)) {
      totals.bytes_sent = ti.tcpi_bytes_sent;
      totals.bytes_retrans = ti.tcpi_bytes_retrans;
    }
    totals.delivery_rate = ti.tcpi_delivery_rate;
    totals.segs_out = ti.tcpi_segs_out;
    totals.segs_in = ti.tcpi_segs_in;
    totals.data_segs_out = ti.tcpi_data_segs_out;
    totals.data_segs_in = ti.tcpi_data_segs_in;
    totals.total_retrans = ti.tcpi_total_retrans;
    totals.rtt_us = ti.tcpi_rtt;
    totals.min_rtt_us = ti.tcpi_min_rtt;
    totals.lost = ti.tcpi_lost;
    end.tcp = totals;
  }
  return end;
}

struct DestroyListener::Impl {
  mnl_socket* socket = nullptr;
  int granted = 0;
  std::vector<unsigned char> buffer = std::vector<unsigned char>(k_receive_buffer);
};

DestroyListener::DestroyListener(int receive_buffer) : m_impl(std::make_unique<Impl>()) {
  auto& impl = *m_impl;
  impl.socket = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (impl.socket == nullptr) {
    throw Unavailable(fmt::format("netlink sock_diag socket: {}", std::strerror(errno)));
  }
  const auto fail = [&](const char* what) {
    const int err = errno;
    mnl_socket_close(impl.socket);
    impl.socket = nullptr;
    throw Unavailable(fmt::format("netlink sock_diag {}: {}", what, std::strerror(err)));
  };
  if (mnl_socket_bind(impl.socket, 0, MNL_SOCKET_AUTOPID) < 0) {
    fail("bind");
  }
  for (int group :
       {SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET_UDP_DESTROY, SKNLGRP_INET6_TCP_DESTROY, SKNLGRP_INET6_UDP_DESTROY}) {
    if (mnl_socket_setsockopt(impl.socket, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
      fail("destroy group membership");
    }
  }
  const int fd = mnl_socket_get_fd(impl.socket);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &receive_buffer, sizeof(receive_buffer)) != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));  // capped by rmem_max
  }
  socklen_t size = sizeof(impl.granted);
  ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &impl.granted, &size);
}

DestroyListener::~DestroyListener() {
  if (m_impl && m_impl->socket != nullptr) {
    mnl_socket_close(m_impl->socket);
  }
}

int DestroyListener::fd() const {
  return mnl_socket_get_fd(m_impl->socket);
}

int DestroyListener::receive_buffer() const {
  return m_impl->granted;
}

DrainStats DestroyListener::drain(std::vector<model::SocketEnd>& out) {
  auto& impl = *m_impl;
  DrainStats stats;
  for (;;) {
    const ssize_t received = ::recv(fd(), impl.buffer.data(), impl.buffer.size(), MSG_DONTWAIT);
    if (received < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == ENOBUFS) {
        ++stats.overruns;  // the kernel dropped announcements; the socket goes on
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return stats;
      }
      throw Unavailable(fmt::format("netlink sock_diag destroy announcements: {}", std::strerror(errno)));
    }
    const std::int64_t time_ms = model::now_ms();
    auto remaining = static_cast<int>(received);
    for (const auto* nlh = reinterpret_cast<const nlmsghdr*>(impl.buffer.data()); mnl_nlmsg_ok(nlh, remaining);
         nlh = mnl_nlmsg_next(nlh, &remaining)) {
      auto end = parse_destroy_event({reinterpret_cast<const unsigned char*>(nlh), nlh->nlmsg_len});
      if (!end) {
        ++stats.malformed;
        continue;
      }
      end->time_ms = time_ms;
      out.push_back(std::move(*end));
      ++stats.events;
    }
  }
}

}  // namespace sockhist::netlink
