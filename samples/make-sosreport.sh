#!/usr/bin/env bash
# Builds samples/sosreport-web3: a real `sos report` (Debian's sosreport package, 4.0) taken inside
# a network namespace holding the population of samples/sosreport-story.py, with a second
# namespace "blue" that sos lists and runs `ip netns exec blue ...` in. The report is then pruned
# to the files `sockhist import sosreport` reads (the rest is this VM's, not the sample's).
# Usage (root; apt-get install sosreport first): samples/make-sosreport.sh [DEST]
set -euo pipefail
dest=$(realpath -m "${1:-samples/sosreport-web3}")
here=$(cd "$(dirname "$0")" && pwd)
command -v sos >/dev/null || { echo "make-sosreport.sh: sos not found (apt-get install sosreport)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "make-sosreport.sh: needs root (network namespaces)" >&2; exit 2; }

work=$(mktemp -d /tmp/sockhist-sos.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del sockhist-web3 2>/dev/null || true
  ip netns del blue 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add sockhist-web3
ip netns add blue
ip -n sockhist-web3 link set lo up
ip -n sockhist-web3 addr add 10.20.0.3/32 dev lo  # the service address (on lo: no module needed)
ip -n blue link set lo up

# Each role runs as its own name (comm is the name the program was started by).
start() {  # NAMESPACE ROLE
  ln -sf "$(readlink -f /usr/bin/python3)" "$work/$2"
  ip netns exec "$1" "$work/$2" "$here/sosreport-story.py" > "$work/$2.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q ready "$work/$2.out" 2>/dev/null && return; sleep 0.1; done
  echo "make-sosreport.sh: $2 did not start: $(cat "$work/$2.out")" >&2
  exit 1
}
start sockhist-web3 leaky-api
start sockhist-web3 cache
start sockhist-web3 resolver
start sockhist-web3 web
start sockhist-web3 poller
start sockhist-web3 batch
start blue agent
sleep 2

# sos in the population's namespace (so that its /proc/net copies are of it) under the hostname
# web3; the namespace's /run/netns name is removed first so that sos lists only "blue" as a
# namespace of its own (the processes keep the namespace alive).
holder=${pids[0]}
ip netns del sockhist-web3
nsenter --net=/proc/"$holder"/ns/net unshare --uts sh -c "hostname web3 && sos report --batch \
  -o networking,host,date,kernel,process --build --tmp-dir $work" > "$work/sos.log" 2>&1
report=$(ls -d "$work"/sosreport-*/ | head -1)

# Prune: the files sockhist reads, with sos's own paths and root symlinks.
rm -rf "$dest"
mkdir -p "$dest"
cd "$report"
self=$(readlink proc/self)
keep=(version.txt hostname date uname uptime netstat ps
      proc/self proc/net proc/sys/kernel/random/boot_id
      sos_commands/date/date sos_commands/date/date_--utc
      sos_commands/host/hostname sos_commands/host/uptime sos_commands/host/hostnamectl_status
      sos_commands/kernel/uname_-a
      sos_commands/networking/netstat_-W_-neopa sos_commands/networking/netstat_-s
      sos_commands/networking/ip_netns)
for f in tcp tcp6 udp udp6 unix snmp snmp6 netstat sockstat sockstat6; do keep+=("proc/$self/net/$f"); done
for f in sos_commands/networking/ip_netns_exec_*_{netstat_-W_-neopa,netstat_-s,ss_-peaonmi,nstat_-zas}; do
  [ -e "$f" ] && keep+=("$f")
done
for f in "${keep[@]}"; do
  if [ -e "$f" ] || [ -L "$f" ]; then cp -a --parents "$f" "$dest"; fi
done
cd - >/dev/null
# sysctl -a: only the settings sockhist records. ps auxwww: only the header and the processes that
# own sockets in the report (the rest is this VM's).
grep -E '^net\.(ipv4\.(tcp_fin_timeout|tcp_max_tw_buckets|tcp_tw_reuse|ip_local_port_range)|core\.somaxconn) ' \
  "$report/sos_commands/kernel/sysctl_-a" > "$dest/sos_commands/kernel/sysctl_-a"
mkdir -p "$dest/sos_commands/process"
owners=$(cat "$report"/sos_commands/networking/*neopa | grep -oE ' [0-9]+/[^ ]+' | cut -d/ -f1 | sort -u | tr -d ' ')
{
  head -1 "$report/sos_commands/process/ps_auxwww"
  for p in $owners; do awk -v p="$p" '$2 == p' "$report/sos_commands/process/ps_auxwww"; done
} > "$dest/sos_commands/process/ps_auxwww"
echo "make-sosreport.sh: $dest from $(basename "$report") ($(cat "$dest/sos_commands/date/date_--utc"))"
