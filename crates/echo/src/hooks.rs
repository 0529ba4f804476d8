//! Behaviours a test asks for in the request itself, as echo-basic offers them to the
//! Gateway API conformance tests:
//!
//! - `GET /status/NNN` answers with status NNN and no body.
//! - `?delay=1s` (a Go-style duration: `500ms`, `2s`) waits that long before answering;
//!   timeout tests use it to make the backend slower than the route allows.
//! - `?responseCode=503&succeedAfter=2` answers 503 to the first two requests with that
//!   exact request URI, then 200; retry tests add a fresh `uuid=` parameter per logical
//!   request, so every one of them starts its own count, and the proxy's retries of it
//!   share one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::{StatusCode, Uri};

/// Longer delays are cut to this: a test needs seconds, not minutes, and a typo must not
/// hold a connection for an hour.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Retry counts kept at most; beyond this the table is cleared rather than grown (a
/// conformance run uses a few hundred keys).
const MAX_COUNTED_URIS: usize = 10_000;

/// What the hooks decided for one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answer normally with the echo JSON.
    Echo,
    /// Answer with this status and no echo.
    Status(StatusCode),
    /// The hook's parameter is malformed: 400 with this reason.
    BadRequest(String),
}

/// The wait `?delay=` asks for, capped at [`MAX_DELAY`].
fn requested_delay(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map(|delay| delay.min(MAX_DELAY))
        .map_err(|error| format!("delay={text}: {error}"))
}

/// Per-server state of the hooks: how often each retry-counted URI was seen.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    seen: Mutex<HashMap<String, u32>>,
}

impl Hooks {
    /// Applies the hooks `uri` asks for; sleeps for `delay` before returning.
    pub(crate) async fn apply(&self, uri: &Uri) -> Outcome {
        let query: Vec<(String, String)> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };

        if let Some(delay) = param("delay") {
            match requested_delay(delay) {
                Ok(delay) => tokio::time::sleep(delay).await,
                Err(reason) => return Outcome::BadRequest(reason),
            }
        }
        if let Some(code) = uri.path().strip_prefix("/status/") {
            return match code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(status) => Outcome::Status(status),
                None => Outcome::BadRequest(format!("not a status code: {code}")),
            };
        }
        if let Some(code) = param("responseCode") {
            let Some(status) = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            else {
                return Outcome::BadRequest(format!("responseCode={code}: not a status code"));
            };
            let succeed_after = match param("succeedAfter").map(str::parse::<u32>) {
                None => u32::MAX,
                Some(Ok(n)) => n,
                Some(Err(_)) => return Outcome::BadRequest("succeedAfter: not a number".into()),
            };
            let attempt = self.count(uri.to_string());
            if attempt <= succeed_after {
                return Outcome::Status(status);
            }
        }
        Outcome::Echo
    }

    /// Counts one more request for `key` and returns the count (1 for the first).
    fn count(&self, key: String) -> u32 {
        // A poisoned lock only means another request panicked mid-count; the map is
        // still a valid map.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() >= MAX_COUNTED_URIS && !seen.contains_key(&key) {
            seen.clear();
        }
        let count = seen.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn plain_requests_are_echoed() {
        assert_eq!(Hooks::default().apply(&uri("/a?b=c")).await, Outcome::Echo);
    }

    #[tokio::test]
    async fn status_paths_answer_that_status() {
        let hooks = Hooks::default();
        assert_eq!(
            hooks.apply(&uri("/status/418")).await,
            Outcome::Status(StatusCode::IM_A_TEAPOT)
        );
        assert!(matches!(
            hooks.apply(&uri("/status/abc")).await,
            Outcome::BadRequest(_)
        ));
    }

    #[tokio::test]
    async fn retry_counts_are_per_uri() {
        let hooks = Hooks::default();
        let first = uri("/retry?responseCode=503&succeedAfter=2&uuid=1");
        let other = uri("/retry?responseCode=503&succeedAfter=2&uuid=2");
        assert_eq!(
            hooks.apply(&first).await,
            Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            hooks.apply(&first).await,
            Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            hooks.apply(&other).await,
            Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(hooks.apply(&first).await, Outcome::Echo);
    }

    #[tokio::test]
    async fn delays_wait() {
        let started = std::time::Instant::now();
        assert_eq!(
            Hooks::default().apply(&uri("/?delay=100ms")).await,
            Outcome::Echo
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn delays_are_capped_and_checked() {
        assert_eq!(requested_delay("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(requested_delay("1h"), Ok(MAX_DELAY));
        assert!(requested_delay("soon").is_err());
    }
}
