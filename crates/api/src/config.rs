//! The data-plane config model, generated from `proto/portico/config/v1/config.proto`.
//!
//! See the proto file for the shape of the tree. `stream.proto` adds the config stream
//! between operator and proxies (`ProxyMessage`, `ConfigPush`); with the `grpc` feature,
//! its tonic client (`v1::config_discovery_client`) and server
//! (`v1::config_discovery_server`) too.
//!
//! Messages serialize to JSON/YAML in the protobuf JSON mapping (camelCase fields, enum
//! names as strings, defaults omitted).

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    missing_debug_implementations
)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/portico.config.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/portico.config.v1.serde.rs"));
}
