// sockhist-floors: what the collector's two costliest phases cost with nothing of sockhist's around
// them, for bench/run to print beside the collector (what no collector can go below here).
//
//   sockhist-floors fd-links            every /proc/PID/fd link read once (getdents and readlinkat,
//                                       one thread): what an owner scan asks of the kernel; prints
//                                       the number of links and of socket links
//   sockhist-floors insert DB N         N span rows, shaped as a snapshot's (addresses, ports, an
//                                       inode, a state), inserted into socket_spans of DB (a
//                                       database the collector made, so with the schema's indexes)
//                                       in one transaction with prepared statements; prints N
//
// Exit 0, or 2 with a one-line error.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <sqlite3.h>

namespace {

int fd_links() {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) {
    std::fprintf(stderr, "sockhist-floors: error: /proc: %s\n", std::strerror(errno));
    return 2;
  }
  long links = 0, sockets = 0;
  char target[256];
  while (const dirent* process = ::readdir(proc)) {
    if (process->d_name[0] < '0' || process->d_name[0] > '9') {
      continue;
    }
    const std::string dir = std::string("/proc/") + process->d_name + "/fd";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      continue;  // gone, or not ours to read
    }
    DIR* fds = ::fdopendir(dfd);
    if (fds == nullptr) {
      ::close(dfd);
      continue;
    }
    while (const dirent* fd = ::readdir(fds)) {
      if (fd->d_name[0] == '.') {
        continue;
      }
      const ssize_t n = ::readlinkat(dfd, fd->d_name, target, sizeof target - 1);
      if (n > 0) {
        ++links;
        sockets += std::strncmp(target, "socket:[", 8) == 0 ? 1 : 0;
      }
    }
    ::closedir(fds);
  }
  ::closedir(proc);
  std::printf("%ld fd links, %ld of them sockets\n", links, sockets);
  return 0;
}

int insert(const char* path, long rows) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::fprintf(stderr, "sockhist-floors: error: %s: %s\n", path, sqlite3_errmsg(db));
    return 2;
  }
  const auto fail = [&](const char* what) {
    std::fprintf(stderr, "sockhist-floors: error: %s: %s: %s\n", path, what, sqlite3_errmsg(db));
    sqlite3_close(db);
    return 2;
  };
  // The state, address and namespace rows a snapshot's spans point at, made once.
  const char* setup =
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE;"
      "INSERT OR IGNORE INTO socket_states(proto, state) VALUES ('tcp', 'ESTABLISHED');"
      "INSERT OR IGNORE INTO addresses(addr) VALUES ('127.0.0.1');";
  if (sqlite3_exec(db, setup, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail("setup");
  }
  // Their ids, read once, as the writer keeps them.
  sqlite3_stmt* ids = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT (SELECT min(netns_id) FROM netns), (SELECT max(snapshot_id) FROM snapshots) + 1, "
                         "(SELECT state_id FROM socket_states WHERE proto = 'tcp' AND state = 'ESTABLISHED'), "
                         "(SELECT addr_id FROM addresses WHERE addr = '127.0.0.1')",
                         -1, &ids, nullptr) != SQLITE_OK ||
      sqlite3_step(ids) != SQLITE_ROW || sqlite3_column_type(ids, 0) == SQLITE_NULL) {
    sqlite3_finalize(ids);
    return fail("not a database the collector made");
  }
  sqlite3_int64 id[4];
  for (int i = 0; i < 4; ++i) {
    id[i] = sqlite3_column_int64(ids, i);
  }
  sqlite3_finalize(ids);
  sqlite3_stmt* q = nullptr;
  const char* sql =
      "INSERT INTO socket_spans(netns_id, first_snapshot_id, state_id, family, local_addr_id, local_port, "
      "remote_addr, remote_port, tx_queue, rx_queue, timer, timer_ms, retransmits, probes, uid, inode) "
      "VALUES (?5, ?6, ?7, 4, ?8, ?1, ?2, ?3, 0, 0, 0, 0, 0, 0, 0, ?4)";
  if (sqlite3_prepare_v2(db, sql, -1, &q, nullptr) != SQLITE_OK) {
    return fail("prepare");
  }
  for (int i = 0; i < 4; ++i) {
    sqlite3_bind_int64(q, 5 + i, id[i]);
  }
  char remote[32];
  for (long i = 0; i < rows; ++i) {
    std::snprintf(remote, sizeof remote, "10.%ld.%ld.%ld", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    sqlite3_bind_int64(q, 1, 1024 + i % 60000);
    sqlite3_bind_text(q, 2, remote, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 3, 443);
    sqlite3_bind_int64(q, 4, 1'000'000 + i);
    if (sqlite3_step(q) != SQLITE_DONE) {
      sqlite3_finalize(q);
      return fail("insert");
    }
    sqlite3_reset(q);  // keeps ?5 to ?8
  }
  sqlite3_finalize(q);
  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail("commit");
  }
  sqlite3_close(db);
  std::printf("%ld rows\n", rows);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "fd-links") == 0) {
    return fd_links();
  }
  if (argc == 4 && std::strcmp(argv[1], "insert") == 0) {
    char* end = nullptr;
    const long rows = std::strtol(argv[3], &end, 10);
    if (end == argv[3] || *end != '\0' || rows < 1) {
      std::fprintf(stderr, "sockhist-floors: error: insert: '%s' is not a number of rows\n", argv[3]);
      return 2;
    }
    return insert(argv[2], rows);
  }
  std::fprintf(stderr, "usage: sockhist-floors fd-links | sockhist-floors insert DB ROWS\n");
  return 2;
}
