#!/usr/bin/env bash
# sockhist's one entry point for people and CI.
#   ./dev.sh demo   install what is missing, build, collect a short history of this host into the
#                   default database, print what it recorded and the lifecycle reports, and write the
#                   HTML report (build/sockhist-report.html)
#   ./dev.sh test   install what is missing, build with warnings as errors, run every test (ctest)
#   ./dev.sh build  install what is missing and build
#   ./dev.sh sanitize  the whole test suite again under AddressSanitizer and UBSan (build-asan/)
#   ./dev.sh package [DIR]  the Debian package (sockhist_VERSION_ARCH.deb) into DIR, default build-deb/
set -euo pipefail
cd "$(dirname "$0")"

packages=(cmake make g++ pkg-config libsqlite3-dev libsqlitecpp-dev libcli11-dev libfmt-dev libgtest-dev
          libmnl-dev nlohmann-json3-dev sqlite3 iproute2 net-tools procps groff-base man-db bash-completion zsh
          prometheus prometheus-node-exporter   # the metrics tests: promtool, the exporter
          chromium-headless-shell libxml2-dev libxml2-utils libpng-dev  # the report tests: a browser, XML, PNG
          libcurl4-openssl-dev clickhouse-server clickhouse-client  # ship: HTTP, and a real central store to test on
          build-essential debhelper dpkg-dev lintian systemd)  # the package test: build, check, verify units
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
  # No service starts on its own (clickhouse-server): the tests start the servers they need. Debian's
  # way is a policy-rc.d that says no; one already there is left as it is.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null || status=$?
  if [ -n "$policy" ]; then "${sudo[@]}" rm -f "$policy"; fi
  return "$status"
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
  echo
  local report="${SOCKHIST_REPORT:-$build_dir/sockhist-report.html}"
  echo "== sockhist report --since $start -o $report (open it in a browser)"
  "$analyze" report --db "$db" --host "$host" --since "$start" --close-wait-max-age 10m --time-wait-max 20000 \
    -o "$report"
  echo "wrote $report ($(wc -c <"$report") bytes)"
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

# The Debian package, built with dpkg-buildpackage from a copy of the tree as it stands (committed
# or not, without build directories), so that nothing is written beside the source. The .deb files
# land in $1 (default build-deb/).
package() {
  install_missing
  local out=${1:-build-deb}
  rm -rf "$out/src"
  mkdir -p "$out/src"
  out=$(cd "$out" && pwd)
  if git rev-parse --git-dir >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null |
      tar -xf - -C "$out/src"
  else
    tar --exclude='./build*' --exclude=./debian/sockhist --exclude=./obj-\* -cf - . | tar -xf - -C "$out/src"
  fi
  rm -f "$out"/sockhist*_*.deb "$out"/sockhist_*.changes "$out"/sockhist_*.buildinfo
  if ! (cd "$out/src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
          dpkg-buildpackage -b -us -uc >"$out/build.log" 2>&1); then
    tail -n 40 "$out/build.log" >&2
    echo "dev.sh: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
    return 1
  fi
  rm -rf "$out/src"
  ls "$out"/sockhist*_*.deb
}

case "${1:-}" in
  demo) demo ;;
  test) run_tests ;;
  build) build ;;
  sanitize) sanitize ;;
  package) package "${2:-}" ;;
  *) echo "usage: ./dev.sh demo|test|build|sanitize|package [DIR]" >&2; exit 2 ;;
esac
