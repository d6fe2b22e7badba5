// Parsing and printing of times and durations, as --since, --at, --bucket and every table use them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

#include "sockhist/timeutil.hpp"

using namespace sockhist;

namespace {

// 2026-11-20T03:12:00Z.
constexpr std::int64_t k_moment_ms = 1'795'144'320'000;

// Runs the test's local-time cases in a fixed zone, and restores the caller's.
class LocalZone : public testing::Test {
 protected:
  void SetUp() override {
    if (const char* tz = std::getenv("TZ")) {
      m_saved = tz;
    }
    ::setenv("TZ", "Europe/Berlin", 1);  // UTC+1 in November
    ::tzset();
  }
  void TearDown() override {
    if (m_saved) {
      ::setenv("TZ", m_saved->c_str(), 1);
    } else {
      ::unsetenv("TZ");
    }
    ::tzset();
  }

 private:
  std::optional<std::string> m_saved;
};

TEST(Durations, EveryUnitAndABareNumberOfSeconds) {
  EXPECT_EQ(model::parse_duration_ms("250ms"), 250);
  EXPECT_EQ(model::parse_duration_ms("90s"), 90'000);
  EXPECT_EQ(model::parse_duration_ms("15m"), 900'000);
  EXPECT_EQ(model::parse_duration_ms("2h"), 7'200'000);
  EXPECT_EQ(model::parse_duration_ms("3d"), 259'200'000);
  EXPECT_EQ(model::parse_duration_ms("1w"), 604'800'000);
  EXPECT_EQ(model::parse_duration_ms("42"), 42'000);
}

TEST(Durations, AnythingElseIsRefused) {
  for (const char* bad : {"", "s", "5y", "1.5h", "h2", "2 h", "-3s", "9999999999999999999d"}) {
    EXPECT_FALSE(model::parse_duration_ms(bad)) << bad;
  }
}

TEST(Durations, PrintWithTwoUnitsAtMost) {
  EXPECT_EQ(model::format_duration(850), "850ms");
  EXPECT_EQ(model::format_duration(45'000), "45s");
  EXPECT_EQ(model::format_duration(725'000), "12m05s");
  EXPECT_EQ(model::format_duration(10'920'000), "3h02m");
  EXPECT_EQ(model::format_duration(183'600'000), "2d03h");
}

TEST(Times, IsoUtcWithAnOffsetAndEpochSeconds) {
  EXPECT_EQ(model::parse_time_ms("2026-11-20T03:12:00Z"), k_moment_ms);
  EXPECT_EQ(model::parse_time_ms("2026-11-20T04:12:00+01:00"), k_moment_ms);
  EXPECT_EQ(model::parse_time_ms("@1795144320"), k_moment_ms);
  EXPECT_EQ(model::format_iso_utc(k_moment_ms), "2026-11-20T03:12:00.000Z");
  EXPECT_EQ(model::format_iso_utc(k_moment_ms + 7), "2026-11-20T03:12:00.007Z");
  EXPECT_FALSE(model::parse_time_ms("2026-13-20T03:12:00Z"));
  EXPECT_FALSE(model::parse_time_ms("yesterday"));
}

TEST_F(LocalZone, TimesWithoutAZoneAreLocalAndPrintBackTheSame) {
  EXPECT_EQ(model::parse_time_ms("2026-11-20 04:12"), k_moment_ms);
  EXPECT_EQ(model::parse_time_ms("2026-11-20T04:12:00"), k_moment_ms);
  EXPECT_EQ(model::format_human(k_moment_ms, model::Zone::local), "2026-11-20 04:12:00");
  EXPECT_EQ(model::format_human(k_moment_ms, model::Zone::utc), "2026-11-20 03:12:00Z");
}

TEST_F(LocalZone, MomentsAreDurationsAgoTimesOfDayTodayOrAbsolute) {
  const std::int64_t now = k_moment_ms + 3 * 3'600'000;  // 07:12 local
  EXPECT_EQ(model::parse_moment_ms("2h", now), now - 7'200'000);
  EXPECT_EQ(model::parse_moment_ms("04:12", now), k_moment_ms);
  EXPECT_EQ(model::parse_moment_ms("04:12:30", now), k_moment_ms + 30'000);
  EXPECT_EQ(model::parse_moment_ms("2026-11-20T03:12:00Z", now), k_moment_ms);
  EXPECT_FALSE(model::parse_moment_ms("25:00", now));
  EXPECT_FALSE(model::parse_moment_ms("soon", now));
}

}  // namespace
