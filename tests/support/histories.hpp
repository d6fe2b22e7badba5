// The sample histories the analyzer's tests read: the real collector records samples/ into a
// database per test process (ctest runs tests as separate processes, several at once), removed
// when the process exits.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "files.hpp"
#include "process.hpp"

namespace sockhist::test {

inline const std::filesystem::path k_golden = SOCKHIST_GOLDEN_DIR;

// A database the real collector built from the four sample captures (the fourth after a reboot).
inline std::filesystem::path g_sample_dir;

// The samples, recorded by the collector into `db` under `host`.
inline void collect_samples(const std::string& db, const std::string& host, const std::vector<std::string>& samples,
                            const std::string& history = "history-busy") {
  for (const auto& sample : samples) {
    const auto root = samples_dir() / history / sample;
    const auto at = read_text(root / "captured_at").substr(0, 24);
    const auto r =
        run(SOCKHIST_COLLECT_BIN, {"--db", db, "--proc-root", (root / "proc").string(), "--host", host, "--at", at});
    if (r.exit_code != 0) {
      throw std::runtime_error("collector failed on sample " + sample + ": " + r.err);
    }
  }
}

// ctest runs each test in its own process, several at once: each builds its own copies.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const auto d = scratch_dir("analyzer-sample-" + std::to_string(::getpid()));
    g_sample_dir = d;
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(g_sample_dir, ignored);
    });
    return d;
  }();
  return dir;
}

inline const std::string& sample_db() {
  static const std::string path = [] {
    const std::string db = (scratch() / "history.db").string();
    collect_samples(db, "web1", {"00", "01", "02", "03"});
    return db;
  }();
  return path;
}

// Two hosts: web1's whole sample history, and web2 with the first two captures.
inline const std::string& fleet_db() {
  static const std::string path = [] {
    const std::string db = (scratch() / "fleet.db").string();
    collect_samples(db, "web1", {"00", "01", "02", "03"});
    collect_samples(db, "web2", {"00", "01"});
    return db;
  }();
  return path;
}

// api1: the twelve made-up captures of samples/history-lifecycle, with a reboot before 08.
inline const std::string& lifecycle_db() {
  static const std::string path = [] {
    const std::string db = (scratch() / "lifecycle.db").string();
    std::vector<std::string> captures;
    for (int i = 0; i < 12; ++i) {
      captures.push_back(fmt::format("{:02d}", i));
    }
    collect_samples(db, "api1", captures, "history-lifecycle");
    return db;
  }();
  return path;
}

// A third host for the fleet: web2, three captures of the busy sample.
inline const std::string& web2_db() {
  static const std::string path = [] {
    const std::string db = (scratch() / "web2.db").string();
    collect_samples(db, "web2", {"00", "01", "02"});
    return db;
  }();
  return path;
}

inline std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

}  // namespace sockhist::test
