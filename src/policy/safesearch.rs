//! SafeSearch and restricted-mode enforcement by CNAME rewrite.
//!
//! Each search engine documents a host name that always serves its safe mode; pointing the
//! engine's own names at it by CNAME (what the vendors tell network operators to do)
//! enforces the mode for every browser and app on the network without a proxy:
//! - Google: every Google search domain → `forcesafesearch.google.com`
//! - Bing: `www.bing.com`, `bing.com` → `strict.bing.com`
//! - DuckDuckGo: `duckduckgo.com`, `www.duckduckgo.com` → `safe.duckduckgo.com`
//! - YouTube: `www.youtube.com`, `m.youtube.com`, `youtubei.googleapis.com`,
//!   `youtube.googleapis.com`, `www.youtube-nocookie.com` → `restrict.youtube.com` (strict)
//!   or `restrictmoderate.youtube.com` (moderate)
//! - Pixabay: `pixabay.com`, `www.pixabay.com` → `safesearch.pixabay.com`
//! - Brave Search: `search.brave.com` → `forcesafe.search.brave.com`
//!
//! The names live in a small in-memory [`Bundle`] so matching is the same one FST walk as
//! the category lists.

use std::sync::LazyLock;

use hickory_proto::rr::Name;

use crate::config::{SafeSearchConfig, YoutubeMode};
use crate::lists::bundle::{Bundle, BundleBuilder};
use crate::lists::parse::{Action, MatchKind};

/// A search engine whose safe mode can be forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Engine {
    /// Google Search.
    Google = 0,
    /// Microsoft Bing.
    Bing = 1,
    /// DuckDuckGo.
    DuckDuckGo = 2,
    /// YouTube.
    YouTube = 3,
    /// Pixabay.
    Pixabay = 4,
    /// Brave Search.
    Brave = 5,
}

const ENGINES: [Engine; 6] = [
    Engine::Google,
    Engine::Bing,
    Engine::DuckDuckGo,
    Engine::YouTube,
    Engine::Pixabay,
    Engine::Brave,
];

impl Engine {
    /// Lower-case name, for explain output and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Google => "google",
            Engine::Bing => "bing",
            Engine::DuckDuckGo => "duckduckgo",
            Engine::YouTube => "youtube",
            Engine::Pixabay => "pixabay",
            Engine::Brave => "brave",
        }
    }
}

/// A rewrite target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// forcesafesearch.google.com
    GoogleSafe,
    /// strict.bing.com
    BingStrict,
    /// safe.duckduckgo.com
    DuckDuckGoSafe,
    /// restrict.youtube.com
    YouTubeStrict,
    /// restrictmoderate.youtube.com
    YouTubeModerate,
    /// safesearch.pixabay.com
    PixabaySafe,
    /// forcesafe.search.brave.com
    BraveSafe,
}

impl Target {
    /// The target host name.
    pub fn host(self) -> &'static str {
        match self {
            Target::GoogleSafe => "forcesafesearch.google.com.",
            Target::BingStrict => "strict.bing.com.",
            Target::DuckDuckGoSafe => "safe.duckduckgo.com.",
            Target::YouTubeStrict => "restrict.youtube.com.",
            Target::YouTubeModerate => "restrictmoderate.youtube.com.",
            Target::PixabaySafe => "safesearch.pixabay.com.",
            Target::BraveSafe => "forcesafe.search.brave.com.",
        }
    }

    /// The target as a DNS name (built once).
    pub fn name(self) -> &'static Name {
        static NAMES: LazyLock<Vec<Name>> = LazyLock::new(|| {
            ALL_TARGETS
                .iter()
                .map(|t| Name::from_ascii(t.host()).unwrap_or_else(|_| Name::root()))
                .collect()
        });
        &NAMES[self as usize]
    }
}

/// Whether `host` (with its trailing dot) is one of the safe-mode targets: an answer
/// CNAMEd to one was rewritten (`chaperone selftest` tells rewrites from ordinary CNAMEs).
pub fn is_target_host(host: &str) -> bool {
    ALL_TARGETS.iter().any(|t| t.host() == host)
}

const ALL_TARGETS: [Target; 7] = [
    Target::GoogleSafe,
    Target::BingStrict,
    Target::DuckDuckGoSafe,
    Target::YouTubeStrict,
    Target::YouTubeModerate,
    Target::PixabaySafe,
    Target::BraveSafe,
];

/// The engines' own names, as one bundle with a category per engine.
static ENGINE_NAMES: LazyLock<Bundle> = LazyLock::new(build_engine_names);

fn engine_hosts(engine: Engine) -> Vec<String> {
    let fixed: &[&str] = match engine {
        Engine::Google => &[],
        Engine::Bing => &["bing.com", "www.bing.com"],
        Engine::DuckDuckGo => &[
            "duckduckgo.com",
            "www.duckduckgo.com",
            "start.duckduckgo.com",
        ],
        Engine::YouTube => &[
            "www.youtube.com",
            "m.youtube.com",
            "youtubei.googleapis.com",
            "youtube.googleapis.com",
            "www.youtube-nocookie.com",
        ],
        Engine::Pixabay => &["pixabay.com", "www.pixabay.com"],
        Engine::Brave => &["search.brave.com"],
    };
    if engine != Engine::Google {
        return fixed.iter().map(|s| s.to_string()).collect();
    }
    include_str!("google_domains.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .flat_map(|d| [d.to_owned(), format!("www.{d}")])
        .collect()
}

fn build_engine_names() -> Bundle {
    let mut b = BundleBuilder::new();
    for engine in ENGINES {
        // Engine ids are their enum discriminants: categories are added in that order.
        let Ok(id) = b.category(engine.name()) else {
            continue;
        };
        for host in engine_hosts(engine) {
            b.add(id, &host, MatchKind::Exact, Action::Block);
        }
    }
    b.finish()
        .and_then(|(bytes, _)| Bundle::from_vec(bytes))
        .expect("the built-in SafeSearch name table is valid")
}

/// A group's rewrites, resolved to a per-engine target table.
#[derive(Debug, Clone, Copy, Default)]
pub struct SafeSearch {
    targets: [Option<Target>; 6],
}

impl SafeSearch {
    /// From a group's config.
    pub fn new(c: &SafeSearchConfig) -> Self {
        let on = |b: bool, t: Target| b.then_some(t);
        Self {
            targets: [
                on(c.google, Target::GoogleSafe),
                on(c.bing, Target::BingStrict),
                on(c.duckduckgo, Target::DuckDuckGoSafe),
                match c.youtube {
                    YoutubeMode::Off => None,
                    YoutubeMode::Moderate => Some(Target::YouTubeModerate),
                    YoutubeMode::Strict => Some(Target::YouTubeStrict),
                },
                on(c.pixabay, Target::PixabaySafe),
                on(c.brave, Target::BraveSafe),
            ],
        }
    }

    /// True when no engine is rewritten.
    pub fn is_off(&self) -> bool {
        self.targets.iter().all(Option::is_none)
    }

    /// The rewrite for a query name (reversed key), if this group enforces one.
    pub fn rewrite(&self, key: &[u8]) -> Option<(Engine, Target)> {
        if self.is_off() {
            return None;
        }
        let names = &*ENGINE_NAMES;
        let v = names.verdicts(&names.lookup(key));
        let hit = v.masks.block;
        if hit == 0 {
            return None;
        }
        let id = hit.trailing_zeros() as usize;
        let engine = *ENGINES.get(id)?;
        self.targets[id].map(|t| (engine, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::key::reverse_key;

    #[test]
    fn engines_rewrite_only_when_enabled() {
        let all = SafeSearch::new(&SafeSearchConfig {
            google: true,
            bing: true,
            duckduckgo: true,
            youtube: YoutubeMode::Moderate,
            pixabay: true,
            brave: true,
        });
        let r = |s: &SafeSearch, n: &str| s.rewrite(&reverse_key(n)).map(|(_, t)| t.host());
        assert_eq!(
            r(&all, "www.google.co.uk"),
            Some("forcesafesearch.google.com.")
        );
        assert_eq!(r(&all, "google.de"), Some("forcesafesearch.google.com."));
        assert_eq!(r(&all, "www.bing.com"), Some("strict.bing.com."));
        assert_eq!(r(&all, "duckduckgo.com"), Some("safe.duckduckgo.com."));
        assert_eq!(
            r(&all, "m.youtube.com"),
            Some("restrictmoderate.youtube.com.")
        );
        assert_eq!(
            r(&all, "search.brave.com"),
            Some("forcesafe.search.brave.com.")
        );
        assert_eq!(r(&all, "mail.google.com"), None);
        assert_eq!(r(&all, "forcesafesearch.google.com"), None);
        let none = SafeSearch::new(&SafeSearchConfig::default());
        assert_eq!(r(&none, "www.google.com"), None);
    }
}
