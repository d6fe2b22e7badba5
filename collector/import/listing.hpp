// What the netstat and ss readers share: endpoints, state and timer names, owners, skipped lines.
// Private to collector/import.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sockhist/import.hpp"
#include "text_lines.hpp"

namespace sockhist::import::listing {

// "127.0.0.1:80", "::1:18443", ":::*", "[::1]:443", "*:*", "127.0.0.53%lo:53".
struct Endpoint {
  std::string addr;
  std::uint16_t port = 0;
  int family = 4;
};
// An endpoint as netstat or ss prints it; nullopt when it is not one.
std::optional<Endpoint> endpoint(std::string_view text);

// A state as netstat or ss names it (ESTABLISHED, ESTAB, UNCONN, ...); nullopt for another word.
std::optional<model::SockState> state_of(std::string_view name);

// A timer as netstat -o or ss -o names it (on, keepalive, timewait, ...).
model::TimerKind timer_kind(std::string_view name);

// ss's "1min8sec", "200ms", "52sec" as milliseconds; nullopt on anything else.
std::optional<std::uint32_t> ss_duration_ms(std::string_view text);

// Whether a line's words are a row of an ss listing printed without its header (ss -H).
bool ss_row(const std::vector<std::string_view>& w);

// Records a skipped line with its reason.
void skip(Listing& l, const std::string& file, std::size_t line, std::string message);

// Gives the socket its owner, adding the process to the listing once.
void add_owner(Listing& l, model::Socket& s, std::int32_t pid, std::string_view name);

// netstat's PID/Program column: "1104/python3", or "-" when unknown.
void netstat_owner(Listing& l, model::Socket& s, std::string_view word);

// What the netstat and ss readers name without qualification.
namespace names {
using listing::add_owner;
using listing::endpoint;
using listing::netstat_owner;
using listing::skip;
using listing::ss_duration_ms;
using listing::state_of;
using listing::timer_kind;
using model::SockState;
using text::Lines;
using text::number;
using text::words;
}  // namespace names

}  // namespace sockhist::import::listing
