//! Time as an input of the OpenBao client, so tests can drive token lifetimes and JWT checks.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

type MonotonicFn = dyn Fn() -> Instant + Send + Sync;
type WallFn = dyn Fn() -> SystemTime + Send + Sync;

/// A monotonic clock (token lifetimes, rate limits) and a wall clock (JWT claims).
#[derive(Clone)]
pub struct Clock {
    monotonic: Arc<MonotonicFn>,
    wall: Arc<WallFn>,
}

impl Clock {
    /// The real clocks. This is the only place the OpenBao client reads the time.
    pub fn system() -> Self {
        #[expect(
            clippy::disallowed_methods,
            reason = "the runtime's one real clock read; everything else takes this Clock"
        )]
        let clock = Self::new(Instant::now, SystemTime::now);
        clock
    }

    /// Clocks from functions, for tests or for a runtime-wide clock.
    pub fn new(
        monotonic: impl Fn() -> Instant + Send + Sync + 'static,
        wall: impl Fn() -> SystemTime + Send + Sync + 'static,
    ) -> Self {
        Self {
            monotonic: Arc::new(monotonic),
            wall: Arc::new(wall),
        }
    }

    /// The monotonic now.
    pub fn now(&self) -> Instant {
        (self.monotonic)()
    }

    /// The wall-clock now.
    pub fn wall(&self) -> SystemTime {
        (self.wall)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}
