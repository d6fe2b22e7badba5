#include "sockhist/model.hpp"

#include <array>
#include <utility>

namespace sockhist::model {

namespace {

constexpr std::array<std::pair<SockState, std::string_view>, 19> k_state_names{{
    {SockState::established, "ESTABLISHED"},
    {SockState::syn_sent, "SYN_SENT"},
    {SockState::syn_recv, "SYN_RECV"},
    {SockState::fin_wait1, "FIN_WAIT1"},
    {SockState::fin_wait2, "FIN_WAIT2"},
    {SockState::time_wait, "TIME_WAIT"},
    {SockState::close, "CLOSE"},
    {SockState::close_wait, "CLOSE_WAIT"},
    {SockState::last_ack, "LAST_ACK"},
    {SockState::listen, "LISTEN"},
    {SockState::closing, "CLOSING"},
    // netstat never sees NEW_SYN_RECV: /proc prints request sockets as SYN_RECV, and so do we.
    {SockState::new_syn_recv, "SYN_RECV"},
    {SockState::bound_inactive, "BOUND_INACTIVE"},
    {SockState::unix_free, "FREE"},
    {SockState::unix_unconnected, "UNCONNECTED"},
    {SockState::unix_connecting, "CONNECTING"},
    {SockState::unix_connected, "CONNECTED"},
    {SockState::unix_disconnecting, "DISCONNECTING"},
    {SockState::unix_listening, "LISTENING"},
}};

}  // namespace

std::string_view name(SockState state) {
  for (const auto& [value, text] : k_state_names) {
    if (value == state) {
      return text;
    }
  }
  return "UNKNOWN";
}

std::optional<SockState> sock_state_from_name(std::string_view text) {
  for (const auto& [value, name_text] : k_state_names) {
    if (name_text == text) {
      return value;
    }
  }
  return std::nullopt;
}

std::string_view name(Proto proto) {
  switch (proto) {
    case Proto::tcp:
      return "tcp";
    case Proto::udp:
      return "udp";
    case Proto::unix_domain:
      return "unix";
  }
  return "unknown";
}

std::optional<Proto> proto_from_name(std::string_view text) {
  for (auto proto : {Proto::tcp, Proto::udp, Proto::unix_domain}) {
    if (name(proto) == text) {
      return proto;
    }
  }
  return std::nullopt;
}

std::string_view name(TimerKind timer) {
  switch (timer) {
    case TimerKind::off:
      return "off";
    case TimerKind::on:
      return "on";
    case TimerKind::keepalive:
      return "keepalive";
    case TimerKind::timewait:
      return "timewait";
    case TimerKind::probe:
      return "probe";
    case TimerKind::delack:
      return "delack";
  }
  return "unknown";
}

std::string_view name(UnixType type) {
  switch (type) {
    case UnixType::none:
      return "";
    case UnixType::stream:
      return "stream";
    case UnixType::dgram:
      return "dgram";
    case UnixType::raw:
      return "raw";
    case UnixType::rdm:
      return "rdm";
    case UnixType::seqpacket:
      return "seqpacket";
  }
  return "unknown";
}

std::string_view name(OwnerScan scan) {
  switch (scan) {
    case OwnerScan::complete:
      return "complete";
    case OwnerScan::partial:
      return "partial";
    case OwnerScan::skipped:
      return "skipped";
  }
  return "unknown";
}

std::optional<SockState> tcp_state_from_code(unsigned code) {
  if (code >= 1 && code <= 13) {
    return static_cast<SockState>(code);
  }
  return std::nullopt;
}

namespace {

class Fnv1a {
 public:
  void add(std::string_view bytes) {
    for (const char c : bytes) {
      m_hash = (m_hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    }
    m_hash = (m_hash ^ 0xffU) * 0x100000001b3ULL;  // a separator, so that "ab","c" != "a","bc"
  }
  void add(std::uint64_t value) {
    for (int i = 0; i < 8; ++i) {
      m_hash = (m_hash ^ ((value >> (8 * i)) & 0xffU)) * 0x100000001b3ULL;
    }
  }
  std::uint64_t value() const { return m_hash; }

 private:
  std::uint64_t m_hash = 0xcbf29ce484222325ULL;
};

// A multiply-rotate hash finished with splitmix64's mixer: unrelated in structure to FNV-1a, so
// that inputs colliding in one are not more likely to collide in the other.
class MultiplyRotate {
 public:
  void add(std::string_view bytes) {
    for (const char c : bytes) {
      step(static_cast<unsigned char>(c));
    }
    step(0x1ff);
  }
  void add(std::uint64_t value) { step(value); }
  std::uint64_t value() const {
    std::uint64_t z = m_hash + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  void step(std::uint64_t v) {
    m_hash = (m_hash ^ v) * 0xff51afd7ed558ccdULL;
    m_hash = (m_hash << 29) | (m_hash >> 35);
  }
  std::uint64_t m_hash = 0x243f6a8885a308d3ULL;
};

// The fields that make a socket's identity, fed to one hasher in one order.
template <class Hasher>
std::uint64_t hash_identity(std::string_view proto, int family, std::string_view local_addr, int local_port,
                            std::string_view remote_addr, int remote_port, std::uint64_t inode) {
  Hasher h;
  h.add(proto);
  h.add(static_cast<std::uint64_t>(family));
  h.add(local_addr);
  h.add(static_cast<std::uint64_t>(local_port));
  h.add(remote_addr);
  h.add(static_cast<std::uint64_t>(remote_port));
  h.add(inode);
  return h.value();
}

}  // namespace

Identity identity(std::string_view proto, int family, std::string_view local_addr, int local_port,
                  std::string_view remote_addr, int remote_port, std::uint64_t inode) {
  return {hash_identity<Fnv1a>(proto, family, local_addr, local_port, remote_addr, remote_port, inode),
          hash_identity<MultiplyRotate>(proto, family, local_addr, local_port, remote_addr, remote_port, inode)};
}

std::uint64_t identity_hash(std::string_view proto, int family, std::string_view local_addr, int local_port,
                            std::string_view remote_addr, int remote_port, std::uint64_t inode) {
  return hash_identity<Fnv1a>(proto, family, local_addr, local_port, remote_addr, remote_port, inode);
}

std::uint64_t identity_hash(const Socket& s) {
  return identity_hash(name(s.proto), s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.inode);
}

bool is_gauge(std::string_view section, std::string_view name) {
  if (section.starts_with("Sockstat")) {
    return true;
  }
  if (section == "Ip") {
    return name == "Forwarding" || name == "DefaultTTL";
  }
  if (section == "Tcp") {
    return name == "RtoAlgorithm" || name == "RtoMin" || name == "RtoMax" || name == "MaxConn" || name == "CurrEstab";
  }
  return false;
}

}  // namespace sockhist::model
