// The TIME_WAIT reader (time_wait_read.hpp): one pass over the range's TIME_WAIT and FIN_WAIT2
// spans, linking the sightings of each 4-tuple as they come and keeping only the latest per tuple
// until the snapshots have moved past it.
#include "time_wait_read.hpp"
#include "time_wait_tuple.hpp"

#include "sockhist/store.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include <SQLiteCpp/Statement.h>

namespace sockhist::query::detail {

namespace {

// The latest TIME_WAIT of a 4-tuple, while a later sighting may still change it.
struct Pending {
  TimeWaitSeen socket;
  std::uint64_t serial = 0;  // which heap entry is current
};

// A pending socket is complete once the snapshots read have moved more than one past its last
// sighting: (position, serial, tuple), the earliest first.
struct Deadline {
  std::size_t position = 0;
  std::uint64_t serial = 0;
  TupleKey key;
  bool operator>(const Deadline& o) const { return position > o.position; }
};

struct FirstSnapshot {
  std::int64_t time_ms = 0;
  std::int64_t port_low = 32768, port_high = 60999;  // Linux's default when not recorded
};

}  // namespace

struct TimeWaitReader::Impl {
  SQLite::Database& db;
  const Scope& scope;
  const std::vector<SnapshotSummary>& snapshots;
  std::vector<std::int64_t> ids, times;
  Listeners listening;
  std::optional<std::int64_t> time_wait_id, fin_wait2_id;
  std::optional<std::optional<std::int64_t>> before_range_ms;

  std::vector<Owner> owners{Owner{}};
  std::unordered_map<std::int64_t, std::uint32_t> owner_of_process;
  std::unordered_map<const Listener*, std::uint32_t> owner_of_listener;
  std::unordered_map<std::int64_t, std::string> local_addrs;
  std::unordered_map<std::int64_t, FirstSnapshot> outside;    // first snapshots before the range
  std::unordered_set<std::int64_t> minisockets;               // FIN_WAIT2 minisocket spans read
  std::unordered_map<std::string, std::uint64_t> long_texts;  // remote addresses TupleKey numbers
  std::optional<SQLite::Statement> process_q, prev_owner_q, snapshot_q, address_q;
  // TIME_WAIT spans whose entry the connection log heard: the end of the socket that began them.
  std::unordered_map<std::int64_t, std::int64_t> exact_entry;
  std::vector<std::int8_t> recycled_rose;  // TimeWaitReader::takeovers_counted; empty: unknown

  bool recycled_may_have_risen(std::size_t position) const {
    return position >= recycled_rose.size() || recycled_rose[position] != 0;
  }

  NearSearch id_search{ids}, time_search{times};  // ids and times are not changed once made

  Impl(SQLite::Database& d, const Scope& s, const std::vector<SnapshotSummary>& snaps)
      : db(d), scope(s), snapshots(snaps), ids(ids_of(snaps)) {
    for (const auto& snap : snaps) {
      times.push_back(snap.time_ms);
    }
    listening = listeners(db, scope, ids.front(), ids.back());
    if (store::has_connection_log(db)) {
      // An end is stored with the snapshot that first saw its TIME_WAIT or the one before.
      SQLite::Statement q(db,
                          "SELECT e.time_wait_span_id, e.time_ms FROM snapshots s CROSS JOIN connection_ends e "
                          "ON e.snapshot_id = s.snapshot_id WHERE s.netns_id = ? AND s.snapshot_id BETWEEN ? AND ? "
                          "AND e.time_wait_span_id IS NOT NULL");
      q.bind(1, scope.netns_id);
      q.bind(2, ids.front() - 1);
      q.bind(3, ids.back());
      while (q.executeStep()) {
        exact_entry.emplace(q.getColumn(0).getInt64(), q.getColumn(1).getInt64());
      }
    }
    time_wait_id = state_id(db, model::Proto::tcp, model::SockState::time_wait);
    fin_wait2_id = state_id(db, model::Proto::tcp, model::SockState::fin_wait2);
  }

  TupleKey tuple_key(const TimeWaitSeen& s) {
    TupleKey k;
    k.local_addr_id = s.local_addr_id;
    k.ports = (s.local_port << 32) ^ s.remote_port;
    const auto& text = s.remote_addr;
    if (text.size() <= sizeof k.remote) {
      std::memcpy(k.remote, text.data(), text.size());  // no NUL in an address: zeros pad it
    } else if (in6_addr a{}; inet_pton(AF_INET6, text.c_str(), &a) == 1) {
      std::memcpy(k.remote, &a, sizeof a);
      k.form = 1;
    } else {
      k.remote[0] = long_texts.try_emplace(text, long_texts.size()).first->second;
      k.form = 2;
    }
    return k;
  }

  std::size_t position_of(std::int64_t time_ms) { return time_search.lower(time_ms); }

  std::optional<std::int64_t> before_range() {
    if (!before_range_ms) {
      SQLite::Statement before(db,
                               "SELECT time_ms FROM snapshots WHERE netns_id = ? AND snapshot_id < ? "
                               "ORDER BY snapshot_id DESC LIMIT 1");
      before.bind(1, scope.netns_id);
      before.bind(2, ids.front());
      before_range_ms = before.executeStep() ? std::optional(before.getColumn(0).getInt64()) : std::nullopt;
    }
    return *before_range_ms;
  }

  // The time and ip_local_port_range of a span's first snapshot.
  FirstSnapshot first_snapshot(std::int64_t id) {
    FirstSnapshot f;
    if (const auto at = id_search.lower(id); at < ids.size() && ids[at] == id) {
      const auto& snap = snapshots[at];
      f.time_ms = snap.time_ms;
      f.port_low = snap.port_range_low.value_or(f.port_low);
      f.port_high = snap.port_range_high.value_or(f.port_high);
      return f;
    }
    if (const auto it = outside.find(id); it != outside.end()) {
      return it->second;
    }
    if (!snapshot_q) {
      snapshot_q.emplace(db, "SELECT time_ms, port_range_low, port_range_high FROM snapshots WHERE snapshot_id = ?");
    }
    snapshot_q->reset();
    snapshot_q->bind(1, id);
    if (snapshot_q->executeStep()) {
      f.time_ms = snapshot_q->getColumn(0).getInt64();
      f.port_low = opt_int(snapshot_q->getColumn(1)).value_or(f.port_low);
      f.port_high = opt_int(snapshot_q->getColumn(2)).value_or(f.port_high);
    }
    return outside[id] = f;
  }

  std::uint32_t owner_of(std::int64_t process_id) {
    const auto [it, added] = owner_of_process.try_emplace(process_id, 0);
    if (added) {
      if (!process_q) {
        process_q.emplace(db, "SELECT pid, comm, cmdline FROM processes WHERE process_id = ?");
      }
      process_q->reset();
      process_q->bind(1, process_id);
      if (process_q->executeStep()) {
        it->second = static_cast<std::uint32_t>(owners.size());
        owners.push_back(
            {process_q->getColumn(0).getInt(), process_q->getColumn(1).getString(), opt_text(process_q->getColumn(2))});
      }
    }
    return it->second;
  }

  std::uint32_t owner_of(const Listener* l) {
    const auto [it, added] = owner_of_listener.try_emplace(l, 0);
    if (added) {
      it->second = static_cast<std::uint32_t>(owners.size());
      owners.push_back({l->pid, l->comm, l->cmdline});
    }
    return it->second;
  }

  // A span without an owner of its own takes its previous span's (as stored, the collector has
  // already carried it; a file from elsewhere may not have).
  std::optional<std::int64_t> previous_owner(std::int64_t prev_span_id) {
    if (!prev_owner_q) {
      prev_owner_q.emplace(db, "SELECT process_id FROM socket_spans WHERE span_id = ?");
    }
    prev_owner_q->reset();
    prev_owner_q->bind(1, prev_span_id);
    return prev_owner_q->executeStep() ? opt_int(prev_owner_q->getColumn(0)) : std::nullopt;
  }

  // The current row of time_wait_spans as a socket; nullopt for a full FIN_WAIT2 socket (its owner
  // still holds it: not a minisocket).
  std::optional<TimeWaitSeen> socket_of(const RawStatement& q) {
    const bool fw2 = fin_wait2_id && q.integer(4) == *fin_wait2_id;
    const auto timer = q.integer(5);
    if (fw2 && timer != static_cast<int>(model::TimerKind::timewait)) {
      return std::nullopt;
    }
    TimeWaitSeen s;
    s.span_id = s.last_span_id = q.integer(0);
    s.first_id = q.integer(1);
    s.last_id = q.integer(2);
    s.fin_wait2 = fw2;
    const auto first = first_snapshot(s.first_id);
    s.first_seen_ms = q.null(3) ? first.time_ms : q.integer(3);
    if (timer == static_cast<int>(model::TimerKind::timewait)) {
      s.remaining_ms = q.integer(6);
    }
    s.prev_span_id = q.null(7) ? 0 : q.integer(7);
    s.from_minisocket = s.prev_span_id != 0 && minisockets.count(s.prev_span_id) > 0;
    if (fw2) {
      minisockets.insert(s.span_id);
    }
    if (!q.null(8)) {
      s.owner = owner_of(q.integer(8));
    } else if (s.prev_span_id != 0) {
      if (const auto process = previous_owner(s.prev_span_id)) {
        s.owner = owner_of(*process);
      }
    }
    s.family = static_cast<int>(q.integer(9));
    s.local_addr_id = q.integer(10);
    s.local_port = q.integer(11);
    s.remote_addr = q.text(12);
    s.remote_port = q.integer(13);
    s.cookie = q.null(14) ? 0 : q.integer(14);
    if (const auto l = listening.find(s.local_port); l != listening.end()) {
      s.closer = Closer::server;
      if (const auto* owner = listener_at(l->second, s.first_id); s.owner == 0 && owner != nullptr) {
        s.owner = owner_of(owner);
      }
    } else if (s.local_port >= first.port_low && s.local_port <= first.port_high) {
      s.closer = Closer::client;
    }
    // Where in the range it was first and last seen. A socket first seen before the range keeps its
    // own first sighting (and timer) for the estimate, and no lower bound from the range.
    const auto first_pos = id_search.at_or_before(s.first_id);
    if (first_pos > 0) {
      s.entered_after_ms = times[static_cast<std::size_t>(first_pos - 1)];
    } else if (first_pos == 0) {
      s.entered_after_ms = before_range();
    }
    const auto last_pos = id_search.at_or_before(s.last_id);
    s.last_seen_ms = times[static_cast<std::size_t>(std::max<std::ptrdiff_t>(last_pos, 0))];
    if (s.last_id < ids.back()) {
      const auto& gone = snapshots[static_cast<std::size_t>(last_pos + 1)];
      s.gone_by_ms = gone.time_ms;
      s.rebooted = last_pos >= 0 && gone.boot_id != snapshots[static_cast<std::size_t>(last_pos)].boot_id;
    }
    if (const auto exact = exact_entry.find(s.span_id); !fw2 && exact != exact_entry.end()) {
      s.entered_ms = exact->second;
      s.entered_exact = true;
      const auto expires = *s.expires_ms();
      s.vanished_early = s.gone_by_ms && !s.rebooted && *s.gone_by_ms < expires - k_time_wait_early_ms;
      s.overstayed = s.last_seen_ms > expires + k_time_wait_overtime_ms;
    } else if (!fw2 && s.remaining_ms) {
      if (*s.remaining_ms > k_time_wait_ms + k_time_wait_timer_slack_ms) {
        s.long_timer = true;  // no estimate: the kernel's TIME_WAIT length is unknown
      } else {
        s.entered_ms = s.first_seen_ms - (k_time_wait_ms - *s.remaining_ms);
        const auto expires = *s.expires_ms();
        s.vanished_early = s.gone_by_ms && !s.rebooted && *s.gone_by_ms < expires - k_time_wait_early_ms;
        s.overstayed = s.last_seen_ms > expires + k_time_wait_overtime_ms;
      }
    }
    return s;
  }
};

TimeWaitReader::TimeWaitReader(SQLite::Database& db, const Scope& scope, const std::vector<SnapshotSummary>& snapshots)
    : impl_(std::make_unique<Impl>(db, scope, snapshots)) {}

TimeWaitReader::~TimeWaitReader() = default;

const std::vector<std::int64_t>& TimeWaitReader::times() const {
  return impl_->times;
}

void TimeWaitReader::takeovers_counted(std::vector<std::int8_t> rose) {
  impl_->recycled_rose = std::move(rose);
}

const Owner& TimeWaitReader::owner(std::uint32_t id) const {
  return impl_->owners[id];
}

const std::string& TimeWaitReader::local_addr(std::int64_t addr_id) {
  auto& m = *impl_;
  const auto [it, added] = m.local_addrs.try_emplace(addr_id);
  if (added) {
    if (!m.address_q) {
      m.address_q.emplace(address_by_id(m.db));
    }
    m.address_q->reset();
    m.address_q->bind(1, addr_id);
    if (m.address_q->executeStep()) {
      it->second = m.address_q->getColumn(0).getString();
    }
  }
  return it->second;
}

bool TimeWaitReader::read(const std::function<void(const TimeWaitSeen&)>& done, bool may_scan) {
  auto& m = *impl_;
  if (!m.time_wait_id && !m.fin_wait2_id) {
    return true;
  }
  m.minisockets.clear();
  using Latest = std::unordered_map<TupleKey, Pending, TupleHash>;
  Latest latest;                         // per 4-tuple, its latest TIME_WAIT
  std::vector<Latest::node_type> spare;  // nodes of completed tuples, reused (a week has a million)
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines;
  std::uint64_t serial = 0;
  const auto wait_for = [&](const TupleKey& key, Pending& p) {
    p.serial = ++serial;
    deadlines.push({m.position_of(p.socket.last_seen_ms) + 1, p.serial, key});
  };
  const bool scan = may_scan && scan_whole_table(m.db, m.scope, m.ids.front(), m.ids.back());
  auto q = time_wait_spans(m.db, m.scope, m.ids.front(), m.ids.back(), m.time_wait_id.value_or(-1),
                           m.fin_wait2_id.value_or(-1), scan);
  std::int64_t first_id = 0;
  while (q.step()) {
    if (scan && q.integer(1) < first_id) {
      return false;  // not the order of first sighting
    }
    first_id = q.integer(1);
    auto read = m.socket_of(q);
    if (!read) {
      continue;
    }
    TimeWaitSeen& s = *read;
    if (s.fin_wait2) {
      done(s);
      continue;
    }
    // Sightings of a tuple are compared only with the one before them, at most one snapshot
    // apart: those further behind are complete.
    const auto position = m.position_of(s.first_seen_ms);
    while (!deadlines.empty() && deadlines.top().position < position) {
      const auto d = deadlines.top();
      deadlines.pop();
      if (const auto it = latest.find(d.key); it != latest.end() && it->second.serial == d.serial) {
        done(it->second.socket);
        spare.push_back(latest.extract(it));
      }
    }
    const auto key = m.tuple_key(s);
    const auto it = latest.find(key);
    if (it == latest.end()) {
      Latest::iterator added;
      if (spare.empty()) {
        added = latest.emplace(key, Pending{s, 0}).first;
      } else {
        auto node = std::move(spare.back());
        spare.pop_back();
        node.key() = key;
        node.mapped().socket = s;
        added = latest.insert(std::move(node)).position;
      }
      wait_for(key, added->second);
      continue;
    }
    auto& earlier = it->second.socket;
    const auto gap = position - m.position_of(earlier.last_seen_ms);
    if (gap <= 1 && s.first_seen_ms > earlier.last_seen_ms && s.entered_ms && earlier.entered_ms) {
      // Two cookies that differ are two sockets, whatever their timers say (as the collector
      // judges them: it splits a span only on a fresh timer, another cookie, or a new boot).
      if (*s.entered_ms > *earlier.entered_ms + k_time_wait_reentry_ms ||
          (s.cookie != 0 && earlier.cookie != 0 && s.cookie != earlier.cookie)) {
        // A fresh timer on the tuple: a new connection. It took the tuple over (tcp_tw_reuse,
        // TWRecycled) only if it entered before the earlier entry's 60 s were over; one that
        // entered after is ordinary port reuse, not an anomaly. No slack before the expiry: the
        // kernel takes over mostly the oldest entries, in their last seconds (measured by
        // lifecycle_live_test against TWRecycled).
        earlier.followed = true;
        if (*s.entered_ms < *earlier.expires_ms()) {
          s.reused_tuple = true;
          earlier.vanished_early = false;
        } else if (*s.entered_ms <= *earlier.expires_ms() + k_time_wait_overtime_ms &&
                   m.recycled_may_have_risen(position)) {
          s.maybe_reused = true;  // its timer may not have fired yet: a takeover or a reuse
        }
      } else {
        // The same socket, its span split by a reboot record or an owner change: one socket.
        earlier.last_seen_ms = s.last_seen_ms;
        earlier.last_span_id = s.span_id;
        earlier.last_id = s.last_id;
        earlier.gone_by_ms = s.gone_by_ms;
        earlier.rebooted = s.rebooted;
        earlier.vanished_early = s.vanished_early;
        earlier.overstayed = s.overstayed;
        wait_for(key, it->second);
        continue;
      }
    }
    done(earlier);
    it->second.socket = s;
    wait_for(key, it->second);
  }
  for (const auto& [key, pending] : latest) {
    done(pending.socket);
  }
  return true;
}

std::vector<TimeWaitSocket> TimeWaitReader::sockets(const std::vector<TimeWaitSeen>& seen, std::size_t lookups_max) {
  auto& m = *impl_;
  // What followed each socket's last span: looked up one by one (the spans begun in the snapshot
  // after it), or for many, every successor of the range in one scan.
  std::unordered_map<std::int64_t, Neighbour> next;
  if (seen.size() > lookups_max) {
    std::unordered_set<std::int64_t> wanted;
    for (const auto& s : seen) {
      wanted.insert(s.last_span_id);
    }
    auto q = successors(m.db, m.scope, m.ids.front(), m.ids.back());
    while (q.executeStep()) {
      if (const auto prev = q.getColumn(0).getInt64(); wanted.count(prev) > 0) {
        next[prev] = neighbour_of(q.getColumn(1).getString());
      }
    }
  } else {
    SQLite::Statement q(m.db,
                        "SELECT st.state FROM socket_spans sp INDEXED BY socket_spans_by_first "
                        "JOIN socket_states st ON st.state_id = sp.state_id WHERE sp.netns_id = ? "
                        "AND sp.first_snapshot_id > ? AND sp.first_snapshot_id <= ? AND sp.prev_span_id = ?");
    for (const auto& s : seen) {
      const auto pos = at_or_before(m.ids, s.last_id);
      if (pos < 0 || static_cast<std::size_t>(pos) + 1 >= m.ids.size()) {
        continue;  // seen to the range's end: what followed is after it
      }
      q.reset();
      q.bind(1, m.scope.netns_id);
      q.bind(2, s.last_id);
      q.bind(3, m.ids[static_cast<std::size_t>(pos) + 1]);
      q.bind(4, s.last_span_id);
      if (q.executeStep()) {
        next[s.last_span_id] = neighbour_of(q.getColumn(0).getString());
      }
    }
  }
  SQLite::Statement before(m.db,
                           "SELECT st.state, sp.timer FROM socket_spans sp "
                           "JOIN socket_states st ON st.state_id = sp.state_id WHERE sp.span_id = ?");
  std::vector<TimeWaitSocket> out;
  out.reserve(seen.size());
  for (const auto& s : seen) {
    TimeWaitSocket t;
    t.span_id = s.span_id;
    t.fin_wait2 = s.fin_wait2;
    t.family = s.family;
    t.local_addr = local_addr(s.local_addr_id);
    t.local_port = s.local_port;
    t.remote_addr = s.remote_addr;
    t.remote_port = s.remote_port;
    t.closer = s.closer;
    const auto& owner = m.owners[s.owner];
    t.pid = owner.pid;
    t.comm = owner.comm;
    t.cmdline = owner.cmdline;
    if (s.prev_span_id != 0) {
      before.reset();
      before.bind(1, s.prev_span_id);
      if (before.executeStep()) {
        t.came_from = neighbour_of(before.getColumn(0).getString(), before.getColumn(1).getInt());
      }
    }
    t.first_seen_ms = s.first_seen_ms;
    t.last_seen_ms = s.last_seen_ms;
    t.gone_by_ms = s.gone_by_ms;
    t.remaining_ms = s.remaining_ms;
    t.entered_ms = s.entered_ms;
    t.entered_after_ms = s.entered_after_ms;
    if (s.followed) {
      t.next_state = Neighbour{model::SockState::time_wait};
    } else if (s.rebooted) {
      t.next_state.reboot = true;
    } else if (const auto it = next.find(s.last_span_id); it != next.end()) {
      t.next_state = it->second;
    }
    t.reused_tuple = s.reused_tuple;
    t.vanished_early = s.vanished_early;
    t.long_timer = s.long_timer;
    t.overstayed = s.overstayed;
    t.maybe_reused = s.maybe_reused;
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace sockhist::query::detail
