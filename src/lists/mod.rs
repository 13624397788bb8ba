//! Category lists: parsing list files ([`parse`]), normalising names into reversed keys
//! ([`key`]), compiling them into one memory-mapped FST bundle ([`bundle`], [`compile`]),
//! and downloading the ones given by URL ([`fetch`]).
//!
//! This module owns the list data and how a name is matched against it; it knows nothing
//! of groups, schedules or answers (that is `policy`).

pub mod bundle;
pub mod compile;
pub mod decompress;
pub mod export;
pub mod fetch;
pub mod key;
pub mod parse;

pub use bundle::{Bundle, BundleBuilder, BundleError, Mask};
