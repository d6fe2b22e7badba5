// What must hold however the collector is stopped or raced: whole snapshots only, an intact file,
// one writer at a time.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include <sqlite3.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "files.hpp"
#include "process.hpp"
#include "sockets.hpp"
#include "sockhist/store.hpp"
#include "sockhist/timeutil.hpp"

using namespace sockhist;
using namespace sockhist::test;

namespace {

const std::string k_collect = SOCKHIST_COLLECT_BIN;

// Every snapshot is whole: its reconstructed sockets, its state counts and its recorded socket
// count agree, and its counters are all there.
void expect_whole_snapshots(const std::filesystem::path& path, int minimum) {
  auto db = store::open_read_only(path);
  EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
  EXPECT_EQ(db.execAndGet("SELECT count(*) FROM pragma_foreign_key_check").getInt(), 0);
  EXPECT_GE(db.execAndGet("SELECT count(*) FROM snapshots").getInt(), minimum);
  const int counters = db.execAndGet("SELECT count(*) FROM v_counters WHERE snapshot_id = 1").getInt();
  EXPECT_GT(counters, 100);
  SQLite::Statement q(db,
                      "SELECT s.snapshot_id, s.socket_count, "
                      "(SELECT count(*) FROM v_snapshot_sockets v WHERE v.snapshot_id = s.snapshot_id), "
                      "(SELECT coalesce(sum(count), 0) FROM state_counts c WHERE c.snapshot_id = s.snapshot_id), "
                      "(SELECT count(*) FROM v_counters k WHERE k.snapshot_id = s.snapshot_id) "
                      "FROM snapshots s ORDER BY s.snapshot_id");
  while (q.executeStep()) {
    const auto id = q.getColumn(0).getInt64();
    EXPECT_EQ(q.getColumn(1).getInt64(), q.getColumn(2).getInt64()) << "snapshot " << id;
    EXPECT_EQ(q.getColumn(1).getInt64(), q.getColumn(3).getInt64()) << "snapshot " << id;
    EXPECT_EQ(q.getColumn(4).getInt(), counters) << "snapshot " << id;
  }
}

}  // namespace

TEST(Robustness, KillNineAtRandomMomentsLeavesOnlyWholeSnapshots) {
  const auto dir = scratch_dir("kill9");
  const auto db = dir / "k.db";
  Fd listener = listen_tcp(4);
  std::vector<Pair> churn;
  // Kill at random moments around the time one snapshot takes on this machine now, so that kills
  // land before, during and after commits whatever the machine's load.
  const auto timing = dir / "timing.db";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run(k_collect, {"--db", timing.string()}).exit_code, 0);
  const auto one = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  std::mt19937 rng(20261124);
  std::uniform_int_distribution<long> pause_ms(one / 4, one * 4 + 20);
  int kills = 0;
  for (int round = 0; round < 25; ++round) {
    // Change the population every round so that snapshots write spans, not just counters.
    for (int i = 0; i < 3; ++i) {
      churn.push_back(connect_pair(4, listener));
    }
    if (churn.size() > 6) {
      churn.erase(churn.begin(), churn.begin() + 2);
    }
    const pid_t pid = spawn(k_collect, {"--db", db.string(), "--interval", "10ms", "--retain", "0"});
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    kills += wait_child(pid) == 128 + SIGKILL ? 1 : 0;
  }
  EXPECT_GE(kills, 20);
  // Killed writers never block the next one, and the file is intact and usable.
  const auto r = run(k_collect, {"--db", db.string(), "--retain", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_whole_snapshots(db, 10);
}

TEST(Robustness, SigtermFinishesTheSnapshotInFlightAndExitsZero) {
  const auto dir = scratch_dir("sigterm");
  const auto db = dir / "t.db";
  const pid_t pid = spawn(k_collect, {"--db", db.string(), "--interval", "100ms"});
  std::this_thread::sleep_for(std::chrono::milliseconds(450));
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_child(pid), 0);
  expect_whole_snapshots(db, 2);
}

TEST(Robustness, CountStopsTheLoop) {
  const auto dir = scratch_dir("count");
  const auto db = dir / "n.db";
  const auto r = run(k_collect, {"--db", db.string(), "--interval", "50ms", "--count", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto connection = store::open_read_only(db);
  EXPECT_EQ(connection.execAndGet("SELECT count(*) FROM snapshots").getInt(), 4);
  // Snapshots are spaced by the interval (a fixed-rate schedule, not back to back).
  EXPECT_GE(connection.execAndGet("SELECT max(time_ms) - min(time_ms) FROM snapshots").getInt(), 140);
}

TEST(Robustness, TwoCollectorsAtOnceTakeTurns) {
  const auto dir = scratch_dir("two-writers");
  const auto db = dir / "w.db";
  for (int round = 0; round < 3; ++round) {
    const pid_t a = spawn(k_collect, {"--db", db.string()});
    const pid_t b = spawn(k_collect, {"--db", db.string()});
    EXPECT_EQ(wait_child(a), 0);
    EXPECT_EQ(wait_child(b), 0);
  }
  auto connection = store::open_read_only(db);
  EXPECT_EQ(connection.execAndGet("SELECT count(*) FROM snapshots").getInt(), 6);
  // One after the other: each snapshot's time is at or after the previous one's.
  EXPECT_EQ(connection
                .execAndGet("SELECT count(*) FROM snapshots a JOIN snapshots b ON b.snapshot_id = a.snapshot_id + 1 "
                            "WHERE b.time_ms < a.time_ms")
                .getInt(),
            0);
  expect_whole_snapshots(db, 6);
}

TEST(Robustness, BusyDatabaseIsRefusedAfterTheWaitLimit) {
  const auto dir = scratch_dir("busy");
  const auto db = dir / "b.db";
  ASSERT_EQ(run(k_collect, {"--db", db.string()}).exit_code, 0);
  store::WriterLock held(db, std::chrono::milliseconds(0));
  const auto started = std::chrono::steady_clock::now();
  const auto r = run(k_collect, {"--db", db.string(), "--lock-wait", "300ms"});
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("pid " + std::to_string(::getpid())), std::string::npos) << r.err;
  EXPECT_GE(waited, std::chrono::milliseconds(300));
  EXPECT_EQ(store::open_read_only(db).execAndGet("SELECT count(*) FROM snapshots").getInt(), 1);
}

// A newer schema version, or another application's id, committed only in the -wal so far: the
// collector refuses before SQLite can checkpoint the log into the file, and the database and its
// log are left byte for byte as they were.
TEST(Robustness, ARefusalOfWhatOnlyTheWalSaysTouchesNothing) {
  const auto dir = scratch_dir("wal-only-refusal");
  for (const auto& [name, pragma, says] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"newer.db", "PRAGMA user_version = 999", "newer than this sockhist"},
           {"foreign.db", "PRAGMA application_id = 1234", "another application"}}) {
    const auto db = dir / name;
    ASSERT_EQ(run(k_collect, {"--db", db.string(), "--quiet"}).exit_code, 0);
    {
      SQLite::Database conn(db.string(), SQLite::OPEN_READWRITE);
      sqlite3_db_config(conn.getHandle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
      conn.exec("PRAGMA wal_autocheckpoint = 0");
      conn.exec(pragma);
    }
    const std::string wal = db.string() + "-wal";
    ASSERT_GT(std::filesystem::file_size(wal), 0U) << "the change must be in the log only";
    ASSERT_EQ(store::check_file(db).kind == store::FileKind::sockhist, name == "newer.db");
    const auto before = read_text(db) + read_text(wal);
    const auto r = run(k_collect, {"--db", db.string(), "--quiet"});
    EXPECT_EQ(r.exit_code, 3) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("left untouched"), std::string::npos) << r.err;
    EXPECT_EQ(read_text(db) + read_text(wal), before) << name << ": the refusal changed the file or its log";
  }
}

// The analyzer only reads: on a database that is one file (an export), it leaves no -wal or -shm
// of its own beside it, whatever it ran.
TEST(Robustness, TheAnalyzerLeavesNothingBesideADatabaseItOnlyRead) {
  const auto dir = scratch_dir("reader-leaves-nothing");
  const auto source = dir / "source" / "s.db";
  ASSERT_EQ(run(k_collect, {"--db", source.string(), "--quiet"}).exit_code, 0);
  // An export (one file, rollback journal) and a plain copy of the live file (WAL mode, copied
  // without its -wal and -shm, as `cp` of a quiet database is): reading either creates nothing.
  const auto exported = dir / "export" / "e.db";
  const auto copied = dir / "copy" / "c.db";
  std::filesystem::create_directories(exported.parent_path());
  std::filesystem::create_directories(copied.parent_path());
  const auto r = run(SOCKHIST_ANALYZER_BIN, {"export", "--db", source.string(), exported.string(), "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::filesystem::copy_file(source, copied);
  const auto listing = [](const std::filesystem::path& folder) {
    std::set<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(folder)) {
      names.insert(entry.path().filename().string());
    }
    return names;
  };
  for (const auto& db : {exported, copied}) {
    const std::set<std::string> alone{db.filename().string()};
    ASSERT_EQ(listing(db.parent_path()), alone) << "one file to begin with";
    const auto before = read_text(db);
    for (const std::vector<std::string>& args : {std::vector<std::string>{"hosts"},
                                                 {"show", "-a"},
                                                 {"stats"},
                                                 {"snapshots", "--since", "1d"},
                                                 {"check", "--verbose", "--time-wait-max", "100000"},
                                                 {"sql", "SELECT count(*) FROM v_snapshot_sockets"}}) {
      auto all = args;
      all.insert(all.begin() + 1, {"--db", db.string()});
      const auto read = run(SOCKHIST_ANALYZER_BIN, all);
      EXPECT_LE(read.exit_code, 1) << args.front() << ": " << read.err;
      EXPECT_EQ(listing(db.parent_path()), alone) << args.front() << " left files beside " << db;
    }
    EXPECT_TRUE(read_text(db) == before) << db;
  }
}

// A disk that fills: the failing run names the database, says nothing of that snapshot was stored,
// exits 1, and every earlier snapshot is still there, whole. On a 600 KiB tmpfs in a mount
// namespace of its own (needs root: CI).
TEST(Robustness, AFullDiskIsNamedAndTheDatabaseStaysWhole) {
  if (::geteuid() != 0 || find_tool("unshare").empty() || find_tool("sqlite3").empty()) {
    GTEST_SKIP() << "mounts a small tmpfs in a private mount namespace: needs root, unshare and sqlite3 (CI)";
  }
  const auto dir = scratch_dir("disk-full");
  const auto mnt = dir / "mnt";
  std::filesystem::create_directories(mnt);
  // Snapshots of the busy sample, a second apart, until one does not fit.
  const auto script = fmt::format(
      "mount -t tmpfs -o size=600k none {mnt} || exit 90; "
      "for i in $(seq 1 300); do "
      "  {collect} --db {mnt}/x.db --retain 0 --quiet --host h --proc-root {samples}/0$((i % 3))/proc "
      "    --at \"2026-11-24T0$((i / 3600)):$(printf %02d $((i / 60 % 60))):$(printf %02d $((i % 60)))Z\" "
      "    2>{dir}/err; rc=$?; [ $rc -ne 0 ] && break; "
      "done; "
      "echo \"$rc $i\" >{dir}/result; "
      "sqlite3 -readonly {mnt}/x.db 'PRAGMA integrity_check' >{dir}/integrity; "
      "sqlite3 -readonly {mnt}/x.db 'SELECT count(*) FROM snapshots' >{dir}/count",
      fmt::arg("mnt", mnt.string()), fmt::arg("collect", k_collect), fmt::arg("dir", dir.string()),
      fmt::arg("samples", (samples_dir() / "history-busy").string()));
  const auto r = run(find_tool("unshare"), {"-m", "/bin/sh", "-c", script});
  if (r.exit_code == 90) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << r.err;
  }
  int rc = 0, runs = 0;
  std::istringstream(read_text(dir / "result")) >> rc >> runs;
  ASSERT_EQ(rc, 1) << "the disk never filled in 300 runs: " << read_text(dir / "err");
  const auto err = read_text(dir / "err");
  EXPECT_EQ(err, fmt::format("sockhist-collect: error: {}/x.db: cannot write the snapshot: database or disk is full "
                             "(rolled back: nothing of it was stored)\n",
                             mnt.string()));
  EXPECT_EQ(read_text(dir / "integrity"), "ok\n");
  EXPECT_EQ(read_text(dir / "count"), fmt::format("{}\n", runs - 1)) << "every snapshot before the full one is there";
}

// Memory that runs out while a file is read: the error names the file (before, "std::bad_alloc").
// An address-space limit of 256 MiB and a 600 MB sparse file, under the 1 GiB input cap. The
// collector reads a socket table a read at a time and never holds more than 64 KiB of a line: the
// same file is refused for what it is at its first reads, within the limit.
TEST(Robustness, RunningOutOfMemoryNamesTheFile) {
  std::string why;
  const auto prlimit = address_limit_tool(why);
  if (prlimit.empty()) {
    GTEST_SKIP() << why;
  }
  const auto dir = scratch_dir("out-of-memory");
  const auto listing = dir / "big.txt";
  write_text(listing, "");
  std::filesystem::resize_file(listing, 600'000'000);
  const auto import = run(prlimit, {"--as=268435456", SOCKHIST_ANALYZER_BIN, "import", "ss", listing.string(), "--db",
                                    (dir / "x.db").string(), "--host", "h", "--at", "2026-11-24T00:00:00Z"});
  EXPECT_EQ(import.exit_code, 2);
  EXPECT_EQ(import.err,
            fmt::format("sockhist: error: {}: out of memory after reading 0 bytes of it\n", listing.string()));
  const auto tree = dir / "tree";
  write_text(tree / "net" / "tcp", "");
  std::filesystem::resize_file(tree / "net" / "tcp", 600'000'000);
  const auto collect = run(
      prlimit, {"--as=268435456", k_collect, "--db", (dir / "y.db").string(), "--proc-root", tree.string(), "--quiet"});
  EXPECT_EQ(collect.exit_code, 5);
  EXPECT_EQ(collect.err,
            fmt::format("sockhist-collect: error: {}/net/tcp: not a socket table (the first line is not the 'sl "
                        "local_address ...' header)\n",
                        tree.string()));
  EXPECT_FALSE(std::filesystem::exists(dir / "x.db"));
}

// A damaged database is never written to: a copy cut short is seen in its header at once, damage
// inside it by quick_check, run before writing when the last one recorded is older than
// --check-every (24h by default; here 0: every time). Readers are warned; merge refuses it.
TEST(Robustness, ADamagedDatabaseIsRefusedUntouchedAndReadersAreWarned) {
  const auto dir = scratch_dir("damaged");
  const auto make = [&](const std::string& name) {
    const auto db = dir / name;
    for (int i = 0; i < 3; ++i) {
      const auto r = run(k_collect, {"--db", db.string(), "--quiet", "--host", "web1", "--proc-root",
                                     (samples_dir() / "history-busy" / fmt::format("0{}", i) / "proc").string(), "--at",
                                     fmt::format("2026-11-24T00:0{}:00Z", i)});
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
    return db;
  };
  // The first write checks and records it; the next within --check-every does not check again.
  const auto sound = make("sound.db");
  {
    auto db = store::open_read_only(sound);
    EXPECT_EQ(db.execAndGet("SELECT count(*) FROM diagnostics WHERE file = '(database)' AND message LIKE "
                            "'quick_check: ok, % ms'")
                  .getInt(),
              1);
  }
  // Cut short by one page: the header counts more pages than the file holds.
  const auto cut = make("cut.db");
  std::filesystem::resize_file(cut, std::filesystem::file_size(cut) - 4096);
  const auto cut_bytes = read_text(cut);
  const auto collect = run(k_collect, {"--db", cut.string(), "--quiet"});
  EXPECT_EQ(collect.exit_code, 3);
  EXPECT_TRUE(
      collect.err.starts_with(fmt::format("sockhist-collect: error: {}: is damaged: its header counts ", cut.string())))
      << collect.err;
  EXPECT_NE(collect.err.find("(cut short?); nothing was written. Move it aside"), std::string::npos) << collect.err;
  EXPECT_TRUE(read_text(cut) == cut_bytes) << "a damaged database was written";
  const auto hosts = run(SOCKHIST_ANALYZER_BIN, {"hosts", "--db", cut.string()});
  EXPECT_TRUE(hosts.err.starts_with(fmt::format("sockhist: warning: {}: is damaged: ", cut.string()))) << hosts.err;
  const auto merged = run(SOCKHIST_ANALYZER_BIN, {"merge", (dir / "merged.db").string(), cut.string()});
  EXPECT_EQ(merged.exit_code, 2);
  EXPECT_NE(merged.err.find(cut.string() + ": is damaged"), std::string::npos) << merged.err;
  // Garbage over the spans' root page: the header is fine, quick_check is not.
  const auto inside = make("inside.db");
  int root_page = 0;
  {
    auto db = store::open_read_only(inside);
    root_page = db.execAndGet("SELECT rootpage FROM sqlite_schema WHERE name = 'socket_spans'").getInt();
  }
  {
    std::fstream file(inside, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(root_page - 1) * 4096 + 8);
    const std::string garbage(4000, '\xaa');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  const auto inside_bytes = read_text(inside);
  const auto checked = run(k_collect, {"--db", inside.string(), "--quiet", "--check-every", "0"});
  EXPECT_EQ(checked.exit_code, 3);
  EXPECT_TRUE(
      checked.err.starts_with(fmt::format("sockhist-collect: error: {}: is damaged (quick_check: ", inside.string())))
      << checked.err;
  EXPECT_TRUE(read_text(inside) == inside_bytes) << "a damaged database was written";
  const auto read_inside = run(SOCKHIST_ANALYZER_BIN, {"show", "--db", inside.string(), "-a"});
  EXPECT_EQ(read_inside.exit_code, 2);
  EXPECT_NE(read_inside.err.find("(the file is damaged: `sqlite3 FILE .recover` saves what is readable)"),
            std::string::npos)
      << read_inside.err;
}

// A reader holding one transaction for as long as it likes (a dashboard, an analyst's sqlite3 shell)
// makes the -wal grow: SQLite must keep every frame that reader may need. Once it lets go, the next
// write gives the room back. Before, the -wal kept its largest size for good.
TEST(Robustness, TheWalShrinksOnceALongReaderLetsGo) {
  const auto dir = scratch_dir("long-reader");
  const auto db = (dir / "x.db").string();
  const auto busy = samples_dir() / "history-busy";
  const auto snapshot = [&](int i) {
    const auto r = run(k_collect, {"--db", db, "--quiet", "--host", "web1", "--proc-root",
                                   (busy / fmt::format("0{}", i % 3) / "proc").string(), "--at",
                                   fmt::format("2026-11-24T00:{:02}:00Z", i)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  snapshot(0);
  const auto wal_bytes = [&] { return std::filesystem::file_size(db + "-wal"); };
  std::uintmax_t held = 0;
  {
    SQLite::Database reader(db, SQLite::OPEN_READONLY);
    reader.exec("BEGIN");
    EXPECT_EQ(reader.execAndGet("SELECT count(*) FROM snapshots").getInt(), 1);
    for (int i = 1; i <= 30; ++i) {
      snapshot(i);
    }
    held = wal_bytes();
    EXPECT_GT(held, 1U << 20) << "the -wal did not grow under the reader: the test proves nothing";
    EXPECT_EQ(reader.execAndGet("SELECT count(*) FROM snapshots").getInt(), 1) << "the reader's view moved";
    reader.exec("COMMIT");
    // The reader's connection stays open, outside any transaction: it holds nothing back.
    snapshot(31);
    EXPECT_EQ(wal_bytes(), 0U) << "the -wal kept " << held << " bytes after the reader let go";
    EXPECT_EQ(reader.execAndGet("SELECT count(*) FROM snapshots").getInt(), 32);
  }
  auto check = store::open_read_only(db);
  EXPECT_EQ(check.execAndGet("PRAGMA integrity_check").getString(), "ok");
  std::cout << "[ figures  ] -wal under a reader holding one transaction for 30 snapshots: " << held
            << " bytes; after it let go and one more snapshot: " << std::filesystem::file_size(db + "-wal")
            << " bytes\n";
}

// A -wal beside an older copy of its file (the file copied at one moment, the -wal at a later one,
// after a checkpoint): the frames describe pages the old file does not have. The collector finds
// it before writing (quick_check, the first run on this copy) and leaves both files as they were;
// merge refuses it as an input.
TEST(Robustness, AWalBesideAnOlderCopyOfItsFileIsRefusedUntouched) {
  const auto dir = scratch_dir("stale-main");
  const auto live = (dir / "live.db").string();
  int n = 0;
  const auto snapshot = [&] {
    ++n;
    const auto r = run(k_collect, {"--db", live, "--quiet", "--retain", "0", "--host", "web1", "--proc-root",
                                   (samples_dir() / "history-busy" / fmt::format("0{}", n % 3) / "proc").string(),
                                   "--at", model::format_iso_utc(1'795'000'000'000 + n * 1000)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  for (int i = 0; i < 20; ++i) {
    snapshot();
  }
  const auto mixed = dir / "mixed.db";
  std::filesystem::copy_file(live, mixed);
  for (int i = 0; i < 40; ++i) {
    snapshot();
  }
  {
    // A reader's transaction keeps the next snapshots in the -wal, unmerged into the file.
    SQLite::Database reader(live, SQLite::OPEN_READONLY);
    reader.exec("BEGIN");
    reader.execAndGet("SELECT count(*) FROM snapshots");
    for (int i = 0; i < 40; ++i) {
      snapshot();
    }
    std::filesystem::copy_file(live + "-wal", mixed.string() + "-wal");
  }
  const auto bytes = [&] { return read_text(mixed) + read_text(mixed.string() + "-wal"); };
  const auto before = bytes();
  const auto collect = run(k_collect, {"--db", mixed.string(), "--quiet"});
  EXPECT_EQ(collect.exit_code, 3) << collect.err;
  EXPECT_NE(collect.err.find(mixed.string() + ": "), std::string::npos) << collect.err;
  EXPECT_NE(collect.err.find("nothing was written. Move it aside"), std::string::npos) << collect.err;
  EXPECT_TRUE(bytes() == before) << "the refused file or its -wal was written";
  const auto merged = run(SOCKHIST_ANALYZER_BIN, {"merge", (dir / "out.db").string(), mixed.string()});
  EXPECT_EQ(merged.exit_code, 2);
  EXPECT_NE(merged.err.find(mixed.string() + ": corrupt"), std::string::npos) << merged.err;
}
