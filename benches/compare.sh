#!/usr/bin/env bash
# Chaperone against unbound on this machine, same run: wraps ../shared/bench/compare.sh
# with the project's own release build.
#
#   benches/compare.sh [names] [seconds] [threads]
#
# names: blocked names and allowed names (default 100000); seconds per dnsperf round
# (default 10); threads: worker threads (default 1 for Chaperone, as the shared script runs
# unbound with num-threads: 1; "all" gives both servers one thread per core). Needs: apt-get install -y unbound dnsperf bc dnsutils.
# Loopback only; every load round is bounded by dnsperf -l.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-100000}
SECS=${2:-10}
THREADS=${3:-1}
# CHAPERONE_BIN: a binary already built (e.g. by `cargo test --release`), else build one.
if [ -z "${CHAPERONE_BIN:-}" ]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin chaperone >&2
  CHAPERONE_BIN="$ROOT/target/release/chaperone"
fi
export CHAPERONE_BIN CHAPERONE_THREADS="$THREADS"
SCRIPT="$ROOT/../shared/bench/compare.sh"
if [ "$THREADS" = "all" ]; then
  # All cores for both: a copy of the shared script with unbound's num-threads raised to
  # the core count (the script fixes it at 1).
  cores=$(nproc)
  SCRIPT=$(mktemp)
  sed "s/num-threads: 1/num-threads: $cores/g" "$ROOT/../shared/bench/compare.sh" > "$SCRIPT"
  chmod +x "$SCRIPT"
fi
exec "$SCRIPT" "bash $ROOT/benches/compare-chaperone.sh" "$N" "$SECS"
