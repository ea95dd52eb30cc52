//! The only clock reads of the whole workspace.
//!
//! The core takes time as an input; the runtime reads it here and nowhere else. Monotonic time
//! comes from tokio so that paused-time tests drive the core's timers too.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Monotonic now, for every deadline and duration.
pub fn now() -> Instant {
    #[expect(
        clippy::disallowed_methods,
        reason = "the runtime's single monotonic clock read"
    )]
    let now = tokio::time::Instant::now();
    now.into_std()
}

/// Wall-clock now in whole Unix seconds, recorded in the registry and never used for durations.
pub fn wall_clock_unix() -> i64 {
    #[expect(
        clippy::disallowed_methods,
        reason = "the runtime's single wall-clock read"
    )]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
    })
}
