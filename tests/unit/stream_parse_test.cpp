// The socket tables parsed as they are read (proc::SocketTableParser, Loader::load_table): a table
// handed over in pieces split anywhere must parse exactly as the whole text does, and a live
// capture's filter must see each read's rows once, in order, before the next read.
#include <arpa/inet.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <random>

#include <fmt/format.h>

#include "files.hpp"
#include "sockhist/error.hpp"
#include "sockhist/proc.hpp"

using namespace sockhist;
using model::Proto;
using model::Socket;
using test::read_text;
using test::samples_dir;

namespace {

struct Table {
  std::filesystem::path file;
  Proto proto;
  int family;
};

// Every socket table the samples hold, the broken ones included.
std::vector<Table> sample_tables() {
  std::vector<Table> tables;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(samples_dir())) {
    const auto name = entry.path().filename().string();
    const auto parent = entry.path().parent_path().filename().string();
    if (!entry.is_regular_file()) {
      continue;
    }
    if (parent == "net" && (name == "tcp" || name == "tcp6" || name == "udp" || name == "udp6")) {
      tables.push_back({entry.path(), name.starts_with("tcp") ? Proto::tcp : Proto::udp, name.ends_with("6") ? 6 : 4});
    } else if ((parent == "net" && name == "unix") || (parent == "broken" && name.starts_with("unix-"))) {
      tables.push_back({entry.path(), Proto::unix_domain, 0});
    } else if (parent == "broken" && name.starts_with("tcp-")) {
      tables.push_back({entry.path(), Proto::tcp, 4});
    }
  }
  return tables;
}

model::Parsed<Socket> parse_whole(const Table& table, std::string_view text) {
  return table.proto == Proto::unix_domain ? proc::parse_unix(text)
                                           : proc::parse_inet(text, table.proto, table.family, 100);
}

// The text fed in pieces whose sizes `next_size` gives.
template <class NextSize>
model::Parsed<Socket> parse_in_pieces(const Table& table, std::string_view text, NextSize next_size) {
  proc::SocketTableParser parser(table.proto, table.family, 100);
  std::vector<Socket> rows;
  while (!text.empty()) {
    const std::size_t size = std::min(text.size(), next_size());
    parser.feed(text.substr(0, size), rows);
    text.remove_prefix(size);
  }
  parser.finish(rows);
  auto result = parser.take_outcome();
  result.rows = std::move(rows);
  return result;
}

void expect_same(const model::Parsed<Socket>& got, const model::Parsed<Socket>& want, const std::string& what) {
  EXPECT_EQ(got.error, want.error) << what;
  EXPECT_EQ(got.duplicates, want.duplicates) << what;
  ASSERT_EQ(got.issues.size(), want.issues.size()) << what;
  for (std::size_t i = 0; i < got.issues.size(); ++i) {
    EXPECT_EQ(got.issues[i].line, want.issues[i].line) << what;
    EXPECT_EQ(got.issues[i].reason, want.issues[i].reason) << what;
  }
  EXPECT_EQ(got.rows, want.rows) << what;
}

std::string tcp_line(std::size_t slot, std::uint32_t address, std::uint16_t port, std::uint64_t inode) {
  return fmt::format(
      "{:4}: {:08X}:{:04X} 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 {} 1 "
      "0000000000000000 20 4 30 10 -1\n",
      slot, address, port, inode);
}

}  // namespace

TEST(SocketTableParser, AnySplitOfATableParsesAsTheWholeText) {
  const auto tables = sample_tables();
  ASSERT_GE(tables.size(), 20U);  // history-busy's, the lifecycle's, the sosreport's and the broken ones
  std::size_t rows = 0;
  for (const auto& table : tables) {
    const std::string text = read_text(table.file);
    const auto whole = parse_whole(table, text);
    rows += whole.rows.size();
    for (const std::size_t size : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{61}, std::size_t{149}}) {
      expect_same(parse_in_pieces(table, text, [size] { return size; }), whole,
                  fmt::format("{} in pieces of {}", table.file.string(), size));
    }
    for (const unsigned seed : {1U, 2U, 3U}) {
      std::mt19937 random(seed);
      std::uniform_int_distribution<std::size_t> size(1, 400);
      expect_same(parse_in_pieces(table, text, [&] { return size(random); }), whole,
                  fmt::format("{} in random pieces (seed {})", table.file.string(), seed));
    }
  }
  EXPECT_GT(rows, 500U);
}

TEST(SocketTableParser, ARepeatInALaterPieceIsDroppedAndALineSplitAtItsEndIsJoined) {
  std::string text =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
  text += tcp_line(0, 0x0100007F, 0x1F90, 4001);
  text += tcp_line(1, 0x0100007F, 0x1F91, 4002);
  text += tcp_line(2, 0x0100007F, 0x1F90, 4001);  // the first again, as a walk under churn prints it
  const std::size_t split = text.size() - 10;
  proc::SocketTableParser parser(Proto::tcp, 4, 100);
  std::vector<Socket> rows;
  parser.feed(std::string_view(text).substr(0, split), rows);
  EXPECT_EQ(rows.size(), 2U);  // the third line has not ended yet
  parser.feed(std::string_view(text).substr(split), rows);
  parser.finish(rows);
  EXPECT_EQ(rows.size(), 2U);
  EXPECT_EQ(parser.outcome().duplicates, 1U);
  EXPECT_TRUE(parser.outcome().issues.empty());
}

TEST(SocketTableParser, ALineLongerThanAnyTableHasIsSkippedWithoutBeingHeld) {
  const Table table{"long", Proto::tcp, 4};
  std::string text =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
  text += tcp_line(0, 0x0100007F, 0x1F90, 4001);
  text += "   1: " + std::string(70'000, 'x');
  for (const std::string& file : {text + "\n" + tcp_line(2, 0x0100007F, 0x1F91, 4002), text}) {
    const auto whole = parse_whole(table, file);
    EXPECT_FALSE(whole.error);
    ASSERT_EQ(whole.issues.size(), 1U);
    EXPECT_EQ(whole.issues[0].line, 3U);
    EXPECT_EQ(whole.issues[0].reason, "longer than 65536 bytes, which no line of a socket table is");
    EXPECT_EQ(whole.rows.size(), file == text ? 1U : 2U);
    expect_same(parse_in_pieces(table, file, [] { return std::size_t{4096}; }), whole, "in pieces of 4096");
  }
  // A file of one endless line is refused as soon as its first line is longer than any header.
  proc::SocketTableParser parser(Proto::tcp, 4, 100);
  std::vector<Socket> rows;
  const std::string zeros(65'536, '\0');
  parser.feed(zeros, rows);
  EXPECT_FALSE(parser.outcome().error);  // a line may be as long as the bound
  parser.feed(zeros, rows);
  EXPECT_EQ(parser.outcome().error, "not a socket table (the first line is not the 'sl local_address ...' header)");
  EXPECT_TRUE(rows.empty());
}

TEST(LoadTable, EachReadsRowsMeetTheFilterOnceBeforeTheNextRead) {
  const auto dir = test::scratch_dir("load_table");
  std::string text =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
  constexpr std::size_t k_rows = 20'000;  // about 3 MB: many reads of input::k_read_chunk_bytes
  for (std::size_t i = 0; i < k_rows; ++i) {
    text += tcp_line(i, 0x0100007F + static_cast<std::uint32_t>(i << 8), static_cast<std::uint16_t>(1024 + i % 60000),
                     100'000 + i);
  }
  test::write_text(dir / "net/tcp", text);
  model::Capture cap;
  proc::Loader loader(cap);
  const proc::ProcRoot root(dir);
  std::size_t calls = 0;
  std::size_t largest = 0;
  std::size_t seen = 0;
  const auto sieve_odd = [&](std::vector<Socket>& out, std::size_t first) {
    ++calls;
    ASSERT_LE(first, out.size());
    largest = std::max(largest, out.size() - first);
    seen += out.size() - first;
    // Everything before `first` was sieved already: only even inodes are left there.
    for (std::size_t i = 0; i < first; ++i) {
      ASSERT_EQ(out[i].inode % 2, 0U) << i;
    }
    std::erase_if(out, [](const Socket& s) { return s.inode % 2 == 1; });
  };
  ASSERT_TRUE(proc::read_socket_table(cap, loader, root, proc::k_socket_tables[0], sieve_odd));
  EXPECT_EQ(seen, k_rows);
  EXPECT_EQ(cap.sockets.size(), k_rows / 2);
  EXPECT_GE(calls, text.size() / input::k_read_chunk_bytes);
  EXPECT_LE(largest, input::k_read_chunk_bytes / 100 + 1);  // a line is over 100 bytes
  const auto whole = proc::parse_inet(text, Proto::tcp, 4, cap.user_hz);
  std::vector<Socket> even;
  std::copy_if(whole.rows.begin(), whole.rows.end(), std::back_inserter(even),
               [](const Socket& s) { return s.inode % 2 == 0; });
  EXPECT_EQ(cap.sockets, even);
  EXPECT_TRUE(cap.diagnostics.empty());
}

TEST(LoadTable, AForeignFileIsRefusedAtItsFirstReadAndAFifoUnread) {
  const auto dir = test::scratch_dir("load_table_refused");
  std::string text = "Not a socket table\n";
  for (int i = 0; i < 5000; ++i) {
    text += tcp_line(static_cast<std::size_t>(i), 0x0100007F, 80, 7000 + static_cast<std::uint64_t>(i));
  }
  test::write_text(dir / "net/tcp", text);
  model::Capture cap;
  proc::Loader loader(cap);
  const proc::ProcRoot root(dir);
  std::size_t calls = 0;
  const auto count = [&](std::vector<Socket>&, std::size_t) { ++calls; };
  try {
    proc::read_socket_table(cap, loader, root, proc::k_socket_tables[0], count);
    FAIL() << "a foreign header was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Exit::bad_input);
    EXPECT_NE(std::string(e.what()).find((dir / "net/tcp").string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a socket table"), std::string::npos) << e.what();
  }
  EXPECT_EQ(calls, 0U);
  EXPECT_TRUE(cap.sockets.empty());
  ASSERT_EQ(::mkfifo((dir / "net/tcp6").c_str(), 0600), 0);
  EXPECT_THROW(proc::read_socket_table(cap, loader, root, proc::k_socket_tables[1], count), input::Refused);
  EXPECT_FALSE(proc::read_socket_table(cap, loader, root, proc::k_socket_tables[2], count));  // absent
  EXPECT_EQ(calls, 0U);
}

TEST(AddressText, IsWhatInetNtopPrints) {
  const auto ntop = [](int af, const unsigned char* bytes) {
    std::array<char, INET6_ADDRSTRLEN> out{};
    return std::string(::inet_ntop(af, bytes, out.data(), out.size()));
  };
  std::mt19937 random(11);
  std::array<unsigned char, 16> bytes{};
  for (int i = 0; i < 100'000; ++i) {
    for (auto& b : bytes) {
      b = static_cast<unsigned char>(random());
    }
    if (i % 4 == 1) {
      std::fill(bytes.begin(), bytes.begin() + 2, 0);  // digits of every width: 0, 9, 10, 99, 100, 255
      bytes[2] = static_cast<unsigned char>(i % 256);
    }
    if (i % 8 == 3) {
      std::fill(bytes.begin(), bytes.begin() + 10, 0);  // ::ffff:a.b.c.d and runs of zero words
      bytes[10] = bytes[11] = i % 16 == 3 ? 0xff : 0;
    }
    ASSERT_EQ(proc::address_text(4, bytes.data()), ntop(AF_INET, bytes.data())) << i;
    ASSERT_EQ(proc::address_text(6, bytes.data()), ntop(AF_INET6, bytes.data())) << i;
  }
  const std::array<unsigned char, 4> edges[] = {{0, 0, 0, 0}, {255, 255, 255, 255}, {10, 0, 100, 9}};
  for (const auto& edge : edges) {
    EXPECT_EQ(proc::address_text(4, edge.data()), ntop(AF_INET, edge.data()));
  }
}
