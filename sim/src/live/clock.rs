//! The wall clock as the firmware core's time: microseconds since `serve` started (the core
//! never reads a clock itself; live mode hands it this one), and Unix time for the records
//! that join the device's events with a client's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firmware_core::smoltcp::time::Instant;

/// Monotonic time since the start, and the Unix time of the start.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    start: std::time::Instant,
    start_unix_us: u64,
}

impl WallClock {
    /// A clock starting now.
    pub fn start() -> WallClock {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        WallClock {
            start: std::time::Instant::now(),
            start_unix_us: since_epoch.as_micros() as u64,
        }
    }

    /// Now, as the firmware core's time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    /// The Unix time (microseconds) of core time `t`.
    pub fn unix_us(&self, t: Instant) -> u64 {
        self.start_unix_us
            .saturating_add(t.total_micros().max(0) as u64)
    }

    /// How long from `now` until `t` (zero when `t` has passed).
    pub fn until(now: Instant, t: Instant) -> Duration {
        Duration::from_micros((t - now.min(t)).total_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_time_maps_to_unix_time_from_the_start() {
        let c = WallClock::start();
        let t = Instant::from_micros(1_500);
        assert_eq!(c.unix_us(t) - c.unix_us(Instant::ZERO), 1_500);
        assert_eq!(
            WallClock::until(Instant::from_micros(10), Instant::from_micros(4)),
            Duration::ZERO
        );
        assert_eq!(
            WallClock::until(Instant::from_micros(4), Instant::from_micros(10)),
            Duration::from_micros(6)
        );
    }
}
