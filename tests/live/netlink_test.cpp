// The sock_diag decoders on hand-built replies (every field placed where the kernel puts it), and
// a live dump compared with /proc on the same sockets: the two capture paths must agree.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <map>
#include <set>

#include "files.hpp"
#include "netlink_message.hpp"
#include "sockets.hpp"
#include "sockhist/capture.hpp"
#include "sockhist/netlink.hpp"

using namespace sockhist;
using model::Proto;
using model::Socket;
using model::SockState;
using model::TimerKind;

namespace {

using Message = test::NetlinkMessage;

Message inet_reply(int af, unsigned state, unsigned timer, const char* src, int sport, const char* dst, int dport) {
  Message m;
  m.nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  auto* r = static_cast<inet_diag_msg*>(mnl_nlmsg_put_extra_header(m.nlh, sizeof(inet_diag_msg)));
  r->idiag_family = static_cast<std::uint8_t>(af);
  r->idiag_state = static_cast<std::uint8_t>(state);
  r->idiag_timer = static_cast<std::uint8_t>(timer);
  r->id.idiag_sport = htons(static_cast<std::uint16_t>(sport));
  r->id.idiag_dport = htons(static_cast<std::uint16_t>(dport));
  inet_pton(af, src, r->id.idiag_src);
  inet_pton(af, dst, r->id.idiag_dst);
  return m;
}

inet_diag_msg* payload(Message& m) {
  return static_cast<inet_diag_msg*>(mnl_nlmsg_get_payload(m.nlh));
}

}  // namespace

TEST(NetlinkParse, EstablishedIpv4WholeRecord) {
  auto m = inet_reply(AF_INET, 1, 1, "10.1.2.3", 443, "192.168.7.9", 51000);
  auto* r = payload(m);
  r->idiag_retrans = 2;
  r->idiag_expires = 1234;
  r->idiag_rqueue = 10;
  r->idiag_wqueue = 20;
  r->idiag_uid = 1000;
  r->idiag_inode = 98765;
  r->id.idiag_cookie[0] = 0x11;
  r->id.idiag_cookie[1] = 0x2;
  Socket expected;
  expected.proto = Proto::tcp;
  expected.family = 4;
  expected.state = SockState::established;
  expected.local_addr = "10.1.2.3";
  expected.local_port = 443;
  expected.remote_addr = "192.168.7.9";
  expected.remote_port = 51000;
  expected.rx_queue = 10;
  expected.tx_queue = 20;
  expected.timer = TimerKind::on;
  expected.timer_ms = 1234;
  expected.retransmits = 2;
  expected.uid = 1000;
  expected.inode = 98765;
  expected.cookie = 0x200000011ULL;
  EXPECT_EQ(netlink::parse_inet_diag(m.bytes(), Proto::tcp), expected);
}

TEST(NetlinkParse, ListenerReportsAcceptQueueAndBacklog) {
  auto m = inet_reply(AF_INET6, 10, 0, "::1", 8080, "::", 0);
  payload(m)->idiag_rqueue = 3;
  payload(m)->idiag_wqueue = 4096;
  const auto s = netlink::parse_inet_diag(m.bytes(), Proto::tcp);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->family, 6);
  EXPECT_EQ(s->local_addr, "::1");
  EXPECT_EQ(s->remote_addr, "::");
  EXPECT_EQ(s->rx_queue, 3U);
  EXPECT_EQ(s->tx_queue, 0U);
  EXPECT_EQ(s->backlog, 4096U);
}

TEST(NetlinkParse, KeepaliveCountsAreProbesAndTimeWaitIsTimewait) {
  auto keepalive = inet_reply(AF_INET, 1, 2, "127.0.0.1", 1, "127.0.0.1", 2);
  payload(keepalive)->idiag_retrans = 3;
  const auto k = netlink::parse_inet_diag(keepalive.bytes(), Proto::tcp);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->probes, 3U);
  EXPECT_EQ(k->retransmits, 0U);
  auto tw = inet_reply(AF_INET, 6, 3, "127.0.0.1", 40000, "127.0.0.1", 80);
  payload(tw)->idiag_expires = 59'000;
  const auto t = netlink::parse_inet_diag(tw.bytes(), Proto::tcp);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->state, SockState::time_wait);
  EXPECT_EQ(t->timer, TimerKind::timewait);
  EXPECT_EQ(t->timer_ms, 59'000U);
  EXPECT_EQ(t->inode, 0U);
}

TEST(NetlinkParse, MalformedRepliesAreRejected) {
  auto good = inet_reply(AF_INET, 1, 0, "127.0.0.1", 1, "127.0.0.1", 2);
  EXPECT_FALSE(netlink::parse_inet_diag(good.bytes().first(sizeof(nlmsghdr) + 10), Proto::tcp));  // truncated
  auto family = inet_reply(AF_INET, 1, 0, "127.0.0.1", 1, "127.0.0.1", 2);
  payload(family)->idiag_family = AF_UNIX;
  EXPECT_FALSE(netlink::parse_inet_diag(family.bytes(), Proto::tcp));
  auto state = inet_reply(AF_INET, 14, 0, "127.0.0.1", 1, "127.0.0.1", 2);
  EXPECT_FALSE(netlink::parse_inet_diag(state.bytes(), Proto::tcp));
  auto timer = inet_reply(AF_INET, 1, 9, "127.0.0.1", 1, "127.0.0.1", 2);
  EXPECT_FALSE(netlink::parse_inet_diag(timer.bytes(), Proto::tcp));
}

TEST(NetlinkParse, UnixNamesPeersQueuesAndUid) {
  Message m;
  auto* r = static_cast<unix_diag_msg*>(mnl_nlmsg_put_extra_header(m.nlh, sizeof(unix_diag_msg)));
  r->udiag_family = AF_UNIX;
  r->udiag_type = SOCK_STREAM;
  r->udiag_state = 10;  // TCP_LISTEN
  r->udiag_ino = 555;
  const char abstract[] = "\0svc\0x";
  mnl_attr_put(m.nlh, UNIX_DIAG_NAME, sizeof(abstract) - 1, abstract);
  const unix_diag_rqlen lengths{2, 128};
  mnl_attr_put(m.nlh, UNIX_DIAG_RQLEN, sizeof(lengths), &lengths);
  mnl_attr_put_u32(m.nlh, UNIX_DIAG_UID, 33);
  const auto s = netlink::parse_unix_diag(m.bytes());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->local_addr, "@svc@x");  // as /proc/net/unix prints abstract names
  EXPECT_EQ(s->state, SockState::unix_listening);
  EXPECT_EQ(s->rx_queue, 2U);
  EXPECT_EQ(s->backlog, 128U);
  EXPECT_EQ(s->uid, 33U);
  EXPECT_EQ(s->inode, 555U);

  Message c;
  auto* rc = static_cast<unix_diag_msg*>(mnl_nlmsg_put_extra_header(c.nlh, sizeof(unix_diag_msg)));
  rc->udiag_family = AF_UNIX;
  rc->udiag_type = SOCK_DGRAM;
  rc->udiag_state = 1;                // TCP_ESTABLISHED
  const char path[] = "/run/x.sock";  // with its terminating NUL, as bound
  mnl_attr_put(c.nlh, UNIX_DIAG_NAME, sizeof(path), path);
  mnl_attr_put_u32(c.nlh, UNIX_DIAG_PEER, 777);
  const auto d = netlink::parse_unix_diag(c.bytes());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->local_addr, "/run/x.sock");
  EXPECT_EQ(d->state, SockState::unix_connected);
  EXPECT_EQ(d->unix_type, model::UnixType::dgram);
  EXPECT_EQ(d->peer_inode, 777U);
}

namespace {

// The socket's identity across the two paths.
std::string identity(const Socket& s) {
  return fmt::format("{} {} {}:{} {}:{} {} {}", model::name(s.proto), s.family, s.local_addr, s.local_port,
                     s.remote_addr, s.remote_port, s.inode, s.inode == 0 ? model::name(s.state) : "");
}

std::map<std::string, Socket> own_sockets(const model::Capture& capture, const std::set<std::uint64_t>& inodes,
                                          const std::set<int>& ports) {
  std::map<std::string, Socket> out;
  for (const auto& s : capture.sockets) {
    if (inodes.contains(s.inode) || (s.inode == 0 && (ports.contains(s.local_port) || ports.contains(s.remote_port)))) {
      out.emplace(identity(s), s);
    }
  }
  return out;
}

}  // namespace

TEST(CaptureAgreement, NetlinkAndProcSeeTheSameSocketsWithTheSameFields) {
  const auto dir = test::scratch_dir("agreement");
  auto pop = test::make_population(dir.string());
  std::set<std::uint64_t> inodes;
  for (const test::Fd* fd :
       {&pop.listener4, &pop.listener6, &pop.est4.client, &pop.est4.server, &pop.est6.client, &pop.est6.server,
        &pop.close_wait, &pop.udp4, &pop.udp6, &pop.unix_listen, &pop.unix_pair.client, &pop.unix_pair.server}) {
    inodes.insert(test::inode_of(*fd));
  }
  const std::set<int> ports = {pop.port4, pop.port6};

  capture::CaptureOptions options;
  options.source = capture::Source::proc;
  const auto from_proc = capture::take(options);
  options.source = capture::Source::netlink;
  const auto from_netlink = capture::take(options);
  EXPECT_EQ(from_proc.source, "proc");
  EXPECT_EQ(from_netlink.source, "netlink");

  const auto a = own_sockets(from_proc, inodes, ports);
  const auto b = own_sockets(from_netlink, inodes, ports);
  // 12 full sockets, plus the FIN_WAIT2 and TIME_WAIT the closes left.
  EXPECT_EQ(a.size(), 14U);
  std::set<std::string> keys_a, keys_b;
  for (const auto& [k, v] : a)
    keys_a.insert(k);
  for (const auto& [k, v] : b)
    keys_b.insert(k);
  ASSERT_EQ(keys_a, keys_b);
  for (const auto& [key, p] : a) {
    const Socket& n = b.at(key);
    SCOPED_TRACE(key);
    EXPECT_EQ(p.state, n.state);
    EXPECT_EQ(p.pid, n.pid);
    EXPECT_EQ(p.pid == 0 ? 0 : ::getpid(), p.pid);
    EXPECT_TRUE(n.cookie.has_value());  // netlink only
    if (p.proto == Proto::unix_domain) {
      // /proc/net/unix has no uid or queue columns; the flags are /proc's alone.
      EXPECT_EQ(p.unix_type, n.unix_type);
      EXPECT_EQ(p.local_addr, n.local_addr);
      continue;
    }
    EXPECT_EQ(p.uid, n.uid);
    EXPECT_EQ(p.tx_queue, n.tx_queue);
    EXPECT_EQ(p.rx_queue, n.rx_queue);
    EXPECT_EQ(p.timer, n.timer);
    EXPECT_EQ(p.retransmits, n.retransmits);
    EXPECT_EQ(p.probes, n.probes);
    // The second read came a little later: the same countdown, give or take the time between.
    EXPECT_NEAR(static_cast<double>(p.timer_ms), static_cast<double>(n.timer_ms), 1500.0);
  }
  // What only netlink carries: the listener's backlog limit and the UNIX peers.
  const auto listener =
      b.at(identity(*std::find_if(from_netlink.sockets.begin(), from_netlink.sockets.end(),
                                  [&](const Socket& s) { return s.inode == test::inode_of(pop.listener4); })));
  EXPECT_EQ(listener.backlog, 128U);
  const auto client_inode = test::inode_of(pop.unix_pair.client);
  const auto server_inode = test::inode_of(pop.unix_pair.server);
  for (const auto& s : from_netlink.sockets) {
    if (s.inode == client_inode) {
      EXPECT_EQ(s.peer_inode, server_inode);
    }
  }
}
