//! Reconnect delays: exponential from `initial` to `max`, each one jittered down to half
//! of itself so that proxies cut off together (an operator restart) do not all come
//! back in the same instant.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The wait before the next attempt: in [d/2, d] for the current step d, which then
    /// doubles up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// After a stream that worked: the next failure starts from `initial` again.
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_bounded_and_reset() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut backoff = Backoff::new(initial, max);
        let mut step = initial;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} not in [{step:?}/2, {step:?}]"
            );
            step = (step * 2).min(max);
        }
        assert!(backoff.next_delay() <= max);
        backoff.reset();
        assert!(backoff.next_delay() <= initial);
    }
}
