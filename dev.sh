#!/usr/bin/env bash
# sockhist's one entry point for people and CI.
#   ./dev.sh demo   install what is missing, build, collect a short history of this host into the
#                   default database, and print what it recorded
#   ./dev.sh test   install what is missing, build with warnings as errors, run every test (ctest)
#   ./dev.sh build  install what is missing and build
#   ./dev.sh sanitize  the whole test suite again under AddressSanitizer and UBSan (build-asan/)
set -euo pipefail
cd "$(dirname "$0")"

packages=(cmake make g++ pkg-config libsqlite3-dev libsqlitecpp-dev libcli11-dev libfmt-dev libgtest-dev
          libmnl-dev nlohmann-json3-dev sqlite3 iproute2 net-tools procps)
build_dir=${SOCKHIST_BUILD_DIR:-build}

install_missing() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  echo "dev.sh: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  install_missing
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOCKHIST_WERROR=ON >/dev/null
  cmake --build "$build_dir" -j"$(nproc)"
}

demo() {
  build
  local collect="$build_dir/collector/sockhist-collect"
  local db
  db=${SOCKHIST_DB:-$("$collect" --help >/dev/null && if [ "$(id -u)" -eq 0 ]; then echo /var/lib/sockhist/sockhist.db; else echo "${XDG_DATA_HOME:-$HOME/.local/share}/sockhist/sockhist.db"; fi)}
  echo "== collecting 5 snapshots, 2 s apart, into $db"
  "$collect" --db "$db" --interval 2s --count 5 --verbose
  echo
  echo "== snapshots of this host (v_snapshots)"
  sqlite3 -readonly -box "$db" "SELECT snapshot_id, host, time_iso, source, socket_count FROM v_snapshots ORDER BY snapshot_id DESC LIMIT 5"
  echo "== sockets by state in the newest snapshot (v_state_counts)"
  sqlite3 -readonly -box "$db" "SELECT proto, state, count FROM v_state_counts WHERE snapshot_id = (SELECT max(snapshot_id) FROM snapshots) ORDER BY proto, count DESC"
  echo "== who owns the sockets (v_snapshot_sockets)"
  sqlite3 -readonly -box "$db" "SELECT coalesce(process, '(unknown)') AS process, pid, proto, count(*) AS sockets FROM v_snapshot_sockets WHERE snapshot_id = (SELECT max(snapshot_id) FROM snapshots) GROUP BY 1, 2, 3 ORDER BY sockets DESC LIMIT 10"
  echo "== kernel counters that moved during the run (v_counters)"
  sqlite3 -readonly -box "$db" "WITH r AS (SELECT min(snapshot_id) AS a, max(snapshot_id) AS b FROM (SELECT snapshot_id FROM snapshots ORDER BY snapshot_id DESC LIMIT 5)),
    d AS (SELECT f.section, f.name, l.value - f.value AS delta FROM v_counters f JOIN v_counters l ON l.section = f.section AND l.name = f.name, r
          WHERE f.snapshot_id = r.a AND l.snapshot_id = r.b AND f.is_gauge = 0 AND l.value != f.value ORDER BY delta DESC LIMIT 10)
    SELECT * FROM d UNION ALL SELECT '(none: the host was idle)', '', 0 WHERE NOT EXISTS (SELECT 1 FROM d)"
}

run_tests() {
  build
  ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)" --timeout 600
}

sanitize() {
  install_missing
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSOCKHIST_SANITIZE=ON -DSOCKHIST_WERROR=ON >/dev/null
  cmake --build build-asan -j"$(nproc)"
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 600
}

case "${1:-}" in
  demo) demo ;;
  test) run_tests ;;
  build) build ;;
  sanitize) sanitize ;;
  *) echo "usage: ./dev.sh demo|test|build|sanitize" >&2; exit 2 ;;
esac
