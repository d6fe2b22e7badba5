// input::Tree and input::read_file over real files, links and FIFOs, by both resolvers: the
// kernel's openat2(RESOLVE_BENEATH) and the walk used where it is missing.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "files.hpp"
#include "sockhist/input.hpp"

using namespace sockhist;
using sockhist::test::scratch_dir;
using sockhist::test::write_text;

namespace {

class TreeBy : public testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    input::detail::use_openat2(GetParam());
    m_dir = scratch_dir(GetParam() ? "input_openat2" : "input_walk");
    m_tree = m_dir / "tree";
    write_text(m_dir / "outside", "outside\n");
    write_text(m_tree / "1234/net/tcp", "sockets\n");
    std::filesystem::create_directory_symlink("1234", m_tree / "self");
    std::filesystem::create_directory_symlink("self/net", m_tree / "net");
    std::filesystem::create_directory_symlink("self/../self/net", m_tree / "roundabout");
    std::filesystem::create_symlink("/etc/hostname", m_tree / "absolute");
    std::filesystem::create_symlink("../outside", m_tree / "climbing");
    std::filesystem::create_directory_symlink("..", m_tree / "1234/up");
    std::filesystem::create_symlink("loop2", m_tree / "loop1");
    std::filesystem::create_symlink("loop1", m_tree / "loop2");
    ::mkfifo((m_tree / "fifo").c_str(), 0600);
  }
  void TearDown() override { input::detail::use_openat2(true); }

  std::filesystem::path m_dir;
  std::filesystem::path m_tree;
};

TEST_P(TreeBy, LinksThatStayInsideAreFollowed) {
  const input::Tree tree(m_tree);
  EXPECT_EQ(tree.read("net/tcp").value_or("?"), "sockets\n");
  EXPECT_EQ(tree.read("roundabout/tcp").value_or("?"), "sockets\n");
  EXPECT_EQ(tree.read("1234/up/self/net/tcp").value_or("?"), "sockets\n");
  EXPECT_EQ(tree.read("./1234//net/./tcp").value_or("?"), "sockets\n");
  EXPECT_FALSE(tree.read("net/udp").has_value());
  EXPECT_FALSE(tree.read("net/tcp/below").has_value());
  EXPECT_TRUE(tree.is_directory("net"));
  EXPECT_TRUE(tree.is_file("self/net/tcp"));
  EXPECT_EQ(tree.kind("nothing"), 0u);
  EXPECT_EQ(tree.read_link("net").value_or("?"), "self/net");
  EXPECT_FALSE(tree.read_link("1234/net/tcp").has_value()) << "a file is not a link";
  EXPECT_TRUE(tree.open_directory("net"));
}

TEST_P(TreeBy, LinksThatLeaveAreRefusedNamed) {
  const input::Tree tree(m_tree);
  const auto refusal = [&](const std::string& relative) {
    try {
      (void)tree.read(relative);
    } catch (const input::Refused& e) {
      return std::string(e.what());
    }
    return std::string("not refused");
  };
  EXPECT_EQ(refusal("absolute"), fmt::format("{}/absolute: a symbolic link to /etc/hostname, outside {}; refused",
                                             m_tree.string(), m_tree.string()));
  EXPECT_EQ(refusal("climbing"),
            fmt::format("{}/climbing: a symbolic link that leads above {}; refused", m_tree.string(), m_tree.string()));
  EXPECT_EQ(refusal("self/up/../outside"),
            fmt::format("{0}/self/up/../outside: climbs above {0}; refused", m_tree.string()))
      << "the path's own `..` climbs, not the link";
  EXPECT_EQ(refusal("self/up/climbing"),
            fmt::format("{}/climbing: a symbolic link that leads above {}; refused", m_tree.string(), m_tree.string()));
  EXPECT_EQ(refusal("../outside"), fmt::format("{0}/../outside: climbs above {0}; refused", m_tree.string()));
  EXPECT_EQ(refusal("fifo"), fmt::format("{}/fifo: not a regular file (a FIFO); refused", m_tree.string()));
  EXPECT_EQ(refusal("1234"), fmt::format("{}/1234: not a regular file (a directory); refused", m_tree.string()));
  EXPECT_THROW((void)tree.is_file("absolute"), input::Refused);
  EXPECT_THROW((void)tree.open_directory("climbing"), input::Refused);
  // A loop is an error, not a refusal and not a hang.
  try {
    (void)tree.read("loop1");
    ADD_FAILURE() << "a link loop was read";
  } catch (const input::Refused&) {
    ADD_FAILURE() << "a loop is no hostile link";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Too many levels of symbolic links"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Input, TreeBy, testing::Values(true, false),
                         [](const testing::TestParamInfo<bool>& p) { return p.param ? "Openat2" : "Walk"; });

TEST(ReadFile, RegularFilesOnly) {
  const auto dir = scratch_dir("input_read_file");
  write_text(dir / "listing", "a listing\n");
  std::filesystem::create_symlink(dir / "listing", dir / "link");
  ::mkfifo((dir / "fifo").c_str(), 0600);
  EXPECT_EQ(input::read_file((dir / "listing").string()), "a listing\n");
  EXPECT_EQ(input::read_file((dir / "link").string()), "a listing\n") << "a link the user gave is the user's choice";
  EXPECT_THROW((void)input::read_file((dir / "fifo").string()), input::Refused);
  EXPECT_THROW((void)input::read_file(dir.string()), input::Refused);
  EXPECT_THROW((void)input::read_file("/dev/zero"), input::Refused);
  try {
    (void)input::read_file((dir / "absent").string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "absent").string() + ": cannot read: No such file or directory");
  }
}

}  // namespace
