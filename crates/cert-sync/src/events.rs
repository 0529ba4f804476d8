//! Events on Gateways (`events.k8s.io/v1`), written directly rather than through
//! `kube::runtime::events::Recorder`: the Recorder folds every Event with the same
//! reason about the same object into one series that keeps the first note, so "Secret
//! a does not exist" would hide a later "Secret a: key does not match" and any problem of
//! Secret b. cert-sync publishes an Event only when a problem is new or changed (see
//! [`crate::sync`]), so there is no flood to fold.

use std::time::Duration;

use kube::api::PostParams;
use kube::{Api, Client, Resource};
use portico_api::gateway::Gateway;
use portico_api::k8s::ObjectMeta;
use portico_api::k8s_openapi::api::core::v1::ObjectReference;
use portico_api::k8s_openapi::api::events::v1::Event;
use portico_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use portico_api::k8s_openapi::jiff::Timestamp;
use portico_api::names;
use portico_translate::ObjectRef;

/// How long one Event write may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The API server refuses notes longer than this (bytes).
const MAX_NOTE: usize = 1024;

/// Publishes Warning Events as cert-sync.
#[derive(Clone)]
pub struct EventWriter {
    client: Client,
    /// This replica, as `reportingInstance`.
    instance: String,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl EventWriter {
    pub fn new(client: Client, instance: String) -> Self {
        Self { client, instance }
    }

    /// A Warning Event about `gateway`, with `secret` as the related object.
    pub async fn warn(
        &self,
        gateway: &Gateway,
        secret: &ObjectRef,
        reason: &str,
        note: &str,
    ) -> Result<(), String> {
        let regarding = gateway.object_ref(&());
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding
                        .name
                        .as_deref()
                        .unwrap_or(names::CERT_SYNC_MANAGER),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some("Warning".to_owned()),
            reason: Some(reason.to_owned()),
            action: Some("SyncCertificate".to_owned()),
            note: Some(truncate(note, MAX_NOTE)),
            regarding: Some(regarding),
            related: Some(ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some(names::kind::SECRET.to_owned()),
                namespace: Some(secret.namespace.clone()),
                name: Some(secret.name.clone()),
                ..Default::default()
            }),
            reporting_controller: Some(names::CERT_SYNC_MANAGER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match tokio::time::timeout(TIMEOUT, api.create(&PostParams::default(), &event)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_a_char_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
