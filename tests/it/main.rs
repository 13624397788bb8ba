//! End-to-end tests: one integration binary (links once), real sockets on loopback.

mod support;

mod blockpage;
mod config;
mod foundation;
mod monitoring;
mod policy;
mod protocol;
mod recursive;
mod reload;
mod safeguarding;
