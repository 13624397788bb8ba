#!/usr/bin/env bash
# Started by ../shared/bench/compare.sh in $WORK: Chaperone on 127.0.0.1:15355, forwarding
# to 127.0.0.1:15353, blocking every name in $WORK/blocked.txt. The list is compiled to a
# bundle first (as a school would with `chaperone compile`), so start-up only maps it.
#
# CHAPERONE_PROFILE=school (the default) runs the example school's policy as a school runs
# it: config/example.toml with its groups, schedules, SafeSearch, bypass prevention, every
# sample category plus the benchmark's blocked names as one more category blocked for
# pupils, and the query log on (SQLite, pseudonymised groups), with dnsperf's 127.0.0.1
# placed in the pupils' network. CHAPERONE_QUERYLOG=false turns the log off in it;
# CHAPERONE_LEASES=FILE uses that dnsmasq lease file instead of the example's sample.
# CHAPERONE_INSPECT=false turns response inspection ([inspect] cname and addresses) off, to
# measure its cost in either profile.
# CHAPERONE_PROFILE=minimal is one group, one category, log off unless CHAPERONE_QUERYLOG=true:
# the configuration the first-wave figures were measured with.
set -euo pipefail
cd "$WORK"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
threads=""
[ "${CHAPERONE_THREADS:-1}" != "all" ] && threads="threads = ${CHAPERONE_THREADS:-1}"
"$CHAPERONE_BIN" compile --out blocked.fstb "blocked=domains:$WORK/blocked.txt" >&2
if [ "${CHAPERONE_PROFILE:-school}" = "minimal" ]; then
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
[inspect]
cname = ${CHAPERONE_INSPECT:-true}
addresses = ${CHAPERONE_INSPECT:-true}
TOML
else
  python3 - "$ROOT" "$WORK" "$threads" "${CHAPERONE_QUERYLOG:-true}" <<'PY'
import os, re, sys
root, work, threads, log = sys.argv[1:5]
s = open(f"{root}/config/example.toml").read()
s = s.replace('listen = ["127.0.0.1:5353"]', 'listen = ["127.0.0.1:15355"]\n' + threads)
s = re.sub(r'servers = \[[^\]]*\]', 'servers = ["127.0.0.1:15353"]', s, count=1)
s = s.replace('max_entries = 100000', 'max_entries = 400000')
s = s.replace('"../lists/', f'"{root}/lists/')
# Files the example names beside itself (TLS sample, users CSV) from config/.
s = s.replace('"sample-tls-', f'"{root}/config/sample-tls-')
s = s.replace('csv = "example-users.csv"', f'csv = "{root}/config/example-users.csv"')
s = s.replace('bundle = "../target/example-lists.fstb"', f'bundle = "{work}/school.fstb"')
s = s.replace('path = "../target/example.db"', f'path = "{work}/chaperone.db"')
# The example's sample DHCP leases, or (CHAPERONE_LEASES) a dnsmasq lease file that names
# dnsperf's 127.0.0.1, so every query looks up and logs a device name.
leases = os.environ.get("CHAPERONE_LEASES") or f"{root}/config/example-dnsmasq.leases"
s = s.replace('path = "example-dnsmasq.leases"', f'path = "{leases}"')
s = s.replace('[[lists.source]]', f'[[lists.source]]\ncategory = "blocked"\npath = "{work}/blocked.txt"\nformat = "domains"\n\n[[lists.source]]', 1)
s = s.replace('cidrs = ["127.0.0.1/32", "10.10.0.0/16"]', 'cidrs = ["10.10.0.0/16"]')
s = s.replace('cidrs = ["127.0.0.2/32", "10.20.0.0/16"', 'cidrs = ["127.0.0.0/8", "10.20.0.0/16"')
# The benchmark's names are one more category blocked for pupils (whatever else they block).
s, n = re.subn(r'(\n\[group\.pupils\]\n(?:#[^\n]*\n)*block = \[[^\]]*)\]', r'\1, "blocked"]', s, count=1)
assert n == 1, "pupils block the benchmark's names"
s = re.sub(r'(\[querylog\]\nenabled = )true', r'\g<1>' + log, s)
for key in ('listen = "127.0.0.1:8080"', 'listen = "127.0.0.1:8053"'):
    s = s.replace(key, key.replace('127.0.0.1:80', '127.0.0.1:180'))
# dnsperf sends every query from one address: exempt it, as a school exempts a server
# VLAN, so the limiter still runs its check on every query.
if '[ratelimit]' in s:
    s = re.sub(r'(\[ratelimit\][^\[]*?)exempt = \[[^\]]*\]', r'\1exempt = ["127.0.0.0/8"]', s, flags=re.S)
else:
    s += '\n[ratelimit]\nexempt = ["127.0.0.0/8"]\n'
inspect = os.environ.get("CHAPERONE_INSPECT", "true")
s = s.replace('[inspect]\ncname = true\naddresses = true', f'[inspect]\ncname = {inspect}\naddresses = {inspect}')
open(f"{work}/chaperone.toml", "w").write(s)
PY
fi
exec "$CHAPERONE_BIN" serve --config chaperone.toml
