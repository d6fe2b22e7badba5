// Pure parsers of the per-process files the owner scan reads: fd link targets, stat, status, cmdline.
#include "sockhist/proc.hpp"
#include "text.hpp"

namespace sockhist::proc {

std::optional<std::uint64_t> socket_inode_of_link(std::string_view target) {
  constexpr std::string_view k_prefix = "socket:[";
  if (!target.starts_with(k_prefix) || !target.ends_with(']')) {
    return std::nullopt;
  }
  std::uint64_t inode = 0;
  if (!parse_number(target.substr(k_prefix.size(), target.size() - k_prefix.size() - 1), inode, 10)) {
    return std::nullopt;
  }
  return inode;
}

std::optional<StatFields> parse_pid_stat(std::string_view text) {
  // "pid (comm) state ppid ...": comm may itself contain ')' and spaces, so take the last ')'.
  const auto open = text.find('(');
  const auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  StatFields out;
  out.comm = std::string(text.substr(open + 1, close - open - 1));
  std::string_view rest = text.substr(close + 1);
  // Field 3 (state) is the first after ')'; starttime is field 22.
  std::size_t field = 2;
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) {
      break;
    }
    auto end = rest.find(' ', start);
    if (end == std::string_view::npos) {
      end = rest.size();
    }
    ++field;
    if (field == 22) {
      auto token = rest.substr(start, end - start);
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
        token.remove_suffix(1);
      }
      if (!parse_number(token, out.start_ticks, 10)) {
        return std::nullopt;
      }
      return out;
    }
    rest.remove_prefix(end);
  }
  return std::nullopt;
}

std::optional<std::uint32_t> parse_status_euid(std::string_view text) {
  std::optional<std::uint32_t> euid;
  for_each_line(text, [&](std::string_view line, std::size_t, bool) {
    if (!line.starts_with("Uid:")) {
      return;
    }
    const auto f = split(line);
    std::uint32_t value = 0;
    if (f.count >= 3 && parse_number(f.at[2], value, 10)) {
      euid = value;
    }
  });
  return euid;
}

std::string format_cmdline(std::string_view raw) {
  std::string out(raw);
  for (char& c : out) {
    if (c == '\0' || c == '\n') {
      c = ' ';
    }
  }
  while (!out.empty() && out.back() == ' ') {
    out.pop_back();
  }
  return out;
}

}  // namespace sockhist::proc
