// sockhist trend: socket counts per state, counter rates, or one state's sockets per owner, port or
// peer, bucketed by wall clock, with gaps and reboots marked rather than drawn through.
#include <fmt/format.h>

#include "common.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

namespace {

struct TrendOptions {
  Common common;
  Window window;
  std::optional<std::string> bucket;
  std::vector<std::string> counters;
  std::vector<std::string> states;
  std::optional<std::string> by;
  std::size_t top = 8;
};

// What --since and --until mean when not given.
const WindowDefaults k_window{"24h", true, {}};

}  // namespace

render::Table trend_table(const query::Trend& trend) {
  using render::Kind;
  render::Table t;
  t.columns.push_back({"time", "BUCKET START", Kind::time_ms});
  for (std::size_t k = 0; k < trend.series.size(); ++k) {
    const bool rate = trend.units[k] == "per_s";
    t.columns.push_back({trend.series[k], trend.series[k], rate ? Kind::real : Kind::integer, trend.units[k]});
  }
  t.columns.push_back({"snapshots", "", Kind::integer});
  t.columns.push_back({"note", "", Kind::text});
  for (const auto& b : trend.buckets) {
    std::vector<render::Value> row{b.start_ms};
    for (std::size_t k = 0; k < b.values.size(); ++k) {
      if (!b.values[k]) {
        row.emplace_back();
      } else if (trend.units[k] == "per_s") {
        row.emplace_back(*b.values[k]);
      } else {
        row.emplace_back(static_cast<std::int64_t>(*b.values[k]));
      }
    }
    row.emplace_back(b.snapshots);
    row.emplace_back(std::string(b.gap ? "gap: no snapshot" : b.reboot ? "reboot" : ""));
    t.rows.push_back(std::move(row));
  }
  return t;
}

namespace {

Result run_trend(const TrendOptions& o) {
  if (o.by && o.states.size() != 1) {
    throw Error(Exit::usage, "--by needs exactly one --state (for example --state CLOSE_WAIT --by process)");
  }
  if (!o.counters.empty() && !o.states.empty()) {
    throw Error(Exit::usage, "--counters and --state draw different things: give one or the other");
  }
  auto db = open_db(o.common);
  const auto scope = resolve_scope(db, o.common.host, o.common.netns);
  const auto [since, until] = resolve_window(o.window, k_window, o.common.now_ms);
  const auto bucket = o.bucket ? parse_duration(*o.bucket, "--bucket") : query::choose_bucket_ms(until - since);
  if ((until - since) / bucket > 100'000) {
    throw Error(Exit::usage,
                fmt::format("--bucket {}: more than 100000 buckets over the range; choose a larger one", *o.bucket));
  }
  query::Trend trend;
  std::string what;
  if (!o.counters.empty()) {
    trend = query::trend_counters(db, scope, since, until, bucket, o.counters);
    what = "counter rates per second (gauges: highest value)";
  } else if (o.by) {
    const auto by = *o.by == "process"      ? query::GroupBy::process
                    : *o.by == "local-port" ? query::GroupBy::local_port
                                            : query::GroupBy::remote_addr;
    trend = query::trend_grouped(db, scope, since, until, bucket, o.states.front(), by, o.top);
    what = fmt::format("{} sockets per {} (highest count in each bucket)", o.states.front(), *o.by);
  } else {
    trend = query::trend_states(db, scope, since, until, bucket, o.states);
    what = "sockets per state (highest count in each bucket)";
  }
  const auto t = trend_table(trend);
  const auto options = render_options(o.common);
  if (options.format == render::Format::json) {
    auto doc = json_head("trend", o.common, &scope);
    doc["bucket_seconds"] = static_cast<double>(bucket) / 1000.0;
    doc["what"] = what;
    return {render::render(t, options, doc), 0};
  }
  return {
      render::render(t, options, {},
                     {fmt::format("# {}: {}, buckets of {}", scope_line(scope), what, model::format_duration(bucket))}),
      0};
}

}  // namespace

void setup_trend(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<TrendOptions>();
  auto* sub = add_command(app, "trend", "Socket counts per state, or counter rates, over time, one row per bucket",
                          selected, [o] { return run_trend(*o); });
  add_common(*sub, o->common);
  add_window(*sub, o->window, k_window);
  sub->add_option("--bucket", o->bucket, "Bucket size (default: chosen for 24 to 60 buckets)");
  sub->add_option("--counters", o->counters, "Counters as Section.Name (Tcp.RetransSegs,TcpExt.ListenOverflows)")
      ->delimiter(',');
  sub->add_option("--state", o->states, "Only these states (CLOSE_WAIT, udp:ESTABLISHED, unix:CONNECTED)")
      ->delimiter(',');
  sub->add_option("--by", o->by, "With one --state: a series per owning process, local port or remote address")
      ->check(CLI::IsMember({"process", "local-port", "remote-addr"}));
  sub->add_option("--top", o->top, "With --by: the largest series kept, the rest summed as 'other'")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

}  // namespace sockhist::analyzer
