// The report in a real browser: Debian's headless Chromium lays the page out (a copy with a script
// that writes down where each chart's plot area landed), draws it into a PNG, and every chart with
// something to draw must have pixels of its lines' colours inside its plot area; on a 400-pixel
// screen the page itself must not overflow sideways; and it prints to PDF. Skips with the reason
// only where no Chromium is installed or it cannot start.
#include <gtest/gtest.h>
#include <png.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>

#include <fmt/format.h>

#include "files.hpp"
#include "histories.hpp"
#include "process.hpp"
#include "report_page.hpp"

using namespace sockhist::test;

namespace {

// The script the probe copy runs: each chart's plot box in page pixels, and the page's size.
const char* k_probe = R"(<script>
for (const svg of document.querySelectorAll('svg.chart')) {
  const r = svg.querySelector('rect.plot').getBoundingClientRect();
  svg.setAttribute('data-box', [r.left, r.top + window.scrollY, r.width, r.height].map(Math.round).join(','));
}
const e = document.documentElement;
document.body.setAttribute('data-size', e.scrollWidth + ',' + e.scrollHeight);
</script>)";

struct Box {
  long x = 0, y = 0, w = 0, h = 0;
};

struct Rgba {
  std::vector<unsigned char> pixels;
  long width = 0, height = 0;
};

Rgba read_png(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  Rgba out;
  if (png_image_begin_read_from_file(&image, path.c_str()) == 0) {
    ADD_FAILURE() << path << ": " << image.message;
    return out;
  }
  image.format = PNG_FORMAT_RGBA;
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr) == 0) {
    ADD_FAILURE() << path << ": " << image.message;
    return out;
  }
  out.width = image.width;
  out.height = image.height;
  return out;
}

class ReportBrowser : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"chromium-headless-shell", "chromium"}) {
      if (browser_.empty()) {
        browser_ = find_tool(name);
      }
    }
    if (browser_.empty()) {
      GTEST_SKIP() << "no Chromium installed (./dev.sh test installs chromium-headless-shell)";
    }
    dir_ = scratch_dir("report-browser");
    write_text(dir_ / "probe.html", "<!DOCTYPE html><html><body><p>probe</p></body></html>");
    const auto r = chrome({"--screenshot=" + (dir_ / "probe.png").string(), "--window-size=200,100",
                           "file://" + (dir_ / "probe.html").string()});
    if (r.exit_code != 0 || !std::filesystem::exists(dir_ / "probe.png")) {
      GTEST_SKIP() << browser_ << " cannot start here (exit " << r.exit_code << "): " << r.err.substr(0, 400);
    }
  }

  Result chrome(std::vector<std::string> args) {
    std::vector<std::string> all = {"--headless",     "--no-sandbox",
                                    "--disable-gpu",  "--hide-scrollbars",
                                    "--no-first-run", "--user-data-dir=" + (dir_ / "profile").string()};
    all.insert(all.end(), args.begin(), args.end());
    return run(browser_, all);
  }

  // The plot boxes by chart and the page's size, laid out `width` pixels wide.
  std::map<std::string, Box> layout(const std::string& html, long width, Box& page) {
    const auto probe = dir_ / "with-probe.html";
    auto text = read_text(html);
    text.insert(text.rfind("</body>"), k_probe);
    write_text(probe, text);
    const auto r = chrome({"--dump-dom", fmt::format("--window-size={},900", width), "file://" + probe.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, Box> boxes;
    const std::regex chart(R"re(data-chart="([^"]+)"[^>]*data-box="(-?\d+),(-?\d+),(\d+),(\d+)")re");
    for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), chart); it != std::sregex_iterator(); ++it) {
      boxes[(*it)[1]] = {std::stol((*it)[2]), std::stol((*it)[3]), std::stol((*it)[4]), std::stol((*it)[5])};
    }
    std::smatch size;
    if (std::regex_search(r.out, size, std::regex(R"re(data-size="(\d+),(\d+)")re"))) {
      page = {0, 0, std::stol(size[1]), std::stol(size[2])};
    } else {
      ADD_FAILURE() << "the probe did not run: " << r.out.substr(0, 300);
    }
    return boxes;
  }

  std::string browser_;
  std::filesystem::path dir_;
};

// Pixels within a box close to one of `colours` ("#0072B2").
long coloured(const Rgba& img, const Box& b, const std::vector<std::string>& colours) {
  std::vector<std::array<int, 3>> rgb;
  for (const auto& c : colours) {
    rgb.push_back({std::stoi(c.substr(1, 2), nullptr, 16), std::stoi(c.substr(3, 2), nullptr, 16),
                   std::stoi(c.substr(5, 2), nullptr, 16)});
  }
  long n = 0;
  for (long y = std::max(0L, b.y); y < std::min(img.height, b.y + b.h); ++y) {
    for (long x = std::max(0L, b.x); x < std::min(img.width, b.x + b.w); ++x) {
      const auto* p = &img.pixels[static_cast<std::size_t>((y * img.width + x) * 4)];
      for (const auto& c : rgb) {
        if (std::abs(p[0] - c[0]) + std::abs(p[1] - c[1]) + std::abs(p[2] - c[2]) < 40) {
          ++n;
          break;
        }
      }
    }
  }
  return n;
}

TEST_F(ReportBrowser, EveryChartDrawsItsLinesAndThePageFitsANarrowScreenAndPrints) {
  ::setenv("TZ", "UTC", 1);
  const auto html = (dir_ / "report.html").string();
  const auto made = run(SOCKHIST_ANALYZER_BIN, {"report", "--db", lifecycle_db(), "--utc", "-o", html});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const Page page(html);

  Box size;
  const auto boxes = layout(html, 1000, size);
  ASSERT_EQ(boxes.size(), 8u) << "every chart laid out";
  EXPECT_LE(size.w, 1000) << "no sideways scrolling at 1000 pixels";
  const auto png = (dir_ / "report.png").string();
  const auto shot = chrome({"--screenshot=" + png, fmt::format("--window-size=1000,{}", size.h), "file://" + html});
  ASSERT_EQ(shot.exit_code, 0) << shot.err;
  const auto img = read_png(png);
  ASSERT_EQ(img.width, 1000);
  for (const auto& [id, box] : boxes) {
    const auto chart = fmt::format("//h:section[@id='chart-{}']", id);
    ASSERT_GT(box.w, 300) << id;
    ASSERT_LE(box.y + box.h, img.height) << id << " lies outside the screenshot";
    std::vector<std::string> colours;
    long points = 0;
    for (const auto& name : page.strings(chart + "//s:g[@class='series']/@data-series")) {
      points += page.points(chart, name);
    }
    for (const auto& c : page.strings(chart + "//s:g[@class='series']/@stroke")) {
      if (c != "#000000") {  // black is also the axes' colour
        colours.push_back(c);
      }
    }
    const auto drawn = coloured(img, box, colours);
    if (points > 0) {
      EXPECT_GE(drawn, 20) << id << ": its " << points << " points left no pixels of their colours";
    } else {
      EXPECT_EQ(drawn, 0) << id << " has nothing to draw";
      EXPECT_NE(page.string(chart + "//s:text[@class='empty']"), "") << id << " says why it is empty";
    }
  }

  Box narrow;
  const auto small = layout(html, 400, narrow);
  EXPECT_EQ(small.size(), 8u);
  EXPECT_LE(narrow.w, 400) << "on a 400-pixel screen the plots and tables scroll in their boxes, not the page";

  const auto pdf = dir_ / "report.pdf";
  const auto printed = chrome({"--print-to-pdf=" + pdf.string(), "--no-pdf-header-footer", "file://" + html});
  ASSERT_EQ(printed.exit_code, 0) << printed.err;
  const auto bytes = read_text(pdf);
  EXPECT_EQ(bytes.rfind("%PDF-", 0), 0u);
  EXPECT_GT(bytes.size(), 10'000u);
}

}  // namespace
