// Turning computed values into text: aligned tables for people, RFC 4180 CSV and JSON for programs.
// Renderers return strings; the analyzer's main writes them to stdout, except for `sql`, which
// streams its rows through TextStream, csv_row and JsonStream as they come.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "sockhist/timeutil.hpp"

namespace sockhist::render {

enum class Format { table, json, csv };

// A cell: nothing, an integer, a real number or text.
using Value = std::variant<std::monostate, std::int64_t, double, std::string>;

// How a column's values are shown. time_ms cells hold epoch milliseconds: a table shows them as
// local (or UTC) time, CSV and JSON as ISO-8601 UTC plus a `<name>_epoch` column of epoch
// seconds. duration_ms cells hold milliseconds: "12m05s" in a table, seconds in CSV and JSON.
enum class Kind { text, integer, real, time_ms, duration_ms };

struct Column {
  Column(std::string name_, std::string title_ = {}, Kind kind_ = Kind::text, std::string unit_ = {},
         int precision_ = 2, bool in_table_ = true, bool in_machine_ = true)
      : name(std::move(name_)),
        title(std::move(title_)),
        kind(kind_),
        unit(std::move(unit_)),
        precision(precision_),
        in_table(in_table_),
        in_machine(in_machine_) {}
  Column(const char* name_) : Column(std::string(name_)) {}

  std::string name;   // CSV and JSON key, lower_snake_case
  std::string title;  // table header; empty: the name in upper case
  Kind kind = Kind::text;
  std::string unit;        // for JSON's column list ("sockets", "per_s", "bytes", "s")
  int precision = 2;       // digits after the point of a real in a table
  bool in_table = true;    // some columns are only for programs
  bool in_machine = true;  // and some only for people
};

struct Table {
  std::vector<Column> columns;
  std::vector<std::vector<Value>> rows;
  std::vector<std::string> notes;  // lines printed under a people's table (legend, footnotes)
};

struct Options {
  Format format = Format::table;
  model::Zone zone = model::Zone::local;
};

// Text for a terminal: control characters (C0, DEL, and C1 whether UTF-8-encoded or bare), bytes
// that are not UTF-8 and the backslash written as \xHH (\\ for a backslash), so that recorded data
// (a UNIX path, a program or host name) can neither move the cursor nor forge a line, and every
// byte can still be told from the printed text.
std::string printable(std::string_view text);

// The table aligned in columns (numbers right, text left) with a header row, then its notes; every
// cell, note and heading line through printable().
std::string to_text(const Table& table, const Options& options);
// RFC 4180: a header row, CRLF line ends, fields quoted when they hold a comma, quote or any
// control character (the bytes themselves kept exact).
std::string to_csv(const Table& table);
// The rows as JSON objects keyed by column name (times as ISO-8601 UTC, with `<name>_epoch`).
nlohmann::ordered_json to_json_rows(const Table& table);
// Column names and units, for a JSON document's metadata.
nlohmann::ordered_json to_json_columns(const Table& table);

// The whole output of a command: for json, `document` (with "rows" set from the table where the
// document has none); for csv, the table; for table, `heading` lines then the table.
std::string render(const Table& table, const Options& options, nlohmann::ordered_json document = {},
                   const std::vector<std::string>& heading = {});

// A table printed as its rows arrive, for output too large to hold: the column widths are those of
// the rows given as `sample` (and the titles); a later, wider cell pushes its own line out of
// alignment. to_text is a TextStream over all its rows.
class TextStream {
 public:
  TextStream(const std::vector<Column>& columns, const std::vector<std::vector<Value>>& sample, const Options& options);
  std::string header() const;
  std::string line(const std::vector<Value>& row) const;

 private:
  std::vector<std::string> cells(const std::vector<Value>& row) const;
  std::string emit(const std::vector<std::string>& line) const;

  std::vector<Column> m_columns;
  Options m_options;
  std::vector<std::size_t> m_shown;
  std::vector<std::size_t> m_width;
};

// CSV's header line and one row (to_csv is the one, then each of the other).
std::string csv_header(const std::vector<Column>& columns);
std::string csv_row(const std::vector<Column>& columns, const std::vector<Value>& row);

// One row as a JSON object keyed by column name.
nlohmann::ordered_json json_row(const std::vector<Column>& columns, const std::vector<Value>& row);

// A JSON value as every command prints it: indented by 2, bytes that are not UTF-8 as U+FFFD.
std::string dump(const nlohmann::ordered_json& value);

// A JSON document whose "rows" array is written as its rows arrive: open() is the document up to
// the array (its "rows" member, if any, dropped), row() one element, close() the end; together byte
// for byte what render() writes for the same document and rows.
class JsonStream {
 public:
  static std::string open(nlohmann::ordered_json document);
  std::string row(const nlohmann::ordered_json& row);
  std::string close() const;

 private:
  std::size_t m_rows = 0;
};

// Text of a value as a table shows it.
std::string cell_text(const Column& column, const Value& value, const Options& options);

}  // namespace sockhist::render
