#!/usr/bin/env python3
"""Writes the blocked names and the nonexistent names in each server's native form.

    python3 benches/peers/native.py LISTED NX OUTDIR

LISTED: every distinct listed name (querygen.py --listed-out), NX: the nonexistent names of
the query file (querygen.py --nx-out). Writes into OUTDIR:
- unbound-blocked.conf  `local-zone: "name." always_nxdomain` (the name and below)
- blocked.rpz           RPZ zone: `name CNAME .` and `*.name CNAME .` (NXDOMAIN, subtree)
- dnsmasq-blocked.conf  `address=/name/` (NXDOMAIN for the name and below, Pi-hole's form)
- upstream-nx.conf      negative answers with an SOA for the test upstream (see below)
Every peer blocks the same subtrees Chaperone blocks (`match = "subtree"`).
"""
import sys


def main():
    listed, nx, out = sys.argv[1:4]
    names = [n.strip() for n in open(listed) if n.strip()]
    with open(f"{out}/unbound-blocked.conf", "w") as u, \
            open(f"{out}/blocked.rpz", "w") as r, \
            open(f"{out}/dnsmasq-blocked.conf", "w") as d:
        r.write("$ORIGIN rpz.bench.\n$TTL 60\n"
                "@ IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n"
                "@ IN NS localhost.\n")
        for n in names:
            u.write(f'  local-zone: "{n}." always_nxdomain\n')
            r.write(f"{n} CNAME .\n*.{n} CNAME .\n")
            d.write(f"address=/{n}/\n")
    with open(f"{out}/upstream-nx.conf", "w") as f:
        f.write(upstream_negative(n.strip() for n in open(nx)))


# Negative answers carry an SOA, as every real authority's do: RFC 2308 §5 forbids caching
# one without, and unbound's `always_nxdomain` sends none, which made the nonexistent names
# uncacheable for Chaperone alone. The local suffixes become `static` zones with an SOA
# (NXDOMAIN with the SOA below them); any other nonexistent name becomes a `static` zone of
# its own with an SOA (a negative answer with the SOA: NODATA at the zone's apex, which is
# the nearest unbound's local zones come to NXDOMAIN with an SOA there).
LOCAL_SUFFIXES = ("lan", "local", "home.arpa", "internal", "localdomain", "corp")
SOA = "a.invalid. b.invalid. 1 3600 600 86400 300"


def upstream_negative(names):
    lines = [f'  local-zone: "{s}." static\n  local-data: "{s}. 300 IN SOA {SOA}"\n'
             for s in LOCAL_SUFFIXES]
    for n in names:
        if n and not any(n.endswith("." + s) for s in LOCAL_SUFFIXES):
            lines.append(f'  local-zone: "{n}." static\n  local-data: "{n}. 300 IN SOA {SOA}"\n')
    return "".join(lines)


if __name__ == "__main__":
    main()
