// Hostile inputs: a copied /proc tree, an unpacked sosreport, a listing or a query file, handed over
// by another user (created by the test) who planted links that leave the tree, FIFOs, devices and
// huge sparse files in them. Nothing outside what was given may be read, nothing may hang or eat the
// memory, each refusal names the file in one line, and a refusal stores nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "hostile_fixture.hpp"

using namespace sockhist::test;

namespace {

class HostileInputs : public Hostile {
 protected:
  // A copy of `sample` in the neighbour's directory, owned by the neighbour (who then plants).
  std::filesystem::path give_copy(const std::filesystem::path& sample, const std::string& name) {
    const auto to = m_dir / name;
    EXPECT_EQ(run("/bin/cp", {"-a", sample.string(), to.string()}).exit_code, 0);
    EXPECT_EQ(run("/bin/chown", {"-R", "-h", m_neighbour->name(), to.string()}).exit_code, 0);
    return to;
  }

  // A database of root's with one snapshot in it, and its bytes, to compare after a refusal.
  std::filesystem::path root_database(const std::string& name) {
    const auto db = std::filesystem::path(m_shared->path()) / name;
    EXPECT_EQ(run(k_collect, {"--db", db.string(), "--quiet"}).exit_code, 0);
    return db;
  }

  static std::string bytes_of(const std::filesystem::path& db) {
    std::string all = read_text(db);
    if (std::filesystem::exists(db.string() + "-wal")) {
      all += read_text(db.string() + "-wal");
    }
    return all;
  }

  std::filesystem::path tree_sample() const { return samples_dir() / "history-busy" / "00" / "proc"; }
  std::filesystem::path sosreport_sample() const { return samples_dir() / "sosreport-web3"; }
};

TEST_F(HostileInputs, ACopiedTreesLinksThatLeaveItAreRefusedAndNamed) {
  const auto db = root_database("tree.db");
  const auto before = bytes_of(db);
  const auto collect_tree = [&](const std::filesystem::path& tree) {
    return run(k_collect, {"--db", db.string(), "--proc-root", tree.string(), "--quiet"});
  };
  // An absolute link: the secret would have been stored as the host's name.
  const auto absolute = give_copy(tree_sample(), "absolute");
  as_neighbour(fmt::format("ln -sf {} {}/sys/kernel/hostname", m_secret.string(), absolute.string()));
  expect_refused(collect_tree(absolute), 5,
                 fmt::format("{}/sys/kernel/hostname: a symbolic link to {}, outside {}; refused", absolute.string(),
                             m_secret.string(), absolute.string()));
  // A relative link whose `..` climbs above the tree.
  const auto climbing = give_copy(tree_sample(), "climbing");
  const auto up = std::filesystem::relative(m_secret, climbing / "sys/kernel/random").string();
  as_neighbour(fmt::format("ln -sf {} {}/sys/kernel/random/boot_id", up, climbing.string()));
  expect_refused(collect_tree(climbing), 5,
                 fmt::format("{}/sys/kernel/random/boot_id: a symbolic link that leads above {}; refused",
                             climbing.string(), climbing.string()));
  // net -> /proc/net: the analyst's own sockets recorded as the customer's.
  const auto own = give_copy(tree_sample(), "own");
  as_neighbour(fmt::format("rm -r {0}/net && ln -s /proc/net {0}/net", own.string()));
  expect_refused(collect_tree(own), 5,
                 fmt::format("{}/net: a symbolic link to /proc/net, outside {}; refused", own.string(), own.string()));
  EXPECT_TRUE(bytes_of(db) == before) << "a refused tree stored something";
  // A link that stays inside the tree is followed, as the kernel's own net -> self/net is.
  const auto inside = give_copy(tree_sample(), "inside");
  as_neighbour(fmt::format("mv {0}/net {0}/self/net2 && ln -s self/../self/net2 {0}/net", inside.string()));
  const auto followed = collect_tree(inside);
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
}

TEST_F(HostileInputs, ASosreportsLinksThatLeaveItAreRefusedAndNamed) {
  const auto db = root_database("sos.db");
  const auto before = bytes_of(db);
  const auto import = [&](const std::filesystem::path& report) {
    return run(k_sockhist, {"import", "sosreport", report.string(), "--db", db.string(), "--quiet"});
  };
  // proc -> /proc: the analyst's machine recorded as the customer's.
  const auto own = give_copy(sosreport_sample(), "own");
  as_neighbour(fmt::format("rm -r {0}/proc && ln -s /proc {0}/proc", own.string()));
  expect_refused(import(own), 2,
                 fmt::format("{}/proc: a symbolic link to /proc, outside {}; refused", own.string(), own.string()));
  // The file sos saved the host name in, a link to root's file: it would have been the host's name.
  const auto secret = give_copy(sosreport_sample(), "secret");
  const auto hostname = secret / "sos_commands/host/hostname";
  as_neighbour(fmt::format("rm {0} && ln -s {1} {0}", hostname.string(), m_secret.string()));
  expect_refused(
      import(secret), 2,
      fmt::format("{}: a symbolic link to {}, outside {}", hostname.string(), m_secret.string(), secret.string()));
  // sos_commands/networking -> / would have walked the whole file system looking for namespaces.
  const auto walk = give_copy(sosreport_sample(), "walk");
  as_neighbour(fmt::format("rm -r {0}/sos_commands/networking && ln -s / {0}/sos_commands/networking", walk.string()));
  expect_refused(import(walk), 2,
                 fmt::format("{}/sos_commands/networking: a symbolic link to /, outside", walk.string()));
  EXPECT_TRUE(bytes_of(db) == before) << "a refused report stored something";
}

TEST_F(HostileInputs, FifosAndDevicesAreRefusedAtOnceAndTheLockIsLetGo) {
  const auto db = root_database("fifo.db");
  const auto before = bytes_of(db);
  // Each of these blocked forever before (and a blocked collector held the writer lock).
  const auto tree = give_copy(tree_sample(), "tree");
  as_neighbour(fmt::format("rm {0}/net/tcp && mkfifo -m 0666 {0}/net/tcp", tree.string()));
  expect_refused(run(k_collect, {"--db", db.string(), "--proc-root", tree.string(), "--quiet"}), 5,
                 tree.string() + "/net/tcp: not a regular file (a FIFO); refused");
  const auto report = give_copy(sosreport_sample(), "report");
  as_neighbour(fmt::format("rm {0}/proc/21036/net/tcp && mkfifo -m 0666 {0}/proc/21036/net/tcp", report.string()));
  expect_refused(run(k_sockhist, {"import", "sosreport", report.string(), "--db", db.string()}), 2,
                 report.string() + "/proc/net/tcp: not a regular file (a FIFO); refused");
  const auto listing = m_dir / "listing.txt";
  as_neighbour(fmt::format("mkfifo -m 0666 {}", listing.string()));
  const std::vector<std::string> import_netstat = {"import", "netstat", "--db", db.string(),
                                                   "--host", "h",       "--at", "2026-11-20T03:12:00Z"};
  auto args = import_netstat;
  args.push_back(listing.string());
  expect_refused(run(k_sockhist, args), 2,
                 listing.string() + ": not a regular file (a FIFO); refused (give `-` to read a pipe");
  args.back() = "/dev/zero";
  expect_refused(run(k_sockhist, args), 2, "/dev/zero: not a regular file (a character device); refused");
  expect_refused(run(k_sockhist, {"sql", "--db", db.string(), "--file", listing.string()}), 2,
                 listing.string() + ": not a regular file (a FIFO)");
  EXPECT_TRUE(bytes_of(db) == before) << "a refused input stored something";
  // The lock was let go: the next collector writes at once.
  EXPECT_EQ(run(k_collect, {"--db", db.string(), "--quiet", "--lock-wait", "1s"}).exit_code, 0);
  // A pipe is read from standard input, as `-`.
  const auto sample = samples_dir() / "imports" / "netstat-antp.txt";
  std::string piped = "cat " + sample.string() + " | " + k_sockhist;
  for (const auto& a : import_netstat) {
    piped += " '" + a + "'";
  }
  const auto from_pipe = run("/bin/sh", {"-c", piped + " -"});
  EXPECT_EQ(from_pipe.exit_code, 0) << from_pipe.err;
}

TEST_F(HostileInputs, HugeFilesAreRefusedByTheirSizeWithoutBeingRead) {
  const auto db = root_database("huge.db");
  const auto before = bytes_of(db);
  // Sparse: 20 GB that take no room. Before, they were read until std::bad_alloc, no file named.
  const auto listing = m_dir / "huge.txt";
  as_neighbour(fmt::format("truncate -s 20G {}", listing.string()));
  expect_refused(run(k_sockhist, {"import", "ss", listing.string(), "--db", db.string(), "--host", "h", "--at",
                                  "2026-11-20T03:12:00Z"}),
                 2, listing.string() + ": 21474836480 bytes, more than the 1 GiB sockhist reads of one file; refused");
  const auto tree = give_copy(tree_sample(), "tree");
  as_neighbour(fmt::format("truncate -s 20G {}/net/unix", tree.string()));
  expect_refused(run(k_collect, {"--db", db.string(), "--proc-root", tree.string(), "--quiet"}), 5,
                 tree.string() + "/net/unix: 21474836480 bytes, more than the 1 GiB");
  EXPECT_TRUE(bytes_of(db) == before);
}

TEST_F(HostileInputs, SosreportDiagnosticsNameTheReportsOwnPaths) {
  const auto report = give_copy(sosreport_sample(), "report");
  as_neighbour(fmt::format("echo '  99: this is not a socket' >> {}/proc/21036/net/tcp", report.string()));
  const auto db = std::filesystem::path(m_shared->path()) / "diag.db";
  const auto imported = run(k_sockhist, {"import", "sosreport", report.string(), "--db", db.string(), "--quiet"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  // Relative to the report, as its own index names them: not the analyst's absolute path.
  EXPECT_NE(("\n" + imported.err).find("\nproc/net/tcp:"), std::string::npos) << imported.err;
  EXPECT_EQ(imported.err.find(report.string() + "/proc"), std::string::npos) << imported.err;
  SQLite::Database stored(db.string(), SQLite::OPEN_READONLY);
  SQLite::Statement files(stored, "SELECT DISTINCT file FROM diagnostics WHERE line > 0");
  int rows = 0;
  while (files.executeStep()) {
    EXPECT_EQ(files.getColumn(0).getString(), "proc/net/tcp");
    ++rows;
  }
  EXPECT_EQ(rows, 1);
}

}  // namespace

namespace {

// Garbage no kernel writes, planted in a copied tree: each field is bounded to what the kernel can
// produce, and what was cut or refused is in the snapshot's diagnostics. Before, a 5 MB path, a
// 10 MB command line and 50,000 counters were stored, and an uptime of 1e300 became INT64_MIN. A
// 5,000-byte path is refused by the bounds; a 5 MB line is skipped by the parser, never held whole.
TEST_F(HostileInputs, FieldsBeyondWhatAKernelWritesAreCutOrRefusedAndSaid) {
  const auto tree = give_copy(tree_sample(), "garbage");
  as_neighbour(fmt::format(
      "cd {} && "
      "printf '0000000000000001: 00000002 00000000 00010000 0001 01 99999 /' >> net/unix && head -c 5000 "
      "/dev/zero | tr '\\0' p >> net/unix && echo >> net/unix && "
      "printf '0000000000000001: 00000002 00000000 00010000 0001 01 99998 /' >> net/unix && head -c 5000000 "
      "/dev/zero | tr '\\0' q >> net/unix && echo >> net/unix && "
      "head -c 10000000 /dev/zero | tr '\\0' a > 4864/cmdline && "
      "seq -f 'n%.0f' 50000 | paste -sd' ' | sed 's/^/Bogus: /' >> net/snmp && "
      "seq 50000 | paste -sd' ' | sed 's/^/Bogus: /' >> net/snmp && "
      "echo '1e300 0' > uptime",
      tree.string()));
  const auto db = std::filesystem::path(m_shared->path()) / "garbage.db";
  const auto r = run(k_collect, {"--db", db.string(), "--proc-root", tree.string(), "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  SQLite::Database stored(db.string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(stored.execAndGet("SELECT count(*) FROM v_snapshot_sockets WHERE length(local_addr) > 108").getInt(), 0);
  EXPECT_EQ(stored.execAndGet("SELECT max(length(cmdline)) FROM processes").getInt(), 4096);
  EXPECT_EQ(stored.execAndGet("SELECT count(*) FROM v_counters").getInt(), 4096);
  EXPECT_TRUE(stored.execAndGet("SELECT uptime_ms FROM snapshots").isNull()) << "no uptime is better than a false one";
  std::string said;
  SQLite::Statement notes(stored, "SELECT file || ': ' || message FROM diagnostics ORDER BY rowid");
  while (notes.executeStep()) {
    said += notes.getColumn(0).getString() + "\n";
  }
  EXPECT_NE(said.find("(bounds): 1 sockets refused: an address longer than the kernel's (UNIX 108, Internet 64 bytes)"),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("/net/unix: longer than 65536 bytes, which no line of a socket table is"), std::string::npos)
      << said;
  EXPECT_NE(said.find("(bounds): the command line of pid 4864 cut from 10000000 to 4096 bytes"), std::string::npos)
      << said;
  EXPECT_NE(said.find("counters refused: a name no kernel uses, or more than 4096 counters"), std::string::npos)
      << said;
  EXPECT_NE(said.find("/uptime: 1e+300 s is no uptime a kernel counts: ignored"), std::string::npos) << said;
}

// A date no Linux system can have recorded (year -5000 in a sosreport's date) is refused whole.
TEST_F(HostileInputs, ADateNoSystemRecordedIsRefused) {
  const auto report = give_copy(sosreport_sample(), "report");
  as_neighbour(fmt::format("echo 'Mon Jan  1 00:00:00 UTC -5000' > {}/sos_commands/date/date_--utc", report.string()));
  const auto db = std::filesystem::path(m_shared->path()) / "dates.db";
  const auto r = run(k_sockhist, {"import", "sosreport", report.string(), "--db", db.string()});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("is no date a Linux system can have recorded (1970 to 2200); nothing recorded"),
            std::string::npos)
      << r.err;
}

}  // namespace
