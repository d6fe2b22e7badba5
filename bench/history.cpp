// sockhist-history: writes a synthetic history of a busy host through the real store code, for the
// analyzer's benchmark (bench/analyzer): the model of the host (Host) and the command line; its
// counters are in history_counters.hpp.
//
//   sockhist-history --db PATH [--days 7] [--interval 60] [--sockets 10000] [--churn 1]
//                    [--counters-from DIR] [--start 2026-11-01T00:00:00Z] [--reboot-at 0.5]
//
// The host ("bench-web") holds --sockets sockets at every snapshot: listeners, inbound HTTPS
// connections, outbound database connections, loopback pairs between a proxy and an application,
// a slowly leaking CLOSE_WAIT pile, UDP and UNIX sockets, owned by about forty processes. Every
// interval, --churn percent of the sockets are new: that many connections close client- or
// server-first (they are seen once more in TIME_WAIT, as the kernel's 60 s TIME_WAIT spans one
// one-minute interval) and as many new ones open, with new ephemeral ports and inodes. One
// CLOSE_WAIT socket leaks every ten minutes. Keepalive timers count down as the kernel's do (300 s
// on database connections, 7,200 s on inbound ones), starting over when they fire and when one of
// the 50 connections that send each interval sends. Counters start from the /proc/net files of
// --counters-from (default: the first snapshot of samples/history-busy) and grow at the rates
// those files imply; gauges follow the population. At --reboot-at (a fraction of the history; 0 for
// none) the host reboots: a new boot id, uptime and counters restart, every socket is new.
// Everything is drawn from a fixed seed, so two runs write the same history.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include "history_counters.hpp"
#include "sockhist/error.hpp"
#include "sockhist/model.hpp"
#include "sockhist/proc.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

namespace {

using namespace sockhist;
using bench::Counters;
using model::Proto;
using model::Socket;
using model::SockState;
using model::TimerKind;

constexpr std::int64_t k_minute_ms = 60'000;

// The processes that own the host's sockets.
struct Owners {
  std::vector<model::Process> all;
  std::vector<std::int32_t> nginx, app, postgres;
  std::int32_t sshd = 0, resolved = 0, redis = 0, leaker = 0, chrony = 0;
};

Owners make_owners(std::uint64_t boot_salt) {
  Owners o;
  std::int32_t next_pid = 700;
  auto add = [&](std::string comm, std::string cmdline, std::uint32_t uid, std::string user) {
    model::Process p;
    p.pid = next_pid;
    next_pid += 13;
    p.start_ticks = 1000 + static_cast<std::uint64_t>(p.pid) * 7 + boot_salt;
    p.comm = std::move(comm);
    p.cmdline = std::move(cmdline);
    p.uid = uid;
    p.user = std::move(user);
    o.all.push_back(p);
    return p.pid;
  };
  o.sshd = add("sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", 0, "root");
  o.resolved = add("systemd-resolve", "/lib/systemd/systemd-resolved", 101, "systemd-resolve");
  o.chrony = add("chronyd", "/usr/sbin/chronyd -F 1", 102, "_chrony");
  o.redis = add("redis-server", "/usr/bin/redis-server 127.0.0.1:6379", 103, "redis");
  for (int i = 0; i < 8; ++i)
    o.nginx.push_back(add("nginx", "nginx: worker process", 33, "www-data"));
  for (int i = 0; i < 4; ++i)
    o.app.push_back(add("java", "/usr/bin/java -Xmx4g -jar /srv/shop/shop.jar --server.port=8080", 1001, "shop"));
  for (int i = 0; i < 20; ++i)
    o.postgres.push_back(add("postgres", "postgres: 15/main: shop shop 10.0.2.7(41822) idle", 104, "postgres"));
  o.leaker = add("python3", "/usr/bin/python3 /srv/report/poller.py --every 10m", 1002, "report");
  return o;
}

// The socket population and how it changes.
class Host {
 public:
  // `target` sockets at every snapshot, `closing` of them new every interval.
  Host(std::size_t target, std::size_t closing, std::uint64_t seed)
      : m_target(target), m_closing(closing), m_rng(seed) {}

  void boot(std::uint64_t boot_salt) {
    m_owners = make_owners(boot_salt);
    m_sockets.clear();
    m_keepalive_due.clear();
    m_next_port = 32768;
    m_next_inode = 20000 + boot_salt * 1'000'000;
    auto listen = [&](const char* addr, std::uint16_t port, int family, std::int32_t pid) {
      Socket s = tcp(family, addr, port, family == 4 ? "0.0.0.0" : "::", 0, SockState::listen, pid);
      s.backlog = 511;
      m_sockets.push_back(s);
    };
    for (int f : {4, 6}) {
      listen(f == 4 ? "0.0.0.0" : "::", 443, f, m_owners.nginx[0]);
      listen(f == 4 ? "0.0.0.0" : "::", 80, f, m_owners.nginx[0]);
      listen(f == 4 ? "0.0.0.0" : "::", 22, f, m_owners.sshd);
    }
    listen("127.0.0.1", 8080, 4, m_owners.app[0]);
    listen("10.0.2.7", 5432, 4, m_owners.postgres[0]);
    listen("127.0.0.1", 6379, 4, m_owners.redis);
    listen("127.0.0.53", 53, 4, m_owners.resolved);
    // UDP: the resolver, NTP, and connected DNS client sockets.
    m_sockets.push_back(udp("127.0.0.53", 53, "0.0.0.0", 0, m_owners.resolved));
    m_sockets.push_back(udp("0.0.0.0", 123, "0.0.0.0", 0, m_owners.chrony));
    const std::size_t n_udp = m_target * 15 / 1000;
    const std::size_t n_unix = m_target * 22 / 100;
    const std::size_t n_loop_pairs = m_target * 5 / 100;
    const std::size_t n_db = m_target * 15 / 100;
    const std::size_t n_close_wait = 20;
    while (m_sockets.size() < 2 + 11 + n_udp)
      m_sockets.push_back(dns_client());
    for (std::size_t i = 0; i < n_unix; ++i)
      m_sockets.push_back(unix_socket(i));
    for (std::size_t i = 0; i < n_loop_pairs; ++i)
      add_loopback_pair();
    for (std::size_t i = 0; i < n_db; ++i)
      m_sockets.push_back(db_connection());
    for (std::size_t i = 0; i < n_close_wait; ++i)
      leak_close_wait();
    // The connections that closed in the minute before: as many in TIME_WAIT as every interval.
    while (m_sockets.size() < m_target - m_closing)
      m_sockets.push_back(inbound());
    while (m_sockets.size() < m_target) {
      m_sockets.push_back(db_connection());
      to_time_wait(m_sockets.back());
    }
  }

  // One interval: the previous TIME_WAIT sockets expire, `closing` connections close (into
  // TIME_WAIT or gone), as many open, and every ten minutes one more CLOSE_WAIT leaks.
  void step(std::size_t minute) {
    const std::size_t closing = m_closing;
    std::erase_if(m_sockets, [](const Socket& s) { return s.state == SockState::time_wait; });
    std::uniform_int_distribution<std::size_t> pick(0, m_sockets.size() - 1);
    std::size_t closed = 0;
    for (std::size_t tries = 0; closed < closing && tries < closing * 20; ++tries) {
      Socket& s = m_sockets[pick(m_rng)];
      if (s.proto != Proto::tcp || s.state != SockState::established || s.local_port == 8080 || s.remote_port == 8080)
        continue;
      ++closed;
      if (s.local_port == 443) {
        // The server closes first: TIME_WAIT on the listening port, the owner is gone.
        to_time_wait(s);
        m_replacements.push_back(inbound());
      } else {
        // A client connection to the database closes first from this side.
        to_time_wait(s);
        m_replacements.push_back(db_connection());
      }
    }
    if (minute % 10 == 9) {
      // The leaking poller: its server closed, it never called close().
      leak_close_wait();
      // Keep the population at its size: one inbound connection fewer.
      for (auto it = m_sockets.begin(); it != m_sockets.end(); ++it)
        if (it->local_port == 443 && it->state == SockState::established) {
          m_sockets.erase(it);
          break;
        }
    }
    for (auto& s : m_replacements)
      m_sockets.push_back(std::move(s));
    m_replacements.clear();
    // Some connections send: their Send-Q moves, and their keepalive timer starts over.
    std::uniform_int_distribution<std::uint32_t> queue(0, 4000);
    for (std::size_t i = 0; i < 50; ++i) {
      Socket& s = m_sockets[pick(m_rng)];
      if (s.proto == Proto::tcp && s.state == SockState::established) {
        s.tx_queue = queue(m_rng);
        if (s.cookie) {
          m_keepalive_due.erase(*s.cookie);
        }
      }
    }
  }

  // The keepalive timers at `now_ms`, counting down as the kernel's do: each connection's is due
  // at a time of its own (an idle one's first, a random phase; after traffic, a full period on),
  // and starts a new period when it fires (the probe answered).
  void keepalive_timers(std::int64_t now_ms) {
    for (auto& s : m_sockets) {
      if (s.timer != TimerKind::keepalive || !s.cookie) {
        continue;
      }
      const std::int64_t period = s.remote_port == 5432 ? 300'000 : 7'200'000;
      auto [it, added] = m_keepalive_due.try_emplace(*s.cookie, 0);
      if (added) {
        it->second = now_ms + std::uniform_int_distribution<std::int64_t>(1, period)(m_rng);
      }
      while (it->second <= now_ms) {
        it->second += period;
      }
      s.timer_ms = static_cast<std::uint32_t>(it->second - now_ms);
    }
  }

  const std::vector<Socket>& sockets() const { return m_sockets; }
  const std::vector<model::Process>& processes() const { return m_owners.all; }

 private:
  Socket tcp(int family, std::string local, std::uint16_t lport, std::string remote, std::uint16_t rport,
             SockState state, std::int32_t pid) {
    Socket s;
    s.proto = Proto::tcp;
    s.family = family;
    s.local_addr = std::move(local);
    s.local_port = lport;
    s.remote_addr = std::move(remote);
    s.remote_port = rport;
    s.state = state;
    s.pid = pid;
    s.inode = m_next_inode++;
    s.cookie = m_next_cookie++;  // the kernel numbers sockets from a counter
    s.uid = uid_of(pid);
    return s;
  }
  Socket udp(std::string local, std::uint16_t lport, std::string remote, std::uint16_t rport, std::int32_t pid) {
    Socket s = tcp(4, std::move(local), lport, std::move(remote), rport,
                   rport ? SockState::established : SockState::close, pid);
    s.proto = Proto::udp;
    s.cookie.reset();
    return s;
  }
  std::uint32_t uid_of(std::int32_t pid) const {
    for (const auto& p : m_owners.all)
      if (p.pid == pid)
        return p.uid;
    return 0;
  }
  std::uint16_t ephemeral() {
    const std::uint16_t port = m_next_port;
    m_next_port = m_next_port >= 60999 ? 32768 : m_next_port + 1;
    return port;
  }
  std::string client_addr() {
    std::uniform_int_distribution<int> octet(1, 254);
    if (std::bernoulli_distribution(0.2)(m_rng))
      return fmt::format("2001:db8:{:x}::{:x}", octet(m_rng), octet(m_rng));
    return fmt::format("{}.{}.{}.{}", std::bernoulli_distribution(0.5)(m_rng) ? 198 : 203, octet(m_rng) % 8 + 51,
                       octet(m_rng), octet(m_rng));
  }
  Socket inbound() {
    const std::string peer = client_addr();
    const bool v6 = peer.find(':') != std::string::npos;
    std::uniform_int_distribution<int> port(1024, 65535);
    std::uniform_int_distribution<std::size_t> worker(0, m_owners.nginx.size() - 1);
    Socket s = tcp(v6 ? 6 : 4, v6 ? "2001:db8::7" : "10.0.2.7", 443, peer, static_cast<std::uint16_t>(port(m_rng)),
                   SockState::established, m_owners.nginx[worker(m_rng)]);
    s.timer = TimerKind::keepalive;
    s.timer_ms = 7'200'000;
    return s;
  }
  Socket db_connection() {
    std::uniform_int_distribution<std::size_t> app(0, m_owners.app.size() - 1);
    Socket s = tcp(4, "10.0.2.7", ephemeral(), "10.0.2.5", 5432, SockState::established, m_owners.app[app(m_rng)]);
    s.timer = TimerKind::keepalive;
    s.timer_ms = 300'000;
    return s;
  }
  Socket dns_client() {
    return udp("10.0.2.7", ephemeral(), "10.0.2.1", 53, m_owners.app[m_sockets.size() % m_owners.app.size()]);
  }
  Socket unix_socket(std::size_t i) {
    Socket s;
    s.proto = Proto::unix_domain;
    s.unix_type = i % 5 == 0 ? model::UnixType::dgram : model::UnixType::stream;
    s.state = i < 12
                  ? SockState::unix_listening
                  : (s.unix_type == model::UnixType::dgram ? SockState::unix_unconnected : SockState::unix_connected);
    static const char* const paths[] = {"/run/systemd/journal/stdout", "/run/dbus/system_bus_socket",
                                        "/run/postgresql/.s.PGSQL.5432", "/run/systemd/notify", "@/containerd-shim"};
    s.local_addr = (i < 12 || i % 7 == 0) ? paths[i % 5] : "";
    s.inode = m_next_inode++;
    s.peer_inode = s.state == SockState::unix_connected ? std::optional<std::uint64_t>(s.inode ^ 1) : std::nullopt;
    s.unix_flags = s.state == SockState::unix_listening ? 0x10000 : 0;
    s.pid = m_owners.all[i % m_owners.all.size()].pid;
    s.uid = m_owners.all[i % m_owners.all.size()].uid;
    return s;
  }
  void add_loopback_pair() {
    std::uniform_int_distribution<std::size_t> worker(0, m_owners.nginx.size() - 1);
    std::uniform_int_distribution<std::size_t> app(0, m_owners.app.size() - 1);
    const std::uint16_t port = ephemeral();
    m_sockets.push_back(
        tcp(4, "127.0.0.1", port, "127.0.0.1", 8080, SockState::established, m_owners.nginx[worker(m_rng)]));
    m_sockets.push_back(tcp(4, "127.0.0.1", 8080, "127.0.0.1", port, SockState::established, m_owners.app[app(m_rng)]));
  }
  void leak_close_wait() {
    Socket s = tcp(4, "10.0.2.7", ephemeral(), "10.0.9.40", 8443, SockState::close_wait, m_owners.leaker);
    std::uniform_int_distribution<std::uint32_t> unread(1, 900);
    s.rx_queue = unread(m_rng);
    m_sockets.push_back(s);
  }
  void to_time_wait(Socket& s) {
    std::uniform_int_distribution<std::uint32_t> remaining(1, 59'999);
    s.state = SockState::time_wait;
    s.inode = 0;
    s.pid = 0;
    s.uid = 0;
    s.tx_queue = s.rx_queue = 0;
    s.timer = TimerKind::timewait;
    s.timer_ms = remaining(m_rng);
    s.cookie.reset();
  }

  std::size_t m_target;
  std::size_t m_closing;
  std::mt19937_64 m_rng;
  Owners m_owners;
  std::vector<Socket> m_sockets;
  std::vector<Socket> m_replacements;
  std::unordered_map<std::uint64_t, std::int64_t> m_keepalive_due;  // cookie -> when its timer fires
  std::uint16_t m_next_port = 32768;
  std::uint64_t m_next_inode = 20000;
  std::uint64_t m_next_cookie = 4096;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Writes a synthetic history of a busy host through the real store code (bench/analyzer)."};
  std::string db_path;
  double days = 7;
  std::int64_t interval_s = 60;
  std::size_t sockets = 10000;
  double churn_percent = 1;
  std::string counters_from = "samples/history-busy/00/proc/net";
  std::string start_text = "2026-11-01T00:00:00Z";
  double reboot_at = 0.5;
  app.add_option("--db", db_path, "database to create (must not exist)")->required();
  app.add_option("--days", days, "length of the history")->check(CLI::PositiveNumber);
  app.add_option("--interval", interval_s, "seconds between snapshots")->check(CLI::PositiveNumber);
  app.add_option("--sockets", sockets, "sockets at every snapshot")->check(CLI::Range(200, 10'000'000));
  app.add_option("--churn", churn_percent, "percent of the sockets new each interval")->check(CLI::Range(0.0, 50.0));
  app.add_option("--counters-from", counters_from, "a /proc/net copy whose counters seed the history");
  app.add_option("--start", start_text, "time of the first snapshot (ISO-8601)");
  app.add_option("--reboot-at", reboot_at, "where in the history the host reboots (0..1, 0 for never)")
      ->check(CLI::Range(0.0, 1.0));
  CLI11_PARSE(app, argc, argv);

  try {
    if (std::filesystem::exists(db_path))
      throw Error(Exit::usage, fmt::format("--db {}: exists; the generator writes a new database", db_path));
    const auto start = model::parse_moment_ms(start_text, 0);
    if (!start)
      throw Error(Exit::usage, fmt::format("--start {}: not a time", start_text));
    const auto interval_ms = interval_s * 1000;
    const auto count = static_cast<std::size_t>(std::llround(days * 86'400'000.0 / static_cast<double>(interval_ms)));
    const auto reboot_index =
        reboot_at > 0 ? static_cast<std::size_t>(static_cast<double>(count) * reboot_at) : count + 1;
    const auto closing = static_cast<std::size_t>(std::llround(static_cast<double>(sockets) * churn_percent / 100.0));

    store::WriterLock lock(db_path, std::chrono::milliseconds(0));
    auto db = store::open_for_write(db_path);
    store::SnapshotWriter writer(db, store::OpenSpans::remember);
    Host host(sockets, std::min(closing, sockets / 4), 20261124);
    Counters counters(counters_from, 4711);
    std::mt19937_64 jitter_rng(99);
    std::uniform_int_distribution<std::int64_t> jitter(0, 900);

    const bool tty = ::isatty(STDERR_FILENO) != 0;
    std::int64_t uptime_ms = 3 * 86'400'000LL;  // three days up when the history starts
    int boot = 1;
    host.boot(0);
    counters.reboot();
    std::size_t rows = 0;
    const auto began = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < count; ++i) {
      if (i == reboot_index) {
        ++boot;
        uptime_ms = 45'000;
        host.boot(static_cast<std::uint64_t>(boot));
        counters.reboot();
      } else if (i > 0) {
        host.step(i);
      }
      const std::int64_t offset = jitter(jitter_rng);  // cron starts a little late, and not always by as much
      model::Capture cap;
      cap.host = "bench-web";
      cap.hostname = "bench-web";
      cap.machine_id = "5b1e0c8a9d3f4e6a8b7c2d1e0f9a8b7c";
      cap.boot_id = fmt::format("{:08x}-6c1d-4f0e-9a3b-{:012x}", 0x3f2a9c17U * static_cast<unsigned>(boot),
                                0x5e1d7b9cULL * static_cast<unsigned>(boot));
      cap.uptime_ms = uptime_ms + offset;
      cap.kernel = "6.1.0-27-amd64";
      cap.time_ms = *start + static_cast<std::int64_t>(i) * interval_ms + offset;
      cap.capture_ms = 40;
      cap.source = "netlink";
      cap.netns_inode = 4026531840;
      cap.netns_initial = true;
      cap.settings.tcp_fin_timeout = 60;
      cap.settings.tcp_max_tw_buckets = 262144;
      cap.settings.port_range_low = 32768;
      cap.settings.port_range_high = 60999;
      cap.settings.tcp_tw_reuse = 2;
      cap.settings.somaxconn = 4096;
      cap.owners = model::OwnerScan::complete;
      host.keepalive_timers(cap.time_ms);
      cap.sockets = host.sockets();
      cap.processes = host.processes();
      cap.counters = counters.step(static_cast<double>(interval_s), cap.sockets);
      cap.users = {{0, "root"}, {33, "www-data"}, {1001, "shop"}, {104, "postgres"}};
      rows += writer.write(cap).rows_written;
      uptime_ms += interval_ms;
      if (tty && (i % 100 == 99 || i + 1 == count))
        std::fprintf(stderr, "\rsockhist-history: %zu/%zu snapshots", i + 1, count);
    }
    if (tty)
      std::fprintf(stderr, "\n");
    const auto took = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - began);
    std::printf("%zu snapshots of %zu sockets, %zu rows written, in %lld s\n", count, sockets, rows,
                static_cast<long long>(took.count()));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sockhist-history: error: %s\n", e.what());
    return 2;
  }
}
