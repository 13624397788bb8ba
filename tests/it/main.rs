//! End-to-end tests: one integration binary (links once), real sockets on loopback.

mod support;

mod foundation;
mod policy;
mod reload;
mod safeguarding;
