// Hostile neighbours: another user, created by the test, plants links, files and FIFOs where root's
// collector and `sockhist merge` and `import` will write, in a directory that user may write (as
// /tmp is, without protected_symlinks). Nothing outside what was given may be written, nothing may
// hang, and each refusal says why in one line. Needs root to create the user; skips elsewhere.
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "hostile_fixture.hpp"

using namespace sockhist::test;

namespace {

TEST_F(Hostile, APlantedLockLinkIsNeverFollowed) {
  const auto db = m_dir / "x.db";
  as_neighbour(fmt::format("ln -s {} {}.lock", m_secret.string(), db.string()));
  const auto collect = run(k_collect, {"--db", db.string(), "--quiet"});
  expect_refused(collect, 3, db.string() + ".lock: is a symbolic link: refusing to follow it");
  const auto input = std::filesystem::path(m_shared->path()) / "input.db";
  ASSERT_EQ(run(k_collect, {"--db", input.string(), "--quiet"}).exit_code, 0);
  expect_refused(run(k_sockhist, {"merge", db.string(), input.string()}), 2,
                 db.string() + ".lock: is a symbolic link: refusing to follow it");
  EXPECT_EQ(read_text(m_secret), "root's own data\n") << "the file behind the link was written";
  EXPECT_FALSE(std::filesystem::exists(db)) << "nothing was created either";
}

TEST_F(Hostile, APlantedDatabaseLinkOrForeignFileIsRefused) {
  // The database path itself a link to root's file: refused, the file unchanged.
  const auto linked = m_dir / "linked.db";
  as_neighbour(fmt::format("ln -s {} {}", m_secret.string(), linked.string()));
  expect_refused(run(k_collect, {"--db", linked.string(), "--quiet"}), 3,
                 linked.string() + ": is a symbolic link: refusing to write through it");
  EXPECT_EQ(read_text(m_secret), "root's own data\n");
  // A lock file the neighbour made: not root's, not used.
  const auto owned = m_dir / "owned.db";
  as_neighbour(fmt::format("touch {}.lock", owned.string()));
  expect_refused(run(k_collect, {"--db", owned.string(), "--quiet"}), 3, owned.string() + ".lock: is owned by uid");
  // A database file the neighbour made (empty): not root's to write.
  const auto theirs = m_dir / "theirs.db";
  as_neighbour(fmt::format("touch {}", theirs.string()));
  expect_refused(run(k_collect, {"--db", theirs.string(), "--quiet"}), 3, theirs.string() + ": is owned by uid");
}

TEST_F(Hostile, AFifoOrADirectoryAsTheDatabaseIsRefusedAtOnce) {
  const auto fifo = m_dir / "fifo.db";
  as_neighbour(fmt::format("mkfifo -m 0666 {}", fifo.string()));
  // Without O_NONBLOCK either program would block forever on the open; the test would time out.
  expect_refused(run(k_collect, {"--db", fifo.string(), "--quiet"}), 3, fifo.string() + ": is not a regular file");
  expect_refused(run(k_sockhist, {"snapshots", "--db", fifo.string()}), 2, fifo.string() + ": is not a regular file");
  const auto dir = m_dir / "dir.db";
  std::filesystem::create_directories(dir);
  expect_refused(run(k_collect, {"--db", dir.string(), "--quiet"}), 3, dir.string() + ": is a directory");
  expect_refused(run(k_sockhist, {"hosts", "--db", dir.string()}), 2, dir.string() + ": is a directory");
  // And the writer lock was let go: a real database beside them is written at once.
  EXPECT_EQ(run(k_collect, {"--db", (m_dir / "real.db").string(), "--quiet", "--lock-wait", "1s"}).exit_code, 0);
}

// Another user names a UNIX socket and its process so that root's `sockhist show -xap` would set
// the terminal's title, clear the screen and print a forged row. The table escapes them; JSON
// keeps the bytes exact.
TEST_F(Hostile, NamesChosenByOtherUsersCannotDriveTheTerminal) {
  const std::string name = "sh\x1b]0;owned\x07\x1b[2J\nunix  2 [ ] STREAM CONNECTED 1 1/init /forged";
  const std::string comm = "\x1b[2Jevil";
  const passwd* pw = ::getpwnam(m_neighbour->name().c_str());
  ASSERT_NE(pw, nullptr);
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the neighbour's process: only async-signal-safe calls from here
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
      ::_exit(1);
    }
    ::prctl(PR_SET_NAME, comm.c_str(), 0, 0, 0);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path + 1, name.data(), name.size());  // abstract: no file to make
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 || ::listen(fd, 1) != 0) {
      ::_exit(2);
    }
    [[maybe_unused]] const auto n = ::write(ready[1], "r", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char byte = 0;
  const bool started = ::read(ready[0], &byte, 1) == 1;
  ::close(ready[0]);
  const auto db = std::filesystem::path(m_shared->path()) / "names.db";
  const auto collect = run(k_collect, {"--db", db.string(), "--quiet"});
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_TRUE(started) << "the neighbour's process could not bind its socket";
  ASSERT_EQ(collect.exit_code, 0) << collect.err;

  const auto shown = run(k_sockhist, {"show", "--db", db.string(), "-xap"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(shown.out.find('\x1b'), std::string::npos) << "an escape sequence reached the terminal";
  EXPECT_EQ(shown.out.find('\x07'), std::string::npos);
  std::istringstream lines(shown.out);
  int forged_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("/forged") != std::string::npos) {
      ++forged_lines;
      // The name stays on its own row, its newline written as \x0a (the program column is argv[0],
      // as netstat's: the test's own name here; the comm is checked in JSON).
      EXPECT_NE(line.find("@sh\\x1b]0;owned\\x07\\x1b[2J\\x0aunix"), std::string::npos) << line;
    }
  }
  EXPECT_EQ(forged_lines, 1) << shown.out;
  const auto json = run(k_sockhist, {"show", "--db", db.string(), "-xap", "--format", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  bool exact = false;
  const auto doc = nlohmann::json::parse(json.out);
  for (const auto& row : doc["rows"]) {
    if (row["local_addr"] == "@" + name) {
      exact = true;
      EXPECT_EQ(row["program"], comm);
    }
  }
  EXPECT_TRUE(exact) << "JSON keeps the name byte for byte";
}

}  // namespace
