// ClickHouse's HTTP interface through libcurl: one statement per request, the database and the
// settings in the query string, the credentials by HTTP basic authentication, inserts as a
// TabSeparated body sent as one block.
#include <curl/curl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "sockhist/central.hpp"
#include "sockhist/error.hpp"

namespace sockhist::central {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw Error(Exit::failure, "libcurl could not be initialised");
    }
  });
}

std::string escape_url(CURL* curl, std::string_view text) {
  char* escaped = curl_easy_escape(curl, text.data(), static_cast<int>(text.size()));
  std::string out = escaped ? escaped : "";
  curl_free(escaped);
  return out;
}

// The server's explanation, first line: "Code: 60, e.displayText() = DB::Exception: Table ... doesn't exist".
std::string first_line(const std::string& text) {
  auto line = text.substr(0, text.find('\n'));
  if (line.size() > 400) {
    line = line.substr(0, 400) + "...";
  }
  return line;
}

std::string unescape(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] != '\\' || i + 1 == field.size()) {
      out += field[i];
      continue;
    }
    switch (const char c = field[++i]) {
      case 't':
        out += '\t';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case '0':
        out += '\0';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Fault injection for the tests (tests/README.md, ship_test): SOCKHIST_TEST_SHIP_DIE_AT=N makes
// the process exit with status 86 instead of sending its N-th INSERT, and N.5 once it has sent
// the first half of that INSERT's rows, cut at a row, leaving the connection to close unfinished.
struct Fault {
  std::int64_t at = 0;
  bool half = false;
  std::int64_t inserts = 0;
};

Fault fault_from_environment() {
  Fault f;
  if (const char* text = std::getenv("SOCKHIST_TEST_SHIP_DIE_AT"); text && *text) {
    const std::string t = text;
    f.at = std::stoll(t);
    f.half = t.find(".5") != std::string::npos;
  }
  return f;
}

// Hands curl the body up to `stop` and then ends the process, as a kill would.
struct HalfBody {
  const std::string* body;
  std::size_t sent = 0, stop = 0;
  static std::size_t read(char* buffer, std::size_t size, std::size_t count, void* self) {
    auto& h = *static_cast<HalfBody*>(self);
    if (h.sent >= h.stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // what was handed over goes out
      std::_Exit(86);
    }
    const auto n = std::min(size * count, h.stop - h.sent);
    std::memcpy(buffer, h.body->data() + h.sent, n);
    h.sent += n;
    return n;
  }
};

}  // namespace

void append_field(std::string& out, std::string_view text) {
  for (const char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\0':
        out += "\\0";
        break;
      default:
        out += c;
    }
  }
}

Endpoint endpoint_of(const std::string& url, const std::string& database, const std::optional<std::string>& credentials,
                     const char* url_option) {
  Endpoint e;
  const auto scheme_end = url.find("://");
  const auto scheme = scheme_end == std::string::npos ? std::string() : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    throw Error(Exit::usage, fmt::format("{} {}: give http://HOST:PORT or https://HOST:PORT (ClickHouse's HTTP "
                                         "interface, 8123 or 8443 by default)",
                                         url_option, url));
  }
  const auto authority = url.substr(scheme_end + 3, url.find('/', scheme_end + 3) - scheme_end - 3);
  if (authority.find('@') != std::string::npos) {
    throw Error(Exit::usage, fmt::format("{}: credentials do not belong on the command line (others can read it); "
                                         "use --credentials FILE or SOCKHIST_CLICKHOUSE_USER and "
                                         "SOCKHIST_CLICKHOUSE_PASSWORD",
                                         url_option));
  }
  if (url.find('?') != std::string::npos || url.find('#') != std::string::npos) {
    throw Error(Exit::usage,
                fmt::format("{} {}: no query or fragment: --database names the database", url_option, url));
  }
  if (authority.empty()) {
    throw Error(Exit::usage, fmt::format("{} {}: no host", url_option, url));
  }
  if (database.empty() || database.find_first_not_of(
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != std::string::npos) {
    throw Error(Exit::usage, fmt::format("--database {}: letters, digits and _ only", database));
  }
  e.url = url;
  while (!e.url.empty() && e.url.back() == '/') {
    e.url.pop_back();
  }
  e.database = database;
  if (credentials) {
    struct stat st {};
    if (::stat(credentials->c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      throw Error(Exit::usage, fmt::format("--credentials {}: not a readable file", *credentials));
    }
    if ((st.st_mode & 0077) != 0) {
      throw Error(Exit::usage, fmt::format("--credentials {}: mode {:04o} lets others read it; chmod 600 it",
                                           *credentials, st.st_mode & 07777));
    }
    std::ifstream in(*credentials);
    std::string line;
    if (!in || !std::getline(in, line) || line.find(':') == std::string::npos || line.front() == ':') {
      throw Error(Exit::usage, fmt::format("--credentials {}:1: give user:password on the first line", *credentials));
    }
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    e.user = line.substr(0, line.find(':'));
    e.password = line.substr(line.find(':') + 1);
  } else {
    if (const char* user = std::getenv("SOCKHIST_CLICKHOUSE_USER"); user && *user) {
      e.user = user;
    }
    if (const char* password = std::getenv("SOCKHIST_CLICKHOUSE_PASSWORD"); password) {
      e.password = password;
      if (!e.user) {
        e.user = "default";
      }
    }
  }
  return e;
}

struct Server::Impl {
  Endpoint endpoint;
  CURL* curl = nullptr;
  std::uint64_t sent = 0;
  Fault fault = fault_from_environment();
  HalfBody* half = nullptr;  // set for the one request the fault cuts
  std::string insert_tag;    // the query_id prefix of the inserts (set_insert_tag)
  std::uint64_t inserts = 0;

  ~Impl() {
    if (curl) {
      curl_easy_cleanup(curl);
    }
  }

  static std::size_t collect(char* data, std::size_t size, std::size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
  }

  // POSTs `body` to the endpoint with `params` ("query=...&..."), returning the reply.
  std::string post(const std::string& params, const std::string& body, std::string_view what) {
    curl_easy_reset(curl);
    const auto url = endpoint.url + "/?" + params;
    std::string reply;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    if (half) {
      curl_easy_setopt(curl, CURLOPT_READFUNCTION, &HalfBody::read);
      curl_easy_setopt(curl, CURLOPT_READDATA, half);
    } else {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    }
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Impl::collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(endpoint.timeout.count()));
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (endpoint.user) {
      curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
      curl_easy_setopt(curl, CURLOPT_USERNAME, endpoint.user->c_str());
      curl_easy_setopt(curl, CURLOPT_PASSWORD, endpoint.password.value_or("").c_str());
    }
    if (endpoint.cacert) {
      curl_easy_setopt(curl, CURLOPT_CAINFO, endpoint.cacert->c_str());
    }
    const auto code = curl_easy_perform(curl);
    if (code != CURLE_OK) {
      throw Error(Exit::failure, fmt::format("{}: {} ({})", endpoint.url, curl_easy_strerror(code), what));
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    sent += body.size();
    if (status != 200) {
      throw Error(Exit::failure, fmt::format("{}: HTTP {} ({}): {}", endpoint.url, status, what, first_line(reply)));
    }
    return reply;
  }
};

Server::Server(Endpoint endpoint) : impl_(std::make_unique<Impl>()) {
  global_init();
  impl_->endpoint = std::move(endpoint);
  impl_->curl = curl_easy_init();
  if (!impl_->curl) {
    throw Error(Exit::failure, "libcurl could not make a handle");
  }
}

Server::~Server() = default;

const Endpoint& Server::endpoint() const {
  return impl_->endpoint;
}

std::uint64_t Server::bytes_sent() const {
  return impl_->sent;
}

std::string Server::run(std::string_view sql, bool in_database) {
  std::string params;
  if (in_database) {
    params = "database=" + escape_url(impl_->curl, impl_->endpoint.database);
  }
  const auto what = sql.substr(0, std::min<std::size_t>(sql.size(), 60));
  return impl_->post(params, std::string(sql), fmt::format("{}{}", what, what.size() < sql.size() ? "..." : ""));
}

void Server::insert(std::string_view table, std::string_view columns, const std::string& rows) {
  if (rows.empty()) {
    return;
  }
  const auto query = fmt::format("INSERT INTO {} ({}) FORMAT TabSeparated", table, columns);
  auto& fault = impl_->fault;
  HalfBody half{&rows};
  if (fault.at > 0 && ++fault.inserts == fault.at) {
    if (!fault.half) {
      std::_Exit(86);
    }
    const auto middle = rows.find('\n', rows.size() / 2);
    half.stop = middle == std::string::npos ? rows.size() / 2 : middle + 1;
    impl_->half = &half;
  }
  // One block whatever the size: the server stores it whole, or not at all if the body never
  // arrives whole; a block of a table spanning months is one part per month, written together.
  // A query_id the next push can wait for, should this process die while the server still reads it.
  std::string id;
  if (!impl_->insert_tag.empty()) {
    id = fmt::format("&query_id={}",
                     escape_url(impl_->curl, fmt::format("{}{}-{}", impl_->insert_tag, ::getpid(), ++impl_->inserts)));
  }
  impl_->post(fmt::format("database={}&query={}&max_insert_block_size=1000000000{}",
                          escape_url(impl_->curl, impl_->endpoint.database), escape_url(impl_->curl, query), id),
              rows, fmt::format("INSERT INTO {}", table));
}

void Server::set_insert_tag(std::string tag) {
  impl_->insert_tag = std::move(tag);
}

std::vector<std::vector<std::string>> Server::select(std::string_view sql, bool in_database) {
  // The views join every table to v_newest: a host's rows are read alone only when the WHERE goes
  // down into the view, which 18.16 does only when asked (later versions do by default). Measured
  // over 20 host-weeks: one host's CLOSE_WAIT spans from v_spans in 0.07 s instead of 4 s.
  std::string params = "enable_optimize_predicate_expression=1";
  if (in_database) {
    params += "&database=" + escape_url(impl_->curl, impl_->endpoint.database);
  }
  const auto what = sql.substr(0, std::min<std::size_t>(sql.size(), 60));
  const auto reply = impl_->post(params, fmt::format("{} FORMAT TabSeparated", sql),
                                 fmt::format("{}{}", what, what.size() < sql.size() ? "..." : ""));
  std::vector<std::vector<std::string>> rows;
  std::size_t start = 0;
  while (start < reply.size()) {
    auto end = reply.find('\n', start);
    if (end == std::string::npos) {
      end = reply.size();
    }
    std::vector<std::string> fields;
    std::size_t field_start = start;
    for (std::size_t i = start; i <= end; ++i) {
      if (i == end || reply[i] == '\t') {
        const std::string_view raw(reply.data() + field_start, i - field_start);
        fields.push_back(raw == k_null_field ? std::string(k_null_field) : unescape(raw));
        field_start = i + 1;
      }
    }
    rows.push_back(std::move(fields));
    start = end + 1;
  }
  return rows;
}

std::int64_t Server::number(const std::vector<std::vector<std::string>>& rows, std::size_t row,
                            std::size_t column) const {
  const std::string* field = row < rows.size() && column < rows[row].size() ? &rows[row][column] : nullptr;
  std::int64_t value = 0;
  const auto end = field ? field->data() + field->size() : nullptr;
  if (!field || field->empty() || std::from_chars(field->data(), end, value).ptr != end) {
    throw Error(Exit::failure,
                fmt::format("{}: an answer that is not ClickHouse's (row {} column {}: {})", impl_->endpoint.url,
                            row + 1, column + 1, field ? first_line(*field) : std::string("missing")));
  }
  return value;
}

std::string Server::version() {
  auto v = run("SELECT version()", false);
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) {
    v.pop_back();
  }
  return v;
}

}  // namespace sockhist::central
