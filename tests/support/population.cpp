// sockhist-population: holds a socket population and changes it on command, one command per line
// on standard input, answering "ok" (or "error: ...") on standard output. Used to capture the
// busy samples in samples/ and by tests that need sockets owned by another process.
//
//   listen PORT FAMILY          a TCP listener on loopback (PORT 0: ephemeral)
//   connect N PORT FAMILY       N established pairs to the listener on PORT
//   close-wait N                N established pairs closed client-first, server end held open
//   time-wait N                 N established pairs closed client-first, then the server
//   udp N FAMILY                N bound UDP sockets
//   unix N PATH                 a UNIX listener at PATH and N connected pairs
//   drop N                      close N established pairs, server first (TIME_WAIT on the server side)
//   queues N                    one more unread byte in the server ends of the next N established
//                               pairs (round robin): N sockets change their Recv-Q
//   quit
#include <sys/socket.h>

#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "sockets.hpp"

using namespace sockhist::test;

int main() {
  std::map<int, Fd> listeners;  // by port
  std::vector<Pair> established;
  std::vector<Fd> held;
  std::size_t next_queue = 0;  // the pair `queues` writes to next
  std::string line;
  std::cout << "ready" << std::endl;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    try {
      if (command == "listen") {
        int port = 0, family = 4;
        in >> port >> family;
        Fd fd = listen_tcp(family, static_cast<std::uint16_t>(port));
        const int actual = local_port(fd);
        listeners[actual] = std::move(fd);
        std::cout << "ok " << actual << std::endl;
      } else if (command == "connect") {
        int n = 0, port = 0, family = 4;
        in >> n >> port >> family;
        for (int i = 0; i < n; ++i) {
          established.push_back(connect_pair(family, listeners.at(port)));
        }
        std::cout << "ok" << std::endl;
      } else if (command == "close-wait" || command == "time-wait" || command == "drop") {
        std::size_t n = 0;
        in >> n;
        for (std::size_t i = 0; i < n && !established.empty(); ++i) {
          Pair pair = std::move(established.back());
          established.pop_back();
          if (command == "close-wait") {
            held.push_back(make_close_wait(std::move(pair)));
          } else if (command == "time-wait") {
            make_time_wait(std::move(pair));
          } else {
            std::swap(pair.client, pair.server);
            make_time_wait(std::move(pair));
          }
        }
        std::cout << "ok" << std::endl;
      } else if (command == "udp") {
        int n = 0, family = 4;
        in >> n >> family;
        for (int i = 0; i < n; ++i) {
          held.push_back(udp_bound(family));
        }
        std::cout << "ok" << std::endl;
      } else if (command == "unix") {
        int n = 0;
        std::string path;
        in >> n >> path;
        Fd listener = unix_listener(path);
        for (int i = 0; i < n; ++i) {
          Pair pair = unix_connect(path, listener);
          held.push_back(std::move(pair.client));
          held.push_back(std::move(pair.server));
        }
        held.push_back(std::move(listener));
        std::cout << "ok" << std::endl;
      } else if (command == "queues") {
        std::size_t n = 0;
        in >> n;
        for (std::size_t i = 0; i < n && !established.empty(); ++i, ++next_queue) {
          const char byte = 'q';
          if (::send(established[next_queue % established.size()].client.get(), &byte, 1, 0) != 1) {
            throw std::runtime_error("send failed");
          }
        }
        std::cout << "ok" << std::endl;
      } else if (command == "quit") {
        return 0;
      } else if (!command.empty()) {
        std::cout << "error: unknown command " << command << std::endl;
      }
    } catch (const std::exception& e) {
      std::cout << "error: " << e.what() << std::endl;
    }
  }
  return 0;
}
