#!/usr/bin/env python3
"""Writes the blocked names and the nonexistent names in each server's native form.

    python3 benches/peers/native.py LISTED NX OUTDIR

LISTED: every distinct listed name (querygen.py --listed-out), NX: the nonexistent names of
the query file (querygen.py --nx-out). Writes into OUTDIR:
- unbound-blocked.conf  `local-zone: "name." always_nxdomain` (the name and below)
- blocked.rpz           RPZ zone: `name CNAME .` and `*.name CNAME .` (NXDOMAIN, subtree)
- dnsmasq-blocked.conf  `address=/name/` (NXDOMAIN for the name and below, Pi-hole's form)
- upstream-nx.conf      `local-zone: "name." always_nxdomain` for the test upstream
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
        for n in (n.strip() for n in open(nx)):
            if n:
                f.write(f'  local-zone: "{n}." always_nxdomain\n')


if __name__ == "__main__":
    main()
