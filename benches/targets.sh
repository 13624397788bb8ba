#!/usr/bin/env bash
# The performance targets that compare.sh does not cover, measured side by side with
# unbound in one run, loopback only, every load bounded by dnsperf -l:
#
#   1. memory and start-up with N blocked names (default 5,000,000): Chaperone mapping a
#      compiled bundle vs unbound holding the same names as local-zones;
#   2. latency under half of unbound's saturating load: p50/p99 for both servers;
#   3. reloads of the N-name bundle under continuous load: queries sent vs answered.
#
#   benches/targets.sh [names] [seconds]
# Needs: apt-get install -y unbound dnsperf dnsutils bc curl python3
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-5000000}
SECS=${2:-10}
WORK=$(mktemp -d)
BIN="$ROOT/target/release/chaperone"
cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin chaperone >&2
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"

python3 - "$N" <<'PY'
import sys
n = int(sys.argv[1])
with open("upstream.conf", "w") as f:
    f.write('server:\n  interface: 127.0.0.1@15373\n  do-not-query-localhost: no\n  username: ""\n'
            '  chroot: ""\n  use-syslog: no\n  num-threads: 1\n  local-zone: "test." static\n')
    for i in range(20000):
        f.write(f'  local-data: "site{i}.test. 3600 IN A 10.{i>>16&255}.{i>>8&255}.{i&255}"\n')
with open("blocked.txt", "w") as b, open("peer.conf", "w") as p:
    p.write('server:\n  interface: 127.0.0.1@15374\n  do-not-query-localhost: no\n  username: ""\n'
            '  chroot: ""\n  use-syslog: no\n  num-threads: 1\n  access-control: 127.0.0.0/8 allow\n')
    for i in range(n):
        name = f"blocked{i}.example{i % 97}.test"
        b.write(name + "\n")
        p.write(f'  local-zone: "{name}." always_nxdomain\n')
    p.write('forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@15373\n')
with open("allowed.q", "w") as q:
    for i in range(20000):
        q.write(f"site{i}.test A\n")
PY
TOKEN=bench-token
DIGEST=$("$BIN" hash-token "$TOKEN")
cat > chaperone.toml <<TOML
[server]
listen = ["127.0.0.1:15375"]
threads = 1
# Load tests send from one address: no rate limit.
[ratelimit]
enabled = false
[upstream]
servers = ["127.0.0.1:15373"]
[lists]
bundle = "blocked.fstb"
[[network]]
cidrs = ["127.0.0.0/8"]
group = "all"
[group.all]
block = ["blocked"]
[querylog]
enabled = false
[admin]
listen = "127.0.0.1:15376"
[[admin.token]]
name = "bench"
role = "technician"
sha256 = "$DIGEST"
TOML
echo "compiling $N names..." >&2
/usr/bin/time -f "compile: %e s, peak RSS %M kB" "$BIN" compile --out blocked.fstb "blocked=domains:$WORK/blocked.txt" | tail -1
ls -l blocked.fstb | awk '{printf "bundle: %d bytes\n", $5}'

ready() { for _ in $(seq 6000); do dig +time=1 +tries=1 -p "$1" @127.0.0.1 site1.test >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }

unbound -d -c upstream.conf >upstream.log 2>&1 & pids+=($!)
ready 15373

t0=$(now); "$BIN" serve --config chaperone.toml >chaperone.log 2>&1 & CH=$!; pids+=($CH)
ready 15375; t_ch=$(echo "$(now) - $t0" | bc)
t0=$(now); unbound -d -c peer.conf >peer.log 2>&1 & UB=$!; pids+=($UB)
ready 15374; t_ub=$(echo "$(now) - $t0" | bc)
r_ch=$(rss $CH); r_ub=$(rss $UB)
echo "start-up until answering: chaperone ${t_ch} s, unbound ${t_ub} s, ratio $(echo "scale=4; $t_ch / $t_ub" | bc)"
echo "RSS with $N names, before traffic: chaperone ${r_ch} kB, unbound ${r_ub} kB, ratio $(echo "scale=4; $r_ch / $r_ub" | bc)"

# Warm both caches, then find unbound's saturating rate.
for p in 15374 15375; do dnsperf -s 127.0.0.1 -p $p -d allowed.q -n 1 -q 200 >/dev/null 2>&1; done
sat=$(dnsperf -s 127.0.0.1 -p 15374 -d allowed.q -l "$SECS" -c 4 -q 200 2>/dev/null | awk '/Queries per second/{print int($4)}')
half=$((sat / 2))
echo "unbound saturating QPS (cached, one thread): $sat; measuring latency at $half QPS"
lat() { # port -> "p50 p99" in microseconds
  dnsperf -s 127.0.0.1 -p "$1" -d allowed.q -l "$SECS" -c 4 -q 500 -Q "$half" -v 2>/dev/null |
    awk '$1 == ">" {print $NF * 1000000}' | sort -n |
    awk '{a[NR]=$1} END{printf "%.0f %.0f\n", a[int(NR*0.5)], a[int(NR*0.99)]}'
}
for round in 1 2; do
  read -r u50 u99 < <(lat 15374); read -r c50 c99 < <(lat 15375)
  echo "latency at $half QPS round $round: unbound p50 ${u50}us p99 ${u99}us | chaperone p50 ${c50}us p99 ${c99}us | p99 ratio $(echo "scale=3; $c99 / $u99" | bc)"
done
# Memory after traffic: both caches now hold every allowed name the query file asks for.
r_ch=$(rss $CH); r_ub=$(rss $UB)
echo "RSS with $N names, after traffic: chaperone ${r_ch} kB, unbound ${r_ub} kB, ratio $(echo "scale=4; $r_ch / $r_ub" | bc)"

# Reloads of the whole bundle under continuous load: every answered or lost query counts.
dnsperf -s 127.0.0.1 -p 15375 -d allowed.q -l "$SECS" -c 4 -q 200 -Q "$half" >reload-load.txt 2>&1 &
LOAD=$!
reloads=0; worst=0
sleep 1
end=$(( $(date +%s) + SECS - 2 ))
while [ "$(date +%s)" -lt "$end" ]; do
  cp blocked.fstb next.fstb && mv next.fstb blocked.fstb   # a new file, renamed into place
  t0=$(now)
  curl -sf -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:15376/reload >/dev/null
  took=$(echo "$(now) - $t0" | bc); reloads=$((reloads + 1))
  worst=$(echo "if ($took > $worst) $took else $worst" | bc)
  sleep 0.5
done
wait $LOAD || true
sent=$(awk '/Queries sent/{print $3}' reload-load.txt); done_=$(awk '/Queries completed/{print $3}' reload-load.txt); lost=$(awk '/Queries lost/{print $3}' reload-load.txt)
echo "reloads under load: $reloads reloads of the $N-name bundle (slowest ${worst} s); queries sent $sent, completed $done_, lost $lost"
