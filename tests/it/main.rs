//! End-to-end tests: one integration binary (links once), real sockets on loopback.

mod support;

mod alerts;
mod audit;
mod blockpage;
mod blockpage_words;
mod bypass;
mod cli;
mod config;
mod console;
mod console_records;
mod devices_enrol;
mod differential;
mod ede;
mod encrypted;
mod foundation;
mod hardening;
mod identity;
mod inspect;
mod instances;
mod iplists;
mod leases;
mod listfetch;
mod monitoring;
mod packaging;
mod policy;
mod protocol;
mod radius;
mod recursive;
mod reload;
mod safeguarding;
mod schools;
mod selftest;
mod services;
mod storage;
mod zones;
