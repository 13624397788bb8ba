#!/usr/bin/env bash
# Chaperone against every peer a school's technician might pick, one run, same machine:
# unbound, PowerDNS Recursor, Knot Resolver, dnsmasq (Pi-hole's engine), Chaperone with
# the query log on SQLite, on JSON lines and off, and the physical limit (a minimal
# recvmmsg/sendmmsg responder, benches/udp_limit.rs).
# UT1's allow lists and everyday-site categories are left out (querygen.py UT1_EXCLUDE;
# UT1_EXCLUDE="" loads every category): blocking them would block microsoft.com and gov.uk.
#
#   sudo bash benches/peers.sh                          # full run (~30-40 min)
#   SERVERS="unbound chaperone-sqlite limit" DURATION=5 ROUNDS=1 COUNT=200000 \
#     sudo -E bash benches/peers.sh                     # a smoke run
#
# Each server loads the same real lists ($LISTS_REAL, default ../shared/lists-real: UT1 every
# category, UT1 older malware/phishing, StevenBlack unified + extensions) in its native form
# (benches/peers/native.py: unbound local-zone always_nxdomain, an RPZ file for PowerDNS
# rpzFile and Knot policy.rpz, dnsmasq address=/name/; Chaperone a bundle compiled from the
# raw files), forwards to the same upstream (a local unbound answering every name, and
# NXDOMAIN for the file's nonexistent names) and caches. The query file is
# benches/querygen.py (seed $SEED, $COUNT queries). Configs: benches/peers/*.in.
#
# Per thread setting (1, then nproc; THREADS_LIST), for each server: start-up (exec to
# first NOERROR answer; Chaperone maps a bundle compiled beforehand, the compile time is
# printed too), warm-up (one pass of the file), RSS after warm-up (VmRSS, VmHWM; summed over
# kresd's processes), then ROUNDS measured dnsperf runs of DURATION s, servers alternating
# round by round (QPS median, loss, mean latency), then a fixed-rate run at 50% of the best
# peer's median QPS with dnsperf -v, whose per-query latencies give p50/p99 (this dnsperf,
# 2.10, has no latency histogram; -v slows the client, so saturating runs go without it).
# dnsmasq and kresd are single-threaded: at N threads kresd runs N processes sharing its
# cache, dnsmasq stays one process.
#
# Env: WARMUP_MAX (longest warm-up pass, s, default 180: dnsmasq forwards most queries and
# may not finish one pass), UT1_EXCLUDE (see above), SERVERS (default all: unbound pdns kresd dnsmasq chaperone-sqlite chaperone-jsonl
# chaperone-off limit), DURATION (15), ROUNDS (3), COUNT (1000000), SEED (17), THREADS_LIST
# ("1 $(nproc)"), CLIENT (dnsperf load options, "-c 8 -q 500"), CHAPERONE_BIN
# (target/release/chaperone), RESULTS (results dir, default target/peers-DATE), BASE_PORT
# (15400). Needs root, dnsperf, dig, unbound, pdns_recursor, kresd, dnsmasq, python3, xz,
# and cargo (builds the udp_limit bench). Loopback only; every load run is bounded by
# dnsperf -l and timeout. Raw output, configs and the tables are kept in RESULTS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVERS=${SERVERS:-"unbound pdns kresd dnsmasq chaperone-sqlite chaperone-jsonl chaperone-off limit"}
DURATION=${DURATION:-15}
WARMUP_MAX=${WARMUP_MAX:-180}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-1000000}
SEED=${SEED:-17}
THREADS_LIST=${THREADS_LIST:-"1 $(nproc)"}
CLIENT=${CLIENT:-"-c 8 -q 500"}
CHAPERONE_BIN=${CHAPERONE_BIN:-$ROOT/target/release/chaperone}
if [ -z "${LISTS_REAL:-}" ]; then
  LISTS_REAL=$ROOT/../shared/lists-real
  [ -d "$LISTS_REAL" ] || LISTS_REAL=/work/shared/lists-real
fi
RESULTS=${RESULTS:-$ROOT/target/peers-$(date +%Y%m%d-%H%M%S)}
BASE_PORT=${BASE_PORT:-15400}
TPL=$ROOT/benches/peers
DATA=$RESULTS/data
UP_PORT=$BASE_PORT

[ "$(id -u)" = 0 ] || { echo "peers.sh needs root (pdns_recursor, kresd, dnsmasq)" >&2; exit 1; }
for tool in dnsperf dig python3 xz unbound; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
for s in $SERVERS; do
  case $s in
    pdns) [ -x /usr/sbin/pdns_recursor ] || { echo "needs pdns-recursor" >&2; exit 1; } ;;
    kresd) [ -x /usr/sbin/kresd ] || { echo "needs knot-resolver" >&2; exit 1; } ;;
    dnsmasq) command -v dnsmasq >/dev/null || { echo "needs dnsmasq" >&2; exit 1; } ;;
    chaperone-*) [ -x "$CHAPERONE_BIN" ] || { echo "no $CHAPERONE_BIN: cargo build --release" >&2; exit 1; } ;;
  esac
done
mkdir -p "$DATA"
SUMMARY=$RESULTS/summary.md
log() { echo "$*" | tee -a "$RESULTS/run.log" >&2; }

# Every process this script starts, by pid (killed on exit, never by name).
declare -A PIDS=()
ALL_PIDS=()
cleanup() {
  for p in "${ALL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${ALL_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# --- data: query file, lists in native forms, Chaperone's bundle ---------------------------
prepare() {
  log "data in $DATA (lists: $LISTS_REAL)"
  local ex=()
  [ -n "${UT1_EXCLUDE+set}" ] && ex=(--exclude "$UT1_EXCLUDE")
  python3 "$ROOT/benches/querygen.py" --seed "$SEED" --count "$COUNT" --lists "$LISTS_REAL" \
    -o "$DATA/queries.txt" --nx-out "$DATA/nx.txt" --listed-out "$DATA/listed.txt" \
    --files-out "$DATA/files.txt" "${ex[@]}" 2> "$DATA/querygen.txt"
  cat "$DATA/querygen.txt" >&2
  python3 "$TPL/native.py" "$DATA/listed.txt" "$DATA/nx.txt" "$DATA"
  # Chaperone: the same files (decompressed: a plain path is read as text), each as its
  # category, compiled once as a school would with `chaperone compile`; every category
  # is blocked for the bench group.
  local args=() fmt path cat n=0 f
  mkdir -p "$DATA/lists"
  while read -r fmt path cat; do
    n=$((n + 1))
    f=$DATA/lists/$n-$cat.txt
    case $path in *.xz) xz -dc "$path" ;; *) cat "$path" ;; esac > "$f"
    args+=("$cat=$fmt:$f")
  done < "$DATA/files.txt"
  if [[ " $SERVERS " == *" chaperone-"* ]]; then
    local t0; t0=$(date +%s.%N)
    "$CHAPERONE_BIN" compile --out "$DATA/lists.fstb" "${args[@]}" > "$DATA/compile.txt" 2>&1
    COMPILE_S=$(echo "$(date +%s.%N) - $t0" | bc)
    log "chaperone compile: $(tail -2 "$DATA/compile.txt" | head -1) in ${COMPILE_S}s"
    BLOCK=$(awk '/^  [A-Za-z0-9_.-]+ +[0-9]+ names/{printf "%s\"%s\"", sep, $1; sep=", "}' "$DATA/compile.txt")
  fi
}

# --- servers ------------------------------------------------------------------------------
port_of() {
  local i=1 s
  for s in unbound pdns kresd dnsmasq chaperone-sqlite chaperone-jsonl chaperone-off limit; do
    [ "$s" = "$1" ] && { echo $((BASE_PORT + i)); return; }
    i=$((i + 1))
  done
}

# render TEMPLATE OUT PORT THREADS WORK [LOG_ENABLED LOG_FORMAT JSONL_PATH_LINE]
render() {
  sed -e "s|@PORT@|$3|g" -e "s|@THREADS@|$4|g" -e "s|@WORK@|$5|g" -e "s|@DATA@|$DATA|g" \
    -e "s|@UPSTREAM@|$UP_PORT|g" -e "s|@LOG_ENABLED@|${6:-false}|g" \
    -e "s|@LOG_FORMAT@|${7:-sqlite}|g" -e "s|@BLOCK@|${BLOCK:-}|g" \
    -e "s|@JSONL_PATH@|${8:-}|g" "$1" > "$2"
}

# start NAME THREADS: starts the server in the background, PIDS[NAME] = its pid(s).
start() {
  local s=$1 t=$2 port work
  port=$(port_of "$s")
  work=$RESULTS/t$t/$s
  rm -rf "$work"; mkdir -p "$work"
  case $s in
    unbound)
      render "$TPL/unbound.conf.in" "$work/unbound.conf" "$port" "$t" "$work"
      unbound -d -c "$work/unbound.conf" > "$work/out.log" 2>&1 &
      PIDS[$s]=$! ;;
    pdns)
      render "$TPL/recursor.conf.in" "$work/recursor.conf" "$port" "$t" "$work"
      render "$TPL/pdns.lua.in" "$work/pdns.lua" "$port" "$t" "$work"
      /usr/sbin/pdns_recursor --config-dir="$work" > "$work/out.log" 2>&1 &
      PIDS[$s]=$! ;;
    kresd)
      render "$TPL/kresd.conf.in" "$work/kresd.conf" "$port" "$t" "$work"
      local i pids=""
      for i in $(seq 1 "$t"); do
        mkdir -p "$work/run$i"
        /usr/sbin/kresd -n -c "$work/kresd.conf" "$work/run$i" > "$work/out$i.log" 2>&1 &
        pids="$pids $!"
        ALL_PIDS+=($!)
      done
      PIDS[$s]=${pids# } ;;
    dnsmasq)
      render "$TPL/dnsmasq.conf.in" "$work/dnsmasq.conf" "$port" "$t" "$work"
      dnsmasq -C "$work/dnsmasq.conf" --log-facility="$work/dnsmasq.log" > "$work/out.log" 2>&1 &
      PIDS[$s]=$! ;;
    chaperone-sqlite | chaperone-jsonl | chaperone-off)
      local on=true fmt=sqlite
      [ "$s" = chaperone-off ] && on=false
      [ "$s" = chaperone-jsonl ] && fmt=jsonl
      local jsonl=""
      [ "$fmt" = jsonl ] && jsonl="jsonl_path = \"$work/querylog.jsonl\""
      render "$TPL/chaperone.toml.in" "$work/chaperone.toml" "$port" "$t" "$work" "$on" "$fmt" "$jsonl"
      "$CHAPERONE_BIN" serve --config "$work/chaperone.toml" > "$work/out.log" 2>&1 &
      PIDS[$s]=$! ;;
    limit)
      "$LIMIT_BIN" --listen "127.0.0.1:$port" --threads "$t" > "$work/out.log" 2>&1 &
      PIDS[$s]=$! ;;
    *) echo "unknown server $s" >&2; exit 1 ;;
  esac
  [ "$s" = kresd ] || ALL_PIDS+=("${PIDS[$s]}")
}

stop() {
  local p
  for p in ${PIDS[$1]}; do kill "$p" 2>/dev/null || true; done
  for p in ${PIDS[$1]}; do wait "$p" 2>/dev/null || true; done
}

# wait_ready PORT SECONDS [PIDS]: until a NOERROR answer for a popular name; prints the
# seconds. Gives up early when one of PIDS has exited (a config error).
wait_ready() {
  local t0 end p
  t0=$(date +%s.%N)
  end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    for p in ${3:-}; do kill -0 "$p" 2>/dev/null || return 1; done
    if dig +time=1 +tries=1 -p "$1" @127.0.0.1 www.bbc.co.uk A 2>/dev/null | grep -q "status: NOERROR"; then
      echo "$(date +%s.%N) - $t0" | bc
      return 0
    fi
    sleep 0.05
  done
  return 1
}

rss_kb() { # NAME: VmRSS and VmHWM summed over the server's processes
  local p r=0 h=0 a b
  for p in ${PIDS[$1]}; do
    a=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    b=$(awk '/^VmHWM/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    r=$((r + ${a:-0})); h=$((h + ${b:-0}))
  done
  echo "$r $h"
}

# --- load runs ----------------------------------------------------------------------------
# perf PORT OUTFILE [extra dnsperf args]: one bounded saturating run.
perf() {
  local port=$1 out=$2; shift 2
  timeout $((DURATION + 30)) dnsperf -s 127.0.0.1 -p "$port" -d "$DATA/queries.txt" \
    -l "$DURATION" -t 2 $CLIENT "$@" > "$out" 2>&1 || true
}
qps_of() { awk '/Queries per second/{print $4}' "$1"; }
lost_of() { awk '/Queries lost/{gsub(/[()%]/,"",$4); print $4}' "$1"; }
avg_of() { awk '/Average Latency/{printf "%.3f\n", $4 * 1000}' "$1"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }

# percentiles FILE: p50 and p99 in ms of dnsperf -v per-query lines ("> RCODE name type secs").
percentiles() {
  awk '/^> /{print $NF}' "$1" | sort -g |
    awk 'function at(p,  i) { i = int(NR * p); if (i < 1) i = 1; return a[i] * 1000 }
         {a[NR] = $1} END {if (NR == 0) print "- -"; else printf "%.3f %.3f\n", at(0.5), at(0.99)}'
}

run_setting() {
  local t=$1 s port d r ready
  local -A QPS=() ROUNDQ=() LOSS=() AVG=() RSS=() HWM=() START=() P50=() P99=() WARM=()
  d=$RESULTS/t$t; mkdir -p "$d"
  log "== $t thread(s): start-up and warm-up, one server at a time"
  for s in $SERVERS; do
    port=$(port_of "$s")
    start "$s" "$t"
    if ! ready=$(wait_ready "$port" 600 "${PIDS[$s]}"); then
      log "$s exited or did not answer within 600 s; see $d/$s/ (tail: $(tail -2 "$d/$s/out"*.log | tr '\n' ' '))"; stop "$s"; unset "PIDS[$s]"; continue
    fi
    START[$s]=$ready
    local w0; w0=$(date +%s.%N)
    timeout $((WARMUP_MAX + 60)) dnsperf -s 127.0.0.1 -p "$port" -d "$DATA/queries.txt" -n 1 -l "$WARMUP_MAX" -t 2 \
      $CLIENT > "$d/$s.warmup.txt" 2>&1 || true
    WARM[$s]=$(echo "$(date +%s.%N) - $w0" | bc)
    read -r RSS[$s] HWM[$s] < <(rss_kb "$s")
    log "$s: ready in ${START[$s]} s, warm-up pass $(printf %.1f "${WARM[$s]}") s" \
      "($(qps_of "$d/$s.warmup.txt") qps; $(grep -o 'NOERROR.*' "$d/$s.warmup.txt" | head -1)), RSS $((RSS[$s] / 1024)) MB, HWM $((HWM[$s] / 1024)) MB"
  done
  local live=""
  for s in $SERVERS; do [ -n "${PIDS[$s]:-}" ] && live="$live $s"; done
  for r in $(seq 1 "$ROUNDS"); do
    for s in $live; do
      perf "$(port_of "$s")" "$d/$s.round$r.txt"
      log "round $r $s: $(qps_of "$d/$s.round$r.txt") qps, lost $(lost_of "$d/$s.round$r.txt")%"
    done
  done
  local best=0 bestpeer=""
  for s in $live; do
    QPS[$s]=$(for r in $(seq 1 "$ROUNDS"); do qps_of "$d/$s.round$r.txt"; done | xargs | median)
    ROUNDQ[$s]=$(for r in $(seq 1 "$ROUNDS"); do printf "%.0fk " "$(echo "$(qps_of "$d/$s.round$r.txt") / 1000" | bc -l)"; done)
    LOSS[$s]=$(for r in $(seq 1 "$ROUNDS"); do lost_of "$d/$s.round$r.txt"; done | xargs | median)
    AVG[$s]=$(for r in $(seq 1 "$ROUNDS"); do avg_of "$d/$s.round$r.txt"; done | xargs | median)
    case $s in unbound | pdns | kresd | dnsmasq)
      if [ "$(echo "${QPS[$s]} > $best" | bc)" = 1 ]; then best=${QPS[$s]}; bestpeer=$s; fi ;;
    esac
  done
  # Latency at half the best peer's saturating load (or half the fastest server's if no
  # peer ran), per-query latencies from dnsperf -v.
  local rate
  if [ -z "$bestpeer" ]; then
    for s in $live; do [ "$(echo "${QPS[$s]} > $best" | bc)" = 1 ] && best=${QPS[$s]}; done
  fi
  rate=$(printf %.0f "$(echo "$best / 2" | bc -l)")
  log "fixed-rate runs at $rate qps (50% of ${bestpeer:-the fastest server})"
  for s in $live; do
    perf "$(port_of "$s")" "$d/$s.fixed.txt" -Q "$rate" -v
    read -r P50[$s] P99[$s] < <(percentiles "$d/$s.fixed.txt")
    # Keep the summary, not the million per-query lines.
    grep -v '^> ' "$d/$s.fixed.txt" > "$d/$s.fixed.summary.txt" && rm -f "$d/$s.fixed.txt"
    log "$s at $rate qps: p50 ${P50[$s]} ms, p99 ${P99[$s]} ms"
  done
  for s in $live; do stop "$s"; done
  table "$t" "$rate" "$bestpeer"
}

# table THREADS RATE BESTPEER: the markdown table and the issue's ratios for one setting.
table() {
  local t=$1 rate=$2 bp=$3 s
  {
    echo
    echo "### $t thread(s) per server — $(date -u '+%Y-%m-%d %H:%M UTC'), ${ROUNDS}×${DURATION}s rounds, dnsperf $CLIENT"
    echo
    echo "| server | QPS (median) | rounds | lost % | mean ms | p50 ms @${rate} qps | p99 ms @${rate} qps | RSS MB after warm-up | HWM MB | start-up s |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    for s in $live; do
      printf "| %s | %.0f | %s | %s | %s | %s | %s | %.0f | %.0f | %.2f |\n" "$s" "${QPS[$s]}" "${ROUNDQ[$s]% }" "${LOSS[$s]}" \
        "${AVG[$s]}" "${P50[$s]}" "${P99[$s]}" "$(echo "${RSS[$s]} / 1024" | bc -l)" \
        "$(echo "${HWM[$s]} / 1024" | bc -l)" "${START[$s]}"
    done
    echo
    [ -n "${COMPILE_S:-}" ] && echo "- Chaperone's lists compiled beforehand in $(printf %.1f "$COMPILE_S") s (\`chaperone compile\`); its start-up maps the bundle."
    if [ -n "$bp" ]; then
      local bq=${QPS[$bp]} br=${RSS[$bp]} bp99=${P99[$bp]}
      for s in chaperone-sqlite chaperone-jsonl chaperone-off; do
        [ -n "${QPS[$s]:-}" ] || continue
        echo "- $s / best peer ($bp) QPS: $(printf %.2f "$(echo "${QPS[$s]} / $bq" | bc -l)")×; RSS: $(printf %.2f "$(echo "${RSS[$s]} / $br" | bc -l)")×; p99 ${P99[$s]} ms vs $bp's $bp99 ms"
      done
    fi
    for s in chaperone-sqlite chaperone-jsonl; do
      [ -n "${QPS[$s]:-}" ] && [ -n "${QPS[chaperone-off]:-}" ] &&
        echo "- log cost ($s vs chaperone-off): $(printf %.1f "$(echo "(1 - ${QPS[$s]} / ${QPS[chaperone-off]}) * 100" | bc -l)")% of log-off QPS"
    done
    if [ -n "${QPS[limit]:-}" ]; then
      for s in chaperone-sqlite chaperone-jsonl chaperone-off; do
        [ -n "${QPS[$s]:-}" ] && echo "- limit ratio $s / limit: $(printf %.2f "$(echo "${QPS[$s]} / ${QPS[limit]}" | bc -l)")"
      done
    fi
  } | tee -a "$SUMMARY"
}

# --- main ---------------------------------------------------------------------------------
{
  echo "# benches/peers.sh — $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname), $(nproc) cores"
  echo
  echo "SERVERS=\"$SERVERS\" DURATION=$DURATION ROUNDS=$ROUNDS COUNT=$COUNT SEED=$SEED; $(unbound -V | head -1 | sed 's/Version/unbound/'); $(/usr/sbin/pdns_recursor --version 2>&1 | grep -o 'PowerDNS Recursor [0-9.]*' | head -1); $(/usr/sbin/kresd --version 2>/dev/null); $(dnsmasq --version | head -1 | cut -d' ' -f1-3); $(dnsperf -h 2>&1 | grep -i '^Version' | sed 's/Version/dnsperf/'); chaperone $CHAPERONE_BIN"
} > "$SUMMARY"
prepare
if [[ " $SERVERS " == *" limit "* ]]; then
  LIMIT_BIN=$(cargo build --release --manifest-path "$ROOT/Cargo.toml" --bench udp_limit \
    --message-format=json 2>/dev/null | python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "udp_limit" and m.get("executable"):
        print(m["executable"])')
  [ -x "$LIMIT_BIN" ] || { echo "could not build the udp_limit bench" >&2; exit 1; }
fi
render "$TPL/upstream.conf.in" "$DATA/upstream.conf" "$UP_PORT" 1 "$DATA"
unbound -d -c "$DATA/upstream.conf" > "$DATA/upstream.log" 2>&1 &
ALL_PIDS+=($!)
wait_ready "$UP_PORT" 120 > /dev/null || { echo "upstream did not start: $DATA/upstream.log" >&2; exit 1; }
for t in $THREADS_LIST; do run_setting "$t"; done
log "results: $RESULTS (summary.md, per-run dnsperf output under t*/)"
cat "$SUMMARY"
