// The renderers: aligned tables for people, RFC 4180 CSV and typed JSON for programs.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "sockhist/render.hpp"

using namespace sockhist;
using render::Column;
using render::Kind;
using render::Table;
using render::Value;

namespace {

// 2026-11-20T03:12:00Z.
constexpr std::int64_t k_moment_ms = 1'795'144'320'000;

Table sample() {
  Table t;
  t.columns = {{"name"},
               {"count", "N", Kind::integer},
               {"rate", "", Kind::real, "per_s", 1},
               {"at", "", Kind::time_ms},
               {"stay", "", Kind::duration_ms},
               {"people_only", "", Kind::text, "", 2, true, false},
               {"note", "", Kind::text, "", 2, false, true}};
  t.rows.push_back({std::string("api"), std::int64_t{7}, 2.25, k_moment_ms, std::int64_t{725'000}, std::string("x"),
                    std::string("plain")});
  t.rows.push_back({std::string("a much longer name"), std::int64_t{12345}, Value{}, Value{}, Value{}, std::string("y"),
                    std::string("say \"hi\", then\nleave")});
  t.notes.push_back("(a note)");
  return t;
}

render::Options utc_table() {
  render::Options o;
  o.zone = model::Zone::utc;
  return o;
}

TEST(RenderTable, AlignsNumbersRightTextLeftAndLeavesTheLastColumnUnpadded) {
  const auto text = render::to_text(sample(), utc_table());
  const std::string expected =
      "NAME                    N  RATE  AT                      STAY  PEOPLE ONLY\n"
      "api                     7   2.2  2026-11-20 03:12:00Z  12m05s  x\n"
      "a much longer name  12345     -  -                          -  y\n"
      "(a note)\n";
  EXPECT_EQ(text, expected);
}

TEST(RenderTable, MissingValuesShowAsADashAndRealsUseTheColumnsPrecision) {
  Column real("v", "", Kind::real, "", 3);
  EXPECT_EQ(render::cell_text(real, 1.0 / 3.0, {}), "0.333");
  EXPECT_EQ(render::cell_text(real, Value{}, {}), "-");
  Column duration("d", "", Kind::duration_ms);
  EXPECT_EQ(render::cell_text(duration, std::int64_t{850}, {}), "850ms");
}

TEST(RenderCsv, QuotesWhatNeedsItDoublesQuotesAndEndsLinesWithCrLf) {
  const auto csv = render::to_csv(sample());
  const std::string expected =
      "name,count,rate,at,at_epoch,stay,note\r\n"
      "api,7,2.25,2026-11-20T03:12:00.000Z,1795144320,725,plain\r\n"
      "a much longer name,12345,,,,,\"say \"\"hi\"\", then\nleave\"\r\n";
  EXPECT_EQ(csv, expected);
}

// What any local user may name a UNIX socket or a process: a terminal title, a screen clear, a
// forged row after a newline, an 8-bit CSI, bytes that are not UTF-8.
TEST(RenderPrintable, ControlCharactersAndNonUtf8AreEscapedAndEveryByteCanBeToldApart) {
  EXPECT_EQ(render::printable("/run/app.sock"), "/run/app.sock");
  EXPECT_EQ(render::printable("\x1b]0;owned\x07\x1b[2J"), "\\x1b]0;owned\\x07\\x1b[2J");
  EXPECT_EQ(render::printable("a\nunix  2 [ ] STREAM forged"), "a\\x0aunix  2 [ ] STREAM forged");
  EXPECT_EQ(render::printable("tab\there\x7f"), "tab\\x09here\\x7f");
  EXPECT_EQ(render::printable("\xc2\x9b"
                              "2J"),
            "\\xc2\\x9b2J");  // C1 CSI, UTF-8-encoded
  EXPECT_EQ(render::printable("\x9b"
                              "2J"),
            "\\x9b2J");  // and bare
  EXPECT_EQ(render::printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xa7"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xa7");
  EXPECT_EQ(render::printable("\xc3"), "\\xc3");  // cut short
  EXPECT_EQ(render::printable("x\\x1b"), "x\\\\x1b") << "a literal backslash cannot pass for an escape";
}

TEST(RenderTable, EscapesCellsNotesAndHeadingsAndCsvQuotesControlCharacters) {
  render::Table t;
  t.columns = {{"path"}};
  t.rows = {{std::string("/tmp/\x1b[2Jx\nforged")}};
  t.notes = {"note \x07"};
  const auto text = render::render(t, {}, nullptr, {"# host \x1b]0;x\x07"});
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 4) << text;  // heading, header, one row, note
  EXPECT_NE(text.find("/tmp/\\x1b[2Jx\\x0aforged"), std::string::npos) << text;
  EXPECT_EQ(render::to_csv(t), "path\r\n\"/tmp/\x1b[2Jx\nforged\"\r\n");
  render::Options json;
  json.format = render::Format::json;
  const auto doc = nlohmann::json::parse(render::render(t, json, nullptr, {}));
  EXPECT_EQ(doc["rows"][0]["path"], "/tmp/\x1b[2Jx\nforged") << "JSON keeps the bytes exact";
}

TEST(RenderJson, KeepsTypesTimesAsIsoAndEpochDurationsInSeconds) {
  const auto rows = render::to_json_rows(sample());
  ASSERT_EQ(rows.size(), 2U);
  const auto& first = rows[0];
  EXPECT_TRUE(first["count"].is_number_integer());
  EXPECT_EQ(first["count"], 7);
  EXPECT_TRUE(first["rate"].is_number_float());
  EXPECT_DOUBLE_EQ(first["rate"].get<double>(), 2.25);
  EXPECT_EQ(first["at"], "2026-11-20T03:12:00.000Z");
  EXPECT_DOUBLE_EQ(first["at_epoch"].get<double>(), 1795144320.0);
  EXPECT_DOUBLE_EQ(first["stay"].get<double>(), 725.0);
  EXPECT_FALSE(first.contains("people_only"));
  EXPECT_EQ(first["note"], "plain");
  EXPECT_TRUE(rows[1]["rate"].is_null());
  EXPECT_TRUE(rows[1]["at_epoch"].is_null());
  EXPECT_EQ(rows[1]["note"], "say \"hi\", then\nleave");

  const auto columns = render::to_json_columns(sample());
  ASSERT_EQ(columns.size(), 6U);
  EXPECT_EQ(columns[2]["unit"], "per_s");
  EXPECT_EQ(columns[3]["unit"], "ISO-8601 UTC");
  EXPECT_EQ(columns[4]["unit"], "s");
}

TEST(RenderDocument, JsonGetsColumnsAndRowsUnlessTheDocumentHasThem) {
  render::Options json;
  json.format = render::Format::json;
  const auto doc = nlohmann::json::parse(render::render(sample(), json, {{"command", "test"}}));
  EXPECT_EQ(doc["command"], "test");
  EXPECT_EQ(doc["rows"].size(), 2U);
  EXPECT_EQ(doc["columns"].size(), 6U);
  render::Options table = utc_table();
  const auto text = render::render(sample(), table, {}, {"# heading"});
  EXPECT_EQ(text.rfind("# heading\nNAME", 0), 0U) << text;
}

}  // namespace
