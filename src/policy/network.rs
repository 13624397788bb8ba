//! Client address → network → policy group, by longest-prefix match.
//!
//! Schools configure tens of networks, not thousands, so a list sorted by prefix length
//! (longest first) is both the simplest correct structure and fast: the first containing
//! prefix is the longest. Dual-stack sockets report IPv4 clients as `::ffff:a.b.c.d`;
//! addresses are canonicalised first so IPv4 CIDRs match them.

use std::net::IpAddr;

use ipnet::IpNet;

/// A prefix table mapping to values of type `T`.
#[derive(Debug, Clone)]
pub struct PrefixTable<T> {
    entries: Vec<(IpNet, T)>,
}

impl<T: Copy> PrefixTable<T> {
    /// Build from (prefix, value) pairs.
    pub fn new(mut entries: Vec<(IpNet, T)>) -> Self {
        entries.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self { entries }
    }

    /// The value of the longest prefix containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<T> {
        let ip = ip.to_canonical();
        self.entries
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, v)| *v)
    }

    /// True when there are no prefixes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_v4_and_v6() {
        let t = PrefixTable::new(vec![
            ("10.0.0.0/8".parse().unwrap(), 1),
            ("10.20.0.0/16".parse().unwrap(), 2),
            ("10.20.30.40/32".parse().unwrap(), 3),
            ("fd00::/8".parse().unwrap(), 4),
            ("fd00:20::/48".parse().unwrap(), 5),
        ]);
        assert_eq!(t.lookup("10.1.1.1".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("10.20.1.1".parse().unwrap()), Some(2));
        assert_eq!(t.lookup("10.20.30.40".parse().unwrap()), Some(3));
        assert_eq!(t.lookup("::ffff:10.20.30.40".parse().unwrap()), Some(3));
        assert_eq!(t.lookup("fd00:20::1".parse().unwrap()), Some(5));
        assert_eq!(t.lookup("fd00:21::1".parse().unwrap()), Some(4));
        assert_eq!(t.lookup("192.0.2.1".parse().unwrap()), None);
    }
}
