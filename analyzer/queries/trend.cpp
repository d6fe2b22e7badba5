// Trends: socket counts per state, counter rates, and one state grouped by owner, port or peer,
// per time bucket, with gaps and reboots marked.
#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include <SQLiteCpp/Statement.h>
#include <fmt/format.h>

#include "read.hpp"
#include "sockhist/error.hpp"

namespace sockhist::query {

using namespace detail;

namespace {

std::int64_t bucket_start(std::int64_t time_ms, std::int64_t bucket_ms) {
  std::int64_t b = time_ms / bucket_ms;
  if (time_ms % bucket_ms < 0) {
    --b;
  }
  return b * bucket_ms;
}

// Empty buckets from since to until, each marked as a gap until a snapshot lands in it.
Trend empty_trend(std::int64_t since_ms, std::int64_t until_ms, std::int64_t bucket_ms) {
  Trend t;
  t.bucket_ms = bucket_ms;
  for (std::int64_t start = bucket_start(since_ms, bucket_ms); start <= until_ms; start += bucket_ms) {
    TrendBucket b;
    b.start_ms = start;
    b.gap = true;
    t.buckets.push_back(std::move(b));
  }
  return t;
}

std::size_t bucket_index(const Trend& t, std::int64_t time_ms) {
  return static_cast<std::size_t>((bucket_start(time_ms, t.bucket_ms) - t.buckets.front().start_ms) / t.bucket_ms);
}

// Marks buckets holding snapshots, and reboots, and sizes each bucket's values.
void place_snapshots(Trend& t, const std::vector<SnapshotSummary>& snapshots) {
  for (auto& b : t.buckets) {
    b.values.assign(t.series.size(), std::nullopt);
  }
  for (std::size_t i = 0; i < snapshots.size(); ++i) {
    const auto idx = bucket_index(t, snapshots[i].time_ms);
    if (idx >= t.buckets.size()) {
      continue;
    }
    auto& b = t.buckets[idx];
    b.gap = false;
    ++b.snapshots;
    if (i > 0 && !snapshots[i].boot_id.empty() && !snapshots[i - 1].boot_id.empty() &&
        snapshots[i].boot_id != snapshots[i - 1].boot_id) {
      b.reboot = true;
    }
  }
}

void raise(std::optional<double>& slot, double value) {
  slot = slot ? std::max(*slot, value) : value;
}

}  // namespace

std::int64_t choose_bucket_ms(std::int64_t range_ms) {
  static constexpr std::array<std::int64_t, 14> k_ladder = {10'000,     30'000,     60'000,     300'000,    600'000,
                                                            900'000,    1'800'000,  3'600'000,  7'200'000,  10'800'000,
                                                            21'600'000, 43'200'000, 86'400'000, 604'800'000};
  for (const auto b : k_ladder) {
    if (range_ms / b <= 60) {
      return b;
    }
  }
  return k_ladder.back();
}

StateSeries state_series(const std::set<std::string>& seen, const std::vector<std::string>& states) {
  StateSeries out;
  if (states.empty()) {
    static constexpr std::array<const char*, 11> k_order = {"ESTABLISHED", "SYN_SENT",  "SYN_RECV", "FIN_WAIT1",
                                                            "FIN_WAIT2",   "TIME_WAIT", "CLOSE",    "CLOSE_WAIT",
                                                            "LAST_ACK",    "LISTEN",    "CLOSING"};
    for (const char* state : k_order) {
      if (seen.contains(std::string("tcp ") + state)) {
        out.keys.push_back(std::string("tcp ") + state);
        out.names.emplace_back(state);
      }
    }
    // UDP and UNIX as totals: their states matter less than how many there are.
    out.keys.insert(out.keys.end(), {"udp", "unix"});
    out.names.insert(out.names.end(), {"UDP", "UNIX"});
    return out;
  }
  for (const auto& spec : states) {
    const auto colon = spec.find(':');
    const std::string proto = colon == std::string::npos ? "tcp" : spec.substr(0, colon);
    const std::string state = colon == std::string::npos ? spec : spec.substr(colon + 1);
    out.keys.push_back(proto + " " + state);
    out.names.push_back(colon == std::string::npos ? state : spec);
  }
  return out;
}

Trend trend_frame(const std::vector<SnapshotSummary>& snapshots, std::int64_t since_ms, std::int64_t until_ms,
                  std::int64_t bucket_ms, std::vector<std::string> series, std::vector<std::string> units) {
  Trend t = empty_trend(since_ms, until_ms, bucket_ms);
  t.series = std::move(series);
  t.units = std::move(units);
  place_snapshots(t, snapshots);
  return t;
}

std::optional<std::size_t> bucket_of(const Trend& t, std::int64_t time_ms) {
  if (t.buckets.empty() || time_ms < t.buckets.front().start_ms) {
    return std::nullopt;
  }
  const auto idx = bucket_index(t, time_ms);
  return idx < t.buckets.size() ? std::optional(idx) : std::nullopt;
}

Trend trend_states(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                   std::int64_t bucket_ms, const std::vector<std::string>& states,
                   const std::vector<SnapshotSummary>* listed) {
  const auto own = listed ? std::vector<SnapshotSummary>{} : list_snapshots(db, scope, since_ms, until_ms);
  const auto& snapshots = listed ? *listed : own;
  // Series keys are "proto STATE" as state_counts stores them; names are what a person reads.
  std::set<std::string> seen;
  for (const auto& s : snapshots) {
    for (const auto& [key, n] : s.counts) {
      seen.insert(key);
    }
  }
  auto [keys, names] = state_series(seen, states);
  Trend t = trend_frame(snapshots, since_ms, until_ms, bucket_ms, std::move(names), {});
  t.units.assign(t.series.size(), "sockets");
  for (const auto& s : snapshots) {
    const auto idx = bucket_index(t, s.time_ms);
    if (idx >= t.buckets.size()) {
      continue;
    }
    for (std::size_t k = 0; k < keys.size(); ++k) {
      const bool total = keys[k].find(' ') == std::string::npos;
      const auto it = total ? s.counts.end() : s.counts.find(keys[k]);  // keys are "proto STATE"
      const auto n = total ? s.proto_total(keys[k]) : it == s.counts.end() ? 0 : it->second;
      raise(t.buckets[idx].values[k], static_cast<double>(n));
    }
  }
  return t;
}

Trend trend_counters(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                     std::int64_t bucket_ms, const std::vector<std::string>& counters,
                     const std::vector<SnapshotSummary>* listed) {
  const auto names = counter_names(db);
  std::vector<std::int64_t> ids;
  std::vector<bool> gauge;
  Trend t = empty_trend(since_ms, until_ms, bucket_ms);
  for (const auto& spec : counters) {
    const auto dot = spec.find('.');
    const auto it = std::find_if(names.begin(), names.end(), [&](const auto& n) {
      return dot != std::string::npos && n.second.section == spec.substr(0, dot) &&
             n.second.name == spec.substr(dot + 1);
    });
    if (it == names.end()) {
      throw Error(Exit::usage, fmt::format("--counters {}: no such counter in {} (give Section.Name as nstat and "
                                           "/proc/net/netstat name them, for example Tcp.RetransSegs)",
                                           spec, db.getFilename()));
    }
    ids.push_back(it->first);
    gauge.push_back(it->second.is_gauge);
    t.series.push_back(spec);
    t.units.push_back(it->second.is_gauge ? "value" : "per_s");
  }
  const auto own = listed ? std::vector<SnapshotSummary>{} : list_snapshots(db, scope, since_ms, until_ms);
  const auto& snapshots = listed ? *listed : own;
  place_snapshots(t, snapshots);
  if (snapshots.empty()) {
    return t;
  }
  // A pair of snapshots further apart than four times the usual interval spans a time the
  // collector did not run: no rate is drawn through it.
  std::vector<std::int64_t> intervals;
  for (std::size_t i = 1; i < snapshots.size(); ++i) {
    if (const auto d = monotonic_interval_ms(snapshots[i - 1], snapshots[i])) {
      intervals.push_back(*d);
    }
  }
  std::int64_t limit = 0;
  if (!intervals.empty()) {
    std::nth_element(intervals.begin(), intervals.begin() + static_cast<std::ptrdiff_t>(intervals.size() / 2),
                     intervals.end());
    limit = std::max<std::int64_t>(intervals[intervals.size() / 2] * 4, bucket_ms);
  }
  std::vector<std::vector<double>> delta(t.buckets.size(), std::vector<double>(ids.size(), 0));
  std::vector<std::vector<std::int64_t>> covered(t.buckets.size(), std::vector<std::int64_t>(ids.size(), 0));
  std::vector<std::optional<std::int64_t>> previous(ids.size());
  replay_counters(db, scope.netns_id, ids_of(snapshots), [&](std::size_t i, const auto& values) {
    const auto idx = bucket_index(t, snapshots[i].time_ms);
    std::optional<std::int64_t> interval;
    if (i > 0) {
      interval = monotonic_interval_ms(snapshots[i - 1], snapshots[i]);
    }
    const std::int64_t interval_ms = interval.value_or(0);
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const auto v = values.find(ids[k]);
      const std::optional<std::int64_t> value =
          v == values.end() ? std::nullopt : std::optional<std::int64_t>(v->second);
      if (idx < t.buckets.size() && value) {
        if (gauge[k]) {
          raise(t.buckets[idx].values[k], static_cast<double>(*value));
        } else if (interval_ms > 0 && interval_ms <= limit && previous[k] && *value >= *previous[k]) {
          delta[idx][k] += static_cast<double>(*value - *previous[k]);
          covered[idx][k] += interval_ms;
        }
      }
      previous[k] = value;
    }
  });
  for (std::size_t b = 0; b < t.buckets.size(); ++b) {
    for (std::size_t k = 0; k < ids.size(); ++k) {
      if (!gauge[k] && covered[b][k] > 0) {
        t.buckets[b].values[k] = delta[b][k] * 1000.0 / static_cast<double>(covered[b][k]);
      }
    }
  }
  return t;
}

namespace {

// Interns the group keys of a grouped trend: a week of TIME_WAIT on a busy host is a million
// spans with half a million peers, so one probe of a flat table of 16-byte slots per span, no
// allocation per key. A key of up to 8 bytes (ports, most "pid/comm") and an IPv4 address as
// netstat writes it are held in the slot itself, so that finding one reads no other memory.
class KeyTable {
 public:
  std::uint32_t intern(std::string_view key) {
    if ((m_count + 1) * 2 > m_slots.size()) {
      grow();
    }
    const Slot probe = slot_of(key);
    for (std::size_t i = mix(probe) & (m_slots.size() - 1);; i = (i + 1) & (m_slots.size() - 1)) {
      Slot& slot = m_slots[i];
      if (slot.index == k_empty) {
        slot = probe;
        slot.index = m_count;
        if (m_arena.size() > UINT32_MAX - key.size()) {
          throw std::length_error("trend: more than 4 GiB of group keys");
        }
        m_offsets.push_back(static_cast<std::uint32_t>(m_arena.size()));
        m_arena.append(key);
        return m_count++;
      }
      if (slot.word == probe.word && slot.form == probe.form && (probe.form != k_hashed || text(slot.index) == key)) {
        return slot.index;
      }
    }
  }
  std::string_view text(std::uint32_t index) const {
    const std::size_t end = index + 1 < m_offsets.size() ? m_offsets[index + 1] : m_arena.size();
    return std::string_view(m_arena).substr(m_offsets[index], end - m_offsets[index]);
  }
  std::uint32_t size() const { return m_count; }
  // Frees the hash slots once every key is interned (text() still answers): a week's half a million
  // peers hold 16 MiB of slots that the ranking and the sweep do not need.
  void stop_interning() { std::vector<Slot>().swap(m_slots); }

 private:
  static constexpr std::uint32_t k_empty = UINT32_MAX;
  // Slot::form: the key's length when it is held as text (1 to 8), or one of these.
  static constexpr std::uint32_t k_ipv4 = 100;    // a dotted quad without leading zeros, as 32 bits
  static constexpr std::uint32_t k_hashed = 101;  // anything else: its hash, compared in the arena
  struct Slot {
    std::uint64_t word = 0;
    std::uint32_t form = 0;
    std::uint32_t index = k_empty;
  };
  // The 32 bits of "a.b.c.d" when that is the one way to write them; nullopt otherwise.
  static std::optional<std::uint32_t> dotted_quad(std::string_view key) {
    std::uint32_t address = 0;
    std::size_t at = 0;
    for (int part = 0; part < 4; ++part) {
      std::uint32_t value = 0;
      const std::size_t start = at;
      while (at < key.size() && key[at] >= '0' && key[at] <= '9' && at - start < 3) {
        value = value * 10 + static_cast<std::uint32_t>(key[at++] - '0');
      }
      const std::size_t digits = at - start;
      if (digits == 0 || value > 255 || (digits > 1 && key[start] == '0')) {
        return std::nullopt;
      }
      address = address << 8 | value;
      if (part < 3 && (at >= key.size() || key[at++] != '.')) {
        return std::nullopt;
      }
    }
    return at == key.size() ? std::optional(address) : std::nullopt;
  }
  static Slot slot_of(std::string_view key) {
    Slot s;
    if (key.size() <= sizeof s.word) {
      std::memcpy(&s.word, key.data(), key.size());
      s.form = static_cast<std::uint32_t>(key.size());
    } else if (const auto v4 = dotted_quad(key)) {
      s.word = *v4;
      s.form = k_ipv4;
    } else {
      s.word = std::hash<std::string_view>{}(key);
      s.form = k_hashed;
    }
    return s;
  }
  static std::uint64_t mix(const Slot& s) {
    std::uint64_t h = (s.word ^ (static_cast<std::uint64_t>(s.form) << 56)) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 32;
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 29);
  }
  void grow() {
    std::vector<Slot> old = std::move(m_slots);
    m_slots.assign(std::max<std::size_t>(1024, old.size() * 2), Slot{});
    for (const Slot& slot : old) {
      if (slot.index == k_empty) {
        continue;
      }
      std::size_t i = mix(slot) & (m_slots.size() - 1);
      while (m_slots[i].index != k_empty) {
        i = (i + 1) & (m_slots.size() - 1);
      }
      m_slots[i] = slot;
    }
  }
  std::vector<Slot> m_slots;
  std::vector<std::uint32_t> m_offsets;
  std::string m_arena;
  std::uint32_t m_count = 0;
};

}  // namespace

Trend trend_grouped(SQLite::Database& db, const Scope& scope, std::int64_t since_ms, std::int64_t until_ms,
                    std::int64_t bucket_ms, const std::string& state_spec, GroupBy by, std::size_t top,
                    const std::vector<SnapshotSummary>* listed) {
  const auto own = listed ? std::vector<SnapshotSummary>{} : list_snapshots(db, scope, since_ms, until_ms);
  const auto& snapshots = listed ? *listed : own;
  Trend t = empty_trend(since_ms, until_ms, bucket_ms);
  const auto colon = state_spec.find(':');
  const std::string proto = colon == std::string::npos ? "tcp" : state_spec.substr(0, colon);
  const std::string state = colon == std::string::npos ? state_spec : state_spec.substr(colon + 1);
  // A span as the positions (in `snapshots`) of the first and last snapshot of the range it is in.
  struct Span {
    std::uint32_t first, last;
    std::uint32_t key;  // index into `keys`
  };
  std::deque<Span> spans;  // a week's million grows without copying itself
  KeyTable keys;
  const auto intern = [&](std::string_view key) { return keys.intern(key); };
  const auto wanted = state_id(db, proto, state);
  if (!snapshots.empty() && wanted) {
    // Labels of the few processes and local addresses involved, looked up once each.
    std::unordered_map<std::int64_t, std::uint32_t> key_of_process, key_of_address;
    auto process_label = process_label_by_id(db);
    auto address_label = address_by_id(db);
    const auto label_of = [&](std::unordered_map<std::int64_t, std::uint32_t>& cache, SQLite::Statement& lookup,
                              std::int64_t id) {
      if (auto it = cache.find(id); it != cache.end()) {
        return it->second;
      }
      lookup.reset();
      lookup.bind(1, id);
      const std::uint32_t key = intern(lookup.executeStep() ? lookup.getColumn(0).getText() : "-");
      cache.emplace(id, key);
      return key;
    };
    auto q = grouping_spans(db, scope, snapshots.front().id, snapshots.back().id, *wanted);
    const std::uint32_t none = intern("-");
    std::vector<std::int64_t> ids;
    ids.reserve(snapshots.size());
    for (const auto& snap : snapshots) {
      ids.push_back(snap.id);
    }
    while (q.step()) {
      const auto first = std::lower_bound(ids.begin(), ids.end(), q.integer(0)) - ids.begin();
      const auto last = std::upper_bound(ids.begin(), ids.end(), q.integer(1)) - ids.begin() - 1;
      if (first > last) {
        continue;  // between two snapshots of the range (a namespace's spans, another host's ids)
      }
      std::uint32_t key = none;
      if (by == GroupBy::process) {
        if (!q.null(2)) {
          key = label_of(key_of_process, process_label, q.integer(2));
        }
      } else if (by == GroupBy::local_port) {
        key = q.null(3) ? label_of(key_of_address, address_label, q.integer(4)) : intern(std::to_string(q.integer(3)));
      } else if (!q.null(5)) {
        key = intern(q.text(5));
      }
      spans.push_back({static_cast<std::uint32_t>(first), static_cast<std::uint32_t>(last), key});
    }
  }
  keys.stop_interning();
  // The series: the keys with the most sockets in the range, the rest summed as "other".
  std::vector<std::uint32_t> per_key(keys.size(), 0);
  for (const auto& s : spans) {
    ++per_key[s.key];
  }
  // Only the top ones are ordered: a week's half a million peers are not sorted.
  std::vector<std::uint32_t> ranked;
  for (std::uint32_t k = 0; k < keys.size(); ++k) {
    if (per_key[k] > 0) {
      ranked.push_back(k);
    }
  }
  const auto before = [&](std::uint32_t a, std::uint32_t b) {
    return per_key[a] != per_key[b] ? per_key[a] > per_key[b] : keys.text(a) < keys.text(b);
  };
  const bool has_other = ranked.size() > top;
  const std::size_t shown = std::min(ranked.size(), top);
  if (has_other) {
    std::nth_element(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(shown), ranked.end(), before);
  }
  std::sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(shown), before);
  std::vector<std::uint32_t> series_of_key(keys.size(), static_cast<std::uint32_t>(shown));  // `shown`: "other"
  for (std::size_t i = 0; i < shown; ++i) {
    series_of_key[ranked[i]] = static_cast<std::uint32_t>(i);
    t.series.emplace_back(keys.text(ranked[i]));
  }
  if (has_other) {
    t.series.push_back("other");
  }
  t.units.assign(t.series.size(), "sockets");
  place_snapshots(t, snapshots);
  // Sweep: a span counts in every snapshot from its first to its last; each series keeps the
  // changes of its count per snapshot.
  const std::size_t n = snapshots.size();
  std::vector<std::int64_t> delta(t.series.size() * (n + 1), 0);
  for (const auto& span : spans) {
    const std::size_t series = series_of_key[span.key];
    ++delta[series * (n + 1) + span.first];
    --delta[series * (n + 1) + span.last + 1];
  }
  std::vector<std::int64_t> alive(t.series.size(), 0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto idx = bucket_index(t, snapshots[i].time_ms);
    for (std::size_t k = 0; k < alive.size(); ++k) {
      alive[k] += delta[k * (n + 1) + i];
      if (idx < t.buckets.size()) {
        raise(t.buckets[idx].values[k], static_cast<double>(alive[k]));
      }
    }
  }
  return t;
}

}  // namespace sockhist::query
