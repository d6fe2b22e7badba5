#!/usr/bin/env bash
# The Debian package as an operator meets it. dpkg-buildpackage builds it from this tree, lintian
# checks it, and package_checks.sh installs it with dpkg -i, runs it, removes it and purges it on a
# throw-away copy of this system: an overlay of / in a private mount namespace, chrooted into, with
# its own empty /run and /tmp. Nothing on the machine running the test changes.
# Exit 77 (ctest: skipped) when not root: dpkg, mounts and chroot need it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)

fail() { echo "package_test: $*" >&2; exit 1; }

if [ "${1:-}" = --inside ]; then
  # In the private mount namespace: the overlay, then the checks in a chroot of it.
  work=$2
  mount -t tmpfs -o size=2g,mode=0755 tmpfs "$work/layer"
  mkdir "$work/layer/upper" "$work/layer/work" "$work/root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$work/layer/upper,workdir=$work/layer/work" "$work/root"
  root=$work/root
  mount --rbind /proc "$root/proc"
  mount --rbind /dev "$root/dev"
  # An empty /run: no /run/systemd/system, so the maintainer scripts and the cron line see a
  # system not booted with systemd whatever this machine runs; the checks create it when they
  # need systemd to seem present.
  mount -t tmpfs -o mode=0755 tmpfs "$root/run"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  cp "$work"/out/sockhist_*.deb "$here/package_checks.sh" "$root/tmp/"
  # Debian's way of saying "start no service": honoured by deb-systemd-invoke and invoke-rc.d.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  exec chroot "$root" /bin/bash /tmp/package_checks.sh /tmp/"$(basename "$work"/out/sockhist_*.deb)"
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "package_test: skipped: installing a package needs root (dpkg -i, a mount namespace, chroot)"
  exit 77
fi
for tool in dpkg-buildpackage dh lintian unshare chroot; do
  command -v "$tool" >/dev/null || fail "$tool is missing; ./dev.sh installs it"
done

work=$(mktemp -d /tmp/sockhist-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/out" "$work/layer"

echo "package_test: ./dev.sh package (dpkg-buildpackage -b on a copy of the tree)"
(cd "$src" && ./dev.sh package "$work/out") >/dev/null || fail "./dev.sh package failed"
deb=$(echo "$work"/out/sockhist_*_*.deb)
[ -f "$deb" ] || fail "no package was built"
[ -f "$(echo "$work"/out/sockhist-dbgsym_*.deb)" ] || fail "no -dbgsym package: the symbols were not split off"

# lintian with every tag shown, down to pedantic; the overrides in debian/ say why each is there.
status=0
lintian_out=$(lintian --display-info --pedantic --fail-on error,warning,info,pedantic \
                "$work"/out/sockhist_*.changes 2>&1) || status=$?
lintian_out=$(grep -v '^running with root privileges' <<<"$lintian_out" || true)
[ "$status" = 0 ] && [ -z "$lintian_out" ] || fail "lintian (exit $status): $lintian_out"
echo "package_test: lintian --pedantic --display-info: nothing beyond the overrides"

# Dependencies computed from the binaries: each shared library the programs link.
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libsqlite3-0 libmnl0 libfmt9 libstdc++6 adduser; do
  case "$depends" in *"$lib"*) ;; *) fail "Depends lacks $lib: $depends" ;; esac
done

unshare --mount --propagation private "$0" --inside "$work"
