// Two snapshots compared, section by section.
#include "sockhist/query/diff.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

namespace sockhist::query {

namespace {

std::string owner_name(const SocketRow& r) {
  return r.comm ? *r.comm : std::string("(unknown owner)");
}

std::string endpoint_of(model::Proto proto, const std::string& addr, std::int64_t port) {
  if (proto == model::Proto::unix_domain) {
    return addr.empty() ? std::string("(unnamed)") : addr;
  }
  return endpoint(addr, port);
}

// Counts per key on each side; the keys that differ become rows.
void compare_counts(std::vector<Difference>& rows, const char* section, const std::map<std::string, std::int64_t>& a,
                    const std::map<std::string, std::int64_t>& b) {
  std::set<std::string> keys;
  for (const auto& [k, v] : a) {
    keys.insert(k);
  }
  for (const auto& [k, v] : b) {
    keys.insert(k);
  }
  for (const auto& k : keys) {
    const auto va = a.count(k) ? a.at(k) : 0, vb = b.count(k) ? b.at(k) : 0;
    if (va != vb) {
      rows.push_back({section, k, static_cast<double>(va), static_cast<double>(vb), {}, true});
    }
  }
}

// Whether a process name may have been cut: the kernel keeps 15 characters of a comm, netstat
// prints 19 of "pid/name".
bool maybe_cut(const std::string& name, std::int64_t pid) {
  return name.size() == 15 || name.size() + 1 + std::to_string(pid).size() == 19;
}

// Process names of one side renamed to the other side's where one was cut from the other: a name
// on one side only that is cut and begins exactly one name on the other side only (or is begun by
// one cut there) becomes the longer of the two.
std::map<std::string, std::string> uncut_names(const std::vector<SocketRow>& mine,
                                               const std::vector<SocketRow>& theirs) {
  std::map<std::string, bool> my_names, their_names;  // name -> may be cut
  for (const auto& r : mine) {
    if (r.comm) {
      my_names[*r.comm] = my_names[*r.comm] || (r.pid && maybe_cut(*r.comm, *r.pid));
    }
  }
  for (const auto& r : theirs) {
    if (r.comm) {
      their_names[*r.comm] = their_names[*r.comm] || (r.pid && maybe_cut(*r.comm, *r.pid));
    }
  }
  std::map<std::string, std::string> renamed;
  for (const auto& [mine_name, my_cut] : my_names) {
    if (their_names.count(mine_name)) {
      continue;
    }
    std::vector<std::string> longer;
    for (const auto& [their_name, their_cut] : their_names) {
      if (my_names.count(their_name)) {
        continue;
      }
      const bool mine_cut_from_theirs =
          my_cut && their_name.size() > mine_name.size() && their_name.starts_with(mine_name);
      const bool theirs_cut_from_mine =
          their_cut && mine_name.size() > their_name.size() && mine_name.starts_with(their_name);
      if (mine_cut_from_theirs) {
        longer.push_back(their_name);
      } else if (theirs_cut_from_mine) {
        longer.push_back(mine_name);
      }
    }
    if (longer.size() == 1 && longer.front() != mine_name) {
      renamed[mine_name] = longer.front();
    }
  }
  return renamed;
}

}  // namespace

DiffSide load_side(SQLite::Database& db, const Scope& scope, const SnapshotSummary& snapshot) {
  DiffSide s{scope, snapshot, snapshot_sockets(db, snapshot.id), snapshot_counters(db, snapshot.id)};
  return s;
}

std::vector<Difference> diff_sides(const DiffSide& a, const DiffSide& b, double counter_threshold, OwnerMatch owners) {
  const bool two_hosts = a.scope.host_id != b.scope.host_id;
  std::vector<Difference> rows;

  // Listeners on one side only (by protocol, address and port).
  const auto listeners = [](const DiffSide& s) {
    std::map<std::string, std::string> out;
    for (const auto& r : s.sockets) {
      const bool listening =
          r.state == model::SockState::listen || (r.proto == model::Proto::udp && r.state == model::SockState::close);
      if (listening && !(r.proto == model::Proto::unix_domain && r.local_addr.empty())) {
        out[fmt::format("{} {}", r.proto, endpoint_of(r.proto, r.local_addr, r.local_port))] = owner_name(r);
      }
    }
    return out;
  };
  const auto la = listeners(a), lb = listeners(b);
  for (const auto& [k, owner] : la) {
    if (!lb.count(k)) {
      rows.push_back({"listening", k, 1, 0, owner, true});
    }
  }
  for (const auto& [k, owner] : lb) {
    if (!la.count(k)) {
      rows.push_back({"listening", k, 0, 1, owner, true});
    }
  }
  // Processes owning sockets on one side only, then socket counts that differ.
  const auto per = [](const DiffSide& s, auto key_of) {
    std::map<std::string, std::int64_t> out;
    for (const auto& r : s.sockets) {
      if (const auto k = key_of(r); !k.empty()) {
        ++out[k];
      }
    }
    return out;
  };
  const auto by_process = [owners](const std::map<std::string, std::string>& renamed) {
    return [owners, &renamed](const SocketRow& r) {
      if (owners == OwnerMatch::pid) {
        return r.pid ? fmt::format("pid {}", *r.pid) : std::string();
      }
      if (!r.comm) {
        return std::string();
      }
      const auto it = renamed.find(*r.comm);
      return it == renamed.end() ? *r.comm : it->second;
    };
  };
  const auto renamed_a = uncut_names(a.sockets, b.sockets), renamed_b = uncut_names(b.sockets, a.sockets);
  const auto pa = per(a, by_process(renamed_a)), pb = per(b, by_process(renamed_b));
  for (const auto& [k, n] : pa) {
    if (!pb.count(k)) {
      rows.push_back({"process only on one side", k, static_cast<double>(n), 0, "sockets", true});
    }
  }
  for (const auto& [k, n] : pb) {
    if (!pa.count(k)) {
      rows.push_back({"process only on one side", k, 0, static_cast<double>(n), "sockets", true});
    }
  }
  const auto proto_state = [](const SocketRow& r) {
    return fmt::format("{} {}", model::name(r.proto), model::name(r.state));
  };
  compare_counts(rows, "state", per(a, proto_state), per(b, proto_state));
  // Connections by remote endpoint: a server's peers by address (their ports are their own).
  const auto remote_key = [](const DiffSide& s) {
    std::set<std::int64_t> listening;
    for (const auto& r : s.sockets) {
      if (r.proto == model::Proto::tcp && r.state == model::SockState::listen) {
        listening.insert(r.local_port);
      }
    }
    return [listening](const SocketRow& r) {
      if (r.proto != model::Proto::tcp || r.state == model::SockState::listen) {
        return std::string();
      }
      if (!listening.count(r.local_port)) {
        return endpoint_of(r.proto, r.remote_addr, r.remote_port);
      }
      if (r.remote_addr.find(':') != std::string::npos) {
        return fmt::format("[{}]:* to :{}", r.remote_addr, r.local_port);
      }
      return fmt::format("{}:* to :{}", r.remote_addr, r.local_port);
    };
  };
  compare_counts(rows, "remote", per(a, remote_key(a)), per(b, remote_key(b)));
  {
    std::vector<Difference> both;
    compare_counts(both, "process", pa, pb);
    for (auto& r : both) {
      if (r.a != 0 && r.b != 0) {  // one side only is listed above
        rows.push_back(std::move(r));
      }
    }
  }
  // Counters. Two hosts: each counter per second of its host's uptime, a difference when they
  // differ by more than --counter-threshold percent. One host: what each changed by between the
  // two moments (information, not a difference).
  std::map<std::string, std::pair<std::optional<std::int64_t>, std::optional<std::int64_t>>> values;
  std::map<std::string, bool> gauges;
  for (const auto& c : a.counters) {
    values[c.section + "." + c.name].first = c.value;
    gauges[c.section + "." + c.name] = c.is_gauge;
  }
  for (const auto& c : b.counters) {
    values[c.section + "." + c.name].second = c.value;
    gauges[c.section + "." + c.name] = c.is_gauge;
  }
  if (two_hosts) {
    for (const auto& [name, v] : values) {
      if (!v.first || !v.second || gauges[name] || !a.snapshot.uptime_ms || !b.snapshot.uptime_ms) {
        continue;
      }
      const double ra = static_cast<double>(*v.first) * 1000.0 / static_cast<double>(*a.snapshot.uptime_ms);
      const double rb = static_cast<double>(*v.second) * 1000.0 / static_cast<double>(*b.snapshot.uptime_ms);
      const double larger = std::max(std::abs(ra), std::abs(rb));
      if (larger > 0 && 100.0 * std::abs(ra - rb) / larger > counter_threshold) {
        rows.push_back({"counter per second of uptime", name, ra, rb, {}, true});
      }
    }
  } else {
    const auto interval = monotonic_interval_ms(a.snapshot, b.snapshot);
    for (const auto& [name, v] : values) {
      if (v.first && v.second && *v.first != *v.second) {
        rows.push_back({gauges[name] ? "gauge" : "counter change", name, static_cast<double>(*v.first),
                        static_cast<double>(*v.second),
                        !gauges[name] && interval && *v.second >= *v.first
                            ? fmt::format("{:.2f}/s", static_cast<double>(*v.second - *v.first) * 1000.0 /
                                                          static_cast<double>(*interval))
                            : std::string(),
                        false});
      }
    }
  }
  // The differences first, the largest first within each section.
  const std::vector<std::string> order = {"listening", "process only on one side",     "state", "remote",
                                          "process",   "counter per second of uptime", "gauge", "counter change"};
  std::stable_sort(rows.begin(), rows.end(), [&](const Difference& x, const Difference& y) {
    const auto sx = std::find(order.begin(), order.end(), x.section) - order.begin();
    const auto sy = std::find(order.begin(), order.end(), y.section) - order.begin();
    if (sx != sy) {
      return sx < sy;
    }
    return std::abs(x.b - x.a) > std::abs(y.b - y.a);
  });
  return rows;
}

}  // namespace sockhist::query
