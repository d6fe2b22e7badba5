#!/usr/bin/env bash
# Copies the parts of /proc that sockhist-collect reads into DEST/proc, plus DEST/captured_at
# (UTC ISO-8601). Process directories are copied only for processes holding sockets, with their
# fd links (socket:[INODE]) so that owners can be attributed from the copy.
# Usage: samples/capture-proc.sh DEST
set -euo pipefail
dest=${1:?usage: capture-proc.sh DEST}
root=$dest/proc
rm -rf "$root"
mkdir -p "$root/net" "$root/sys/kernel/random" "$root/sys/net/ipv4" "$root/sys/net/core"
date -u +%Y-%m-%dT%H:%M:%S.%3NZ > "$dest/captured_at"
for f in tcp tcp6 udp udp6 unix snmp snmp6 netstat sockstat sockstat6; do
  [ -e /proc/net/$f ] && cat /proc/net/$f > "$root/net/$f"
done
for f in hostname osrelease random/boot_id; do cat /proc/sys/kernel/$f > "$root/sys/kernel/$f"; done
for f in tcp_fin_timeout tcp_max_tw_buckets ip_local_port_range tcp_tw_reuse; do
  cat /proc/sys/net/ipv4/$f > "$root/sys/net/ipv4/$f"
done
cat /proc/sys/net/core/somaxconn > "$root/sys/net/core/somaxconn"
cat /proc/uptime > "$root/uptime"
mkdir -p "$root/self/ns"
ln -s "$(readlink /proc/self/ns/net)" "$root/self/ns/net"
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  links=$(find "$dir/fd" -maxdepth 1 -type l -lname 'socket:*' 2>/dev/null || true)
  [ -n "$links" ] || continue
  mkdir -p "$root/$pid/fd"
  cat "$dir/stat" > "$root/$pid/stat" 2>/dev/null || true
  cat "$dir/status" > "$root/$pid/status" 2>/dev/null || true
  cat "$dir/cmdline" > "$root/$pid/cmdline" 2>/dev/null || true
  for link in $links; do ln -s "$(readlink "$link")" "$root/$pid/fd/${link##*/}"; done
done
