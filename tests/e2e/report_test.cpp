// sockhist report over the sample histories the real collector recorded: which charts exist, their
// series, axis labels and numbers at a known moment (tests/golden/report_*.txt, read out of the page
// with libxml2's XPath, not compared as images); every line drawn has as many points as its table
// has numbers; the page and each chart alone are well-formed XML (xmllint); text from the database
// is escaped; bad options and outputs are refused with a one-line error, leaving files as they were.
#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <regex>

#include <fmt/format.h>

#include "files.hpp"
#include "histories.hpp"
#include "process.hpp"
#include "report_page.hpp"

using namespace sockhist::test;

namespace {

const std::filesystem::path k_golden = SOCKHIST_GOLDEN_DIR;

// The page's structure as text: the summary, then per chart its title, axis labels, series with the
// points drawn, and the numbers of the bucket starting at `at` (ISO-8601 UTC).
std::string structure(const Page& page, const std::string& at) {
  std::string out;
  for (const auto& fact : page.strings("//h:table[@class='facts']//h:tr")) {
    out += "fact: " + fact + "\n";
  }
  for (const auto& line : page.strings("//h:ul[@class='section']/h:li")) {
    out += "summary: " + line + "\n";
  }
  for (const auto& id : page.strings("//h:section[@class='chart']/@id")) {
    const auto chart = fmt::format("//h:section[@id='{}']", id);
    out += fmt::format("{}: {}\n", id, page.string(chart + "/h:h2"));
    out += fmt::format("  axes: x '{}', y '{}'\n", page.string(chart + "//s:text[contains(@class,'x-label')]"),
                       page.string(chart + "//s:text[contains(@class,'y-label')]"));
    const auto empty = page.string(chart + "//s:text[@class='empty']");
    if (!empty.empty()) {
      out += "  empty: " + empty + "\n";
    }
    out += fmt::format("  buckets: {}, gaps: {}, reboots: {}\n",
                       page.count(chart + "//h:table[@class='numbers-table']/h:tbody/h:tr"),
                       page.count(chart + "//h:td[@class='marker'][.='no snapshot']"),
                       page.count(chart + "//s:line[@class='reboot']"));
    for (const auto& name : page.strings(chart + "//s:g[@class='series']/@data-series")) {
      out += fmt::format("  series '{}': {} points drawn\n", name, page.points(chart, name));
    }
    const auto headings = page.strings(chart + "//h:table[@class='numbers-table']//h:th");
    const auto cells = page.strings(fmt::format("{}//h:tr[@data-start='{}']/h:td", chart, at));
    for (std::size_t i = 1; i < cells.size() && i < headings.size(); ++i) {
      out += fmt::format("  at {}: {} = {}\n", at, headings[i], cells[i].empty() ? "(none)" : cells[i]);
    }
    for (const auto& row : page.strings(chart + "//h:table[@class='extra-table']/h:tbody/h:tr")) {
      out += "  row: " + row + "\n";
    }
    for (const auto& note : page.strings(chart + "//h:ul[@class='notes']/h:li")) {
      out += "  note: " + note + "\n";
    }
  }
  return out;
}

// Each series draws one point per number its table holds in a bucket with snapshots: the picture and
// the numbers agree.
void expect_points_match_numbers(const Page& page) {
  for (const auto& id : page.strings("//h:section[@class='chart']/@id")) {
    const auto chart = fmt::format("//h:section[@id='{}']", id);
    const auto names = page.strings(chart + "//s:g[@class='series']/@data-series");
    for (std::size_t k = 0; k < names.size(); ++k) {
      const auto numbers = page.count(fmt::format(
          "{}//h:table[@class='numbers-table']/h:tbody/h:tr[h:td[@class='marker'] != 'no snapshot']/h:td[{}][. != '']",
          chart, k + 2));
      EXPECT_EQ(page.points(chart, names[k]), numbers) << id << " series " << names[k];
    }
  }
}

Result report(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"report"};
  all.insert(all.end(), args.begin(), args.end());
  return run(SOCKHIST_ANALYZER_BIN, all);
}

void golden(const std::string& name, const std::string& text) {
  const auto file = k_golden / (name + ".txt");
  if (std::getenv("SOCKHIST_UPDATE_GOLDEN") != nullptr) {
    write_text(file, text);
  }
  ASSERT_TRUE(std::filesystem::exists(file)) << file << " missing: run with SOCKHIST_UPDATE_GOLDEN=1";
  EXPECT_EQ(text, read_text(file)) << "golden " << file;
}

class Report : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("TZ", "UTC", 1);
    ::setenv("SOCKHIST_NOW", "2026-11-25T00:00:00Z", 1);
    dir_ = scratch_dir("report-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  }
  std::filesystem::path dir_;
};

TEST_F(Report, LifecycleHistoryHasEveryChartWithItsNumbers) {
  const auto file = (dir_ / "api1.html").string();
  const auto r = report(
      {"--db", lifecycle_db(), "--utc", "-o", file, "--close-wait-max-per-process", "5", "--time-wait-max", "20"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");  // quiet when stderr is not a terminal, as under cron
  const auto x = run("/usr/bin/xmllint", {"--noout", file});
  EXPECT_EQ(x.exit_code, 0) << x.err;
  const Page page(file);
  golden("report_lifecycle", replace_all(structure(page, "2026-11-24T02:01:00.000Z"), lifecycle_db(), "<db>"));
  expect_points_match_numbers(page);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "a report holds what the database holds";
  // Nothing is fetched: no URL but the namespaces' own, no script.
  const auto html = read_text(file);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(std::regex_search(html, std::regex(R"((src|href)="(https?:)?//)")), false);
}

TEST_F(Report, BusyHistoryAndLocalTimeNameTheirZone) {
  ::setenv("TZ", "Europe/Berlin", 1);
  const auto file = (dir_ / "web1.html").string();
  const auto r = report({"--db", sample_db(), "-o", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Page page(file);
  golden("report_busy", replace_all(structure(page, "2026-11-24T00:55:55.000Z"), sample_db(), "<db>"));
  expect_points_match_numbers(page);
  EXPECT_EQ(page.string("//h:section[@id='chart-states']//s:text[contains(@class,'x-label')]"),
            "local time (CET, UTC+01:00)");
}

// The x coordinates of a path's vertices ("M10.0,20.0 L30.0,40.0").
std::vector<double> vertices_x(const std::string& d) {
  std::vector<double> xs;
  const std::regex point(R"re([ML](-?[0-9.]+),)re");
  for (auto it = std::sregex_iterator(d.begin(), d.end(), point); it != std::sregex_iterator(); ++it) {
    xs.push_back(std::stod((*it)[1]));
  }
  return xs;
}

TEST_F(Report, AGapIsShadedWhereItLiesAndNoLineCrossesIt) {
  // Five of api1's captures: 02:00:00, :15, :30, then 02:01:30 and :45. A minute without a snapshot
  // is more than 3 usual intervals (15 s): the collector did not run.
  const auto db = (dir_ / "gap.db").string();
  collect_samples(db, "api1", {"00", "01", "02", "06", "07"}, "history-lifecycle");
  const auto file = (dir_ / "gap.html").string();
  ASSERT_EQ(report({"--db", db, "--utc", "-o", file}).exit_code, 0);
  const Page page(file);
  EXPECT_EQ(page.strings("//h:ul[@class='section']/h:li").front(),
            "No snapshot from 2026-11-24 02:00:30Z to 2026-11-24 02:01:30Z (1m00s): the collector did not run.");
  expect_points_match_numbers(page);
  const auto charts = page.strings("//h:section[@class='chart']/@id");
  ASSERT_EQ(charts.size(), 8u);
  long crossings_checked = 0;
  for (const auto& id : charts) {
    const auto chart = fmt::format("//h:section[@id='{}']", id);
    const auto gap_x = page.strings(chart + "//s:rect[@class='gap']/@x");
    const auto gap_w = page.strings(chart + "//s:rect[@class='gap']/@width");
    ASSERT_EQ(gap_x.size(), 1u) << id << " shades the gap once";
    EXPECT_EQ(page.string(chart + "//s:rect[@class='gap']/s:title"),
              "no snapshot from 2026-11-24 02:00:30Z to 2026-11-24 02:01:30Z");
    const double from = std::stod(gap_x[0]);
    const double to = from + std::stod(gap_w[0]);
    for (const auto& d : page.strings(chart + "//s:g[@class='series']/s:path/@d")) {
      const auto xs = vertices_x(d);
      for (std::size_t i = 0; i < xs.size(); ++i) {
        EXPECT_FALSE(xs[i] > from && xs[i] < to) << id << ": a point inside the gap: " << d;
        if (i > 0) {
          EXPECT_FALSE(xs[i - 1] <= from && xs[i] >= to) << id << ": a line across the gap: " << d;
          ++crossings_checked;
        }
      }
    }
  }
  EXPECT_GT(crossings_checked, 20);
  // The buckets wholly inside the gap say so in the numbers; the one it ends in says it is part of one.
  EXPECT_EQ(page.count("//h:section[@id='chart-states']//h:td[@class='marker'][.='no snapshot']"), 2);
  EXPECT_EQ(page.count("//h:section[@id='chart-states']//h:td[@class='marker'][.='part of a gap']"), 2);
}

TEST_F(Report, OneSnapshotDrawsItsPointsAndSaysWhyTheRatesAreEmpty) {
  const auto db = (dir_ / "one.db").string();
  collect_samples(db, "api1", {"05"}, "history-lifecycle");
  const auto file = (dir_ / "one.html").string();
  const auto r = report({"--db", db, "--utc", "-o", file});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run("/usr/bin/xmllint", {"--noout", file}).exit_code, 0);
  const Page page(file);
  expect_points_match_numbers(page);
  EXPECT_EQ(page.strings("//h:ul[@class='section']/h:li").front(), "One snapshot: nothing to compare.");
  EXPECT_EQ(page.points("//h:section[@id='chart-states']", "ESTABLISHED"), 1);
  EXPECT_EQ(page.count("//h:section[@id='chart-states']//s:circle"),
            page.count("//h:section[@id='chart-states']//s:g[@class='series']"))
      << "one dot per series";
  EXPECT_EQ(page.count("//h:section[@id='chart-states']//s:path"), 0) << "no line";
  for (const auto& id : {"retransmits", "resets", "listen-queue"}) {
    EXPECT_EQ(page.string(fmt::format("//h:section[@id='chart-{}']//s:text[@class='empty']", id)),
              "one snapshot: no rate or change to draw")
        << id;
  }
}

TEST_F(Report, AnImportedListingHasNoCountersAndTheChartsSaySo) {
  const auto db = (dir_ / "imported.db").string();
  const auto listing = (samples_dir() / "imports" / "netstat-antp.txt").string();
  const auto imported = run(SOCKHIST_ANALYZER_BIN,
                            {"import", "netstat", "--db", db, "--host", "h1", "--at", "2026-11-24T05:14:42Z", listing});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  const auto file = (dir_ / "imported.html").string();
  ASSERT_EQ(report({"--db", db, "--utc", "-o", file}).exit_code, 0);
  const Page page(file);
  expect_points_match_numbers(page);
  for (const auto& id : {"retransmits", "resets", "listen-queue"}) {
    EXPECT_EQ(page.string(fmt::format("//h:section[@id='chart-{}']//s:text[@class='empty']", id)),
              "none of these counters was recorded")
        << id;
  }
  const auto notes = page.strings("//h:section[@id='chart-time-wait']//h:ul[@class='notes']/h:li");
  EXPECT_NE(std::find(notes.begin(), notes.end(), "TcpExt.TW was never recorded in this history: not drawn."),
            notes.end());
  EXPECT_NE(std::find(notes.begin(), notes.end(),
                      "TcpExt.TCPTimeWaitOverflow was never recorded in this history: not drawn."),
            notes.end());
}

TEST_F(Report, EachChartAloneIsAStandaloneSvg) {
  const auto html = (dir_ / "page.html").string();
  ASSERT_EQ(report({"--db", lifecycle_db(), "--utc", "-o", html}).exit_code, 0);
  const Page page(html);
  const auto ids = page.strings("//h:section[@class='chart']/@id");
  ASSERT_EQ(ids.size(), 8u);
  for (const auto& section : ids) {
    const auto id = section.substr(std::string("chart-").size());
    const auto file = (dir_ / (id + ".svg")).string();
    const auto r = report({"--db", lifecycle_db(), "--utc", "--format", "svg", "--chart", id, "-o", file});
    ASSERT_EQ(r.exit_code, 0) << id << ": " << r.err;
    const auto x = run("/usr/bin/xmllint", {"--noout", file});
    EXPECT_EQ(x.exit_code, 0) << id << ": " << x.err;
    const Page svg(file);
    EXPECT_EQ(svg.string("/s:svg/s:title"), page.string(fmt::format("//h:section[@id='{}']/h:h2", section)));
    EXPECT_EQ(svg.strings("//s:g[@class='series']/@data-series"),
              page.strings(fmt::format("//h:section[@id='{}']//s:g[@class='series']/@data-series", section)));
    EXPECT_NE(svg.string("/s:svg/s:style"), "") << "a standalone chart carries its style";
  }
  const auto out = report({"--db", lifecycle_db(), "--format", "svg", "--chart", "close-wait", "-o", "-"});
  ASSERT_EQ(out.exit_code, 0);
  EXPECT_EQ(out.out.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg", 0), 0u);
}

TEST_F(Report, TextFromTheDatabaseIsEscaped) {
  const auto db = (dir_ / "hostile.db").string();
  std::filesystem::copy_file(lifecycle_db(), db);
  ASSERT_EQ(run("/usr/bin/sqlite3", {db, "UPDATE processes SET comm = '<b>&\"x' || char(27) || '[31m'"}).exit_code, 0);
  const auto file = (dir_ / "hostile.html").string();
  ASSERT_EQ(report({"--db", db, "-o", file}).exit_code, 0);
  EXPECT_EQ(run("/usr/bin/xmllint", {"--noout", file}).exit_code, 0);
  const auto html = read_text(file);
  EXPECT_NE(html.find("&lt;b&gt;&amp;&quot;x\\x1b[31m"), std::string::npos);
  EXPECT_EQ(html.find('\x1b'), std::string::npos);
}

TEST_F(Report, RefusalsNameTheOptionAndLeaveFilesAsTheyWere) {
  const auto& db = lifecycle_db();
  const auto expect_refused = [](const Result& r, const std::string& says) {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  expect_refused(report({"--db", db, "--format", "svg", "-o", "-"}), "--chart");
  expect_refused(report({"--db", db, "--chart", "states", "-o", "-"}), "--chart needs --format svg");
  expect_refused(report({"--db", db, "--format", "svg", "--chart", "nope", "-o", "-"}),
                 "--chart nope: no such chart here; the charts are states, close-wait");
  expect_refused(report({"--db", db}), "-o FILE");
  expect_refused(report({"--db", db, "--since", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z", "-o", "-"}),
                 "no snapshot in the window");
  const auto fifo = (dir_ / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_refused(report({"--db", db, "-o", fifo}), "-o " + fifo + ": exists and is not a regular file");
  EXPECT_TRUE(std::filesystem::is_fifo(fifo));
  // An existing file is replaced whole; a link is replaced, never written through.
  const auto target = dir_ / "target.txt";
  write_text(target, "kept");
  const auto link = dir_ / "link.html";
  std::filesystem::create_symlink(target, link);
  ASSERT_EQ(report({"--db", db, "-o", link.string()}).exit_code, 0);
  EXPECT_EQ(read_text(target), "kept");
  EXPECT_FALSE(std::filesystem::is_symlink(link));
  EXPECT_NE(read_text(link).find("<!DOCTYPE html>"), std::string::npos);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), std::filesystem::directory_iterator()), 3)
      << "no temporary file left behind";
}

TEST_F(Report, TwoHostsNeedHostAndEachReportIsItsOwn) {
  const auto r = report({"--db", fleet_db(), "-o", "-"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--host"), std::string::npos) << r.err;
  const auto file = (dir_ / "web2.html").string();
  ASSERT_EQ(report({"--db", fleet_db(), "--host", "web2", "--utc", "-o", file}).exit_code, 0);
  const Page page(file);
  EXPECT_EQ(page.string("//h:h1"), "Sockets of web2");
  EXPECT_NE(page.string("//h:table[@class='facts']//h:tr[1]/h:td").find("web2"), std::string::npos);
  // web2 holds two captures: its charts cover them alone.
  EXPECT_EQ(page.string("//h:table[@class='facts']//h:tr[h:th='Snapshots']/h:td").rfind("2, usually every 2s;", 0), 0u)
      << page.string("//h:table[@class='facts']//h:tr[h:th='Snapshots']/h:td");
}

}  // namespace
