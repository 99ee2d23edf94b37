//! Time as data: the caller supplies every timestamp.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A monotonic timestamp in milliseconds, supplied by the host.
///
/// The origin is arbitrary (the host's start, a virtual clock's zero); only
/// differences matter. The core never reads a clock itself, which is what
/// lets it run in wasm and lets tests run hours of protocol time instantly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// The origin of the clock.
    pub const ZERO: Millis = Millis(0);

    /// Milliseconds since the clock's origin.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Millis {
    type Output = Millis;
    fn add(self, rhs: Duration) -> Millis {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Millis(self.0.saturating_add(ms))
    }
}

impl Sub<Millis> for Millis {
    type Output = Duration;
    fn sub(self, rhs: Millis) -> Duration {
        self.saturating_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Millis(5) + Duration::from_millis(7), Millis(12));
        assert_eq!(Millis(5) - Millis(7), Duration::ZERO);
        assert_eq!(Millis(u64::MAX) + Duration::from_secs(1), Millis(u64::MAX));
    }
}
