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
if command -v systemd-analyze >/dev/null; then
  out=$(cd "$prefix/lib/systemd/system" && systemd-analyze verify sockhist-collect.service sockhist-collect-loop.service 2>&1 || true)
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
fi
[ -f "$prefix/share/doc/sockhist/examples/sockhist" ] || fail "no cron example"
cron="$prefix/share/doc/sockhist/examples/sockhist"
grep -q " || $prefix/sbin/sockhist-collect " "$cron" || fail "the installed cron example does not run the installed binary"
# The cron line as cron's shell runs it, its database moved to a scratch one, with systemctl saying
# the timer is enabled (the line must stand down) and then that it is not (it must take a snapshot).
command=$(sed -n 's/^\* \* \* \* \* root //p' "$cron" | sed "s|/var/lib/sockhist/sockhist.db|$prefix/cron.db|")
[ -n "$command" ] || fail "no cron line in $cron"
mkdir -p "$prefix/stub"
for answer in 0 1; do  # systemctl is-enabled's exit status: 0 enabled, 1 not
  printf '#!/bin/sh\n[ "$*" = "is-enabled --quiet sockhist-collect.timer" ] && exit %s\nexit 2\n' "$answer" \
    >"$prefix/stub/systemctl"
  chmod +x "$prefix/stub/systemctl"
  PATH="$prefix/stub:/usr/bin:/bin" sh -c "$command --proc-root $(dirname "$0")/../../samples/history-busy/00/proc" ||
    fail "the cron line failed (systemctl is-enabled answering $answer)"
  if [ "$answer" = 0 ]; then
    [ ! -e "$prefix/cron.db" ] || fail "the cron line took a snapshot beside an enabled timer"
  else
    [ -f "$prefix/cron.db" ] || fail "the cron line took no snapshot with the timer disabled"
  fi
done
! grep -q /usr/local "$prefix/share/doc/sockhist/examples/sockhist" || fail "the cron example still names /usr/local"
for name in sockhist sockhist-collect; do
  completion="$prefix/share/bash-completion/completions/$name"
  [ -f "$completion" ] || fail "no bash completion for $name"
  bash -n "$completion" || fail "$completion is not bash"
done
cmp -s "$prefix/share/doc/sockhist/schema/README.md" "$(dirname "$0")/../../schema/README.md" ||
  fail "schema/README.md, which --help and the man pages point to, is not installed"
echo "install_test: ok ($prefix)"
