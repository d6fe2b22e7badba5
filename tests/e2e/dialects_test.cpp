// Listings of other tool versions (samples/dialects, written here from those versions' formats, or
// printed by their own code): ss of iproute2 3.10 to 6.x, netstat's program names and cut
// addresses, and netstat -s of net-tools 1.60 to 2.10, each read as it means or refused in one
// line, never stored as a guess.
#include <gtest/gtest.h>
#include <unistd.h>

#include <map>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "files.hpp"
#include "process.hpp"
#include "sockhist/error.hpp"
#include "sockhist/import.hpp"
#include "sockhist/proc.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

const std::string k_sockhist = SOCKHIST_ANALYZER_BIN;

// A listing of samples/dialects imported quietly as `host`, at one moment.
Result import_dialect(const std::string& kind, const std::string& file, const std::string& db,
                      const std::string& host) {
  return run(k_sockhist, {"import", kind, file, "--db", db, "--host", host, "--at", "2026-11-20T03:12:00Z", "-q"});
}

// An ss listing imported as `host` at one moment, with `more` options (--proto, --state, -q).
Result import_ss(const std::string& file, const std::string& db, const std::string& host,
                 std::vector<std::string> more) {
  std::vector<std::string> args{"import", "ss", file, "--db", db, "--host", host, "--at", "2026-11-20T03:12:00Z"};
  args.insert(args.end(), more.begin(), more.end());
  return run(k_sockhist, args);
}

// The rows of a query as CSV.
std::string csv(const std::string& db, const std::string& sql) {
  return run(k_sockhist, {"sql", "--db", db, "--format", "csv", sql}).out;
}

// ss listings of other iproute2 versions (samples/dialects, written from the format strings of
// those versions): the old owner form, the two meanings of `*`, a scoped link-local address, and
// the kernel addresses old ss printed as sk:. Before: owners dropped, `*` always IPv4, the scoped
// address refused, a kernel address stored as a cookie.
TEST(Dialects, SsListingsOfOtherVersionsReadAsTheyMean) {
  const auto dir = scratch_dir("import-dialects-" + std::to_string(::getpid()));
  const auto db = (dir / "d.db").string();
  std::map<std::string, std::string> said;
  for (const std::string name :
       {"ss-tanp-iproute2-3.12", "ss-tanpe-iproute2-3.12", "ss-tanp-iproute2-5.10", "ss-tuanp-iproute2-5.10-scoped"}) {
    const auto r = run(k_sockhist, {"import", "ss", (samples_dir() / "dialects" / (name + ".txt")).string(), "--db", db,
                                    "--host", name, "--at", "2026-11-20T03:12:00Z", "-q"});
    ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
    said[name] = r.err;
  }
  const auto rows = run(k_sockhist, {"sql", "--db", db, "--format", "csv",
                                     "SELECT host, proto, family, local_addr, local_port, state, pid, process, cookie "
                                     "FROM v_snapshot_sockets ORDER BY host, rowid"});
  ASSERT_EQ(rows.exit_code, 0) << rows.err;
  EXPECT_EQ(rows.out,
            "host,proto,family,local_addr,local_port,state,pid,process,cookie\r\n"
            // iproute2 3.12: ("sshd",1231,3) owners; `*` is IPv4 any, `:::22` IPv6 any; of two owners, the first.
            "ss-tanp-iproute2-3.12,tcp,4,0.0.0.0,22,LISTEN,1231,sshd,\r\n"
            "ss-tanp-iproute2-3.12,tcp,6,::,22,LISTEN,1231,sshd,\r\n"
            "ss-tanp-iproute2-3.12,tcp,4,127.0.0.1,25,LISTEN,1402,master,\r\n"
            "ss-tanp-iproute2-3.12,tcp,4,10.0.2.15,22,ESTABLISHED,1864,sshd,\r\n"
            "ss-tanp-iproute2-3.12,tcp,4,10.0.2.15,41822,TIME_WAIT,,,\r\n"
            // iproute2 5.10: `*` is a dual-stack IPv6 listener beside 0.0.0.0 and [::].
            "ss-tanp-iproute2-5.10,tcp,4,0.0.0.0,22,LISTEN,612,sshd,\r\n"
            "ss-tanp-iproute2-5.10,tcp,6,::,80,LISTEN,700,apache2,\r\n"
            "ss-tanp-iproute2-5.10,tcp,6,::,22,LISTEN,612,sshd,\r\n"
            "ss-tanp-iproute2-5.10,tcp,6,::ffff:10.0.2.15,80,ESTABLISHED,701,apache2,\r\n"
            // Shared after fork, listed 2210 first: the lowest pid, as the collector and netstat -p.
            "ss-tanp-iproute2-5.10,tcp,4,10.0.2.15,5432,ESTABLISHED,1190,postgres,\r\n"
            // sk:ffff88... is where the socket was in kernel memory: no cookie.
            "ss-tanpe-iproute2-3.12,tcp,4,0.0.0.0,22,LISTEN,1231,sshd,\r\n"
            "ss-tanpe-iproute2-3.12,tcp,4,10.0.2.15,22,ESTABLISHED,1864,sshd,\r\n"
            // [fe80::...]%eth0:123: the scope is not kept, as the kernel's own tables do not print it.
            "ss-tuanp-iproute2-5.10-scoped,udp,6,fe80::9cc5:aeff:fec5:34ae,123,CLOSE,800,ntpd,\r\n"
            "ss-tuanp-iproute2-5.10-scoped,udp,4,127.0.0.53,53,CLOSE,420,systemd-resolve,\r\n"
            "ss-tuanp-iproute2-5.10-scoped,tcp,4,0.0.0.0,22,LISTEN,612,sshd,\r\n");
  const auto file = [&](const std::string& name) { return (samples_dir() / "dialects" / (name + ".txt")).string(); };
  EXPECT_EQ(said["ss-tanp-iproute2-3.12"],
            file("ss-tanp-iproute2-3.12") +
                ": * read as IPv4 any (this ss prints IPv6 any as :::, as iproute2 before 4.13)\n");
  EXPECT_EQ(said["ss-tanp-iproute2-5.10"], file("ss-tanp-iproute2-5.10") +
                                               ": * read as an IPv6 socket that also takes IPv4 (this ss prints "
                                               "0.0.0.0 and [::] for any, as iproute2 since 4.14)\n");
  EXPECT_NE(said["ss-tanpe-iproute2-3.12"].find(
                ": 2 sk: values are kernel addresses (ss before socket cookies, kernel 4.1), not cookies"),
            std::string::npos)
      << said["ss-tanpe-iproute2-3.12"];
  EXPECT_EQ(said["ss-tuanp-iproute2-5.10-scoped"], "");
  // Each snapshot's source says which iproute2 printed it, as far as the listing tells.
  EXPECT_EQ(csv(db, "SELECT host, source FROM v_snapshots ORDER BY host"),
            "host,source\r\n"
            "ss-tanp-iproute2-3.12,ss (iproute2 before 3.14)\r\n"
            "ss-tanp-iproute2-5.10,ss (iproute2 4.14 or later)\r\n"
            "ss-tanpe-iproute2-3.12,ss (iproute2 before 3.14)\r\n"
            "ss-tuanp-iproute2-5.10-scoped,ss (iproute2 4.14 or later)\r\n");
  EXPECT_EQ(csv(db,
                "SELECT message FROM diagnostics d JOIN v_snapshots s USING (snapshot_id) WHERE d.line = 0 AND "
                "s.host = 'ss-tanp-iproute2-3.12' AND message LIKE 'read as %'"),
            "message\r\n"
            "\"read as ss of iproute2 before 3.14: owners as (\"\"name\"\",pid,fd), IPv6 any as :::\"\r\n");
}

// RHEL 6's ss (iproute 2.6.32) prints as 3.10 does: the old owner form, `*` and `:::` for any, and
// -o's timers, which it put before the owners.
TEST(Dialects, SsOfRhel6ReadsAsIproute2Before314) {
  const auto dir = scratch_dir("import-rhel6-" + std::to_string(::getpid()));
  const auto db = (dir / "r.db").string();
  const auto r = import_ss((samples_dir() / "dialects" / "ss-tanpo-iproute2-2.6.32.txt").string(), db, "rhel6", {"-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(csv(db,
                "SELECT source, proto, family, local_addr, local_port, state, pid, process, timer, timer_ms "
                "FROM v_snapshot_sockets sk JOIN v_snapshots USING (snapshot_id) ORDER BY sk.rowid"),
            "source,proto,family,local_addr,local_port,state,pid,process,timer,timer_ms\r\n"
            "ss (iproute2 before 3.14),tcp,6,::,22,LISTEN,1502,sshd,off,0\r\n"
            "ss (iproute2 before 3.14),tcp,4,0.0.0.0,22,LISTEN,1502,sshd,off,0\r\n"
            "ss (iproute2 before 3.14),tcp,4,10.0.2.15,22,ESTABLISHED,2210,sshd,keepalive,7080000\r\n"
            "ss (iproute2 before 3.14),tcp,4,10.0.2.15,44128,TIME_WAIT,,,timewait,52000\r\n");
}

// ss of one state prints no State column (ss -tanp state close-wait, as pasted into a ticket about
// a leak), and ss of one UNIX type no Netid column (ss -xanp -A unix_stream): each is read with what
// the user says it was, and refused in one line without it. Before, neither was taken for a listing.
TEST(Dialects, SsOfOneStateOrOneUnixTypeIsReadWithWhatItLeavesOut) {
  const auto dir = scratch_dir("import-one-state-" + std::to_string(::getpid()));
  const auto db = (dir / "s.db").string();
  const auto close_wait = (samples_dir() / "dialects" / "ss-tanp-state-close-wait-iproute2-5.10.txt").string();
  const auto unix_stream = (samples_dir() / "dialects" / "ss-xanp-A-unix_stream-iproute2-6.1.txt").string();
  const auto import = [&](const std::string& file, const std::string& host, std::vector<std::string> more) {
    return import_ss(file, db, host, std::move(more));
  };
  auto r = import(close_wait, "cw", {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "sockhist: error: " + close_wait +
                       ":1: no State column: ss prints none when it lists one state (ss state established); say "
                       "which with --state\n");
  r = import(unix_stream, "ux", {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "sockhist: error: " + unix_stream +
                       ":2: UNIX rows without a Netid column (ss -A unix_stream): their type is not printed; say "
                       "which with --proto unix_stream, unix_dgram or unix_seqpacket\n");
  EXPECT_FALSE(std::filesystem::exists(db)) << "a refused listing created the database";
  r = import(close_wait, "cw", {"--state", "close-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("ss -tanp (one state: CLOSE-WAIT) listing of iproute2 4.13 or later: 4 sockets"),
            std::string::npos)
      << r.out;
  r = import(unix_stream, "ux", {"--proto", "unix_stream"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(csv(db,
                "SELECT host, proto, family, local_addr, local_port, remote_addr, remote_port, state, sock_type, "
                "rx_queue, pid, process FROM v_snapshot_sockets ORDER BY host, rowid"),
            "host,proto,family,local_addr,local_port,remote_addr,remote_port,state,sock_type,rx_queue,pid,process\r\n"
            "cw,tcp,4,10.0.2.15,8080,10.0.2.20,51234,CLOSE_WAIT,,517,2100,api\r\n"
            "cw,tcp,4,10.0.2.15,8080,10.0.2.20,51240,CLOSE_WAIT,,0,2100,api\r\n"
            "cw,tcp,4,10.0.2.15,8080,10.0.2.21,40112,CLOSE_WAIT,,1,2100,api\r\n"
            "cw,tcp,6,::ffff:10.0.2.15,9090,::ffff:10.0.2.30,60001,CLOSE_WAIT,,0,2210,exporter\r\n"
            "ux,unix,,/run/systemd/private,,,,LISTENING,stream,0,1,systemd\r\n"
            "ux,unix,,/run/php/php8.2-fpm.sock,,,,LISTENING,stream,0,711,php-fpm8.2\r\n"
            "ux,unix,,,,,,CONNECTED,stream,0,802,nginx\r\n"
            "ux,unix,,/run/php/php8.2-fpm.sock,,,,CONNECTED,stream,0,733,php-fpm8.2\r\n");
  // --state where the listing has a State column, --proto where it has a Netid column: refused.
  r = import(unix_stream, "ux2", {"--proto", "unix_stream", "--state", "established"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--state: " + unix_stream + " has a State column"), std::string::npos) << r.err;
}

// ss of one protocol prints no Netid column. Before, `ss -uanp` was stored as TCP in state CLOSE.
TEST(Dialects, SsOfOneProtocolIsToldByItsRowsOrByProto) {
  const auto dir = scratch_dir("import-one-protocol-" + std::to_string(::getpid()));
  const auto db = (dir / "p.db").string();
  const auto udp = (samples_dir() / "dialects" / "ss-uanp-iproute2-4.15.txt").string();
  const auto estab = (samples_dir() / "dialects" / "ss-np-estab-only-iproute2-4.15.txt").string();
  const auto import = [&](const std::string& file, const std::string& host, std::vector<std::string> more) {
    return import_ss(file, db, host, std::move(more));
  };
  auto r = import(udp, "u", {"-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, udp +
                       ": no Netid column, UNCONN rows and no TCP-only state: read as ss -u (UDP); give --proto "
                       "tcp if it was ss -t\n");
  r = import(estab, "e", {});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "sockhist: error: " + estab +
                       ": no Netid column and only ESTAB rows: ss -t and ss -u print them alike; say which with "
                       "--proto tcp or --proto udp\n");
  r = import(estab, "e", {"--proto", "tcp", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(import(estab, "f", {"--proto", "udp", "-q"}).exit_code, 0);
  const auto rows = run(k_sockhist, {"sql", "--db", db, "--format", "csv",
                                     "SELECT s.host, v.proto, v.state, count(*) FROM v_snapshot_sockets v JOIN "
                                     "v_snapshots s USING (snapshot_id) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"});
  EXPECT_EQ(rows.out,
            "host,proto,state,count(*)\r\n"
            "e,tcp,ESTABLISHED,2\r\n"
            "f,udp,ESTABLISHED,2\r\n"
            "u,udp,CLOSE,4\r\n"
            "u,udp,ESTABLISHED,1\r\n");
  // A TCP listing said to be UDP is refused.
  const auto tcp = (samples_dir() / "dialects" / "ss-tanp-iproute2-3.12.txt").string();
  r = import(tcp, "t", {"--proto", "udp"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--proto udp, but the listing has TCP states"), std::string::npos) << r.err;
}

// net-tools prints PID/Program name into 20 columns, a process title's spaces and all: every
// sosreport's netstat -W -neopa has the admin's own "sshd: core [priv]". Before, the name was cut
// at its space, the -o timer lost (a keepalive stored as off) and UNIX rows given a made-up path.
TEST(Dialects, NetstatProgramNamesWithSpacesKeepTheirRow) {
  const auto dir = scratch_dir("import-progname-" + std::to_string(::getpid()));
  const auto db = (dir / "n.db").string();
  const auto listing = (samples_dir() / "dialects" / "netstat-W-neopa-net-tools-2.10.txt").string();
  const auto r = import_dialect("netstat", listing, db, "n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(csv(db,
                "SELECT proto, local_addr, state, pid, process, timer, timer_ms, inode FROM v_snapshot_sockets "
                "ORDER BY rowid"),
            "proto,local_addr,state,pid,process,timer,timer_ms,inode\r\n"
            "tcp,0.0.0.0,LISTEN,1020,sshd: /usr/sbi,off,0,21455\r\n"
            "tcp,10.0.2.15,ESTABLISHED,3002,sshd: core [pr,on,210,41567\r\n"
            "tcp,10.0.2.15,ESTABLISHED,3105,sshd: core@pts,keepalive,7107470,41890\r\n"
            "tcp,::,LISTEN,1187,pgpool: watchd,off,0,23001\r\n"
            "unix,/tmp/.s.PGSQL.5432,LISTENING,1187,pgpool: watchd,off,0,23002\r\n"
            "unix,,CONNECTED,3002,sshd: core [pr,off,0,41570\r\n");
}

// Without -W, netstat cuts an IPv6 address so that address:port fits 23 columns. Before, the cut
// address was stored as if whole (2a02:2f0a:c10f:97); now a cut one, and one that fills the 23
// columns and so may be cut, skip their line with the reason, never a wrong address.
TEST(Dialects, NetstatWithoutWideNeverStoresACutAddress) {
  const auto dir = scratch_dir("import-narrow-" + std::to_string(::getpid()));
  const auto db = (dir / "w.db").string();
  const auto listing = (samples_dir() / "dialects" / "netstat-tanp-net-tools-2.10-narrow.txt").string();
  const auto r = import_dialect("netstat", listing, db, "w");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, listing +
                       ":5: 2a02:2f0a:c10f:97:55754 is an IPv6 address cut to 23 columns (netstat without -W) (line "
                       "skipped)\n" +
                       listing +
                       ":6: 2001:db8:0:1:0:0:0:1:80 fills the 23 columns netstat without -W cuts IPv6 addresses to: "
                       "it may be cut (line skipped)\n");
  EXPECT_EQ(csv(db,
                "SELECT local_addr, local_port, remote_addr, remote_port FROM v_snapshot_sockets "
                "ORDER BY rowid"),
            "local_addr,local_port,remote_addr,remote_port\r\n"
            "0.0.0.0,22,0.0.0.0,0\r\n"
            "::,22,::,0\r\n"
            "::1,5432,::1,41000\r\n");
  // The same endpoints in a wide listing (one endpoint over 23 columns shows it) are whole.
  write_text(dir / "wide.txt",
             "Active Internet connections (servers and established)\n"
             "Proto Recv-Q Send-Q Local Address           Foreign Address         State\n"
             "tcp6       0      0 2001:db8:0:1:0:0:0:1:80 2001:db8::2:51000       ESTABLISHED\n"
             "tcp6       0      0 2a02:2f0a:c10f:97::1:55754 2a00:1450:4001:829::200e:443 "
             "ESTABLISHED\n");
  const auto wide = import_dialect("netstat", (dir / "wide.txt").string(), db, "x");
  ASSERT_EQ(wide.exit_code, 0) << wide.err;
  EXPECT_EQ(wide.err, "");
}

// netstat -s of each net-tools version in samples/dialects (printed by that version's own
// statistics.c from the counters in samples/dialects/netstat-s-counters): the version is
// recognised, and every counter read back has the value it printed. Before, 1.60's and 2013's
// "active connections openings", "segments send out", "segments retransmited", "bad segments
// received." and "packets to unknown port received." were not read (ActiveOpens, OutSegs,
// RetransSegs, InErrs and NoPorts missing), and FragOKs 4 and OutEchos 3 were stored as 0.
TEST(Dialects, NetstatSOfEveryNetToolsVersionReadsBackWhatItPrinted) {
  const auto samples = samples_dir() / "dialects";
  const auto truth = [&](const char* kernel) {
    std::map<std::string, std::int64_t> out;
    for (const char* file : {"snmp", "netstat"}) {
      for (const auto& c : proc::parse_counter_pairs(read_text(samples / "netstat-s-counters" / kernel / file)).rows) {
        out[c.section + "." + c.name] = c.value;
      }
    }
    return out;
  };
  struct Case {
    const char* file;
    const char* kernel;
    const char* dialect;
    std::size_t at_least;  // counters read
  };
  for (const auto& c : std::vector<Case>{
           {"netstat-s-net-tools-1.60.txt", "older-kernel", "net-tools 1.60", 140},
           {"netstat-s-net-tools-2.0-2013.txt", "older-kernel", "net-tools 2.0 of 2013", 115},
           {"netstat-s-net-tools-2015-2019.txt", "newer-kernel", "net-tools 2015-2019", 115},
           {"netstat-s-net-tools-2.10.txt", "newer-kernel", "net-tools 2.10", 115},
       }) {
    const auto want = truth(c.kernel);
    const auto parsed = import::parse_netstat_statistics(read_text(samples / c.file));
    ASSERT_FALSE(parsed.counters.error) << c.file << ": " << *parsed.counters.error;
    EXPECT_EQ(parsed.dialect, c.dialect) << c.file;
    std::map<std::string, std::int64_t> got;
    for (const auto& counter : parsed.counters.rows) {
      const auto key = counter.section + "." + counter.name;
      got[key] = counter.value;
      const auto it = want.find(key);
      ASSERT_NE(it, want.end()) << c.file << ": " << key << " is not a counter of the kernel it was printed from";
      EXPECT_EQ(counter.value, it->second) << c.file << ": " << key;
    }
    EXPECT_GE(got.size(), c.at_least) << c.file;
    for (const char* key : {"Tcp.ActiveOpens", "Tcp.OutSegs", "Tcp.RetransSegs", "Tcp.InErrs", "Udp.NoPorts",
                            "Ip.FragOKs", "Icmp.OutEchos", "TcpExt.PAWSEstab", "TcpExt.TW"}) {
      EXPECT_EQ(got.count(key), 1U) << c.file << ": " << key << " not read";
    }
    std::string issues;
    for (const auto& i : parsed.counters.issues) {
      issues += std::to_string(i.line) + ": " + i.reason + "\n";
    }
    if (std::string(c.dialect) == "net-tools 1.60") {
      // 1.60 printed counters with %d: InOctets, 3,000,000,000, came out negative. Not stored.
      EXPECT_EQ(got.count("IpExt.InOctets"), 0U);
      EXPECT_NE(issues.find("'InOctets: -1294967296': printed negative"), std::string::npos) << issues;
      EXPECT_EQ(parsed.notes.size(), 1U);
      EXPECT_EQ(got["TcpExt.TCPPrequeued"], 1201);
    } else {
      EXPECT_EQ(issues, "") << c.file;
      EXPECT_TRUE(parsed.notes.empty()) << c.file;
    }
    if (std::string(c.kernel) == "older-kernel") {
      EXPECT_EQ(got["TcpExt.TCPDSACKRecv"], 14) << c.file;
      EXPECT_EQ(got["TcpExt.TCPDirectCopyFromPrequeue"], 88102) << c.file;
    }
    // Zeros filled in for lines left out: ListenDrops was 0 and is not printed by any version.
    EXPECT_EQ(got.count("TcpExt.ListenDrops"), 1U) << c.file;
    EXPECT_GT(parsed.zeros, 0U) << c.file;
  }
}

// A listing that fits two versions alike (the lines that differ were left out, being zero) says so,
// and only zeros both versions leave out are filled in.
TEST(Dialects, NetstatSThatFitsTwoVersionsNamesBoth) {
  const auto parsed = import::parse_netstat_statistics(
      "Ip:\n"
      "    892 total packets received\n"
      "Tcp:\n"
      "    12 active connection openings\n"
      "    950 segments sent out\n"
      "    2 segments retransmitted\n");
  ASSERT_FALSE(parsed.counters.error);
  EXPECT_EQ(parsed.dialect, "net-tools 2015-2019 or 2.10");
  std::map<std::string, std::int64_t> got;
  for (const auto& c : parsed.counters.rows) {
    got[c.section + "." + c.name] = c.value;
  }
  EXPECT_EQ(got["Tcp.RetransSegs"], 2);
  EXPECT_EQ(got.count("Ip.FragOKs"), 1U) << "both versions leave FragOKs out at zero";
  EXPECT_EQ(got["Ip.FragOKs"], 0);
}

// netstat -s leaves out counters that are zero, so a section's missing counters are zeros, unless
// a line of that section did not read: it may have been one of them. A line no version prints (a
// vendor's patch, another language) is an issue naming its line.
TEST(Dialects, NetstatSNeverFillsInAZeroWhereALineDidNotRead) {
  const auto parsed = import::parse_netstat_statistics(
      "Ip:\n"
      "    892 total packets received\n"
      "    4 fragments received okay\n"
      "Tcp:\n"
      "    12 active connection openings\n"
      "    3 passive connection openings\n"
      "    0 failed connection attempts\n"
      "    0 connection resets received\n"
      "    1 connections established\n"
      "    900 segments received\n"
      "    950 segments sent out\n"
      "    2 segments retransmitted\n"
      "    0 bad segments received\n"
      "    5 resets sent\n");
  ASSERT_FALSE(parsed.counters.error) << *parsed.counters.error;
  std::map<std::string, std::int64_t> got;
  for (const auto& c : parsed.counters.rows) {
    got[c.section + "." + c.name] = c.value;
  }
  EXPECT_EQ(got["Ip.InReceives"], 892);
  EXPECT_EQ(got.count("Ip.FragOKs"), 0U) << "a zero filled in where a line did not read";
  EXPECT_EQ(got.count("Ip.FragCreates"), 0U);
  EXPECT_EQ(got["Tcp.RetransSegs"], 2);
  std::string issues;
  for (const auto& i : parsed.counters.issues) {
    issues += std::to_string(i.line) + ": " + i.reason + "\n";
  }
  EXPECT_EQ(issues,
            "3: '4 fragments received okay' is not a line net-tools 2015-2019 or 2.10's netstat -s prints\n"
            "0: Ip: a line did not read, so the counters netstat leaves out when zero are not taken to be zero "
            "there (unknown)\n");
}

}  // namespace

namespace {

// ss -H prints no header (scripts and monitoring use it): the columns are read from the first row,
// said, and a listing of one state still needs --state. Before, it was refused as not a listing.
TEST(Dialects, SsWithoutAHeaderIsReadByItsFirstRow) {
  const auto one_type = import::parse_listing(
      "LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=612,fd=3))\n"
      "ESTAB  0      52         10.0.2.15:22       10.0.2.2:51234 users:((\"sshd\",pid=1864,fd=4))\n",
      "ss-Htanp.txt");
  EXPECT_EQ(one_type.tool, "ss");
  ASSERT_EQ(one_type.sockets.size(), 2U);
  EXPECT_EQ(one_type.sockets[1].pid, 1864);
  ASSERT_EQ(one_type.diagnostics.size(), 1U);
  EXPECT_EQ(one_type.diagnostics[0].message, "no header (ss -H): its columns read from its first row");
  const auto all = import::parse_listing(
      "tcp   LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n"
      "udp   UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:*\n"
      "u_str ESTAB  0 0 /run/dbus/system_bus_socket 21011 * 21010\n",
      "ss-Hna.txt");
  ASSERT_EQ(all.sockets.size(), 3U);
  EXPECT_EQ(all.sockets[1].proto, model::Proto::udp);
  EXPECT_EQ(all.sockets[2].proto, model::Proto::unix_domain);
  EXPECT_THROW(import::parse_listing("0 0 10.0.2.15:22 10.0.2.2:51234\n", "ss-Htn-state.txt"), Error);
  import::SsColumns given;
  given.netid = "tcp";
  given.state = "ESTAB";
  const auto one_state = import::parse_ss("0 0 10.0.2.15:22 10.0.2.2:51234\n", "ss-Htn-state.txt", given);
  ASSERT_EQ(one_state.sockets.size(), 1U);
  EXPECT_EQ(one_state.sockets[0].state, model::SockState::established);
  EXPECT_EQ(one_state.dialect, "iproute2 4.8 or later") << "-H came in 4.8";
  EXPECT_EQ(one_type.dialect, "iproute2 4.14 or later");
}

// Every line of a listing is stored, or skipped with its file, line and reason, or counted as a
// socket of another family: a netstat listing pasted from its column header on (before, every row
// was dropped for want of an "Active ..." line) with a Bluetooth section, and an ss -i listing whose
// second lines follow a row that does not read.
TEST(Dialects, EveryLineIsStoredSkippedWithItsReasonOrCounted) {
  const auto netstat = import::parse_netstat(
      "Proto Recv-Q Send-Q Local Address           Foreign Address         State\n"
      "tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN\n"
      "tcp        0      0 10.0.2.15:22            10.0.2.2:51000          ESTABLISHED\n"
      "Active Bluetooth connections (servers and established)\n"
      "Proto  Destination       Source            State         PSM DCID   SCID      IMTU    OMTU Security\n"
      "l2cap  00:00:00:00:00:00 00:1A:7D:DA:71:13 LISTEN        25  0x0000 0x0000    672     0    low\n",
      "pasted.txt");
  EXPECT_EQ(netstat.sockets.size(), 2U);
  EXPECT_EQ(netstat.other_families, 1U);
  EXPECT_EQ(netstat.skipped_lines, 0U);
  const auto ss = import::parse_ss(
      "State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
      "ESTAB  0      0      10.0.2.15:22       10.0.2.2:51000\n"
      "\t cubic wscale:6,7 rto:204 rtt:0.5/0.25 mss:1448\n"
      "ESTAB  0      0      host.example:22    10.0.2.2:51002\n"
      "\t cubic wscale:6,7 rto:204 rtt:0.7/0.3 mss:1448\n",
      "ss-i.txt");
  EXPECT_EQ(ss.sockets.size(), 1U);
  std::string said;
  for (const auto& d : ss.diagnostics) {
    said += fmt::format("{}:{}: {}\n", d.file, d.line, d.message);
  }
  EXPECT_EQ(said,
            "ss-i.txt:4: an address is not numeric (ss -n)\n"
            "ss-i.txt:5: continues a row that was skipped, or no row\n");
  const auto counters = import::parse_netstat_statistics(
      "Tcp:\n"
      "    12 active connection openings\n"
      "    some words without a value\n");
  ASSERT_EQ(counters.counters.issues.size(), 1U);
  EXPECT_EQ(counters.counters.issues[0].line, 3U);
  EXPECT_EQ(counters.counters.issues[0].reason, "'some words without a value' has no value and is not a subheading");
}

}  // namespace
