//! The lazy connection schedule: per workload a cursor, the next start of each on a heap, so
//! memory does not grow with `count` and many workloads cost log time per start.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smoltcp::time::Instant;

use super::workload::Workload;

/// `t` plus `us` microseconds, saturating (a time beyond `i64` microseconds is "never").
pub(super) fn after_us(t: Instant, us: u64) -> Instant {
    Instant::from_micros(
        t.total_micros()
            .saturating_add(i64::try_from(us).unwrap_or(i64::MAX)),
    )
}

/// `t` plus `ms` milliseconds, saturating.
pub(super) fn after_ms(t: Instant, ms: u64) -> Instant {
    after_us(t, ms.saturating_mul(1000))
}

/// Where one workload is in its schedule. Its next start time lives in [`Schedule::heap`].
struct WorkloadCursor {
    /// Connections not opened yet.
    left: u32,
    /// Connections of the current schedule step (burst) already opened.
    opened_in_burst: u32,
    /// Interval jitter draws, made when first needed (workloads with `interval_jitter_ms > 0`).
    jitter: Option<Box<ChaCha8Rng>>,
}

/// The connection starts of every workload, produced lazily: memory does not grow with
/// `count`, and each start costs `O(log workloads)`.
///
/// The order is the one the eager schedule had: by start time, ties by workload index, and a
/// workload's own starts in order.
pub(super) struct Schedule {
    /// One cursor per workload, by workload index.
    cursors: Vec<WorkloadCursor>,
    /// `(next start in microseconds, workload index)` of every workload with connections left
    /// whose next start is representable: a min-heap.
    pub(super) heap: BinaryHeap<Reverse<(i64, usize)>>,
    /// Some workload has connections left that never start (start beyond `i64` microseconds).
    pub(super) never: bool,
    /// Seed of the per-workload jitter streams.
    pub(super) program_seed: u64,
}

impl Schedule {
    pub(super) fn new(workloads: &[Workload], program_seed: u64) -> Schedule {
        let mut never = false;
        let mut heap = Vec::new();
        let cursors = workloads
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if w.count > 0 {
                    match i64::try_from(w.start_ms.saturating_mul(1000)) {
                        Ok(at) => heap.push(Reverse((at, i))),
                        Err(_) => never = true,
                    }
                }
                WorkloadCursor {
                    left: w.count,
                    opened_in_burst: 0,
                    jitter: None,
                }
            })
            .collect();
        Schedule {
            cursors,
            heap: BinaryHeap::from(heap),
            never,
            program_seed,
        }
    }

    /// The jitter stream of workload `index`: the program seed's ChaCha8 key, stream
    /// `index + 1` (stream 0 is the program RNG's, which draws the start-up delays).
    pub(super) fn jitter_rng(program_seed: u64, index: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(program_seed);
        rng.set_stream(index as u64 + 1);
        rng
    }

    /// When the next connection starts.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| Instant::from_micros(*at))
    }

    /// True when no connection is left to start (not even one that never starts).
    pub(super) fn is_empty(&self) -> bool {
        self.heap.is_empty() && !self.never
    }

    /// The workload of the next connection if it starts at or before `now`, advancing its
    /// workload's schedule.
    pub(super) fn pop_due(&mut self, now: Instant, workloads: &[Workload]) -> Option<usize> {
        if self.next_at()? > now {
            return None;
        }
        self.pop(workloads).map(|(_, i)| i)
    }

    /// The next connection start (time, workload), advancing its workload's schedule.
    pub(super) fn pop(&mut self, workloads: &[Workload]) -> Option<(Instant, usize)> {
        let Reverse((at, i)) = self.heap.pop()?;
        let w = &workloads[i];
        let c = &mut self.cursors[i];
        c.left -= 1;
        c.opened_in_burst += 1;
        let mut next = Some(at);
        if c.left > 0 && c.opened_in_burst >= w.burst.max(1) {
            c.opened_in_burst = 0;
            let jitter = if w.interval_jitter_ms > 0 {
                let seed = self.program_seed;
                c.jitter
                    .get_or_insert_with(|| Box::new(Self::jitter_rng(seed, i)))
                    .random_range(0..=w.interval_jitter_ms)
            } else {
                0
            };
            let step_us = w.interval_ms.saturating_add(jitter).saturating_mul(1000);
            next = u64::try_from(at)
                .ok()
                .and_then(|at| i64::try_from(at.saturating_add(step_us)).ok());
        }
        if c.left > 0 {
            match next {
                Some(t) => self.heap.push(Reverse((t, i))),
                None => self.never = true,
            }
        }
        Some((Instant::from_micros(at), i))
    }
}
