//! The `portico` command line, as a library so that tests drive it without a shell.
//!
//! Each subcommand is a module with a config struct and a `run`/`start` function;
//! `main.rs` only parses flags and calls them.

pub mod check_split;
pub mod config_view;
pub mod conformance;
pub mod connectivity;
pub mod dev_cluster;
pub mod lb;
pub mod standalone;
pub mod status;
