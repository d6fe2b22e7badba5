// The analyzer against ground truth on a live population: show and stats beside real netstat
// taken at the same moment, and reads while a collector writes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "histories.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/query.hpp"
#include "sockhist/query/lifecycle.hpp"
#include "sockhist/snapshot_writer.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

// Rows of netstat-style output split into fields, header lines kept whole.
std::multiset<std::string> rows_of(const std::string& text, bool drop_refcnt) {
  std::multiset<std::string> rows;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.starts_with("Active ") || line.starts_with("Proto ")) {
      rows.insert(line.substr(0, line.find_last_not_of(' ') + 1));
      continue;
    }
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) {
      f.push_back(field);
    }
    if (drop_refcnt && f.size() > 1) {
      f.erase(f.begin() + 1);
    }
    // A TIME_WAIT owner sockhist carried forward (marked *) is one netstat cannot know.
    if (!f.empty() && f.back().ends_with('*')) {
      f.back() = "-";
    }
    std::string joined;
    for (const auto& field : f) {
      joined += (joined.empty() ? "" : " ") + field;
    }
    rows.insert(joined);
  }
  return rows;
}

// netstat's rows with a listener's Send-Q as ss prints it (its backlog limit), as sockhist shows
// it: netstat prints the kernel's send queue there, always 0.
std::multiset<std::string> with_ss_backlogs(const std::multiset<std::string>& rows) {
  std::map<std::string, std::string> backlog;  // local address as netstat prints it -> Send-Q
  std::istringstream ss_lines(run(find_tool("ss"), {"-Htln"}).out);
  std::string state, recv_q, send_q, local, peer;
  while (ss_lines >> state >> recv_q >> send_q >> local >> peer) {
    if (local.starts_with('[')) {
      local.erase(local.find(']'), 1).erase(0, 1);  // [::1]:80 -> ::1:80
    }
    backlog[local] = send_q;
  }
  std::multiset<std::string> out;
  for (const auto& row : rows) {
    std::istringstream fields(row);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) {
      f.push_back(field);
    }
    if (f.size() > 5 && f[5] == "LISTEN" && backlog.contains(f[3])) {
      f[2] = backlog.at(f[3]);
      std::string joined;
      for (const auto& field : f) {
        joined += (joined.empty() ? "" : " ") + field;
      }
      out.insert(joined);
    } else {
      out.insert(row);
    }
  }
  return out;
}

std::string diff(const std::multiset<std::string>& ours, const std::multiset<std::string>& theirs) {
  std::string out;
  for (const auto& r : ours) {
    if (!theirs.contains(r)) {
      out += "only sockhist: " + r + "\n";
    }
  }
  for (const auto& r : theirs) {
    if (!ours.contains(r)) {
      out += "only netstat:  " + r + "\n";
    }
  }
  return out;
}

TEST(AnalyzerLive, ShowAndStatsAgreeWithNetstatTakenAtTheSameMoment) {
  std::string why;
  if (!enter_private_netns(why)) {
    GTEST_SKIP() << "needs a private network namespace (root): " << why;
  }
  const auto dir = scratch_dir("analyzer-live");
  const std::string db = (dir / "live.db").string();
  Population pop = make_population(dir.string(), false);
  finish_time_wait(pop);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // delayed ACKs go out; counters settle
  const auto collect = run(SOCKHIST_COLLECT_BIN, {"--db", db, "--retain", "0"});
  ASSERT_EQ(collect.exit_code, 0) << collect.err;
  const auto netstat_tanp = run("/usr/bin/netstat", {"-tanp"});
  const auto netstat_uanp = run("/usr/bin/netstat", {"-uanp"});
  const auto netstat_xa = run("/usr/bin/netstat", {"-xa"});
  const auto netstat_s = run("/usr/bin/netstat", {"-s"});
  ASSERT_EQ(netstat_tanp.exit_code, 0) << netstat_tanp.err;
  const auto show_tanp = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", db, "-tanp"});
  const auto show_uanp = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", db, "-uanp"});
  const auto show_xa = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", db, "-xa"});
  ASSERT_EQ(show_tanp.exit_code, 0) << show_tanp.err;
  const auto ours = rows_of(show_tanp.out, false);
  const auto theirs = with_ss_backlogs(rows_of(netstat_tanp.out, false));
  EXPECT_EQ(ours, theirs) << diff(ours, theirs);
  EXPECT_GE(ours.size(), 10U);  // two header lines and the population's TCP sockets
  for (const char* state : {"LISTEN", "ESTABLISHED", "CLOSE_WAIT", "TIME_WAIT", "FIN_WAIT2"}) {
    EXPECT_NE(show_tanp.out.find(state), std::string::npos) << state;
  }
  EXPECT_EQ(rows_of(show_uanp.out, false), rows_of(netstat_uanp.out, false))
      << diff(rows_of(show_uanp.out, false), rows_of(netstat_uanp.out, false));
  EXPECT_EQ(rows_of(show_xa.out, true), rows_of(netstat_xa.out, true))
      << diff(rows_of(show_xa.out, true), rows_of(netstat_xa.out, true));
  // The carried-forward owner of the TIME_WAIT client is the one fact netstat lacks.
  EXPECT_NE(show_tanp.out.find(std::to_string(::getpid()) + "/"), std::string::npos);

  // netstat -s: the Tcp and Udp counters both print, with netstat's labels.
  const auto stats = run(SOCKHIST_ANALYZER_BIN, {"stats", "--db", db, "--format", "json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  std::map<std::string, std::int64_t> stored;
  const auto stats_doc = nlohmann::json::parse(stats.out);
  for (const auto& row : stats_doc["rows"]) {
    stored[row["section"].get<std::string>() + "." + row["name"].get<std::string>()] = row["value"].get<std::int64_t>();
  }
  const std::map<std::string, std::string> labels = {
      {"Tcp:active connection openings", "Tcp.ActiveOpens"},
      {"Tcp:passive connection openings", "Tcp.PassiveOpens"},
      {"Tcp:failed connection attempts", "Tcp.AttemptFails"},
      {"Tcp:connection resets received", "Tcp.EstabResets"},
      {"Tcp:connections established", "Tcp.CurrEstab"},
      {"Tcp:segments received", "Tcp.InSegs"},
      {"Tcp:segments sent out", "Tcp.OutSegs"},
      {"Tcp:segments retransmitted", "Tcp.RetransSegs"},
      {"Tcp:resets sent", "Tcp.OutRsts"},
      {"Udp:packets received", "Udp.InDatagrams"},
      {"Udp:packets sent", "Udp.OutDatagrams"},
  };
  std::istringstream lines(netstat_s.out);
  std::string line;
  std::string section;
  int compared = 0;
  while (std::getline(lines, line)) {
    if (!line.starts_with(" ")) {
      section = line.substr(0, line.find(':'));
      continue;
    }
    std::istringstream fields(line);
    std::int64_t value = 0;
    if (!(fields >> value)) {
      continue;
    }
    std::string label;
    std::getline(fields >> std::ws, label);
    const auto it = labels.find(section + ":" + label);
    if (it != labels.end()) {
      ASSERT_TRUE(stored.contains(it->second)) << it->second;
      EXPECT_EQ(stored[it->second], value) << it->second;
      ++compared;
    }
  }
  EXPECT_EQ(compared, static_cast<int>(labels.size())) << netstat_s.out;
  EXPECT_GT(stored["Tcp.ActiveOpens"], 0);
}

TEST(AnalyzerLive, ReadsWhileACollectorWritesSeeWholeSnapshots) {
  const auto dir = scratch_dir("analyzer-concurrent");
  const std::string db = (dir / "busy.db").string();
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", db, "--retain", "0"}).exit_code, 0);
  // 30 s of a snapshot every 200 ms, as the issue asks.
  const pid_t collector =
      spawn(SOCKHIST_COLLECT_BIN, {"--db", db, "--retain", "0", "--interval", "200ms", "--count", "150"});
  int reads = 0;
  bool reaped = false;
  std::int64_t newest = 0;
  std::set<std::int64_t> ids_seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  for (;;) {
    const auto list = run(SOCKHIST_ANALYZER_BIN, {"snapshots", "--db", db, "--format", "json"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    ASSERT_EQ(list.err, "");
    const auto rows = nlohmann::json::parse(list.out)["rows"];
    ASSERT_FALSE(rows.empty());
    const auto& last = rows.back();
    newest = last["snapshot_id"].get<std::int64_t>();
    ids_seen.insert(newest);
    const auto shown = run(SOCKHIST_ANALYZER_BIN,
                           {"show", "--db", db, "--snapshot", std::to_string(newest), "-a", "--format", "json"});
    ASSERT_EQ(shown.exit_code, 0) << shown.err;
    const auto sockets = nlohmann::json::parse(shown.out)["rows"].size();
    EXPECT_EQ(static_cast<std::int64_t>(sockets), last["sockets"].get<std::int64_t>())
        << "snapshot " << newest << " read partly";
    ++reads;
    int status = 0;
    if (::waitpid(collector, &status, WNOHANG) == collector) {
      reaped = true;
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      break;
    }
  }
  if (!reaped) {
    ::kill(collector, SIGTERM);
    wait_child(collector);
  }
  EXPECT_GT(reads, 20);
  EXPECT_GT(ids_seen.size(), 10U);  // the reads saw the history grow
  const auto final_list = run(SOCKHIST_ANALYZER_BIN, {"snapshots", "--db", db, "--format", "json"});
  EXPECT_EQ(nlohmann::json::parse(final_list.out)["rows"].size(), 151U);
}

}  // namespace
