#!/usr/bin/env bash
# Memory after warm-up: how much a running Chaperone holds once its answer cache is full of
# a realistic query stream. A local unbound answers every name (`local-zone: "." redirect`
# with A, AAAA and an SOA for NODATA), Chaperone forwards to it with the real lists loaded
# (UT1, UT1 older malware/phishing, StevenBlack: ~650k names, compiled to a bundle first),
# the query log off and no rate limit; the query file is sent once with dnsperf (bounded by
# -l), then the script prints VmRSS, VmHWM, RssAnon, RssFile and the cache entry count from
# the metrics endpoint. Loopback only.
#
#   benches/cache-memory.sh [QUERYFILE]
#
# QUERYFILE: a dnsperf file (`name TYPE` per line). Default: made by the bench helper's
# seeded generator (QUERYGEN, default benches/querygen.py, merged from the bench branch,
# ~1M queries, >= 200k distinct names), or, when that is absent, by a small inline generator
# of 230k distinct names.
# Env: CHAPERONE_BIN (default: build target/release/chaperone), BINS="a b" to compare
# several builds in one run (alternating rounds, ROUNDS, default 1), CACHE_TOML (extra
# lines for [cache]; e.g. "prefetch = false"), UP_TTL (the upstream's TTL, default 300: a
# short one such as 5 measures prefetch), RATE (dnsperf -Q, default unbounded), MALLOC_ENV (e.g. "MALLOC_ARENA_MAX=2") passed to chaperone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LISTS=${LISTS:-/work/shared/lists-real}
[ -d "$LISTS" ] || LISTS=$ROOT/../shared/lists-real
if [ -z "${BINS:-}" ]; then
  BIN=${CHAPERONE_BIN:-$ROOT/target/release/chaperone}
  [ -n "${CHAPERONE_BIN:-}" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin chaperone >&2
  BINS=$BIN
fi
ROUNDS=${ROUNDS:-1}
UP_TTL=${UP_TTL:-300}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The query file.
QF=${1:-}
if [ -z "$QF" ]; then
  QF=$WORK/queries.txt
  GEN=${QUERYGEN:-$ROOT/benches/querygen.py}
  [ -f "$GEN" ] || GEN=$ROOT/../bench/benches/querygen.py
  if [ -f "$GEN" ]; then
    python3 "$GEN" --lists "$LISTS" --nx-out "$WORK/nx.txt" -o "$QF" 2>/dev/null
  else
    python3 - > "$QF" <<'PY'
import random
r = random.Random(17)
tlds = ["com", "net", "org", "fr", "co.uk", "io", "de", "edu", "gov.uk"]
subs = ["www.", "cdn.", "api.", "m.", "img.", "static.", ""]
types = ["A"] * 6 + ["AAAA"] * 3 + ["HTTPS"]
for i in range(230000):
    print(f"{r.choice(subs)}site{i}.{r.choice(tlds)} {r.choice(types)}")
PY
  fi
fi
queries=$(wc -l < "$QF")
distinct=$(awk '{print tolower($1), $2}' "$QF" | sort -u | wc -l)

# The upstream: unbound answering every name.
UP=$(free_port)
cat > "$WORK/unbound.conf" <<CONF
server:
  interface: 127.0.0.1
  port: $UP
  do-daemonize: no
  use-syslog: no
  logfile: ""
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: ""
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  local-zone: "." redirect
  local-data: ". $UP_TTL IN A 192.0.2.1"
  local-data: ". $UP_TTL IN AAAA 2001:db8::1"
  local-data: ". $UP_TTL IN SOA a.test. b.test. 1 3600 600 86400 $UP_TTL"
CONF
# The generator's nonexistent names are NXDOMAIN upstream, as on the internet.
[ -f "$WORK/nx.txt" ] && python3 -c "import sys; sys.path.insert(0, \"$ROOT/benches/peers\"); import native; sys.stdout.write(native.upstream_negative(l.strip() for l in open(sys.argv[1])))" "$WORK/nx.txt" >> "$WORK/unbound.conf"
unbound -c "$WORK/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do dig +short +time=1 +tries=1 -p "$UP" @127.0.0.1 probe.test A >/dev/null 2>&1 && break; sleep 0.1; done

# The real lists, compiled once.
xz -dc "$LISTS/stevenblack/blackhole.xz" > "$WORK/stevenblack.hosts"
"${BINS%% *}" compile --out "$WORK/real.fstb" "ut1:$LISTS/ut1" "ut1:$LISTS/ut1-older" \
  "stevenblack=hosts:$WORK/stevenblack.hosts" > "$WORK/compile.log" 2>&1
cats=$(python3 - "$WORK/compile.log" <<'PY'
import re, sys
names = [m.group(1) for m in re.finditer(r'^\s+([a-z0-9_.-]+)\s+\d+ names', open(sys.argv[1]).read(), re.M)]
print(", ".join(f'"{n}"' for n in names))
PY
)

run_one() {
  local bin=$1 dns admin pid
  dns=$(free_port); admin=$(free_port)
  cat > "$WORK/chaperone.toml" <<TOML
[server]
listen = ["127.0.0.1:$dns"]
[ratelimit]
enabled = false
[upstream]
servers = ["127.0.0.1:$UP"]
[cache]
max_entries = 400000
${CACHE_TOML:-}
[lists]
bundle = "$WORK/real.fstb"
[[network]]
cidrs = ["127.0.0.0/8"]
group = "all"
[group.all]
block = [$cats]
[querylog]
enabled = false
[admin]
listen = "127.0.0.1:$admin"
TOML
  env ${MALLOC_ENV:-} "$bin" serve --config "$WORK/chaperone.toml" > "$WORK/chaperone.log" 2>&1 &
  pid=$!
  PIDS+=($pid)
  for _ in $(seq 600); do
    grep -q "Chaperone is answering" "$WORK/chaperone.log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/chaperone.log" >&2; exit 1; }
    sleep 0.1
  done
  local kb0
  kb0=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
  timeout 300 dnsperf -s 127.0.0.1 -p "$dns" -d "$QF" -n 1 -l 240 -q 200 ${RATE:+-Q $RATE} > "$WORK/dnsperf.out" 2>&1 || true
  sleep 1
  local st m lost
  st=$(awk '/^(VmRSS|VmHWM|RssAnon|RssFile):/ { printf "%s=%d ", $1, $2/1024 }' "/proc/$pid/status")
  m=$(curl -s "http://127.0.0.1:$admin/metrics")
  lost=$(awk '/Queries lost:/ { print $3 }' "$WORK/dnsperf.out")
  done_=$(awk '/Queries completed:/ { print $3 }' "$WORK/dnsperf.out")
  printf '%-40s start=%4dMB %s entries=%s hits=%s misses=%s upstream=%s servfail=%s done=%s lost=%s\n' "$(basename "$(dirname "$(dirname "$bin")")")/${bin##*/}" \
    $((kb0 / 1024)) "$st" \
    "$(echo "$m" | awk '/^chaperone_cache_entries / { print $2 }')" \
    "$(echo "$m" | awk '/^chaperone_cache_lookups_total\{result="hit"\}/ { print $2 }')" \
    "$(echo "$m" | awk '/^chaperone_cache_lookups_total\{result="miss"\}/ { print $2 }')" \
    "$(echo "$m" | awk '/^chaperone_upstream_duration_seconds_count/ { s += $2 } END { print s }')" \
    "$(awk '/SERVFAIL/ { print $2; f = 1 } END { if (!f) print 0 }' "$WORK/dnsperf.out")" \
    "$done_" "$lost"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "queries=$queries distinct(name,type)=$distinct lists: $(tail -1 "$WORK/compile.log" | cut -c1-60)"
echo "machine: $(nproc) cores; MALLOC_ENV=${MALLOC_ENV:-none} CACHE_TOML=${CACHE_TOML:-none} UP_TTL=$UP_TTL RATE=${RATE:-max}"
for r in $(seq "$ROUNDS"); do
  for b in $BINS; do run_one "$b"; done
done
