#!/usr/bin/env bash
# Started by ../shared/bench/compare.sh in $WORK: Chaperone on 127.0.0.1:15355, forwarding
# to 127.0.0.1:15353, blocking every name in $WORK/blocked.txt. The list is compiled to a
# bundle first (as a school would with `chaperone compile`), so start-up only maps it.
set -euo pipefail
cd "$WORK"
threads=""
[ "${CHAPERONE_THREADS:-1}" != "all" ] && threads="threads = ${CHAPERONE_THREADS:-1}"
cat > chaperone.toml <<TOML
[server]
listen = ["127.0.0.1:15355"]
$threads
# Load tests send from one address: no rate limit.
[ratelimit]
enabled = false
[upstream]
servers = ["127.0.0.1:15353"]
[cache]
max_entries = 400000
[lists]
bundle = "blocked.fstb"
[[network]]
cidrs = ["127.0.0.0/8"]
group = "all"
[group.all]
block = ["blocked"]
[querylog]
enabled = ${CHAPERONE_QUERYLOG:-false}
TOML
"$CHAPERONE_BIN" compile --out blocked.fstb "blocked=domains:$WORK/blocked.txt" >&2
exec "$CHAPERONE_BIN" serve --config chaperone.toml
