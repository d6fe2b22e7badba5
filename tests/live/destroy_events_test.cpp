// The kernel's socket-destroy announcements (sock_diag multicast, what `ss -E` shows): the decoder
// on hand-built messages, then a DestroyListener in a private network namespace against
// connections whose byte counts, cookies and closing times the test knows.
#include <arpa/inet.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "netlink_message.hpp"
#include "netns.hpp"
#include "sockets.hpp"
#include "sockhist/netlink.hpp"

using namespace sockhist;
using model::Proto;
using model::SockState;
using test::Fd;

namespace {

using Message = test::NetlinkMessage;

// An announcement as the kernel builds it: inet_diag_msg, INET_DIAG_PROTOCOL, and tcp_info cut to
// `info_length` bytes (0: none).
Message announcement(std::uint8_t protocol, std::size_t info_length, const tcp_info& info = {}) {
  Message m;
  m.nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  auto* r = static_cast<inet_diag_msg*>(mnl_nlmsg_put_extra_header(m.nlh, sizeof(inet_diag_msg)));
  r->idiag_family = AF_INET;
  r->idiag_state = 7;  // TCP_CLOSE
  r->idiag_uid = 1000;
  r->id.idiag_sport = htons(40000);
  r->id.idiag_dport = htons(443);
  inet_pton(AF_INET, "10.0.0.1", r->id.idiag_src);
  inet_pton(AF_INET, "10.0.0.2", r->id.idiag_dst);
  r->id.idiag_cookie[0] = 0x89abcdef;
  r->id.idiag_cookie[1] = 0x01234567;
  if (info_length > 0) {
    std::array<unsigned char, sizeof(tcp_info) + 64> raw{};
    std::memcpy(raw.data(), &info, std::min(sizeof(info), raw.size()));
    mnl_attr_put(m.nlh, INET_DIAG_INFO, info_length, raw.data());
  }
  mnl_attr_put_u8(m.nlh, INET_DIAG_PROTOCOL, protocol);
  return m;
}

tcp_info sample_info() {
  tcp_info info{};
  info.tcpi_bytes_acked = 1002;
  info.tcpi_bytes_received = 501;
  info.tcpi_bytes_sent = 1000;
  info.tcpi_bytes_retrans = 0;
  info.tcpi_segs_out = 7;
  info.tcpi_segs_in = 6;
  info.tcpi_data_segs_out = 1;
  info.tcpi_data_segs_in = 1;
  info.tcpi_total_retrans = 2;
  info.tcpi_rtt = 31;
  info.tcpi_min_rtt = 12;
  info.tcpi_delivery_rate = 123456;
  return info;
}

}  // namespace

TEST(DestroyEventParse, TcpWithItsTotals) {
  const auto m = announcement(IPPROTO_TCP, sizeof(tcp_info), sample_info());
  const auto end = netlink::parse_destroy_event(m.bytes());
  ASSERT_TRUE(end);
  EXPECT_EQ(end->proto, Proto::tcp);
  EXPECT_EQ(end->family, 4);
  EXPECT_EQ(end->state, SockState::close);
  EXPECT_EQ(end->local_addr, "10.0.0.1");
  EXPECT_EQ(end->local_port, 40000);
  EXPECT_EQ(end->remote_addr, "10.0.0.2");
  EXPECT_EQ(end->remote_port, 443);
  EXPECT_EQ(end->cookie, 0x0123456789abcdefULL);
  EXPECT_EQ(end->time_ms, 0);
  ASSERT_TRUE(end->tcp);
  EXPECT_EQ(end->tcp->bytes_acked, 1002U);
  EXPECT_EQ(end->tcp->bytes_received, 501U);
  EXPECT_EQ(end->tcp->bytes_sent, 1000U);
  EXPECT_EQ(end->tcp->bytes_retrans, 0U);
  EXPECT_EQ(end->tcp->segs_out, 7U);
  EXPECT_EQ(end->tcp->segs_in, 6U);
  EXPECT_EQ(end->tcp->total_retrans, 2U);
  EXPECT_EQ(end->tcp->rtt_us, 31U);
  EXPECT_EQ(end->tcp->min_rtt_us, 12U);
  EXPECT_EQ(end->tcp->delivery_rate, 123456U);
}

TEST(DestroyEventParse, AnOlderKernelsShorterTcpInfo) {
  // Before 4.19 tcp_info ends before tcpi_bytes_sent: the byte totals it lacks are unknown, not 0.
  const auto before_4_19 = announcement(IPPROTO_TCP, offsetof(tcp_info, tcpi_delivered), sample_info());
  const auto end = netlink::parse_destroy_event(before_4_19.bytes());
  ASSERT_TRUE(end && end->tcp);
  EXPECT_EQ(end->tcp->bytes_acked, 1002U);
  EXPECT_FALSE(end->tcp->bytes_sent);
  EXPECT_FALSE(end->tcp->bytes_retrans);
  // Before 4.2 there are no byte counts at all: refused rather than stored as zeros.
  const auto before_4_2 = announcement(IPPROTO_TCP, offsetof(tcp_info, tcpi_pacing_rate), sample_info());
  EXPECT_FALSE(netlink::parse_destroy_event(before_4_2.bytes()));
}

TEST(DestroyEventParse, UdpHasNoTotalsAndOtherProtocolsAreNotOurs) {
  const auto udp = netlink::parse_destroy_event(announcement(IPPROTO_UDP, 0).bytes());
  ASSERT_TRUE(udp);
  EXPECT_EQ(udp->proto, Proto::udp);
  EXPECT_FALSE(udp->tcp);
  EXPECT_FALSE(netlink::parse_destroy_event(announcement(IPPROTO_SCTP, 0).bytes()));
  // No protocol attribute, a truncated message, another message type: not announcements.
  Message bare;
  bare.nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  static_cast<inet_diag_msg*>(mnl_nlmsg_put_extra_header(bare.nlh, sizeof(inet_diag_msg)))->idiag_family = AF_INET;
  EXPECT_FALSE(netlink::parse_destroy_event(bare.bytes()));
  const auto whole = announcement(IPPROTO_TCP, sizeof(tcp_info), sample_info());
  EXPECT_FALSE(netlink::parse_destroy_event(whole.bytes().first(whole.bytes().size() - 8)));
  auto other = announcement(IPPROTO_TCP, sizeof(tcp_info), sample_info());
  other.nlh->nlmsg_type = NLMSG_DONE;
  EXPECT_FALSE(netlink::parse_destroy_event(other.bytes()));
}

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void write_all(const Fd& fd, std::size_t bytes) {
  const std::string data(bytes, 'x');
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::write(fd.get(), data.data() + done, bytes - done);
    ASSERT_GT(n, 0);
    done += static_cast<std::size_t>(n);
  }
}

void read_exactly(const Fd& fd, std::size_t bytes) {
  std::string buffer(bytes, '\0');
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::read(fd.get(), buffer.data() + done, bytes - done);
    ASSERT_GT(n, 0);
    done += static_cast<std::size_t>(n);
  }
}

// Reads announcements until `want` arrived or `timeout` passed, each stamped when it was read.
std::vector<model::SocketEnd> collect(netlink::DestroyListener& listener, std::size_t want,
                                      std::chrono::milliseconds timeout, netlink::DrainStats& total) {
  std::vector<model::SocketEnd> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    pollfd p{listener.fd(), POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) {
      const auto stats = listener.drain(out);
      total.events += stats.events;
      total.malformed += stats.malformed;
      total.overruns += stats.overruns;
    }
  }
  return out;
}

}  // namespace

// Connections with known byte counts, closed client first (the client's socket is destroyed as it
// enters TIME_WAIT, the server's at its last ACK): every end announced once, with the cookie a dump
// gave the socket while it lived, exact payload counts, and a time after its close.
TEST(DestroyEventsLive, EveryConnectionEndsOnceWithItsCookieBytesAndTime) {
  std::string why;
  if (!test::enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root): " << why;
  }
  netlink::DestroyListener listener;
  constexpr int k_connections = 40;
  struct Expected {
    std::size_t client_sent = 0;
    std::size_t server_sent = 0;
    std::uint64_t client_cookie = 0;
    std::uint64_t server_cookie = 0;
    std::uint16_t client_port = 0;
    int family = 4;
    std::int64_t closed_ms = 0;
  };
  std::vector<Expected> expected(k_connections);
  std::vector<test::Pair> pairs;
  Fd listener4 = test::listen_tcp(4);
  Fd listener6 = test::listen_tcp(6);
  for (int i = 0; i < k_connections; ++i) {
    auto& e = expected[static_cast<std::size_t>(i)];
    e.family = i % 4 == 3 ? 6 : 4;
    auto pair = test::connect_pair(e.family, e.family == 6 ? listener6 : listener4);
    e.client_sent = static_cast<std::size_t>(i) * 997 + 13;
    e.server_sent = static_cast<std::size_t>(i) * 311 + 5;
    write_all(pair.client, e.client_sent);
    read_exactly(pair.server, e.client_sent);
    write_all(pair.server, e.server_sent);
    read_exactly(pair.client, e.server_sent);
    e.client_port = test::local_port(pair.client);
    pairs.push_back(std::move(pair));
  }
  // The cookies a dump gives the live sockets, by local and remote port.
  netlink::DiagSocket diag;
  std::vector<model::Socket> live;
  diag.dump_inet(4, Proto::tcp, live);
  diag.dump_inet(6, Proto::tcp, live);
  std::map<std::pair<int, int>, std::uint64_t> cookie_of;
  for (const auto& s : live) {
    cookie_of[{s.local_port, s.remote_port}] = s.cookie.value_or(0);
  }
  for (auto& e : expected) {
    const int server_port = e.family == 6 ? test::local_port(listener6) : test::local_port(listener4);
    e.client_cookie = cookie_of[{e.client_port, server_port}];
    e.server_cookie = cookie_of[{server_port, e.client_port}];
    ASSERT_NE(e.client_cookie, 0U);
    ASSERT_NE(e.server_cookie, 0U);
  }
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    expected[i].closed_ms = now_ms();
    test::make_time_wait(std::move(pairs[i]));
  }
  // Each client is now in TIME_WAIT, under the cookie its full socket had: the announcement of that
  // socket's end is the exact moment the TIME_WAIT began.
  std::vector<model::Socket> after;
  diag.dump_inet(4, Proto::tcp, after);
  diag.dump_inet(6, Proto::tcp, after);
  for (const auto& e : expected) {
    const auto tw = std::find_if(after.begin(), after.end(), [&](const model::Socket& s) {
      return s.state == SockState::time_wait && s.local_port == e.client_port;
    });
    ASSERT_NE(tw, after.end()) << "no TIME_WAIT for client port " << e.client_port;
    EXPECT_EQ(tw->cookie, e.client_cookie);
  }
  netlink::DrainStats stats;
  const auto ends = collect(listener, 2 * k_connections, std::chrono::seconds(10), stats);
  ASSERT_EQ(ends.size(), 2U * k_connections) << "overruns " << stats.overruns;
  EXPECT_EQ(stats.overruns, 0U);
  EXPECT_EQ(stats.malformed, 0U);
  std::map<std::uint64_t, const model::SocketEnd*> by_cookie;
  for (const auto& end : ends) {
    EXPECT_TRUE(by_cookie.emplace(end.cookie, &end).second) << "cookie " << end.cookie << " announced twice";
  }
  std::int64_t worst_delay = 0;
  for (const auto& e : expected) {
    for (const bool client : {true, false}) {
      const auto it = by_cookie.find(client ? e.client_cookie : e.server_cookie);
      ASSERT_NE(it, by_cookie.end()) << (client ? "client" : "server") << " port " << e.client_port;
      const model::SocketEnd& end = *it->second;
      ASSERT_TRUE(end.tcp);
      EXPECT_EQ(end.proto, Proto::tcp);
      EXPECT_EQ(end.family, e.family);
      EXPECT_EQ(end.state, SockState::close);
      EXPECT_EQ(client ? end.local_port : end.remote_port, e.client_port);
      const std::size_t sent = client ? e.client_sent : e.server_sent;
      const std::size_t received = client ? e.server_sent : e.client_sent;
      // Payload exactly; the sequence-space counts add the FIN received, and the SYN and FIN acked.
      EXPECT_EQ(end.tcp->bytes_sent, sent);
      EXPECT_EQ(end.tcp->bytes_retrans, 0U);
      EXPECT_EQ(end.tcp->bytes_received, received + 1);
      EXPECT_GE(end.tcp->bytes_acked, sent);
      EXPECT_LE(end.tcp->bytes_acked, sent + 2);
      EXPECT_GE(end.time_ms, e.closed_ms);
      worst_delay = std::max(worst_delay, end.time_ms - e.closed_ms);
    }
  }
  std::cout << "destroy announcements: " << ends.size() << " read, at most " << worst_delay
            << " ms after the close began; receive buffer " << listener.receive_buffer() << " bytes\n";
}

// A listener that is not drained while thousands of sockets end loses announcements: drain says
// so (ENOBUFS) instead of returning fewer events as if they were all.
TEST(DestroyEventsLive, AnOverflowingReceiveBufferIsCountedNotHidden) {
  std::string why;
  if (!test::enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root): " << why;
  }
  netlink::DestroyListener listener(4096);  // the smallest buffer the kernel grants
  constexpr int k_sockets = 3000;
  for (int i = 0; i < k_sockets; ++i) {
    test::udp_bound(4);  // bound and closed at once: one announcement each
  }
  std::vector<model::SocketEnd> ends;
  const auto stats = listener.drain(ends);
  EXPECT_LT(ends.size(), static_cast<std::size_t>(k_sockets));
  EXPECT_GE(stats.overruns, 1U) << ends.size() << " of " << k_sockets << " read, no overrun reported";
  for (const auto& end : ends) {
    EXPECT_EQ(end.proto, Proto::udp);
    EXPECT_FALSE(end.tcp);
  }
}

// No privilege is needed to hear the announcements of one's own namespace (the kernel's sock_diag
// socket allows non-root receivers): a child that became `nobody` with no capabilities hears its
// own socket end.
TEST(DestroyEventsLive, AnUnprivilegedListenerHearsItsNamespace) {
  std::string why;
  if (::geteuid() != 0 || !test::enter_private_netns(why)) {
    GTEST_SKIP() << "needs root to become another user in a private namespace: " << why;
  }
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // nobody, no groups, no capabilities left after the uid change.
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(10);
    }
    try {
      netlink::DestroyListener listener;
      const std::uint16_t port = [] {
        const Fd udp = test::udp_bound(4);
        return test::local_port(udp);
      }();
      netlink::DrainStats stats;
      const auto ends = collect(listener, 1, std::chrono::seconds(5), stats);
      if (ends.size() == 1 && ends[0].local_port == port) {
        ::_exit(0);
      }
      std::cerr << ends.size() << " announcements, overruns " << stats.overruns << "; wanted port " << port
                << (ends.empty() ? "" : fmt::format(", got port {}", ends[0].local_port)) << "\n";
      ::_exit(11);
    } catch (const std::exception&) {
      ::_exit(12);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: could not drop privileges, 11: no or another announcement, "
                                       "12: the listener was refused";
}
