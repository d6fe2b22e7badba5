// Users and groups a test creates, to run the real binaries as another user would: a reader in
// the database's group, a neighbour with no rights at all. Needs root (useradd, groupadd).
#pragma once

#include <string>
#include <vector>

#include "process.hpp"

namespace sockhist::test {

// Why users cannot be made here ("" when they can): not root, or a tool missing.
std::string why_no_test_users();

// A user (with its own group) or a group that exists for the object's life.
class TestAccount {
 public:
  enum class Kind { user, group };
  // `name` must be unique to the test (add the pid). Throws std::runtime_error on failure.
  TestAccount(Kind kind, std::string name);
  ~TestAccount();
  TestAccount(const TestAccount&) = delete;
  TestAccount& operator=(const TestAccount&) = delete;
  const std::string& name() const { return m_name; }

 private:
  Kind m_kind;
  std::string m_name;
};

// Adds a user to a supplementary group.
void add_to_group(const std::string& user, const std::string& group);

// Runs a program as `user`, with the user's own group and its supplementary groups.
Result run_as(const std::string& user, const std::string& program, const std::vector<std::string>& args);

// A fresh directory under /tmp that every user may enter (the build tree may not be), removed with
// everything in it (read-only parts included) when the object goes.
class SharedDir {
 public:
  SharedDir();
  ~SharedDir();
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  const std::string& path() const { return m_path; }

 private:
  std::string m_path;
};

}  // namespace sockhist::test
