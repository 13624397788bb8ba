#!/usr/bin/env bash
# Server throughput with the query log off, on SQLite, and on PostgreSQL (issue 15's
# target: PostgreSQL >= 0.8x log off): the release binary answering dnsperf on loopback,
# the same query file, rounds alternating off / sqlite / postgres, medians and ratios.
#
# Traffic as in querylog-qps.sh: half blocked names (answered by policy) and half allowed
# names cached after the warm-up (a local unbound answers the first miss), so the figure
# is the pipeline plus the record stage. With the log on, every query is one record.
# PostgreSQL: a throwaway cluster started here (initdb as the postgres user, loopback,
# default durability settings), one fresh database per round.
#
#   cargo build --release
#   bash benches/querylog-backends.sh        # ROUNDS=3 SECONDS_PER_ROUND=15 by default
#
# Needs dnsperf, unbound and PostgreSQL (Debian: apt-get install dnsperf unbound
# postgresql). Loopback only; every run is bounded by dnsperf -l.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_ROUND:-15}
BIN=${CHAPERONE_BIN:-$PWD/target/release/chaperone}
DNS_PORT=${DNS_PORT:-15465}
ADMIN_PORT=${ADMIN_PORT:-15466}
UP_PORT=${UP_PORT:-15467}
PG_PORT=${PG_PORT:-15468}
for tool in dnsperf unbound; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install $tool)" >&2; exit 1; }
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PGBIN/initdb" ] || { echo "needs PostgreSQL (apt-get install postgresql)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }

WORK=$(mktemp -d)
chmod 755 "$WORK"
pids=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# PostgreSQL on loopback.
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/postgres" -D "$WORK/pg/data" -c listen_addresses=127.0.0.1 -c port="$PG_PORT" \
  -c unix_socket_directories="$WORK/pg" >"$WORK/pg.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAtc 'SELECT 1' postgres >/dev/null 2>&1 && break
  sleep 0.1
done
psql_() { as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt "$@"; }

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

for i in $(seq 1 2000); do echo "ads$i.blocked.test"; done > "$WORK/blocked.txt"
for i in $(seq 1 2000); do
  echo "ads$i.blocked.test A"
  echo "www$(( (i % 200) + 1 )).bench.test A"
done > "$WORK/queries.txt"
"$BIN" compile --out "$WORK/blocked.fstb" "ads=domains:$WORK/blocked.txt" >/dev/null

config() { # $1: off|sqlite|postgres, $2: round
  local enabled=true storage
  case "$1" in
    off) enabled=false; storage="path = \"$WORK/off-$2.db\"" ;;
    sqlite) storage="path = \"$WORK/sqlite-$2.db\"" ;;
    postgres)
      psql_ -c "CREATE DATABASE bench_$2" postgres
      storage="url = \"postgres://postgres@127.0.0.1:$PG_PORT/bench_$2\"" ;;
  esac
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
enabled = $enabled
retention_days = 30

[storage]
$storage

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
TOML
}

metric() { # $1: metric name → value (0 if absent)
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null \
    | awk -v m="$1" '$1 == m { print $2; found=1 } END { if (!found) print 0 }'
}

round() { # $1: mode, $2: round → prints QPS
  config "$1" "$2"
  RUST_LOG=warn "$BIN" serve --config "$WORK/chaperone.toml" 2>"$WORK/serve-$1-$2.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    dig +short +time=1 +tries=1 -p "$DNS_PORT" @127.0.0.1 www1.bench.test >/dev/null 2>&1 && break
    sleep 0.1
  done
  dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/queries.txt" -n 1 >/dev/null 2>&1
  local out qps done_ written dropped rows=""
  out=$(dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$WORK/queries.txt" -l "$SECS" -c 4 -T 1 -q 256 2>&1)
  sleep 1 # let the writer finish what it was given
  qps=$(awk '/Queries per second/ { print $4 }' <<<"$out")
  done_=$(awk '/Queries completed/ { print $3 }' <<<"$out")
  written=$(metric chaperone_querylog_written_total)
  dropped=$(metric chaperone_querylog_dropped_total)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "querylog=$1 qps=$qps queries=$done_ written=$written dropped=$dropped" >&2
  echo "$qps"
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -A runs
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  for mode in off sqlite postgres; do
    runs[$mode]+="$(round "$mode" "$r") "
  done
done
echo
echo "| query log | QPS per round | median QPS | / log off |"
echo "|---|---|---|---|"
m_off=$(printf '%s\n' ${runs[off]} | median)
for mode in off sqlite postgres; do
  m=$(printf '%s\n' ${runs[$mode]} | median)
  awk -v n="$mode" -v r="${runs[$mode]}" -v m="$m" -v o="$m_off" 'BEGIN { printf "| %s | %s| %s | %.3f |\n", n, r, m, m / o }'
done
