// Moving the test process into a network namespace of its own, so that a test sees only the
// sockets it makes (and children such as the collector inherit it).
#pragma once

#include <functional>
#include <string>

namespace sockhist::test {

// unshare(CLONE_NEWNET) and bring up its loopback. On failure (not root, or namespaces not
// permitted) returns false and says why in `why`; the process stays where it was.
bool enter_private_netns(std::string& why);

// Brings up the loopback interface of the calling thread's namespace; false with `why` on failure.
bool bring_up_loopback(std::string& why);

// Runs fn() in a thread that has entered the namespace at `path` (sockets it makes stay there).
// Throws std::runtime_error when the namespace cannot be entered.
void run_in_netns(const std::string& path, const std::function<void()>& fn);

}  // namespace sockhist::test
