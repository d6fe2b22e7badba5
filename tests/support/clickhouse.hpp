// A ClickHouse server of the test's own: Debian's clickhouse-server started on 127.0.0.1 at a free
// port, with a temporary configuration and data directory, no systemd, stopped when the test ends.
// Two users: `default` (no password, 127.0.0.1 only) and `shipper` (password "ship-secret").
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "files.hpp"

namespace sockhist::test {

using Rows = std::vector<std::vector<std::string>>;

// The rows of a SQLite query as text: NULL as \N, as ClickHouse writes it.
inline Rows sqlite_rows(const std::string& db, const std::string& sql, const std::vector<std::string>& binds = {}) {
  SQLite::Database d(db, SQLite::OPEN_READONLY);
  SQLite::Statement q(d, sql);
  for (std::size_t i = 0; i < binds.size(); ++i) {
    q.bind(static_cast<int>(i + 1), binds[i]);
  }
  Rows out;
  while (q.executeStep()) {
    std::vector<std::string> row;
    for (int c = 0; c < q.getColumnCount(); ++c) {
      row.push_back(q.getColumn(c).isNull() ? std::string("\\N") : q.getColumn(c).getString());
    }
    out.push_back(std::move(row));
  }
  return out;
}

inline const char* const k_clickhouse_server = "/usr/sbin/clickhouse-server";

// A port nothing listens on now (the kernel's choice for a socket bound to port 0).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

class ClickHouseServer {
 public:
  // Why a test cannot run: the server is not installed (./dev.sh installs it).
  static std::optional<std::string> missing() {
    if (::access(k_clickhouse_server, X_OK) != 0) {
      return std::string("clickhouse-server is not installed (./dev.sh installs Debian's)");
    }
    return std::nullopt;
  }

  explicit ClickHouseServer(const std::filesystem::path& dir) : dir_(dir) {
    std::filesystem::create_directories(dir_ / "data");
    std::filesystem::create_directories(dir_ / "tmp");
    http_port_ = free_port();
    const int tcp_port = free_port();
    std::ofstream(dir_ / "config.xml") << fmt::format(
        R"(<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{0}/server.log</log><errorlog>{0}/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{1}</http_port>
  <tcp_port>{2}</tcp_port>
  <path>{0}/data/</path>
  <tmp_path>{0}/tmp/</tmp_path>
  <user_files_path>{0}/user_files/</user_files_path>
  <format_schema_path>{0}/format_schemas/</format_schema_path>
  <users_config>{0}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
</yandex>
)",
        dir_.string(), http_port_, tcp_port);
    std::ofstream(dir_ / "users.xml") << R"(<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <shipper><password>ship-secret</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></shipper>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
)";
    pid_ = ::fork();
    if (pid_ == 0) {
      const auto config = "--config-file=" + (dir_ / "config.xml").string();
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execl(k_clickhouse_server, k_clickhouse_server, config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!answers()) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("clickhouse-server exited at start: " + read_text(dir_ / "error.log"));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("clickhouse-server did not answer within 60 s: " + read_text(dir_ / "error.log"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  ~ClickHouseServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 300 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  ClickHouseServer(const ClickHouseServer&) = delete;
  ClickHouseServer& operator=(const ClickHouseServer&) = delete;

  std::string url() const { return fmt::format("http://127.0.0.1:{}", http_port_); }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  // GET /ping answers "Ok." once the server serves.
  bool answers() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(http_port_));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      const std::string request = "GET /ping HTTP/1.0\r\n\r\n";
      if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
        char buffer[256];
        const auto n = ::read(fd, buffer, sizeof buffer - 1);
        ok = n > 0 && std::string(buffer, static_cast<std::size_t>(n)).find("Ok.") != std::string::npos;
      }
    }
    ::close(fd);
    return ok;
  }

  std::filesystem::path dir_;
  int http_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sockhist::test
