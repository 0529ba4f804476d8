//! Allocation of backend slots: each service owns a run of consecutive slots in
//! `portico_be`. Updating a service writes its new backends into a fresh run, switches the
//! service entry over, then frees the old run, so the datapath never reads a half-written
//! set.
//!
//! ```text
//!   free: { start -> len }   (sorted, never two adjacent runs: freeing merges neighbours)
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

/// First-fit allocator of runs of slots in `0..capacity`.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    capacity: u32,
    free: BTreeMap<u32, u32>,
}

impl Slots {
    pub(crate) fn new(capacity: u32) -> Self {
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        Slots { capacity, free }
    }

    /// Number of slots not in use.
    pub(crate) fn available(&self) -> u32 {
        self.free.values().sum()
    }

    /// Takes `len` consecutive slots; `None` when no free run is long enough. A run of 0
    /// slots is always available and takes nothing.
    pub(crate) fn alloc(&mut self, len: u32) -> Option<Range<u32>> {
        if len == 0 {
            return Some(0..0);
        }
        let (&start, &run) = self.free.iter().find(|&(_, &run)| run >= len)?;
        self.free.remove(&start);
        if run > len {
            self.free.insert(start + len, run - len);
        }
        Some(start..start + len)
    }

    /// Marks `range` as used, for runs adopted from maps a previous agent wrote. Returns
    /// false (and changes nothing) when any of it is not free.
    pub(crate) fn reserve(&mut self, range: Range<u32>) -> bool {
        if range.is_empty() {
            return true;
        }
        let Some((&start, &run)) = self.free.range(..=range.start).next_back() else {
            return false;
        };
        if start + run < range.end {
            return false;
        }
        self.free.remove(&start);
        if start < range.start {
            self.free.insert(start, range.start - start);
        }
        if range.end < start + run {
            self.free.insert(range.end, start + run - range.end);
        }
        true
    }

    /// Returns a run to the free list, merging it with free neighbours.
    pub(crate) fn free(&mut self, range: Range<u32>) {
        if range.is_empty() || range.end > self.capacity {
            return;
        }
        let mut start = range.start;
        let mut end = range.end;
        if let Some((&prev, &len)) = self.free.range(..start).next_back()
            && prev + len == start
        {
            self.free.remove(&prev);
            start = prev;
        }
        if let Some(len) = self.free.remove(&end) {
            end += len;
        }
        self.free.insert(start, end - start);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn alloc_is_first_fit_and_free_merges() {
        let mut s = Slots::new(10);
        assert_eq!(s.alloc(3), Some(0..3));
        assert_eq!(s.alloc(3), Some(3..6));
        assert_eq!(s.alloc(5), None);
        s.free(0..3);
        assert_eq!(s.alloc(2), Some(0..2));
        s.free(3..6);
        s.free(0..2);
        assert_eq!(s.available(), 10);
        assert_eq!(s.alloc(10), Some(0..10));
    }

    #[test]
    fn zero_length_runs_take_nothing() {
        let mut s = Slots::new(1);
        assert_eq!(s.alloc(0), Some(0..0));
        s.free(0..0);
        assert_eq!(s.available(), 1);
    }

    #[test]
    fn reserve_splits_a_free_run_and_refuses_used_slots() {
        let mut s = Slots::new(10);
        assert!(s.reserve(4..6));
        assert!(!s.reserve(5..7));
        assert_eq!(s.available(), 8);
        assert_eq!(s.alloc(5), None);
        assert_eq!(s.alloc(4), Some(0..4));
        assert_eq!(s.alloc(4), Some(6..10));
        s.free(4..6);
        s.free(0..4);
        s.free(6..10);
        assert_eq!(s.alloc(10), Some(0..10));
    }
}
