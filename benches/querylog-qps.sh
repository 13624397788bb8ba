#!/usr/bin/env bash
# Server throughput with the query log on vs off: the release binary answering dnsperf on
# loopback, alternating rounds (on, off, on, off ...), medians and their ratio.
#
# Traffic: half blocked names (answered by policy, no upstream) and half allowed names that
# are cached after the warm-up (a local unbound answers the first miss), so the figure is
# the pipeline plus the record stage, without upstream noise. Every query is logged when
# the log is on (SQLite, batched by the writer thread).
#
#   cargo build --release
#   bash benches/querylog-qps.sh            # ROUNDS=3 SECONDS_PER_ROUND=15 by default
#
# Needs dnsperf and unbound (Debian: apt-get install dnsperf unbound). Loopback only;
# every run is bounded by dnsperf -l.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_ROUND:-15}
BIN=${CHAPERONE_BIN:-$PWD/target/release/chaperone}
DNS_PORT=${DNS_PORT:-15455}
ADMIN_PORT=${ADMIN_PORT:-15456}
UP_PORT=${UP_PORT:-15457}
for tool in dnsperf unbound; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The upstream: unbound answering a local zone of 200 names, nothing else.
{
  cat <<CONF
server:
  interface: 127.0.0.1@$UP_PORT
  port: $UP_PORT
  do-daemonize: no
  use-syslog: no
  verbosity: 0
  logfile: "$WORK/unbound.log"
  chroot: ""
  username: ""
  directory: "$WORK"
  pidfile: ""
  access-control: 127.0.0.0/8 allow
  num-threads: 1
  local-zone: "bench.test." static
CONF
  for i in $(seq 1 200); do echo "  local-data: \"www$i.bench.test. 3600 IN A 192.0.2.$((i % 250 + 1))\""; done
} > "$WORK/unbound.conf"
unbound -c "$WORK/unbound.conf" &
pids+=($!)

# 2000 blocked names, and the query file: blocked and allowed names interleaved.
for i in $(seq 1 2000); do echo "ads$i.blocked.test"; done > "$WORK/blocked.txt"
for i in $(seq 1 2000); do
  echo "ads$i.blocked.test A"
  echo "www$(( (i % 200) + 1 )).bench.test A"
done > "$WORK/queries.txt"

"$BIN" compile --out "$WORK/blocked.fstb" "ads=domains:$WORK/blocked.txt" >/dev/null

config() { # $1: true|false (query log)
  cat > "$WORK/chaperone.toml" <<TOML
[server]
listen = ["127.0.0.1:$DNS_PORT"]

# Load tests send from one address: no rate limit.
[ratelimit]
enabled = false
[upstream]
servers = ["127.0.0.1:$UP_PORT"]

[lists]
bundle = "blocked.fstb"

[[network]]
cidrs = ["127.0.0.0/8"]
group = "pupils"

[group.pupils]
block = ["ads"]

[querylog]
enabled = $1
retention_days = 30

[storage]
path = "$WORK/chaperone-$1.db"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
TOML
}

metric() { # $1: metric name → value (0 if absent)
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null \
    | awk -v m="$1" '$1 == m { print $2; found=1 } END { if (!found) print 0 }'
}

cpu_ticks() { # $1: pid → user+system clock ticks of the whole process
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

ctx_switches() { # $1: pid → context switches of all its threads
  cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n + 0 }'
}

round() { # $1: true|false → prints "QPS CPU-µs-per-query"
  config "$1"
  RUST_LOG=warn "$BIN" serve --config "$WORK/chaperone.toml" 2>"$WORK/serve.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    dig +short +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 www1.bench.test >/dev/null 2>&1 && break
    sleep 0.1
  done
  # Warm the cache (every allowed name once) and the writer.
  dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/queries.txt" -n 1 >/dev/null 2>&1
  local cpu0 ctx0 out qps done_ cpu ctx
  cpu0=$(cpu_ticks "$pid")
  ctx0=$(ctx_switches "$pid")
  out=$(dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/queries.txt" -l "$SECS" -c 4 -T 1 -q 256 2>&1)
  sleep 1 # let the writer finish what it was given
  cpu=$(( $(cpu_ticks "$pid") - cpu0 ))
  ctx=$(( $(ctx_switches "$pid") - ctx0 ))
  qps=$(awk '/Queries per second/ { print $4 }' <<<"$out")
  done_=$(awk '/Queries completed/ { print $3 }' <<<"$out")
  local written dropped
  written=$(metric chaperone_querylog_written_total)
  dropped=$(metric chaperone_querylog_dropped_total)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  local tick
  tick=$(getconf CLK_TCK)
  local us_per_q ctx_per_kq
  us_per_q=$(awk -v c="$cpu" -v t="$tick" -v n="$done_" 'BEGIN { printf "%.2f", c / t * 1e6 / n }')
  ctx_per_kq=$(awk -v c="$ctx" -v n="$done_" 'BEGIN { printf "%.0f", c * 1000 / n }')
  echo "querylog=$1 qps=$qps queries=$done_ cpu_us/query=$us_per_q ctx_switches/1000q=$ctx_per_kq written=$written dropped=$dropped" >&2
  echo "$qps $us_per_q"
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

on=()
off=()
on_cpu=()
off_cpu=()
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  read -r q c < <(round true)
  on+=("$q")
  on_cpu+=("$c")
  read -r q c < <(round false)
  off+=("$q")
  off_cpu+=("$c")
done
m_on=$(printf '%s\n' "${on[@]}" | median)
m_off=$(printf '%s\n' "${off[@]}" | median)
c_on=$(printf '%s\n' "${on_cpu[@]}" | median)
c_off=$(printf '%s\n' "${off_cpu[@]}" | median)
echo
echo "| query log | QPS per round | median QPS | median server CPU µs/query |"
echo "|---|---|---|---|"
echo "| on (SQLite) | ${on[*]} | $m_on | $c_on |"
echo "| off | ${off[*]} | $m_off | $c_off |"
awk -v a="$m_on" -v b="$m_off" -v x="$c_on" -v y="$c_off" \
  'BEGIN { printf "\nQPS log on / log off = %.3f; CPU per query log on / log off = %.3f\n", a / b, x / y }'
