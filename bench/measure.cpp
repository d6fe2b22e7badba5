// sockhist-measure: runs one command and prints what it cost, for bench/run.
//   sockhist-measure [--netns PATH] -- COMMAND [ARGS...]
// Prints "wall_ms cpu_ms max_rss_kb exit_code" on one line. The command's standard output goes to
// /dev/null (as `ss -tanp >/dev/null` would); its standard error is kept. With --netns the command
// runs in that network namespace, entered here so that no `ip netns exec` cost is counted.
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string netns;
  int first = 1;
  for (; first < argc; ++first) {
    const std::string arg = argv[first];
    if (arg == "--netns" && first + 1 < argc) {
      netns = argv[++first];
    } else if (arg == "--") {
      ++first;
      break;
    } else {
      std::fprintf(stderr, "sockhist-measure: error: unexpected argument %s\n", arg.c_str());
      return 2;
    }
  }
  if (first >= argc) {
    std::fprintf(stderr, "usage: sockhist-measure [--netns PATH] -- COMMAND [ARGS...]\n");
    return 2;
  }
  if (!netns.empty()) {
    const int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "sockhist-measure: error: %s: %s\n", netns.c_str(), std::strerror(errno));
      return 2;
    }
    ::close(fd);
  }
  const auto started = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::execvp(argv[first], argv + first);
    std::fprintf(stderr, "sockhist-measure: error: %s: %s\n", argv[first], std::strerror(errno));
    ::_exit(127);
  }
  int status = 0;
  rusage usage{};
  if (::wait4(pid, &status, 0, &usage) < 0) {
    std::perror("sockhist-measure: wait4");
    return 2;
  }
  const auto wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  const auto ms = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) * 1000.0 + static_cast<double>(tv.tv_usec) / 1000.0;
  };
  std::printf("%.1f %.1f %ld %d\n", wall, ms(usage.ru_utime) + ms(usage.ru_stime), usage.ru_maxrss,
              WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  return 0;
}
