//! The RequestMirror filter: sends a copy of the request to another cluster and
//! discards the answer.
//!
//! Gateway API (HTTPRequestMirrorFilter): "Requests are sent to the specified
//! destination, but responses from that destination are ignored." "Mirrored requests
//! must be sent only to a single destination endpoint within this BackendRef,
//! irrespective of how many endpoints are present within this BackendRef." percent /
//! fraction: "the fraction of requests that should be mirrored".
//!
//! Fire and forget: the copy is sent from a task of its own, so the mirror's latency,
//! errors and response never touch the original request. Its body is a copy of the
//! original body (see [`crate::body`]); the copy is taken where the filter sits in the
//! route's filter list, so a RequestHeaderModifier listed before it shows in the copy.
//! A mirrored exchange is bounded by [`MIRROR_TIMEOUT`], so that a stuck mirror cannot
//! pile up tasks.

use std::{sync::Arc, time::Duration};

use http_body_util::BodyExt;
use portico_api::config::v1 as pb;

use crate::{
    body::RequestHead,
    error::ConfigError,
    table::ClusterState,
    upstream::{RequestBody, Upstream},
};

/// The longest a mirrored request may take, response body included.
pub(crate) const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct Mirror {
    cluster: Arc<ClusterState>,
    numerator: u32,
    denominator: u32,
}

impl Mirror {
    pub(crate) fn compile(
        m: &pb::RequestMirror,
        cluster: impl FnOnce(&str) -> Result<Arc<ClusterState>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        if m.denominator == 0 || m.numerator > m.denominator {
            return Err(ConfigError::InvalidFilterValue {
                what: "mirror fraction",
                value: format!("{}/{}", m.numerator, m.denominator),
            });
        }
        Ok(Self {
            cluster: cluster(&m.cluster)?,
            numerator: m.numerator,
            denominator: m.denominator,
        })
    }

    /// Whether this request is one of the mirrored fraction.
    pub(crate) fn sample(&self) -> bool {
        self.sample_with(|denominator| fastrand::u32(0..denominator))
    }

    fn sample_with(&self, roll: impl FnOnce(u32) -> u32) -> bool {
        self.numerator >= self.denominator
            || (self.numerator > 0 && roll(self.denominator) < self.numerator)
    }

    /// Sends `head` with `body` to one endpoint of the mirror's cluster, in the
    /// background. Returns at once.
    pub(crate) fn fire(&self, upstream: &Upstream, head: RequestHead, body: RequestBody) {
        let cluster = self.cluster.clone();
        let Some(endpoint) = cluster.pick() else {
            tracing::debug!(cluster = %cluster.name, "mirror has no ready endpoint, not mirrored");
            return;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let exchange = async {
                let response = upstream
                    .send(&cluster, endpoint, head.request(body))
                    .await?;
                let status = response.status();
                // Read to the end so that the connection can be reused.
                let _ = response.into_body().collect().await;
                Ok::<_, crate::error::RequestError>(status)
            };
            match tokio::time::timeout(MIRROR_TIMEOUT, exchange).await {
                Ok(Ok(status)) => {
                    tracing::trace!(cluster = %cluster.name, %endpoint, %status, "mirrored");
                }
                Ok(Err(error)) => {
                    tracing::debug!(cluster = %cluster.name, %endpoint, %error, "mirror failed");
                }
                Err(_) => {
                    tracing::debug!(cluster = %cluster.name, %endpoint, "mirror timed out");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mirror(numerator: u32, denominator: u32) -> Result<Mirror, ConfigError> {
        Mirror::compile(
            &pb::RequestMirror {
                cluster: "c".to_owned(),
                numerator,
                denominator,
            },
            |name| {
                Ok(Arc::new(
                    ClusterState::build(&pb::Cluster {
                        name: name.to_owned(),
                        ..Default::default()
                    })
                    .unwrap(),
                ))
            },
        )
    }

    #[test]
    fn fractions_own_exact_ranges() {
        let m = mirror(25, 50).unwrap();
        assert!(m.sample_with(|d| {
            assert_eq!(d, 50);
            24
        }));
        assert!(!m.sample_with(|_| 25));
        let all = mirror(1, 1).unwrap();
        assert!(all.sample_with(|_| unreachable!("no roll needed")));
        let none = mirror(0, 100).unwrap();
        assert!(!none.sample_with(|_| unreachable!("no roll needed")));
    }

    #[test]
    fn invalid_fractions_are_rejected() {
        assert!(mirror(1, 0).is_err());
        assert!(mirror(3, 2).is_err());
    }
}
