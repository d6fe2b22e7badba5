#include "sockhist/timeutil.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

namespace sockhist::model {

namespace {

std::optional<std::int64_t> parse_int(std::string_view text) {
  std::int64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || text.empty()) {
    return std::nullopt;
  }
  return value;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct Fields {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, millis = 0;
};

// Reads "YYYY-MM-DD[T ]HH:MM[:SS[.fff]]" and returns how many characters were used.
std::optional<std::size_t> read_fields(std::string_view text, Fields& f) {
  int used = 0;
  char sep = 0;
  if (std::sscanf(std::string(text).c_str(), "%4d-%2d-%2d%c%2d:%2d%n", &f.year, &f.month, &f.day, &sep, &f.hour,
                  &f.minute, &used) != 6 ||
      (sep != 'T' && sep != ' ')) {
    return std::nullopt;
  }
  std::size_t pos = static_cast<std::size_t>(used);
  if (pos < text.size() && text[pos] == ':') {
    int sec_used = 0;
    if (std::sscanf(std::string(text.substr(pos)).c_str(), ":%2d%n", &f.second, &sec_used) != 1) {
      return std::nullopt;
    }
    pos += static_cast<std::size_t>(sec_used);
    if (pos < text.size() && text[pos] == '.') {
      ++pos;
      int digits = 0;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        if (digits < 3) {
          f.millis = f.millis * 10 + (text[pos] - '0');
        }
        ++digits;
        ++pos;
      }
      if (digits == 0) {
        return std::nullopt;
      }
      for (; digits < 3; ++digits) {
        f.millis *= 10;
      }
    }
  }
  if (f.month < 1 || f.month > 12 || f.day < 1 || f.day > 31 || f.hour > 23 || f.minute > 59 || f.second > 60) {
    return std::nullopt;
  }
  return pos;
}

}  // namespace

std::optional<std::int64_t> parse_duration_ms(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  auto number = parse_int(text.substr(0, digits));
  if (!number) {
    return std::nullopt;
  }
  const std::string_view unit = text.substr(digits);
  std::int64_t scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m" || unit == "min") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else if (unit == "d") {
    scale = 86'400'000;
  } else if (unit == "w") {
    scale = 7 * 86'400'000LL;
  } else {
    return std::nullopt;
  }
  return *number * scale;
}

std::optional<std::int64_t> parse_time_ms(std::string_view text) {
  if (text.starts_with('@')) {
    auto seconds = parse_int(text.substr(1));
    return seconds ? std::optional(*seconds * 1000) : std::nullopt;
  }
  Fields f;
  auto used = read_fields(text, f);
  if (!used) {
    return std::nullopt;
  }
  std::string_view zone = text.substr(*used);
  const std::int64_t civil_ms =
      (days_from_civil(f.year, static_cast<unsigned>(f.month), static_cast<unsigned>(f.day)) * 86400 + f.hour * 3600 +
       f.minute * 60 + f.second) *
          1000 +
      f.millis;
  if (zone == "Z" || zone == "z") {
    return civil_ms;
  }
  if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    auto hh = parse_int(zone.substr(1, 2));
    auto mm = parse_int(zone.substr(4, 2));
    if (!hh || !mm) {
      return std::nullopt;
    }
    const std::int64_t offset_ms = (*hh * 60 + *mm) * 60'000;
    return zone[0] == '+' ? civil_ms - offset_ms : civil_ms + offset_ms;
  }
  if (!zone.empty()) {
    return std::nullopt;
  }
  // No zone: local time, as an operator reading a wall clock means it.
  std::tm tm{};
  tm.tm_year = f.year - 1900;
  tm.tm_mon = f.month - 1;
  tm.tm_mday = f.day;
  tm.tm_hour = f.hour;
  tm.tm_min = f.minute;
  tm.tm_sec = f.second;
  tm.tm_isdst = -1;
  const std::time_t t = std::mktime(&tm);
  if (t == static_cast<std::time_t>(-1)) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(t) * 1000 + f.millis;
}

std::optional<std::int64_t> parse_moment_ms(std::string_view text, std::int64_t now) {
  if (auto absolute = parse_time_ms(text)) {
    return absolute;
  }
  int hour = 0;
  int minute = 0;
  int second = 0;
  int used = 0;
  const std::string copy(text);
  const int got = std::sscanf(copy.c_str(), "%2d:%2d%n:%2d%n", &hour, &minute, &used, &second, &used);
  if ((got == 2 || got == 3) && static_cast<std::size_t>(used) == copy.size() && hour >= 0 && hour <= 23 &&
      minute >= 0 && minute <= 59 && second >= 0 && second <= 60) {
    const auto t = static_cast<std::time_t>(now / 1000);
    std::tm tm{};
    localtime_r(&t, &tm);
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    tm.tm_isdst = -1;
    const std::time_t today = std::mktime(&tm);
    if (today == static_cast<std::time_t>(-1)) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(today) * 1000;
  }
  if (auto ago = parse_duration_ms(text)) {
    return now - *ago;
  }
  return std::nullopt;
}

std::string format_human(std::int64_t epoch_ms, Zone zone) {
  std::int64_t seconds = epoch_ms / 1000;
  if (epoch_ms % 1000 < 0) {
    --seconds;
  }
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (zone == Zone::utc) {
    gmtime_r(&t, &tm);
  } else {
    localtime_r(&t, &tm);
  }
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, zone == Zone::utc ? "Z" : "");
}

std::string format_duration(std::int64_t ms) {
  const char* sign = ms < 0 ? "-" : "";
  ms = ms < 0 ? -ms : ms;
  if (ms < 1000) {
    return fmt::format("{}{}ms", sign, ms);
  }
  const std::int64_t s = ms / 1000;
  if (s < 60) {
    return fmt::format("{}{}s", sign, s);
  }
  if (s < 3600) {
    return fmt::format("{}{}m{:02}s", sign, s / 60, s % 60);
  }
  if (s < 86400) {
    return fmt::format("{}{}h{:02}m", sign, s / 3600, s % 3600 / 60);
  }
  return fmt::format("{}{}d{:02}h", sign, s / 86400, s % 86400 / 3600);
}

std::string format_iso_utc(std::int64_t epoch_ms) {
  std::int64_t seconds = epoch_ms / 1000;
  std::int64_t millis = epoch_ms % 1000;
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t ms_since(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
}

std::optional<std::int64_t> usual_interval_ms(std::vector<std::int64_t> times) {
  std::vector<std::int64_t> intervals;
  for (std::size_t i = 1; i < times.size(); ++i) {
    if (times[i - 1] > times[i]) {
      intervals.push_back(times[i - 1] - times[i]);
    }
  }
  if (intervals.empty()) {
    return std::nullopt;
  }
  std::nth_element(intervals.begin(), intervals.begin() + static_cast<std::ptrdiff_t>(intervals.size() / 2),
                   intervals.end());
  return intervals[intervals.size() / 2];
}

}  // namespace sockhist::model
