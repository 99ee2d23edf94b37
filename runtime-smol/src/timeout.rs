//! The one way the gateway bounds a wait: [`timeout`] races a future
//! against a timer and drops the future when the timer wins. Every bounded
//! wait in runtime-smol goes through here instead of a hand-written
//! `or(..., Timer::after)` race.

use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The wait ran out before the future finished (the future was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for Elapsed {}

pin_project! {
    /// `future`, or [`Elapsed`] once `timer` fires. A plain struct rather
    /// than an `async fn`: an async wrapper would store the wrapped future
    /// twice (as its argument and as what it awaits), and the wrappers nest
    /// (a MySQL statement's timeout around its pool's acquire timeout).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F, T = smol::Timer> {
        #[pin]
        future: F,
        timer: T,
    }
}

impl<F: Future, T: Future + Unpin> Future for Timeout<F, T> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(this.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Awaits `future` for at most `limit`.
pub fn timeout<F: Future>(limit: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        timer: smol::Timer::after(limit),
    }
}

/// Awaits `future` until `timer` fires; the timer stays usable for what
/// comes next under the same deadline (a call's grpc-timeout covers its
/// request and its response).
pub fn until<F: Future>(timer: &mut smol::Timer, future: F) -> Timeout<F, &mut smol::Timer> {
    Timeout { future, timer }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
            let mut timer = smol::Timer::after(Duration::from_millis(10));
            let pending = std::future::pending::<()>();
            assert_eq!(until(&mut timer, pending).await, Err(Elapsed));
            let mut timer = smol::Timer::after(Duration::from_secs(5));
            assert_eq!(until(&mut timer, async { "done" }).await, Ok("done"));
        });
    }
}
