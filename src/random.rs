//! Cheap random numbers where uniqueness or spread matters and secrecy does not: lease ids
//! and retry jitter. Secrets come from [`getrandom`] directly (see [`crate::secret`]).
//!
//! Each thread draws from its own SplitMix64 sequence, seeded once from the operating
//! system's generator. Asking the operating system on every claim and every attempt cost a
//! system call each (about 2% of the in-memory sender's CPU); a step of SplitMix64 is a few
//! arithmetic instructions. Its outputs are a bijection of its counter, so one thread never
//! repeats a value within 2^64 draws, and two threads' sequences start 64 random bits apart.

use std::cell::Cell;

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// The first state of this thread's sequence: 64 bits from the operating system, or, when it
/// cannot give them, the clock and this thread's address space position (distinct per thread).
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Truncation keeps the fast-moving low bits of the clock.
    fallback_seed(nanos as u64)
}

/// A seed from the clock reading `nanos` and the position of this thread's stack.
fn fallback_seed(nanos: u64) -> u64 {
    let local = 0u8;
    let place = std::ptr::addr_of!(local) as usize as u64;
    mix(nanos ^ place.rotate_left(32))
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The next 64 random bits of this thread's sequence.
pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(GAMMA);
        state.set(next);
        mix(next)
    })
}

/// A uniform sample in `0.0..1.0`.
pub(crate) fn unit() -> f64 {
    // 53 random bits make every representable value in 0..1 equally likely.
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn draws_do_not_repeat_within_or_across_threads() {
        let draw = || (0..10_000).map(|_| next_u64()).collect::<Vec<_>>();
        let mut seen: HashSet<u64> = draw().into_iter().collect();
        assert_eq!(seen.len(), 10_000);
        let other = std::thread::spawn(draw).join().expect("thread");
        seen.extend(other);
        assert_eq!(seen.len(), 20_000, "two threads drew the same value");
    }

    #[test]
    fn units_fill_the_interval_evenly() {
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let u = unit();
            assert!((0.0..1.0).contains(&u), "{u}");
            buckets[(u * 10.0) as usize] += 1;
        }
        // Each bucket expects 10,000; 9,400..10,600 is more than five standard deviations.
        for (i, n) in buckets.iter().enumerate() {
            assert!((9_400..=10_600).contains(n), "bucket {i} holds {n}");
        }
    }

    #[test]
    fn the_fallback_seed_differs_between_threads() {
        // The operating system's generator works here; the fallback mixes clock and stack
        // address, which differ between two threads alive together.
        let fallback = || fallback_seed(1_700_000_000_000_000_000);
        let here = fallback();
        let there = std::thread::spawn(fallback).join().expect("thread");
        assert_ne!(here, there);
    }
}
