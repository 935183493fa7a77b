//! Serializing an event's body into a buffer of about the right size.
//!
//! `serde_json::to_vec` starts from an empty `Vec` and doubles it as it writes: a 1 KB body
//! is reallocated about eight times. Buffers of that size are past the per-thread cache of
//! glibc's allocator, so each reallocation locks a shared arena, and the runtime's threads
//! (an emit on one, an attempt freeing a payload on the other) wait for each other there:
//! a profile of the in-memory sender to one endpoint counted about one context switch in
//! twenty on those locks from serializing alone. Events of one kind are about the same size,
//! so the next body is written into a buffer the size of the last one, with some room to
//! spare.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The size of the last body serialized, shared by a dispatcher's emits.
#[derive(Debug, Default)]
pub(super) struct BodySize(AtomicUsize);

impl BodySize {
    /// Most bytes reserved ahead of a body: a larger one grows its buffer as before, so one
    /// large event does not make every later small one reserve as much.
    const MAX_RESERVE: usize = 16 * 1024;

    /// Serializes `value` into a buffer sized by the bodies before it. The buffer is kept as
    /// the payload, so when more than a fifth of it would be unused (an event smaller than
    /// the one before, or one that outgrew its reservation) it is shrunk to fit.
    pub(super) fn serialize<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let last = self.0.load(Ordering::Relaxed);
        let reserve = last.saturating_add(last / 8).min(Self::MAX_RESERVE);
        let mut body = Vec::with_capacity(reserve);
        serde_json::to_writer(&mut body, value)?;
        self.0.store(body.len(), Ordering::Relaxed);
        if body.capacity().saturating_sub(body.len()) > body.len() / 5 {
            body.shrink_to_fit();
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> String {
        "x".repeat(len)
    }

    #[test]
    fn bodies_are_what_serde_json_writes() {
        let size = BodySize::default();
        for len in [0, 10, 1_000, 50_000, 3, 1_000] {
            let value = serde_json::json!({ "event": "dataset-complete", "pad": text(len) });
            let body = size.serialize(&value).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(body, serde_json::to_vec(&value).unwrap_or_default());
        }
    }

    #[test]
    fn a_body_like_the_last_one_is_written_without_growing_its_buffer() {
        let size = BodySize::default();
        let first = size.serialize(&text(1_000)).unwrap_or_default();
        // Reserved from nothing: grown as serde_json grows it, then shrunk to fit.
        assert!(first.capacity() - first.len() <= first.len() / 5);
        let next = size.serialize(&text(1_050)).unwrap_or_default();
        // 1,002 bytes last time, 1,127 reserved: 1,052 fit without a reallocation.
        assert_eq!(next.capacity(), 1_002 + 1_002 / 8);
        assert_eq!(next.len(), 1_052);
    }

    #[test]
    fn a_small_body_after_a_large_one_keeps_no_spare_room() {
        let size = BodySize::default();
        let _large = size.serialize(&text(100_000)).unwrap_or_default();
        let small = size.serialize(&text(100)).unwrap_or_default();
        assert_eq!(small.len(), 102);
        assert!(
            small.capacity() <= 102 + 102 / 5,
            "capacity {}",
            small.capacity()
        );
        // The reservation follows the small body from then on.
        let again = size.serialize(&text(100)).unwrap_or_default();
        assert_eq!(again.capacity(), 102 + 102 / 8);
    }

    #[test]
    fn a_large_body_reserves_at_most_the_cap() {
        let size = BodySize::default();
        let _ = size.serialize(&text(1_000_000)).unwrap_or_default();
        let last = size.0.load(Ordering::Relaxed);
        assert_eq!(last, 1_000_002);
        let next = size.serialize(&text(1_000_000)).unwrap_or_default();
        assert_eq!(next.len(), 1_000_002);
        assert!(next.capacity() - next.len() <= next.len() / 5);
    }
}
