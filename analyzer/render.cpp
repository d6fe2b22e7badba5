#include "sockhist/render.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace sockhist::render {

namespace {

bool numeric(Kind kind) {
  return kind == Kind::integer || kind == Kind::real || kind == Kind::duration_ms;
}

std::string title_of(const Column& c) {
  if (!c.title.empty()) {
    return c.title;
  }
  std::string t = c.name;
  for (char& ch : t) {
    ch = ch == '_' ? ' ' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  }
  return t;
}

bool has_control(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"") == std::string::npos && !has_control(text)) {
    return text;
  }
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"') {
      out += '"';
    }
    out += c;
  }
  return out + '"';
}

// A real number for programs: no trailing zeros beyond what the value has, never exponent form
// for ordinary magnitudes.
std::string machine_real(double v) {
  std::string s = fmt::format("{:.6f}", v);
  while (s.size() > 1 && s.back() == '0') {
    s.pop_back();
  }
  if (!s.empty() && s.back() == '.') {
    s.pop_back();
  }
  return s == "-0" ? "0" : s;
}

nlohmann::ordered_json json_value(const Column& c, const Value& v) {
  if (std::holds_alternative<std::monostate>(v)) {
    return nullptr;
  }
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    if (c.kind == Kind::time_ms) {
      return model::format_iso_utc(*i);
    }
    if (c.kind == Kind::duration_ms) {
      return static_cast<double>(*i) / 1000.0;
    }
    return *i;
  }
  if (const auto* d = std::get_if<double>(&v)) {
    return *d;
  }
  return std::get<std::string>(v);
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto escape = [&](unsigned char byte) { out += fmt::format("\\x{:02x}", byte); };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\\') {
      out += "\\\\";
      ++i;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      escape(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A UTF-8 sequence: kept when well formed and not a C1 control (U+0080 to U+009F).
    const std::size_t length = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    bool valid = length != 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    }
    if (valid && length == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) {
      valid = false;  // C1: 8-bit CSI and friends
    }
    if (!valid) {
      escape(c);
      ++i;
      continue;
    }
    out.append(text.substr(i, length));
    i += length;
  }
  return out;
}

std::string cell_text(const Column& column, const Value& value, const Options& options) {
  if (std::holds_alternative<std::monostate>(value)) {
    return "-";
  }
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    switch (column.kind) {
      case Kind::time_ms:
        return model::format_human(*i, options.zone);
      case Kind::duration_ms:
        return model::format_duration(*i);
      default:
        return std::to_string(*i);
    }
  }
  if (const auto* d = std::get_if<double>(&value)) {
    return fmt::format("{:.{}f}", *d, column.precision);
  }
  return std::get<std::string>(value);
}

TextStream::TextStream(const std::vector<Column>& columns, const std::vector<std::vector<Value>>& sample,
                       const Options& options)
    : m_columns(columns), m_options(options) {
  for (std::size_t c = 0; c < m_columns.size(); ++c) {
    if (m_columns[c].in_table) {
      m_shown.push_back(c);
      m_width.push_back(title_of(m_columns[c]).size());
    }
  }
  for (const auto& row : sample) {
    const auto line = cells(row);
    for (std::size_t k = 0; k < line.size(); ++k) {
      m_width[k] = std::max(m_width[k], line[k].size());
    }
  }
}

std::vector<std::string> TextStream::cells(const std::vector<Value>& row) const {
  std::vector<std::string> line;
  line.reserve(m_shown.size());
  for (const auto c : m_shown) {
    line.push_back(printable(cell_text(m_columns[c], c < row.size() ? row[c] : Value{}, m_options)));
  }
  return line;
}

std::string TextStream::emit(const std::vector<std::string>& line) const {
  std::string text;
  for (std::size_t k = 0; k < line.size(); ++k) {
    const bool right = numeric(m_columns[m_shown[k]].kind);
    const bool last = k + 1 == line.size();
    const std::size_t pad = m_width[k] > line[k].size() ? m_width[k] - line[k].size() : 0;
    if (k > 0) {
      text += "  ";
    }
    if (right) {
      text += std::string(pad, ' ') + line[k];
    } else {
      text += last ? line[k] : line[k] + std::string(pad, ' ');
    }
  }
  return text + "\n";
}

std::string TextStream::header() const {
  std::vector<std::string> titles;
  for (const auto c : m_shown) {
    titles.push_back(title_of(m_columns[c]));
  }
  return emit(titles);
}

std::string TextStream::line(const std::vector<Value>& row) const {
  return emit(cells(row));
}

std::string to_text(const Table& table, const Options& options) {
  const TextStream stream(table.columns, table.rows, options);
  std::string out = stream.header();
  for (const auto& row : table.rows) {
    out += stream.line(row);
  }
  for (const auto& note : table.notes) {
    out += printable(note) + "\n";
  }
  return out;
}

std::string csv_header(const std::vector<Column>& columns) {
  std::string out;
  for (const auto& c : columns) {
    if (!c.in_machine) {
      continue;
    }
    out += (out.empty() ? "" : ",") + csv_field(c.name);
    if (c.kind == Kind::time_ms) {
      out += "," + csv_field(c.name + "_epoch");
    }
  }
  return out + "\r\n";
}

std::string csv_row(const std::vector<Column>& columns, const std::vector<Value>& row) {
  std::string out;
  bool first = true;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    const auto& col = columns[c];
    if (!col.in_machine) {
      continue;
    }
    const Value& v = c < row.size() ? row[c] : Value{};
    std::string text;
    std::string epoch;
    if (const auto* i = std::get_if<std::int64_t>(&v)) {
      if (col.kind == Kind::time_ms) {
        text = model::format_iso_utc(*i);
        epoch = machine_real(static_cast<double>(*i) / 1000.0);
      } else if (col.kind == Kind::duration_ms) {
        text = machine_real(static_cast<double>(*i) / 1000.0);
      } else {
        text = std::to_string(*i);
      }
    } else if (const auto* d = std::get_if<double>(&v)) {
      text = machine_real(*d);
    } else if (const auto* s = std::get_if<std::string>(&v)) {
      text = *s;
    }
    out += (first ? "" : ",") + csv_field(text);
    first = false;
    if (col.kind == Kind::time_ms) {
      out += "," + epoch;
    }
  }
  return out + "\r\n";
}

std::string to_csv(const Table& table) {
  std::string out = csv_header(table.columns);
  for (const auto& row : table.rows) {
    out += csv_row(table.columns, row);
  }
  return out;
}

nlohmann::ordered_json json_row(const std::vector<Column>& columns, const std::vector<Value>& row) {
  nlohmann::ordered_json obj = nlohmann::ordered_json::object();
  for (std::size_t c = 0; c < columns.size(); ++c) {
    const auto& col = columns[c];
    if (!col.in_machine) {
      continue;
    }
    const Value& v = c < row.size() ? row[c] : Value{};
    obj[col.name] = json_value(col, v);
    if (col.kind == Kind::time_ms) {
      const auto* i = std::get_if<std::int64_t>(&v);
      obj[col.name + "_epoch"] =
          i ? nlohmann::ordered_json(static_cast<double>(*i) / 1000.0) : nlohmann::ordered_json(nullptr);
    }
  }
  return obj;
}

nlohmann::ordered_json to_json_rows(const Table& table) {
  auto rows = nlohmann::ordered_json::array();
  for (const auto& row : table.rows) {
    rows.push_back(json_row(table.columns, row));
  }
  return rows;
}

nlohmann::ordered_json to_json_columns(const Table& table) {
  auto cols = nlohmann::ordered_json::array();
  for (const auto& c : table.columns) {
    if (!c.in_machine) {
      continue;
    }
    nlohmann::ordered_json col = {{"name", c.name}};
    if (c.kind == Kind::time_ms) {
      col["unit"] = "ISO-8601 UTC";
    } else if (c.kind == Kind::duration_ms) {
      col["unit"] = "s";
    } else if (!c.unit.empty()) {
      col["unit"] = c.unit;
    }
    cols.push_back(std::move(col));
  }
  return cols;
}

// Strings are kept exact (JSON escapes control characters); bytes that are not UTF-8, which JSON
// cannot carry, become U+FFFD.
std::string dump(const nlohmann::ordered_json& value) {
  return value.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string JsonStream::open(nlohmann::ordered_json document) {
  document.erase("rows");
  std::string text = dump(document);
  text.resize(text.size() - 2);  // "\n}"
  return text + (document.empty() ? "" : ",") + "\n  \"rows\": [";
}

std::string JsonStream::row(const nlohmann::ordered_json& row) {
  std::string text = m_rows++ == 0 ? "\n    " : ",\n    ";
  for (const char c : dump(row)) {
    text += c;
    if (c == '\n') {
      text += "    ";
    }
  }
  return text;
}

std::string JsonStream::close() const {
  return m_rows == 0 ? "]\n}\n" : "\n  ]\n}\n";
}

std::string render(const Table& table, const Options& options, nlohmann::ordered_json document,
                   const std::vector<std::string>& heading) {
  switch (options.format) {
    case Format::json: {
      if (document.is_null()) {
        document = nlohmann::ordered_json::object();
      }
      if (!document.contains("columns")) {
        document["columns"] = to_json_columns(table);
      }
      if (!document.contains("rows")) {
        document["rows"] = to_json_rows(table);
      }
      return dump(document) + "\n";
    }
    case Format::csv:
      return to_csv(table);
    case Format::table:
      break;
  }
  std::string out;
  for (const auto& line : heading) {
    out += printable(line) + "\n";
  }
  return out + to_text(table, options);
}

}  // namespace sockhist::render
