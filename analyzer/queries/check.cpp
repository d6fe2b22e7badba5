// The thresholds of `sockhist check`, evaluated over the stored history.
#include "sockhist/query/check.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "sockhist/error.hpp"

namespace sockhist::query {

namespace {

CheckOutcome outcome(Check check, std::string subject, double value, double limit, std::optional<std::int64_t> at_ms,
                     bool found) {
  CheckOutcome o;
  o.check = check;
  o.subject = std::move(subject);
  o.value = value;
  o.limit = limit;
  o.at_ms = at_ms;
  o.found = found;
  return o;
}

// A state's count: the newest snapshot's, or the highest of the window's.
CheckOutcome count_outcome(const CheckRange& range, Check check, model::SockState state, std::int64_t limit) {
  std::int64_t worst = -1, at = 0;
  for (const auto& s : range.snapshots) {
    const auto n = s.count(model::Proto::tcp, state);
    if (n > worst) {
      worst = n;
      at = s.time_ms;
    }
  }
  auto o = outcome(check, "host", static_cast<double>(worst), static_cast<double>(limit), at, worst > limit);
  o.sockets = worst;
  return o;
}

// A counter's increase: over the window, or between the two newest snapshots.
CheckOutcome increase_outcome(SQLite::Database& db, const Scope& scope, const CheckRange& range, Check check,
                              const std::string& counter, std::int64_t limit) {
  std::int64_t total = 0, covered = 0, worst = 0;
  std::optional<std::int64_t> worst_at;
  for (const auto& step : counter_steps(db, scope, range.pair, {counter})) {
    total += step.increase;
    covered += step.interval_ms;
    if (step.increase > worst) {
      worst = step.increase;
      worst_at = range.pair[step.to].time_ms;
    }
  }
  auto o = outcome(check, "host", static_cast<double>(total), static_cast<double>(limit), worst_at,
                   covered > 0 && total > limit);
  o.counter = counter;
  o.covered_ms = covered;
  o.worst_step = worst;
  return o;
}

// Per owner: the CLOSE_WAIT sockets that stayed at least the limit.
void close_wait_age(std::vector<CheckOutcome>& out, const CheckRange& range,
                    const std::vector<CloseWaitSocket>& sockets, std::int64_t max_age) {
  std::map<std::string, std::vector<const CloseWaitSocket*>> old;
  std::int64_t oldest = 0;
  for (const auto& s : sockets) {
    oldest = std::max(oldest, s.min_age_ms());
    if (s.min_age_ms() >= max_age && (range.window || s.still_there)) {
      old[program(s.pid, s.comm, "unknown owner")].push_back(&s);
    }
  }
  const double limit = static_cast<double>(max_age) / 1000.0;
  for (const auto& [who, list] : old) {
    auto f = outcome(Check::close_wait_max_age, who, 0, limit, range.snapshots.back().time_ms, true);
    for (const auto* s : list) {
      if (s->min_age_ms() >= f.longest_ms) {
        f.longest_ms = s->min_age_ms();
        f.where = s->serves_listener ? fmt::format("serves :{}", s->local_port)
                                     : fmt::format("peer {}", endpoint(s->remote_addr, s->remote_port));
      }
    }
    f.value = static_cast<double>(f.longest_ms) / 1000.0;
    f.limit_ms = max_age;
    f.sockets = static_cast<std::int64_t>(list.size());
    f.still_held = std::any_of(list.begin(), list.end(), [](const auto* s) { return s->still_there; });
    out.push_back(std::move(f));
  }
  if (old.empty()) {
    auto ok =
        outcome(Check::close_wait_max_age, "host", static_cast<double>(oldest) / 1000.0, limit, std::nullopt, false);
    ok.longest_ms = oldest;
    ok.limit_ms = max_age;
    ok.none_seen = sockets.empty();
    out.push_back(std::move(ok));
  }
}

// Per owner: more CLOSE_WAIT sockets than the limit (now, or at the owner's peak in a window).
void close_wait_per_process(std::vector<CheckOutcome>& out, const CheckRange& range,
                            const std::vector<CloseWaitSocket>& sockets, std::int64_t limit) {
  std::int64_t most = 0;
  for (const auto& g : close_wait_by_process(range.snapshots, sockets)) {
    const auto n = range.window ? g.peak : g.now;
    most = std::max(most, n);
    if (n > limit) {
      auto f = outcome(Check::close_wait_max_per_process, program(g.pid, g.comm, "unknown owner"),
                       static_cast<double>(n), static_cast<double>(limit), range.snapshots.back().time_ms, true);
      f.sockets = n;
      f.involved = g.involved;
      f.per_hour = g.per_hour;
      out.push_back(std::move(f));
    }
  }
  if (most <= limit) {
    auto ok = outcome(Check::close_wait_max_per_process, "host", static_cast<double>(most), static_cast<double>(limit),
                      std::nullopt, false);
    ok.sockets = most;
    out.push_back(std::move(ok));
  }
}

// Per destination: more than the limit's share of the ephemeral ports.
void port_pressure_check(std::vector<CheckOutcome>& out, SQLite::Database& db, const Scope& scope,
                         const CheckRange& range, double limit) {
  double most = 0;
  for (const auto& p : port_pressure(db, scope, range.snapshots)) {
    most = std::max(most, p.percent());
    if (p.percent() > limit) {
      auto f =
          outcome(Check::port_pressure_max, endpoint(p.remote_addr, p.remote_port), p.percent(), limit, p.at_ms, true);
      f.ports = p;
      out.push_back(std::move(f));
    }
  }
  if (most <= limit) {
    out.push_back(outcome(Check::port_pressure_max, "host", most, limit, std::nullopt, false));
  }
}

}  // namespace

bool Thresholds::any() const {
  return close_wait_max_age_ms || close_wait_max_per_process || time_wait_max || syn_recv_max || port_pressure_max ||
         listen_overflows || time_wait_overflows;
}

std::string_view name(Check check) {
  switch (check) {
    case Check::max_age:
      return "max-age";
    case Check::close_wait_max_age:
      return "close-wait-max-age";
    case Check::close_wait_max_per_process:
      return "close-wait-max-per-process";
    case Check::time_wait_max:
      return "time-wait-max";
    case Check::syn_recv_max:
      return "syn-recv-max";
    case Check::port_pressure_max:
      return "port-pressure-max";
    case Check::listen_overflows:
      return "listen-overflows";
    case Check::time_wait_overflows:
      return "time-wait-overflows";
  }
  return "?";
}

CheckRange newest_range(SQLite::Database& db, const Scope& scope) {
  const auto newest = latest_snapshot(db, scope);
  if (!newest) {
    throw Error(Exit::usage, fmt::format("{}: no snapshot of {} yet", db.getFilename(), scope.host));
  }
  CheckRange range;
  if (const auto before = snapshot_at(db, scope, newest->time_ms - 1); before && before->id < newest->id) {
    range.pair.push_back(*before);
  }
  range.pair.push_back(*newest);
  range.snapshots = {*newest};
  return range;
}

CheckRange window_range(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                        const std::string& since_text) {
  CheckRange range;
  range.window = true;
  range.snapshots = list_snapshots(db, scope, since_ms, until_ms);
  if (range.snapshots.empty()) {
    throw Error(Exit::usage, fmt::format("--since {}: {} has no snapshot in that range", since_text, scope.host));
  }
  range.pair = range.snapshots;
  return range;
}

std::vector<CheckOutcome> evaluate_checks(SQLite::Database& db, const Scope& scope, const CheckRange& range,
                                          const Thresholds& limits) {
  std::vector<CheckOutcome> out;
  if (limits.max_age_ms) {
    const auto newest = range.snapshots.back().time_ms;
    const auto age = std::max<std::int64_t>(0, limits.now_ms - newest);
    auto o = outcome(Check::max_age, "host", static_cast<double>(age) / 1000.0,
                     static_cast<double>(*limits.max_age_ms) / 1000.0, newest, age > *limits.max_age_ms);
    o.age_ms = age;
    o.limit_ms = *limits.max_age_ms;
    o.usual_interval_ms = limits.usual_interval_ms;
    out.push_back(std::move(o));
  }
  if (limits.close_wait_max_age_ms || limits.close_wait_max_per_process) {
    const auto sockets = close_wait_sockets(db, scope, range.snapshots);
    if (limits.close_wait_max_age_ms) {
      close_wait_age(out, range, sockets, *limits.close_wait_max_age_ms);
    }
    if (limits.close_wait_max_per_process) {
      close_wait_per_process(out, range, sockets, *limits.close_wait_max_per_process);
    }
  }
  if (limits.time_wait_max) {
    out.push_back(count_outcome(range, Check::time_wait_max, model::SockState::time_wait, *limits.time_wait_max));
  }
  if (limits.syn_recv_max) {
    out.push_back(count_outcome(range, Check::syn_recv_max, model::SockState::syn_recv, *limits.syn_recv_max));
  }
  if (limits.port_pressure_max) {
    port_pressure_check(out, db, scope, range, *limits.port_pressure_max);
  }
  if (limits.listen_overflows) {
    out.push_back(increase_outcome(db, scope, range, Check::listen_overflows, "TcpExt.ListenOverflows",
                                   *limits.listen_overflows));
  }
  if (limits.time_wait_overflows) {
    out.push_back(increase_outcome(db, scope, range, Check::time_wait_overflows, "TcpExt.TCPTimeWaitOverflow",
                                   *limits.time_wait_overflows));
  }
  return out;
}

}  // namespace sockhist::query
