#!/usr/bin/env bash
# The query log's cost on realistic traffic: Chaperone with the log off, on (SQLite, the
# default) and on (JSON lines), rounds alternating off / sqlite / jsonl, on the same query
# file, forwarding to a local unbound that answers every name (`local-zone: "." redirect`),
# blocking the real lists (UT1 all categories, UT1 older malware/phishing, StevenBlack).
#
# Each round warms the cache with one pass over the file, then measures dnsperf -l SECS.
# Besides QPS it splits the server's CPU per query between the query log writer thread
# ("querylog") and everything else (the DNS path), from /proc, so the writer's share is
# visible even on a busy machine where QPS is noisy.
#
#   cargo build --release
#   QUERIES=/path/to/queries.txt bash benches/querylog-real.sh
#       # ROUNDS=3 SECONDS_PER_ROUND=15 MODES="off sqlite jsonl" by default
#   BINS="before=/tmp/chaperone-old after=target/release/chaperone" ... # compare builds,
#       # alternating them too (each mode of each build every round)
#
# QUERIES: a dnsperf query file ("name TYPE" per line). Without it the file is made with
# benches/querygen.py (the realistic school-traffic generator), seeded, when present.
# Needs dnsperf, unbound, xz. Loopback only; every load run is bounded by dnsperf -l.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_ROUND:-15}
MODES=${MODES:-off sqlite jsonl}
BIN=${CHAPERONE_BIN:-$ROOT/target/release/chaperone}
LISTS=${LISTS:-$ROOT/../shared/lists-real}
[ -d "$LISTS" ] || LISTS=/work/shared/lists-real
DNS_PORT=${DNS_PORT:-15475}
ADMIN_PORT=${ADMIN_PORT:-15476}
UP_PORT=${UP_PORT:-15477}
for tool in dnsperf unbound xz; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${QUERIES:-}" ]; then
  [ -f "$ROOT/benches/querygen.py" ] || { echo "set QUERIES=FILE (or add benches/querygen.py)" >&2; exit 1; }
  python3 "$ROOT/benches/querygen.py" --seed 1 --out "$WORK/queries.txt" >&2
  QUERIES=$WORK/queries.txt
fi

# The real lists, compiled once into a bundle (as a school would).
xz -dc "$LISTS/stevenblack/blackhole.xz" | awk '$1 == "0.0.0.0" && $2 != "0.0.0.0" { print $2 }' > "$WORK/sb.txt"
xz -dc "$LISTS/ut1-older/malware/domains.xz" > "$WORK/malware.txt"
xz -dc "$LISTS/ut1-older/phishing/domains.xz" > "$WORK/phishing.txt"
"$BIN" compile --out "$WORK/real.fstb" "ut1:$LISTS/ut1" \
  "old_malware=domains:$WORK/malware.txt" "old_phishing=domains:$WORK/phishing.txt" \
  "stevenblack=domains:$WORK/sb.txt" >/dev/null
CATS=$("$BIN" compile --out "$WORK/probe.fstb" "ut1:$LISTS/ut1" 2>&1 \
  | awk '/ names / && $1 !~ /^[0-9]/ && $1 !~ /liste/ { printf "%s\"%s\"", sep, $1; sep = ", " }')
CATS="$CATS, \"old_malware\", \"old_phishing\", \"stevenblack\""

# The upstream: unbound answering every name with A and AAAA data.
cat > "$WORK/unbound.conf" <<CONF
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
  local-zone: "." redirect
  local-data: ". 3600 IN A 192.0.2.1"
  local-data: ". 3600 IN AAAA 2001:db8::1"
CONF
unbound -c "$WORK/unbound.conf" &
pids+=($!)

config() { # $1: off|sqlite|jsonl
  local enabled=true format=sqlite path=""
  [ "$1" = off ] && enabled=false
  [ "$1" = jsonl ] && format=jsonl && path="jsonl_path = \"$WORK/queries-$1.jsonl\""
  cat > "$WORK/chaperone.toml" <<TOML
[server]
listen = ["127.0.0.1:$DNS_PORT"]
# Load tests send from one address: no rate limit.
[ratelimit]
enabled = false
[upstream]
servers = ["127.0.0.1:$UP_PORT"]
[cache]
max_entries = 1000000
[lists]
bundle = "$WORK/real.fstb"
[[network]]
cidrs = ["127.0.0.0/8"]
group = "pupils"
[group.pupils]
block = [$CATS]
[querylog]
enabled = $enabled
format = "$format"
$path
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

ticks() { # $1: pid, $2: "writer" or "rest" → user+system clock ticks of those threads
  for t in /proc/"$1"/task/*; do
    local comm
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    if { [ "$2" = writer ] && [ "$comm" = querylog ]; } || { [ "$2" = rest ] && [ "$comm" != querylog ]; }; then
      awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || true
    fi
  done | awk '{ n += $1 } END { print n + 0 }'
}

round() { # $1: mode, $2: binary → prints "QPS lost dns-µs/query writer-µs/query"
  local BIN=$2
  config "$1"
  rm -f "$WORK"/chaperone-"$1".db* "$WORK"/queries-"$1".jsonl*
  RUST_LOG=warn "$BIN" serve --config "$WORK/chaperone.toml" 2>"$WORK/serve-$1.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 200); do
    dig +short +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 example.com >/dev/null 2>&1 && break
    sleep 0.1
  done
  # Warm the cache (every name once) and the writer.
  dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$QUERIES" -n 1 -c 4 -q 256 >/dev/null 2>&1
  sleep 1
  local w0 r0 out qps done_ lost w r tick
  w0=$(ticks "$pid" writer)
  r0=$(ticks "$pid" rest)
  out=$(dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$QUERIES" -l "$SECS" -c 4 -T 1 -q 256 2>&1)
  sleep 1 # let the writer finish what it was given
  w=$(( $(ticks "$pid" writer) - w0 ))
  r=$(( $(ticks "$pid" rest) - r0 ))
  qps=$(awk '/Queries per second/ { print $4 }' <<<"$out")
  done_=$(awk '/Queries completed/ { print $3 }' <<<"$out")
  lost=$(awk '/Queries lost/ { print $3 }' <<<"$out")
  local written dropped
  written=$(metric chaperone_querylog_written_total)
  dropped=$(metric chaperone_querylog_dropped_total)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  tick=$(getconf CLK_TCK)
  local rq wq
  rq=$(awk -v c="$r" -v t="$tick" -v n="$done_" 'BEGIN { printf "%.2f", c / t * 1e6 / n }')
  wq=$(awk -v c="$w" -v t="$tick" -v n="$done_" 'BEGIN { printf "%.2f", c / t * 1e6 / n }')
  echo "mode=$1 qps=$qps completed=$done_ lost=$lost dns_cpu_us/q=$rq writer_cpu_us/q=$wq written=$written dropped=$dropped" >&2
  echo "$qps $lost $rq $wq"
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

BINS=${BINS:-build=$BIN}
declare -A QPS LOST DNS WRT
for r in $(seq 1 "$ROUNDS"); do
  for b in $BINS; do
    for m in $MODES; do
      k="${b%%=*} $m"
      echo "round $r/$ROUNDS $k" >&2
      read -r q l d w < <(round "$m" "${b#*=}")
      QPS[$k]="${QPS[$k]:-} $q"
      LOST[$k]="${LOST[$k]:-} $l"
      DNS[$k]="${DNS[$k]:-} $d"
      WRT[$k]="${WRT[$k]:-} $w"
    done
  done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
echo
echo "| build | query log | QPS per round | median QPS | vs off | lost | DNS-path CPU µs/query | writer CPU µs/query |"
echo "|---|---|---|---|---|---|---|---|"
for b in $BINS; do
  off=$(med "${QPS[${b%%=*} off]:-0}")
  for m in $MODES; do
    k="${b%%=*} $m"
    q=$(med "${QPS[$k]}")
    awk -v b="${b%%=*}" -v m="$m" -v rounds="${QPS[$k]}" -v q="$q" -v o="$off" -v l="${LOST[$k]}" \
      -v d="$(med "${DNS[$k]}")" -v w="$(med "${WRT[$k]}")" \
      'BEGIN { printf "| %s | %s |%s | %.0f | %.3f |%s | %s | %s |\n", b, m, rounds, q, (o > 0 ? q / o : 0), l, d, w }'
  done
done
