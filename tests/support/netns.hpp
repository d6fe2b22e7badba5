// Moving the test process into a network namespace of its own, so that a test sees only the
// sockets it makes (and children such as the collector inherit it).
#pragma once

#include <string>

namespace sockhist::test {

// unshare(CLONE_NEWNET) and bring up its loopback. On failure (not root, or namespaces not
// permitted) returns false and says why in `why`; the process stays where it was.
bool enter_private_netns(std::string& why);

}  // namespace sockhist::test
