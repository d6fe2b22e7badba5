// sockhist-hear-ends: the connection log's ears alone, for bench/connections. Listens for
// socket-destroy announcements in its own network namespace for SECONDS, taking what was heard
// once a second as a looping collector would between snapshots, and prints on stderr:
//   "heard N overruns N over_bound N"
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <sys/stat.h>

#include "sockhist/connection_log.hpp"
#include "sockhist/timeutil.hpp"

int main(int argc, char** argv) {
  if (argc != 2 || std::atoi(argv[1]) <= 0) {
    std::fprintf(stderr, "usage: sockhist-hear-ends SECONDS\n");
    return 2;
  }
  struct stat st {};
  if (::stat("/proc/self/ns/net", &st) != 0) {
    std::perror("sockhist-hear-ends: /proc/self/ns/net");
    return 1;
  }
  sockhist::capture::ConnectionLog log;
  log.watch({{"", st.st_ino}});
  std::size_t heard = 0, overruns = 0, over_bound = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(std::atoi(argv[1]));
  while (std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const auto taken = log.take(st.st_ino, sockhist::model::now_ms());
    heard += taken.ends.size();
    overruns += taken.overruns;
    over_bound += taken.over_bound;
  }
  std::fprintf(stderr, "heard %zu overruns %zu over_bound %zu\n", heard, overruns, over_bound);
  return 0;
}
