// Pictures of a history: line charts over time as SVG, and the self-contained HTML page of
// `sockhist report` (inline SVG and CSS, nothing fetched, readable without scripts, in print and on
// a narrow screen). Values come in computed (the analyzer builds them from the queries); this
// part only draws them, with gaps and reboots marked and never bridged by a line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sockhist/timeutil.hpp"

namespace sockhist::chart {

// One line: a value per bucket of its chart (none: no data there, and the line breaks).
struct Series {
  std::string name;  // legend and table heading
  std::vector<std::optional<double>> values;
};

// A chart over time: one point per bucket, drawn at the bucket's middle.
struct Chart {
  std::string id;        // the name --chart takes and the page's anchor: "states", "close-wait"
  std::string title;     // "Sockets per state"
  std::string answers;   // the question it answers, one sentence
  std::string y_unit;    // "sockets", "per second", "% of the ephemeral ports"
  std::string value_is;  // how a bucket's value was made: "highest count in the bucket"
  std::int64_t bucket_ms = 0;
  std::vector<std::int64_t> starts;  // each bucket's start, epoch ms, ascending
  // Stretches without a snapshot because the collector did not run: [from, to] between the two
  // snapshots around them. Each is shaded where it lies, and no line joins points across one.
  std::vector<std::pair<std::int64_t, std::int64_t>> gaps;
  std::vector<bool> gap;     // per bucket: wholly inside such a stretch (its row says so)
  std::vector<bool> reboot;  // per bucket: the host rebooted in it or just before it
  // Per bucket: no snapshot fell in it, though the collector kept its pace (snapshots drift across
  // bucket edges); the lines pass over it to the next value instead of breaking.
  std::vector<bool> no_snapshot;
  std::vector<Series> series;
  bool integers = true;            // values are counts: the table prints them without decimals
  std::vector<std::string> notes;  // under the chart: estimates and their bounds, what was not recorded
  std::string empty;               // set: nothing to draw, and why (the chart says so instead)
  // A table of its own beside the numbers (CLOSE_WAIT owners and their growth): headings, rows.
  std::vector<std::string> extra_columns;
  std::vector<std::vector<std::string>> extra_rows;
  std::string extra_caption;
};

// Whether a gap of the chart lies, even in part, between two times: no line may join points at them,
// and a bucket it covers in part says so.
bool gap_overlaps(const Chart& chart, std::int64_t from_ms, std::int64_t to_ms);

// The colour-blind-safe palette the lines take in turn (Okabe and Ito), with a dash pattern added
// from the eighth series on.
const std::vector<std::string>& palette();

// "UTC", or "local time (CET, UTC+01:00)" (both zones where the range crosses a change): the zone
// a range's times are shown in.
std::string zone_label(std::int64_t from_ms, std::int64_t to_ms, model::Zone zone);
// "time (UTC)" or "local time (CET, UTC+01:00)": the x axis' label for the chart's range.
std::string time_axis_label(std::int64_t from_ms, std::int64_t to_ms, model::Zone zone);

// One chart as SVG. `standalone`: a document of its own (XML declaration, its title drawn inside,
// its style inline), for --format svg; otherwise an element for the page, which titles it.
std::string svg(const Chart& chart, model::Zone zone, bool standalone);
// The charts' CSS, which a standalone SVG carries inline and the page once for all of them.
std::string chart_style();

// The page's summary: facts as name/value rows, and lists under headings.
struct Fact {
  std::string name, value;
};
struct Section {
  std::string heading;
  std::vector<std::string> lines;
  std::vector<bool> alert;  // per line: a finding (drawn as such)
};
struct Page {
  std::string title;    // "sockhist report: web1, 2026-11-24 00:55 to 00:57 UTC"
  std::string heading;  // "web1"
  std::vector<Fact> facts;
  std::vector<Section> sections;
  std::vector<Chart> charts;
  std::string footer;  // how it was made
};

// The whole report as one HTML document.
std::string html(const Page& page, model::Zone zone);

// Text for XML and HTML: control characters and bytes that are not UTF-8 escaped as in tables
// (render::printable), then the markup characters as entities.
std::string xml_text(const std::string& text);

// A bucket's start as the table and axis print it: "2026-11-24 00:56:00" (seconds when the buckets
// are shorter than a minute).
std::string bucket_label(std::int64_t start_ms, std::int64_t bucket_ms, model::Zone zone);

}  // namespace sockhist::chart
