#!/usr/bin/env bash
# Builds samples/history-busy: four captures of this machine while sockhist-population changes a
# busy socket population (IPv4 and IPv6 listeners, established pairs, CLOSE_WAIT, TIME_WAIT,
# FIN_WAIT2, UDP, UNIX). The fourth capture is of a fresh population with boot_id replaced, to
# stand for the same host after a reboot.
# Usage: samples/make-history.sh BUILD_DIR   (run as root from the repository root)
set -euo pipefail
build=${1:?usage: make-history.sh BUILD_DIR}
out=samples/history-busy
rm -rf "$out"; mkdir -p "$out"
start_population() {
  coproc POP { "$build/tests/sockhist-population"; }
  read -r _ <&"${POP[0]}"
}
stop_population() { echo quit >&"${POP[1]}"; wait "$POP_PID" 2>/dev/null || true; }
cmd() { echo "$*" >&"${POP[1]}"; read -r reply <&"${POP[0]}"; [[ $reply == ok* ]] || { echo "$*: $reply" >&2; exit 1; }; }
start_population
cmd listen 18080 4; cmd listen 18443 6
cmd connect 20 18080 4; cmd connect 10 18443 6
cmd udp 3 4; cmd udp 2 6; cmd unix 3 /tmp/sockhist-sample.sock; cmd unix 2 @sockhist-sample-abstract
samples/capture-proc.sh "$out/00"
sleep 2
cmd close-wait 4; cmd time-wait 6; cmd connect 5 18080 4
samples/capture-proc.sh "$out/01"
sleep 2
cmd time-wait 5; cmd drop 3
samples/capture-proc.sh "$out/02"
stop_population
sleep 1
start_population
cmd listen 18080 4; cmd connect 3 18080 4; cmd udp 1 4
samples/capture-proc.sh "$out/03"
echo "5f1c7d3e-0000-4000-8000-00000000b007" > "$out/03/proc/sys/kernel/random/boot_id"
stop_population
