// sockhist-connect-storm: RATE short TCP connections a second on loopback for SECONDS, for
// bench/connections. Each carries 100 bytes from client to server and is closed by the client
// first, then by the server; a second thread accepts and reads. Prints on stderr:
//   "connections N seconds S rate R"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace {

int fail(const char* what) {
  std::perror(what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || std::atoi(argv[1]) <= 0 || std::atoi(argv[2]) <= 0) {
    std::fprintf(stderr, "usage: sockhist-connect-storm RATE SECONDS\n");
    return 2;
  }
  const long rate = std::atol(argv[1]);
  const long total = rate * std::atol(argv[2]);
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      ::listen(listener, 4096) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return fail("sockhist-connect-storm: listener");
  }
  std::atomic<long> served{0};
  std::thread server([&] {
    char buffer[256];
    while (served.load() < total) {
      const int fd = ::accept(listener, nullptr, nullptr);
      if (fd < 0) {
        continue;
      }
      while (::read(fd, buffer, sizeof(buffer)) > 0) {
      }
      ::close(fd);
      ++served;
    }
  });
  const char payload[100] = {};
  const auto started = std::chrono::steady_clock::now();
  for (long i = 0; i < total; ++i) {
    // Paced: connection i starts at i / rate seconds.
    std::this_thread::sleep_until(started + std::chrono::microseconds(i * 1'000'000 / rate));
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::write(fd, payload, sizeof(payload)) != static_cast<ssize_t>(sizeof(payload))) {
      return fail("sockhist-connect-storm: client");
    }
    ::close(fd);
  }
  server.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::fprintf(stderr, "connections %ld seconds %.2f rate %.0f\n", total, seconds,
               static_cast<double>(total) / seconds);
  ::close(listener);
  return 0;
}
