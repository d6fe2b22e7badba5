// sockhist merge and export through the built binaries: three host databases the real collector
// recorded are merged twice (the second adds nothing) and grow and are merged again; every
// snapshot of the output shows what its input shows; broken inputs are refused with the output
// left byte for byte; an export taken while a collector writes every 200 ms is whole.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "files.hpp"
#include "process.hpp"

using namespace sockhist::test;

namespace {

const std::string k_sockhist = SOCKHIST_ANALYZER_BIN;

void collect(const std::string& db, const std::string& host, const std::string& history,
             const std::vector<std::string>& captures) {
  for (const auto& capture : captures) {
    const auto root = samples_dir() / history / capture;
    const auto at = read_text(root / "captured_at").substr(0, 24);
    const auto r =
        run(SOCKHIST_COLLECT_BIN, {"--db", db, "--proc-root", (root / "proc").string(), "--host", host, "--at", at});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
}

std::vector<std::string> lifecycle_captures() {
  std::vector<std::string> out;
  for (int i = 0; i < 12; ++i) {
    out.push_back(fmt::format("{:02d}", i));
  }
  return out;
}

Result sockhist(std::vector<std::string> args) {
  return run(k_sockhist, args);
}

// The snapshot times of a host, as the snapshots command lists them.
std::vector<std::string> times_of(const std::string& db, const std::string& host) {
  const auto r = sockhist({"snapshots", "--db", db, "--host", host, "--format", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> times;
  const auto doc = nlohmann::json::parse(r.out);
  for (const auto& row : doc["rows"]) {
    times.push_back(row["time"]);
  }
  return times;
}

// Every view of every snapshot of `host` in `merged` equals the same in `input`.
void expect_same_history(const std::string& input, const std::string& merged, const std::string& host) {
  const auto times = times_of(input, host);
  ASSERT_FALSE(times.empty());
  EXPECT_EQ(times_of(merged, host), times);
  for (const auto& at : times) {
    for (const std::vector<std::string>& view :
         std::vector<std::vector<std::string>>{{"show", "-tanpoe"}, {"show", "-uanp"}, {"show", "-xap"}, {"stats"}}) {
      auto args = view;
      args.insert(args.end(), {"--host", host, "--at", at, "--format", "json"});
      auto from_input = args;
      from_input.insert(from_input.begin() + 1, {"--db", input});
      auto from_merged = args;
      from_merged.insert(from_merged.begin() + 1, {"--db", merged});
      const auto a = sockhist(from_input), b = sockhist(from_merged);
      ASSERT_EQ(a.exit_code, 0) << a.err;
      ASSERT_EQ(b.exit_code, 0) << b.err;
      auto ja = nlohmann::json::parse(a.out), jb = nlohmann::json::parse(b.out);
      for (auto* j : {&ja, &jb}) {
        j->erase("database");
        j->erase("generated");
        if (j->contains("snapshot")) {
          (*j)["snapshot"].erase("id");
          (*j)["snapshot"].erase("snapshot_id");
        }
      }
      EXPECT_EQ(ja, jb) << host << " " << view.front() << " " << view.back() << " at " << at;
    }
  }
}

std::string bytes_of(const std::filesystem::path& path) {
  return std::filesystem::exists(path) ? read_text(path) : std::string();
}

TEST(Merge, ThreeHostsTwiceAddNothingTwiceAndEverySnapshotEqualsItsInput) {
  const auto dir = scratch_dir("merge-three");
  const std::string web1 = (dir / "web1.db").string(), web2 = (dir / "web2.db").string(),
                    api1 = (dir / "api1.db").string(), fleet = (dir / "fleet.db").string();
  collect(web1, "web1", "history-busy", {"00", "01"});
  collect(web2, "web2", "history-busy", {"00", "01", "02", "03"});
  collect(api1, "api1", "history-lifecycle", lifecycle_captures());

  const auto first = sockhist({"merge", fleet, web1, web2, api1});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, fmt::format("{}: 2 snapshots added, 0 already there\n{}: 4 snapshots added, 0 already there\n"
                                   "{}: 12 snapshots added, 0 already there\n",
                                   web1, web2, api1));
  struct stat st {};
  ASSERT_EQ(::stat(fleet.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640U);
  const auto before = bytes_of(fleet);
  const auto again = sockhist({"merge", fleet, web1, web2, api1});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("0 snapshots added, 2 already there"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("0 snapshots added, 12 already there"), std::string::npos) << again.out;

  // web1 grows (its reboot included); the next merge adds only that.
  collect(web1, "web1", "history-busy", {"02", "03"});
  const auto grown = sockhist({"merge", "--quiet", fleet, web1, web2, api1});
  ASSERT_EQ(grown.exit_code, 0) << grown.err;
  EXPECT_EQ(grown.out, "");
  const auto hosts = nlohmann::json::parse(sockhist({"hosts", "--db", fleet, "--format", "json"}).out)["rows"];
  ASSERT_EQ(hosts.size(), 3U);
  std::map<std::string, std::int64_t> snapshots;
  for (const auto& h : hosts) {
    snapshots[h["host"]] = h["snapshots"];
  }
  EXPECT_EQ(snapshots, (std::map<std::string, std::int64_t>{{"api1", 12}, {"web1", 4}, {"web2", 4}}));
  expect_same_history(web1, fleet, "web1");
  expect_same_history(web2, fleet, "web2");
  expect_same_history(api1, fleet, "api1");
  // The lifecycle reports read the merged history as they read the original.
  for (const std::vector<std::string>& report :
       std::vector<std::vector<std::string>>{{"time-wait", "--by", "socket"}, {"close-wait", "--min-age", "0"}}) {
    auto args = report;
    args.insert(args.end(), {"--host", "api1", "--since", "2026-11-24T02:00:00Z", "--until", "2026-11-24T02:03:00Z",
                             "--format", "csv"});
    auto a = args, b = args;
    a.insert(a.begin() + 1, {"--db", api1});
    b.insert(b.begin() + 1, {"--db", fleet});
    EXPECT_EQ(sockhist(a).out, sockhist(b).out) << report.front();
  }
}

TEST(Merge, BrokenForeignAndNewerInputsAreRefusedAndTheOutputIsUntouched) {
  const auto dir = scratch_dir("merge-refused");
  const std::string good = (dir / "good.db").string(), fleet = (dir / "fleet.db").string();
  collect(good, "web1", "history-busy", {"00", "01"});
  ASSERT_EQ(sockhist({"merge", "-q", fleet, good}).exit_code, 0);
  const std::string other = (dir / "other.db").string();
  collect(other, "web2", "history-busy", {"00"});

  // A bit-flipped page in the middle of the file.
  const auto corrupt = dir / "corrupt.db";
  std::filesystem::copy_file(other, corrupt);
  {
    std::string bytes = read_text(corrupt);
    ASSERT_GT(bytes.size(), 4U * 4096U);
    for (std::size_t i = 2 * 4096 + 8; i < 2 * 4096 + 64; ++i) {
      bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    }
    write_text(corrupt, bytes);
  }
  // Another program's SQLite file.
  const auto foreign = dir / "foreign.db";
  {
    SQLite::Database db(foreign.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE orders(id INTEGER PRIMARY KEY, total REAL); INSERT INTO orders(total) VALUES (9.5)");
  }
  // A sockhist file from a newer version.
  const auto newer = dir / "newer.db";
  std::filesystem::copy_file(other, newer);
  {
    SQLite::Database db(newer.string(), SQLite::OPEN_READWRITE);
    db.exec("PRAGMA user_version = 99");
  }
  const auto fleet_before = bytes_of(fleet);
  struct Case {
    std::filesystem::path path;
    std::string says;
  };
  for (const auto& c : std::vector<Case>{{corrupt, "corrupt"},
                                         {foreign, "another application"},
                                         {newer, "newer than this sockhist"},
                                         {dir / "missing.db", "no such database"}}) {
    // The good input comes first: a refused input anywhere means nothing is merged.
    const auto r = sockhist({"merge", fleet, other, c.path.string()});
    EXPECT_EQ(r.exit_code, 2) << c.says << ": " << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(c.path.string()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_EQ(bytes_of(fleet), fleet_before) << c.says;
  }
  // Two machines under one name.
  const std::string clash = (dir / "clash.db").string();
  collect(clash, "web1", "history-busy", {"02"});
  {
    SQLite::Database db(clash, SQLite::OPEN_READWRITE);
    db.exec("UPDATE hosts SET machine_id = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'");
  }
  {
    SQLite::Database db(fleet, SQLite::OPEN_READWRITE);
    db.exec("UPDATE hosts SET machine_id = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
  }
  const auto clash_before = bytes_of(fleet);
  const auto r = sockhist({"merge", fleet, clash});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("two machines with one name"), std::string::npos) << r.err;
  EXPECT_EQ(bytes_of(fleet), clash_before);
}

// Two databases of one machine collected under two names (or two clones of one image) share a
// machine-id: merge keeps them two hosts and says so; only --join makes them one.
TEST(Merge, ASharedMachineIdNeverJoinsTwoHosts) {
  const auto dir = scratch_dir("merge-shared-id");
  const std::string alpha = (dir / "alpha.db").string(), beta = (dir / "beta.db").string();
  collect(alpha, "alpha", "history-busy", {"00", "01"});
  collect(beta, "beta", "history-busy", {"02"});
  for (const auto& db : {alpha, beta}) {
    SQLite::Database conn(db, SQLite::OPEN_READWRITE);
    conn.exec("UPDATE hosts SET machine_id = 'cccccccccccccccccccccccccccccccc'");
  }
  const std::string apart = (dir / "apart.db").string();
  const auto r = sockhist({"merge", "-q", apart, alpha, beta});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("sockhist: warning: " + beta + ": host beta has the machine-id of host alpha"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(times_of(apart, "alpha").size(), 2U);
  EXPECT_EQ(times_of(apart, "beta").size(), 1U);

  const std::string joined = (dir / "joined.db").string();
  const auto j = sockhist({"merge", joined, alpha, beta, "--join", "beta=alpha"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  EXPECT_EQ(j.err, "");
  EXPECT_EQ(times_of(joined, "alpha").size(), 3U);
  const auto hosts = sockhist({"hosts", "--db", joined, "--format", "json"});
  EXPECT_EQ(nlohmann::json::parse(hosts.out)["rows"].size(), 1U) << hosts.out;
  EXPECT_EQ(sockhist({"merge", joined, beta, "--join", "beta"}).exit_code, 2);  // FROM=TO or nothing
}

TEST(Export, ACopyTakenWhileACollectorWritesIsWholeAndPrivate) {
  const auto dir = scratch_dir("export-live");
  const std::string live = (dir / "live.db").string();
  ASSERT_EQ(run(SOCKHIST_COLLECT_BIN, {"--db", live, "--retain", "0"}).exit_code, 0);
  const pid_t collector = spawn(SOCKHIST_COLLECT_BIN, {"--db", live, "--retain", "0", "--interval", "200ms"});
  std::vector<std::string> copies;
  for (int i = 0; i < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(330));
    const std::string copy = (dir / fmt::format("copy{}.db", i)).string();
    const auto r = sockhist({"export", "--db", live, copy});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    copies.push_back(copy);
  }
  ::kill(collector, SIGTERM);
  EXPECT_EQ(wait_child(collector), 0);
  std::int64_t previous = 0;
  for (const auto& copy : copies) {
    struct stat st {};
    ASSERT_EQ(::stat(copy.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640U) << copy;
    EXPECT_FALSE(std::filesystem::exists(copy + "-wal")) << copy;
    SQLite::Database db(copy, SQLite::OPEN_READONLY);
    EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok") << copy;
    // Whole snapshots only: each one's sockets are all there.
    SQLite::Statement q(db,
                        "SELECT s.snapshot_id, s.socket_count, (SELECT count(*) FROM v_snapshot_sockets v "
                        "WHERE v.snapshot_id = s.snapshot_id) FROM snapshots s");
    std::int64_t snapshots = 0;
    while (q.executeStep()) {
      EXPECT_EQ(q.getColumn(1).getInt64(), q.getColumn(2).getInt64())
          << copy << " snapshot " << q.getColumn(0).getInt64();
      ++snapshots;
    }
    EXPECT_GE(snapshots, previous) << copy;
    previous = snapshots;
  }
  EXPECT_GT(previous, 3);
  // An export never replaces a file.
  const auto r = sockhist({"export", "--db", live, copies.front()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("exists"), std::string::npos) << r.err;
}

TEST(Export, OneHostAndARangeCopyThoseSnapshotsAsTheyWere) {
  const auto dir = scratch_dir("export-filter");
  const std::string fleet = (dir / "fleet.db").string(), part = (dir / "part.db").string();
  collect(fleet, "web1", "history-busy", {"00", "01", "02", "03"});
  collect(fleet, "api1", "history-lifecycle", lifecycle_captures());
  const auto r = sockhist({"export", "--db", fleet, "--host", "api1", "--since", "2026-11-24T02:01:00Z", "--until",
                           "2026-11-24T02:02:00Z", part});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, part + ": 5 snapshots of " + fleet + "\n");
  const auto hosts = nlohmann::json::parse(sockhist({"hosts", "--db", part, "--format", "json"}).out)["rows"];
  ASSERT_EQ(hosts.size(), 1U);
  EXPECT_EQ(hosts[0]["host"], "api1");
  EXPECT_EQ(hosts[0]["snapshots"], 5);
  for (const char* at : {"2026-11-24T02:01:00Z", "2026-11-24T02:01:30Z", "2026-11-24T02:02:00Z"}) {
    const auto a = sockhist({"show", "--db", fleet, "--host", "api1", "--at", at, "-tanpo"});
    const auto b = sockhist({"show", "--db", part, "--at", at, "-tanpo"});
    EXPECT_EQ(a.out, b.out) << at;
  }
  const auto unknown = sockhist({"export", "--db", fleet, "--host", "web9", (dir / "none.db").string()});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("--host web9"), std::string::npos) << unknown.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "none.db"));
}

}  // namespace
