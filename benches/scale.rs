//! Bundle figures at scale: for 1M and 5M synthetic names written as a plain list, the
//! time `chaperone compile` takes (parse, normalise, sort, build), the bundle size in bytes
//! per name, the time to open (verify + map) it, lookup rates, and the resident memory of
//! `chaperone serve` with the bundle loaded before any traffic, plus how long a reload of
//! it takes through the admin API.
//!
//! Run: `cargo bench --bench scale` (release build). Plain timed runs, printed as a table;
//! sizes: CHAPERONE_SCALE="1000000,5000000" by default.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chaperone::config::SourceConfig;
use chaperone::lists::bundle::{self, Bundle};
use chaperone::lists::compile::compile_sources;
use chaperone::lists::key::reverse_key;
use chaperone::lists::parse::{Format, MatchKind};

#[path = "support/synthetic.rs"]
mod synthetic;

fn main() {
    let sizes: Vec<usize> = std::env::var("CHAPERONE_SCALE")
        .unwrap_or_else(|_| "1000000,5000000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "| names | compile (s) | bundle bytes | bytes/name | open (ms) | hit lookups/s | miss lookups/s | serve RSS (MB) | reload (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        run(dir.path(), n);
    }
}

fn run(dir: &Path, n: usize) {
    let names = synthetic::domains(n, 7);
    let list = dir.join(format!("list-{n}.txt"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&list).expect("list file"));
        for name in &names {
            writeln!(f, "{name}").expect("write list");
        }
    }
    let src = SourceConfig {
        category: Some("synthetic".to_owned()),
        path: list.clone(),
        format: Format::Domains,
        default_kind: MatchKind::Subtree,
        only: Vec::new(),
        url: None,
    };
    let started = Instant::now();
    let (bytes, report) = compile_sources(std::slice::from_ref(&src)).expect("compile");
    let out = dir.join(format!("bundle-{n}.fstb"));
    bundle::write_atomically(&out, &bytes).expect("write bundle");
    let compile_s = started.elapsed().as_secs_f64();
    drop(bytes);

    let started = Instant::now();
    let b = Bundle::open(&out).expect("open bundle");
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;

    let hits: Vec<Vec<u8>> = names
        .iter()
        .step_by(n / 100_000)
        .map(|s| reverse_key(&format!("x.{s}")))
        .collect();
    let misses: Vec<Vec<u8>> = (0..hits.len())
        .map(|i| reverse_key(&format!("www.unlisted{i}.example.org")))
        .collect();
    let rate = |keys: &[Vec<u8>]| {
        let started = Instant::now();
        let mut found = 0usize;
        for _ in 0..5 {
            for k in keys {
                found += usize::from(b.verdicts(&b.lookup(k)).masks.block != 0);
            }
        }
        std::hint::black_box(found);
        (keys.len() * 5) as f64 / started.elapsed().as_secs_f64()
    };
    let (hit_rate, miss_rate) = (rate(&hits), rate(&misses));
    let (rss, reload) = serve_rss(dir, &out).unwrap_or((f64::NAN, f64::NAN));
    println!(
        "| {n} | {compile_s:.1} | {} | {:.1} | {open_ms:.1} | {hit_rate:.0} | {miss_rate:.0} | {rss:.1} | {reload:.0} |",
        report.stats.bytes,
        report.stats.bytes as f64 / report.stats.names.max(1) as f64,
    );
}

/// Start the release binary on the bundle, read VmRSS once it answers, then time a reload
/// through the admin API.
fn serve_rss(dir: &Path, bundle: &Path) -> Option<(f64, f64)> {
    let exe = env!("CARGO_BIN_EXE_chaperone");
    let token = "scale-bench-token";
    let digest = hex::encode(chaperone::admin::auth::hash_token(token));
    let config = dir.join("scale.toml");
    let dns = free_port()?;
    let admin = free_port()?;
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = ["127.0.0.1:{dns}"]
[upstream]
servers = ["127.0.0.1:9"]
[lists]
bundle = "{}"
[[network]]
cidrs = ["127.0.0.0/8"]
group = "all"
[group.all]
block = ["synthetic"]
[admin]
listen = "127.0.0.1:{admin}"
[[admin.token]]
name = "bench"
role = "technician"
sha256 = "{digest}"
"#,
            bundle.display()
        ),
    )
    .ok()?;
    let mut child = Command::new(exe)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let result = (|| {
        wait_for_port(admin)?;
        let rss = vm_rss_kb(child.id())? as f64 / 1024.0;
        let started = Instant::now();
        http_post(admin, "/reload", token)?;
        Some((rss, started.elapsed().as_secs_f64() * 1000.0))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn free_port() -> Option<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    Some(s.local_addr().ok()?.port())
}

fn wait_for_port(port: u16) -> Option<()> {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn http_post(port: u16, path: &str, token: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.contains("200 OK").then_some(out)
}
