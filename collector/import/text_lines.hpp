// Small helpers for reading saved command outputs line by line (the import parsers' own).
#pragma once

#include <charconv>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace sockhist::import::text {

// The text without leading blanks and trailing blanks or line ends.
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// The whitespace-separated words of a line.
inline std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    const auto start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      ++i;
    }
    if (i > start) {
      out.push_back(line.substr(start, i - start));
    }
  }
  return out;
}

template <class T>
std::optional<T> number(std::string_view text) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return v;
}

// The lines of a text with their 1-based numbers, without their end of line (\n or \r\n).
struct Lines {
  std::vector<std::pair<std::size_t, std::string_view>> lines;  // 1-based number, text
  explicit Lines(std::string_view text) {
    std::size_t number = 0;
    while (!text.empty()) {
      const auto nl = text.find('\n');
      auto line = text.substr(0, nl);
      if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
      }
      lines.emplace_back(++number, line);
      if (nl == std::string_view::npos) {
        break;
      }
      text.remove_prefix(nl + 1);
    }
  }
};

}  // namespace sockhist::import::text
