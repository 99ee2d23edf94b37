//! The one way the gateway bounds a wait: [`timeout`] (a duration) and
//! [`deadline`] (an instant) race a future against a timer and drop the
//! future when the timer wins. Every bounded wait in runtime-smol goes
//! through here instead of a hand-written `or(..., Timer::after)` race.

use futures_lite::FutureExt;
use std::future::Future;
use std::time::{Duration, Instant};

/// The wait ran out before the future finished (the future was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for Elapsed {}

/// Awaits `future` for at most `limit`.
pub async fn timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Result<T, Elapsed> {
    async { Ok(future.await) }
        .or(async {
            smol::Timer::after(limit).await;
            Err(Elapsed)
        })
        .await
}

/// Awaits `future` until `at` at the latest.
pub async fn deadline<T>(at: Instant, future: impl Future<Output = T>) -> Result<T, Elapsed> {
    async { Ok(future.await) }
        .or(async {
            smol::Timer::at(at).await;
            Err(Elapsed)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_future_or_the_timer_wins() {
        smol::block_on(async {
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Ok(7));
            let started = Instant::now();
            let pending = std::future::pending::<()>();
            assert_eq!(
                timeout(Duration::from_millis(20), pending).await,
                Err(Elapsed)
            );
            assert!(started.elapsed() >= Duration::from_millis(20));
            let at = Instant::now() + Duration::from_millis(10);
            assert_eq!(
                deadline(at, std::future::pending::<()>()).await,
                Err(Elapsed)
            );
            assert!(Instant::now() >= at);
            let at = Instant::now() + Duration::from_secs(5);
            assert_eq!(deadline(at, async { "done" }).await, Ok("done"));
        });
    }
}
