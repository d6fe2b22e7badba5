// Parsing and printing of times and durations, shared by both programs.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sockhist::model {

// "90s", "15m", "2h", "3d", "250ms", "1w" (or a bare number of seconds) as milliseconds;
// nullopt on anything else.
std::optional<std::int64_t> parse_duration_ms(std::string_view text);

// An absolute time as epoch milliseconds: ISO-8601 ("2026-11-20T03:12:00Z", with an offset, or
// without a zone meaning local time), "YYYY-MM-DD HH:MM[:SS]" (local), or "@EPOCH" seconds.
// nullopt on anything else.
std::optional<std::int64_t> parse_time_ms(std::string_view text);

// A moment as the analyzer's --at, --since and --until take it: anything parse_time_ms takes, a
// time of day "HH:MM[:SS]" (today, local time), or a duration ("90s", "15m", "2h", "3d") meaning
// that long before `now_ms`. nullopt on anything else.
std::optional<std::int64_t> parse_moment_ms(std::string_view text, std::int64_t now_ms);

// Epoch milliseconds for people: "2026-11-20 03:12:00" in local time, or "2026-11-20 03:12:00Z"
// in UTC.
enum class Zone { local, utc };
std::string format_human(std::int64_t epoch_ms, Zone zone);

// A length of time for people, two units at most: "850ms", "45s", "12m05s", "3h02m", "2d03h".
std::string format_duration(std::int64_t ms);

// Epoch milliseconds as "2026-11-20T03:12:00.000Z".
std::string format_iso_utc(std::int64_t epoch_ms);

// The current wall-clock time, epoch milliseconds.
std::int64_t now_ms();

// The usual interval between snapshots: the median of the positive steps between `times`, given
// newest first (check's staleness limit is three of them); nullopt with fewer than two.
std::optional<std::int64_t> usual_interval_ms(std::vector<std::int64_t> times_newest_first);

// Milliseconds of the monotonic clock since `since` (how long a step of a capture took).
std::int64_t ms_since(std::chrono::steady_clock::time_point since);

}  // namespace sockhist::model
