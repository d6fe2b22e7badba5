// The report's page: one HTML document that is also well-formed XML, holding its CSS and every
// chart inline and fetching nothing, readable without scripts, on a narrow screen (the plots and
// tables scroll inside their boxes, never the page) and in print (every table in full).
#include <fmt/format.h>

#include "sockhist/chart.hpp"
#include "sockhist/timeutil.hpp"

namespace sockhist::chart {

namespace {

const char* k_page_style =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#222;"
    "background:#fff;margin:0 auto;padding:0 12px 24px;max-width:980px;line-height:1.4}"
    "h1{font-size:1.5em;margin:16px 0 4px}h2{font-size:1.2em;margin:28px 0 4px;border-bottom:1px solid #ccc}"
    "h3{font-size:1em;margin:14px 0 4px}p{margin:4px 0}"
    ".generated,.value-is,.notes,footer{color:#555;font-size:.9em}"
    "table{border-collapse:collapse;font-size:.85em}th,td{padding:2px 8px;text-align:right;white-space:nowrap}"
    "th{background:#f3f3f3;position:sticky;top:0}td:first-child,th:first-child{text-align:left}"
    "tbody tr:nth-child(even){background:#fafafa}.facts td,.facts th{text-align:left;white-space:normal}"
    ".facts th{background:none;position:static;font-weight:600}.facts td,li,p{overflow-wrap:anywhere}"
    ".finding{color:#a33a00;font-weight:600}.ok{color:#333}"
    ".plot{overflow-x:auto}.plot svg{width:100%;min-width:480px;height:auto;display:block}"
    ".numbers{overflow:auto;max-height:18em;border:1px solid #ddd;margin-top:6px}"
    ".extra{overflow-x:auto;margin-top:6px}caption{text-align:left;font-weight:600;padding:2px 8px;"
    "caption-side:top}.marker{color:#555}ul{margin:4px 0;padding-left:20px}"
    "@media print{body{max-width:none}.numbers{max-height:none;overflow:visible;border:none}"
    ".plot{overflow:visible}.plot svg{min-width:0}section.chart{break-inside:avoid-page}"
    "th{position:static}a{color:inherit;text-decoration:none}nav{display:none}}";

std::string cell(const std::optional<double>& v, bool integers) {
  if (!v) {
    return {};
  }
  return integers ? fmt::format("{:.0f}", *v) : fmt::format("{:.3f}", *v);
}

void numbers_table(std::string& out, const Chart& c, model::Zone zone) {
  out += fmt::format(R"(<div class="numbers"><table class="numbers-table" data-bucket-ms="{}">)", c.bucket_ms);
  out += fmt::format("<caption>The numbers: {}, {} per bucket of {}</caption>", xml_text(c.y_unit),
                     xml_text(c.value_is), model::format_duration(c.bucket_ms));
  out += fmt::format("<thead><tr><th>{}</th>",
                     xml_text(c.starts.empty() ? "time" : time_axis_label(c.starts.front(), c.starts.back(), zone)));
  for (const auto& s : c.series) {
    out += fmt::format("<th>{}</th>", xml_text(s.name));
  }
  out += "<th>mark</th></tr></thead><tbody>";
  for (std::size_t b = 0; b < c.starts.size(); ++b) {
    out += fmt::format(R"(<tr data-start="{}"><td>{}</td>)", model::format_iso_utc(c.starts[b]),
                       xml_text(bucket_label(c.starts[b], c.bucket_ms, zone)));
    for (const auto& s : c.series) {
      out += fmt::format("<td>{}</td>", cell(b < s.values.size() ? s.values[b] : std::nullopt, c.integers));
    }
    const bool part_gap = gap_overlaps(c, c.starts[b], c.starts[b] + c.bucket_ms);
    const char* mark = c.gap[b]      ? "no snapshot"
                       : c.reboot[b] ? (part_gap ? "reboot; part of a gap" : "reboot")
                       : part_gap    ? "part of a gap"
                                     : "";
    out += fmt::format(R"(<td class="marker">{}</td></tr>)", mark);
  }
  out += "</tbody></table></div>";
}

void extra_table(std::string& out, const Chart& c) {
  if (c.extra_columns.empty()) {
    return;
  }
  out += fmt::format(R"(<div class="extra"><table class="extra-table"><caption>{}</caption><thead><tr>)",
                     xml_text(c.extra_caption));
  for (const auto& h : c.extra_columns) {
    out += fmt::format("<th>{}</th>", xml_text(h));
  }
  out += "</tr></thead><tbody>";
  for (const auto& row : c.extra_rows) {
    out += "<tr>";
    for (const auto& v : row) {
      out += fmt::format("<td>{}</td>", xml_text(v));
    }
    out += "</tr>";
  }
  out += "</tbody></table></div>";
}

}  // namespace

std::string html(const Page& page, model::Zone zone) {
  std::string out = "<!DOCTYPE html>\n";
  out += R"(<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head><meta charset="utf-8"/>)";
  out += R"(<meta name="viewport" content="width=device-width, initial-scale=1"/>)";
  out += fmt::format("<title>{}</title><style>{}{}</style></head>\n<body>", xml_text(page.title), k_page_style,
                     chart_style());
  out += fmt::format(R"(<header><h1>{}</h1><p class="generated">{}</p></header>)", xml_text(page.heading),
                     xml_text(page.title));
  out += R"(<section id="summary"><h2>Summary</h2><table class="facts"><tbody>)";
  for (const auto& f : page.facts) {
    out += fmt::format("<tr><th>{}</th><td>{}</td></tr>", xml_text(f.name), xml_text(f.value));
  }
  out += "</tbody></table>";
  for (const auto& s : page.sections) {
    out += fmt::format(R"(<h3>{}</h3><ul class="section">)", xml_text(s.heading));
    for (std::size_t i = 0; i < s.lines.size(); ++i) {
      const bool alert = i < s.alert.size() && s.alert[i];
      out += fmt::format(R"(<li class="{}">{}</li>)", alert ? "finding" : "ok", xml_text(s.lines[i]));
    }
    out += "</ul>";
  }
  out += R"(<nav><h3>Charts</h3><ol>)";
  for (const auto& c : page.charts) {
    out += fmt::format(R"(<li><a href="#chart-{}">{}</a></li>)", xml_text(c.id), xml_text(c.title));
  }
  out += "</ol></nav></section>\n";
  for (const auto& c : page.charts) {
    out += fmt::format(R"(<section class="chart" id="chart-{}"><h2>{}</h2><p class="answers">{}</p>)", xml_text(c.id),
                       xml_text(c.title), xml_text(c.answers));
    out += fmt::format(R"(<p class="value-is">{}; buckets of {}</p>)", xml_text(c.value_is),
                       model::format_duration(c.bucket_ms));
    out += R"(<div class="plot">)" + svg(c, zone, false) + "</div>";
    if (!c.notes.empty()) {
      out += R"(<ul class="notes">)";
      for (const auto& n : c.notes) {
        out += fmt::format("<li>{}</li>", xml_text(n));
      }
      out += "</ul>";
    }
    extra_table(out, c);
    numbers_table(out, c, zone);
    out += "</section>\n";
  }
  out += fmt::format("<footer><p>{}</p></footer></body></html>\n", xml_text(page.footer));
  return out;
}

}  // namespace sockhist::chart
