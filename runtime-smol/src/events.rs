//! The queue from a connection's operations to the connection: bounded,
//! with many senders and one receiver, like `async_channel::bounded`, but
//! holding memory only for what it holds.
//!
//! `async_channel::bounded(n)` allocates its `n` slots when it is made
//! (88 bytes each for an `(OpId, UpstreamEvent)`, 1,408 for the default
//! `limits.operation_queue` of 16) and a shared part of 768 bytes, and a
//! connection keeps both while it has an operation, that is for a whole
//! subscription's life. Here the items are a `VecDeque` that grows as it
//! fills, up to the same bound, beside two lazily allocated
//! `event_listener::Event`s; the slots go back whenever the receiver waits
//! on an empty queue, so an idle subscription's connection holds none
//! (docs/BENCHMARKS.md, "Lean subscriptions"). The semantics are those of `async_channel`: a send
//! waits while the queue holds `capacity` items, items come out in the
//! order they went in, a send fails once the receiver is gone, and the
//! receiver sees the end once every sender is gone and the queue is empty.

use event_listener::{Event, EventListener};
use futures_lite::Stream;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// What the senders and the receiver share.
struct Shared<T> {
    state: Mutex<State<T>>,
    /// Notified when an item is taken or the receiver is gone.
    not_full: Event,
    /// Notified when an item is queued or the last sender is gone.
    not_empty: Event,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code runs under the lock that could panic and leave the state
        // half changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded queue of at most `capacity` items (at least one).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            senders: 1,
            receiver: true,
        }),
        not_full: Event::new(),
        not_empty: Event::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            listener: None,
        },
    )
}

/// The receiver is gone: the item was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Why [`Receiver::try_recv`] gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is queued, and a sender may still send.
    Empty,
    /// Nothing is queued, and every sender is gone.
    Closed,
}

/// Every sender is gone and nothing is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

/// The sending side; cloned for each sender.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.not_empty.notify(usize::MAX);
        }
    }
}

impl<T> Sender<T> {
    /// Queues `item` if there is room and the receiver is there.
    fn try_send(&self, item: T) -> Result<(), (T, bool)> {
        let mut state = self.shared.lock();
        if !state.receiver {
            return Err((item, true));
        }
        if state.items.len() >= state.capacity {
            return Err((item, false));
        }
        state.items.push_back(item);
        drop(state);
        self.shared.not_empty.notify(1);
        Ok(())
    }

    /// Queues `item`, waiting while the queue is full; fails once the
    /// receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), SendError<T>> {
        let mut item = item;
        loop {
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err((back, true)) => return Err(SendError(back)),
                Err((back, false)) => item = back,
            }
            // Listen before looking again, so that a take in between
            // still wakes this send.
            let listener = self.shared.not_full.listen();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err((back, true)) => return Err(SendError(back)),
                Err((back, false)) => item = back,
            }
            listener.await;
        }
    }
}

/// The receiving side (one).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Registered while [`Stream::poll_next`] waits.
    listener: Option<EventListener>,
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.receiver = false;
            std::mem::take(&mut state.items)
        };
        // Queued items are dropped outside the lock.
        drop(items);
        self.shared.not_full.notify(usize::MAX);
    }
}

impl<T> Receiver<T> {
    /// The receiver is about to wait: what a burst grew goes back if the
    /// queue is empty. Done here, not at each take, so that a queue taken
    /// as fast as it fills does not free and allocate its slots per item.
    fn release_if_empty(&self) {
        let mut state = self.shared.lock();
        if state.items.is_empty() && state.items.capacity() > 0 {
            state.items = VecDeque::new();
        }
    }

    /// Takes the oldest item if there is one.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match state.items.pop_front() {
            Some(item) => {
                drop(state);
                self.shared.not_full.notify(1);
                Ok(item)
            }
            None if state.senders == 0 => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Takes the oldest item, waiting for one; fails once every sender is
    /// gone and nothing is queued.
    pub async fn recv(&self) -> Result<T, RecvError> {
        loop {
            match self.try_recv() {
                Ok(item) => return Ok(item),
                Err(TryRecvError::Closed) => return Err(RecvError),
                Err(TryRecvError::Empty) => {}
            }
            // Listen before looking again, so that a send in between still
            // wakes this wait.
            let listener = self.shared.not_empty.listen();
            match self.try_recv() {
                Ok(item) => return Ok(item),
                Err(TryRecvError::Closed) => return Err(RecvError),
                Err(TryRecvError::Empty) => {}
            }
            self.release_if_empty();
            listener.await;
        }
    }
}

impl<T> Unpin for Receiver<T> {}

impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            if let Some(listener) = self.listener.as_mut() {
                if Pin::new(listener).poll(cx).is_pending() {
                    // Woken early by another wake of this task: look anyway.
                    match self.try_recv() {
                        Ok(item) => {
                            self.listener = None;
                            return Poll::Ready(Some(item));
                        }
                        Err(TryRecvError::Closed) => {
                            self.listener = None;
                            return Poll::Ready(None);
                        }
                        Err(TryRecvError::Empty) => {
                            self.release_if_empty();
                            return Poll::Pending;
                        }
                    }
                }
                self.listener = None;
            }
            match self.try_recv() {
                Ok(item) => return Poll::Ready(Some(item)),
                Err(TryRecvError::Closed) => return Poll::Ready(None),
                Err(TryRecvError::Empty) => {}
            }
            // Listen, then look again (an item queued in between), then
            // wait on the listener.
            self.listener = Some(self.shared.not_empty.listen());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{future, StreamExt};

    #[test]
    fn a_full_queue_holds_its_sender_until_an_item_is_taken() {
        future::block_on(async {
            let (tx, rx) = bounded::<u32>(2);
            tx.send(1).await.unwrap();
            tx.send(2).await.unwrap();
            let mut third = Box::pin(tx.send(3));
            assert!(
                future::poll_once(&mut third).await.is_none(),
                "sent past the bound"
            );
            assert_eq!(rx.recv().await, Ok(1));
            assert_eq!(third.await, Ok(()));
            assert_eq!(rx.try_recv(), Ok(2));
            assert_eq!(rx.try_recv(), Ok(3));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        });
    }

    #[test]
    fn the_ends_are_seen_from_both_sides() {
        future::block_on(async {
            let (tx, rx) = bounded::<u32>(4);
            let other = tx.clone();
            other.send(7).await.unwrap();
            drop(other);
            drop(tx);
            // What was queued still comes, then the end.
            assert_eq!(rx.recv().await, Ok(7));
            assert_eq!(rx.recv().await, Err(RecvError));

            let (tx, rx) = bounded::<u32>(1);
            tx.send(1).await.unwrap();
            let mut waiting = Box::pin(tx.send(2));
            assert!(future::poll_once(&mut waiting).await.is_none());
            drop(rx);
            assert_eq!(waiting.await, Err(SendError(2)));
            assert_eq!(tx.send(3).await, Err(SendError(3)));
        });
    }

    #[test]
    fn a_waiting_receiver_is_woken_by_a_send_from_another_thread() {
        let (tx, rx) = bounded::<u32>(1);
        let sender = std::thread::spawn(move || {
            future::block_on(async {
                for i in 0..1000 {
                    tx.send(i).await.unwrap();
                }
            })
        });
        future::block_on(async {
            for i in 0..1000 {
                assert_eq!(rx.recv().await, Ok(i));
            }
            assert_eq!(rx.recv().await, Err(RecvError));
        });
        sender.join().unwrap();
    }

    #[test]
    fn an_idle_queue_holds_no_slots() {
        future::block_on(async {
            let (tx, rx) = bounded::<[u8; 80]>(16);
            for _ in 0..16 {
                tx.send([0; 80]).await.unwrap();
            }
            assert!(rx.shared.lock().items.capacity() >= 16);
            // Taken as fast as it fills, the queue keeps its slots...
            while rx.try_recv().is_ok() {}
            assert!(rx.shared.lock().items.capacity() >= 16);
            // ... and gives them back when its receiver waits.
            let mut rx = rx;
            assert!(future::poll_once(rx.next()).await.is_none());
            assert_eq!(rx.shared.lock().items.capacity(), 0);
        });
    }
}
