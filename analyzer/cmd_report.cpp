// sockhist report: one self-contained HTML page of charts and their numbers over a window of the
// history, for a ticket or a case folder; or one chart alone as SVG, for embedding (as sadf -g).
#include <unistd.h>

#include <fmt/format.h>

#include "common.hpp"
#include "report_build.hpp"
#include "sockhist/error.hpp"

namespace sockhist::analyzer {

namespace {

struct ReportOptions {
  Common common;
  Window window;
  ThresholdOptions thresholds;
  std::string format = "html";
  std::optional<std::string> chart;
  std::optional<std::string> output;
};

// Without --since and --until: the whole history, up to its newest snapshot (a file copied off a
// host long ago still has its story).
const WindowDefaults k_window{std::nullopt, false, ""};

Result run_report(const ReportOptions& o) {
  if (o.format == "svg" && !o.chart) {
    throw Error(Exit::usage, "--format svg writes one chart: name it with --chart (for example --chart states)");
  }
  if (o.chart && o.format != "svg") {
    throw Error(Exit::usage, "--chart needs --format svg (the HTML page holds every chart)");
  }
  if (!o.output) {
    throw Error(Exit::usage, "report: give -o FILE (or -o - for stdout)");
  }
  auto db = open_db(o.common);
  ReportAsk ask;
  ask.common = o.common;
  std::tie(ask.since_ms, ask.until_ms) = resolve_window(o.window, k_window, o.common.now_ms);
  ask.thresholds = o.thresholds;
  const auto page = build_report(db, ask, o.chart);
  const auto zone = render_options(o.common).zone;
  std::string text;
  if (o.chart) {
    const auto it =
        std::find_if(page.charts.begin(), page.charts.end(), [&](const auto& c) { return c.id == *o.chart; });
    if (it == page.charts.end()) {
      std::vector<std::string> names;
      for (const auto& c : page.charts) {
        names.push_back(c.id);
      }
      throw Error(Exit::usage,
                  fmt::format("--chart {}: no such chart here; the charts are {}", *o.chart, fmt::join(names, ", ")));
    }
    text = chart::svg(*it, zone, true);
  } else {
    text = chart::html(page, zone);
  }
  if (*o.output == "-") {
    return {std::move(text), 0};
  }
  // Never world-readable: a report holds what the database holds (owners, addresses, commands).
  write_atomically(*o.output, text, "-o", 0600);
  if (::isatty(STDERR_FILENO) == 1) {
    fmt::print(stderr, "sockhist report: wrote {} ({} KiB)\n", *o.output, (text.size() + 1023) / 1024);
  }
  return {"", 0};
}

}  // namespace

void setup_report(CLI::App& app, Runner& selected) {
  auto o = std::make_shared<ReportOptions>();
  auto* sub = add_command(app, "report",
                          "One self-contained HTML page of charts over the history (states, CLOSE_WAIT owners, "
                          "TIME_WAIT, port pressure, counter rates, the connection log) with a summary and the "
                          "numbers; or one chart as SVG",
                          selected, [o] { return run_report(*o); });
  add_common(*sub, o->common, true, true, false);
  add_window(*sub, o->window, k_window);
  sub->add_option("-o,--output", o->output, "The file to write (replaced whole, created mode 0600; - for stdout)");
  sub->add_option("--format", o->format, "html: the whole report; svg: the one chart --chart names")
      ->check(CLI::IsMember({"html", "svg"}))
      ->capture_default_str();
  sub->add_option("--chart", o->chart,
                  "With --format svg: the chart to write (states, close-wait, time-wait, port-pressure, retransmits, "
                  "resets, listen-queue, connections, states-NETNS)");
  o->thresholds.add_to(*sub);
}

}  // namespace sockhist::analyzer
