// Running the built binaries as a user would: arguments in, exit code and output back.
#pragma once

#include <signal.h>
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

#ifdef SOCKHIST_COLLECT_BIN
// The real collector looping every second into `db` (keeping everything, quiet) until stop() or
// destruction, which send SIGTERM (it finishes the snapshot in flight) and wait for it.
class LoopingCollector {
 public:
  explicit LoopingCollector(const std::string& db, const std::vector<std::string>& more = {}) {
    std::vector<std::string> args{"--db", db, "--interval", "1s", "--retain", "0", "--quiet"};
    args.insert(args.end(), more.begin(), more.end());
    m_pid = spawn(SOCKHIST_COLLECT_BIN, args);
  }
  ~LoopingCollector() { stop(); }
  LoopingCollector(const LoopingCollector&) = delete;
  LoopingCollector& operator=(const LoopingCollector&) = delete;
  void stop() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGTERM);
      wait_child(m_pid);
      m_pid = -1;
    }
  }

 private:
  pid_t m_pid = -1;
};
#endif

}  // namespace sockhist::test
