// TIME_WAIT: entries, expiries and anomalies against the kernel's 60 s, who closed first, groups.
#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/query/lifecycle.hpp"
#include "sockhist/store.hpp"
#include "time_wait_read.hpp"

namespace sockhist::query {

using namespace detail;

std::string_view name(Closer closer) {
  switch (closer) {
    case Closer::server:
      return "server";
    case Closer::client:
      return "client";
    case Closer::other:
      break;
  }
  return "other";
}

namespace {

// The anomaly flags, alike on a socket as read (TimeWaitSeen) and as reported (TimeWaitSocket).
template <typename Socket>
bool has_anomaly(const Socket& s, TimeWaitAnomaly anomaly) {
  switch (anomaly) {
    case TimeWaitAnomaly::reused_tuple:
      return s.reused_tuple;
    case TimeWaitAnomaly::vanished_early:
      return s.vanished_early;
    case TimeWaitAnomaly::overstayed:
      return s.overstayed;
    case TimeWaitAnomaly::long_timer:
      return s.long_timer;
    case TimeWaitAnomaly::fin_wait2_minisocket:
      break;
  }
  return s.fin_wait2;
}

}  // namespace

bool has(const TimeWaitSocket& s, TimeWaitAnomaly anomaly) {
  return has_anomaly(s, anomaly);
}

namespace {

// The order sockets are listed in: by their first snapshot, then span.
bool listed_before(const TimeWaitSeen& a, const TimeWaitSeen& b) {
  return a.first_id != b.first_id ? a.first_id < b.first_id : a.span_id < b.span_id;
}

// The sysctls of the range's newest snapshot that explain TIME_WAIT behaviour.
void read_settings(TimeWaitReport& r, SQLite::Database& db, std::int64_t newest_id) {
  SQLite::Statement q(db,
                      "SELECT tcp_tw_reuse, tcp_max_tw_buckets, tcp_fin_timeout FROM snapshots WHERE snapshot_id = ?");
  q.bind(1, newest_id);
  if (q.executeStep()) {
    r.tcp_tw_reuse = opt_int(q.getColumn(0));
    r.tcp_max_tw_buckets = opt_int(q.getColumn(1));
    r.tcp_fin_timeout = opt_int(q.getColumn(2));
  }
}

// A group of --by remote (a remote address) or --by local (a local addr_id), and a port, -1 for any.
struct GroupKey {
  std::string remote_addr;
  std::int64_t local_addr_id = 0;
  std::int64_t port = 0;
  bool operator==(const GroupKey&) const = default;
};
struct GroupHash {
  std::size_t operator()(const GroupKey& k) const noexcept {
    return std::hash<std::string>()(k.remote_addr) ^ std::hash<std::int64_t>()(k.local_addr_id * 1'000'003 + k.port);
  }
};

struct GroupTally {
  GroupKey key;
  bool remote = false;  // the key's address is a remote one (false: local)
  std::int64_t sockets = 0, entered = 0;
  unsigned closers = 0;  // a bit per Closer
  std::map<std::uint32_t, std::int64_t> owners;
};

// Counts every socket as the reader completes it; keeps only what the report prints.
class Tally {
 public:
  Tally(TimeWaitReport& r, TimeWaitReader& reader, const TimeWaitAsk& ask)
      : r_(r), reader_(reader), ask_(ask), times_(reader.times()) {}

  void add(const TimeWaitSeen& s) {
    bool anomalous = false;
    for (std::size_t k = 0; k < k_time_wait_anomaly_kinds; ++k) {
      if (has_anomaly(s, static_cast<TimeWaitAnomaly>(k))) {
        anomalous = true;
        ++r_.anomalies[k].count;
        if (!examples_[k] || listed_before(s, *examples_[k])) {
          examples_[k] = s;
        }
      }
    }
    if (s.maybe_reused) {
      ++r_.maybe_reused.count;
      if (!maybe_example_ || listed_before(s, *maybe_example_)) {
        maybe_example_ = s;
      }
    }
    if (ask_.keep == TimeWaitAsk::Keep::all || (ask_.keep == TimeWaitAsk::Keep::anomalies && anomalous)) {
      kept_.push_back(s);
    }
    const std::int64_t first_ms = *r_.first_ms, last_ms = *r_.last_ms;
    if (s.fin_wait2) {
      minisockets_entered_ += s.first_seen_ms > first_ms ? 1 : 0;
      return;
    }
    const bool entered_in_range = s.entered_ms && *s.entered_ms > first_ms && *s.entered_ms <= last_ms;
    if (entered_in_range) {
      ++r_.entries;
      r_.exact_entries += s.entered_exact ? 1 : 0;
      from_minisocket_ += s.from_minisocket ? 1 : 0;
      if (*s.entered_ms >= r_.since_ms && *s.entered_ms <= r_.until_ms) {
        ++r_.buckets[static_cast<std::size_t>((*s.entered_ms - r_.since_ms) / r_.bucket_ms)].entries;
      }
    }
    const auto c = static_cast<std::size_t>(s.closer);
    ++closer_sockets_[c];
    closer_entered_[c] += entered_in_range ? 1 : 0;
    ++closer_owners_[{c, s.closer == Closer::server ? s.local_port : -1, s.owner}];
    carried_[c] = carried_[c] || (s.closer != Closer::server && reader_.owner(s.owner).pid != 0);
    if (ask_.by) {
      group(s);
    }
  }

  void finish() {
    r_.table_entries = r_.entries - from_minisocket_ + minisockets_entered_;
    make_closers();
    if (ask_.by) {
      make_groups();
    }
    // The examples' text and neighbours, looked up together.
    std::vector<TimeWaitSeen> examples;
    for (const auto& e : examples_) {
      if (e) {
        examples.push_back(*e);
      }
    }
    if (maybe_example_) {
      examples.push_back(*maybe_example_);
    }
    auto looked_up = reader_.sockets(examples, ask_.successor_lookups_max);
    auto example = looked_up.begin();
    for (std::size_t k = 0; k < k_time_wait_anomaly_kinds; ++k) {
      if (examples_[k]) {
        r_.anomalies[k].example = std::move(*example++);
      }
    }
    if (maybe_example_) {
      r_.maybe_reused.example = std::move(*example);
    }
    std::sort(kept_.begin(), kept_.end(), listed_before);
    r_.sockets = reader_.sockets(kept_, ask_.successor_lookups_max);
  }

 private:
  std::string owner_label(std::uint32_t owner, const char* unknown) const {
    const auto& o = reader_.owner(owner);
    return program(o.pid, o.comm, unknown);
  }

  void make_closers() {
    for (const auto closer : {Closer::server, Closer::client, Closer::other}) {
      const auto c = static_cast<std::size_t>(closer);
      if (closer_sockets_[c] == 0) {
        continue;
      }
      std::map<std::string, std::int64_t> who;
      for (auto it = closer_owners_.lower_bound({c, INT64_MIN, 0});
           it != closer_owners_.end() && std::get<0>(it->first) == c; ++it) {
        const auto owner = owner_label(std::get<2>(it->first), "unknown owner");
        who[closer == Closer::server ? fmt::format("serves :{} ({})", std::get<1>(it->first), owner) : owner] +=
            it->second;
      }
      TimeWaitClosers out;
      out.closer = closer;
      out.sockets = closer_sockets_[c];
      out.entered = closer_entered_[c];
      out.owners.assign(who.begin(), who.end());
      std::stable_sort(out.owners.begin(), out.owners.end(),
                       [](const auto& a, const auto& b) { return a.second > b.second; });
      out.carried = carried_[c];
      r_.closers.push_back(std::move(out));
    }
  }

  void group(const TimeWaitSeen& s) {
    GroupKey key;
    const bool server = s.closer == Closer::server;
    if (*ask_.by == TimeWaitBy::remote) {
      // A server's peers connect from their own ephemeral ports: group those by address.
      key = {s.remote_addr, 0, server ? -1 : s.remote_port};
    } else {
      key = {{}, s.local_addr_id, server ? s.local_port : -1};
    }
    const auto [it, added] = group_index_.try_emplace(key, static_cast<std::uint32_t>(groups_.size()));
    if (added) {
      groups_.push_back({key, *ask_.by == TimeWaitBy::remote, 0, 0, 0, {}});
    }
    const auto g = it->second;
    auto& t = groups_[g];
    ++t.sockets;
    t.closers |= 1U << static_cast<unsigned>(s.closer);
    if (reader_.owner(s.owner).pid != 0) {
      ++t.owners[s.owner];
    }
    const auto when = s.entered_ms.value_or(s.first_seen_ms);
    t.entered += when > *r_.first_ms && when <= *r_.last_ms ? 1 : 0;
    // (position, start or end, group), packed so that one sort orders ends before starts.
    const auto from = position_of(times_, std::max(s.first_seen_ms, times_.front()));
    const auto to = position_of(times_, s.last_seen_ms);
    if (from <= to && to < times_.size()) {
      events_.push_back((static_cast<std::uint64_t>(from) << 33) | (1ULL << 32) | g);
      events_.push_back((static_cast<std::uint64_t>(to + 1) << 33) | g);
    }
  }

  std::string group_text(const GroupTally& t) {
    const auto any_port = [](const std::string& addr) {
      return addr.find(':') != std::string::npos ? fmt::format("[{}]:*", addr) : fmt::format("{}:*", addr);
    };
    const auto& addr = t.remote ? t.key.remote_addr : reader_.local_addr(t.key.local_addr_id);
    return t.key.port < 0 ? any_port(addr) : endpoint(addr, t.key.port);
  }

  void make_groups() {
    std::vector<TimeWaitGroup> groups(groups_.size());
    std::sort(events_.begin(), events_.end());
    std::vector<std::int64_t> count(groups_.size(), 0);
    std::vector<std::uint32_t> touched;
    for (std::size_t e = 0; e < events_.size();) {
      const auto pos = static_cast<std::size_t>(events_[e] >> 33);
      touched.clear();
      for (; e < events_.size() && static_cast<std::size_t>(events_[e] >> 33) == pos; ++e) {
        const auto g = static_cast<std::uint32_t>(events_[e] & 0xFFFFFFFFU);
        count[g] += (events_[e] >> 32 & 1U) != 0 ? 1 : -1;
        touched.push_back(g);
      }
      for (const auto g : touched) {
        if (count[g] > groups[g].peak && pos < times_.size()) {
          groups[g].peak = count[g];
          groups[g].peak_ms = times_[pos];
        }
      }
    }
    const double seconds = *r_.last_ms > *r_.first_ms ? static_cast<double>(*r_.last_ms - *r_.first_ms) / 1000.0 : 0;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const auto& t = groups_[g];
      auto& out = groups[g];
      out.key = group_text(t);
      out.sockets = t.sockets;
      const auto closers = static_cast<unsigned>(__builtin_popcount(t.closers));
      out.closer = closers == 1 ? std::string(name(static_cast<Closer>(__builtin_ctz(t.closers)))) : "mixed";
      if (seconds > 0) {
        out.entries_per_s = static_cast<double>(t.entered) / seconds;
      }
      std::map<std::string, std::int64_t> owners;
      for (const auto& [owner, n] : t.owners) {
        owners[owner_label(owner, "-")] += n;
      }
      if (!owners.empty()) {
        const auto most = std::max_element(owners.begin(), owners.end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; });
        out.owners = most->first;
        if (owners.size() > 1) {
          out.owners += fmt::format(" (+{} more)", owners.size() - 1);
        }
      }
    }
    std::stable_sort(groups.begin(), groups.end(), [](const TimeWaitGroup& a, const TimeWaitGroup& b) {
      if (a.peak != b.peak) {
        return a.peak > b.peak;
      }
      if (a.sockets != b.sockets) {
        return a.sockets > b.sockets;
      }
      return a.key < b.key;
    });
    r_.groups = std::move(groups);
  }

  TimeWaitReport& r_;
  TimeWaitReader& reader_;
  const TimeWaitAsk& ask_;
  const std::vector<std::int64_t>& times_;
  std::array<std::optional<TimeWaitSeen>, k_time_wait_anomaly_kinds> examples_;
  std::optional<TimeWaitSeen> maybe_example_;
  std::vector<TimeWaitSeen> kept_;
  std::int64_t from_minisocket_ = 0, minisockets_entered_ = 0;
  std::array<std::int64_t, 3> closer_sockets_{}, closer_entered_{};
  std::array<bool, 3> carried_{};
  std::map<std::tuple<std::size_t, std::int64_t, std::uint32_t>, std::int64_t> closer_owners_;
  std::unordered_map<GroupKey, std::uint32_t, GroupHash> group_index_;
  std::vector<GroupTally> groups_;
  std::vector<std::uint64_t> events_;
};

// The buckets of the range, empty.
void make_buckets(TimeWaitReport& r) {
  const std::size_t bucket_count = static_cast<std::size_t>((r.until_ms - r.since_ms) / r.bucket_ms) + 1;
  r.buckets.resize(bucket_count);
  for (std::size_t b = 0; b < bucket_count; ++b) {
    r.buckets[b].start_ms = r.since_ms + static_cast<std::int64_t>(b) * r.bucket_ms;
  }
}

// The entries the collector recorded (schema 11) of the sockets the range's snapshots first saw,
// counted as Tally::add counts them; a TIME_WAIT first seen before the range entered before it.
void count_recorded_entries(TimeWaitReport& r, SQLite::Database& db, const Scope& scope) {
  const auto& snapshots = r.snapshot_list;
  // Counted here rather than by GROUP BY, which would sort a week's million rows first.
  RawStatement q(db,
                 "SELECT entered_ms, exact FROM time_wait_entries "
                 "WHERE netns_id = ?1 AND snapshot_id BETWEEN ?2 AND ?3 AND entered_ms > ?4 AND entered_ms <= ?5");
  q.bind(1, scope.netns_id);
  q.bind(2, snapshots.front().id);
  q.bind(3, snapshots.back().id);
  q.bind(4, *r.first_ms);
  q.bind(5, *r.last_ms);
  while (q.step()) {
    const auto entered = q.integer(0);
    ++r.entries;
    r.exact_entries += q.integer(1) != 0 ? 1 : 0;
    // Between the first and last snapshot, so inside [since_ms, until_ms]: in a bucket.
    ++r.buckets[static_cast<std::size_t>((entered - r.since_ms) / r.bucket_ms)].entries;
  }
  r.recorded_entries = true;
}

// The population, the busiest bucket and the kernel's counters over the range's snapshots, once
// every socket's entry is counted.
void count_snapshots(TimeWaitReport& r, const std::vector<CounterStep>& steps, const std::vector<std::int64_t>& times) {
  const auto& snapshots = r.snapshot_list;
  const std::int64_t since_ms = r.since_ms;
  const std::int64_t first_ms = *r.first_ms, last_ms = *r.last_ms;
  const auto bucket_of = [&](std::int64_t t) { return static_cast<std::size_t>((t - since_ms) / r.bucket_ms); };
  const std::size_t bucket_count = r.buckets.size();
  double sum = 0;
  for (std::size_t i = 0; i < snapshots.size(); ++i) {
    const auto n = snapshots[i].count(model::Proto::tcp, model::SockState::time_wait);
    sum += static_cast<double>(n);
    if (n > r.peak_population || i == 0) {
      r.peak_population = n;
      r.peak_ms = times[i];
    }
    auto& b = r.buckets[bucket_of(times[i])];
    ++b.snapshots;
    b.population = std::max(b.population.value_or(0), n);
    if (i > 0) {
      r.longest_gap_ms = std::max(r.longest_gap_ms, times[i] - times[i - 1]);
    }
  }
  r.mean_population = sum / static_cast<double>(snapshots.size());
  r.complete = snapshots.size() >= 2 && r.longest_gap_ms <= k_time_wait_ms;
  if (last_ms > first_ms) {
    r.entries_per_s = static_cast<double>(r.entries) * 1000.0 / static_cast<double>(last_ms - first_ms);
  }
  // Entries are counted between the first and the last snapshot: a bucket's rate is over the part of
  // it they cover, and a bucket less than half covered competes only when none is more.
  const auto observed = [&](const TimeWaitBucket& b) {
    return std::max<std::int64_t>(0, std::min(b.start_ms + r.bucket_ms, last_ms) - std::max(b.start_ms, first_ms));
  };
  const bool any_half = std::any_of(r.buckets.begin(), r.buckets.end(),
                                    [&](const auto& b) { return b.entries > 0 && 2 * observed(b) >= r.bucket_ms; });
  for (const auto& b : r.buckets) {
    const auto covered = observed(b);
    if (b.entries == 0 || covered == 0 || (any_half && 2 * covered < r.bucket_ms)) {
      continue;
    }
    const double rate = static_cast<double>(b.entries) * 1000.0 / static_cast<double>(covered);
    if (!r.peak_entries_per_s || rate > *r.peak_entries_per_s) {
      r.peak_entries = b.entries;
      r.peak_entries_per_s = rate;
      r.peak_entries_ms = b.start_ms;
      r.peak_observed_ms = covered;
    }
  }
  if (last_ms > first_ms) {
    r.table_entries_per_s = static_cast<double>(r.table_entries) * 1000.0 / static_cast<double>(last_ms - first_ms);
  }
  std::vector<std::pair<std::int64_t, std::int64_t>> bucket_counter(bucket_count);  // increase, interval
  for (const auto& step : steps) {
    const auto short_name = step.counter.substr(step.counter.find('.') + 1);
    if (short_name == "TW") {
      r.counter_delta = r.counter_delta.value_or(0) + step.increase;
      r.covered_ms += step.interval_ms;
      auto& [inc, interval] = bucket_counter[bucket_of(times[step.to])];
      inc += step.increase;
      interval += step.interval_ms;
    } else {
      r.related[short_name] += step.increase;
      if (short_name == "TCPTimeWaitOverflow" && step.increase > 0) {
        r.overflows.push_back({short_name, times[step.to - 1], times[step.to], step.increase});
      }
    }
  }
  if (r.counter_delta && r.covered_ms > 0) {
    r.counter_per_s = static_cast<double>(*r.counter_delta) * 1000.0 / static_cast<double>(r.covered_ms);
  }
  for (std::size_t b = 0; b < bucket_count; ++b) {
    if (bucket_counter[b].second > 0) {
      r.buckets[b].counter_per_s =
          static_cast<double>(bucket_counter[b].first) * 1000.0 / static_cast<double>(bucket_counter[b].second);
    }
  }
}

}  // namespace

TimeWaitReport time_wait_report(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                                std::int64_t bucket_ms, const TimeWaitAsk& ask,
                                const std::vector<SnapshotSummary>* listed) {
  TimeWaitReport r;
  r.since_ms = since_ms;
  r.until_ms = until_ms;
  r.snapshot_list = listed ? *listed : list_snapshots(db, scope, since_ms, until_ms);
  r.snapshots = static_cast<std::int64_t>(r.snapshot_list.size());
  r.bucket_ms = bucket_ms > 0 ? bucket_ms : choose_bucket_ms(until_ms - since_ms);
  if (r.snapshot_list.empty()) {
    return r;
  }
  r.first_ms = r.snapshot_list.front().time_ms;
  r.last_ms = r.snapshot_list.back().time_ms;
  read_settings(r, db, r.snapshot_list.back().id);
  make_buckets(r);
  std::vector<std::int64_t> times;
  times.reserve(r.snapshot_list.size());
  for (const auto& s : r.snapshot_list) {
    times.push_back(s.time_ms);
  }
  const auto steps = counter_steps(db, scope, r.snapshot_list,
                                   {"TcpExt.TW", "TcpExt.TWKilled", "TcpExt.TWRecycled", "TcpExt.TCPTimeWaitOverflow"});
  if (!ask.per_socket && ask.keep == TimeWaitAsk::Keep::none && !ask.by && store::has_time_wait_entries(db)) {
    count_recorded_entries(r, db, scope);
  } else {
    TimeWaitReader reader(db, scope, r.snapshot_list);
    std::vector<std::int8_t> recycled_rose(times.size(), -1);
    for (const auto& step : steps) {
      if (step.counter == "TcpExt.TWRecycled" && !step.reset) {
        recycled_rose[step.to] = step.increase > 0 ? 1 : 0;
      }
    }
    reader.takeovers_counted(std::move(recycled_rose));
    const auto before = r;
    for (const bool may_scan : {true, false}) {
      Tally tally(r, reader, ask);
      if (reader.read([&](const TimeWaitSeen& s) { tally.add(s); }, may_scan)) {
        tally.finish();
        break;
      }
      r = before;  // the table was not in the order of first snapshot: read again through the index
    }
  }
  count_snapshots(r, steps, times);
  return r;
}

}  // namespace sockhist::query
