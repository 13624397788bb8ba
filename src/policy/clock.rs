//! The time source for schedules and exception expiry.
//!
//! Production reads the system clock; tests hold a [`ManualClock`] and move it, so a test
//! of "12:30 vs 14:00" or of an exception expiring never sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Something that says what time it is.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> jiff::Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A clock that only moves when told to; shareable across threads.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: jiff::Timestamp) -> Arc<Self> {
        Arc::new(Self {
            micros: AtomicI64::new(at.as_microsecond()),
        })
    }

    /// Set the time.
    pub fn set(&self, at: jiff::Timestamp) {
        self.micros.store(at.as_microsecond(), Ordering::SeqCst);
    }

    /// Move the time forward (or back, with a negative span).
    pub fn advance(&self, by: std::time::Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.micros.fetch_add(us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_microsecond(self.micros.load(Ordering::SeqCst))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
