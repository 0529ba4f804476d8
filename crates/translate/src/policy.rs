//! A rule's `timeouts` and `retry` -> config `Timeouts` and `RetryPolicy`.
//!
//! Gateway API (HTTPRouteTimeouts): "Setting a timeout to the zero duration (e.g. "0s")
//! SHOULD disable the timeout completely", and "when specified, the value of
//! BackendRequest must be no more than the value of the Request timeout" (the CRD's CEL
//! rule, which allows any backendRequest when request is "0s"). An unset timeout is
//! "implementation-specific": Portico has no route timeout by default, so unset and "0s"
//! both become 0 in the config.
//!
//! Gateway API (HTTPRouteRetry): attempts is "the maximum number of times an individual
//! request from the gateway to a backend should be retried" and its default, like the
//! default backoff, is implementation-specific. Portico's defaults are written into the
//! config, so that the proxy has none of its own: one retry, 25ms (Envoy's base
//! interval). codes: "Implementations MUST support the following status codes as
//! retriable: 500, 502, 503, 504", "MAY support specifying additional discrete values in
//! the 500-599 range" and "MAY support ... the 400-499 range": Portico takes 400-599,
//! the CRD's bounds.

use portico_api::config::v1::{RetryPolicy, Timeouts};
use portico_api::gateway::httproutes::{HttpRouteRulesRetry, HttpRouteRulesTimeouts};

use crate::duration;
use crate::error::RouteError;

const DEFAULT_RETRY_ATTEMPTS: u32 = 1;
const DEFAULT_RETRY_BACKOFF_MS: u64 = 25;

pub(crate) fn timeouts(
    rule: usize,
    t: Option<&HttpRouteRulesTimeouts>,
) -> Result<Option<Timeouts>, RouteError> {
    let Some(t) = t else {
        return Ok(None);
    };
    let parse = |field: &'static str, value: Option<&String>| -> Result<u64, RouteError> {
        value.map_or(Ok(0), |v| {
            duration::parse_ms(v).map_err(|why| RouteError::InvalidField {
                rule,
                field,
                why: format!("{v:?} {why}"),
            })
        })
    };
    let request_ms = parse("timeouts.request", t.request.as_ref())?;
    let backend_request_ms = parse("timeouts.backendRequest", t.backend_request.as_ref())?;
    if request_ms != 0 && backend_request_ms > request_ms {
        return Err(RouteError::InvalidField {
            rule,
            field: "timeouts",
            why: "backendRequest timeout cannot be longer than request timeout".to_owned(),
        });
    }
    if request_ms == 0 && backend_request_ms == 0 {
        return Ok(None);
    }
    Ok(Some(Timeouts {
        request_ms,
        backend_request_ms,
    }))
}

pub(crate) fn retry(
    rule: usize,
    r: Option<&HttpRouteRulesRetry>,
) -> Result<Option<RetryPolicy>, RouteError> {
    let Some(r) = r else {
        return Ok(None);
    };
    let invalid = |field: &'static str, why: String| RouteError::InvalidField { rule, field, why };
    let attempts = match r.attempts {
        None => DEFAULT_RETRY_ATTEMPTS,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid("retry.attempts", format!("{n} must be at least 1")))?,
    };
    let mut codes = Vec::new();
    for &code in r.codes.iter().flatten() {
        let code = u32::try_from(code)
            .ok()
            .filter(|c| (400..=599).contains(c))
            .ok_or_else(|| invalid("retry.codes", format!("{code} is not in 400..=599")))?;
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    let backoff_ms = match &r.backoff {
        None => DEFAULT_RETRY_BACKOFF_MS,
        Some(b) => {
            duration::parse_ms(b).map_err(|why| invalid("retry.backoff", format!("{b:?} {why}")))?
        }
    };
    Ok(Some(RetryPolicy {
        attempts,
        codes,
        backoff_ms,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(request: Option<&str>, backend: Option<&str>) -> HttpRouteRulesTimeouts {
        HttpRouteRulesTimeouts {
            request: request.map(str::to_owned),
            backend_request: backend.map(str::to_owned),
        }
    }

    #[test]
    fn timeouts_in_milliseconds_zero_disables() {
        assert_eq!(
            timeouts(0, Some(&t(Some("500ms"), None))).unwrap(),
            Some(Timeouts {
                request_ms: 500,
                backend_request_ms: 0
            })
        );
        assert_eq!(
            timeouts(0, Some(&t(Some("10s"), Some("1s")))).unwrap(),
            Some(Timeouts {
                request_ms: 10_000,
                backend_request_ms: 1_000
            })
        );
        // "0s" disables; with nothing left there is no timeout at all.
        assert_eq!(timeouts(0, Some(&t(Some("0s"), None))).unwrap(), None);
        assert_eq!(timeouts(0, None).unwrap(), None);
        // A disabled request timeout allows any backendRequest (the CEL rule).
        assert_eq!(
            timeouts(0, Some(&t(Some("0s"), Some("2s")))).unwrap(),
            Some(Timeouts {
                request_ms: 0,
                backend_request_ms: 2_000
            })
        );
    }

    #[test]
    fn invalid_timeouts() {
        assert!(timeouts(0, Some(&t(Some("1s"), Some("2s")))).is_err());
        assert!(timeouts(0, Some(&t(Some("1.5s"), None))).is_err());
        let e = timeouts(3, Some(&t(None, Some("soon")))).unwrap_err();
        assert!(e.to_string().starts_with("rule 3: timeouts.backendRequest"));
    }

    #[test]
    fn retry_defaults_and_bounds() {
        let policy = retry(
            0,
            Some(&HttpRouteRulesRetry {
                attempts: Some(3),
                backoff: Some("100ms".into()),
                codes: Some(vec![500, 502, 500]),
            }),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            policy,
            RetryPolicy {
                attempts: 3,
                codes: vec![500, 502],
                backoff_ms: 100
            }
        );
        let defaults = retry(0, Some(&HttpRouteRulesRetry::default()))
            .unwrap()
            .unwrap();
        assert_eq!(defaults.attempts, DEFAULT_RETRY_ATTEMPTS);
        assert_eq!(defaults.backoff_ms, DEFAULT_RETRY_BACKOFF_MS);
        assert!(defaults.codes.is_empty());
        assert_eq!(retry(0, None).unwrap(), None);

        for bad in [
            HttpRouteRulesRetry {
                attempts: Some(0),
                ..Default::default()
            },
            HttpRouteRulesRetry {
                codes: Some(vec![302]),
                ..Default::default()
            },
            HttpRouteRulesRetry {
                backoff: Some("1 s".into()),
                ..Default::default()
            },
        ] {
            assert!(retry(0, Some(&bad)).is_err(), "{bad:?}");
        }
    }
}
