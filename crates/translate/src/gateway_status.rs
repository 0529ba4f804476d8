//! The status of a planned Gateway and of each of its listeners.
//!
//! Gateway conditions: Accepted (Accepted, ListenersNotValid, UnsupportedAddress) and
//! Programmed (Programmed, Invalid, AddressNotAssigned). Listener conditions, in this
//! order: Accepted, Programmed, ResolvedRefs (InvalidRouteKinds) and Conflicted
//! (ProtocolConflict, HostnameConflict).

use std::collections::BTreeMap;

use portico_api::names::{condition, reason};

use crate::gateway::{AddressProblem, GatewayPlan, IP_ADDRESS, ListenerPlan};
use crate::status::{Condition, GatewayStatus, GatewayStatusAddress, ListenerStatus};

impl GatewayPlan<'_> {
    /// The Gateway's status; `attached` holds the attachedRoutes count per listener name.
    pub(crate) fn status(&self, attached: &BTreeMap<String, i32>) -> GatewayStatus {
        let generation = self.generation;
        let invalid: Vec<&str> = self
            .listeners
            .iter()
            .filter(|l| !l.is_valid())
            .map(|l| l.name.as_str())
            .chain(self.duplicate_names.iter().map(String::as_str))
            .collect();
        let valid_count = self.listeners.iter().filter(|l| l.is_valid()).count();

        let accepted = match &self.address_problem {
            Some(AddressProblem::Unsupported(message)) => Condition::new(
                condition::ACCEPTED,
                false,
                reason::UNSUPPORTED_ADDRESS,
                message.clone(),
                generation,
            ),
            _ if invalid.is_empty() => Condition::new(
                condition::ACCEPTED,
                true,
                reason::ACCEPTED,
                "Gateway is accepted",
                generation,
            ),
            // Gateway API: "ListenersNotValid [...] This can be the reason when "Accepted"
            // is "True" or "False", depending on whether the listener being invalid causes
            // the entire Gateway to not be accepted."
            _ => Condition::new(
                condition::ACCEPTED,
                valid_count > 0,
                reason::LISTENERS_NOT_VALID,
                format!(
                    "invalid listeners: {}; {valid_count} valid listener(s)",
                    invalid.join(", ")
                ),
                generation,
            ),
        };
        let programmed = if !self.accepted() {
            Condition::new(
                condition::PROGRAMMED,
                false,
                reason::INVALID,
                "Gateway is not accepted",
                generation,
            )
        } else if let Some(AddressProblem::NotAssigned(message)) = &self.address_problem {
            Condition::new(
                condition::PROGRAMMED,
                false,
                reason::ADDRESS_NOT_ASSIGNED,
                message.clone(),
                generation,
            )
        } else {
            Condition::new(
                condition::PROGRAMMED,
                true,
                reason::PROGRAMMED,
                format!("{valid_count} listener(s) programmed"),
                generation,
            )
        };

        let addresses = if self.is_programmed() {
            self.addresses
                .iter()
                .map(|ip| GatewayStatusAddress {
                    type_: IP_ADDRESS.to_owned(),
                    value: ip.to_string(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let listeners = self
            .listeners
            .iter()
            .map(|l| self.listener_status(l, attached.get(&l.name).copied().unwrap_or(0)))
            .collect();
        GatewayStatus {
            addresses,
            conditions: vec![accepted, programmed],
            listeners,
        }
    }

    fn listener_status(&self, listener: &ListenerPlan, attached_routes: i32) -> ListenerStatus {
        let generation = self.generation;
        let accepted = if listener.unsupported_protocol {
            Condition::new(
                condition::ACCEPTED,
                false,
                reason::UNSUPPORTED_PROTOCOL,
                format!("protocol {:?} is not supported", listener.protocol),
                generation,
            )
        } else if listener.invalid_port {
            Condition::new(
                condition::ACCEPTED,
                false,
                reason::INVALID,
                "port must be between 1 and 65535",
                generation,
            )
        } else if let Some(conflict) = &listener.conflict {
            Condition::new(
                condition::ACCEPTED,
                false,
                conflict.reason,
                conflict.message.clone(),
                generation,
            )
        } else {
            Condition::new(
                condition::ACCEPTED,
                true,
                reason::ACCEPTED,
                "listener is accepted",
                generation,
            )
        };
        let programmed = if listener.is_valid() && self.is_programmed() {
            Condition::new(
                condition::PROGRAMMED,
                true,
                reason::PROGRAMMED,
                "listener is programmed",
                generation,
            )
        } else {
            let why = if listener.is_valid() {
                "the Gateway is not programmed"
            } else {
                "the listener is not valid"
            };
            Condition::new(
                condition::PROGRAMMED,
                false,
                reason::INVALID,
                why,
                generation,
            )
        };
        let resolved_refs = if listener.invalid_kinds.is_empty() {
            Condition::new(
                condition::RESOLVED_REFS,
                true,
                reason::RESOLVED_REFS,
                "all references are resolved",
                generation,
            )
        } else {
            Condition::new(
                condition::RESOLVED_REFS,
                false,
                reason::INVALID_ROUTE_KINDS,
                format!(
                    "route kinds not supported on protocol {}: {}",
                    listener.protocol,
                    listener.invalid_kinds.join(", ")
                ),
                generation,
            )
        };
        let conflicted = match &listener.conflict {
            Some(conflict) => Condition::new(
                condition::CONFLICTED,
                true,
                conflict.reason,
                conflict.message.clone(),
                generation,
            ),
            None => Condition::new(
                condition::CONFLICTED,
                false,
                reason::NO_CONFLICTS,
                "no conflicts",
                generation,
            ),
        };
        ListenerStatus {
            name: listener.name.clone(),
            supported_kinds: listener.supported_kinds.clone(),
            attached_routes,
            conditions: vec![accepted, programmed, resolved_refs, conflicted],
        }
    }
}
