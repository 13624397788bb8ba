//! The larger, deeper offline test internet (issue 17 §3): 514 zones on 33 authoritative
//! servers at 127.0.1.0/24 port 53, with glueless delegations, lame and slow servers,
//! cross-zone CNAME chains, NXDOMAIN, NODATA and deep names.
//!
//! Shared by `#[path]` between `examples/test_internet.rs` (which `benches/recursion.sh`
//! runs) and `tests/it/recursion_compare.rs` (every name, Chaperone against unbound), so the
//! bench and the test exercise the very same tree. `data` is the tree as plain data,
//! `serve` answers it. The small internet of `../zones.rs` (127.0.0.10–30) stays with the
//! recursive-mode tests; both can run at once.

pub mod data;
pub mod serve;
