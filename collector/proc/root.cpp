// ProcRoot: every file below a /proc root read to end of file, never trusting the size /proc reports.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/proc.hpp"

namespace sockhist::proc {

namespace {

bool read_fd_to_end(int fd, std::string& out) {
  out.clear();
  std::array<char, 65536> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    if (n == 0) {
      return true;
    }
    out.append(buffer.data(), static_cast<std::size_t>(n));
  }
}

}  // namespace

ProcRoot::ProcRoot(std::filesystem::path root) : m_root(std::move(root)) {}

std::optional<std::string> ProcRoot::read(std::string_view relative) const {
  const auto path = m_root / relative;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return std::nullopt;
    }
    throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", path.string(), std::strerror(errno)));
  }
  std::string content;
  const bool ok = read_fd_to_end(fd, content);
  const int err = errno;
  ::close(fd);
  if (!ok) {
    throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", path.string(), std::strerror(err)));
  }
  return content;
}

std::optional<std::string> ProcRoot::try_read(std::string_view relative) const {
  try {
    return read(relative);
  } catch (const Error&) {
    return std::nullopt;
  }
}

std::optional<std::string> ProcRoot::read_link(std::string_view relative) const {
  std::array<char, 256> buffer{};
  const auto path = m_root / relative;
  const ssize_t n = ::readlink(path.c_str(), buffer.data(), buffer.size());
  if (n <= 0 || static_cast<std::size_t>(n) >= buffer.size()) {
    return std::nullopt;
  }
  return std::string(buffer.data(), static_cast<std::size_t>(n));
}

}  // namespace sockhist::proc
