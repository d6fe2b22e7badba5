// The pure /proc parsers against real captures (samples/history-busy) and one deliberately broken
// fixture per failure mode (samples/broken).
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

#include "files.hpp"
#include "sockhist/proc.hpp"

using namespace sockhist;
using model::Proto;
using model::Socket;
using model::SockState;
using model::TimerKind;
using test::read_text;
using test::samples_dir;

namespace {

const auto k_busy = samples_dir() / "history-busy";

const Socket* find_socket(const std::vector<Socket>& rows, const std::function<bool(const Socket&)>& pred) {
  const auto it = std::find_if(rows.begin(), rows.end(), pred);
  return it == rows.end() ? nullptr : &*it;
}

const model::Counter* find_counter(const std::vector<model::Counter>& rows, std::string_view section,
                                   std::string_view name) {
  const auto it =
      std::find_if(rows.begin(), rows.end(), [&](const auto& c) { return c.section == section && c.name == name; });
  return it == rows.end() ? nullptr : &*it;
}

}  // namespace

TEST(DecodeAddress, Ipv4BytesAreReversedOnLittleEndian) {
  EXPECT_EQ(proc::decode_address("0100007F"), "127.0.0.1");
  EXPECT_EQ(proc::decode_address("00000000"), "0.0.0.0");
  EXPECT_EQ(proc::decode_address("0A01A8C0"), "192.168.1.10");
}

TEST(DecodeAddress, Ipv6IsFourHostOrderWords) {
  EXPECT_EQ(proc::decode_address("00000000000000000000000001000000"), "::1");
  EXPECT_EQ(proc::decode_address("0000000000000000FFFF00000100007F"), "::ffff:127.0.0.1");
  EXPECT_EQ(proc::decode_address("B80D0120000000000000000001000000"), "2001:db8::1");
}

TEST(DecodeAddress, RejectsBadHexAndLengths) {
  EXPECT_FALSE(proc::decode_address("0100007G"));
  EXPECT_FALSE(proc::decode_address("0100007"));
  EXPECT_FALSE(proc::decode_address(""));
}

TEST(ParseInet, RealCaptureHasEveryStateTheSampleMade) {
  const auto text = read_text(k_busy / "01/proc/net/tcp");
  const auto parsed = proc::parse_inet(text, Proto::tcp, 4, 100);
  ASSERT_FALSE(parsed.error);
  EXPECT_TRUE(parsed.issues.empty());
  // Every data line becomes a row: the file has no duplicates.
  const auto lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) - 1;
  EXPECT_EQ(parsed.rows.size(), lines);
  const auto* listener =
      find_socket(parsed.rows, [](const Socket& s) { return s.state == SockState::listen && s.local_port == 18080; });
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(listener->local_addr, "127.0.0.1");
  EXPECT_EQ(listener->remote_addr, "0.0.0.0");
  EXPECT_NE(listener->inode, 0U);
  const auto* tw = find_socket(parsed.rows, [](const Socket& s) { return s.state == SockState::time_wait; });
  ASSERT_NE(tw, nullptr);
  EXPECT_EQ(tw->inode, 0U);
  EXPECT_EQ(tw->timer, TimerKind::timewait);
  EXPECT_LE(tw->timer_ms, 60'000U);
  EXPECT_GT(tw->timer_ms, 0U);
}

TEST(ParseInet, RealIpv6CaptureHasCloseWaitWithUnreadFin) {
  const auto parsed = proc::parse_inet(read_text(k_busy / "01/proc/net/tcp6"), Proto::tcp, 6, 100);
  ASSERT_FALSE(parsed.error);
  EXPECT_TRUE(parsed.issues.empty());
  const auto* cw = find_socket(parsed.rows, [](const Socket& s) { return s.state == SockState::close_wait; });
  ASSERT_NE(cw, nullptr);
  EXPECT_EQ(cw->local_addr, "::1");
  EXPECT_EQ(cw->local_port, 18443);
  EXPECT_EQ(cw->family, 6);
  EXPECT_NE(cw->inode, 0U);
}

TEST(ParseInet, WholeRecordOfAKnownLine) {
  const std::string text =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   2: 0100007F:46A0 0100007F:A5EA 01 0000000A:00000014 02:00000BB8 00000003  1000        4 24101 1 "
      "00000000f8d514e7 20 4 30 10 -1\n";
  const auto parsed = proc::parse_inet(text, Proto::tcp, 4, 100);
  ASSERT_EQ(parsed.rows.size(), 1U);
  Socket expected;
  expected.proto = Proto::tcp;
  expected.family = 4;
  expected.state = SockState::established;
  expected.local_addr = "127.0.0.1";
  expected.local_port = 0x46A0;
  expected.remote_addr = "127.0.0.1";
  expected.remote_port = 0xA5EA;
  expected.tx_queue = 10;
  expected.rx_queue = 20;
  expected.timer = TimerKind::keepalive;
  expected.timer_ms = 30'000;  // 0xBB8 = 3000 ticks at USER_HZ 100
  expected.retransmits = 3;
  expected.probes = 4;
  expected.uid = 1000;
  expected.inode = 24101;
  EXPECT_EQ(parsed.rows[0], expected);
}

TEST(ParseInet, UdpWithWideSlotNumbers) {
  const auto parsed = proc::parse_inet(read_text(k_busy / "01/proc/net/udp"), Proto::udp, 4, 100);
  ASSERT_FALSE(parsed.error);
  EXPECT_TRUE(parsed.issues.empty());
  ASSERT_FALSE(parsed.rows.empty());
  EXPECT_TRUE(std::all_of(parsed.rows.begin(), parsed.rows.end(),
                          [](const Socket& s) { return s.state == SockState::close && s.proto == Proto::udp; }));
}

// One named case per failure mode: what survives, which lines are skipped, what is dropped.
struct InetCase {
  const char* name;
  std::size_t rows;
  std::vector<std::size_t> skipped_lines;
  std::string reason;  // a substring of the first skipped line's reason
  std::size_t duplicates = 0;
  bool error = false;
};

void PrintTo(const InetCase& c, std::ostream* out) {
  *out << c.name;
}

class BrokenTcp : public testing::TestWithParam<InetCase> {};

TEST_P(BrokenTcp, SkipsAndCountsExactlyTheBadLines) {
  const auto& c = GetParam();
  const auto parsed = proc::parse_inet(read_text(samples_dir() / "broken" / c.name), Proto::tcp, 4, 100);
  EXPECT_EQ(parsed.error.has_value(), c.error) << parsed.error.value_or("");
  EXPECT_EQ(parsed.rows.size(), c.rows);
  EXPECT_EQ(parsed.duplicates, c.duplicates);
  std::vector<std::size_t> lines;
  for (const auto& issue : parsed.issues) {
    lines.push_back(issue.line);
  }
  EXPECT_EQ(lines, c.skipped_lines);
  if (!c.reason.empty()) {
    ASSERT_FALSE(parsed.issues.empty());
    EXPECT_NE(parsed.issues[0].reason.find(c.reason), std::string::npos) << parsed.issues[0].reason;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, BrokenTcp,
    testing::Values(InetCase{"tcp-truncated-line", 2, {3}, "truncated line"},
                    InetCase{"tcp-bad-hex", 2, {3}, "bad remote address"}, InetCase{"tcp-extra-columns", 3, {}, ""},
                    InetCase{"tcp-no-final-newline", 2, {4}, "no end of line"},
                    InetCase{"tcp-duplicate-rows", 3, {}, "", 2}, InetCase{"tcp-wrong-header", 0, {}, "", 0, true},
                    InetCase{"tcp-wide-sl", 3, {}, ""}, InetCase{"tcp-bad-state", 2, {3}, "bad state"},
                    InetCase{"tcp-empty", 0, {}, "", 0, true}),
    [](const testing::TestParamInfo<InetCase>& param) {
      std::string name = param.param.name;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

TEST(ParseUnix, RealCaptureHasListenersAndConnectedPairs) {
  const auto parsed = proc::parse_unix(read_text(k_busy / "01/proc/net/unix"));
  ASSERT_FALSE(parsed.error);
  EXPECT_TRUE(parsed.issues.empty());
  const auto* listener = find_socket(parsed.rows, [](const Socket& s) {
    return s.state == SockState::unix_listening && s.local_addr == "/tmp/sockhist-sample.sock";
  });
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(listener->unix_type, model::UnixType::stream);
  const auto* abstract = find_socket(parsed.rows, [](const Socket& s) {
    return s.state == SockState::unix_listening && s.local_addr == "@sockhist-sample-abstract";
  });
  EXPECT_NE(abstract, nullptr);
  EXPECT_GE(std::count_if(parsed.rows.begin(), parsed.rows.end(),
                          [](const Socket& s) { return s.state == SockState::unix_connected; }),
            10);
}

TEST(ParseUnix, PathsKeepTheirSpacesAndTypesAreDecoded) {
  const auto parsed = proc::parse_unix(read_text(samples_dir() / "broken/unix-path-spaces"));
  ASSERT_EQ(parsed.rows.size(), 3U);
  EXPECT_EQ(parsed.rows[0].local_addr, "/tmp/dir with spaces/x.sock");
  EXPECT_EQ(parsed.rows[0].state, SockState::unix_listening);
  EXPECT_EQ(parsed.rows[1].local_addr, "@abstract name");
  EXPECT_EQ(parsed.rows[1].unix_type, model::UnixType::dgram);
  EXPECT_EQ(parsed.rows[1].state, SockState::unix_unconnected);
  EXPECT_EQ(parsed.rows[2].unix_type, model::UnixType::seqpacket);
  EXPECT_EQ(parsed.rows[2].state, SockState::unix_connected);
  EXPECT_EQ(parsed.rows[2].local_addr, "");
}

TEST(ParseUnix, TruncatedLineIsSkipped) {
  const auto parsed = proc::parse_unix(read_text(samples_dir() / "broken/unix-truncated"));
  EXPECT_EQ(parsed.rows.size(), 2U);
  ASSERT_EQ(parsed.issues.size(), 1U);
  EXPECT_EQ(parsed.issues[0].line, 3U);
}

TEST(ParseCounters, RealSnmpKeepsEveryFieldByName) {
  const auto parsed = proc::parse_counter_pairs(read_text(k_busy / "01/proc/net/snmp"));
  ASSERT_FALSE(parsed.error);
  EXPECT_TRUE(parsed.issues.empty());
  const auto* max_conn = find_counter(parsed.rows, "Tcp", "MaxConn");
  ASSERT_NE(max_conn, nullptr);
  EXPECT_EQ(max_conn->value, -1);
  EXPECT_TRUE(max_conn->is_gauge);
  const auto* estab = find_counter(parsed.rows, "Tcp", "CurrEstab");
  ASSERT_NE(estab, nullptr);
  EXPECT_TRUE(estab->is_gauge);
  const auto* segs = find_counter(parsed.rows, "Tcp", "InSegs");
  ASSERT_NE(segs, nullptr);
  EXPECT_FALSE(segs->is_gauge);
  EXPECT_TRUE(find_counter(parsed.rows, "Ip", "Forwarding")->is_gauge);
  EXPECT_NE(find_counter(parsed.rows, "IcmpMsg", "InType3"), nullptr);
}

TEST(ParseCounters, RealNetstatWithAHeaderOverTwoThousandCharacters) {
  const auto text = read_text(k_busy / "01/proc/net/netstat");
  ASSERT_GT(text.find('\n'), 2000U);
  const auto parsed = proc::parse_counter_pairs(text);
  ASSERT_FALSE(parsed.error);
  EXPECT_TRUE(parsed.issues.empty());
  EXPECT_GT(std::count_if(parsed.rows.begin(), parsed.rows.end(), [](const auto& c) { return c.section == "TcpExt"; }),
            100);
  for (const char* name : {"TW", "TWRecycled", "TWKilled", "ListenOverflows", "ListenDrops", "TCPTimeWaitOverflow"}) {
    EXPECT_NE(find_counter(parsed.rows, "TcpExt", name), nullptr) << name;
  }
  EXPECT_NE(find_counter(parsed.rows, "IpExt", "InOctets"), nullptr);
}

TEST(ParseCounters, CountMismatchSkipsThatPairOnly) {
  const auto parsed = proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-count-mismatch"));
  ASSERT_EQ(parsed.issues.size(), 1U);
  EXPECT_NE(parsed.issues[0].reason.find("names but"), std::string::npos);
  EXPECT_EQ(find_counter(parsed.rows, "Tcp", "InSegs"), nullptr);
  EXPECT_NE(find_counter(parsed.rows, "Udp", "InDatagrams"), nullptr);
}

TEST(ParseCounters, CounterAddedMidLineIsKeptAndOthersStayAligned) {
  const auto parsed = proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-counter-added-midline"));
  EXPECT_TRUE(parsed.issues.empty());
  EXPECT_EQ(find_counter(parsed.rows, "Tcp", "FutureCounter")->value, 777);
  EXPECT_EQ(find_counter(parsed.rows, "Tcp", "InSegs")->value, 1064);
  EXPECT_EQ(find_counter(parsed.rows, "Tcp", "CurrEstab")->value, 54);
}

TEST(ParseCounters, CounterRemovedIsSimplyAbsent) {
  const auto parsed = proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-counter-removed"));
  EXPECT_TRUE(parsed.issues.empty());
  EXPECT_EQ(find_counter(parsed.rows, "Tcp", "InCsumErrors"), nullptr);
  EXPECT_EQ(find_counter(parsed.rows, "Tcp", "OutRsts")->value, 2);
}

TEST(ParseCounters, IcmpMsgTwiceIsMergedAndAbsentIsFine) {
  const auto twice = proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-icmpmsg-twice"));
  EXPECT_TRUE(twice.issues.empty());
  EXPECT_EQ(find_counter(twice.rows, "IcmpMsg", "InType3")->value, 1);
  EXPECT_EQ(find_counter(twice.rows, "IcmpMsg", "OutType8")->value, 2);
  const auto absent = proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-icmpmsg-absent"));
  EXPECT_TRUE(absent.issues.empty());
  EXPECT_EQ(find_counter(absent.rows, "IcmpMsg", "InType3"), nullptr);
  EXPECT_NE(find_counter(absent.rows, "Tcp", "InSegs"), nullptr);
}

TEST(ParseCounters, BadValueHeaderWithoutValuesAndTruncationAreSkipped) {
  const auto bad = proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-bad-value"));
  ASSERT_EQ(bad.issues.size(), 1U);
  EXPECT_EQ(find_counter(bad.rows, "Udp", "InDatagrams"), nullptr);
  EXPECT_NE(find_counter(bad.rows, "Tcp", "InSegs"), nullptr);
  const auto orphan = proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-header-without-values"));
  ASSERT_EQ(orphan.issues.size(), 1U);
  EXPECT_NE(orphan.issues[0].reason.find("without a values line"), std::string::npos);
  const auto cut = proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-no-final-newline"));
  ASSERT_EQ(cut.issues.size(), 1U);
  EXPECT_EQ(find_counter(cut.rows, "UdpLite", "InDatagrams"), nullptr);
  EXPECT_TRUE(proc::parse_counter_pairs(read_text(samples_dir() / "broken/snmp-not-counters")).error);
}

TEST(ParseCounters, Snmp6SectionsEndAtTheSix) {
  const auto parsed = proc::parse_snmp6(read_text(k_busy / "01/proc/net/snmp6"));
  ASSERT_FALSE(parsed.error);
  EXPECT_TRUE(parsed.issues.empty());
  EXPECT_NE(find_counter(parsed.rows, "Ip6", "InReceives"), nullptr);
  EXPECT_NE(find_counter(parsed.rows, "Icmp6", "InMsgs"), nullptr);
  EXPECT_NE(find_counter(parsed.rows, "Udp6", "InDatagrams"), nullptr);
  EXPECT_NE(find_counter(parsed.rows, "UdpLite6", "InDatagrams"), nullptr);
}

TEST(ParseCounters, SockstatIsAllGauges) {
  const auto parsed = proc::parse_sockstat(read_text(k_busy / "01/proc/net/sockstat"), "Sockstat");
  EXPECT_TRUE(parsed.issues.empty());
  const auto* tw = find_counter(parsed.rows, "Sockstat", "TCP_tw");
  ASSERT_NE(tw, nullptr);
  EXPECT_EQ(tw->value, 80);
  EXPECT_TRUE(std::all_of(parsed.rows.begin(), parsed.rows.end(), [](const auto& c) { return c.is_gauge; }));
  EXPECT_NE(find_counter(parsed.rows, "Sockstat", "sockets_used"), nullptr);
  const auto odd = proc::parse_sockstat(read_text(samples_dir() / "broken/sockstat-odd-fields"), "Sockstat");
  ASSERT_EQ(odd.issues.size(), 1U);
  EXPECT_EQ(odd.issues[0].line, 2U);
  EXPECT_EQ(odd.rows.size(), 3U);
}

TEST(ParseProcess, StatWithParenthesesInComm) {
  const std::string stat =
      "4864 (a (weird) name) S 1 4864 4864 0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 130456 2457600 300\n";
  const auto fields = proc::parse_pid_stat(stat);
  ASSERT_TRUE(fields);
  EXPECT_EQ(fields->comm, "a (weird) name");
  EXPECT_EQ(fields->start_ticks, 130456U);
  EXPECT_FALSE(proc::parse_pid_stat("4864 (x) S 1 2"));
}

TEST(ParseProcess, RealStatusAndLinks) {
  const auto dir = k_busy / "01/proc/4864";
  EXPECT_EQ(proc::parse_status_euid(read_text(dir / "status")), 0U);
  EXPECT_EQ(proc::socket_inode_of_link("socket:[24025]"), 24025U);
  EXPECT_FALSE(proc::socket_inode_of_link("pipe:[24025]"));
  EXPECT_FALSE(proc::socket_inode_of_link("socket:[24x]"));
  EXPECT_EQ(proc::format_cmdline(std::string("a\0b c\0", 6)), "a b c");
}
