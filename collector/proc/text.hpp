// What the /proc parsers share: line iteration, field splitting without allocation, number
// parsing, and the walk of a /proc table with its header. Private to collector/proc.
#pragma once

#include <array>
#include <charconv>
#include <string_view>

#include <fmt/format.h>

#include "sockhist/model.hpp"

namespace sockhist::proc::text {

using model::LineIssue;
using model::Parsed;

// Calls fn(line, line_number, complete) for each line; `complete` is false for a last line that
// lacks its newline: /proc always ends lines, so such a line comes from a truncated copy.
template <class Fn>
inline void for_each_line(std::string_view text, Fn&& fn) {
  std::size_t number = 0;
  while (!text.empty()) {
    ++number;
    const auto end = text.find('\n');
    if (end == std::string_view::npos) {
      fn(text, number, false);
      return;
    }
    fn(text.substr(0, end), number, true);
    text.remove_prefix(end + 1);
  }
}

inline constexpr std::size_t k_max_fields = 32;

struct Fields {
  std::array<std::string_view, k_max_fields> at{};
  std::size_t count = 0;  // may exceed k_max_fields; only the first k_max_fields are kept
};

inline Fields split(std::string_view line) {
  Fields fields;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) {
      ++pos;
    }
    if (pos >= line.size()) {
      break;
    }
    const std::size_t start = pos;
    while (pos < line.size() && line[pos] != ' ' && line[pos] != '\t') {
      ++pos;
    }
    if (fields.count < k_max_fields) {
      fields.at[fields.count] = line.substr(start, pos - start);
    }
    ++fields.count;
  }
  return fields;
}

template <class T>
inline bool parse_number(std::string_view text, T& out, int base) {
  if (text.empty()) {
    return false;
  }
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out, base);
  return ec == std::errc{} && ptr == end;
}

// "HEX:HEX" as two unsigned numbers.
template <class A, class B>
inline bool parse_hex_pair(std::string_view text, A& first, B& second) {
  const auto colon = text.find(':');
  return colon != std::string_view::npos && parse_number(text.substr(0, colon), first, 16) &&
         parse_number(text.substr(colon + 1), second, 16);
}

inline bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// The shared walk of a /proc socket table: checks the header line, skips blank lines, records
// truncated lines, and hands every other line to row(line, fields, skip).
template <class T, class HeaderOk, class RowFn>
inline void parse_table(std::string_view text, Parsed<T>& result, std::size_t min_fields, const char* wrong_header,
                        HeaderOk&& header_ok, RowFn&& row) {
  bool header_seen = false;
  for_each_line(text, [&](std::string_view line, std::size_t number, bool complete) {
    if (!header_seen) {
      header_seen = true;
      if (!header_ok(split(line))) {
        result.error = wrong_header;
      }
      return;
    }
    if (result.error || is_blank(line)) {
      return;
    }
    const auto skip = [&](std::string reason) { result.issues.push_back({number, std::move(reason)}); };
    if (!complete) {
      skip("truncated line (no end of line)");
      return;
    }
    const auto fields = split(line);
    if (fields.count < min_fields) {
      skip(fmt::format("truncated line ({} fields, at least {} expected)", fields.count, min_fields));
      return;
    }
    row(line, fields, skip);
  });
  if (!header_seen && !result.error) {
    result.error = "empty file (no header line)";
  }
}

}  // namespace sockhist::proc::text

namespace sockhist::proc {

// The names every parser file uses.
using model::Counter;
using model::LineIssue;
using model::Parsed;
using model::Proto;
using model::Socket;
using model::SockState;
using namespace text;

}  // namespace sockhist::proc
