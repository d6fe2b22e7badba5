// Counters saved as text: nstat -zas and net-tools' netstat -s, read back to the kernel's names.
#include <algorithm>
#include <array>
#include <set>

#include <fmt/format.h>

#include "sockhist/import.hpp"
#include "text_lines.hpp"

namespace sockhist::import {

namespace {

using text::Lines;
using text::number;
using text::trim;
using text::words;

// Adds (section, name) once; later duplicates are dropped and counted.
void add_counter(model::Parsed<model::Counter>& out, std::set<std::pair<std::string, std::string>>& seen,
                 std::string_view section, std::string_view name, std::int64_t value) {
  if (!seen.emplace(std::string(section), std::string(name)).second) {
    return;
  }
  out.rows.push_back({std::string(section), std::string(name), value, model::is_gauge(section, name)});
}

// nstat joins section and name: TcpExtTW, Ip6InReceives, IcmpMsgInType3.
std::optional<std::pair<std::string_view, std::string_view>> split_nstat_name(std::string_view full) {
  // Longest first, so that TcpExt is not taken for Tcp, nor Ip6 for Ip.
  static constexpr std::array<std::string_view, 15> sections = {"UdpLite6", "MPTcpExt", "IcmpMsg", "UdpLite", "TcpExt",
                                                                "Icmp6",    "IpExt",    "TlsExt",  "Icmp",    "Sctp",
                                                                "Udp6",     "Ip6",      "Tcp",     "Udp",     "Ip"};
  for (const auto section : sections) {
    if (full.size() > section.size() && full.starts_with(section)) {
      return std::make_pair(full.substr(0, section.size()), full.substr(section.size()));
    }
  }
  return std::nullopt;
}

struct Phrase {
  const char* heading;
  const char* subheading;
  const char* line;  // with % where the value goes
  const char* section;
  const char* name;
  bool shown_when_zero;
};
constexpr Phrase netstat_s_table[] = {
#include "netstat_s_table.inc"
};

const Phrase* find_phrase(std::string_view heading, std::string_view subheading, std::string_view line) {
  for (const auto& p : netstat_s_table) {
    if (heading == p.heading && subheading == p.subheading && line == p.line) {
      return &p;
    }
  }
  return nullptr;
}

// "Name: 123" (a counter netstat has no phrase for).
std::optional<std::pair<std::string_view, std::int64_t>> name_value(std::string_view body) {
  const auto colon = body.find(": ");
  if (colon == std::string_view::npos || colon == 0) {
    return std::nullopt;
  }
  const auto name = body.substr(0, colon);
  if (!std::all_of(name.begin(), name.end(),
                   [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; })) {
    return std::nullopt;
  }
  const auto value = number<std::int64_t>(trim(body.substr(colon + 2)));
  if (!value) {
    return std::nullopt;
  }
  return std::make_pair(name, *value);
}

}  // namespace

model::Parsed<model::Counter> parse_nstat(std::string_view text) {
  model::Parsed<model::Counter> out;
  std::set<std::pair<std::string, std::string>> seen;
  bool header = false;
  for (const auto& [n, line] : Lines(text).lines) {
    const auto w = words(line);
    if (w.empty()) {
      continue;
    }
    if (!header) {
      if (w[0] != "#kernel") {
        out.error = fmt::format("line {}: not an nstat listing (no '#kernel' first line)", n);
        return out;
      }
      header = true;
      continue;
    }
    const auto split = split_nstat_name(w[0]);
    const auto value = w.size() >= 2 ? number<std::int64_t>(w[1]) : std::nullopt;
    if (!split || !value) {
      out.issues.push_back({n, fmt::format("expected 'SectionName value [rate]', not '{}'", std::string(trim(line)))});
      continue;
    }
    add_counter(out, seen, split->first, split->second, *value);
  }
  if (!header) {
    out.error = "empty: not an nstat listing";
  }
  return out;
}

model::Parsed<model::Counter> parse_netstat_statistics(std::string_view text) {
  model::Parsed<model::Counter> out;
  std::set<std::pair<std::string, std::string>> seen;
  std::set<std::string> headings;
  std::set<std::string> unread;  // headings with a line that did not read
  std::string heading;
  std::string subheading;
  for (const auto& [n, line] : Lines(text).lines) {
    const auto body = trim(line);
    if (body.empty()) {
      continue;
    }
    if (line.front() != ' ' && line.front() != '\t') {
      if (!body.ends_with(":") || body.find(' ') != std::string_view::npos) {
        if (headings.empty()) {
          out.error =
              fmt::format("line {}: not a netstat -s listing (it begins '{}')", n, std::string(body.substr(0, 40)));
          return out;
        }
        out.issues.push_back({n, fmt::format("'{}' is not a section heading", std::string(body))});
        continue;
      }
      heading = std::string(body.substr(0, body.size() - 1));
      headings.insert(heading);
      subheading.clear();
      continue;
    }
    if (heading.empty()) {
      out.error = fmt::format("line {}: not a netstat -s listing (an indented line before any heading)", n);
      return out;
    }
    const auto indent = line.find_first_not_of(" \t");
    const std::string_view sub = indent > 4 ? std::string_view(subheading) : std::string_view();
    // Any run of digits may be the value: the table says which reading is a line netstat prints.
    bool any_digits = false;
    const Phrase* phrase = nullptr;
    std::int64_t value = 0;
    for (std::size_t i = 0; i < body.size() && phrase == nullptr;) {
      if (!std::isdigit(static_cast<unsigned char>(body[i]))) {
        ++i;
        continue;
      }
      auto end = i;
      while (end < body.size() && std::isdigit(static_cast<unsigned char>(body[end]))) {
        ++end;
      }
      any_digits = true;
      const auto templated = fmt::format("{}%{}", body.substr(0, i), body.substr(end));
      if ((phrase = find_phrase(heading, sub, templated))) {
        value = number<std::int64_t>(body.substr(i, end - i)).value_or(0);
      }
      i = end;
    }
    // A phrase first: some histogram lines ("redirects: 3") look like "Name: value" lines.
    if (phrase != nullptr) {
      add_counter(out, seen, phrase->section, phrase->name, value);
    } else if (const auto nv = name_value(body)) {
      add_counter(out, seen, heading, nv->first, nv->second);
    } else if (!any_digits) {
      subheading = std::string(body);  // "ICMP input histogram:"
    } else {
      out.issues.push_back(
          {n, fmt::format("'{}' is not a line net-tools 2.10's netstat -s prints", std::string(body))});
      unread.insert(heading);
    }
  }
  if (headings.empty()) {
    out.error = "empty: not a netstat -s listing";
    return out;
  }
  // netstat prints some counters only when they are not zero. Where a line of the section did not
  // read, it may have been one of them: none of that section's zeros is filled in then.
  std::set<std::string> withheld;
  for (const auto& p : netstat_s_table) {
    if (!p.shown_when_zero && headings.contains(p.heading) && !seen.contains({p.section, p.name})) {
      if (unread.contains(p.heading)) {
        withheld.insert(p.heading);
        continue;
      }
      add_counter(out, seen, p.section, p.name, 0);
      ++out.duplicates;
    }
  }
  for (const auto& h : withheld) {
    out.issues.push_back({0, fmt::format("{}: a line did not read, so the counters netstat leaves out when zero are "
                                         "not taken to be zero there (unknown)",
                                         h)});
  }
  return out;
}

}  // namespace sockhist::import
