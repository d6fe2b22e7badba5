// sockhist metrics end to end: the exposition read back line by line against the database's own
// views and `check`'s findings; --output replacing a file whole; Prometheus's own promtool, and a
// real prometheus-node-exporter serving the file over HTTP from its textfile directory.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "histories.hpp"
#include "process.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

const std::string k_now = "2026-11-24T03:00:00Z";  // after the samples (SOCKHIST_NOW)

Result metrics(std::vector<std::string> args) {
  args.insert(args.begin(), {"metrics", "--db", sample_db()});
  ::setenv("SOCKHIST_NOW", k_now.c_str(), 1);
  auto r = run(SOCKHIST_ANALYZER_BIN, args);
  ::unsetenv("SOCKHIST_NOW");
  return r;
}

struct Exposition {
  std::map<std::string, std::string> types;  // family -> counter, gauge
  std::map<std::string, double> samples;     // "name{labels}" -> value
  std::vector<std::string> problems;         // lines that break the format
};

// The text format read as a scraper reads it: HELP then TYPE once per family, before its samples;
// every sample `name{labels} value` with a known family and valid names.
Exposition parse(const std::string& text) {
  static const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\} (\S+)$)");
  Exposition e;
  std::istringstream in(text);
  std::string line;
  std::string help_of;
  while (std::getline(in, line)) {
    std::smatch m;
    if (line.starts_with("# HELP ")) {
      help_of = line.substr(7, line.find(' ', 7) - 7);
    } else if (line.starts_with("# TYPE ")) {
      const auto name = line.substr(7, line.find(' ', 7) - 7);
      if (name != help_of || e.types.contains(name)) {
        e.problems.push_back("TYPE without its HELP, or twice: " + line);
      }
      e.types[name] = line.substr(line.rfind(' ') + 1);
    } else if (std::regex_match(line, m, sample)) {
      if (!e.types.contains(m[1]) || m[1] != help_of) {
        e.problems.push_back("a sample outside its family: " + line);
      }
      e.samples[fmt::format("{}{{{}}}", m[1].str(), m[2].str())] = std::stod(m[3]);
    } else {
      e.problems.push_back("not the text format: " + line);
    }
  }
  return e;
}

TEST(Metrics, TheNewestSnapshotIsWhatTheDatabaseSays) {
  const auto r = metrics({});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto e = parse(r.out);
  EXPECT_TRUE(e.problems.empty()) << e.problems.front();
  SQLite::Database db(sample_db(), SQLite::OPEN_READONLY);
  const auto newest = db.execAndGet("SELECT max(snapshot_id) FROM snapshots").getInt64();
  const auto time_ms =
      db.execAndGet(fmt::format("SELECT time_ms FROM snapshots WHERE snapshot_id = {}", newest)).getInt64();
  const std::string scope = R"(host="web1",netns="own")";
  EXPECT_DOUBLE_EQ(e.samples.at("sockhist_snapshot_timestamp_seconds{" + scope + "}"),
                   static_cast<double>(time_ms) / 1000.0);
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::sys_days(std::chrono::year(2026) / 11 / 24).time_since_epoch())
                          .count() +
                      3 * 3600 * 1000;
  EXPECT_DOUBLE_EQ(e.samples.at("sockhist_snapshot_age_seconds{" + scope + "}"),
                   static_cast<double>(now_ms - time_ms) / 1000.0);
  // Sockets per protocol and state, against the public view.
  SQLite::Statement states(db,
                           fmt::format("SELECT proto, state, count(*) FROM v_snapshot_sockets WHERE snapshot_id = {} "
                                       "GROUP BY proto, state",
                                       newest));
  std::size_t listed = 0;
  while (states.executeStep()) {
    const auto key = fmt::format(R"(sockhist_sockets{{{},proto="{}",state="{}"}})", scope,
                                 states.getColumn(0).getString(), states.getColumn(1).getString());
    ASSERT_TRUE(e.samples.contains(key)) << key;
    EXPECT_EQ(e.samples.at(key), states.getColumn(2).getInt64()) << key;
    ++listed;
  }
  EXPECT_GT(listed, 4U);
  EXPECT_EQ(e.samples.at(R"(sockhist_sockets{host="web1",netns="own",proto="tcp",state="SYN_SENT"})"), 0)
      << "a TCP state with no socket is 0, not absent";
  // The kernel's counters and gauges, against v_counters, as counters and gauges.
  EXPECT_EQ(e.types.at("sockhist_kernel_events_total"), "counter");
  EXPECT_EQ(e.types.at("sockhist_kernel_level"), "gauge");
  SQLite::Statement counters(
      db, fmt::format("SELECT section, name, value, is_gauge FROM v_counters WHERE snapshot_id = {}", newest));
  std::size_t seen = 0;
  while (counters.executeStep()) {
    const bool gauge = counters.getColumn(3).getInt() != 0;
    const auto key = fmt::format(R"({}{{{},section="{}",field="{}"}})",
                                 gauge ? "sockhist_kernel_level" : "sockhist_kernel_events_total", scope,
                                 counters.getColumn(0).getString(), counters.getColumn(1).getString());
    ASSERT_TRUE(e.samples.contains(key)) << key;
    EXPECT_EQ(e.samples.at(key), static_cast<double>(counters.getColumn(2).getInt64())) << key;
    ++seen;
  }
  EXPECT_GT(seen, 100U);
  EXPECT_FALSE(e.types.contains("sockhist_check_findings")) << "no threshold given, no check";
}

TEST(Metrics, EachFindingIsAGaugeWhereCheckFindsIt) {
  const std::vector<std::string> limits = {"--time-wait-max", "5",    "--close-wait-max-per-process", "1",
                                           "--syn-recv-max",  "1000", "--listen-overflows",           "0",
                                           "--max-age",       "0"};
  const auto r = metrics(limits);
  ASSERT_EQ(r.exit_code, 0) << r.err << " (metrics reports; only check exits 1 on findings)";
  const auto e = parse(r.out);
  EXPECT_TRUE(e.problems.empty()) << e.problems.front();
  auto args = limits;
  args.insert(args.begin(), {"check", "--db", sample_db(), "--format", "json", "--verbose"});
  ::setenv("SOCKHIST_NOW", k_now.c_str(), 1);
  const auto check = run(SOCKHIST_ANALYZER_BIN, args);
  ::unsetenv("SOCKHIST_NOW");
  ASSERT_EQ(check.exit_code, 1) << check.err;
  const auto doc = nlohmann::json::parse(check.out);
  std::set<std::string> found_by_check;
  std::size_t outcomes = 0;
  for (const auto& row : doc["rows"]) {
    ++outcomes;
    const auto key = fmt::format(R"(sockhist_check_finding{{host="web1",netns="own",check="{}",subject="{}"}})",
                                 row["check"].get<std::string>(), row["subject"].get<std::string>());
    ASSERT_TRUE(e.samples.contains(key)) << key;
    EXPECT_EQ(e.samples.at(key), row["status"] == "found" ? 1 : 0) << key;
    if (row["status"] == "found") {
      found_by_check.insert(key);
    }
  }
  std::size_t gauges = 0;
  for (const auto& [key, value] : e.samples) {
    if (key.starts_with("sockhist_check_finding{")) {
      ++gauges;
      EXPECT_EQ(value == 1, found_by_check.contains(key)) << key;
    }
  }
  EXPECT_EQ(gauges, outcomes);
  EXPECT_GE(found_by_check.size(), 1U) << "the sample's newest snapshot holds more than 5 TIME_WAIT sockets";
  EXPECT_EQ(e.samples.at(R"(sockhist_check_findings{host="web1",netns="own",check="time-wait-max"})"), 1);
  EXPECT_EQ(e.samples.at(R"(sockhist_check_findings{host="web1",netns="own",check="syn-recv-max"})"), 0);
}

TEST(Metrics, OutputReplacesTheFileWholeAndRefusesWhatItCannotWrite) {
  const auto dir = scratch_dir("metrics-output");
  const auto printed = metrics({});
  ASSERT_EQ(printed.exit_code, 0);
  // Over an older file, and over a symbolic link, which is replaced, not followed.
  write_text(dir / "a.prom", "old\n");
  write_text(dir / "elsewhere", "keep\n");
  ASSERT_EQ(::symlink("elsewhere", (dir / "b.prom").c_str()), 0);
  for (const auto* name : {"a.prom", "b.prom"}) {
    const auto r = metrics({"--output", (dir / name).string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(read_text(dir / name), printed.out) << name;
  }
  EXPECT_FALSE(std::filesystem::is_symlink(dir / "b.prom"));
  EXPECT_EQ(read_text(dir / "elsewhere"), "keep\n");
  // Nothing else is left in the directory: no temporary file.
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 3U);
  const auto missing = metrics({"--output", (dir / "no/such/dir/x.prom").string()});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.err.rfind("sockhist: error: --output " + (dir / "no/such/dir/x.prom").string(), 0), 0U)
      << missing.err;
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1);
}

TEST(Metrics, AllNetnsWritesEveryCurrentNamespaceAndDropsStaleOnes) {
  const auto dir = scratch_dir("metrics-netns");
  const auto db = (dir / "web3.db").string();
  const auto imported = run(SOCKHIST_ANALYZER_BIN,
                            {"import", "sosreport", (samples_dir() / "sosreport-web3").string(), "--db", db, "-q"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  const auto all = [&] { return run(SOCKHIST_ANALYZER_BIN, {"metrics", "--db", db, "--all-netns"}); };
  auto r = all();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto e = parse(r.out);
  EXPECT_TRUE(e.problems.empty()) << e.problems.front();
  // Both namespaces of the report, each with the sockets the view gives its snapshot.
  SQLite::Database stored(db, SQLite::OPEN_READONLY);
  SQLite::Statement states(stored,
                           "SELECT coalesce(n.name, 'own'), s.proto, s.state, count(*) FROM v_snapshot_sockets s "
                           "JOIN snapshots p ON p.snapshot_id = s.snapshot_id JOIN netns n ON n.netns_id = p.netns_id "
                           "GROUP BY 1, 2, 3");
  std::set<std::string> namespaces;
  while (states.executeStep()) {
    const auto key =
        fmt::format(R"(sockhist_sockets{{host="web3",netns="{}",proto="{}",state="{}"}})",
                    states.getColumn(0).getString(), states.getColumn(1).getString(), states.getColumn(2).getString());
    ASSERT_TRUE(e.samples.contains(key)) << key;
    EXPECT_EQ(e.samples.at(key), states.getColumn(3).getInt64()) << key;
    namespaces.insert(states.getColumn(0).getString());
  }
  EXPECT_EQ(namespaces, (std::set<std::string>{"blue", "own"}));
  // An hour later only the host's own namespace is snapshotted again: blue, and the report's own
  // namespace, are no longer current and drop out.
  const auto later =
      run(SOCKHIST_COLLECT_BIN, {"--db", db, "--proc-root", (samples_dir() / "history-busy/00/proc").string(), "--host",
                                 "web3", "--at", "2026-11-24T07:17:25Z", "-q"});
  ASSERT_EQ(later.exit_code, 0) << later.err;
  r = all();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  e = parse(r.out);
  std::set<std::string> timestamps;
  for (const auto& [key, value] : e.samples) {
    if (key.starts_with("sockhist_snapshot_timestamp_seconds{")) {
      timestamps.insert(key);
    }
  }
  EXPECT_EQ(timestamps.size(), 1U);
  EXPECT_EQ(e.samples.count(R"(sockhist_snapshot_timestamp_seconds{host="web3",netns="own"})"), 1U)
      << r.out.substr(0, 800);
  for (const auto& [key, value] : e.samples) {
    EXPECT_EQ(key.find("netns=\"blue\""), std::string::npos) << key;
  }
  // --netns and --all-netns together, and a format metrics does not write, are refused.
  const auto both = run(SOCKHIST_ANALYZER_BIN, {"metrics", "--db", db, "--all-netns", "--netns", "blue"});
  EXPECT_EQ(both.exit_code, 2);
  const auto json = run(SOCKHIST_ANALYZER_BIN, {"metrics", "--db", db, "--format", "json"});
  EXPECT_EQ(json.exit_code, 2);
  EXPECT_EQ(json.err, "sockhist: error: --format json: metrics writes Prometheus's text format, nothing else\n");
}

TEST(Metrics, PromtoolFindsNothingToSay) {
  const auto promtool = find_tool("promtool");
  if (promtool.empty()) {
    GTEST_SKIP() << "needs promtool (Debian's prometheus package; ./dev.sh setup installs it)";
  }
  const auto dir = scratch_dir("metrics-promtool");
  const auto r = metrics({"--output", (dir / "m.prom").string(), "--time-wait-max", "5", "--close-wait-max-age", "1m",
                          "--port-pressure-max", "50", "--close-wait-max-per-process", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto checked =
      run("/bin/sh", {"-c", fmt::format("{} check metrics < {}", promtool, (dir / "m.prom").string())});
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  EXPECT_EQ(checked.out + checked.err, "");
}

// A port nothing listens on now (the kernel's choice for a socket bound to port 0).
int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof at;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&at), &size) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(at.sin_port);
}

// A GET over loopback; the body, or "" when nothing answers.
std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0) {
    const auto request = fmt::format("GET {} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) {
        reply.append(buffer, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  const auto body = reply.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : reply.substr(body + 4);
}

TEST(Metrics, NodeExportersTextfileCollectorServesThem) {
  const auto exporter = find_tool("prometheus-node-exporter");
  if (exporter.empty()) {
    GTEST_SKIP() << "needs prometheus-node-exporter (Debian's package; ./dev.sh setup installs it)";
  }
  const auto dir = scratch_dir("metrics-textfile");
  const auto r = metrics({"--output", (dir / "sockhist.prom").string(), "--time-wait-max", "5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int port = free_tcp_port();
  const pid_t pid =
      spawn(exporter, {"--web.listen-address=127.0.0.1:" + std::to_string(port), "--collector.disable-defaults",
                       "--collector.textfile", "--collector.textfile.directory=" + dir.string()});
  std::string body;
  for (int i = 0; i < 100 && body.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    body = http_get(port, "/metrics");
  }
  ::kill(pid, SIGTERM);
  wait_child(pid);
  ASSERT_FALSE(body.empty()) << "node_exporter did not answer on port " << port;
  // What it serves is what was written: every sample, with its labels (which it sorts) and value
  // (which it prints its own way), and no scrape error for the file.
  const auto written = parse(read_text(dir / "sockhist.prom"));
  const auto canonical = [](const std::string& text) {
    static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$)");
    static const std::regex label(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)")re");
    std::map<std::string, double> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      std::smatch m;
      if (line.starts_with("#") || !std::regex_match(line, m, sample)) {
        continue;
      }
      std::set<std::string> labels;
      const std::string inside = m[2];
      for (auto it = std::sregex_iterator(inside.begin(), inside.end(), label); it != std::sregex_iterator(); ++it) {
        labels.insert((*it)[0]);
      }
      std::string key = m[1].str() + "{";
      for (const auto& l : labels) {
        key += l + ",";
      }
      out[key + "}"] = std::stod(m[3]);
    }
    return out;
  };
  const auto served = canonical(body);
  const auto file = canonical(read_text(dir / "sockhist.prom"));
  for (const auto& [key, value] : file) {
    ASSERT_TRUE(served.contains(key)) << "not served: " << key;
    EXPECT_DOUBLE_EQ(served.at(key), value) << key;
  }
  EXPECT_GT(file.size(), 100U);
  EXPECT_EQ(served.at("node_textfile_scrape_error{}"), 0) << body.substr(0, 2000);
  EXPECT_TRUE(written.problems.empty());
}

}  // namespace
