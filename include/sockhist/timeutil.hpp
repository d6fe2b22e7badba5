// Parsing and printing of times and durations, shared by both programs.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sockhist::model {

// "90s", "15m", "2h", "3d", "250ms", "1w" (or a bare number of seconds) as milliseconds;
// nullopt on anything else.
std::optional<std::int64_t> parse_duration_ms(std::string_view text);

// An absolute time as epoch milliseconds: ISO-8601 ("2026-11-20T03:12:00Z", with an offset, or
// without a zone meaning local time), "YYYY-MM-DD HH:MM[:SS]" (local), or "@EPOCH" seconds.
// nullopt on anything else.
std::optional<std::int64_t> parse_time_ms(std::string_view text);

// Epoch milliseconds as "2026-11-20T03:12:00.000Z".
std::string format_iso_utc(std::int64_t epoch_ms);

// The current wall-clock time, epoch milliseconds.
std::int64_t now_ms();

}  // namespace sockhist::model
