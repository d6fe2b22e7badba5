// sockhist metrics: the newest snapshot in Prometheus's text exposition format (version 0.0.4), for
// node_exporter's textfile collector: sockets per protocol and state, the kernel's counters as
// counters and its gauges as gauges, the snapshot's age, and the outcome of every threshold given
// as to `check`. --output replaces a file atomically (a temporary file renamed over it), as the
// textfile collector requires.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"
#include "sockhist/model.hpp"

namespace sockhist::analyzer {

namespace {

struct MetricsOptions {
  Common common;
  ThresholdOptions thresholds;
  std::optional<std::string> output;
  bool all_netns = false;
};

// A label value, escaped as the exposition format asks (backslash, double quote, newline).
std::string label_value(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) {
    return fmt::format("{}", static_cast<std::int64_t>(v));
  }
  return fmt::format("{}", v);
}

// The families in the order first declared, each with its HELP and TYPE once and then all its
// samples, whichever namespace they came from (the format wants a family's samples together).
class Exposition {
 public:
  // The labels every following sample carries (a namespace's host and netns, already escaped).
  void scope(std::string labels) { m_labels = std::move(labels); }

  void family(const std::string& name, const char* type, const std::string& help) {
    if (m_index.try_emplace(name, m_families.size()).second) {
      m_families.push_back({fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type), {}});
    }
  }
  // A sample of a declared family with the scope's labels and `extra` ones ("proto=\"tcp\"").
  void sample(const std::string& name, double value, const std::string& extra = {}) {
    m_families[m_index.at(name)].samples +=
        fmt::format("{}{{{}{}{}}} {}\n", name, m_labels, extra.empty() ? "" : ",", extra, number(value));
  }
  std::string text() const {
    std::string out;
    for (const auto& f : m_families) {
      out += f.head + f.samples;
    }
    return out;
  }

 private:
  struct Family {
    std::string head;
    std::string samples;
  };
  std::string m_labels;
  std::vector<Family> m_families;
  std::map<std::string, std::size_t> m_index;
};

// What each threshold's value is, in a unit Prometheus names: seconds, a ratio, a count.
struct CheckMetric {
  const char* name;
  const char* help;
  double scale;
};
CheckMetric check_metric(query::Check check) {
  using query::Check;
  switch (check) {
    case Check::max_age:
      return {"sockhist_check_max_age_seconds", "How old the newest snapshot is (check --max-age).", 1};
    case Check::close_wait_max_age:
      return {"sockhist_check_close_wait_age_seconds",
              "The longest CLOSE_WAIT stay of an owner past --close-wait-max-age (at least; the longest of all "
              "when none is past it).",
              1};
    case Check::close_wait_max_per_process:
      return {"sockhist_check_close_wait_sockets",
              "CLOSE_WAIT sockets of a process (check --close-wait-max-per-process).", 1};
    case Check::time_wait_max:
      return {"sockhist_check_time_wait_sockets", "TIME_WAIT sockets (check --time-wait-max).", 1};
    case Check::syn_recv_max:
      return {"sockhist_check_syn_recv_sockets", "SYN_RECV sockets (check --syn-recv-max).", 1};
    case Check::port_pressure_max:
      return {"sockhist_check_port_pressure_ratio",
              "The share of the ephemeral ports a destination uses, 0 to 1 (check --port-pressure-max).", 0.01};
    case Check::listen_overflows:
      return {"sockhist_check_listen_overflows",
              "TcpExt.ListenOverflows' increase since the snapshot before (check --listen-overflows).", 1};
    case Check::time_wait_overflows:
      return {"sockhist_check_time_wait_overflows",
              "TcpExt.TCPTimeWaitOverflow's increase since the snapshot before (check --time-wait-overflows).", 1};
  }
  return {"sockhist_check_value", "", 1};
}

// The label a namespace is known by: its /run/netns name, "own" for the host's, else its inode.
std::string netns_label(const query::Scope& scope) {
  if (scope.netns_name) {
    return *scope.netns_name;
  }
  return scope.netns_initial ? std::string("own") : std::to_string(scope.netns_inode);
}

void add_checks(Exposition& out, SQLite::Database& db, const query::Scope& scope, const MetricsOptions& o) {
  const auto range = query::newest_range(db, scope);
  const auto limits = o.thresholds.resolve(db, scope, o.common.now_ms);
  // Grouped by threshold, as each family's samples must be (evaluate_checks gives them so already).
  auto outcomes = query::evaluate_checks(db, scope, range, limits);
  std::stable_sort(outcomes.begin(), outcomes.end(), [](const auto& a, const auto& b) { return a.check < b.check; });
  std::map<query::Check, int> findings;
  for (const auto& x : outcomes) {
    findings[x.check] += x.found ? 1 : 0;
  }
  out.family("sockhist_check_findings", "gauge",
             "Findings of each threshold given, as sockhist check counts them (0: healthy).");
  for (const auto& [check, n] : findings) {
    out.sample("sockhist_check_findings", n, fmt::format("check=\"{}\"", query::name(check)));
  }
  out.family("sockhist_check_finding", "gauge",
             "1 for each owner, destination or host over its threshold, 0 for a threshold not crossed.");
  for (const auto& x : outcomes) {
    out.sample("sockhist_check_finding", x.found ? 1 : 0,
               fmt::format("check=\"{}\",subject=\"{}\"", query::name(x.check), label_value(x.subject)));
  }
  for (const auto& x : outcomes) {
    const auto metric = check_metric(x.check);
    out.family(metric.name, "gauge", metric.help);  // declared once, however often named
    out.sample(metric.name, x.value * metric.scale, fmt::format("subject=\"{}\"", label_value(x.subject)));
  }
}

// One namespace's newest snapshot, labelled `netns`.
void add_scope(Exposition& out, SQLite::Database& db, const query::Scope& scope, const query::SnapshotSummary& newest,
               const std::string& netns, const MetricsOptions& o) {
  out.scope(fmt::format("host=\"{}\",netns=\"{}\"", label_value(scope.host), label_value(netns)));
  out.family("sockhist_snapshot_timestamp_seconds", "gauge", "When the newest snapshot was taken (Unix time).");
  out.sample("sockhist_snapshot_timestamp_seconds", static_cast<double>(newest.time_ms) / 1000.0);
  out.family("sockhist_snapshot_age_seconds", "gauge", "How old the newest snapshot was when these metrics were made.");
  out.sample("sockhist_snapshot_age_seconds", static_cast<double>(o.common.now_ms - newest.time_ms) / 1000.0);
  out.family("sockhist_snapshot_capture_seconds", "gauge", "How long the newest snapshot's capture took.");
  out.sample("sockhist_snapshot_capture_seconds", static_cast<double>(newest.capture_ms) / 1000.0);

  // Every TCP state, 0 where none was seen (the snapshot holds every socket), and whatever else
  // the snapshot counted (UDP and UNIX states).
  std::map<std::pair<std::string, std::string>, std::int64_t> counts;
  for (unsigned code = 1; code <= 11; ++code) {  // ESTABLISHED to CLOSING, as the kernel numbers them
    counts[{"tcp", std::string(model::name(*model::tcp_state_from_code(code)))}] = 0;
  }
  for (const auto& [key, n] : newest.counts) {
    const auto space = key.find(' ');
    counts[{key.substr(0, space), key.substr(space + 1)}] = n;
  }
  out.family("sockhist_sockets", "gauge", "Sockets in the newest snapshot, by protocol and state (netstat's names).");
  for (const auto& [key, n] : counts) {
    out.sample("sockhist_sockets", static_cast<double>(n),
               fmt::format("proto=\"{}\",state=\"{}\"", label_value(key.first), label_value(key.second)));
  }

  // The kernel's counters as of the newest snapshot, by section and field as the kernel names them
  // (labels, not metric names: TcpExt's names are the kernel's CamelCase), counts apart from levels.
  const auto counters = query::snapshot_counters(db, newest.id);
  for (const bool gauges : {false, true}) {
    const std::string name = gauges ? "sockhist_kernel_level" : "sockhist_kernel_events_total";
    out.family(name, gauges ? "gauge" : "counter",
               gauges ? "A level the kernel reports (Sockstat, Tcp CurrEstab, ...), as of the newest snapshot."
                      : "A count the kernel keeps since boot (/proc/net/snmp, netstat, snmp6), as of the newest "
                        "snapshot.");
    for (const auto& c : counters) {
      if (c.is_gauge == gauges) {
        out.sample(name, static_cast<double>(c.value),
                   fmt::format("section=\"{}\",field=\"{}\"", label_value(c.section), label_value(c.name)));
      }
    }
  }
  if (o.thresholds.any()) {
    add_checks(out, db, scope, o);
  }
}

// The namespaces --all-netns writes: each whose newest snapshot is no staler, against the host's
// newest, than check's default --max-age (3 usual intervals, at least 5 minutes), so that a
// namespace deleted since drops out instead of lingering with its last counts.
std::vector<std::pair<query::Scope, query::SnapshotSummary>> live_namespaces(SQLite::Database& db,
                                                                             const MetricsOptions& o) {
  std::vector<std::pair<query::Scope, query::SnapshotSummary>> all;
  std::int64_t host_newest = 0;
  for (auto& scope : query::namespace_scopes(db, o.common.host)) {
    if (auto newest = query::latest_snapshot(db, scope)) {
      host_newest = std::max(host_newest, newest->time_ms);
      all.emplace_back(std::move(scope), std::move(*newest));
    }
  }
  std::vector<std::pair<query::Scope, query::SnapshotSummary>> live;
  for (auto& [scope, newest] : all) {
    if (newest.time_ms >= host_newest - default_max_age_ms(query::usual_interval_ms(db, scope))) {
      live.emplace_back(std::move(scope), std::move(newest));
    }
  }
  return live;
}

std::string exposition(const MetricsOptions& o) {
  auto db = open_db(o.common);
  Exposition out;
  if (!o.all_netns) {
    const auto scope = resolve_scope(db, o.common.host, o.common.netns);
    const auto newest = query::latest_snapshot(db, scope);
    if (!newest) {
      throw Error(Exit::usage, fmt::format("metrics: no snapshot of {}", scope_line(scope)));
    }
    add_scope(out, db, scope, *newest, netns_label(scope), o);
    return out.text();
  }
  std::map<std::string, int> labels;  // a label two live namespaces share gets each its row id
  const auto live = live_namespaces(db, o);
  for (const auto& [scope, newest] : live) {
    ++labels[netns_label(scope)];
  }
  for (const auto& [scope, newest] : live) {
    auto label = netns_label(scope);
    if (labels[label] > 1) {
      label += fmt::format("#{}", scope.netns_id);
    }
    add_scope(out, db, scope, newest, label, o);
  }
  return out.text();
}

Result run_metrics(const MetricsOptions& o) {
  if (o.common.format != "table") {
    throw Error(Exit::usage,
                fmt::format("--format {}: metrics writes Prometheus's text format, nothing else", o.common.format));
  }
  auto text = exposition(o);
  if (o.output) {
    write_atomically(*o.output, text, "--output", 0644);
    return {"", 0};
  }
  return {std::move(text), 0};
}

}  // namespace

void setup_metrics(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<MetricsOptions>();
  auto* sub = add_command(app, "metrics",
                          "The newest snapshot as Prometheus metrics (text format) for node_exporter's textfile "
                          "collector: sockets per protocol and state, the kernel's counters and gauges, the "
                          "snapshot's age, and each threshold given as to check",
                          selected, [o] { return run_metrics(*o); });
  add_common(*sub, o->common);
  sub->add_flag("--all-netns", o->all_netns,
                "Every namespace of the host whose newest snapshot is current (no staler than check's default "
                "--max-age against the host's newest), each under its netns label")
      ->excludes("--netns");
  sub->add_option("-o,--output", o->output,
                  "Replace this file atomically (a temporary file renamed over it) instead of printing: a "
                  "*.prom file in the textfile collector's directory");
  o->thresholds.add_to(*sub);
}

}  // namespace sockhist::analyzer
