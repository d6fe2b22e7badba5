// Running the built binaries as a user would: arguments in, exit code and output back.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace sockhist::test {

struct Result {
  int exit_code = -1;  // 128 + signal number when killed
  std::string out;
  std::string err;
};

// Runs `program` with `args`, standard input from /dev/null, and waits for it.
Result run(const std::string& program, const std::vector<std::string>& args);

// Starts `program` in the background with output discarded; returns its pid.
pid_t spawn(const std::string& program, const std::vector<std::string>& args);

// Waits for a child; returns its exit code (128 + signal when killed).
int wait_child(pid_t pid);

// The path of an installed tool (/usr/bin, /bin, /usr/sbin, /sbin); "" when it is not installed.
std::string find_tool(const std::string& name);

// prlimit, to run a binary under an address-space limit; "" with the reason in `why` where no such
// limit can apply (prlimit missing, or AddressSanitizer, which reserves terabytes of address space).
inline std::string address_limit_tool(std::string& why) {
#ifdef SOCKHIST_SANITIZED
  why = "AddressSanitizer reserves terabytes of address space: an address-space limit cannot apply";
  return {};
#else
  const auto prlimit = find_tool("prlimit");
  if (prlimit.empty()) {
    why = "needs prlimit (util-linux)";
  }
  return prlimit;
#endif
}

}  // namespace sockhist::test
