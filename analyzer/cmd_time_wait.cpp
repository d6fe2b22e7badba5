// sockhist time-wait: TIME_WAIT against the 60 s the kernel gives it. Entries estimated from the
// timer each snapshot recorded, checked against the kernel's TcpExt.TW counter; who closes first;
// which peers and local addresses it piles up against; anomalies with examples; ephemeral-port
// pressure per destination.
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/query/lifecycle.hpp"

namespace sockhist::analyzer {

namespace {

using query::endpoint;
using query::TimeWaitSocket;
using render::Kind;

struct TimeWaitOptions {
  Common common;
  Window window;
  std::optional<std::string> by;
  bool ports = false;
  bool anomalies = false;
  std::optional<std::string> bucket;
  std::size_t top = 20;
};

// What --since and --until mean when not given.
const WindowDefaults k_window{"1h", true, {}};

render::Value maybe(const std::optional<std::int64_t>& v) {
  return v ? render::Value(*v) : render::Value();
}

render::Value maybe(const std::optional<double>& v) {
  return v ? render::Value(*v) : render::Value();
}

// The anomaly kinds, in the order the summary lists them (query::TimeWaitAnomaly's).
struct AnomalyKind {
  const char* key;
  const char* title;
  query::TimeWaitAnomaly kind;
};
const AnomalyKind k_anomalies[] = {
    {"reused_tuple", "4-tuple in TIME_WAIT again with a fresh timer (seen > 60 s)",
     query::TimeWaitAnomaly::reused_tuple},
    {"vanished_early", "gone at least 5 s before its 60 s (reused or killed)", query::TimeWaitAnomaly::vanished_early},
    {"overstayed", "seen more than 7.5 s after its 60 s", query::TimeWaitAnomaly::overstayed},
    {"long_timer", "timer above 60 s (a non-standard kernel)", query::TimeWaitAnomaly::long_timer},
    {"fin_wait2_minisocket", "FIN_WAIT2 minisocket (orphaned; ends by tcp_fin_timeout)",
     query::TimeWaitAnomaly::fin_wait2_minisocket},
};

const query::TimeWaitAnomalies& seen(const query::TimeWaitReport& r, const AnomalyKind& kind) {
  return r.anomalies[static_cast<std::size_t>(kind.kind)];
}

std::string anomalies_of(const TimeWaitSocket& s) {
  std::string out;
  for (const auto& kind : k_anomalies) {
    if (query::has(s, kind.kind)) {
      out += out.empty() ? kind.key : fmt::format(",{}", kind.key);
    }
  }
  return out;
}

// One socket in a line: "127.0.0.1:40112 > 127.0.0.1:18080 first seen 00:56:20 (41s left)".
std::string example(const TimeWaitSocket& s, const render::Options& options) {
  std::string text =
      fmt::format("{} > {} seen {}", endpoint(s.local_addr, s.local_port), endpoint(s.remote_addr, s.remote_port),
                  model::format_human(s.first_seen_ms, options.zone));
  if (s.remaining_ms) {
    text += fmt::format(" with {} left", model::format_duration(*s.remaining_ms));
  }
  if (s.vanished_early && s.gone_by_ms && s.expires_ms()) {
    text += fmt::format(", gone by {} ({} early)", model::format_human(*s.gone_by_ms, options.zone),
                        model::format_duration(*s.expires_ms() - *s.gone_by_ms));
  }
  if (!(s.next_state == query::Neighbour{})) {
    text += fmt::format(", then {}", query::describe(s.next_state));
  }
  return text;
}

bool any_anomaly(const query::TimeWaitReport& r) {
  for (const auto& kind : k_anomalies) {
    if (seen(r, kind).count > 0) {
      return true;
    }
  }
  return !r.overflows.empty();
}

std::string percent_apart(double a, double b) {
  const double larger = std::max(a, b);
  return larger <= 0 ? std::string("both zero") : fmt::format("{:.0f} % apart", 100.0 * std::abs(a - b) / larger);
}

// The summary as rows (section, item, count, per second, detail): a table for people and for CSV.
render::Table summary_table(const query::TimeWaitReport& r, const render::Options& options) {
  render::Table t;
  t.columns = {
      {"section", "SECTION"},
      {"item", "WHAT"},
      {"count", "COUNT", Kind::real, "", 0},
      {"per_s", "PER S", Kind::real, "per_s", 2},
      {"detail", "DETAIL"},
  };
  const auto span_text = r.first_ms ? model::format_duration(*r.last_ms - *r.first_ms) : std::string("0s");
  const auto add = [&](const char* section, std::string item, render::Value count, render::Value per_s,
                       std::string detail) {
    t.rows.push_back({std::string(section), std::move(item), std::move(count), std::move(per_s), std::move(detail)});
  };
  const auto whole = [](std::int64_t n) { return render::Value(static_cast<double>(n)); };
  add("entries",
      r.exact_entries > 0
          ? fmt::format("TIME_WAIT entered ({} dated by the connection log; the rest from the timers)", r.exact_entries)
          : std::string("TIME_WAIT entered (from the timers)"),
      whole(r.entries), maybe(r.entries_per_s),
      r.complete
          ? fmt::format("every one seen: no two snapshots over 60 s apart, over {}", span_text)
          : fmt::format("a lower bound: snapshots up to {} apart miss some", model::format_duration(r.longest_gap_ms)));
  if (r.peak_entries_per_s) {
    add("entries", "TIME_WAIT entered at the busiest", whole(r.peak_entries), render::Value(*r.peak_entries_per_s),
        fmt::format("in the {} from {}{}; PER S above is the mean over the range", model::format_duration(r.bucket_ms),
                    model::format_human(r.peak_entries_ms, options.zone),
                    r.peak_observed_ms < r.bucket_ms
                        ? fmt::format(" (the {} of it between snapshots)", model::format_duration(r.peak_observed_ms))
                        : std::string()));
  }
  add("entries", "TcpExt.TW (the kernel's count)", r.counter_delta ? whole(*r.counter_delta) : render::Value(),
      maybe(r.counter_per_s),
      r.counter_delta ? fmt::format("over {} within one boot", model::format_duration(r.covered_ms))
                      : std::string("not recorded"));
  if (r.table_entries != r.entries) {
    add("entries", "as the kernel counts them", whole(r.table_entries), maybe(r.table_entries_per_s),
        "FIN_WAIT2 minisockets counted once, when they appeared");
  }
  if (r.mean_population) {
    add("entries", "TIME_WAIT population (mean)", render::Value(*r.mean_population),
        render::Value(*r.mean_population / 60.0),
        fmt::format("mean {:.1f}, peak {} at {}; PER S: mean / 60 s, the entry rate it implies in steady state",
                    *r.mean_population, r.peak_population, model::format_human(r.peak_ms, options.zone)));
  }
  if (r.counter_per_s && r.entries_per_s) {
    std::string detail =
        fmt::format("entries vs TcpExt.TW: {}", percent_apart(*r.table_entries_per_s, *r.counter_per_s));
    if (r.mean_population) {
      detail += fmt::format("; population vs TcpExt.TW x 60 s: {}",
                            percent_apart(*r.mean_population, *r.counter_per_s * 60.0));
    }
    add("entries", "agreement", render::Value(), render::Value(), detail);
  }
  const double seconds =
      r.first_ms && *r.last_ms > *r.first_ms ? static_cast<double>(*r.last_ms - *r.first_ms) / 1000.0 : 0;
  for (const auto& c : r.closers) {
    const char* what = c.closer == query::Closer::server   ? "this host's server closes first (listening port)"
                       : c.closer == query::Closer::client ? "this host's client closes first (ephemeral port)"
                                                           : "closes first from a fixed port that does not listen";
    std::string detail;
    for (std::size_t i = 0; i < c.owners.size() && i < 3; ++i) {
      detail += fmt::format("{}{} {}", i == 0 ? "" : ", ", c.owners[i].first, c.owners[i].second);
    }
    if (c.owners.size() > 3) {
      detail += fmt::format(" (+{} more)", c.owners.size() - 3);
    }
    if (c.carried) {
      detail += " [owner carried from the open connection]";
    }
    add("closers", what, whole(c.sockets),
        seconds > 0 ? render::Value(static_cast<double>(c.entered) / seconds) : render::Value(), detail);
  }
  for (const auto& kind : k_anomalies) {
    const auto& a = seen(r, kind);
    add("anomalies", kind.title, whole(a.count), render::Value(),
        a.example ? "e.g. " + example(*a.example, options) : std::string("none"));
    if (kind.kind == query::TimeWaitAnomaly::reused_tuple) {
      // Not an anomaly: what was recorded cannot tell a takeover from a port reused in time.
      const auto& m = r.maybe_reused;
      add("doubts", "4-tuple again in its 7.5 s overtime (maybe taken over)", whole(m.count), render::Value(),
          m.example ? fmt::format("e.g. {}; the earlier timer may not have fired yet, and TWRecycled rose (or "
                                  "was not recorded) meanwhile",
                                  example(*m.example, options))
                    : std::string("none"));
    }
  }
  {
    std::int64_t total = 0;
    for (const auto& o : r.overflows) {
      total += o.increase;
    }
    std::string detail = "none";
    if (!r.overflows.empty()) {
      const auto& o = r.overflows.front();
      detail = fmt::format("+{} between {} and {}{}; tcp_max_tw_buckets {}", o.increase,
                           model::format_human(o.from_ms, options.zone), model::format_human(o.to_ms, options.zone),
                           r.overflows.size() > 1 ? fmt::format(" (+{} more intervals)", r.overflows.size() - 1) : "",
                           r.tcp_max_tw_buckets ? std::to_string(*r.tcp_max_tw_buckets) : std::string("unknown"));
    }
    add("anomalies", "TCPTimeWaitOverflow: closed without TIME_WAIT (table full)", whole(total), render::Value(),
        detail);
  }
  for (const auto& [counter, delta] : r.related) {
    if (counter == "TCPTimeWaitOverflow") {
      continue;
    }
    add("kernel", fmt::format("TcpExt.{}", counter), whole(delta), render::Value(),
        counter == "TWRecycled" ? fmt::format("TIME_WAIT slots taken over by a new connect (tcp_tw_reuse {})",
                                              r.tcp_tw_reuse ? std::to_string(*r.tcp_tw_reuse) : "unknown")
                                : std::string("entered TIME_WAIT with 4 s or less to live"));
  }
  return t;
}

render::Table buckets_table(const query::TimeWaitReport& r) {
  render::Table t;
  t.columns = {
      {"time", "BUCKET START", Kind::time_ms},
      {"snapshots", "SNAPSHOTS", Kind::integer},
      {"time_wait", "TIME_WAIT", Kind::integer, "sockets"},
      {"entries", "ENTERED", Kind::integer, "sockets"},
      {"entries_per_s", "ENTERED/S", Kind::real, "per_s"},
      {"tw_per_s", "TW/S", Kind::real, "per_s"},
      {"tw_x60", "TW/S x 60", Kind::real, "sockets", 0},
  };
  for (const auto& b : r.buckets) {
    t.rows.push_back({b.start_ms, b.snapshots, maybe(b.population), b.entries,
                      static_cast<double>(b.entries) * 1000.0 / static_cast<double>(r.bucket_ms),
                      maybe(b.counter_per_s),
                      b.counter_per_s ? render::Value(*b.counter_per_s * 60.0) : render::Value()});
  }
  t.notes.push_back("TIME_WAIT: the highest count of the bucket's snapshots. ENTERED: entries estimated from the");
  t.notes.push_back("timers (first sighting - (60 s - time left)). TW/S: the kernel's TcpExt.TW counter per second.");
  return t;
}

render::Table sockets_table(const query::TimeWaitReport& r, bool anomalies_only) {
  render::Table t;
  t.columns = {
      {"state", "STATE"},
      {"local", "LOCAL ADDRESS"},
      {"remote", "FOREIGN ADDRESS"},
      {"closer", "CLOSER"},
      {"program", "PID/PROGRAM"},
      {"entered", "ENTERED", Kind::time_ms},
      {"expires", "EXPIRES", Kind::time_ms},
      {"first_seen", "FIRST SEEN", Kind::time_ms},
      {"remaining", "LEFT", Kind::duration_ms},
      {"last_seen", "LAST SEEN", Kind::time_ms},
      {"came_from", "FROM"},
      {"next_state", "THEN"},
      {"anomalies", "ANOMALY"},
      {"pid", "", Kind::integer, {}, 2, false},
      {"process", "", Kind::text, {}, 2, false},
      {"cmdline", "", Kind::text, {}, 2, false},
      {"entered_after", "", Kind::time_ms, {}, 2, false},
      {"gone_by", "", Kind::time_ms, {}, 2, false},
  };
  for (const auto& s : r.sockets) {
    const auto anomalies = anomalies_of(s);
    if (anomalies_only && anomalies.empty()) {
      continue;
    }
    t.rows.push_back({
        std::string(s.fin_wait2 ? "FIN_WAIT2" : "TIME_WAIT"),
        endpoint(s.local_addr, s.local_port),
        endpoint(s.remote_addr, s.remote_port),
        std::string(query::name(s.closer)),
        program(s.pid, s.comm),
        maybe(s.entered_ms),
        maybe(s.expires_ms()),
        s.first_seen_ms,
        maybe(s.remaining_ms),
        s.last_seen_ms,
        s.came_from == query::Neighbour{} ? std::string("-") : query::describe(s.came_from),
        s.next_state == query::Neighbour{} ? std::string("-") : query::describe(s.next_state),
        anomalies.empty() ? std::string("-") : anomalies,
        s.pid == 0 ? render::Value() : render::Value(static_cast<std::int64_t>(s.pid)),
        s.comm.empty() ? render::Value() : render::Value(s.comm),
        s.cmdline ? render::Value(*s.cmdline) : render::Value(),
        maybe(s.entered_after_ms),
        maybe(s.gone_by_ms),
    });
  }
  t.notes.push_back("ENTERED: first sighting - (60 s - LEFT), the timer then; EXPIRES: 60 s later. THEN: what the");
  t.notes.push_back("4-tuple did next. FIN_WAIT2 rows are orphaned minisockets (tcp_fin_timeout), not TIME_WAIT.");
  return t;
}

render::Table groups_table(const std::vector<query::TimeWaitGroup>& groups, const char* title, std::size_t top) {
  render::Table t;
  t.columns = {
      {"key", title},
      {"closer", "CLOSER"},
      {"sockets", "SOCKETS", Kind::integer, "sockets"},
      {"peak", "PEAK", Kind::integer, "sockets"},
      {"peak_at", "PEAK AT", Kind::time_ms},
      {"entries_per_s", "ENTERED/S", Kind::real, "per_s"},
      {"owners", "PID/PROGRAM"},
  };
  for (const auto& g : groups) {
    if (top > 0 && t.rows.size() >= top) {
      t.notes.push_back(fmt::format("({} more; --top 0 lists them all)", groups.size() - top));
      break;
    }
    t.rows.push_back({g.key, g.closer, g.sockets, g.peak, g.peak == 0 ? render::Value() : render::Value(g.peak_ms),
                      maybe(g.entries_per_s), g.owners.empty() ? std::string("-") : g.owners});
  }
  t.notes.push_back("PEAK: the most TIME_WAIT sockets in one snapshot. ENTERED/S: entries over the range's snapshots.");
  return t;
}

render::Table ports_table(const std::vector<query::PortPressure>& pressure, std::size_t top) {
  render::Table t;
  t.columns = {
      {"destination", "DESTINATION"},
      {"local_addr", "LOCAL ADDRESS"},
      {"at", "WORST AT", Kind::time_ms},
      {"time_wait", "TIME_WAIT", Kind::integer, "sockets"},
      {"open", "OPEN", Kind::integer, "sockets"},
      {"in_use", "IN USE", Kind::integer, "ports"},
      {"range", "RANGE", Kind::integer, "ports"},
      {"percent", "USED %", Kind::real, "percent", 1},
  };
  bool assumed = false;
  for (const auto& p : pressure) {
    if (top > 0 && t.rows.size() >= top) {
      t.notes.push_back(fmt::format("({} more; --top 0 lists them all)", pressure.size() - top));
      break;
    }
    assumed = assumed || p.range_assumed;
    t.rows.push_back({endpoint(p.remote_addr, p.remote_port), p.local_addr, p.at_ms, p.time_wait, p.open,
                      p.time_wait + p.open, p.range_size, p.percent()});
  }
  t.notes.push_back("Connections from ephemeral ports (ip_local_port_range) to one destination at the snapshot where");
  t.notes.push_back("they were most: at 100 % a connect() there fails with EADDRNOTAVAIL.");
  if (assumed) {
    t.notes.push_back("The range was not recorded: 32768-60999 (Linux's default) assumed.");
  }
  return t;
}

Result run_time_wait(const TimeWaitOptions& o) {
  if (o.ports && o.by) {
    throw Error(Exit::usage, "--ports and --by are different views: give one or the other");
  }
  if (o.anomalies && o.by != "socket") {
    throw Error(Exit::usage, "--anomalies lists sockets: use it with --by socket");
  }
  auto db = open_db(o.common);
  const auto scope = resolve_scope(db, o.common.host, o.common.netns);
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
  const std::int64_t bucket = o.bucket ? parse_duration(*o.bucket, "--bucket") : 0;
  if (o.bucket && (until - since) / bucket > 100'000) {
    throw Error(Exit::usage,
                fmt::format("--bucket {}: more than 100000 buckets over the range; choose a larger one", *o.bucket));
  }
  query::TimeWaitAsk ask;
  if (o.by == "remote" || o.by == "local") {
    ask.by = *o.by == "remote" ? query::TimeWaitBy::remote : query::TimeWaitBy::local;
  }
  // Sockets are kept only where they are printed: all of them by --by socket, those with an
  // anomaly by --anomalies and by the summary in JSON; the rest is counted as it is read.
  const auto options = render_options(o.common);
  if (o.by == "socket") {
    ask.keep = o.anomalies ? query::TimeWaitAsk::Keep::anomalies : query::TimeWaitAsk::Keep::all;
  } else if (!o.by && !o.ports && options.format == render::Format::json) {
    ask.keep = query::TimeWaitAsk::Keep::anomalies;
  } else {
    ask.keep = query::TimeWaitAsk::Keep::none;
  }
  const auto report = query::time_wait_report(db, scope, since, until, bucket, ask);
  const int code = any_anomaly(report) ? 1 : 0;
  std::string what;
  render::Table t;
  if (o.ports) {
    t = ports_table(query::port_pressure(db, scope, report.snapshot_list), o.top);
    what = "ephemeral-port use per destination at its worst moment";
  } else if (o.by == "remote" || o.by == "local") {
    const bool remote = *o.by == "remote";
    t = groups_table(report.groups, remote ? "REMOTE ENDPOINT" : "LOCAL ADDRESS", o.top);
    what = remote ? "TIME_WAIT per remote endpoint" : "TIME_WAIT per local address (listening ports apart)";
  } else if (o.by == "socket") {
    t = sockets_table(report, o.anomalies);
    what = o.anomalies ? "TIME_WAIT sockets with an anomaly" : "every TIME_WAIT socket and FIN_WAIT2 minisocket";
  } else if (o.by == "time") {
    t = buckets_table(report);
    what = fmt::format("TIME_WAIT over time, per {}", model::format_duration(report.bucket_ms));
  } else {
    t = summary_table(report, options);
    what = "TIME_WAIT lifecycle summary";
  }
  if (options.format == render::Format::json) {
    auto doc = json_head("time-wait", o.common, &scope);
    doc["what"] = what;
    doc["since"] = model::format_iso_utc(since);
    doc["until"] = model::format_iso_utc(until);
    doc["snapshots"] = report.snapshots;
    doc["anomalies_found"] = code == 1;
    if (!o.by && !o.ports) {
      nlohmann::ordered_json s;
      s["entries"] = report.entries;
      s["entries_per_s"] = report.entries_per_s ? nlohmann::ordered_json(*report.entries_per_s) : nullptr;
      s["entries_complete"] = report.complete;
      s["peak_entries"] = report.peak_entries;
      s["peak_entries_per_s"] =
          report.peak_entries_per_s ? nlohmann::ordered_json(*report.peak_entries_per_s) : nullptr;
      s["peak_observed_seconds"] = static_cast<double>(report.peak_observed_ms) / 1000.0;
      s["peak_entries_time"] =
          report.peak_entries_per_s ? nlohmann::ordered_json(model::format_iso_utc(report.peak_entries_ms)) : nullptr;
      s["bucket_seconds"] = static_cast<double>(report.bucket_ms) / 1000.0;
      s["longest_gap_seconds"] = static_cast<double>(report.longest_gap_ms) / 1000.0;
      s["table_entries"] = report.table_entries;
      s["table_entries_per_s"] =
          report.table_entries_per_s ? nlohmann::ordered_json(*report.table_entries_per_s) : nullptr;
      s["tw_counter_delta"] = report.counter_delta ? nlohmann::ordered_json(*report.counter_delta) : nullptr;
      s["tw_counter_per_s"] = report.counter_per_s ? nlohmann::ordered_json(*report.counter_per_s) : nullptr;
      s["tw_counter_covered_seconds"] = static_cast<double>(report.covered_ms) / 1000.0;
      s["mean_population"] = report.mean_population ? nlohmann::ordered_json(*report.mean_population) : nullptr;
      s["peak_population"] = report.peak_population;
      s["peak_time"] = report.snapshots > 0 ? nlohmann::ordered_json(model::format_iso_utc(report.peak_ms)) : nullptr;
      s["tcp_tw_reuse"] = report.tcp_tw_reuse ? nlohmann::ordered_json(*report.tcp_tw_reuse) : nullptr;
      s["tcp_max_tw_buckets"] =
          report.tcp_max_tw_buckets ? nlohmann::ordered_json(*report.tcp_max_tw_buckets) : nullptr;
      s["tcp_fin_timeout"] = report.tcp_fin_timeout ? nlohmann::ordered_json(*report.tcp_fin_timeout) : nullptr;
      nlohmann::ordered_json kernel = nlohmann::ordered_json::object();
      for (const auto& [counter, delta] : report.related) {
        kernel[counter] = delta;
      }
      s["kernel_counters"] = kernel;
      nlohmann::ordered_json counts = nlohmann::ordered_json::object();
      for (const auto& kind : k_anomalies) {
        counts[kind.key] = seen(report, kind).count;
      }
      s["anomaly_counts"] = counts;
      s["reused_tuple_maybe"] = report.maybe_reused.count;
      doc["summary"] = s;
      auto anomalies = render::to_json_rows(sockets_table(report, true));
      doc["anomalies"] = anomalies;
      nlohmann::ordered_json overflows = nlohmann::ordered_json::array();
      for (const auto& step : report.overflows) {
        overflows.push_back({{"from", model::format_iso_utc(step.from_ms)},
                             {"to", model::format_iso_utc(step.to_ms)},
                             {"increase", step.increase}});
      }
      doc["overflows"] = overflows;
      doc["bucket_seconds"] = static_cast<double>(report.bucket_ms) / 1000.0;
      doc["buckets"] = render::to_json_rows(buckets_table(report));
    }
    return {render::render(t, options, doc), code};
  }
  std::vector<std::string> heading = {fmt::format("# {}: {}, {} snapshots from {} to {}", scope_line(scope), what,
                                                  report.snapshots, model::format_human(since, options.zone),
                                                  model::format_human(until, options.zone))};
  if (report.snapshots == 0) {
    t.rows.clear();
    t.notes = {"(no snapshot in the range)"};
  } else if (t.rows.empty()) {
    t.notes.clear();
    t.notes.push_back("(none)");
  }
  std::string out = render::render(t, options, {}, heading);
  if (options.format == render::Format::table && !o.by && !o.ports && report.snapshots > 0) {
    out += fmt::format("\n# over time, per {} (--by time for this alone)\n", model::format_duration(report.bucket_ms));
    out += render::to_text(buckets_table(report), options);
  }
  return {out, code};
}

}  // namespace

void setup_time_wait(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<TimeWaitOptions>();
  auto* sub = add_command(app, "time-wait",
                          "TIME_WAIT against its 60 s: entries from the timers beside the kernel's TW counter, who "
                          "closes first, peers, anomalies, ephemeral-port pressure. Exit 1 when it finds an anomaly",
                          selected, [o] { return run_time_wait(*o); });
  add_common(*sub, o->common);
  add_window(*sub, o->window, k_window);
  sub->add_option("--by", o->by,
                  "remote: per peer; local: per local address; socket: every socket; time: the series per bucket")
      ->check(CLI::IsMember({"remote", "local", "socket", "time"}));
  sub->add_flag("--ports", o->ports, "Ephemeral-port pressure per (local address, destination) at its worst moment");
  sub->add_flag("--anomalies", o->anomalies, "With --by socket: only sockets with an anomaly");
  sub->add_option("--bucket", o->bucket, "Bucket size of the series over time (default: 24 to 60 buckets)");
  sub->add_option("--top", o->top, "Rows of --by remote/local and --ports (0: all)")->capture_default_str();
}

}  // namespace sockhist::analyzer
