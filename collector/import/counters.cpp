// Counters saved as text: nstat -zas and net-tools' netstat -s, read back to the kernel's names.
#include <algorithm>
#include <array>
#include <map>
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
  const char* dialect;
  const char* heading;
  const char* subheading;
  const char* line;  // with % where the value goes
  const char* section;
  const char* name;
  bool absent_is_zero;  // the version leaves it out when zero, and the kernel still has it
};
constexpr Phrase netstat_s_table[] = {
#include "netstat_s_table.inc"
};

// The net-tools versions whose netstat -s the table holds, oldest first (netstat-s-dialects.sh).
constexpr std::array<std::string_view, 4> k_dialects = {"net-tools 1.60", "net-tools 2.0 of 2013",
                                                        "net-tools 2015-2019", "net-tools 2.10"};

const Phrase* find_phrase(std::string_view dialect, std::string_view heading, std::string_view subheading,
                          std::string_view line) {
  for (const auto& p : netstat_s_table) {
    if (dialect == p.dialect && heading == p.heading && subheading == p.subheading && line == p.line) {
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

namespace {

// One indented line of a netstat -s listing, under its heading (and histogram subheading).
struct StatLine {
  std::size_t n;
  std::string heading;
  std::string subheading;
  std::string_view body;
};

// The phrase `body` is in `dialect`, and the value it printed: any run of digits may be the value,
// the table says which reading is a line that version prints.
std::optional<std::pair<const Phrase*, std::int64_t>> read_phrase(std::string_view dialect, const StatLine& l) {
  for (std::size_t i = 0; i < l.body.size();) {
    if (!std::isdigit(static_cast<unsigned char>(l.body[i]))) {
      ++i;
      continue;
    }
    auto end = i;
    while (end < l.body.size() && std::isdigit(static_cast<unsigned char>(l.body[end]))) {
      ++end;
    }
    const auto templated = fmt::format("{}%{}", l.body.substr(0, i), l.body.substr(end));
    if (const auto* p = find_phrase(dialect, l.heading, l.subheading, templated)) {
      return std::pair(p, number<std::int64_t>(l.body.substr(i, end - i)).value_or(0));
    }
    i = end;
  }
  return std::nullopt;
}

}  // namespace

NetstatStatistics parse_netstat_statistics(std::string_view text) {
  NetstatStatistics result;
  auto& out = result.counters;
  std::set<std::pair<std::string, std::string>> seen;
  std::set<std::string> headings;
  std::vector<StatLine> lines;
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
          return result;
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
      return result;
    }
    if (std::none_of(body.begin(), body.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
      if (body.ends_with(':')) {
        subheading = std::string(body);  // "ICMP input histogram:", over the more deeply indented lines below it
      } else {
        out.issues.push_back({n, fmt::format("'{}' has no value and is not a subheading", std::string(body))});
      }
      continue;
    }
    const auto indent = line.find_first_not_of(" \t");
    lines.push_back({n, heading, indent > 4 ? subheading : std::string(), body});
  }
  if (headings.empty()) {
    out.error = "empty: not a netstat -s listing";
    return result;
  }
  // Which version printed it: the one whose phrases read the most lines (several when they read
  // alike: the versions differ in a few lines only, some printed only when not zero).
  std::vector<std::size_t> unread_in(k_dialects.size(), 0);
  for (std::size_t d = 0; d < k_dialects.size(); ++d) {
    for (const auto& l : lines) {
      unread_in[d] += read_phrase(k_dialects[d], l) || name_value(l.body) ? 0 : 1;
    }
  }
  const auto fewest = *std::min_element(unread_in.begin(), unread_in.end());
  std::vector<std::string_view> dialects;
  for (std::size_t d = 0; d < k_dialects.size(); ++d) {
    if (unread_in[d] == fewest) {
      dialects.push_back(k_dialects[d]);
    }
  }
  // "net-tools 2015-2019 or 2.10"
  for (std::size_t d = 0; d < dialects.size(); ++d) {
    result.dialect += d == 0 ? std::string(dialects[d])
                             : fmt::format("{}{}", d + 1 == dialects.size() ? " or " : ", ",
                                           dialects[d].substr(std::string_view("net-tools ").size()));
  }
  std::set<std::string> unread;  // headings with a line that did not read
  for (const auto& l : lines) {
    std::optional<std::pair<const Phrase*, std::int64_t>> phrase;
    for (const auto d : dialects) {
      if ((phrase = read_phrase(d, l))) {
        break;
      }
    }
    // A phrase first: some histogram lines ("redirects: 3") look like "Name: value" lines.
    if (phrase) {
      add_counter(out, seen, phrase->first->section, phrase->first->name, phrase->second);
    } else if (const auto nv = name_value(l.body); nv && nv->second >= 0) {
      add_counter(out, seen, l.heading, nv->first, nv->second);
    } else if (nv) {
      // net-tools 1.60 printed these with %d: a counter past 2^31 came out negative.
      out.issues.push_back({l.n, fmt::format("'{}': printed negative (a counter past 2^31 printed as a signed 32-bit "
                                             "number): its value is unknown",
                                             std::string(l.body))});
    } else {
      out.issues.push_back(
          {l.n, fmt::format("'{}' is not a line {}'s netstat -s prints", std::string(l.body), result.dialect)});
      unread.insert(l.heading);
    }
  }
  // netstat prints some counters only when they are not zero: a counter every matching version
  // leaves out at zero, missing from a section that is there, is 0. Where a line of the section did
  // not read, it may have been one of them: none of that section's zeros is filled in then.
  std::map<std::pair<std::string, std::string>, std::size_t> left_out;  // counter -> versions leaving it out at 0
  std::map<std::pair<std::string, std::string>, std::string> heading_of;
  for (const auto& p : netstat_s_table) {
    if (p.absent_is_zero && headings.contains(p.heading) &&
        std::find(dialects.begin(), dialects.end(), p.dialect) != dialects.end()) {
      ++left_out[{p.section, p.name}];
      heading_of[{p.section, p.name}] = p.heading;
    }
  }
  std::set<std::string> withheld;
  for (const auto& [counter, versions] : left_out) {
    if (versions != dialects.size() || seen.contains(counter)) {
      continue;
    }
    if (unread.contains(heading_of[counter])) {
      withheld.insert(heading_of[counter]);
      continue;
    }
    add_counter(out, seen, counter.first, counter.second, 0);
    ++result.zeros;
  }
  for (const auto& h : withheld) {
    out.issues.push_back({0, fmt::format("{}: a line did not read, so the counters netstat leaves out when zero are "
                                         "not taken to be zero there (unknown)",
                                         h)});
  }
  if (std::find(dialects.begin(), dialects.end(), k_dialects[0]) != dialects.end()) {
    result.notes.push_back(
        "net-tools 1.60 printed every counter as a 32-bit number: a counter past 2^32 printed its remainder, which "
        "cannot be told from the value");
  }
  return result;
}

}  // namespace sockhist::import
