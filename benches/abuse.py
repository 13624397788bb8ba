#!/usr/bin/env python3
"""A hostile pupil device against a release build, on loopback only (benches/abuse.sh).

Starts a small upstream (answers every name under test. with an A record, and never answers
names under blackhole.test.), then Chaperone with the given binary and `ulimit -n` already
applied by the caller. For each scenario it runs the attack from 127.0.0.2 (the pupils'
network) or 127.0.0.99 (no network) while a staff device at 127.0.0.3 asks uncached and
cached names, and prints: staff uncached success rate, staff cached p99 latency, server CPU
during the attack, disk growth of the data folder per minute of attack. Every loop is
bounded in count and time.
"""
import asyncio, os, random, socket, struct, subprocess, sys, tempfile, time, json, urllib.request

BIN = sys.argv[1]
SECS = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
DNS, UP, ADMIN, PAGE = 15455, 15453, 15456, 15457
TOKEN = "abuse-bench-token"


def name_wire(n):
    out = b""
    for label in n.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qid, n, qtype=1):
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name_wire(n) + struct.pack(">HH", qtype, 1)


class Upstream(asyncio.DatagramProtocol):
    """Answers NAME A 10.0.0.1 for everything but blackhole.test. names."""

    def connection_made(self, t):
        self.t = t

    def datagram_received(self, data, addr):
        if len(data) < 17:
            return
        i, labels = 12, []
        while i < len(data) and data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace").lower())
            i += 1 + n
        if labels[-2:] == ["blackhole", "test"]:
            return
        q = data[12:i + 5]
        hdr = data[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([10, 0, 0, 1])
        self.t.sendto(hdr + q + ans, addr)


async def ask(src, n, timeout=2.0, qtype=1):
    """One UDP query from `src`; (rcode or None on timeout, seconds)."""
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind((src, 0))
    qid = random.randrange(65536)
    t0 = time.perf_counter()
    try:
        await loop.sock_sendto(s, query(qid, n, qtype), ("127.0.0.1", DNS))
        data = await asyncio.wait_for(loop.sock_recv(s, 4096), timeout)
        return data[3] & 0xF, time.perf_counter() - t0
    except (asyncio.TimeoutError, OSError):
        return None, time.perf_counter() - t0
    finally:
        s.close()


async def staff_probe(stop, results):
    """Staff: one uncached and one cached name every 20 ms until stopped."""
    i = 0
    while not stop.is_set() and i < 100000:
        i += 1
        rc, _ = await ask("127.0.0.3", f"staff{random.randrange(1 << 30)}.u.test")
        results["uncached"].append(rc == 0)
        rc, dt = await ask("127.0.0.3", "www.cached.test")
        results["cached_ok"].append(rc == 0)
        results["cached_lat"].append(dt)
        await asyncio.sleep(0.02)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def disk_bytes(folder):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


async def attack_idle_connections(port, count=1100):
    """Open `count` TCP connections from 127.0.0.2 and hold them idle."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind(("127.0.0.2", 0))
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port)), 1)
            socks.append(s)
        except (OSError, asyncio.TimeoutError):
            s.close()
    return socks


async def attack_blackhole(stop):
    """1,500 q/s of unique names under a domain whose servers never answer."""
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind(("127.0.0.2", 0))
    sent = 0
    while not stop.is_set() and sent < 200000:
        for _ in range(15):
            await loop.sock_sendto(s, query(sent & 0xFFFF, f"x{sent}.blackhole.test"), ("127.0.0.1", DNS))
            sent += 1
        await asyncio.sleep(0.01)
    s.close()


async def attack_flood(stop, src, name):
    """As fast as one socket goes: the same name over and over."""
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind((src, 0))
    pkt = query(7, name)
    sent = 0
    while not stop.is_set() and sent < 5_000_000:
        for _ in range(200):
            try:
                s.sendto(pkt, ("127.0.0.1", DNS))
            except BlockingIOError:
                pass
            sent += 1
        try:
            while True:
                s.recv(4096)
        except BlockingIOError:
            pass
        await asyncio.sleep(0)
    s.close()


def post_request(size):
    body = json.dumps({"domain": "casino.gambling.test", "name": "x" * size, "reason": "y" * size}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{ADMIN}/requests", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=2).read()
    except Exception:
        pass


async def attack_disk_fill(stop):
    """Anonymous unblock requests with 2 MB fields, and refused queries from no network."""
    flood = asyncio.create_task(attack_flood(stop, "127.0.0.99", "www.cached.test"))
    n = 0
    while not stop.is_set() and n < 1000:
        await asyncio.to_thread(post_request, 2_000_000)
        n += 1
    await flood


async def scenario(name, pid, data_dir, attack):
    stop = asyncio.Event()
    results = {"uncached": [], "cached_ok": [], "cached_lat": []}
    held = None
    if attack == "connections":
        held = await attack_idle_connections(DNS) + await attack_idle_connections(PAGE)
        attacker = None
    elif attack == "blackhole":
        attacker = asyncio.create_task(attack_blackhole(stop))
    elif attack == "flood":
        attacker = asyncio.create_task(attack_flood(stop, "127.0.0.2", "www.cached.test"))
    elif attack == "diskfill":
        attacker = asyncio.create_task(attack_disk_fill(stop))
    else:
        attacker = None
    cpu0, disk0, t0 = cpu_seconds(pid), disk_bytes(data_dir), time.time()
    probe = asyncio.create_task(staff_probe(stop, results))
    await asyncio.sleep(SECS)
    stop.set()
    await probe
    if attacker:
        await asyncio.wait_for(attacker, 30)
    took = time.time() - t0
    cpu = (cpu_seconds(pid) - cpu0) / took * 100
    growth = (disk_bytes(data_dir) - disk0) / took * 60 / 1e6
    if held:
        for s in held:
            s.close()
    lat = sorted(results["cached_lat"]) or [0]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    ok = sum(results["uncached"]) / max(1, len(results["uncached"])) * 100
    cached_ok = sum(results["cached_ok"]) / max(1, len(results["cached_ok"])) * 100
    print(f"| {name} | {ok:.1f}% | {cached_ok:.1f}% | {p99:.1f} ms | {cpu:.0f}% | {growth:.2f} MB/min |", flush=True)
    await asyncio.sleep(2)


CONFIG = """
[server]
listen = ["127.0.0.1:{DNS}"]
threads = 2
[upstream]
servers = ["127.0.0.1:{UP}"]
timeout_ms = 1500
attempts = 2
[lists]
bundle = "{WORK}/b.fstb"
[[lists.source]]
category = "gambling"
path = "{WORK}/gambling.txt"
[block_page]
ipv4 = "127.0.0.1"
listen = "127.0.0.1:{PAGE}"
[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"
[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"
[group.pupils]
block = ["gambling"]
block_answer = "block_page"
[group.staff]
block = ["gambling"]
[storage]
path = "{WORK}/data/chaperone.db"
[admin]
listen = "127.0.0.1:{ADMIN}"
[[admin.token]]
name = "bench"
role = "technician"
sha256 = "{SHA}"
"""


async def main():
    import hashlib
    work = tempfile.mkdtemp(prefix="chaperone-abuse-")
    os.makedirs(f"{work}/data")
    with open(f"{work}/gambling.txt", "w") as f:
        f.write("gambling.test\n")
    cfg = CONFIG
    for k, v in {"DNS": DNS, "UP": UP, "PAGE": PAGE, "ADMIN": ADMIN, "WORK": work,
                 "SHA": hashlib.sha256(TOKEN.encode()).hexdigest()}.items():
        cfg = cfg.replace("{" + k + "}", str(v))
    with open(f"{work}/chaperone.toml", "w") as f:
        f.write(cfg)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", UP))
    log = open(f"{work}/chaperone.log", "w")
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker is not limited

    def systemd_default():  # LimitNOFILE=1024:524288, as systemd gives a service
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    proc = subprocess.Popen([BIN, "serve", "--config", f"{work}/chaperone.toml"], stdout=log,
                            stderr=log, preexec_fn=systemd_default)
    try:
        for _ in range(100):
            rc, _ = await ask("127.0.0.3", "www.cached.test", 0.2)
            if rc is not None:
                break
            await asyncio.sleep(0.1)
        else:
            sys.exit(f"chaperone did not start; see {work}/chaperone.log")
        with open(f"/proc/{proc.pid}/limits") as f:
            nofile = [l for l in f if l.startswith("Max open files")][0].split()[3:5]
        print(f"server started with soft limit 1024; open files limit now (soft, hard): {nofile}")
        print("| scenario | staff uncached success | staff cached success | staff cached p99 | server CPU | disk growth |")
        print("|---|---|---|---|---|---|")
        for name, attack in [("no attack", None),
                             ("1,100 idle TCP connections to DNS and 1,100 to the block page", "connections"),
                             ("1,500 q/s of unique names under a black-hole domain", "blackhole"),
                             ("one address flooding a cached name", "flood"),
                             ("2 MB anonymous requests + refused flood from no network", "diskfill")]:
            await scenario(name, proc.pid, f"{work}/data", attack)
    finally:
        proc.terminate()
        proc.wait(10)


asyncio.run(main())
