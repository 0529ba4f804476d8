//! The run's deadline: every scenario says how long it needs before it starts, and one
//! that would not fit is skipped and listed in `not_run`, so that the results are
//! written in time rather than killed by `timeout` with nothing written. Progress lines
//! carry the time of day and the seconds since the start.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

static START: OnceLock<Instant> = OnceLock::new();

/// `HH:MM:SS +SECONDS` for progress lines.
pub(crate) fn stamp() -> String {
    let since = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    format!("{} +{since:>5.0}s", now.get(11..19).unwrap_or(&now))
}

/// `eprintln!` with [`stamp`] in front.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("{} {}", $crate::budget::stamp(), format_args!($($arg)*))
    };
}

#[derive(Debug)]
pub(crate) struct Budget {
    end: Option<Instant>,
    /// What was skipped and why (`not_run` entries).
    pub(crate) skipped: Vec<Value>,
}

impl Budget {
    /// The earlier of `secs` from now and the Unix time `deadline`; none: no limit.
    pub(crate) fn new(secs: Option<u64>, deadline_unix: Option<u64>) -> Self {
        let now = Instant::now();
        START.get_or_init(|| now);
        let from_unix = deadline_unix.map(|d| {
            let unix_now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            now + Duration::from_secs(d.saturating_sub(unix_now))
        });
        let from_secs = secs.map(|s| now + Duration::from_secs(s));
        let end = match (from_secs, from_unix) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            end,
            skipped: Vec::new(),
        }
    }

    pub(crate) fn left(&self) -> Option<Duration> {
        self.end
            .map(|end| end.saturating_duration_since(Instant::now()))
    }

    /// Whether `scenario`, expected to take `need`, fits in what is left; when it does
    /// not, it is recorded as skipped.
    pub(crate) fn fits(&mut self, scenario: &str, need: Duration) -> bool {
        let Some(left) = self.left() else {
            return true;
        };
        if need <= left {
            return true;
        }
        crate::progress!(
            "skipping {scenario}: it needs about {} s, {} s are left before the deadline",
            need.as_secs(),
            left.as_secs()
        );
        self.skipped.push(json!({
            "scenario": scenario,
            "reason": format!(
                "the run's deadline: about {} s needed, {} s left",
                need.as_secs(),
                left.as_secs()
            ),
        }));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_what_does_not_fit_and_says_so() {
        let mut b = Budget::new(Some(100), None);
        assert!(b.fits("small", Duration::from_secs(10)));
        assert!(!b.fits("big", Duration::from_secs(500)));
        assert_eq!(b.skipped.len(), 1);
        assert_eq!(b.skipped[0]["scenario"], "big");
        // The earlier of the two deadlines counts: a Unix time 5 s from now.
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut b = Budget::new(Some(1000), Some(unix_now + 5));
        assert!(!b.fits("a minute", Duration::from_secs(60)));
        // A deadline already past leaves nothing.
        let mut b = Budget::new(None, Some(unix_now.saturating_sub(10)));
        assert!(!b.fits("anything", Duration::from_secs(1)));
        // No deadline: everything fits.
        let mut b = Budget::new(None, None);
        assert!(b.fits("anything", Duration::from_secs(100_000)));
        assert!(b.skipped.is_empty());
    }
}
