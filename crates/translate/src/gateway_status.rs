//! The status of a planned Gateway and of each of its own listeners.
//!
//! Gateway conditions: Accepted (Accepted, ListenersNotValid, UnsupportedAddress,
//! InvalidParameters, Invalid) and Programmed (Programmed, Invalid, AddressNotUsable,
//! AddressNotAssigned).
//! Listener conditions, in this order: Accepted, Programmed, ResolvedRefs
//! (InvalidRouteKinds) and Conflicted (ProtocolConflict, HostnameConflict). Every
//! condition carries the `observedGeneration` of the object that declares it.
//!
//! The Gateway's status covers its own listeners only; the listeners a ListenerSet
//! contributes are reported in the ListenerSet's status ([`crate::listener_set_status`]).

use std::collections::BTreeMap;

use portico_api::names::{condition, reason};

use crate::gateway::{AddressProblem, GatewayPlan, GatewayProblem, IP_ADDRESS};
use crate::listener::{ListenerPlan, Origin};
use crate::selector::AllowedNamespaces;
use crate::status::{Condition, GatewayStatus, GatewayStatusAddress, ListenerStatus};

impl GatewayPlan<'_> {
    /// The Gateway's status; `attached` holds the attachedRoutes count per listener (by
    /// [`ListenerPlan::name`]).
    pub(crate) fn status(&self, attached: &BTreeMap<String, i32>) -> GatewayStatus {
        let generation = self.generation;
        let own: Vec<&ListenerPlan> = self.listeners_of(&Origin::Gateway).collect();
        let invalid: Vec<&str> = own
            .iter()
            .filter(|l| !l.is_valid())
            .map(|l| l.section_name.as_str())
            .chain(self.duplicate_names.iter().map(String::as_str))
            .collect();
        let valid_count = own.iter().filter(|l| l.is_valid()).count();

        let accepted = match (&self.problem, &self.address_problem) {
            (Some(GatewayProblem::ClassNotAccepted(message)), _) => Condition::new(
                condition::ACCEPTED,
                false,
                reason::INVALID,
                message.clone(),
                generation,
            ),
            (Some(GatewayProblem::InvalidParameters(message)), _) => Condition::new(
                condition::ACCEPTED,
                false,
                reason::INVALID_PARAMETERS,
                message.clone(),
                generation,
            ),
            (None, Some(AddressProblem::Unsupported(message))) => Condition::new(
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
        } else if let Some(AddressProblem::NotUsable(message)) = &self.address_problem {
            Condition::new(
                condition::PROGRAMMED,
                false,
                reason::ADDRESS_NOT_USABLE,
                message.clone(),
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
            self.status_addresses
                .iter()
                .map(|ip| GatewayStatusAddress {
                    type_: IP_ADDRESS.to_owned(),
                    value: ip.to_string(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let listeners = own
            .iter()
            .map(|l| {
                listener_status(
                    l,
                    self.is_programmed(),
                    generation,
                    attached.get(&l.name).copied().unwrap_or(0),
                )
            })
            .collect();
        GatewayStatus {
            addresses,
            attached_listener_sets: (self.allowed_listeners != AllowedNamespaces::None)
                .then(|| self.attached_listener_sets()),
            conditions: vec![accepted, programmed],
            listeners,
        }
    }
}

/// The status of one listener, the Gateway's or a ListenerSet's. `parent_programmed`:
/// whether the object it belongs to is programmed, so that its valid listeners are.
///
/// A conflict is reported first: a listener that cannot be told apart from another is not
/// accepted whatever else is wrong with it, and the upstream conformance tests expect the
/// conflict reason on Accepted and Programmed alike.
pub(crate) fn listener_status(
    listener: &ListenerPlan,
    parent_programmed: bool,
    generation: Option<i64>,
    attached_routes: i32,
) -> ListenerStatus {
    let accepted = if let Some(conflict) = &listener.conflict {
        Condition::new(
            condition::ACCEPTED,
            false,
            conflict.reason,
            conflict.message.clone(),
            generation,
        )
    } else if listener.unsupported_protocol {
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
    } else {
        Condition::new(
            condition::ACCEPTED,
            true,
            reason::ACCEPTED,
            "listener is accepted",
            generation,
        )
    };
    let programmed = match &listener.conflict {
        _ if listener.is_valid() && parent_programmed => Condition::new(
            condition::PROGRAMMED,
            true,
            reason::PROGRAMMED,
            "listener is programmed",
            generation,
        ),
        Some(conflict) => Condition::new(
            condition::PROGRAMMED,
            false,
            conflict.reason,
            conflict.message.clone(),
            generation,
        ),
        None => Condition::new(
            condition::PROGRAMMED,
            false,
            reason::INVALID,
            if listener.is_valid() {
                "the Gateway is not programmed"
            } else {
                "the listener is not valid"
            },
            generation,
        ),
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
        name: listener.section_name.clone(),
        supported_kinds: listener.supported_kinds.clone(),
        attached_routes,
        conditions: vec![accepted, programmed, resolved_refs, conflicted],
    }
}
