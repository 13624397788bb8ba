#!/usr/bin/env bash
# One hostile pupil device against a release build started with a soft open-files limit of
# 1024 (systemd's default LimitNOFILE=1024:524288), loopback only, every attack bounded in
# count and time.
#
#   benches/abuse.sh [seconds per scenario]   (default 8)
#
# Prints, per attack: staff uncached success, staff cached success and p99, server CPU, and
# disk growth per minute. Targets during every attack: staff uncached success >= 99%,
# cached p99 < 10 ms, disk growth < 1 MB per minute. Needs python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CHAPERONE_BIN:-$ROOT/target/release/chaperone}
[ -n "${CHAPERONE_BIN:-}" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin chaperone >&2
exec python3 "$ROOT/benches/abuse.py" "$BIN" "${1:-8}"
