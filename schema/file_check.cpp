// Judging a file before SQLite opens it: its header, and the newest committed copy of that header
// in its -wal, read without SQLite (whose first connection would checkpoint the log).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/store.hpp"
#include "store_impl.hpp"

namespace sockhist::store {

namespace {

using detail::refuse;

std::int32_t read_be32(const unsigned char* p) {
  return static_cast<std::int32_t>((static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
                                   (static_cast<std::uint32_t>(p[2]) << 8) | static_cast<std::uint32_t>(p[3]));
}

std::uint32_t read_u32(const unsigned char* p, bool big_endian) {
  return big_endian ? static_cast<std::uint32_t>(read_be32(p))
                    : (static_cast<std::uint32_t>(p[3]) << 24) | (static_cast<std::uint32_t>(p[2]) << 16) |
                          (static_cast<std::uint32_t>(p[1]) << 8) | static_cast<std::uint32_t>(p[0]);
}

// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from s0 and s1.
void wal_checksum(const unsigned char* data, std::size_t size, bool big_endian, std::uint32_t& s0, std::uint32_t& s1) {
  for (std::size_t i = 0; i + 8 <= size; i += 8) {
    s0 += read_u32(data + i, big_endian) + s1;
    s1 += read_u32(data + i + 4, big_endian) + s0;
  }
}

// The user_version and application_id of the newest committed page 1 in a -wal file (the WAL
// format: a 32-byte header, then frames of a 24-byte header and a page, each checksummed over
// all before it; a frame counts when a valid commit frame follows it). None when there is none.
std::optional<std::pair<std::int32_t, std::int32_t>> committed_page_one_in_wal(const std::string& wal) {
  const int fd = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) {
    return std::nullopt;
  }
  struct stat st {};
  std::vector<unsigned char> bytes;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 32 && st.st_size < (std::int64_t{1} << 32)) {
    bytes.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < bytes.size()) {
      const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
      if (n <= 0) {
        break;
      }
      got += static_cast<std::size_t>(n);
    }
    bytes.resize(got);
  }
  ::close(fd);
  if (bytes.size() < 32) {
    return std::nullopt;
  }
  const std::uint32_t magic = static_cast<std::uint32_t>(read_be32(bytes.data()));
  if (magic != 0x377f0682 && magic != 0x377f0683) {
    return std::nullopt;
  }
  const bool big_endian = magic == 0x377f0683;
  const std::size_t page_size = static_cast<std::uint32_t>(read_be32(bytes.data() + 8)) == 1
                                    ? 65536
                                    : static_cast<std::uint32_t>(read_be32(bytes.data() + 8));
  std::uint32_t s0 = 0, s1 = 0;
  wal_checksum(bytes.data(), 24, big_endian, s0, s1);
  if (page_size < 512 || s0 != static_cast<std::uint32_t>(read_be32(bytes.data() + 24)) ||
      s1 != static_cast<std::uint32_t>(read_be32(bytes.data() + 28))) {
    return std::nullopt;
  }
  std::optional<std::pair<std::int32_t, std::int32_t>> committed, pending;
  for (std::size_t at = 32; at + 24 + page_size <= bytes.size(); at += 24 + page_size) {
    const unsigned char* frame = bytes.data() + at;
    if (std::memcmp(frame + 8, bytes.data() + 16, 8) != 0) {
      break;  // another generation of the log: not part of this one
    }
    wal_checksum(frame, 8, big_endian, s0, s1);
    wal_checksum(frame + 24, page_size, big_endian, s0, s1);
    if (s0 != static_cast<std::uint32_t>(read_be32(frame + 16)) ||
        s1 != static_cast<std::uint32_t>(read_be32(frame + 20))) {
      break;  // torn or stale: the log ends here
    }
    if (read_be32(frame) == 1) {
      pending = std::pair(read_be32(frame + 24 + 60), read_be32(frame + 24 + 68));
    }
    if (read_be32(frame + 4) != 0 && pending) {  // a commit frame
      committed = pending;
    }
  }
  return committed;
}

// What the header of the main file and its size show to be wrong: a page size SQLite never
// writes, a size that is no whole number of pages, fewer pages than the header counts (a copy cut
// short). The header's count is used only where SQLite trusts it (it was written by a version that
// also wrote the change counter beside it) and nothing waits in the -wal.
std::optional<std::string> header_damage(const unsigned char* header, std::uint64_t file_bytes, bool wal_empty) {
  const std::uint32_t raw_page = (std::uint32_t{header[16]} << 8) | header[17];
  const std::uint32_t page = raw_page == 1 ? 65536 : raw_page;
  if (page < 512 || page > 65536 || (page & (page - 1)) != 0) {
    return fmt::format("its header gives a page size of {}, which SQLite never writes", raw_page);
  }
  if (file_bytes % page != 0) {
    return fmt::format("it is {} bytes long, not a whole number of its {}-byte pages (cut short?)", file_bytes, page);
  }
  const auto pages = static_cast<std::uint32_t>(read_be32(header + 28));
  // Pages still only in a -wal (a checkpoint cut short, by a full disk say) may be missing from the
  // file: the count is checked only when the -wal is empty or absent.
  if (wal_empty && read_be32(header + 92) == read_be32(header + 24) && pages > file_bytes / page) {
    return fmt::format("its header counts {} pages and the file holds {} (cut short?)", pages, file_bytes / page);
  }
  return std::nullopt;
}

}  // namespace

FileCheck check_file(const std::filesystem::path& path) {
  FileCheck result;
  // Non-blocking: a FIFO given as a database must not hang the program (it is refused below).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) {
      return result;
    }
    throw Error(Exit::db_refused, fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    refuse(path, S_ISDIR(st.st_mode) ? "is a directory, not a database file"
                                     : "is not a regular file (a FIFO, socket or device): refusing to read it");
  }
  std::array<unsigned char, 100> header{};
  std::size_t got = 0;
  while (got < header.size()) {
    const ssize_t n = ::read(fd, header.data() + got, header.size() - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (got == 0) {
    result.kind = FileKind::empty;
    return result;
  }
  static constexpr std::string_view k_magic{"SQLite format 3\0", 16};
  if (got < header.size() || std::string_view(reinterpret_cast<const char*>(header.data()), 16) != k_magic) {
    result.kind = FileKind::not_sqlite;
    return result;
  }
  result.wal_mode = header[18] == 2 && header[19] == 2;
  result.user_version = read_be32(header.data() + 60);
  result.application_id = read_be32(header.data() + 68);
  // A newer schema or another application's id may be committed only in the -wal so far: what a
  // connection would see is the newest committed copy of page 1 there. Read without SQLite,
  // whose first connection would checkpoint the log into the file.
  if (const auto page_one = committed_page_one_in_wal(path.string() + "-wal")) {
    result.user_version = page_one->first;
    result.application_id = page_one->second;
  }
  result.kind = result.application_id == k_application_id ? FileKind::sockhist : FileKind::foreign_sqlite;
  struct stat wal {};
  const bool wal_empty = ::lstat((path.string() + "-wal").c_str(), &wal) != 0 || wal.st_size == 0;
  result.damage = header_damage(header.data(), static_cast<std::uint64_t>(st.st_size), wal_empty);
  return result;
}

}  // namespace sockhist::store
