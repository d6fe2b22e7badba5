// Pure parsers of the counter files: /proc/net/snmp, netstat, snmp6 and sockstat (net/ipv4/proc.c,
// net/ipv6/proc.c). Values are taken by name, never by position.
#include <unordered_set>

#include <fmt/format.h>

#include "sockhist/proc.hpp"
#include "text.hpp"

namespace sockhist::proc {

namespace {

bool parse_value(std::string_view text, std::int64_t& value) {
  return parse_number(text, value, 10);
}

// Adds a counter unless (section, name) is already there; returns false for a duplicate.
bool add_counter(Parsed<Counter>& result, std::unordered_set<std::string>& seen, std::string_view section,
                 std::string_view name, std::int64_t value, bool gauge) {
  if (!seen.insert(fmt::format("{}\n{}", section, name)).second) {
    ++result.duplicates;
    return false;
  }
  result.rows.push_back({std::string(section), std::string(name), value, gauge});
  return true;
}

}  // namespace

// One function, not several: a header line and its value line are one unit, and the checks between
// them (the same section, as many values as names) need both at hand.
Parsed<Counter> parse_counter_pairs(std::string_view text) {
  Parsed<Counter> result;
  std::unordered_set<std::string> seen;
  struct Line {
    std::string_view text;
    std::size_t number;
    bool complete;
  };
  std::vector<Line> lines;
  for_each_line(text, [&](std::string_view line, std::size_t number, bool complete) {
    if (!is_blank(line)) {
      lines.push_back({line, number, complete});
    }
  });
  if (lines.empty()) {
    result.error = "empty file";
    return result;
  }
  const auto prefix_of = [](std::string_view line) -> std::string_view {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || line.substr(0, colon).find(' ') != std::string_view::npos) {
      return {};
    }
    return line.substr(0, colon);
  };
  if (prefix_of(lines.front().text).empty()) {
    result.error = "not a counter file (the first line is not 'Section: name ...')";
    return result;
  }
  std::size_t i = 0;
  while (i < lines.size()) {
    const Line& header = lines[i];
    const std::string_view section = prefix_of(header.text);
    if (section.empty()) {
      result.issues.push_back({header.number, "line without a 'Section:' prefix"});
      ++i;
      continue;
    }
    if (i + 1 >= lines.size() || prefix_of(lines[i + 1].text) != section) {
      result.issues.push_back({header.number, fmt::format("'{}:' names without a values line", section)});
      ++i;
      continue;
    }
    const Line& values = lines[i + 1];
    i += 2;
    if (!header.complete || !values.complete) {
      result.issues.push_back({values.number, "truncated line (no end of line)"});
      continue;
    }
    const auto names = split(header.text.substr(section.size() + 1));
    const auto numbers = split(values.text.substr(section.size() + 1));
    if (names.count != numbers.count) {
      result.issues.push_back(
          {values.number, fmt::format("'{}:' has {} names but {} values", section, names.count, numbers.count)});
      continue;
    }
    // The TcpExt line has far more names than split() keeps, so walk both lines in step.
    std::string_view name_rest = header.text.substr(section.size() + 1);
    std::string_view value_rest = values.text.substr(section.size() + 1);
    std::vector<std::pair<std::string_view, std::int64_t>> pair_fields;
    bool bad = false;
    auto next_token = [](std::string_view& rest) {
      const auto start = rest.find_first_not_of(" \t");
      if (start == std::string_view::npos) {
        rest = {};
        return std::string_view{};
      }
      auto end = rest.find_first_of(" \t", start);
      if (end == std::string_view::npos) {
        end = rest.size();
      }
      const auto token = rest.substr(start, end - start);
      rest.remove_prefix(end);
      return token;
    };
    for (std::size_t k = 0; k < names.count; ++k) {
      const auto name = next_token(name_rest);
      const auto value_text = next_token(value_rest);
      std::int64_t value = 0;
      if (!parse_value(value_text, value)) {
        result.issues.push_back({values.number, fmt::format("bad value '{}' for {}.{}", value_text, section, name)});
        bad = true;
        break;
      }
      pair_fields.emplace_back(name, value);
    }
    if (bad) {
      continue;
    }
    for (const auto& [name, value] : pair_fields) {
      add_counter(result, seen, section, name, value, model::is_gauge(section, name));
    }
  }
  return result;
}

Parsed<Counter> parse_snmp6(std::string_view text) {
  Parsed<Counter> result;
  std::unordered_set<std::string> seen;
  bool any = false;
  for_each_line(text, [&](std::string_view line, std::size_t number, bool complete) {
    if (is_blank(line)) {
      return;
    }
    any = true;
    if (!complete) {
      result.issues.push_back({number, "truncated line (no end of line)"});
      return;
    }
    const auto f = split(line);
    std::int64_t value = 0;
    const auto six = f.count == 2 ? f.at[0].find('6') : std::string_view::npos;
    if (f.count != 2 || six == std::string_view::npos || six + 1 >= f.at[0].size() || !parse_value(f.at[1], value)) {
      result.issues.push_back({number, "expected 'Ip6Name value'"});
      return;
    }
    // Ip6InReceives, Icmp6InMsgs, Udp6InErrors, UdpLite6...: the section ends at the first '6'.
    add_counter(result, seen, f.at[0].substr(0, six + 1), f.at[0].substr(six + 1), value, false);
  });
  if (!any) {
    result.error = "empty file";
  } else if (result.rows.empty() && !result.issues.empty()) {
    result.error = "not an snmp6 file (no 'Ip6Name value' line)";
  }
  return result;
}

Parsed<Counter> parse_sockstat(std::string_view text, std::string_view section) {
  Parsed<Counter> result;
  std::unordered_set<std::string> seen;
  bool any = false;
  for_each_line(text, [&](std::string_view line, std::size_t number, bool complete) {
    if (is_blank(line)) {
      return;
    }
    any = true;
    if (!complete) {
      result.issues.push_back({number, "truncated line (no end of line)"});
      return;
    }
    const auto f = split(line);
    if (f.count < 3 || f.count % 2 == 0 || f.count > k_max_fields || f.at[0].size() < 2 || f.at[0].back() != ':') {
      result.issues.push_back({number, "expected 'KIND: name value ...'"});
      return;
    }
    const auto kind = f.at[0].substr(0, f.at[0].size() - 1);
    std::vector<std::pair<std::string, std::int64_t>> fields;
    for (std::size_t k = 1; k + 1 < f.count; k += 2) {
      std::int64_t value = 0;
      if (!parse_value(f.at[k + 1], value)) {
        result.issues.push_back({number, fmt::format("bad value '{}' for {} {}", f.at[k + 1], kind, f.at[k])});
        return;
      }
      fields.emplace_back(fmt::format("{}_{}", kind, f.at[k]), value);
    }
    for (const auto& [name, value] : fields) {
      add_counter(result, seen, section, name, value, true);
    }
  });
  if (!any) {
    result.error = "empty file";
  }
  return result;
}

}  // namespace sockhist::proc
