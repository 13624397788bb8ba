//! Deterministic synthetic domain names for benchmarks: random second-level names under a
//! spread of TLDs (including two-label public suffixes), some with a subdomain in front,
//! so the FST sees realistic shared suffixes and prefixes.

#![allow(dead_code)]

const TLDS: &[&str] = &[
    "com", "net", "org", "co.uk", "org.uk", "de", "fr", "ru", "com.br", "info", "io", "xyz", "top",
    "online", "site", "nl",
];
const SUBS: &[&str] = &["www", "ads", "cdn", "m", "static", "track", "img", "api"];
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "zu", "tra", "vel", "pix", "cas", "ino", "bet", "play", "fun", "hub",
    "net", "ly", "go", "tor", "ex", "am", "ple", "sto", "re", "win",
];

/// xorshift64*: fast, deterministic, good enough for names.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// `n` distinct-ish names (duplicates are possible and are what a real list has too).
pub fn domains(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let mut label = String::new();
            for _ in 0..(2 + rng.next() % 3) {
                label.push_str(rng.pick(SYLLABLES));
            }
            label.push_str(&(i % 1000).to_string());
            let tld = rng.pick(TLDS);
            if rng.next() % 10 < 4 {
                format!("{}.{label}.{tld}", rng.pick(SUBS))
            } else {
                format!("{label}.{tld}")
            }
        })
        .collect()
}

/// `name` padded with leading labels (or trimmed) to exactly `labels` labels.
pub fn with_labels(name: &str, labels: usize) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() >= labels {
        return parts[parts.len() - labels..].join(".");
    }
    let mut out: Vec<String> = (0..labels - parts.len()).map(|i| format!("l{i}")).collect();
    out.extend(parts.iter().map(|s| s.to_string()));
    out.join(".")
}
