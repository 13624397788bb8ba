#!/usr/bin/env bash
# Recursion from the root: Chaperone (recursive mode) against unbound, both resolving from
# the same root hint on the larger offline test internet (examples/test_internet.rs and
# examples/internet/world/: 514 zones on 33 authoritative servers at 127.0.1.0/24 port 53,
# with glueless delegations, lame and slow servers, cross-TLD CNAME chains, NXDOMAIN and
# NODATA names). Everything stays on loopback.
#
#   sudo benches/recursion.sh [rounds]        # default 3 rounds
#
# Each round starts both resolvers afresh (empty caches) and, for each in turn, asks every
# question of `test_internet names` (about 1,450, NAME TYPE, zone by zone) once each, one
# after the other ("cold": the first name of each zone walks its delegation), then the
# same questions again ("cached"). `test_internet measure` times each question in
# microseconds. The table shows, per round and as the median over rounds: the median and
# the mean cold time per question, the median cached time, and how many questions the
# resolver sent to the authorities per cold question; then Chaperone's figures as a ratio
# of unbound's (targets, issue 17: time <= 1.5x, questions <= 1.3x).
#
# Needs: root (port 53), a Rust toolchain, `apt-get install -y unbound dnsutils`.
# Bounded: every step runs under `timeout`; a round takes about half a minute (the slow
# server answers after 150 ms), the whole run at most ROUNDS x 10 minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}
CH_PORT=${CH_PORT:-5391}
UB_PORT=${UB_PORT:-5392}
WORK=$(mktemp -d /tmp/chaperone-recursion.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v unbound >/dev/null || { echo "needs unbound: apt-get install -y unbound dnsutils" >&2; exit 2; }
command -v dig >/dev/null || { echo "needs dig: apt-get install -y dnsutils" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root: the test authorities listen on port 53" >&2; exit 2; }

timeout 900 cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin chaperone --example test_internet >&2
CHAPERONE="$ROOT/target/release/chaperone"
INTERNET="$ROOT/target/release/examples/test_internet"
"$INTERNET" names > "$WORK/names.txt"
N=$(wc -l < "$WORK/names.txt")

# The test internet, for the whole run (it exits by itself after 600 s at most).
"$INTERNET" serve $((ROUNDS * 600 + 60)) > "$WORK/internet.out" 2> "$WORK/internet.err" &
NET_PID=$!
PIDS+=("$NET_PID")
for _ in $(seq 100); do grep -q ready "$WORK/internet.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/internet.out" || { cat "$WORK/internet.err" >&2; exit 1; }

# Chaperone: recursive from the test root; no query log (unbound keeps none either), no
# filtering in the way (the staff group blocks nothing), one worker thread like unbound.
printf 'example.invalid\n' > "$WORK/none.txt"
cat > "$WORK/chaperone.toml" <<EOF
[server]
listen = ["127.0.0.1:$CH_PORT"]
threads = 1

# Load tests send from one address: no rate limit.
[ratelimit]
enabled = false
[upstream]
mode = "recursive"
root_hints = ["127.0.1.1"]

[lists]
bundle = "$WORK/lists.fstb"

[[lists.source]]
category = "none"
path = "$WORK/none.txt"

[storage]
path = "$WORK/chaperone.db"

[querylog]
enabled = false

[[network]]
cidrs = ["127.0.0.1/32"]
group = "staff"

[group.staff]
block = []
EOF
"$CHAPERONE" check --config "$WORK/chaperone.toml" >&2

# unbound: the same root hint, iterator only (the test internet is unsigned and Chaperone
# does not validate here either), QNAME minimisation on as in hickory, no prefetch.
cat > "$WORK/root.hints" <<EOF
.                   3600000 IN NS a.root-servers.net.
a.root-servers.net. 3600000 IN A  127.0.1.1
EOF
cat > "$WORK/unbound.conf" <<EOF
server:
    interface: 127.0.0.1@$UB_PORT
    port: $UB_PORT
    do-ip6: no
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    root-hints: "$WORK/root.hints"
    module-config: "iterator"
    qname-minimisation: yes
    prefetch: no
    num-threads: 1
    chroot: ""
    username: ""
    directory: "$WORK"
    pidfile: "$WORK/unbound.pid"
    use-syslog: no
    logfile: "$WORK/unbound.log"
    verbosity: 0
remote-control:
    control-enable: no
EOF
unbound-checkconf "$WORK/unbound.conf" >&2

wait_ready() { # port: any answer to a question that leaves nobody's cache warmer
    for _ in $(seq 100); do
        dig +time=1 +tries=1 @127.0.0.1 -p "$1" version.server CH TXT >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "resolver on port $1 did not start" >&2
    return 1
}

start() { # name
    case "$1" in
        chaperone)
            timeout 900 "$CHAPERONE" serve --config "$WORK/chaperone.toml" > "$WORK/chaperone.log" 2>&1 &
            PID=$!; wait_ready "$CH_PORT" ;;
        unbound)
            timeout 900 unbound -d -c "$WORK/unbound.conf" > "$WORK/unbound.out" 2>&1 &
            PID=$!; wait_ready "$UB_PORT" ;;
    esac
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

field() { sed -n "s/.*$1=\\([0-9]*\\).*/\\1/p"; }

questions() { # how many questions the test internet has received so far
    local before
    before=$(grep -c questions= "$WORK/internet.out" || true)
    kill -USR1 "$NET_PID"
    for _ in $(seq 50); do
        [ "$(grep -c questions= "$WORK/internet.out" || true)" -gt "$before" ] && break
        sleep 0.02
    done
    grep questions= "$WORK/internet.out" | tail -1 | field questions
}

: > "$WORK/results"
for r in $(seq "$ROUNDS"); do
    # Alternate who goes first, so neither always meets the authorities' first packets.
    if [ $((r % 2)) = 1 ]; then order="chaperone unbound"; else order="unbound chaperone"; fi
    for who in $order; do
        start "$who"
        port=$CH_PORT; [ "$who" = unbound ] && port=$UB_PORT
        q0=$(questions)
        cold=$(timeout 300 "$INTERNET" measure "127.0.0.1:$port" "$WORK/names.txt" 2>"$WORK/$who-cold-$r.txt")
        q1=$(questions)
        cached=$(timeout 300 "$INTERNET" measure "127.0.0.1:$port" "$WORK/names.txt" 2>"$WORK/$who-cached-$r.txt")
        stop "$PID"
        echo "$who $r $(echo "$cold" | field median_us) $(echo "$cold" | field total_us) $(echo "$cold" | field failed) $(echo "$cached" | field median_us) $(echo "$cached" | field failed) $(( (q1 - q0) * 100 / N ))" >> "$WORK/results"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }
hundredths() { awk '{printf "%d.%02d", $1 / 100, $1 % 100}'; }

echo
echo "Recursion from the root on the loopback test internet: $N questions, $ROUNDS rounds"
echo "(microseconds per question, sequential; cold = first ask, empty caches; cached = again;"
echo " queries/q = questions the authorities received per cold question; fail = SERVFAIL or no reply)"
echo
printf '%-10s %5s %11s %11s %10s %5s %13s\n' resolver round cold_median cold_mean queries/q fail cached_median
while read -r who r cm ct cf hm hf qn; do
    printf '%-10s %5s %11s %11s %10s %5s %13s\n' "$who" "$r" "$cm" "$((ct / N))" "$(echo "$qn" | hundredths)" "$((cf + hf))" "$hm"
done < "$WORK/results"
echo
echo "median over rounds:"
printf '%-10s %11s %11s %10s %13s\n' resolver cold_median cold_mean queries/q cached_median
for who in chaperone unbound; do
    cm=$(awk -v w="$who" '$1==w {print $3}' "$WORK/results" | median)
    ct=$(awk -v w="$who" -v n="$N" '$1==w {print int($4 / n)}' "$WORK/results" | median)
    hm=$(awk -v w="$who" '$1==w {print $6}' "$WORK/results" | median)
    qn=$(awk -v w="$who" '$1==w {print $8}' "$WORK/results" | median)
    printf '%-10s %11s %11s %10s %13s\n' "$who" "$cm" "$ct" "$(echo "$qn" | hundredths)" "$hm"
    echo "$who $cm $ct $qn $hm" >> "$WORK/medians"
done
echo
echo "chaperone / unbound (targets: time <= 1.5, questions <= 1.3):"
awk '{v[$1]=$0; cm[$1]=$2; ct[$1]=$3; qn[$1]=$4; hm[$1]=$5}
     function r(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
     END { printf "  cold_median %s   cold_mean %s   queries/q %s   cached_median %s\n",
           r(cm["chaperone"], cm["unbound"]), r(ct["chaperone"], ct["unbound"]),
           r(qn["chaperone"], qn["unbound"]), r(hm["chaperone"], hm["unbound"]) }' "$WORK/medians"
