#!/bin/bash
# Run by package_test.sh as root inside a chroot of a throw-away overlay of the system: installs the
# package with dpkg -i, runs what it installed as an operator would, then removes and purges it and
# checks what each step leaves.
set -euo pipefail
deb=$1
db=/var/lib/sockhist/sockhist.db
fail() { echo "package_checks: $*" >&2; exit 1; }
step() { echo "package_checks: $*"; }
snapshots() { sqlite3 -readonly "$db" 'SELECT count(*) FROM v_snapshots'; }

# A clean slate: whatever this machine has of sockhist (an installed package, the demo's history,
# the group) is removed here, in the overlay only, so that the install is a first install.
if dpkg-query -W -f='${Status}' sockhist 2>/dev/null | grep -q 'install\|config-files'; then
  dpkg -P sockhist >/dev/null
fi
rm -rf /var/lib/sockhist /etc/cron.d/sockhist /etc/systemd/system/*.wants/sockhist-collect*
if getent group sockhist >/dev/null; then groupdel sockhist; fi
# Slim container images tell dpkg to skip man pages and documentation (path-exclude); a standard
# system installs them, and so must this one for the checks below to see what the package ships.
{ grep -l '^path-exclude' /etc/dpkg/dpkg.cfg.d/* 2>/dev/null || true; } | xargs -r rm -f
# Each path the package ships, and whether it existed before (shared directories such as /usr/bin).
mapfile -t shipped < <(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./|/|; s|/$||' | grep -v '^/\?$')
declare -A existed=()
for path in "${shipped[@]}"; do [ -e "$path" ] && existed[$path]=1; done

step "dpkg -i"
dpkg -i "$deb" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -i failed"; }

# The group and the state directory the postinst creates.
gid=$(getent group sockhist | cut -d: -f3) || fail "no sockhist group after install"
[ "$gid" -lt 1000 ] || fail "sockhist is not a system group (gid $gid)"
[ "$(stat -c '%U:%G %a' /var/lib/sockhist)" = "root:sockhist 750" ] ||
  fail "/var/lib/sockhist is $(stat -c '%U:%G %a' /var/lib/sockhist), not root:sockhist 750"

# Stripped binaries (the symbols went to the -dbgsym package) that run.
for bin in /usr/sbin/sockhist-collect /usr/bin/sockhist; do
  [ -x "$bin" ] || fail "$bin is not installed"
  ! readelf -S "$bin" | grep -q '\.debug_info' || fail "$bin is not stripped"
  "$bin" --version >/dev/null || fail "$bin does not run"
done

# The units: the timer enabled, the loop service not; all three pass systemd-analyze verify.
[ "$(readlink /etc/systemd/system/timers.target.wants/sockhist-collect.timer)" = \
  /lib/systemd/system/sockhist-collect.timer ] || fail "the timer was not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/sockhist-collect-loop.service ] ||
  fail "the loop service was enabled beside the timer"
units=(/lib/systemd/system/sockhist-collect.service /lib/systemd/system/sockhist-collect.timer
       /lib/systemd/system/sockhist-collect-loop.service)
out=$(systemd-analyze verify "${units[@]}" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"

# The timer service's ExecStart exactly as the unit states it, with the unit's credentials: its
# group, umask, capability bounding set and no new privileges (what systemd would apply).
unit=/lib/systemd/system/sockhist-collect.service
value() { sed -n "s/^$1=//p" "$unit"; }
exec_start=$(value ExecStart)
[ "$(value Group)" = sockhist ] || fail "$unit does not run in the reader group"
case "$exec_start" in /usr/sbin/sockhist-collect\ *) ;; *) fail "ExecStart runs $exec_start" ;; esac
caps=$(value CapabilityBoundingSet | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
# The users: a reader in the group, and another user outside it who also owns a listening socket
# whose owner only the unit's capabilities can see.
useradd --system --no-create-home --groups sockhist sockreader
useradd --system --no-create-home sockoutsider
as() { local user=$1; shift; setpriv --reuid "$user" --regid "$user" --init-groups -- "$@"; }
# perl-base, which every Debian system has, carries IO::Socket::INET.
setpriv --reuid sockoutsider --regid sockoutsider --init-groups -- perl -MIO::Socket::INET -e '$| = 1;
  my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 5) or die "listen: $!";
  print $s->sockport, "\n"; sleep 900' >/tmp/listener.port 2>/tmp/listener.err &
listener=$!
trap 'kill $listener 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s /tmp/listener.port ] && break; sleep 0.1; done
port=$(cat /tmp/listener.port)
[ -n "$port" ] || fail "the other user's listener did not start: $(cat /tmp/listener.err)"
owner_of_listener() {
  sqlite3 -readonly "$1" "SELECT coalesce(pid, 'none') || ' ' || coalesce(user, '?') FROM v_snapshot_sockets
    WHERE snapshot_id = (SELECT max(snapshot_id) FROM v_snapshots) AND proto = 'tcp' AND state = 'LISTEN'
      AND local_addr = '127.0.0.1' AND local_port = $port"
}
run_as_unit() {  # the unit's group, umask, bounding set and no-new-privs, as systemd applies them
  local bounding=$1 command=$2
  (umask "$(value UMask)" &&
    setpriv --regid sockhist --clear-groups --bounding-set "$bounding" --inh-caps -all --no-new-privs \
      /bin/sh -c "$command")
}
step "ExecStart: $exec_start (bounding set $caps)"
run_as_unit "-all,$caps" "$exec_start" || fail "the unit's ExecStart failed"
[ "$(stat -c '%U:%G %a' "$db")" = "root:sockhist 640" ] ||
  fail "$db is $(stat -c '%U:%G %a' "$db"), not root:sockhist 640"
[ "$(snapshots)" = 1 ] || fail "the unit's ExecStart stored $(snapshots) snapshots, not 1"
[ "$(owner_of_listener "$db")" = "$listener sockoutsider" ] ||
  fail "with the unit's capabilities the other user's listener has owner '$(owner_of_listener "$db")', not $listener"
read -r source owners < <(sqlite3 -readonly -separator ' ' "$db" 'SELECT source, owners FROM v_snapshots')
# The same picture unrestricted root gets (a sandbox may hide a process even from root), and a
# control: with no capabilities the listener's owner is unknown and the snapshot says partial.
sockhist-collect --db /tmp/root.db
[ "$(sqlite3 -readonly /tmp/root.db 'SELECT owners FROM v_snapshots')" = "$owners" ] ||
  fail "the unit's capabilities give owners $owners, unrestricted root $(sqlite3 -readonly /tmp/root.db 'SELECT owners FROM v_snapshots')"
run_as_unit -all "sockhist-collect --db /tmp/nocaps.db" || fail "the collector without capabilities failed"
[ "$(owner_of_listener /tmp/nocaps.db)" = "none sockoutsider" ] &&
  [ "$(sqlite3 -readonly /tmp/nocaps.db 'SELECT owners FROM v_snapshots')" = partial ] ||
  fail "without capabilities the listener's owner was still found: the check above proves nothing"
step "snapshot 1: source $source, owners $owners (as unrestricted root), the other user's listener owned by $listener"

# The metrics drop-in the package ships as an example, installed as its comment says: the units
# with it still verify, and its ExecStartPost, run with the drop-in's umask, leaves a file the
# exporter's user (another user than root, outside sockhist) can read.
dropin=/etc/systemd/system/sockhist-collect.service.d
mkdir -p "$dropin" /var/lib/prometheus/node-exporter
cp /usr/share/doc/sockhist/examples/metrics.conf "$dropin/"
out=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$out" ] || fail "systemd-analyze verify with metrics.conf: $out"
post=$(sed -n 's/^ExecStartPost=//p' "$dropin/metrics.conf")
prom=$(sed -n 's/.*--output \([^ ]*\).*/\1/p' <<<"$post")
(umask "$(sed -n 's/^UMask=//p' "$dropin/metrics.conf")" &&
  setpriv --regid sockhist --clear-groups --bounding-set "-all,$caps" --inh-caps -all --no-new-privs \
    /bin/sh -c "$post") || fail "the drop-in's ExecStartPost failed"
[ "$(stat -c %a "$prom")" = 644 ] || fail "$prom is $(stat -c '%U:%G %a' "$prom"), not 644"
exporter=$(getent passwd prometheus >/dev/null && echo prometheus || echo nobody)
setpriv --reuid "$exporter" --regid "$exporter" --init-groups -- grep -q '^sockhist_sockets{' "$prom" ||
  fail "$exporter cannot read $prom ($(stat -c '%U:%G %a' "$prom"))"
rm -rf "$dropin" "$prom"

# A member of the group reads it; a user outside it is refused.
as sockreader sockhist snapshots --db "$db" >/tmp/reader.out 2>&1 || {
  cat /tmp/reader.out >&2
  fail "a member of sockhist cannot read the database"
}
as sockreader sockhist show --db "$db" -tan >/dev/null || fail "a member of sockhist cannot run show"
[ "$(as sockreader sqlite3 -readonly "$db" 'SELECT count(*) FROM v_snapshots')" = 1 ] ||
  fail "a member of sockhist cannot read it with sqlite3 -readonly"
set +e
as sockoutsider sockhist snapshots --db "$db" >/tmp/outsider.out 2>&1
status=$?
set -e
[ "$status" = 2 ] || fail "a user outside sockhist got exit $status reading the database, not 2"
grep -q 'Permission denied\|permission' /tmp/outsider.out || fail "the refusal does not say why: $(cat /tmp/outsider.out)"

# Every man page the package installs, rendered with warnings on.
mapfile -t pages < <(dpkg -L sockhist | grep '^/usr/share/man/.*\.gz$')
[ "${#pages[@]}" -ge 2 ] || fail "the package installs ${#pages[@]} man pages"
for page in "${pages[@]}"; do
  warnings=$(zcat "$page" | groff -man -Tutf8 -ww -z 2>&1)
  [ -z "$warnings" ] || fail "$page: $warnings"
  warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  [ -z "$warnings" ] || fail "man -l $page: $warnings"
done
step "${#pages[@]} man pages render without a warning"

# The schema's documentation where --help and the man pages say it is; bash completion for both.
[ -f /usr/share/doc/sockhist/schema/README.md ] || fail "no /usr/share/doc/sockhist/schema/README.md"
[ -f /usr/share/doc/sockhist/schema/clickhouse/README.md ] || fail "no /usr/share/doc/sockhist/schema/clickhouse/README.md"
zcat /usr/share/man/man1/sockhist.1.gz | grep -q '/usr/share/doc/sockhist/schema/clickhouse/README.md' ||
  fail "sockhist(1) no longer names the central schema's documentation"
zcat /usr/share/man/man8/sockhist-collect.8.gz | grep -q '/usr/share/doc/sockhist/schema/README.md' ||
  fail "the man page no longer names the schema's documentation"
for name in sockhist sockhist-collect; do
  bash -c ". /usr/share/bash-completion/completions/$name && complete -p $name" >/dev/null ||
    fail "the bash completion for $name does not register"
done

if command -v zsh >/dev/null; then
  zsh -f -c 'fpath=(/usr/share/zsh/vendor-completions $fpath); autoload -Uz compinit; compinit -u -D
    [[ $_comps[sockhist] == _sockhist && $_comps[sockhist-collect] == _sockhist ]]' ||
    fail "zsh's compinit does not find the completion for sockhist and sockhist-collect"
fi

# The cron file: a conffile, and its line as cron's shell runs it. Without systemd it takes a
# snapshot, silently; with /run/systemd/system present (systemd booted) it stands down.
dpkg-query -W -f='${Conffiles}\n' sockhist | grep -q '^ /etc/cron.d/sockhist ' ||
  fail "/etc/cron.d/sockhist is not a conffile"
cron_line=$(sed -n 's/^\* \* \* \* \* root //p' /etc/cron.d/sockhist)
[ -n "$cron_line" ] || fail "no every-minute line in /etc/cron.d/sockhist"
out=$(sh -c "$cron_line" 2>&1) || fail "the cron line failed: $out"
[ -z "$out" ] || fail "the cron line printed (cron would mail it): $out"
[ "$(snapshots)" = 2 ] || fail "the cron line without systemd took no snapshot"
mkdir -p /run/systemd/system
out=$(sh -c "$cron_line" 2>&1) || fail "the cron line failed beside systemd: $out"
[ -z "$out" ] && [ "$(snapshots)" = 2 ] || fail "the cron line ran although systemd runs the timer"
rmdir /run/systemd/system

step "dpkg -i again (a reinstall runs the postinst on an installed system)"
dpkg -i "$deb" >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "reinstalling failed"; }
[ "$(getent group sockhist | cut -d: -f3)" = "$gid" ] || fail "the reinstall changed the group"
[ "$(stat -c '%U:%G %a' /var/lib/sockhist)" = "root:sockhist 750" ] || fail "the reinstall changed /var/lib/sockhist"
[ "$(snapshots)" = 2 ] || fail "the reinstall lost snapshots"

step "dpkg -r"
dpkg -r sockhist >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -r failed"; }
[ ! -e /usr/sbin/sockhist-collect ] && [ ! -e /usr/bin/sockhist ] || fail "dpkg -r left the binaries"
[ "$(snapshots)" = 2 ] || fail "dpkg -r did not keep the history"
[ -f /etc/cron.d/sockhist ] || fail "dpkg -r removed the conffile /etc/cron.d/sockhist"
before=$(sha256sum "$db")
out=$(sh -c "$cron_line" 2>&1) || fail "the cron line fails once the package is removed: $out"
[ -z "$out" ] || fail "the cron line prints once the package is removed (cron would mail it every minute): $out"
[ "$(sha256sum "$db")" = "$before" ] || fail "the cron line changed the database with the collector gone"

step "dpkg -P"
dpkg -P sockhist >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -P failed"; }
[ ! -e /var/lib/sockhist ] || fail "purge left /var/lib/sockhist"
[ ! -e /etc/cron.d/sockhist ] || fail "purge left /etc/cron.d/sockhist"
[ ! -L /etc/systemd/system/timers.target.wants/sockhist-collect.timer ] || fail "purge left the timer enabled"
! dpkg-query -W -f='${Status}\n' sockhist 2>/dev/null | grep -q installed || fail "dpkg still lists sockhist"
left=()
for path in "${shipped[@]}"; do
  if [ -z "${existed[$path]:-}" ] && [ -e "$path" ]; then left+=("$path"); fi
done
[ "${#left[@]}" = 0 ] || fail "purge left: ${left[*]}"
getent group sockhist >/dev/null || fail "purge removed the sockhist group (Debian keeps system groups)"
step "ok: ${#shipped[@]} paths shipped, none left after purge; the sockhist group kept"
