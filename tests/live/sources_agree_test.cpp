// One moment of one machine, recorded three ways, reads the same: a sosreport's copies of /proc/net,
// its ss -peaonmi and its netstat -W -neopa, each imported as a host of its own, hold the same
// sockets, families, states and owners, and `sockhist diff` between any two finds no difference.
// The population (a private network namespace) has what tripped the importers before: a
// dual-stack listener (ss prints it as `*`), a socket two processes share, and a process whose
// command line's first word holds spaces (netstat's PID/Program name, as sshd's titles do).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "files.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sosreport.hpp"

using namespace sockhist::test;

namespace {

const std::string k_sockhist = SOCKHIST_ANALYZER_BIN;
constexpr const char* k_at = "2026-11-20T03:12:00Z";

// A listener or bound socket on `port`: IPv6 any taking IPv4 too, or IPv4 loopback.
int bound_socket(int type, int port, bool dual_stack) {
  const int fd = ::socket(dual_stack ? AF_INET6 : AF_INET, type, 0);
  int off = 0, on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  int rc = -1;
  if (dual_stack) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<std::uint16_t>(port));
    a.sin6_addr = in6addr_any;
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0 || (type == SOCK_STREAM && ::listen(fd, 8) != 0)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The sockets of `host`'s snapshot, one line each, by the fields every one of the three formats
// carries: protocol, family, addresses, ports, state, inode and owner pid.
std::string sockets_of(const std::string& db, const std::string& host) {
  SQLite::Database conn(db, SQLite::OPEN_READONLY);
  SQLite::Statement q(conn,
                      "SELECT proto, coalesce(family, ''), local_addr, coalesce(local_port, ''), "
                      "coalesce(remote_addr, ''), coalesce(remote_port, ''), state, inode, coalesce(pid, '') "
                      "FROM v_snapshot_sockets WHERE host = ? ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9");
  q.bind(1, host);
  std::string out;
  while (q.executeStep()) {
    for (int i = 0; i < 9; ++i) {
      out += q.getColumn(i).getString() + (i == 8 ? "\n" : " ");
    }
  }
  return out;
}

TEST(SourcesAgree, ASosreportMomentFromProcCopiesSsAndNetstatDiffsClean) {
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root; CI runs it): " << why;
  }
  ASSERT_FALSE(find_tool("netstat").empty() || find_tool("ss").empty()) << "installed by dev.sh";
  const auto dir = scratch_dir("sources-agree");
  auto population = make_population(dir.string());
  const int dual = bound_socket(SOCK_STREAM, 18500, true);
  const int shared = bound_socket(SOCK_STREAM, 18501, false);
  const int own = bound_socket(SOCK_DGRAM, 18502, false);
  ASSERT_TRUE(dual >= 0 && shared >= 0 && own >= 0) << "ports 18500-18502 in the private namespace";
  // The child shares every socket of this process (the lower pid owns them in every source) and
  // alone holds `own`, under a command line whose first word has spaces; ss names it by its comm.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl("/bin/sleep", "sockhist-t: core [priv]", "600", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(own);
  ::usleep(200'000);  // the child's exec

  const auto report = dir / "sosreport-h1";
  const auto saved = save_host_report(report, "h1", true);
  const std::string db = (dir / "three.db").string();
  const std::string net = (report / "sos_commands/networking").string();
  const auto from_report = run(k_sockhist, {"import", "sosreport", report.string(), "--db", db, "--at", k_at});
  const auto from_ss =
      run(k_sockhist, {"import", "ss", net + "/ss_-peaonmi", "--db", db, "--host", "h1-ss", "--at", k_at});
  const auto from_netstat = run(
      k_sockhist, {"import", "netstat", net + "/netstat_-W_-neopa", "--db", db, "--host", "h1-netstat", "--at", k_at});
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(dual);
  ::close(shared);
  ASSERT_EQ(saved, "");
  ASSERT_EQ(from_report.exit_code, 0) << from_report.err;
  ASSERT_EQ(from_ss.exit_code, 0) << from_ss.err;
  ASSERT_EQ(from_netstat.exit_code, 0) << from_netstat.err;
  EXPECT_NE(from_report.out.find("owners from ss -anpoe"), std::string::npos) << from_report.out;

  // Field by field: the same sockets with the same families, states, inodes and owners.
  const auto proc = sockets_of(db, "h1"), ss = sockets_of(db, "h1-ss"), netstat = sockets_of(db, "h1-netstat");
  EXPECT_EQ(ss, proc);
  EXPECT_EQ(netstat, proc);
  EXPECT_NE(proc.find("tcp 6 :: 18500 :: 0 LISTEN"), std::string::npos) << "the dual-stack listener:\n" << proc;
  EXPECT_NE(proc.find("udp 4 127.0.0.1 18502 0.0.0.0 0 CLOSE"), std::string::npos) << proc;
  EXPECT_NE(proc.find(fmt::format(" {}\n", child)), std::string::npos) << "the child's own socket:\n" << proc;
  EXPECT_GE(std::count(proc.begin(), proc.end(), '\n'), 15);

  // diff between any two, owners by pid (ss names the child "sleep", netstat by its command line).
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"h1", "h1-ss"}, {"h1", "h1-netstat"}, {"h1-ss", "h1-netstat"}}) {
    const auto d = run(k_sockhist, {"diff", "--db", db, "--host", a, "--host", b, "--at", k_at, "--owners", "pid"});
    EXPECT_EQ(d.exit_code, 0) << a << " against " << b << ":\n" << d.out << d.err;
  }
  // By name, the one difference is what each tool calls the child: "sleep" and its command line.
  const auto by_name = run(k_sockhist, {"diff", "--db", db, "--host", "h1-ss", "--host", "h1-netstat", "--at", k_at,
                                        "--format", "csv", "--top", "0"});
  EXPECT_EQ(by_name.exit_code, 1) << by_name.err;
  EXPECT_NE(by_name.out.find("process only on one side,sleep,1,0"), std::string::npos) << by_name.out;
  // (netstat cut "pid/sockhist-t: core [priv]" to 19 characters, so how much of it is left depends on the pid)
  EXPECT_NE(by_name.out.find("process only on one side,sockhist-t: c"), std::string::npos) << by_name.out;
  EXPECT_EQ(std::count(by_name.out.begin(), by_name.out.end(), '\n'), 3) << "only those two:\n" << by_name.out;
  finish_time_wait(population);
}

}  // namespace
