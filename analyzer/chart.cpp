// Line charts over time as SVG: a time axis in UTC or local time with its zone named, a value axis
// from zero with its unit, gaps shaded and reboots marked, each series broken wherever a bucket has
// no data, at a gap and at a reboot, so that no line ever bridges time nobody observed.
#include <algorithm>
#include <array>
#include <cmath>
#include <ctime>

#include <fmt/format.h>

#include "sockhist/chart.hpp"
#include "sockhist/render.hpp"

namespace sockhist::chart {

namespace {

// The drawing's geometry, in SVG user units (the page scales it to its width).
constexpr double k_width = 720;
constexpr double k_left = 64;             // the value axis' labels are to its left
constexpr double k_right = k_width - 34;  // room for the last time label, centred on its tick
constexpr double k_plot_height = 220;
constexpr double k_char = 7.0;  // the width of a character at the legend's size, at most about
constexpr double k_legend_row = 18;

struct Frame {
  double top = 0;
  double bottom = 0;
  std::int64_t x0 = 0, x1 = 1;  // the time range drawn
  double y_max = 1;

  double x(std::int64_t t) const {
    return k_left + (k_right - k_left) * static_cast<double>(t - x0) / static_cast<double>(x1 - x0);
  }
  double y(double v) const { return bottom - (bottom - top) * v / y_max; }
};

std::tm tm_at(std::int64_t ms, model::Zone zone) {
  const std::time_t t = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  std::tm tm{};
  if (zone == model::Zone::utc) {
    gmtime_r(&t, &tm);
  } else {
    localtime_r(&t, &tm);
  }
  return tm;
}

std::string strftime_at(std::int64_t ms, model::Zone zone, const char* format) {
  const std::tm tm = tm_at(ms, zone);
  std::array<char, 64> buf{};
  const auto n = std::strftime(buf.data(), buf.size(), format, &tm);
  return std::string(buf.data(), n);
}

// A value axis' top and step: 1, 2 or 5 times a power of ten, about five steps up to the highest
// value.
std::pair<double, double> nice_axis(double highest) {
  if (!(highest > 0)) {
    return {1, 0.2};
  }
  const double rough = highest / 5;
  const double power = std::pow(10.0, std::floor(std::log10(rough)));
  double step = power;
  for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * power;
    if (step >= rough) {
      break;
    }
  }
  return {std::ceil(highest / step - 1e-9) * step, step};
}

std::string tick_text(double v, double step) {
  if (step >= 1) {
    const auto n = static_cast<std::int64_t>(std::llround(v));
    if (n != 0 && n % 1'000'000 == 0) {
      return fmt::format("{}M", n / 1'000'000);
    }
    if (n >= 10'000 && n % 1000 == 0) {
      return fmt::format("{}k", n / 1000);
    }
    return fmt::format("{}", n);
  }
  const int decimals = static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return fmt::format("{:.{}f}", v, std::clamp(decimals, 1, 6));
}

// Time ticks: the first step of the ladder giving at most eight, aligned to the zone's clock.
std::vector<std::int64_t> time_ticks(std::int64_t from, std::int64_t to, model::Zone zone, std::int64_t& step) {
  static constexpr std::array<std::int64_t, 21> k_ladder = {
      1'000,      2'000,      5'000,      10'000,     15'000,      30'000,      60'000,
      120'000,    300'000,    600'000,    900'000,    1'800'000,   3'600'000,   7'200'000,
      10'800'000, 21'600'000, 43'200'000, 86'400'000, 172'800'000, 604'800'000, 2'592'000'000};
  step = k_ladder.back();
  for (const auto s : k_ladder) {
    if ((to - from) / s <= 8) {
      step = s;
      break;
    }
  }
  const std::int64_t offset = zone == model::Zone::utc ? 0 : tm_at(from, zone).tm_gmtoff * 1000;
  std::int64_t t = from + offset;
  t = (t / step + (t % step != 0 ? 1 : 0)) * step - offset;
  std::vector<std::int64_t> ticks;
  for (; t <= to; t += step) {
    ticks.push_back(t);
  }
  return ticks;
}

std::string number_attr(double v) {
  return fmt::format("{:.1f}", v);
}

// Consecutive buckets with a point, broken at a missing value, at a reboot, and wherever a gap lies
// between two points.
std::vector<std::vector<std::pair<double, double>>> segments(const Chart& c, const Series& s, const Frame& f) {
  std::vector<std::vector<std::pair<double, double>>> out;
  std::vector<std::pair<double, double>> run;
  std::int64_t previous = 0;  // the time of the run's last point
  for (std::size_t b = 0; b < c.starts.size(); ++b) {
    const bool has = b < s.values.size() && s.values[b] && !c.gap[b];
    const bool pass_over = !has && !c.gap[b] && b < c.no_snapshot.size() && c.no_snapshot[b];
    const std::int64_t at = c.starts[b] + c.bucket_ms / 2;
    if ((!has && !pass_over) || c.reboot[b] || (has && !run.empty() && gap_overlaps(c, previous, at))) {
      if (!run.empty()) {
        out.push_back(std::move(run));
        run.clear();
      }
    }
    if (has) {
      run.emplace_back(f.x(at), f.y(*s.values[b]));
      previous = at;
    }
  }
  if (!run.empty()) {
    out.push_back(std::move(run));
  }
  return out;
}

void draw_marks(std::string& out, const Chart& c, const Frame& f, model::Zone zone) {
  for (const auto& [from, to] : c.gaps) {
    const double x0 = f.x(std::max(from, f.x0));
    const double x1 = f.x(std::min(to, f.x1));
    if (x1 <= x0) {
      continue;
    }
    out += fmt::format(
        R"x(<rect class="gap" x="{}" y="{}" width="{}" height="{}"><title>no snapshot from {} to {}</title></rect>)x",
        number_attr(x0), number_attr(f.top), number_attr(std::max(x1 - x0, 1.0)), number_attr(f.bottom - f.top),
        xml_text(model::format_human(from, zone)), xml_text(model::format_human(to, zone)));
    if (x1 - x0 > 70) {
      out += fmt::format(R"x(<text class="mark" x="{}" y="{}" text-anchor="middle">no snapshots</text>)x",
                         number_attr((x0 + x1) / 2), number_attr(f.top + 14));
    }
  }
  for (std::size_t b = 0; b < c.starts.size(); ++b) {
    if (c.reboot[b]) {
      const double x = f.x(c.starts[b]);
      out += fmt::format(R"x(<line class="reboot" x1="{0}" y1="{1}" x2="{0}" y2="{2}"/>)x", number_attr(x),
                         number_attr(f.top), number_attr(f.bottom));
      out += fmt::format(R"x(<text class="mark" x="{}" y="{}">reboot</text>)x", number_attr(x + 3),
                         number_attr(f.top + 26));
    }
  }
}

void draw_axes(std::string& out, const Chart& c, const Frame& f, double step, model::Zone zone) {
  for (double v = 0; v <= f.y_max + step / 2; v += step) {
    out += fmt::format(R"x(<line class="grid" x1="{0}" y1="{2}" x2="{1}" y2="{2}"/>)x", number_attr(k_left),
                       number_attr(k_right), number_attr(f.y(v)));
    out += fmt::format(R"x(<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>)x", number_attr(k_left - 6),
                       number_attr(f.y(v) + 4), tick_text(v, step));
  }
  std::int64_t tick_step = 0;
  const auto ticks = time_ticks(f.x0, f.x1, zone, tick_step);
  std::string previous_day;
  for (const auto t : ticks) {
    const double x = f.x(t);
    out += fmt::format(R"x(<line class="tickmark" x1="{0}" y1="{1}" x2="{0}" y2="{2}"/>)x", number_attr(x),
                       number_attr(f.bottom), number_attr(f.bottom + 4));
    const std::string day = strftime_at(t, zone, "%Y-%m-%d");
    const std::string time = tick_step >= 86'400'000 ? strftime_at(t, zone, "%m-%d")
                             : tick_step < 60'000    ? strftime_at(t, zone, "%H:%M:%S")
                                                     : strftime_at(t, zone, "%H:%M");
    out += fmt::format(R"x(<text class="tick" x="{}" y="{}" text-anchor="middle">{})x", number_attr(x),
                       number_attr(f.bottom + 16), time);
    if (day != previous_day && tick_step < 86'400'000) {
      out += fmt::format(R"x(<tspan x="{}" dy="13">{}</tspan>)x", number_attr(x), day);
    }
    out += "</text>";
    previous_day = day;
  }
  out += fmt::format(R"x(<line class="axis" x1="{0}" y1="{1}" x2="{0}" y2="{2}"/>)x", number_attr(k_left),
                     number_attr(f.top), number_attr(f.bottom));
  out += fmt::format(R"x(<line class="axis" x1="{0}" y1="{2}" x2="{1}" y2="{2}"/>)x", number_attr(k_left),
                     number_attr(k_right), number_attr(f.bottom));
  out += fmt::format(R"x(<text class="axis-label y-label" x="14" y="{0}" transform="rotate(-90 14 {0})" )x"
                     R"x(text-anchor="middle">{1}</text>)x",
                     number_attr((f.top + f.bottom) / 2), xml_text(c.y_unit));
  out += fmt::format(R"x(<text class="axis-label x-label" x="{}" y="{}" text-anchor="middle">{}</text>)x",
                     number_attr((k_left + k_right) / 2), number_attr(f.bottom + 46),
                     xml_text(time_axis_label(f.x0, f.x1, zone)));
}

// The legend's rows under the axes: each item a short line in the series' colour and its name.
double draw_legend(std::string& out, const Chart& c, double top) {
  double x = k_left;
  double y = top;
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const auto& name = c.series[i].name;
    const double width = 36 + k_char * static_cast<double>(render::printable(name).size());
    if (x + width > k_width && x > k_left) {
      x = k_left;
      y += k_legend_row;
    }
    const auto& colour = palette()[i % palette().size()];
    out += fmt::format(R"x(<g class="legend-item"><line x1="{0}" y1="{2}" x2="{1}" y2="{2}" stroke="{3}"{4}/>)x",
                       number_attr(x), number_attr(x + 20), number_attr(y - 4), colour,
                       i >= palette().size() ? R"x( stroke-dasharray="6 3")x" : "");
    out += fmt::format(R"x(<text x="{}" y="{}">{}</text></g>)x", number_attr(x + 24), number_attr(y), xml_text(name));
    x += width;
  }
  return c.series.empty() ? top - k_legend_row : y;
}

const char* k_style =
    "text{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;font-size:11px;fill:#222}"
    ".title{font-size:15px;font-weight:600}.subtitle,.note{fill:#444}.tick{fill:#333}.mark{fill:#555;font-size:10px}"
    ".axis{stroke:#333;stroke-width:1}.grid{stroke:#ddd;stroke-width:1}.tickmark{stroke:#333}"
    ".gap{fill:#ececec}.reboot{stroke:#555;stroke-width:1.5;stroke-dasharray:4 3}"
    ".series path{fill:none;stroke-width:2;stroke-linejoin:round}.legend-item line{stroke-width:2.5}"
    ".empty{fill:#555;font-size:13px}";

}  // namespace

bool gap_overlaps(const Chart& c, std::int64_t from_ms, std::int64_t to_ms) {
  return std::any_of(c.gaps.begin(), c.gaps.end(),
                     [&](const auto& g) { return g.first < to_ms && g.second > from_ms; });
}

const std::vector<std::string>& palette() {
  // Okabe and Ito's colours, darkest first; their yellow is left out, being too light on white.
  static const std::vector<std::string> k_colours = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                                     "#E69F00", "#56B4E9", "#000000"};
  return k_colours;
}

std::string xml_text(const std::string& text) {
  std::string out;
  for (const char c : render::printable(text)) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string bucket_label(std::int64_t start_ms, std::int64_t bucket_ms, model::Zone zone) {
  return strftime_at(start_ms, zone, bucket_ms < 60'000 ? "%Y-%m-%d %H:%M:%S" : "%Y-%m-%d %H:%M");
}

std::string zone_label(std::int64_t from_ms, std::int64_t to_ms, model::Zone zone) {
  if (zone == model::Zone::utc) {
    return "UTC";
  }
  const auto zone_at = [](std::int64_t ms) {
    const std::string z = strftime_at(ms, model::Zone::local, "%z");  // +0100
    return fmt::format("{}, UTC{}:{}", strftime_at(ms, model::Zone::local, "%Z"), z.substr(0, 3), z.substr(3));
  };
  const auto first = zone_at(from_ms);
  const auto last = zone_at(to_ms);
  return first == last ? fmt::format("local time ({})", first) : fmt::format("local time ({} to {})", first, last);
}

std::string time_axis_label(std::int64_t from_ms, std::int64_t to_ms, model::Zone zone) {
  return zone == model::Zone::utc ? "time (UTC)" : zone_label(from_ms, to_ms, zone);
}

std::string svg(const Chart& c, model::Zone zone, bool standalone) {
  Frame f;
  f.top = standalone ? 58 : 18;
  f.bottom = f.top + k_plot_height;
  if (!c.starts.empty()) {
    f.x0 = c.starts.front();
    f.x1 = c.starts.back() + std::max<std::int64_t>(c.bucket_ms, 1);
  }
  double highest = 0;
  for (const auto& s : c.series) {
    for (const auto& v : s.values) {
      highest = std::max(highest, v.value_or(0));
    }
  }
  const auto [top_value, step] = nice_axis(highest);
  f.y_max = top_value;

  std::string body;
  if (standalone) {
    body +=
        fmt::format(R"x(<text class="title" x="{}" y="22">{}</text>)x", number_attr(k_left - 50), xml_text(c.title));
    body += fmt::format(R"x(<text class="subtitle" x="{}" y="40">{}</text>)x", number_attr(k_left - 50),
                        xml_text(c.value_is));
  }
  draw_marks(body, c, f, zone);
  draw_axes(body, c, f, step, zone);
  if (!c.empty.empty() || c.series.empty()) {
    body += fmt::format(R"x(<text class="empty" x="{}" y="{}" text-anchor="middle">{}</text>)x",
                        number_attr((k_left + k_right) / 2), number_attr((f.top + f.bottom) / 2),
                        xml_text(c.empty.empty() ? "nothing recorded" : c.empty));
  }
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const auto& colour = palette()[i % palette().size()];
    body += fmt::format(R"x(<g class="series" data-series="{}" stroke="{}" fill="{}"{}>)x", xml_text(c.series[i].name),
                        colour, colour, i >= palette().size() ? R"x( stroke-dasharray="6 3")x" : "");
    for (const auto& run : segments(c, c.series[i], f)) {
      if (run.size() == 1) {
        body += fmt::format(R"x(<circle cx="{}" cy="{}" r="2.5"/>)x", number_attr(run[0].first),
                            number_attr(run[0].second));
        continue;
      }
      std::string d;
      for (const auto& [x, y] : run) {
        d += fmt::format("{}{},{}", d.empty() ? "M" : " L", number_attr(x), number_attr(y));
      }
      body += fmt::format(R"x(<path d="{}"/>)x", d);
    }
    body += "</g>";
  }
  double bottom = draw_legend(body, c, f.bottom + 70);
  if (standalone) {
    for (const auto& note : c.notes) {
      bottom += 16;
      body += fmt::format(R"x(<text class="note" x="{}" y="{}">{}</text>)x", number_attr(k_left - 50),
                          number_attr(bottom), xml_text(note));
    }
  }
  const double height = bottom + 12;
  std::string out;
  if (standalone) {
    out += R"x(<?xml version="1.0" encoding="UTF-8"?>)x"
           "\n";
  }
  out += fmt::format(R"x(<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{}" viewBox="0 0 {} {}" )x"
                     R"x(width="{}" height="{}" role="img" aria-label="{}">)x",
                     xml_text(c.id), number_attr(k_width), number_attr(height), number_attr(k_width),
                     number_attr(height), xml_text(c.title));
  out += fmt::format("<title>{}</title>", xml_text(c.title));
  if (standalone) {
    out += fmt::format("<style>{}</style>", k_style);
  }
  out += fmt::format(R"x(<rect class="plot" data-plot="{}" x="{}" y="{}" width="{}" height="{}" fill="none"/>)x",
                     xml_text(c.id), number_attr(k_left), number_attr(f.top), number_attr(k_right - k_left),
                     number_attr(f.bottom - f.top));
  out += body;
  out += "</svg>";
  if (standalone) {
    out += "\n";
  }
  return out;
}

std::string chart_style() {
  return k_style;
}

}  // namespace sockhist::chart
