//! Retrying a check until it holds, instead of sleeping for a guessed time.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// First pause between attempts; it doubles up to [`MAX_PAUSE`]. Short at first so a
/// condition that holds quickly costs little; capped so a slow one is still polled often.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// The outcome of one attempt: `Ok`/`Some` ends the loop; `Err`/`None` asks for another
/// try and is remembered as the last error.
pub trait Attempt {
    type Output;
    fn into_attempt(self) -> Result<Self::Output, String>;
}

impl<T> Attempt for Option<T> {
    type Output = T;
    fn into_attempt(self) -> Result<T, String> {
        self.ok_or_else(|| "returned None".to_owned())
    }
}

impl<T, E: Display> Attempt for Result<T, E> {
    type Output = T;
    fn into_attempt(self) -> Result<T, String> {
        // `{:#}` prints the whole chain of an anyhow error and is plain Display otherwise.
        self.map_err(|e| format!("{e:#}"))
    }
}

/// The condition did not hold in time.
#[derive(Debug, thiserror::Error)]
#[error("not true after {timeout:?} ({attempts} attempts); last error: {last_error}")]
pub struct EventuallyError {
    pub timeout: Duration,
    pub attempts: u32,
    pub last_error: String,
}

/// Calls `f` until it returns `Ok`/`Some`, or fails once `timeout` has passed, with the
/// last error. An attempt that hangs is cut off at the deadline too, so the whole call
/// is bounded by `timeout`.
///
/// ```no_run
/// # async fn demo(addr: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use portico_testkit::{eventually, get_json};
///
/// let (status, answer) = eventually(Duration::from_secs(5), || {
///     get_json::<serde_json::Value>(addr, Some("foo.bar.com"), "/login")
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn eventually<F, Fut, R>(
    timeout: Duration,
    mut f: F,
) -> Result<R::Output, EventuallyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
    R: Attempt,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    let mut attempts = 0;
    let mut last_error: Option<String> = None;
    loop {
        attempts += 1;
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(outcome) => match outcome.into_attempt() {
                Ok(value) => return Ok(value),
                Err(error) => last_error = Some(error),
            },
            // The deadline passed mid-attempt: the error of the attempt before says more
            // than the cut-off itself.
            Err(_) => {
                let cut = format!("attempt {attempts} still running at the deadline");
                last_error = Some(match last_error {
                    Some(previous) => format!("{previous} ({cut})"),
                    None => cut,
                });
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(EventuallyError {
                timeout,
                attempts,
                last_error: last_error.unwrap_or_default(),
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_first_success() {
        let calls = AtomicU32::new(0);
        let got = eventually(Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 3 {
                Err(format!("only {n}"))
            } else {
                Ok(n)
            }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn option_none_retries() {
        let calls = AtomicU32::new(0);
        let got = eventually(Duration::from_secs(5), || async {
            (calls.fetch_add(1, Ordering::SeqCst) >= 1).then_some("ready")
        })
        .await
        .unwrap();
        assert_eq!(got, "ready");
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let err = eventually(Duration::from_secs(2), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(format!("attempt {n} refused"))
        })
        .await
        .unwrap_err();
        let n = calls.load(Ordering::SeqCst);
        assert!(n > 2, "retried only {n} times");
        assert_eq!(err.attempts, n);
        assert_eq!(err.last_error, format!("attempt {} refused", n - 1));
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_is_cut_off_at_the_deadline() {
        let started = Instant::now();
        let err = eventually(Duration::from_secs(1), || async {
            std::future::pending::<Option<()>>().await
        })
        .await
        .unwrap_err();
        assert_eq!(err.attempts, 1);
        assert!(err.last_error.contains("still running"), "{err}");
        assert!(started.elapsed() <= Duration::from_millis(1100));
    }
}
