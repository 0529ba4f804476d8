//! The BPF object built by `build.rs` from `bpf/sock_lb.c`, and its programs.

/// The compiled object, aligned as aya's ELF parser needs it.
pub(crate) static SOCK_LB: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_lb.o"));

/// The cgroup sock_addr programs, in the order they are attached.
pub(crate) const PROGRAMS: &[&str] = &[
    "portico_connect4",
    "portico_sendmsg4",
    "portico_recvmsg4",
    "portico_getpeername4",
];
