#!/usr/bin/env bash
# Peak memory of a list refresh: a release build serves one URL source of N names
# (default 1,000,000, gzip-compressed) from a loopback `python3 -m http.server`; once it
# serves, the peak-RSS counter is reset (/proc/PID/clear_refs 5), the list is replaced by a
# changed one, and the refresher downloads, unpacks, checks, compiles and swaps it. Prints
# the serving RSS before the refresh, the peak during it (VmHWM) and the difference.
# Target (issue 12): peak < serving + 150 MB. Loopback only; needs python3 and gzip.
#
#   benches/refresh-memory.sh [names]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CHAPERONE_BIN:-$ROOT/target/release/chaperone}
[ -n "${CHAPERONE_BIN:-}" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin chaperone >&2
N=${1:-1000000}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/www"

# A realistic spread: many registrable domains, some with subdomains.
gen() {
  python3 - "$N" "$1" <<'PY'
import sys
n, salt = int(sys.argv[1]), sys.argv[2]
tlds = ["com", "net", "org", "fr", "co.uk", "io", "info", "ru", "de", "xyz"]
out = sys.stdout
for i in range(n):
    sub = f"cdn{i % 7}." if i % 3 == 0 else ""
    out.write(f"{sub}site{i:07d}-{salt}.{tlds[i % len(tlds)]}\n")
PY
}
gen a | gzip -1 > "$WORK/www/list.txt.gz"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$WORK/www" && exec python3 -m http.server --bind 127.0.0.1 "$port" >/dev/null 2>&1) &
PIDS+=($!)
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/list.txt.gz')" 2>/dev/null && break
  sleep 0.1
done

cat > "$WORK/chaperone.toml" <<TOML
[server]
listen = ["127.0.0.1:0"]
threads = 2
[upstream]
servers = ["127.0.0.1:9"]
[lists]
[[lists.source]]
category = "synthetic"
name = "synthetic"
url = "http://127.0.0.1:$port/list.txt.gz"
allow_http = true
refresh = "5s"
[[network]]
cidrs = ["127.0.0.0/8"]
group = "all"
[group.all]
block = ["synthetic"]
TOML

"$BIN" serve --config "$WORK/chaperone.toml" 2> "$WORK/log" &
PID=$!
PIDS+=($PID)
for _ in $(seq 600); do
  grep -q "Chaperone is answering" "$WORK/log" && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/log" >&2; exit 1; }
  sleep 0.1
done
# Let the first refresh (304: nothing changed) pass, then settle.
sleep 7
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }
serving=$(kb VmRSS)
echo 5 > "/proc/$PID/clear_refs"   # VmHWM := VmRSS
gen b | gzip -1 > "$WORK/www/list.txt.gz.new" && mv "$WORK/www/list.txt.gz.new" "$WORK/www/list.txt.gz"
reloads=$(grep -c "reloaded config and lists" "$WORK/log" || true)
for _ in $(seq 1200); do
  [ "$(grep -c "reloaded config and lists" "$WORK/log" || true)" -gt "$reloads" ] && break
  grep -q "keeping the last good copy\|reload after a list download failed" "$WORK/log" && { cat "$WORK/log" >&2; exit 1; }
  sleep 0.1
done
[ "$(grep -c "reloaded config and lists" "$WORK/log" || true)" -gt "$reloads" ] || { echo "no reload seen" >&2; cat "$WORK/log" >&2; exit 1; }
peak=$(kb VmHWM)
after=$(kb VmRSS)
echo "names: $N (gzip $(stat -c %s "$WORK/www/list.txt.gz") bytes)"
echo "serving RSS before refresh: $((serving / 1024)) MB"
echo "peak RSS during refresh:    $((peak / 1024)) MB  (+$(((peak - serving) / 1024)) MB above serving; target < +150 MB)"
echo "RSS after the swap:         $((after / 1024)) MB"
grep "reloaded config and lists" "$WORK/log" | tail -1 >&2
