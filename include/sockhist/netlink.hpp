// Socket capture through sock_diag netlink (what ss uses): INET_DIAG for TCP and UDP over IPv4 and
// IPv6, UNIX_DIAG for UNIX sockets. An order of magnitude faster than /proc with many sockets, and
// it carries more: the socket cookie, a listener's backlog limit, a UNIX socket's peer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "sockhist/model.hpp"

namespace sockhist::netlink {

// Decodes one SOCK_DIAG_BY_FAMILY reply (a whole netlink message, header included) from an
// INET_DIAG dump of `proto` (tcp or udp); nullopt when the message is truncated or malformed.
// The kernel's idiag_retrans holds retransmits under the retransmit timer and probe counts under
// the keepalive and zero-window timers; they land in retransmits or probes accordingly.
std::optional<model::Socket> parse_inet_diag(std::span<const unsigned char> message, model::Proto proto);

// Decodes one reply of a UNIX_DIAG dump: path (abstract names as '@...', like /proc), type,
// state, inode, peer inode, queues, uid, cookie.
std::optional<model::Socket> parse_unix_diag(std::span<const unsigned char> message);

// Why a dump could not be made: the caller falls back to /proc where it may.
class Unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What one dump added to its output.
struct DumpStats {
  std::size_t added = 0;
  std::size_t malformed = 0;   // replies that could not be decoded (skipped)
  std::size_t duplicates = 0;  // replies repeated under churn (dropped)
};

// Called after each receive buffer of a dump with `out` and the index of the first socket that
// buffer appended; it may remove any socket this dump appended, earlier buffers' too (a capture's
// sieve), and nothing before them.
using AfterBatch = std::function<void(std::vector<model::Socket>& out, std::size_t first)>;

// A NETLINK_SOCK_DIAG socket of the calling thread's network namespace, reused across dumps.
class DiagSocket {
 public:
  // Throws Unavailable when the socket cannot be opened (no sock_diag, a seccomp filter...).
  DiagSocket();
  ~DiagSocket();
  DiagSocket(const DiagSocket&) = delete;
  DiagSocket& operator=(const DiagSocket&) = delete;

  // Appends every socket of one family (4 or 6) and protocol (tcp or udp) to `out`, in every
  // state /proc shows (TIME_WAIT and SYN_RECV included), straight from the receive buffer so that
  // no second copy of a large table is ever held. A socket the dump repeats under churn (the same
  // full socket by inode, the same inode-less one by endpoints and state) is dropped. Throws
  // Unavailable if the kernel refuses the dump (for example ENOENT: no udp_diag); what was
  // appended before a failure is removed again. `after_batch`, when given, sees each buffer's
  // sockets as they are appended.
  DumpStats dump_inet(int family, model::Proto proto, std::vector<model::Socket>& out,
                      const AfterBatch& after_batch = {});

  // Appends every UNIX socket to `out`, likewise.
  DumpStats dump_unix(std::vector<model::Socket>& out, const AfterBatch& after_batch = {});

 private:
  template <class Request>
  DumpStats dump(const Request& request, std::size_t request_size, model::Proto proto, const char* what,
                 std::vector<model::Socket>& out, const AfterBatch& after_batch);

  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// Decodes one destroy announcement (SOCK_DIAG_BY_FAMILY from a destroy multicast group: an
// inet_diag_msg with INET_DIAG_PROTOCOL and, for TCP, INET_DIAG_INFO); nullopt when truncated,
// malformed or of another protocol. time_ms is left 0 for the caller.
std::optional<model::SocketEnd> parse_destroy_event(std::span<const unsigned char> message);

// What one drain of a DestroyListener read.
struct DrainStats {
  std::size_t events = 0;     // announcements appended
  std::size_t malformed = 0;  // messages that could not be decoded (skipped)
  std::size_t overruns = 0;   // ENOBUFS: the receive buffer overflowed and announcements were lost
};

// A NETLINK_SOCK_DIAG socket of the calling thread's network namespace subscribed to the kernel's
// TCP and UDP destroy groups, IPv4 and IPv6. The kernel sends each announcement as the socket is
// freed, from a work queue; nothing is queued for a socket freed while nobody listens.
class DestroyListener {
 public:
  // Asks for a receive buffer of `receive_buffer` bytes (SO_RCVBUFFORCE where CAP_NET_ADMIN allows
  // it, else SO_RCVBUF within net.core.rmem_max). Throws Unavailable when the socket cannot be
  // opened or a group cannot be joined.
  explicit DestroyListener(int receive_buffer = 8 << 20);
  ~DestroyListener();
  DestroyListener(const DestroyListener&) = delete;
  DestroyListener& operator=(const DestroyListener&) = delete;

  // The socket, non-blocking, for poll().
  int fd() const;
  // The receive buffer the kernel granted (what getsockopt says, twice the request or the cap).
  int receive_buffer() const;

  // Appends every announcement waiting in the receive buffer to `out` and returns without blocking
  // once the buffer is empty. Each is stamped with the wall clock read as its recv() returned, so
  // no stamp is earlier than the end it reports, however long a storm keeps the drain going.
  DrainStats drain(std::vector<model::SocketEnd>& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace sockhist::netlink
