//! HTTPRoute `retry`: which failed attempts are tried again, how often, how soon.
//!
//! Gateway API (HTTPRouteRetry):
//! - attempts: "the maximum number of times an individual request from the gateway to a
//!   backend should be retried. If the maximum number of retries has been attempted
//!   without a successful response from the backend, the Gateway MUST return an error."
//!   The error returned is the last attempt's: its response, or the local reply for its
//!   failure (the upstream conformance test expects the backend's own 500, 502, 503 or
//!   504 back).
//! - codes: "the HTTP response status codes for which a backend request should be
//!   retried". Attempts that failed before a response came back are retried whatever
//!   the codes when that is safe (see `RequestError::retryable`: a failed connect, no
//!   ready endpoint, an attempt that timed out).
//! - backoff: "the minimum duration a Gateway should wait between retry attempts ...
//!   An implementation MAY use an exponential or alternative backoff strategy for
//!   subsequent retry attempts, MAY cap the maximum backoff duration to some amount
//!   greater than the specified minimum, and MAY add arbitrary jitter ... as long as
//!   unsuccessful backend requests are not retried before the configured minimum
//!   duration." Portico doubles the wait on each retry, caps it at ten times the
//!   minimum, and adds up to half the minimum of jitter.
//!
//! A request whose body could not be kept for a second attempt (see [`crate::body`])
//! is sent once.

use std::time::Duration;

use http::StatusCode;
use portico_api::config::v1 as pb;

use crate::error::RequestError;

/// The longest wait is this many times the configured backoff.
const BACKOFF_CAP: u32 = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    attempts: u32,
    codes: Vec<StatusCode>,
    backoff: Duration,
}

impl RetryPolicy {
    pub(crate) fn compile(r: &pb::RetryPolicy) -> Self {
        Self {
            attempts: r.attempts,
            codes: r
                .codes
                .iter()
                .filter_map(|c| u16::try_from(*c).ok())
                .filter_map(|c| StatusCode::from_u16(c).ok())
                .collect(),
            backoff: Duration::from_millis(r.backoff_ms),
        }
    }

    /// Whether the attempt that ended with `outcome` is retried, `retries` retries in.
    pub(crate) fn retries(&self, retries: u32, outcome: Result<StatusCode, &RequestError>) -> bool {
        retries < self.attempts
            && match outcome {
                Ok(status) => self.codes.contains(&status),
                Err(error) => error.retryable(),
            }
    }

    /// The wait before retry number `retry` (1 for the first).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        self.backoff_with(retry, |max| fastrand::u64(0..=max))
    }

    fn backoff_with(&self, retry: u32, jitter: impl FnOnce(u64) -> u64) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(BACKOFF_CAP);
        let base = self.backoff.saturating_mul(factor);
        let half_ms = u64::try_from(self.backoff.as_millis() / 2).unwrap_or(u64::MAX);
        base + Duration::from_millis(jitter(half_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, codes: &[u32], backoff_ms: u64) -> RetryPolicy {
        RetryPolicy::compile(&pb::RetryPolicy {
            attempts,
            codes: codes.to_vec(),
            backoff_ms,
        })
    }

    #[test]
    fn codes_and_attempts() {
        let p = policy(3, &[500], 25);
        assert!(p.retries(0, Ok(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(p.retries(2, Ok(StatusCode::INTERNAL_SERVER_ERROR)));
        // Three retries done: the fourth answer stands.
        assert!(!p.retries(3, Ok(StatusCode::INTERNAL_SERVER_ERROR)));
        // Only the configured codes.
        assert!(!p.retries(0, Ok(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(!p.retries(0, Ok(StatusCode::OK)));
    }

    #[test]
    fn failures_before_a_response_are_retried_when_safe() {
        let p = policy(1, &[], 25);
        let timeout = RequestError::BackendTimeout {
            cluster: "c".into(),
            endpoint: ([127, 0, 0, 1], 1).into(),
            after: Duration::from_millis(5),
        };
        assert!(p.retries(0, Err(&timeout)));
        assert!(!p.retries(1, Err(&timeout)));
        let no_route = RequestError::BadRequest("x".into());
        assert!(!p.retries(0, Err(&no_route)));
    }

    #[test]
    fn backoff_doubles_is_capped_and_never_below_the_minimum() {
        let p = policy(20, &[], 100);
        let no_jitter = |_| 0;
        assert_eq!(p.backoff_with(1, no_jitter), Duration::from_millis(100));
        assert_eq!(p.backoff_with(2, no_jitter), Duration::from_millis(200));
        assert_eq!(p.backoff_with(3, no_jitter), Duration::from_millis(400));
        assert_eq!(p.backoff_with(5, no_jitter), Duration::from_millis(1000));
        assert_eq!(p.backoff_with(40, no_jitter), Duration::from_millis(1000));
        // Jitter is at most half the minimum, and only adds.
        assert_eq!(
            p.backoff_with(1, |max| {
                assert_eq!(max, 50);
                max
            }),
            Duration::from_millis(150)
        );
        for retry in 1..10 {
            assert!(p.backoff(retry) >= Duration::from_millis(100));
        }
    }
}
