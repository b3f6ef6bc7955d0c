//! The clock a run reads as time passes: the wall clock, or one that is
//! driven (by the generator's simulated time, or by a test).
//!
//! The pipeline reads it once per batch: decoding refuses records too far
//! ahead of it (`decode.max-future-ms`), and a live source's watermark never
//! runs ahead of it by more than the out-of-orderness bound.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of "now", in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time (ms since the epoch).
    fn now_ms(&self) -> i64;
}

/// A clock shared between the pipeline and whatever drives it.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that shows what it was last set to.
#[derive(Debug, Default)]
pub struct DrivenClock(AtomicI64);

impl DrivenClock {
    /// A clock showing `ms`.
    pub fn at(ms: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(ms)))
    }

    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    /// Moves the time on by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for DrivenClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The wall clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
