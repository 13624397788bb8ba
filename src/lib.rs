//! Chaperone: a DNS-level filtering resolver for schools.
//!
//! Every school device gets Chaperone as its DNS server. For each query it works out who is
//! asking (network → policy group, nominated device), decides from the school's policy
//! whether the name is allowed, and answers: blocked, rewritten to a SafeSearch host, or
//! resolved (cache, forwarder or recursor).
//!
//! The request pipeline, one module per stage, assembled in [`pipeline`]:
//! - [`transport`] — listen: the UDP fast path, TCP, the hickory request handler, and the
//!   limits on what one client can make them hold;
//! - [`server`] — lifecycle: starts the listeners, reload triggers, shutdown;
//! - [`identify`] — client address, EDNS MAC and the device's DHCP lease ([`leases`]);
//! - [`policy`] — admit (known networks only) and decide;
//! - [`answer`] — block / rewrite records; [`local`] — local records, local and reserved
//!   zones (answered authoritatively);
//! - [`cache`] and [`resolve`] — answers for allowed names;
//! - [`record`] — metrics, query log, incidents, never blocking the answer.
//!
//! Supporting modules: [`config`] (TOML, validated), [`lists`] (list formats and the FST
//! bundle), [`state`] (the hot-swapped snapshot), [`metrics`], [`admin`] (HTTP API).
#![warn(missing_docs, clippy::dbg_macro)]

pub mod admin;
pub mod alerts;
pub mod answer;
pub mod cache;
pub mod cli_admin;
pub mod config;
pub mod console;
pub mod enrol;
pub mod identify;
pub mod identity;
pub mod inspect;
pub mod leases;
pub mod lists;
pub mod local;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod radius;
pub mod ratelimit;
pub mod record;
pub mod report;
pub mod resolve;
pub mod selftest;
pub mod server;
pub mod services;
pub mod state;
pub mod store;
pub mod suffix;
pub mod transport;
pub mod users;
