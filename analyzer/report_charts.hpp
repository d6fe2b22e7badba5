// The report's charts, one function each (report_charts.cpp), over a frame report_build.cpp made.
#pragma once

#include <string>
#include <vector>

#include <SQLiteCpp/Database.h>

#include "report_build.hpp"

namespace sockhist::analyzer {

// "the host's own namespace", "namespace blue (4026532177)".
std::string namespace_label(const query::Scope& scope);

chart::Chart states_chart(SQLite::Database& db, const ReportFrame& frame, const std::string& id);
// The rates of those of `wanted` ("Tcp.RetransSegs") the database recorded, in one pass.
query::Trend counter_trend(SQLite::Database& db, const ReportFrame& frame, const std::vector<std::string>& wanted);
// A chart of the `wanted` counters' rates from counter_trend; one never recorded is named in a note.
chart::Chart counters_chart(const ReportFrame& frame, const query::Trend& rates, const std::string& id,
                            const std::string& title, const std::string& answers,
                            const std::vector<std::string>& wanted);
chart::Chart close_wait_chart(SQLite::Database& db, const ReportFrame& frame);
// The TIME_WAIT chart without the kernel's overflow counter, which add_time_wait_overflows adds from
// counter_trend (the chart is made on a connection and thread of its own).
chart::Chart time_wait_chart(SQLite::Database& db, const ReportFrame& frame);
void add_time_wait_overflows(chart::Chart& time_wait, const query::Trend& rates);
chart::Chart ports_chart(SQLite::Database& db, const ReportFrame& frame);
chart::Chart connections_chart(SQLite::Database& db, const ReportFrame& frame);

}  // namespace sockhist::analyzer
