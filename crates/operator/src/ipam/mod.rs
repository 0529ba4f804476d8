//! LB-IPAM: addresses from `LoadBalancerIPPool`s for LoadBalancer Services that no other
//! implementation serves (`loadBalancerClass` unset or `portico.dev/lb`).
//!
//! ```text
//!   LoadBalancerIPPool ──> pool::Pool (blocks as ranges, selector, disabled, problem)
//!   Service (LoadBalancer, ours) ──> request::Request (requested IPs, family, current)
//!                     │
//!                     ▼ plan::plan (pure: same inputs, same answer)
//!   Service ns/name ──> Assigned([ip..]) | NotAssigned(why)     pool ──> total, used
//!                     │
//!                     ▼ controller::run (leader only)
//!   status.loadBalancer.ingress, Events on the Service, pool status
//! ```
//!
//! A Gateway's Service asks for the Gateway's `spec.addresses` through the
//! `portico.dev/lb-ipam-ips` annotation (see [`crate::service`]); when LB-IPAM cannot
//! serve it, the Service shows no ingress and the translator reports the Gateway
//! `Programmed=False` with reason AddressNotAssigned.

pub mod controller;
pub mod plan;
pub mod pool;
pub mod request;

pub use controller::{IpamConfig, IpamCounters, run};
pub use plan::{Assignment, Plan, PoolUsage, plan};
pub use pool::Pool;
pub use request::{Request, is_ours};
