#!/usr/bin/env python3
"""Realistic school DNS query stream for dnsperf, seeded and reproducible.

    python3 benches/querygen.py [--seed 17] [--count 1000000] [--lists DIR] [-o FILE]
                                [--nx-out FILE] [--popular-out FILE]

Writes one query per line in dnsperf's format (`name TYPE`) to stdout or `-o FILE`, and a
summary (distinct names, shares) to stderr. The same seed, count and lists give the same
file, byte for byte.

Mix (shares of queries):
- ~85% popular names: a built-in list of ~300 registrable domains a UK school sees
  (Google, YouTube, Microsoft 365, BBC, gov.uk, Apple, CDNs, ed-tech sites...) drawn with
  Zipf-like popularity, each with realistic host labels (apex, www., cdn., api., m.,
  static., img., login., mail., per-site services) and, for CDN-ish domains, hashed labels
  such as `r4---sn-5hne6nsz.googlevideo.com` or `d3k2x9f0a1b2c3.cloudfront.net`.
- ~10% names from the real lists in `--lists DIR` (default `$LISTS_REAL` or
  /work/shared/lists-real): UT1 (every category's `domains`/`domains.xz` but those in
  `--exclude`: UT1's allow lists and everyday sites, see UT1_EXCLUDE), UT1 older
  malware/phishing, StevenBlack's unified hosts and its extensions; half from a small hot
  set (ad/tracker style repetition), half uniform; ~30% of them as a subdomain (www., ads.,
  cdn., ...) of the listed name.
- ~5% nonexistent names: random labels under real TLDs (`.com`, `.co.uk`, `.org`, ...),
  names under `.local`, `.lan`, `.home.arpa`, and single labels (`wpad`, `printer-3f2a`).
  They look random, so `--nx-out FILE` writes every distinct nonexistent name (one a line)
  for the test upstream to answer NXDOMAIN (benches/peers.sh turns them into unbound `local-zone ... always_nxdomain`).

Types: A 55%, AAAA 35%, HTTPS 10% (iOS/macOS and Chromium ask HTTPS alongside A/AAAA).

`--popular-out FILE` writes the built-in popular registrable domains (one a line), and
`--listed-out FILE` every distinct listed name (the set benches/peers.sh blocks in the peers).
Only the Python standard library is used (lzma reads the `.xz` lists).
"""

import argparse
import bisect
import hashlib
import itertools
import lzma
import os
import random
import string
import sys
from collections import Counter

# (registrable domain, kind). kind: "cdn" gets many hashed labels, "svc" a few service labels
# and some hashed ones, "site" mostly apex/www and common labels. Rough popularity order
# for a UK secondary school (most popular first); the Zipf draw follows this order.
POPULAR = """
google.com svc
googleapis.com svc
gstatic.com cdn
youtube.com site
googlevideo.com cdn
ytimg.com cdn
microsoft.com svc
office.com svc
microsoftonline.com svc
office365.com svc
live.com svc
windows.net cdn
msftconnecttest.com site
windowsupdate.com cdn
apple.com svc
icloud.com svc
bbc.co.uk site
bbci.co.uk cdn
gov.uk site
akamaihd.net cdn
akamaized.net cdn
cloudfront.net cdn
googleusercontent.com cdn
doubleclick.net svc
google-analytics.com site
googletagmanager.com site
googlesyndication.com svc
skype.com svc
sharepoint.com svc
outlook.com svc
teams.microsoft.com svc
office.net cdn
msn.com site
bing.com site
azureedge.net cdn
trafficmanager.net cdn
wikipedia.org site
wikimedia.org cdn
amazon.co.uk site
amazonaws.com cdn
amazon.com site
mzstatic.com cdn
aaplimg.com cdn
cdn-apple.com cdn
whatsapp.net svc
whatsapp.com site
instagram.com site
facebook.com site
fbcdn.net cdn
tiktok.com site
tiktokcdn.com cdn
snapchat.com site
spotify.com site
scdn.co cdn
netflix.com site
nflxvideo.net cdn
twitch.tv site
roblox.com site
rbxcdn.com cdn
epicgames.com site
minecraft.net site
xboxlive.com svc
playstation.net svc
steampowered.com site
steamstatic.com cdn
discord.com site
discordapp.com cdn
reddit.com site
redd.it cdn
x.com site
twitter.com site
twimg.com cdn
pinterest.com site
pinimg.com cdn
linkedin.com site
licdn.com cdn
yahoo.com site
duckduckgo.com site
cloudflare.com site
cloudflare-dns.com site
jsdelivr.net cdn
unpkg.com site
fastly.net cdn
fastly-insights.com site
edgekey.net cdn
edgesuite.net cdn
akadns.net cdn
adobe.com svc
adobelogin.com site
typekit.net cdn
canva.com site
padlet.com site
kahoot.it site
kahoot.com site
quizlet.com site
duolingo.com site
zoom.us svc
webex.com svc
dropbox.com site
box.com site
github.com site
githubusercontent.com cdn
stackoverflow.com site
mozilla.org site
mozilla.net cdn
firefox.com site
grammarly.com site
grammarly.io svc
chromewebstore.google.com site
classroom.google.com site
withgoogle.com site
gmail.com site
google.co.uk site
nhs.uk site
police.uk site
parliament.uk site
ofsted.gov.uk site
education.gov.uk site
met.police.uk site
itv.com site
channel4.com site
sky.com site
skysports.com site
theguardian.com site
guim.co.uk cdn
dailymail.co.uk site
independent.co.uk site
telegraph.co.uk site
thetimes.co.uk site
mirror.co.uk site
metro.co.uk site
sky.uk site
bt.com site
virginmedia.com site
vodafone.co.uk site
ee.co.uk site
o2.co.uk site
three.co.uk site
ebay.co.uk site
ebayimg.com cdn
argos.co.uk site
tesco.com site
sainsburys.co.uk site
asda.com site
johnlewis.com site
nationalrail.co.uk site
tfl.gov.uk site
metoffice.gov.uk site
bbc.com site
sparxmaths.uk site
sparx-learning.com site
senecalearning.com site
hegartymaths.com site
mathswatch.co.uk site
drfrostmaths.com site
corbettmaths.com site
mymaths.co.uk site
mathletics.com site
3plearning.com site
timestables.co.uk site
ttrockstars.com site
numbots.com site
twinkl.co.uk site
twinkl.com cdn
classroomsecrets.co.uk site
purplemash.com site
2simple.com site
educationcity.com site
readingeggs.co.uk site
bugclub.co.uk site
pearsonactivelearn.com site
pearson.com site
oxfordowl.co.uk site
oup.com site
cambridge.org site
aqa.org.uk site
ocr.org.uk site
pearsonqualifications.com site
wjec.co.uk site
satchelone.com site
showmyhomework.co.uk site
teamsatchel.com site
classcharts.com site
arbor-education.com site
arbor.sc site
scholarpack.com site
bromcom.com site
sims.co.uk site
capita-sims.co.uk site
parentpay.com site
scopay.com site
schoolgateway.com site
parentmail.co.uk site
weduc.co.uk site
classdojo.com site
seesaw.me site
tapestryjournal.com site
evidenceme.com site
lgfl.net site
londongrid.org site
lgfl.org.uk site
rm.com site
rmunify.com site
smoothwall.com site
securly.com site
senso.cloud site
impero.com site
educake.co.uk site
gcsepod.com site
savemyexams.com site
physicsandmathstutor.com site
revisionworld.com site
bitesize.bbc.co.uk site
nationalgeographic.com site
natgeokids.com site
dkfindout.com site
britannica.com site
scratch.mit.edu site
code.org site
khanacademy.org site
kastatic.org cdn
brainpop.com site
tes.com site
teachit.co.uk site
geogebra.org site
desmos.com site
wolframalpha.com site
overleaf.com site
replit.com site
trinket.io site
microbit.org site
makecode.com site
codecademy.com site
w3schools.com site
mdn.mozilla.net site
python.org site
pypi.org site
openai.com site
chatgpt.com site
oaistatic.com cdn
claude.ai site
anthropic.com site
copilot.microsoft.com site
gemini.google.com site
perplexity.ai site
quora.com site
genially.com site
mentimeter.com site
slido.com site
nearpod.com site
edpuzzle.com site
flipgrid.com site
wordwall.net site
blooket.com site
gimkit.com site
quizizz.com site
wayground.com site
blooket.net cdn
coolmathgames.com site
poki.com site
crazygames.com site
friv.com site
miniclip.com site
hoodamath.com site
abcya.com site
typingclub.com site
bbc.co.uk.edgekey.net cdn
cookielaw.org site
onetrust.com site
hotjar.com site
segment.io site
sentry.io svc
newrelic.com svc
nr-data.net svc
mixpanel.com site
braze.com svc
intercom.io svc
intercomcdn.com cdn
zendesk.com svc
zdassets.com cdn
hubspot.com svc
hs-scripts.com cdn
recaptcha.net site
hcaptcha.com site
gravatar.com site
wp.com cdn
wordpress.com site
squarespace.com site
wixstatic.com cdn
wix.com site
shopify.com site
shopifycdn.com cdn
paypal.com site
stripe.com svc
stripe.network svc
visa.com site
mastercard.com site
nhsapp.service.nhs.uk site
digicert.com site
letsencrypt.org site
lencr.org site
sectigo.com site
globalsign.com site
pki.goog site
ocsp.apple.com site
identrust.com site
ntp.org site
time.windows.com site
ubuntu.com site
debian.org site
snapcraft.io site
chromium.org site
gvt1.com cdn
gvt2.com cdn
2mdn.net cdn
adservice.google.com site
app-measurement.com site
crashlytics.com site
firebaseio.com svc
firebaseapp.com svc
appspot.com svc
cloudfunctions.net svc
run.app svc
herokuapp.com svc
vercel.app svc
netlify.app svc
github.io svc
"""

LABELS_COMMON = ["www", "cdn", "api", "m", "static", "img", "login", "mail", "images",
                 "assets", "auth", "accounts", "app", "media", "video", "help", "support",
                 "search", "news", "docs", "files", "edge", "content", "s", "i", "a", "b"]
LABELS_SVC = ["login", "api", "graph", "outlook", "teams", "config", "clients1", "clients2",
              "clients4", "update", "telemetry", "events", "push", "sync", "storage",
              "drive", "docs", "sheets", "slides", "meet", "chat", "calendar", "play",
              "fonts", "maps", "safebrowsing", "ocsp", "crl", "time", "connectivity",
              "mtalk", "android", "ssl", "lh3", "lh5", "csp", "id", "oauth2", "signin",
              "notifications", "presence", "substrate", "admin", "portal", "status"]
TLDS_REAL = ["com", "co.uk", "org", "net", "uk", "io", "info", "org.uk", "de", "fr",
             "eu", "xyz", "online", "app", "dev", "ac.uk", "sch.uk", "me", "tv", "ai"]
LOCAL_SUFFIXES = ["local", "lan", "home.arpa"]
SINGLE_LABELS = ["wpad", "printer", "nas", "router", "isatap", "localhost-prn", "sims",
                 "proxy", "fileserver", "dc01", "dc02", "intranet", "moodle", "sccm"]
ALNUM = string.ascii_lowercase + string.digits


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--lists", default=os.environ.get("LISTS_REAL", "/work/shared/lists-real"))
    p.add_argument("-o", "--output", help="query file (default: stdout)")
    p.add_argument("--nx-out", help="write the distinct nonexistent names here")
    p.add_argument("--popular-out", help="write the built-in popular domains here")
    p.add_argument("--listed-out", help="write every distinct listed name here (the blocked set)")
    p.add_argument("--files-out", help="write the list files read (format path category)")
    p.add_argument("--exclude", default=UT1_EXCLUDE,
                   help="UT1 categories not loaded, space-separated (default: allow lists "
                        "and everyday sites; '' loads every category)")
    p.add_argument("--popular", type=float, default=0.85, help="share of popular names")
    p.add_argument("--listed", type=float, default=0.10, help="share of listed names")
    return p.parse_args()


def read_text(path):
    """A list file, xz-compressed or not; bad bytes replaced (lists hold odd encodings)."""
    if path.endswith(".xz"):
        with lzma.open(path, "rt", encoding="utf-8", errors="replace") as f:
            return f.read()
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def valid_name(name):
    if not name or len(name) > 200 or "." not in name:
        return False
    if name[0] in ".-" or name[-1] in ".-" or ".." in name:
        return False
    # No IP entries (a.b.c.d), only hostname characters dnsperf writes as-is.
    if all(part.isdigit() for part in name.split(".")):
        return False
    return all(c in ALNUM or c in "-._" for c in name)


# UT1 categories no school blocks: UT1's allow lists (liste_blanche, liste_bu and its
# exceptions), the French PIX exam-mode lists (which list gov.uk and Teams), and everyday
# sites (updates, banks, webmail, news, shopping, video, ...). Blocking "all of UT1" would
# block microsoft.com, apple.com, gov.uk and wikipedia.org: not school traffic.
UT1_EXCLUDE = ("liste_blanche liste_bu exceptions_liste_bu examen_pix tricheur_pix cleaning "
               "update bank webmail press shopping jobsearch audio-video blog forums "
               "filehosting remote-control webhosting radio sports cooking translation "
               "educational_games sexual_education child associations_religieuses")


def list_files(root, exclude=()):
    """Every list file benches/peers.sh loads: UT1 categories (but `exclude`), UT1 older,
    StevenBlack. Returns (format, path, category) triples."""
    files = []
    for base in ("ut1", "ut1-older"):
        d = os.path.join(root, base)
        if not os.path.isdir(d):
            continue
        for cat in sorted(os.listdir(d)):
            if cat in exclude:
                continue
            for fname in ("domains", "domains.xz"):
                path = os.path.join(d, cat, fname)
                if os.path.isfile(path):
                    files.append(("domains", path, cat))
    sb = os.path.join(root, "stevenblack")
    if os.path.isfile(os.path.join(sb, "blackhole.xz")):
        files.append(("hosts", os.path.join(sb, "blackhole.xz"), "stevenblack"))
    alt = os.path.join(sb, "alternates")
    if os.path.isdir(alt):
        for ext in sorted(os.listdir(alt)):
            for fname in ("blackhole", "blackhole.xz"):
                path = os.path.join(alt, ext, fname)
                if os.path.isfile(path):
                    files.append(("hosts", path, "sb-" + ext.removesuffix("-only")))
    return files


def load_listed(root, exclude=()):
    """Sorted distinct listed names (sorted so the draw does not depend on set order)."""
    names = set()
    for fmt, path, _ in list_files(root, exclude):
        for line in read_text(path).splitlines():
            line = line.split("#", 1)[0].strip().lower()
            if not line:
                continue
            if fmt == "hosts":
                parts = line.split()
                if len(parts) < 2 or parts[0] not in ("0.0.0.0", "127.0.0.1"):
                    continue
                line = parts[1]
            line = line.rstrip(".")
            if valid_name(line) and line not in ("localhost", "localhost.localdomain"):
                names.add(line)
    return sorted(names)


def zipf_cdf(n, s):
    weights = [1.0 / (k ** s) for k in range(1, n + 1)]
    return list(itertools.accumulate(weights))


def pick(rng, cdf):
    return bisect.bisect_left(cdf, rng.random() * cdf[-1])


def hashed_label(domain, i):
    """A stable CDN-style label, e.g. r4---sn-5hne6nsz or d3k2x9f0a1b2c3 (index i of domain)."""
    h = hashlib.blake2b(f"{domain}/{i}".encode(), digest_size=8).hexdigest()
    style = i % 4
    if style == 0:
        return f"r{i % 20 + 1}---sn-{h[:8]}"
    if style == 1:
        return f"d{h[:13]}"
    if style == 2:
        return f"e{int(h[:6], 16) % 99999}.a"
    return f"{h[:6]}-{h[6:10]}"


class Popular:
    """Popular names: a Zipf draw of the domain, then of its host label."""

    def __init__(self, rng):
        self.rng = rng
        entries = [line.split() for line in POPULAR.strip().splitlines()]
        self.domains = [(d, k) for d, k in entries]
        self.domain_cdf = zipf_cdf(len(self.domains), 1.0)
        self.label_cdf = zipf_cdf(len(LABELS_SVC), 1.1)
        self.common_cdf = zipf_cdf(len(LABELS_COMMON), 1.2)
        # Hashed-label pools: how many distinct CDN hosts a domain shows over the stream.
        self.pool = {"cdn": 40000, "svc": 3000, "site": 400}

    def name(self):
        rng = self.rng
        domain, kind = self.domains[pick(rng, self.domain_cdf)]
        r = rng.random()
        hashed_share = {"cdn": 0.6, "svc": 0.15, "site": 0.05}[kind]
        if r < hashed_share:
            # Popular hashed hosts repeat (Zipf over the pool): a few hot, a long tail.
            i = int(self.pool[kind] * (rng.random() ** 3))
            return f"{hashed_label(domain, i)}.{domain}"
        if r < hashed_share + 0.25:
            return domain if rng.random() < 0.4 else f"www.{domain}"
        if kind == "svc":
            return f"{LABELS_SVC[pick(rng, self.label_cdf)]}.{domain}"
        return f"{LABELS_COMMON[pick(rng, self.common_cdf)]}.{domain}"


class Listed:
    """Names from the real lists: a hot set (trackers repeat) and a uniform tail."""

    SUBS = ["www", "ads", "cdn", "m", "api", "static", "track", "pixel", "img", "s"]

    def __init__(self, rng, names):
        self.rng = rng
        self.names = names
        hot_n = min(2000, len(names))
        self.hot = rng.sample(names, hot_n) if names else []
        self.hot_cdf = zipf_cdf(hot_n, 1.0) if names else []

    def name(self):
        rng = self.rng
        if rng.random() < 0.5:
            base = self.hot[pick(rng, self.hot_cdf)]
        else:
            base = self.names[rng.randrange(len(self.names))]
        if rng.random() < 0.3:
            return f"{self.SUBS[rng.randrange(len(self.SUBS))]}.{base}"
        return base


def nonexistent(rng):
    """A name the test upstream answers NXDOMAIN (written to --nx-out)."""
    r = rng.random()
    label = "".join(rng.choice(ALNUM) for _ in range(rng.randint(7, 14)))
    if r < 0.6:
        return f"{label}.{rng.choice(TLDS_REAL)}"
    if r < 0.85:
        host = rng.choice(["desktop", "laptop", "iphone", "ipad", "android", "printer", "nas"])
        return f"{host}-{label[:6]}.{rng.choice(LOCAL_SUFFIXES)}"
    if rng.random() < 0.3:
        return rng.choice(SINGLE_LABELS)
    return label


def qtype(rng):
    r = rng.random()
    return "A" if r < 0.55 else ("AAAA" if r < 0.90 else "HTTPS")


def main():
    args = parse_args()
    rng = random.Random(args.seed)
    exclude = set(args.exclude.split())
    listed_names = load_listed(args.lists, exclude)
    if args.files_out:
        with open(args.files_out, "w") as f:
            f.writelines(f"{fmt} {path} {cat}\n" for fmt, path, cat in list_files(args.lists, exclude))
    if not listed_names:
        sys.exit(f"querygen: no list files under {args.lists} (set --lists or LISTS_REAL)")
    popular = Popular(rng)
    listed = Listed(rng, listed_names)
    out = open(args.output, "w") if args.output else sys.stdout
    kinds = Counter()
    types = Counter()
    distinct = {"popular": set(), "listed": set(), "nonexistent": set()}
    for _ in range(args.count):
        r = rng.random()
        if r < args.popular:
            kind, name = "popular", popular.name()
        elif r < args.popular + args.listed:
            kind, name = "listed", listed.name()
        else:
            kind, name = "nonexistent", nonexistent(rng)
        t = qtype(rng)
        kinds[kind] += 1
        types[t] += 1
        distinct[kind].add(name)
        out.write(f"{name} {t}\n")
    if args.output:
        out.close()
    if args.nx_out:
        with open(args.nx_out, "w") as f:
            f.writelines(f"{n}\n" for n in sorted(distinct["nonexistent"]))
    if args.listed_out:
        with open(args.listed_out, "w") as f:
            f.writelines(f"{n}\n" for n in listed_names)
    if args.popular_out:
        with open(args.popular_out, "w") as f:
            f.writelines(f"{d}\n" for d, _ in popular.domains)
    summary(args, listed_names, kinds, types, distinct)


def summary(args, listed_names, kinds, types, distinct):
    total = max(1, args.count)
    all_names = set().union(*distinct.values())
    pct = lambda c: f"{100.0 * c / total:.1f}%"
    err = sys.stderr
    print(f"querygen: seed {args.seed}, {args.count} queries, {len(all_names)} distinct names "
          f"({len(listed_names)} listed names loaded from {args.lists})", file=err)
    for kind in ("popular", "listed", "nonexistent"):
        print(f"  {kind:12} {pct(kinds[kind]):>6} of queries, {len(distinct[kind])} distinct",
              file=err)
    print("  types        " + ", ".join(f"{t} {pct(types[t])}" for t in ("A", "AAAA", "HTTPS")),
          file=err)


if __name__ == "__main__":
    main()
