// The project's one error type and the exit codes every program documents.
#pragma once

#include <stdexcept>
#include <string>

namespace sockhist {

// Exit codes. The collector uses all of them; the analyzer uses ok, found and usage-or-error (2),
// like diff(1). README.md documents them.
enum class Exit : int {
  ok = 0,
  failure = 1,     // collector: an environment or database write failure
  usage = 2,       // a wrong option or argument
  db_refused = 3,  // not a sockhist database, a newer schema, or unreadable
  locked = 4,      // another writer held the database past the wait limit
  bad_input = 5,   // a capture (a /proc root or a file) is missing or malformed
};

// Thrown for environment and database failures; only main catches it. The message names the
// file, line or option at fault and fits on one line.
class Error : public std::runtime_error {
 public:
  Error(Exit code, const std::string& message) : std::runtime_error(message), m_code(code) {}
  Exit code() const noexcept { return m_code; }

 private:
  Exit m_code;
};

}  // namespace sockhist
