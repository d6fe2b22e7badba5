#!/usr/bin/env bash
# cmake --install into a scratch prefix: the binaries, their man pages, the systemd units and the
# cron sample (both pointing at the installed binary), the bash completion and the schema's
# documentation land where they belong and are well-formed.
set -euo pipefail
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake -DCMAKE_INSTALL_PREFIX="$prefix" -P "$build/cmake_install.cmake" >/dev/null
fail() { echo "install_test: $*" >&2; exit 1; }
[ -x "$prefix/sbin/sockhist-collect" ] || fail "no sbin/sockhist-collect"
"$prefix/sbin/sockhist-collect" --version | grep -q '^sockhist-collect ' || fail "installed binary does not run"
[ -x "$prefix/bin/sockhist" ] || fail "no bin/sockhist"
"$prefix/bin/sockhist" --version | grep -q '^sockhist ' || fail "installed analyzer does not run"
for man in "$prefix/share/man/man8/sockhist-collect.8" "$prefix/share/man/man1/sockhist.1"; do
  [ -f "$man" ] || fail "no $man"
  if command -v groff >/dev/null; then
    warnings=$(groff -man -ww -z "$man" 2>&1)
    [ -z "$warnings" ] || fail "man page $man: $warnings"
  fi
done
for unit in sockhist-collect.service sockhist-collect.timer sockhist-collect-loop.service; do
  [ -f "$prefix/lib/systemd/system/$unit" ] || fail "no lib/systemd/system/$unit"
done
grep -q "ExecStart=$prefix/sbin/sockhist-collect " "$prefix/lib/systemd/system/sockhist-collect.service" ||
  fail "the installed unit does not run the installed binary"
# --man=no: the units name man:sockhist-collect(8), which man cannot find in a scratch prefix
# (the package test verifies them with their man page installed).
if command -v systemd-analyze >/dev/null; then
  out=$(cd "$prefix/lib/systemd/system" && systemd-analyze verify --man=no sockhist-collect.service sockhist-collect-loop.service 2>&1 || true)
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
fi
[ -f "$prefix/share/doc/sockhist/examples/sockhist" ] || fail "no cron example"
cron="$prefix/share/doc/sockhist/examples/sockhist"
grep -q " || $prefix/sbin/sockhist-collect " "$cron" || fail "the installed cron example does not run the installed binary"
# The cron line as cron's shell runs it, its database moved to a scratch one and the directory that
# says systemd booted (/run/systemd/system) to a scratch name: without it the line must take a
# snapshot and print nothing; with it, stand down (the timer's turn); with the collector gone (a
# removed package whose conffile stays), stand down silently too.
booted="$prefix/run-systemd-system"
command=$(sed -n 's/^\* \* \* \* \* root //p' "$cron" |
          sed "s|/var/lib/sockhist/sockhist.db|$prefix/cron.db|; s|/run/systemd/system|$booted|")
[ -n "$command" ] || fail "no cron line in $cron"
case "$command" in *"$booted"*) ;; *) fail "the cron line does not look for /run/systemd/system" ;; esac
run_cron() { sh -c "$command --proc-root $(dirname "$0")/../../samples/history-busy/00/proc" 2>&1; }
mkdir "$booted"
out=$(run_cron) || fail "the cron line failed with systemd booted: $out"
[ -z "$out" ] && [ ! -e "$prefix/cron.db" ] || fail "the cron line took a snapshot where systemd runs the timer"
rmdir "$booted"
out=$(run_cron) || fail "the cron line failed without systemd: $out"
[ -z "$out" ] || fail "the cron line printed (cron would mail it): $out"
[ -f "$prefix/cron.db" ] || fail "the cron line took no snapshot without systemd"
mv "$prefix/sbin/sockhist-collect" "$prefix/sbin/sockhist-collect.away"
rm "$prefix/cron.db"
out=$(run_cron) || fail "the cron line fails with the collector removed: $out"
[ -z "$out" ] && [ ! -e "$prefix/cron.db" ] || fail "the cron line did not stand down with the collector removed: $out"
mv "$prefix/sbin/sockhist-collect.away" "$prefix/sbin/sockhist-collect"
! grep -q /usr/local "$prefix/share/doc/sockhist/examples/sockhist" || fail "the cron example still names /usr/local"
for name in sockhist sockhist-collect; do
  completion="$prefix/share/bash-completion/completions/$name"
  [ -f "$completion" ] || fail "no bash completion for $name"
  bash -n "$completion" || fail "$completion is not bash"
done
zsh_completion="$prefix/share/zsh/site-functions/_sockhist"
[ -f "$zsh_completion" ] || fail "no zsh completion"
head -n 1 "$zsh_completion" | grep -qx '#compdef sockhist sockhist-collect' || fail "$zsh_completion names no commands"
if command -v zsh >/dev/null; then zsh -n "$zsh_completion" || fail "$zsh_completion is not zsh"; fi
[ -f "$prefix/share/doc/sockhist/examples/metrics.conf" ] || fail "no metrics drop-in example"
for example in ship.conf sockhist-ship; do
  grep -q "$prefix/bin/sockhist ship -q " "$prefix/share/doc/sockhist/examples/$example" ||
    fail "the $example example does not run the installed sockhist ship"
done
grep -q "^ExecStartPost=$prefix/bin/sockhist metrics " "$prefix/share/doc/sockhist/examples/metrics.conf" ||
  fail "the metrics drop-in does not run the installed analyzer"
cmp -s "$prefix/share/doc/sockhist/schema/README.md" "$(dirname "$0")/../../schema/README.md" ||
  fail "schema/README.md, which --help and the man pages point to, is not installed"
cmp -s "$prefix/share/doc/sockhist/schema/clickhouse/README.md" "$(dirname "$0")/../../schema/clickhouse/README.md" ||
  fail "schema/clickhouse/README.md, which sockhist(1) points to, is not installed"
echo "install_test: ok ($prefix)"
