// The hostile-neighbour fixture: a second, unprivileged user the test creates, a directory that
// user owns and may write (not sticky), and a file only root may read, for planted links to aim at.
// Needs root to create the user; skips elsewhere with the reason.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "files.hpp"
#include "process.hpp"
#include "users.hpp"

namespace sockhist::test {

inline const std::string k_collect = SOCKHIST_COLLECT_BIN;
inline const std::string k_sockhist = SOCKHIST_ANALYZER_BIN;

class Hostile : public testing::Test {
 protected:
  void SetUp() override {
    if (const auto why = why_no_test_users(); !why.empty()) {
      GTEST_SKIP() << why;
    }
    m_neighbour = std::make_unique<TestAccount>(TestAccount::Kind::user, "shn" + std::to_string(::getpid()));
    m_shared = std::make_unique<SharedDir>();
    // A directory the neighbour owns and may write, without the sticky bit (so the kernel's
    // protected_symlinks, which guards sticky world-writable directories such as /tmp, does not
    // stand in for the programs' own care).
    m_dir = std::filesystem::path(m_shared->path()) / "shared";
    std::filesystem::create_directories(m_dir);
    ASSERT_EQ(run("/bin/chown", {m_neighbour->name(), m_dir.string()}).exit_code, 0);
    ::chmod(m_dir.c_str(), 0777);
    // A file only root may read or write: what a planted link points at.
    m_secret = std::filesystem::path(m_shared->path()) / "root-only" / "secret";
    write_text(m_secret, "root's own data\n");
    ::chmod(m_secret.parent_path().c_str(), 0700);
    ::chmod(m_secret.c_str(), 0600);
  }

  // Runs a shell command as the neighbour (to plant things).
  void as_neighbour(const std::string& command) {
    const auto r = run_as(m_neighbour->name(), "/bin/sh", {"-c", command});
    ASSERT_EQ(r.exit_code, 0) << command << ": " << r.err;
  }

  // The one-line refusal a program gave: exit code and stderr.
  static void expect_refused(const Result& r, int code, const std::string& says) {
    EXPECT_EQ(r.exit_code, code) << r.out << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }

  std::unique_ptr<TestAccount> m_neighbour;
  std::unique_ptr<SharedDir> m_shared;
  std::filesystem::path m_dir;
  std::filesystem::path m_secret;
};

}  // namespace sockhist::test
