// A netlink message built by hand in a buffer, for feeding the sock_diag decoders what the kernel
// would send.
#pragma once

#include <libmnl/libmnl.h>

#include <array>
#include <span>

namespace sockhist::test {

struct NetlinkMessage {
  std::array<unsigned char, 1024> buffer{};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buffer.data());
  std::span<const unsigned char> bytes() const { return {buffer.data(), nlh->nlmsg_len}; }
};

}  // namespace sockhist::test
