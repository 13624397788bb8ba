#!/usr/bin/env bash
# What response inspection (issue 13: CNAME-chain targets and answer addresses checked per
# query) costs on a CNAME-heavy mix: one Chaperone binary run twice side by side, with
# [inspect] on and off, same upstream, same lists, same query file, alternating rounds.
#
#   benches/inspect.sh [names] [seconds] [rounds]
#
# The upstream (unbound on 127.0.0.1:15353) answers most popular names through a CDN
# chain, as real sites do: 50% of names by one CNAME hop, 20% by two, 30% by an A record
# directly; every answer has two addresses. The lists hold names/10 blocked names and as
# every IPv4 entry of the real UT1 lists (../shared/lists-real/ut1, ~68k addresses in ~21k
# intervals; none matches an answer: this measures the cost of looking, the common case). The query file is 90% allowed names, 10% subdomains
# of blocked names. Query log off, one worker thread each: the stage's cost is not hidden
# behind the log. Loopback only; every load round is bounded by dnsperf -l.
# CHAPERONE_BIN: a release binary (default target/release/chaperone).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-50000}
SECS=${2:-10}
ROUNDS=${3:-3}
BIN=${CHAPERONE_BIN:-$ROOT/target/release/chaperone}
WORK=$(mktemp -d)
cd "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

python3 - "$N" "$ROOT/../shared/lists-real/ut1" <<'PY'
import sys, os, re, lzma
n = int(sys.argv[1])
ut1 = sys.argv[2]
ips = []
for cat in sorted(os.listdir(ut1)):
    for name in ("domains", "domains.xz"):
        p = os.path.join(ut1, cat, name)
        if os.path.exists(p):
            text = (lzma.open(p, "rt") if p.endswith(".xz") else open(p)).read()
            ips += [l.strip() for l in text.splitlines() if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", l.strip())]
with open("upstream.conf", "w") as f:
    f.write("server:\n  interface: 127.0.0.1@15353\n  do-not-query-localhost: no\n"
            "  username: \"\"\n  chroot: \"\"\n  use-syslog: no\n  num-threads: 1\n"
            "  local-zone: \"test.\" static\n")
    for i in range(n):
        a = f"10.{i>>16&255}.{i>>8&255}.{i&255}"
        b = f"10.{(i>>16&255)+64}.{i>>8&255}.{i&255}"
        k = i % 10
        if k < 5:
            names = [f"site{i}.test", f"site{i}.edge.cdn.test"]
        elif k < 7:
            names = [f"site{i}.test", f"site{i}.a.cdn.test", f"site{i}.b.cdn.test"]
        else:
            names = [f"site{i}.test"]
        for x, y in zip(names, names[1:]):
            f.write(f'  local-data: "{x}. 3600 IN CNAME {y}."\n')
        for ip in (a, b):
            f.write(f'  local-data: "{names[-1]}. 3600 IN A {ip}"\n')
with open("blocked.txt", "w") as b:
    for i in range(n // 10):
        b.write(f"blocked{i}.test\n")
    b.write("".join(f"{ip}\n" for ip in sorted(set(ips)) if not ip.startswith("10.")))
with open("mix.q", "w") as q:
    for i in range(n):
        q.write(f"www.blocked{i // 10}.test A\n" if i % 10 == 9 else f"site{i}.test A\n")
PY
"$BIN" compile --out lists.fstb "blocked=domains:$WORK/blocked.txt" >compile.log 2>&1 || { cat compile.log; exit 1; }
tail -3 compile.log
for mode in on off; do
  port=$([ $mode = on ] && echo 15355 || echo 15356)
  flag=$([ $mode = on ] && echo true || echo false)
  cat > $mode.toml <<TOML
[server]
listen = ["127.0.0.1:$port"]
threads = 1
[ratelimit]
enabled = false
[upstream]
servers = ["127.0.0.1:15353"]
[cache]
max_entries = 400000
[lists]
bundle = "lists.fstb"
[[network]]
cidrs = ["127.0.0.0/8"]
group = "all"
[group.all]
block = ["blocked"]
[inspect]
cname = $flag
addresses = $flag
[storage]
path = "$WORK/$mode.db"
[querylog]
enabled = false
TOML
done
unbound -d -c upstream.conf >upstream.log 2>&1 & pids+=($!)
"$BIN" serve --config on.toml >on.log 2>&1 & pids+=($!); ON=$!
"$BIN" serve --config off.toml >off.log 2>&1 & pids+=($!); OFF=$!
ready() { for _ in $(seq 600); do dig +time=1 +tries=1 -p "$1" @127.0.0.1 site0.test >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "nothing on port $1"; exit 1; }
ready 15353; ready 15355; ready 15356
for p in 15355 15356; do dnsperf -s 127.0.0.1 -p $p -d mix.q -n 1 -q 200 >/dev/null 2>&1; done
echo "site0.test (two addresses via a CNAME): $(dig +short -p 15355 @127.0.0.1 site0.test | head -1) (on) / $(dig +short -p 15356 @127.0.0.1 site0.test | head -1) (off)"
run() { dnsperf -s 127.0.0.1 -p "$1" -d mix.q -l "$SECS" -c 4 -q 200 2>/dev/null | awk '/Queries per second/{q=$4} /Queries lost/{l=$3} END{printf "%s %s\n", q, l}'; }
for r in $(seq "$ROUNDS"); do
  read -r qon lon < <(run 15355); read -r qoff loff < <(run 15356)
  echo "round $r: inspect on ${qon} qps (lost ${lon}) | off ${qoff} qps (lost ${loff}) | on/off $(echo "scale=3; $qon / $qoff" | bc)"
done
echo "rss: on $(awk '/VmRSS/{print $2" kB"}' /proc/$ON/status), off $(awk '/VmRSS/{print $2" kB"}' /proc/$OFF/status)"
