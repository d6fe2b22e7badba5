// sockhist-history's counters (bench/history.cpp): those of a real capture, growing at the rates it
// implies, with the gauges following the generated population. Private to bench/history.cpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "sockhist/error.hpp"
#include "sockhist/model.hpp"
#include "sockhist/proc.hpp"

namespace sockhist::bench {

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(Exit::bad_input, fmt::format("{}: cannot read", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Counters from a real capture, growing at the rates it implies.
class Counters {
 public:
  Counters(const std::filesystem::path& dir, std::uint64_t seed) : m_rng(seed) {
    auto add = [&](model::Parsed<model::Counter> parsed, const std::filesystem::path& file) {
      if (parsed.error)
        throw Error(Exit::bad_input, fmt::format("{}: {}", file.string(), *parsed.error));
      for (auto& c : parsed.rows)
        m_template.push_back(std::move(c));
    };
    add(proc::parse_counter_pairs(read_text(dir / "snmp")), dir / "snmp");
    add(proc::parse_counter_pairs(read_text(dir / "netstat")), dir / "netstat");
    if (std::filesystem::exists(dir / "snmp6"))
      add(proc::parse_snmp6(read_text(dir / "snmp6")), dir / "snmp6");
    add(proc::parse_sockstat(read_text(dir / "sockstat"), "Sockstat"), dir / "sockstat");
    // The template's uptime sets the rates; the sample captures about a day of uptime.
    const std::string uptime = read_text(dir.parent_path() / "uptime");
    m_template_uptime_s = std::max(1.0, std::stod(uptime));
  }

  void reboot() {
    m_values.clear();
    for (const auto& c : m_template)
      m_values[c.section + "." + c.name] = c.is_gauge ? c.value : 0;
  }

  // Advances the counters by one interval and returns them, with the gauges set from `sockets`.
  std::vector<model::Counter> step(double interval_s, const std::vector<model::Socket>& sockets) {
    std::map<std::string, std::int64_t> gauges;
    std::int64_t tcp_inuse = 0, tw = 0, udp_inuse = 0, estab = 0;
    for (const auto& s : sockets) {
      if (s.proto == model::Proto::tcp) {
        if (s.state == model::SockState::time_wait)
          ++tw;
        else
          ++tcp_inuse;
        if (s.state == model::SockState::established || s.state == model::SockState::close_wait)
          ++estab;
      } else if (s.proto == model::Proto::udp) {
        ++udp_inuse;
      }
    }
    gauges["Sockstat.TCP_inuse"] = tcp_inuse;
    gauges["Sockstat.TCP_tw"] = tw;
    gauges["Sockstat.TCP_alloc"] = tcp_inuse + tw;
    gauges["Sockstat.UDP_inuse"] = udp_inuse;
    gauges["Tcp.CurrEstab"] = estab;
    std::vector<model::Counter> out;
    out.reserve(m_template.size());
    for (const auto& c : m_template) {
      const std::string key = c.section + "." + c.name;
      std::int64_t& value = m_values[key];
      if (c.is_gauge) {
        if (auto g = gauges.find(key); g != gauges.end())
          value = g->second;
      } else if (c.value > 0) {
        const double mean = static_cast<double>(c.value) / m_template_uptime_s * interval_s;
        std::poisson_distribution<std::int64_t> draw(std::max(mean, 1e-9));
        value += mean > 1e6 ? static_cast<std::int64_t>(mean) : draw(m_rng);
      }
      out.push_back({c.section, c.name, value, c.is_gauge});
    }
    return out;
  }

 private:
  std::vector<model::Counter> m_template;
  std::map<std::string, std::int64_t> m_values;
  double m_template_uptime_s = 1;
  std::mt19937_64 m_rng;
};

}  // namespace sockhist::bench
