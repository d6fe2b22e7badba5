#!/usr/bin/env bash
# sockhist's one entry point for people and CI.
#   ./dev.sh demo   install what is missing, build, collect a short history of this host into the
#                   default database, and print what it recorded and the lifecycle reports
#   ./dev.sh test   install what is missing, build with warnings as errors, run every test (ctest)
#   ./dev.sh build  install what is missing and build
#   ./dev.sh sanitize  the whole test suite again under AddressSanitizer and UBSan (build-asan/)
set -euo pipefail
cd "$(dirname "$0")"

packages=(cmake make g++ pkg-config libsqlite3-dev libsqlitecpp-dev libcli11-dev libfmt-dev libgtest-dev
          libmnl-dev nlohmann-json3-dev sqlite3 iproute2 net-tools procps groff-base bash-completion
          prometheus prometheus-node-exporter)  # the last two for the metrics tests: promtool, the exporter
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
  local analyze="$build_dir/analyzer/sockhist"
  local start host
  start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  host=$(uname -n)
  echo "== collecting 5 snapshots, 2 s apart, into $db"
  "$collect" --db "$db" --interval 2s --count 5 --verbose
  echo
  echo "== sockhist hosts"
  "$analyze" hosts --db "$db"
  echo
  echo "== sockhist snapshots --since $start"
  "$analyze" snapshots --db "$db" --host "$host" --since "$start"
  echo
  echo "== sockhist show -tanp (the newest snapshot, as netstat -tanp printed it)"
  "$analyze" show --db "$db" --host "$host" -tanp
  echo
  echo "== sockhist stats --since $start (what the kernel's counters did during the run)"
  "$analyze" stats --db "$db" --host "$host" --since "$start"
  echo
  echo "== sockhist trend --since $start --bucket 2s"
  "$analyze" trend --db "$db" --host "$host" --since "$start" --bucket 2s
  # The lifecycle reports exit 1 when they find something: that is an answer, not a failure.
  echo
  echo "== sockhist close-wait --since $start --min-age 0 --by process"
  "$analyze" close-wait --db "$db" --host "$host" --since "$start" --min-age 0 --by process || [ $? -eq 1 ]
  echo
  echo "== sockhist time-wait --since $start"
  "$analyze" time-wait --db "$db" --host "$host" --since "$start" --bucket 2s || [ $? -eq 1 ]
  echo
  echo "== sockhist check --verbose --close-wait-max-age 10m --time-wait-max 20000 --listen-overflows 0"
  "$analyze" check --db "$db" --host "$host" --verbose --close-wait-max-age 10m --time-wait-max 20000 \
    --listen-overflows 0 || [ $? -eq 1 ]
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
