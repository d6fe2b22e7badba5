#include "users.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace sockhist::test {

std::string why_no_test_users() {
  if (::geteuid() != 0) {
    return "creates a user to run as (useradd): needs root; runs in CI";
  }
  for (const char* tool : {"useradd", "userdel", "groupadd", "groupdel", "usermod", "setpriv"}) {
    if (find_tool(tool).empty()) {
      return std::string("needs ") + tool;
    }
  }
  return {};
}

TestAccount::TestAccount(Kind kind, std::string name) : m_kind(kind), m_name(std::move(name)) {
  const auto r = kind == Kind::user ? run(find_tool("useradd"), {"-M", "-U", "-s", "/usr/sbin/nologin", m_name})
                                    : run(find_tool("groupadd"), {m_name});
  if (r.exit_code != 0) {
    throw std::runtime_error("cannot create " + m_name + ": " + r.err);
  }
}

TestAccount::~TestAccount() {
  run(find_tool(m_kind == Kind::user ? "userdel" : "groupdel"), {m_name});
}

void add_to_group(const std::string& user, const std::string& group) {
  const auto r = run(find_tool("usermod"), {"-a", "-G", group, user});
  if (r.exit_code != 0) {
    throw std::runtime_error("cannot add " + user + " to " + group + ": " + r.err);
  }
}

Result run_as(const std::string& user, const std::string& program, const std::vector<std::string>& args) {
  std::vector<std::string> all = {"--reuid", user, "--regid", user, "--init-groups", "--", program};
  all.insert(all.end(), args.begin(), args.end());
  return run(find_tool("setpriv"), all);
}

SharedDir::SharedDir() {
  char templ[] = "/tmp/sockhist-test.XXXXXX";
  if (::mkdtemp(templ) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  m_path = templ;
  ::chmod(m_path.c_str(), 0755);
}

SharedDir::~SharedDir() {
  std::error_code ignored;
  // Read-only parts: give write permission back before removing them (links are not followed).
  for (const auto& entry : std::filesystem::recursive_directory_iterator(m_path, ignored)) {
    if (!entry.is_symlink()) {
      ::chmod(entry.path().c_str(), entry.is_directory() ? 0755 : 0644);
    }
  }
  std::filesystem::remove_all(m_path, ignored);
}

}  // namespace sockhist::test
