//! End-to-end tests: one integration binary (links once), real sockets on loopback.

mod support;

mod audit;
mod blockpage;
mod config;
mod differential;
mod foundation;
mod hardening;
mod listfetch;
mod monitoring;
mod policy;
mod protocol;
mod recursive;
mod reload;
mod safeguarding;
