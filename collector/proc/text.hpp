// What the /proc parsers share: line iteration (of a whole text, or of one handed over in
// pieces), field splitting without allocation, number parsing. Private to collector/proc.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <string>
#include <string_view>

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

// The lines of a text handed over in pieces split anywhere: fn(line, line_number, complete) for
// each line once its end has arrived (a line split between pieces is joined first), and at
// finish() for a last line that lacks its newline, as for_each_line does. A line is never held
// longer than max_line + 1 bytes: the rest of a longer one is dropped, so fn sees it cut, and
// longer than max_line.
class LineJoiner {
 public:
  explicit LineJoiner(std::size_t max_line) : m_max(max_line) {}

  template <class Fn>
  void feed(std::string_view text, Fn&& fn) {
    if (!m_partial.empty()) {
      const auto end = text.find('\n');
      hold(text.substr(0, end));
      if (end == std::string_view::npos) {
        return;
      }
      fn(std::string_view(m_partial), ++m_number, true);
      m_partial.clear();
      text.remove_prefix(end + 1);
    }
    while (!text.empty()) {
      const auto end = text.find('\n');
      if (end == std::string_view::npos) {
        hold(text);
        return;
      }
      fn(text.substr(0, end), ++m_number, true);
      text.remove_prefix(end + 1);
    }
  }

  template <class Fn>
  void finish(Fn&& fn) {
    if (!m_partial.empty()) {
      fn(std::string_view(m_partial), ++m_number, false);
      m_partial.clear();
    }
  }

  // How much is held of the line whose end has not arrived yet.
  std::size_t pending() const { return m_partial.size(); }

 private:
  void hold(std::string_view piece) {
    const std::size_t room = m_max + 1 - std::min(m_partial.size(), m_max + 1);
    m_partial.append(piece.substr(0, std::min(piece.size(), room)));
  }

  std::size_t m_max;
  std::string m_partial;  // the start of a line whose end has not arrived
  std::size_t m_number = 0;
};

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
