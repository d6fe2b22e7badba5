// The reader of everything a user hands over (see input.hpp). A path below a tree is resolved by
// the kernel in one openat2(RESOLVE_BENEATH) where it can; where that refuses (a link leaving the
// tree) or does not exist (kernels before 5.6), a walk of one component at a time does the same
// and names the link at fault.
#include "sockhist/input.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <new>
#include <vector>

#include <fmt/format.h>

namespace sockhist::input {

namespace {

// The kernel's own limit on links followed in one lookup.
constexpr int k_max_links = 40;

std::atomic<bool> g_openat2_missing{false};

std::deque<std::string> components(std::string_view path) {
  std::deque<std::string> out;
  while (!path.empty()) {
    const auto slash = path.find('/');
    const auto part = path.substr(0, slash);
    if (!part.empty() && part != ".") {
      out.emplace_back(part);
    }
    if (slash == std::string_view::npos) {
      break;
    }
    path.remove_prefix(slash + 1);
  }
  return out;
}

std::string join(const std::filesystem::path& root, const std::vector<std::string>& names, std::string_view last) {
  std::string out = root.string();
  for (const auto& name : names) {
    out += '/';
    out += name;
  }
  if (!last.empty()) {
    out += '/';
    out += last;
  }
  return out;
}

std::string human_bytes(std::uint64_t bytes) {
  return bytes >= (std::uint64_t{1} << 30) ? fmt::format("{} GiB", bytes >> 30) : fmt::format("{} MiB", bytes >> 20);
}

[[noreturn]] void refuse_size(const std::string& name, std::uint64_t size) {
  throw Refused(fmt::format("{}: {} bytes, more than the {} sockhist reads of one file; refused", name, size,
                            human_bytes(k_max_file_bytes)));
}

[[noreturn]] void refuse_kind(const std::string& name, unsigned mode) {
  throw Refused(fmt::format("{}: not a regular file ({}); refused", name, describe_kind(mode)));
}

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
    m_fd = other.release();
  }
  return *this;
}

Fd::~Fd() {
  if (m_fd >= 0) {
    ::close(m_fd);
  }
}

int Fd::release() noexcept {
  const int fd = m_fd;
  m_fd = -1;
  return fd;
}

std::string describe_kind(unsigned mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "a regular file";
    case S_IFDIR:
      return "a directory";
    case S_IFIFO:
      return "a FIFO";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    case S_IFSOCK:
      return "a socket";
    case S_IFLNK:
      return "a symbolic link";
    default:
      return "of an unknown kind";
  }
}

void read_chunks(int fd, const std::string& name, const std::function<void(std::string_view)>& chunk) {
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > k_max_file_bytes) {
    refuse_size(name, static_cast<std::uint64_t>(st.st_size));
  }
  std::array<char, k_read_chunk_bytes> buffer{};
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", name, std::strerror(errno)));
    }
    if (n == 0) {
      return;
    }
    total += static_cast<std::uint64_t>(n);
    if (total > k_max_file_bytes) {
      refuse_size(name, total);
    }
    chunk(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
}

std::string read_to_end(int fd, const std::string& name) {
  std::string out;
  try {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) <= k_max_file_bytes) {
      // /proc reports 0 for its files: their size is known only at the end.
      out.reserve(static_cast<std::size_t>(st.st_size));
    }
    read_chunks(fd, name, [&out](std::string_view chunk) { out.append(chunk); });
    return out;
  } catch (const std::bad_alloc&) {
    throw Error(Exit::failure, fmt::format("{}: out of memory after reading {} bytes of it", name, out.size()));
  }
}

std::string read_file(const std::string& path) {
  if (path == "-") {
    return read_to_end(STDIN_FILENO, "standard input");
  }
  const Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) {
    throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    throw Refused(fmt::format("{}: not a regular file ({}); refused (give `-` to read a pipe from standard input)",
                              path, describe_kind(st.st_mode)));
  }
  return read_to_end(fd.get(), path);
}

Tree::Tree(std::filesystem::path root)
    : m_root(std::move(root)),
      m_fd(std::make_shared<const Fd>(::open(m_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC))) {}

Fd Tree::walk(std::string_view relative, bool follow, int flags) const {
  const int root = m_fd->get();
  std::vector<Fd> dirs;  // the directories walked into, below the root
  std::vector<std::string> names;
  // The components still to walk, each with the link it came from ("" for the path given): a `..`
  // that climbs out is that link's doing.
  std::deque<std::pair<std::string, std::string>> todo;
  for (auto& part : components(relative)) {
    todo.emplace_back(std::move(part), std::string());
  }
  int links = 0;
  const auto current = [&] { return dirs.empty() ? root : dirs.back().get(); };
  while (!todo.empty()) {
    const auto [name, via] = std::move(todo.front());
    todo.pop_front();
    if (name == "..") {
      if (dirs.empty()) {
        throw Refused(via.empty()
                          ? fmt::format("{}/{}: climbs above {}; refused", m_root.string(), relative, m_root.string())
                          : fmt::format("{}: a symbolic link that leads above {}; refused", via, m_root.string()));
      }
      dirs.pop_back();
      names.pop_back();
      continue;
    }
    Fd fd(::openat(current(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      return {};
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return {};
    }
    if (S_ISLNK(st.st_mode) && (follow || !todo.empty())) {
      std::array<char, 4096> target{};
      const ssize_t n = ::readlinkat(fd.get(), "", target.data(), target.size());
      if (n <= 0 || static_cast<std::size_t>(n) >= target.size()) {
        errno = n < 0 ? errno : ENAMETOOLONG;
        return {};
      }
      const std::string_view text(target.data(), static_cast<std::size_t>(n));
      const std::string link = join(m_root, names, name);
      if (text.front() == '/') {
        throw Refused(fmt::format("{}: a symbolic link to {}, outside {}; refused", link, text, m_root.string()));
      }
      if (++links > k_max_links) {
        errno = ELOOP;
        return {};
      }
      const auto parts = components(text);
      for (auto part = parts.rbegin(); part != parts.rend(); ++part) {
        todo.emplace_front(*part, link);
      }
      continue;
    }
    if (todo.empty()) {
      return (flags & O_PATH) != 0 ? std::move(fd) : Fd(::openat(current(), name.c_str(), flags | O_NOFOLLOW));
    }
    if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      return {};
    }
    dirs.push_back(std::move(fd));
    names.push_back(name);
  }
  // The tree itself ("" or ".").
  return Fd(::openat(current(), ".", flags));
}

Fd Tree::resolve(std::string_view relative, bool follow, int flags) const {
  if (!*m_fd) {
    errno = ENOENT;
    return {};
  }
  flags |= O_CLOEXEC;
  const std::string path(relative.empty() ? std::string_view(".") : relative);
  if (!g_openat2_missing.load(std::memory_order_relaxed)) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | (follow ? 0 : O_NOFOLLOW));
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    const long fd = ::syscall(SYS_openat2, m_fd->get(), path.c_str(), &how, sizeof how);
    if (fd >= 0) {
      return Fd(static_cast<int>(fd));
    }
    if (errno == ENOSYS || errno == EPERM) {
      // No openat2 (before 5.6) or a sandbox that forbids it: the walk does the same.
      g_openat2_missing.store(true, std::memory_order_relaxed);
    } else if (errno != EXDEV && errno != ELOOP && errno != EAGAIN) {
      return {};
    }
  }
  // The kernel refused a link (or cannot say): the walk names it, or resolves what the kernel
  // declined only out of caution (EAGAIN, a magic link that stays inside).
  return walk(path, follow, flags);
}

Fd Tree::open_file(std::string_view relative) const {
  const std::string name = join(m_root, {}, relative);
  // Opened for reading at once, without blocking (a FIFO opens and is then refused unread); only
  // root can put a device in a tree, and a link to one outside it is refused before any open.
  Fd fd = resolve(relative, true, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ESRCH) {
      return fd;  // absent, or a /proc file whose process ended in between
    }
    throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", name, std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    throw Error(Exit::bad_input, fmt::format("{}: cannot read: {}", name, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    refuse_kind(name, st.st_mode);
  }
  return fd;
}

std::optional<std::string> Tree::read(std::string_view relative) const {
  const Fd fd = open_file(relative);
  if (!fd) {
    return std::nullopt;
  }
  return read_to_end(fd.get(), join(m_root, {}, relative));
}

bool Tree::read_each(std::string_view relative, const std::function<void(std::string_view)>& chunk) const {
  const Fd fd = open_file(relative);
  if (!fd) {
    return false;
  }
  read_chunks(fd.get(), join(m_root, {}, relative), chunk);
  return true;
}

Fd Tree::open_directory(std::string_view relative) const {
  return resolve(relative, true, O_RDONLY | O_DIRECTORY);
}

unsigned Tree::kind(std::string_view relative) const {
  const Fd path = resolve(relative, true, O_PATH);
  struct stat st {};
  if (!path || ::fstat(path.get(), &st) != 0) {
    return 0;
  }
  return st.st_mode & S_IFMT;
}

bool Tree::is_file(std::string_view relative) const {
  return kind(relative) == S_IFREG;
}

bool Tree::is_directory(std::string_view relative) const {
  return kind(relative) == S_IFDIR;
}

std::optional<std::string> Tree::read_link(std::string_view relative) const {
  const Fd link = resolve(relative, false, O_PATH);
  std::array<char, 4096> target{};
  if (!link) {
    return std::nullopt;
  }
  const ssize_t n = ::readlinkat(link.get(), "", target.data(), target.size());
  if (n <= 0 || static_cast<std::size_t>(n) >= target.size()) {
    return std::nullopt;
  }
  return std::string(target.data(), static_cast<std::size_t>(n));
}

namespace detail {

void use_openat2(bool use) {
  g_openat2_missing.store(!use, std::memory_order_relaxed);
}

}  // namespace detail

}  // namespace sockhist::input
