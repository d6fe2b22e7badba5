// Reading what a user hands over: a listing or query file, or a tree copied off another machine (a
// /proc root, an unpacked sosreport). Everything read is a regular file, opened without blocking and
// read up to a cap; every path below a tree is resolved inside it, and a link that leaves it is
// refused, named. The live /proc goes through the same reader.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sockhist/error.hpp"

namespace sockhist::input {

// The most one input file may hold: 1 GiB. A /proc/net/tcp of three million sockets is about
// 450 MB; nothing real comes near it.
inline constexpr std::uint64_t k_max_file_bytes = std::uint64_t{1} << 30;

// An input refused for what it is, not for a failure to read it: a link leaving its tree, a FIFO,
// device or directory where a file was expected, a file over the cap. Exit::bad_input.
class Refused : public Error {
 public:
  explicit Refused(const std::string& message) : Error(Exit::bad_input, message) {}
};

// The whole of a file the user named: `-` is standard input; a symbolic link the user gave is
// followed (the user chose it). Throws Refused (not a regular file, over the cap) or
// Error(bad_input) naming `path`; out of memory is an Error naming it too.
std::string read_file(const std::string& path);

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : m_fd(fd) {}
  Fd(Fd&& other) noexcept : m_fd(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return m_fd; }
  int release() noexcept;
  explicit operator bool() const { return m_fd >= 0; }

 private:
  int m_fd = -1;
};

// A directory tree whose paths are resolved inside it, as if it were the root: a symbolic link is
// followed while it stays below the tree; an absolute one, or one whose `..` climbs above the tree,
// is refused with the link named. The tree's own path is taken as given (the user chose it).
class Tree {
 public:
  explicit Tree(std::filesystem::path root);

  const std::filesystem::path& root() const { return m_root; }

  // `relative`'s whole content; nullopt when it does not exist. Throws Refused (a link leaving the
  // tree, not a regular file, over the cap), or Error(bad_input) naming the file for any other
  // failure (permission, a process gone while its files were read).
  std::optional<std::string> read(std::string_view relative) const;

  // The same file handed to `chunk` a read at a time (at most k_read_chunk_bytes each, split
  // anywhere), so that a large /proc table is never held whole; false when it does not exist.
  // Throws as read() does, at the read that fails (after the chunks before it were handed over).
  bool read_each(std::string_view relative, const std::function<void(std::string_view)>& chunk) const;

  // A directory below the tree opened for reading its entries (O_DIRECTORY); an empty Fd with
  // errno set when it cannot be opened. Throws Refused for a link leaving the tree.
  Fd open_directory(std::string_view relative) const;

  // What kind of thing `relative` resolves to inside the tree (S_IFREG, S_IFDIR, ...); 0 when absent.
  // Throws Refused for a link leaving the tree.
  unsigned kind(std::string_view relative) const;
  bool is_file(std::string_view relative) const;
  bool is_directory(std::string_view relative) const;

  // The text of the symbolic link `relative` (its parent resolved inside the tree, the link itself
  // not followed); nullopt when it is not a link or cannot be read.
  std::optional<std::string> read_link(std::string_view relative) const;

 private:
  // `relative` opened for reading, refused unless it is a regular file; an empty Fd when absent.
  Fd open_file(std::string_view relative) const;
  // `relative` opened with `flags` (O_PATH, or O_RDONLY and more), resolved inside the tree, the
  // last component followed when `follow`; an empty Fd with errno set when it cannot be opened.
  Fd resolve(std::string_view relative, bool follow, int flags) const;
  Fd walk(std::string_view relative, bool follow, int flags) const;

  std::filesystem::path m_root;
  std::shared_ptr<const Fd> m_fd;  // the tree, opened once (O_PATH); empty when it cannot be
};

// "a FIFO", "a directory", "a character device", ...: what a file is, for messages.
std::string describe_kind(unsigned mode);

// Reads an open file to its end, refusing more than `k_max_file_bytes`; `name` is for messages.
std::string read_to_end(int fd, const std::string& name);

// The size of the reads read_chunks makes: 64 KiB, about 430 rows of /proc/net/tcp (larger reads
// take /proc no faster).
inline constexpr std::size_t k_read_chunk_bytes = 64 * 1024;

// Reads an open file to its end a read at a time, handing each piece to `chunk`; refuses more
// than `k_max_file_bytes` (at the read that passes it).
void read_chunks(int fd, const std::string& name, const std::function<void(std::string_view)>& chunk);

namespace detail {
// For tests: resolve every path by the walk alone, as on a kernel without openat2 (before 5.6).
void use_openat2(bool use);
}  // namespace detail

}  // namespace sockhist::input
