#include "sockets.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace sockhist::test {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

socklen_t loopback_address(int family, std::uint16_t port, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof(out));
  if (family == 6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&out);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_loopback;
    return sizeof(sockaddr_in6);
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&out);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sizeof(sockaddr_in);
}

socklen_t unix_address(const std::string& path, sockaddr_un& out) {
  std::memset(&out, 0, sizeof(out));
  out.sun_family = AF_UNIX;
  if (path.size() >= sizeof(out.sun_path)) {
    throw std::runtime_error("unix path too long: " + path);
  }
  std::memcpy(out.sun_path, path.data(), path.size());
  if (!path.empty() && path[0] == '@') {
    out.sun_path[0] = '\0';  // abstract namespace
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  }
  return sizeof(out);
}

}  // namespace

void Fd::reset() {
  if (m_fd >= 0) {
    ::close(m_fd);
    m_fd = -1;
  }
}

std::string loopback(int family) {
  return family == 6 ? "::1" : "127.0.0.1";
}

Fd listen_tcp(int family, std::uint16_t port, int backlog) {
  Fd fd(::socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    fail("socket");
  }
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage address{};
  const socklen_t length = loopback_address(family, port, address);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
    fail("bind");
  }
  if (::listen(fd.get(), backlog) != 0) {
    fail("listen");
  }
  return fd;
}

std::uint16_t local_port(const Fd& socket) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    fail("getsockname");
  }
  if (address.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

Pair connect_pair(int family, const Fd& listener) {
  Pair pair;
  pair.client = Fd(::socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (pair.client.get() < 0) {
    fail("socket");
  }
  sockaddr_storage address{};
  const socklen_t length = loopback_address(family, local_port(listener), address);
  if (::connect(pair.client.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
    fail("connect");
  }
  pair.server = Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (pair.server.get() < 0) {
    fail("accept");
  }
  return pair;
}

namespace {

// Waits (up to 5 s) until a TCP socket we still hold reaches `state` (a TCP_* code).
void wait_for_state(const Fd& socket, unsigned state) {
  for (int i = 0; i < 5000; ++i) {
    tcp_info info{};
    socklen_t length = sizeof(info);
    if (::getsockopt(socket.get(), IPPROTO_TCP, TCP_INFO, &info, &length) != 0) {
      fail("TCP_INFO");
    }
    if (info.tcpi_state == state) {
      return;
    }
    ::usleep(1000);
  }
  throw std::runtime_error("socket did not reach TCP state " + std::to_string(state));
}

// The client sends its FIN first and waits until the server end has read end-of-file.
void client_closes_first(Pair& pair) {
  if (::shutdown(pair.client.get(), SHUT_WR) != 0) {
    fail("shutdown");
  }
  pollfd p{pair.server.get(), POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) {
    fail("waiting for FIN");
  }
}

}  // namespace

Fd make_close_wait(Pair pair) {
  client_closes_first(pair);
  // Once our FIN is acknowledged the client is in FIN_WAIT2; letting go of it then leaves a stable
  // FIN_WAIT2 on the client side and CLOSE_WAIT on the server's.
  wait_for_state(pair.client, TCP_FIN_WAIT2);
  pair.client.reset();
  return std::move(pair.server);
}

std::uint16_t make_time_wait(Pair pair) {
  const std::uint16_t port = local_port(pair.client);
  client_closes_first(pair);
  char byte = 0;
  if (::read(pair.server.get(), &byte, 1) != 0) {
    fail("expected end-of-file");
  }
  pair.server.reset();
  // The server's FIN moves the client into TIME_WAIT, which leaves its socket CLOSED.
  wait_for_state(pair.client, TCP_CLOSE);
  return port;
}

Fd udp_bound(int family) {
  Fd fd(::socket(family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    fail("socket");
  }
  sockaddr_storage address{};
  const socklen_t length = loopback_address(family, 0, address);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
    fail("bind");
  }
  return fd;
}

Fd unix_listener(const std::string& path) {
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    fail("socket");
  }
  sockaddr_un address{};
  const socklen_t length = unix_address(path, address);
  if (path[0] != '@') {
    ::unlink(path.c_str());
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
    fail("bind " + path);
  }
  if (::listen(fd.get(), 16) != 0) {
    fail("listen");
  }
  return fd;
}

Pair unix_connect(const std::string& path, const Fd& listener) {
  Pair pair;
  pair.client = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  const socklen_t length = unix_address(path, address);
  if (::connect(pair.client.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
    fail("connect " + path);
  }
  pair.server = Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (pair.server.get() < 0) {
    fail("accept");
  }
  return pair;
}

std::uint64_t inode_of(const Fd& socket) {
  struct stat st {};
  if (::fstat(socket.get(), &st) != 0) {
    fail("fstat");
  }
  return st.st_ino;
}

namespace {
// The pair that make_population keeps for its TIME_WAIT until finish_time_wait().
thread_local Pair pending_time_wait;
}  // namespace

Population make_population(const std::string& unix_dir, bool time_wait_now) {
  Population p;
  p.listener4 = listen_tcp(4);
  p.listener6 = listen_tcp(6);
  p.port4 = local_port(p.listener4);
  p.port6 = local_port(p.listener6);
  p.est4 = connect_pair(4, p.listener4);
  p.est6 = connect_pair(6, p.listener6);
  p.close_wait = make_close_wait(connect_pair(4, p.listener4));
  pending_time_wait = connect_pair(4, p.listener4);
  p.time_wait_port = local_port(pending_time_wait.client);
  p.udp4 = udp_bound(4);
  p.udp6 = udp_bound(6);
  p.unix_path = unix_dir + "/population.sock";
  p.unix_listen = unix_listener(p.unix_path);
  p.unix_pair = unix_connect(p.unix_path, p.unix_listen);
  if (time_wait_now) {
    finish_time_wait(p);
  }
  return p;
}

void finish_time_wait(Population& population) {
  if (pending_time_wait.client.get() >= 0) {
    population.time_wait_port = make_time_wait(std::move(pending_time_wait));
  }
}

}  // namespace sockhist::test
