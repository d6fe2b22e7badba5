// Real sockets for tests and sample captures: listeners, established pairs, CLOSE_WAIT and
// TIME_WAIT made the way applications make them, UDP and UNIX sockets.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace sockhist::test {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : m_fd(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      m_fd = std::exchange(other.m_fd, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return m_fd; }
  void reset();

 private:
  int m_fd = -1;
};

// The loopback address of a family (4 or 6) as netstat -n prints it.
std::string loopback(int family);

// A TCP listener on loopback; port 0 picks an ephemeral one. Throws std::runtime_error on failure.
Fd listen_tcp(int family, std::uint16_t port = 0, int backlog = 128);

std::uint16_t local_port(const Fd& socket);

// A connected client and the server end accept() returned.
struct Pair {
  Fd client;
  Fd server;
};
Pair connect_pair(int family, const Fd& listener);

// Closes the client first and keeps the server end: the server end is in CLOSE_WAIT once the FIN
// arrives, and stays there until the server end is closed. Returns the server end.
Fd make_close_wait(Pair pair);

// Closes the client first and then, once the server has read end-of-file, the server: leaves the
// client's side in TIME_WAIT for 60 s. Returns the client's local port.
std::uint16_t make_time_wait(Pair pair);

// A UDP socket bound to loopback on an ephemeral port.
Fd udp_bound(int family);

// A UNIX stream listener at `path` (a leading '@' makes it abstract).
Fd unix_listener(const std::string& path);
Pair unix_connect(const std::string& path, const Fd& listener);

// The inode of an open socket, as /proc and sock_diag report it.
std::uint64_t inode_of(const Fd& socket);

// One of every kind of socket sockhist must record, all owned by the calling process: IPv4 and
// IPv6 listeners, an established pair on each, a CLOSE_WAIT (the server end, held open), a
// client-first close left in TIME_WAIT, bound UDP sockets, and a UNIX listener with a pair.
struct Population {
  Fd listener4, listener6;
  int port4 = 0, port6 = 0;
  Pair est4, est6;
  Fd close_wait;
  int time_wait_port = 0;  // the client port left in TIME_WAIT towards port4
  Fd udp4, udp6;
  std::string unix_path;
  Fd unix_listen;
  Pair unix_pair;
};
// `unix_dir` receives the UNIX socket file. With tw_after = false no TIME_WAIT is made yet: call
// finish_time_wait() later (to see a connection before and after it closes).
Population make_population(const std::string& unix_dir, bool time_wait_now = true);
void finish_time_wait(Population& population);

}  // namespace sockhist::test
