// What a capture may hold: each field bounded by what the kernel can produce (or, for command
// lines, by what is worth storing), so that a forged /proc copy or listing cannot fill the database
// with garbage or store a figure no kernel wrote. The writer applies it to every capture, whatever
// it came from; what was cut or refused becomes the snapshot's diagnostics.
#pragma once

#include <cstdint>
#include <optional>

#include "sockhist/model.hpp"

namespace sockhist::model {

// The kernel's own limits.
inline constexpr std::size_t k_max_unix_path = 108;  // sun_path, with the leading '@' of abstract names
inline constexpr std::size_t k_max_inet_addr = 64;   // an IPv6 address in text, a '%' and an interface name
inline constexpr std::size_t k_max_hostname = 64;    // HOST_NAME_MAX
inline constexpr std::size_t k_max_kernel = 64;      // utsname.release
inline constexpr std::size_t k_max_comm = 64;        // the kernel's is 15; some listings print longer names
inline constexpr std::size_t k_max_name = 255;       // a namespace, user or recorded host name (NAME_MAX)
inline constexpr std::size_t k_max_path = 4096;      // PATH_MAX: proc_root, diagnostics' files
inline constexpr std::size_t k_max_id = 64;          // a boot id is 36 characters, a machine id 32
// What is worth storing: the start of a longer command line is kept, and the cut is said.
inline constexpr std::size_t k_max_cmdline = 4096;
// /proc/net/snmp, netstat, snmp6 and sockstat hold under 600 counters on 6.x; a name is under 40.
inline constexpr std::size_t k_max_counters = 4096;
inline constexpr std::size_t k_max_counter_name = 64;
inline constexpr std::size_t k_max_diagnostic = 1024;
// An uptime the kernel can count (its boot clock is 64-bit nanoseconds: 292 years).
inline constexpr std::int64_t k_max_uptime_ms = INT64_MAX / 1'000'000;
// Times a Linux system can have recorded: from the epoch (where a machine without a real-time clock
// starts) to 2200-01-01, UTC.
inline constexpr std::int64_t k_min_time_ms = 0;
inline constexpr std::int64_t k_max_time_ms = 7'258'118'400'000;

// Seconds (as /proc/uptime prints them) as milliseconds; nullopt for what no kernel can count
// (negative, not finite, past k_max_uptime_ms), never an undefined conversion.
std::optional<std::int64_t> uptime_ms_of(double seconds);

// `cap` bounded: nullopt when every field is within bounds (the usual case: nothing is copied),
// else a copy with what was out of bounds cut or left out, and a diagnostic per kind saying what
// and how much. Throws Error(bad_input) for a time no Linux system can have recorded.
std::optional<Capture> bounded(const Capture& cap);

}  // namespace sockhist::model
