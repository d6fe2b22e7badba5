# Shared by bench/run and bench/analyzer (sourced, with $me set to the script's name): the build,
# a private network namespace, a socket population held by sockhist-population processes, and
# the measuring helpers. Needs root.
if [ "$(id -u)" -ne 0 ]; then
  echo "$me: error: needs root (it makes a private network namespace)" >&2
  exit 2
fi

./dev.sh build >/dev/null
build=${SOCKHIST_BUILD_DIR:-build}
measure=$build/bench/sockhist-measure
population=$build/tests/sockhist-population
collect=$(realpath "$build/collector/sockhist-collect")
floors=$build/bench/sockhist-floors
for tool in ss netstat; do command -v $tool >/dev/null || { echo "$me: error: $tool is not installed" >&2; exit 2; }; done

ns=sockhist-bench-$$
work=$(mktemp -d /tmp/sockhist-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
nspath=/run/netns/$ns
fresh_namespace() {  # a new namespace per size: TIME_WAIT left by one size must not count in the next
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # Room for 100,000 connections on loopback: ephemeral ports are shared across listener ports.
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 60999"
}
ulimit -n 20000

# --- the population -----------------------------------------------------------------------------
per_process=7000   # connections per sockhist-population process (two descriptors each)
instances=0
start_population() {
  local size=$1
  local established=$((size * 40 / 100)) time_wait=$((size * 10 / 100)) close_wait=$((size * 5 / 100))
  local total=$((established + time_wait + close_wait))
  instances=$(((total + per_process - 1) / per_process))
  for ((i = 0; i < instances; i++)); do
    mkfifo "$work/in$i" "$work/out$i"
    ip netns exec "$ns" "$population" <"$work/in$i" >"$work/out$i" &
    pids+=($!)
    exec {fd}>"$work/in$i"; eval "IN$i=$fd"
    exec {fd}<"$work/out$i"; eval "OUT$i=$fd"
    read -r _ <&"$(eval echo "\$OUT$i")"
  done
  for ((i = 0; i < instances; i++)); do
    local share=$((total / instances)) tw=$((time_wait / instances)) cw=$((close_wait / instances))
    tell "$i" listen $((61000 + i)) 4
    tell "$i" listen $((62000 + i)) 6
    tell "$i" connect $((share * 3 / 4)) $((61000 + i)) 4
    tell "$i" connect $((share - share * 3 / 4)) $((62000 + i)) 6
    tell "$i" time-wait "$tw"
    tell "$i" close-wait "$cw"
  done
  tell 0 udp 50 4
  tell 0 udp 50 6
  tell 0 unix 50 "$work/bench.sock"
}
tell() {
  local i=$1; shift
  local in out reply
  in=$(eval echo "\$IN$i"); out=$(eval echo "\$OUT$i")
  echo "$*" >&"$in"
  read -r reply <&"$out"
  [[ $reply == ok* ]] || { echo "$me: error: population $i: $*: $reply" >&2; exit 1; }
}
change_queues() {  # one more unread byte in 10 % of the TCP sockets
  local size=$1
  for ((i = 0; i < instances; i++)); do
    tell "$i" queues $((size * 10 / 100 / instances))
  done
}
churn() {  # close 5 % client-first (TIME_WAIT) and open as many new connections
  local size=$1
  local each=$((size * 5 / 100 / 4 / instances))  # each pair closed or opened changes two sockets
  for ((i = 0; i < instances; i++)); do
    tell "$i" time-wait "$each"
    tell "$i" connect "$each" $((61000 + i)) 4
  done
}
stop_population() {
  for ((i = 0; i < instances; i++)); do
    echo quit >&"$(eval echo "\$IN$i")" || true
    eval "exec {IN$i}>&- {OUT$i}<&-"
  done
  wait 2>/dev/null || true
  pids=()
  rm -f "$work"/in* "$work"/out*
}
state_summary() {
  ip netns exec "$ns" ss -s | sed -n 's/^TCP: *//p'
}

# --- measuring ----------------------------------------------------------------------------------
declare -A samples
run() {  # run NAME COMMAND...: one sample of wall, cpu, rss
  local name=$1; shift
  local out
  out=$("$measure" --netns "$nspath" -- "$@")
  read -r wall cpu rss code <<<"$out"
  local ok=0  # the reports that find things (close-wait, time-wait, check) exit 1 when they do
  case $name in "sockhist close-wait"* | "sockhist time-wait"* | "sockhist check"* | "sockhist fleet close-wait"*) ok=1 ;; esac
  [ "$code" -le "$ok" ] || { echo "$me: error: $name exited $code" >&2; exit 1; }
  samples[$name]+="$wall $cpu $rss"$'\n'
}
median() {  # median NAME FIELD(1 wall, 2 cpu, 3 rss)
  printf '%s' "${samples[$1]}" | awk -v f="$2" 'NF { print $f }' | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
db_bytes() { sqlite3 -readonly "$1" 'SELECT page_count * page_size FROM pragma_page_count, pragma_page_size'; }
record_bytes() { samples[$1]+="$2"$'\n'; }
median_bytes() { printf '%s' "${samples[$1]}" | awk 'NF' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

