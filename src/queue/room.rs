//! Room for unsent deliveries in the [`MemoryQueue`](super::MemoryQueue): a fair semaphore
//! with a permit per delivery, whose freed permits go back in batches while enqueues wait.
//!
//! When emits outrun the worker, every enqueue waits for room, and each attempt frees room
//! for one delivery. Giving each permit back as it frees would wake one waiting enqueue per
//! attempt, and that enqueue would find the queue full again at its next emit and wait once
//! more, with a timer: a wake-up and a timer for every delivery. So while enqueues wait,
//! freed permits are held and given back in batches of a sixteenth of the bound
//! ([`BATCH_DIVISOR`]), or after [`LINGER`] at the latest. Each waiting enqueue gets its room
//! and the rest stays free, so the emitting tasks go on emitting several events each before
//! they wait again. With nobody waiting, a freed permit goes back at once. An enqueue about
//! to wait gives back what is held first, so room is never held from an enqueue that could
//! use it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// While enqueues wait, freed room goes back once this fraction of the bound is held (at
/// least one delivery's).
const BATCH_DIVISOR: usize = 16;

/// The longest freed room is held while enqueues wait.
const LINGER: Duration = Duration::from_millis(10);

/// Room for at most `max` unsent deliveries.
#[derive(Debug)]
pub(super) struct Room {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One permit per unsent delivery the queue may still take. Fair: waiting enqueues are
    /// served in order.
    permits: Semaphore,
    /// Freed room not given back yet.
    held: AtomicUsize,
    /// Enqueues waiting for room.
    waiting: AtomicUsize,
    /// A give-back of what is held is scheduled.
    armed: AtomicBool,
    /// How much held room is given back at once.
    batch: usize,
}

impl Room {
    /// Room for `max` unsent deliveries, all free.
    pub(super) fn new(max: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(max),
                held: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                armed: AtomicBool::new(false),
                batch: (max / BATCH_DIVISOR).max(1),
            }),
        }
    }

    /// Takes room for `n` deliveries: at once when it is free, else waiting behind the
    /// enqueues already waiting, for up to `wait`. `None` when `wait` ran out. Dropped
    /// unused, the permits go back at once.
    pub(super) async fn take(&self, n: u32, wait: Duration) -> Option<SemaphorePermit<'_>> {
        let inner = &*self.inner;
        // Room at once (the common case) needs no timer. The semaphore is fair, so this fails
        // while others wait, and this enqueue then queues behind them.
        if let Ok(permits) = inner.permits.try_acquire_many(n) {
            return Some(permits);
        }
        let _waiting = Waiting::count(&inner.waiting);
        // What is held goes to the enqueues already waiting first, and the rest to this one.
        inner.give_back_held();
        match tokio::time::timeout(wait, inner.permits.acquire_many(n)).await {
            Ok(Ok(permits)) => Some(permits),
            // The semaphore is never closed; a closed one would have no room either.
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Frees the room of one delivery: given back at once when no enqueue waits; otherwise
    /// held until a batch is, or for [`LINGER`] at most.
    pub(super) fn free_one(&self) {
        let inner = &*self.inner;
        let held = inner.held.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        if held >= inner.batch || inner.waiting.load(Ordering::SeqCst) == 0 {
            inner.give_back_held();
        } else {
            self.arm();
        }
    }

    /// Schedules a give-back of what is held in [`LINGER`], unless one is scheduled. Outside
    /// a tokio runtime, gives it back now.
    fn arm(&self) {
        if self.inner.armed.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.armed.store(false, Ordering::SeqCst);
            return self.inner.give_back_held();
        };
        let inner = self.inner.clone();
        runtime.spawn(async move {
            tokio::time::sleep(LINGER).await;
            // Disarmed before giving back: room freed after this point arms a new one.
            inner.armed.store(false, Ordering::SeqCst);
            inner.give_back_held();
        });
    }

    /// How much freed room is held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.inner.held.load(Ordering::SeqCst)
    }

    /// How many enqueues wait for room now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }
}

impl Inner {
    /// Gives every held permit back to the semaphore: to the waiting enqueues first, in
    /// order, and the rest to whoever takes room next.
    fn give_back_held(&self) {
        let held = self.held.swap(0, Ordering::SeqCst);
        if held > 0 {
            self.permits.add_permits(held);
        }
    }
}

/// Counts an enqueue as waiting for as long as it lives (a cancelled enqueue stops counting
/// too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    /// A full room of `max`, its permits taken for good, as rows hold them.
    async fn full(max: usize) -> Arc<Room> {
        let room = Arc::new(Room::new(max));
        let n = u32::try_from(max).expect("small");
        room.take(n, LONG).await.expect("free").forget();
        room
    }

    /// An enqueue of one delivery taking room, spawned: `true` once it has it.
    fn spawn_take(room: &Arc<Room>) -> tokio::task::JoinHandle<bool> {
        let room = room.clone();
        tokio::spawn(async move {
            room.take(1, LONG)
                .await
                .map(SemaphorePermit::forget)
                .is_some()
        })
    }

    /// An enqueue of one delivery waiting for room, once it waits.
    async fn waiter(room: &Arc<Room>) -> tokio::task::JoinHandle<bool> {
        let before = room.waiting();
        let handle = spawn_take(room);
        while room.waiting() == before {
            tokio::task::yield_now().await;
        }
        handle
    }

    /// Lets spawned tasks run without moving the clock.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn freed_room_goes_back_at_once_when_no_enqueue_waits() {
        let room = full(64).await;
        room.free_one();
        assert_eq!(room.held(), 0);
        assert!(room.inner.permits.try_acquire_many(1).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn while_enqueues_wait_room_goes_back_a_batch_at_a_time_and_the_rest_stays_free() {
        // A bound of 64 gives room back 4 deliveries' worth at a time.
        let room = full(64).await;
        let first = waiter(&room).await;
        for held in 1..=3 {
            room.free_one();
            assert_eq!(room.held(), held);
        }
        settle().await;
        assert!(!first.is_finished(), "three of a batch of four are held");
        room.free_one();
        assert_eq!(room.held(), 0);
        assert!(
            first.await.expect("task"),
            "the waiting enqueue got its room"
        );
        // The other three are free: the next enqueues take them without waiting.
        for _ in 0..3 {
            room.take(1, Duration::ZERO).await.expect("free").forget();
        }
        assert!(room.take(1, Duration::ZERO).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn held_room_goes_back_within_the_linger_when_nothing_more_is_freed() {
        let room = full(64).await;
        let waiting = waiter(&room).await;
        room.free_one();
        settle().await;
        assert!(!waiting.is_finished());
        tokio::time::sleep(LINGER).await;
        settle().await;
        assert_eq!(room.held(), 0);
        assert!(waiting.is_finished(), "given back within {LINGER:?}");
        assert!(waiting.await.expect("task"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_enqueue_about_to_wait_gives_held_room_to_the_ones_waiting_before_it() {
        let room = full(64).await;
        let first = waiter(&room).await;
        room.free_one();
        assert_eq!(room.held(), 1);
        // (Not `waiter`: the first stops waiting as the second starts.)
        let second = spawn_take(&room);
        settle().await;
        assert_eq!(room.held(), 0);
        assert!(
            first.is_finished(),
            "the held room went to the first, at once"
        );
        assert!(!second.is_finished(), "and none is left for the second");
        assert!(first.await.expect("task"));
        second.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_enqueue_stops_counting_as_waiting() {
        let room = full(4).await;
        let waiting = waiter(&room).await;
        assert_eq!(room.waiting(), 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(room.waiting(), 0);
        // With nobody waiting, freed room goes back at once.
        room.free_one();
        assert_eq!(room.held(), 0);
    }
}
