#!/usr/bin/env bash
# DoT and DoH throughput: Chaperone against unbound's own DoT/DoH listeners, same run, both
# forwarding to one loopback upstream (an unbound serving local data). Loopback only; each
# dnsperf round is bounded by -l.
#
#   benches/encrypted.sh [seconds] [clients]        (QUERYLOG=false: query log off)
#
# Needs: apt-get install -y unbound dnsperf. Uses the sample certificate in config/.
# dnsperf's DoT mode sends no SNI, so Chaperone (which reads the device ID from the SNI)
# answers every DoT query REFUSED before the pipeline: that row measures the TLS framing
# and refusal path, not resolution. DoH carries the ID in the path (doh-uri) and is
# answered in full. DoH runs with one query outstanding (-q 1): dnsperf 2.11's DoH client
# loses answers that arrive out of order on an HTTP/2 connection (seen: with 3 streams open,
# Chaperone answered streams 5, 1, 3 and dnsperf counted them lost), and Chaperone answers
# streams concurrently, as RFC 8484 allows, where unbound answers them in order.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-10}
CLIENTS=${2:-8}
BIN=${CHAPERONE_BIN:-$ROOT/target/release/chaperone}
[ -x "$BIN" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin chaperone >&2
# Our own DoT load client, which sends an SNI (dnsperf cannot): benches/dot_load.rs.
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bench dot_load >&2
DOT_LOAD=$(ls -t "$ROOT"/target/release/deps/dot_load-* | grep -v '\.d$' | head -1)
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
CERT=$ROOT/config/sample-tls-cert.pem
KEY=$ROOT/config/sample-tls-key.pem
# Upstream: unbound answering 100 names from local data.
{
  echo 'server:'
  echo '  interface: 127.0.0.1@15400'
  echo '  do-daemonize: no'
  echo '  use-syslog: no'
  echo '  username: ""'
  echo '  chroot: ""'
  echo '  num-threads: 1'
  echo '  access-control: 127.0.0.0/8 allow'
  echo '  local-zone: "bench.test." static'
  for i in $(seq 1 100); do echo "  local-data: \"www$i.bench.test. 300 A 192.0.2.$i\""; done
} > "$WORK/upstream.conf"
# unbound as the DoT/DoH front, forwarding to the upstream.
cat > "$WORK/front.conf" <<CONF
server:
  interface: 127.0.0.1@15411
  interface: 127.0.0.1@15412
  interface: 127.0.0.1@15413
  tls-port: 15412
  https-port: 15413
  tls-service-key: "$KEY"
  tls-service-pem: "$CERT"
  http-endpoint: "/dns-query"
  do-daemonize: no
  use-syslog: no
  username: ""
  chroot: ""
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  incoming-num-tcp: 1000
  local-zone: "test." nodefault
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@15400
CONF
cat > "$WORK/chaperone.toml" <<CONF
[server]
listen = ["127.0.0.1:15421"]
threads = 1
# dnsperf's clients all come from 127.0.0.1: room for them as one client.
tcp_max_connections = 1000
tcp_max_connections_per_client = 1000
[upstream]
servers = ["127.0.0.1:15400"]
[lists]
bundle = "$WORK/lists.fstb"
[[lists.source]]
category = "adult"
path = "$WORK/adult.txt"
[[network]]
cidrs = ["127.0.0.0/8"]
group = "pupils"
[group.pupils]
block = ["adult"]
[storage]
path = "$WORK/chaperone.db"
[ratelimit]
exempt = ["127.0.0.0/8"]
# As a school runs it, the query log is on; QUERYLOG=false shows the transport alone.
[querylog]
enabled = ${QUERYLOG:-true}
[tls]
cert = "$CERT"
key = "$KEY"
server_name = "dns.example-school.org.uk"
[dot]
listen = ["127.0.0.1:15422"]
[doh]
listen = ["127.0.0.1:15423"]
[[enrolled_device]]
id = "benchdevice"
name = "bench"
owner = "school"
group = "pupils"
CONF
echo "adult.bench.test" > "$WORK/adult.txt"
for i in $(seq 1 100); do echo "www$i.bench.test A"; done > "$WORK/queries"
unbound -c "$WORK/upstream.conf" > "$WORK/upstream.log" 2>&1 & pids+=($!)
unbound -c "$WORK/front.conf" > "$WORK/front.log" 2>&1 & pids+=($!)
RUST_LOG=warn "$BIN" serve --config "$WORK/chaperone.toml" > "$WORK/chaperone.log" 2>&1 & pids+=($!)
sleep 2
qps() { # mode port [extra -O]
  local q=200
  [ "$1" = doh ] && q=1
  dnsperf -m "$1" -s 127.0.0.1 -p "$2" -d "$WORK/queries" -l "$SECS" -c "$CLIENTS" -T 1 -q "$q" -t 2 ${3:+-O "$3"} 2>&1 |
    awk '/Queries per second/ {print $4} /Response codes/ {rc=$0} END {print rc > "/dev/stderr"}' || true
}
printf '%-6s %-10s %12s\n' mode server QPS >&2
for mode in dot doh; do
  if [ "$mode" = dot ]; then c=15422; u=15412; co=""; uo=""; else
    c=15423; u=15413
    co="doh-uri=https://127.0.0.1:15423/dns-query/benchdevice"
    uo="doh-uri=https://127.0.0.1:15413/dns-query"
  fi
  a=$(qps "$mode" "$u" "$uo"); b=$(qps "$mode" "$c" "$co")
  printf '%-6s %-10s %12s\n' "$mode" unbound "$a" "$mode" chaperone "$b" >&2
  echo "$mode ratio chaperone/unbound: $(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }')" >&2
done
# DoT with an SNI naming the enrolled device: resolution, not refusal. 8 connections, 25
# queries in flight on each (200 in all, as dnsperf above).
dl() { "$DOT_LOAD" "$1" "$2" bench.test "$SECS" "$CLIENTS" 25 2>&1 | tee /dev/stderr | awk '/answers per second/ {print $4}'; }
a=$(dl 127.0.0.1:15412 dns.example-school.org.uk)
b=$(dl 127.0.0.1:15422 benchdevice.dns.example-school.org.uk)
printf '%-6s %-10s %12s\n' dot-sni unbound "$a" dot-sni chaperone "$b" >&2
echo "dot-sni ratio chaperone/unbound: $(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }')" >&2
