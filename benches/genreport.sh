#!/usr/bin/env bash
# ISC DNS compliance tool (genreport) against Chaperone and unbound, side by side, on
# loopback only. Prints each server's counts of passed and failed sub-tests, and the tests
# Chaperone fails that unbound passes (issue 11: "no failure that unbound does not have").
#
# What it needs (Debian): unbound, and to build genreport: autoconf automake libtool
# pkg-config libssl-dev (`apt-get install unbound autoconf automake libtool pkg-config
# libssl-dev`). A release build of Chaperone (`cargo build --release`).
#
# genreport's source is not part of this project and this script never downloads it.
# Get it yourself from ISC's public mirror on GitHub, damaestro/DNS-Compliance-Testing
# (autotools, C), into a folder outside the repository, and point GENREPORT_SRC at it:
#   GENREPORT_SRC=/tmp/DNS-Compliance-Testing benches/genreport.sh
# The script builds it under /tmp (autoreconf -fi; ./configure LIBS="-lresolv -lcrypto";
# make), or uses GENREPORT=/path/to/genreport if you built it already.
#
# The servers under test (all on 127.0.0.1, high ports, stopped at exit):
#   - an authority: unbound with local data for the root zone and example.test.;
#   - unbound as a forwarding resolver to that authority;
#   - Chaperone forwarding to the same authority, every client allowed, no rate limit.
# genreport is run with -R (recursive-server tests) and -f (full: EDNS and more) for the
# zones "." and "example.test." against each resolver.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/genreport.XXXXXX)
AUTH_PORT=${AUTH_PORT:-15400}
UNBOUND_PORT=${UNBOUND_PORT:-15401}
CHAPERONE_PORT=${CHAPERONE_PORT:-15402}
FLAGS=${GENREPORT_FLAGS:--R -f}
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

if [[ -z "${GENREPORT:-}" ]]; then
    if [[ -z "${GENREPORT_SRC:-}" || ! -f "${GENREPORT_SRC}/genreport.c" ]]; then
        echo "set GENREPORT_SRC to a checkout of damaestro/DNS-Compliance-Testing (see the comments)," >&2
        echo "or GENREPORT to a built genreport binary" >&2
        exit 2
    fi
    BUILD="$WORK/genreport-src"
    cp -r "$GENREPORT_SRC" "$BUILD"
    (cd "$BUILD" && autoreconf -fi >/dev/null 2>&1 \
        && ./configure LIBS="-lresolv -lcrypto" >/dev/null \
        && make >/dev/null)
    GENREPORT="$BUILD/genreport"
fi
command -v unbound >/dev/null || { echo "unbound is not installed" >&2; exit 2; }
CHAPERONE=${CHAPERONE:-$ROOT/target/release/chaperone}
[[ -x "$CHAPERONE" ]] || { echo "build Chaperone first: cargo build --release" >&2; exit 2; }

unbound_conf() { # name port extra...
    local name=$1 port=$2; shift 2
    mkdir -p "$WORK/$name"
    {
        echo "server:"
        echo "  interface: 127.0.0.1@$port"
        echo "  port: $port"
        echo "  do-daemonize: no"
        echo "  username: \"\""
        echo "  chroot: \"\""
        echo "  directory: \"$WORK/$name\""
        echo "  pidfile: \"$WORK/$name/unbound.pid\""
        echo "  use-syslog: no"
        echo "  logfile: \"$WORK/$name/unbound.log\""
        echo "  access-control: 127.0.0.0/8 allow"
        echo "  module-config: \"iterator\""
        echo "  do-not-query-localhost: no"
        echo "  ratelimit: 0"
        # unbound answers the special-use name test. itself (RFC 6761) unless told not to.
        echo "  local-zone: \"test.\" nodefault"
        for line in "$@"; do echo "  $line"; done
        echo "remote-control:"
        echo "  control-enable: no"
    } > "$WORK/$name/unbound.conf"
}

# The authority: static local zones answer authoritatively from local data.
unbound_conf auth "$AUTH_PORT" \
    'local-zone: "." static' \
    'local-data: ". 300 IN SOA a.root.test. hostmaster.root.test. 1 3600 600 86400 60"' \
    'local-data: ". 300 IN NS a.root.test."' \
    'local-data: "a.root.test. 300 IN A 127.0.0.1"' \
    'local-data: "example.test. 300 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60"' \
    'local-data: "example.test. 300 IN NS ns.example.test."' \
    'local-data: "ns.example.test. 300 IN A 127.0.0.1"' \
    'local-data: "www.example.test. 300 IN A 192.0.2.10"' \
    'local-data: "www.example.test. 300 IN AAAA 2001:db8::10"' \
    'local-data: "example.test. 300 IN MX 10 www.example.test."' \
    'local-data: "example.test. 300 IN TXT \"v=spf1 -all\""'
unbound -c "$WORK/auth/unbound.conf" & PIDS+=($!)

# unbound as the reference resolver, forwarding everything to the authority.
unbound_conf resolver "$UNBOUND_PORT"
cat >> "$WORK/resolver/unbound.conf" <<CONF
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$AUTH_PORT
CONF
unbound -c "$WORK/resolver/unbound.conf" & PIDS+=($!)

# Chaperone, forwarding to the same authority.
mkdir -p "$WORK/chaperone"
cat > "$WORK/chaperone/chaperone.toml" <<CONF
[server]
listen = ["127.0.0.1:$CHAPERONE_PORT"]
threads = 1
[ratelimit]
enabled = false
[upstream]
servers = ["127.0.0.1:$AUTH_PORT"]
timeout_ms = 1000
attempts = 1
[lists]
bundle = "empty.fstb"
[[lists.source]]
category = "none"
path = "none.txt"
[querylog]
enabled = false
[[network]]
cidrs = ["127.0.0.0/8"]
group = "all"
[group.all]
CONF
: > "$WORK/chaperone/none.txt"
RUST_LOG=warn "$CHAPERONE" serve --config "$WORK/chaperone/chaperone.toml" \
    > "$WORK/chaperone/log" 2>&1 & PIDS+=($!)

# Wait (bounded) until both resolvers answer.
for _ in $(seq 50); do
    if dig +short +time=1 +tries=1 @127.0.0.1 -p "$UNBOUND_PORT" www.example.test >/dev/null 2>&1 \
        && dig +short +time=1 +tries=1 @127.0.0.1 -p "$CHAPERONE_PORT" www.example.test >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done

run() { # port label
    # shellcheck disable=SC2086
    printf '. server 127.0.0.1\nexample.test. server 127.0.0.1\n' \
        | timeout 300 "$GENREPORT" $FLAGS -P "$1" > "$WORK/$2.txt" 2>&1 || true
}
run "$UNBOUND_PORT" unbound
run "$CHAPERONE_PORT" chaperone

# Each line: "zone @address (server): test=result test=result ...".
results() { grep -o '[a-z0-9]*=[a-z0-9,]*' "$WORK/$1.txt" | sort; }
count() { results "$1" | awk -F= -v l="$1" '{ if ($2 == "ok") ok++; else bad++ } END { printf "%-10s %4d ok %4d failed\n", l, ok, bad }'; }
count unbound
count chaperone
failed() { results "$1" | grep -v '=ok$' | cut -d= -f1 | sort -u; }
echo "tests Chaperone fails that unbound passes:"
comm -13 <(failed unbound) <(failed chaperone) | sed 's/^/  /'
echo "tests both fail (Chaperone's result / unbound's):"
comm -12 <(failed unbound) <(failed chaperone) | while read -r t; do
    printf '  %s: %s / %s\n' "$t" "$(results chaperone | grep "^$t=" | sort -u | cut -d= -f2 | paste -sd' ')" \
        "$(results unbound | grep "^$t=" | sort -u | cut -d= -f2 | paste -sd' ')"
done
echo "raw reports: $WORK/unbound.txt $WORK/chaperone.txt"
trap - EXIT
cleanup
