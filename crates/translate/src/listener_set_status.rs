//! The status of a ListenerSet whose parent is one of our Gateways.
//!
//! Conditions: Accepted (Accepted, ListenersNotValid, NotAllowed, ParentNotAccepted) and
//! Programmed (Programmed, ListenersNotValid, NotAllowed, ParentNotAccepted, Invalid),
//! then one entry per listener with the same conditions as a Gateway listener. A
//! ListenerSet is accepted when it is attached and at least one of its listeners is
//! valid, like a Gateway with its own listeners.

use std::collections::BTreeMap;

use portico_api::names::{condition, reason};

use crate::gateway::GatewayPlan;
use crate::gateway_status::listener_status;
use crate::listener::ListenerPlan;
use crate::listener_set::ListenerSetPlan;
use crate::status::{Condition, ListenerSetStatus};

impl GatewayPlan<'_> {
    /// The status of `child`, one of this Gateway's ListenerSets; `attached` holds the
    /// attachedRoutes count per listener (by [`ListenerPlan::name`]).
    pub(crate) fn listener_set_status(
        &self,
        child: &ListenerSetPlan,
        attached: &BTreeMap<String, i32>,
    ) -> ListenerSetStatus {
        let generation = child.generation;
        if let Some((why, message)) = &child.rejected {
            return ListenerSetStatus {
                conditions: vec![
                    Condition::new(condition::ACCEPTED, false, why, message.clone(), generation),
                    Condition::new(
                        condition::PROGRAMMED,
                        false,
                        why,
                        message.clone(),
                        generation,
                    ),
                ],
                listeners: Vec::new(),
            };
        }

        let origin = child.origin();
        let listeners: Vec<&ListenerPlan> = self.listeners_of(&origin).collect();
        let invalid: Vec<&str> = listeners
            .iter()
            .filter(|l| !l.is_valid())
            .map(|l| l.section_name.as_str())
            .chain(child.duplicate_names.iter().map(String::as_str))
            .collect();
        let valid_count = listeners.iter().filter(|l| l.is_valid()).count();
        let not_valid = || {
            format!(
                "invalid listeners: {}; {valid_count} valid listener(s)",
                invalid.join(", ")
            )
        };

        let accepted = if invalid.is_empty() {
            Condition::new(
                condition::ACCEPTED,
                true,
                reason::ACCEPTED,
                format!("listeners attached to Gateway {}", self.key),
                generation,
            )
        } else {
            Condition::new(
                condition::ACCEPTED,
                valid_count > 0,
                reason::LISTENERS_NOT_VALID,
                not_valid(),
                generation,
            )
        };
        let programmed = if valid_count == 0 {
            Condition::new(
                condition::PROGRAMMED,
                false,
                reason::LISTENERS_NOT_VALID,
                not_valid(),
                generation,
            )
        } else if self.is_programmed() {
            Condition::new(
                condition::PROGRAMMED,
                true,
                reason::PROGRAMMED,
                format!("{valid_count} listener(s) programmed"),
                generation,
            )
        } else {
            Condition::new(
                condition::PROGRAMMED,
                false,
                reason::INVALID,
                format!("Gateway {} is not programmed", self.key),
                generation,
            )
        };
        ListenerSetStatus {
            conditions: vec![accepted, programmed],
            listeners: listeners
                .iter()
                .map(|l| {
                    listener_status(
                        l,
                        self.is_programmed(),
                        generation,
                        attached.get(&l.name).copied().unwrap_or(0),
                    )
                })
                .collect(),
        }
    }
}
