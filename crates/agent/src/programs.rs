//! The BPF objects built by `build.rs` from `bpf/*.c`, and their programs.

/// The socket load balancer (`bpf/sock_lb.c`), aligned as aya's ELF parser needs it.
pub(crate) static SOCK_LB: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_lb.o"));

/// The cgroup sock_addr programs, in the order they are attached.
pub(crate) const PROGRAMS: &[&str] = &[
    "portico_connect4",
    "portico_sendmsg4",
    "portico_recvmsg4",
    "portico_getpeername4",
];

/// Gateway steering (`bpf/steer.c`).
pub(crate) static STEER: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.o"));

/// Its sk_lookup program.
pub(crate) const STEER_PROGRAM: &str = "portico_steer";

/// NodePort and LoadBalancer translation (`bpf/nodeport.c`).
pub(crate) static NODEPORT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nodeport.o"));

/// Its tc programs: DNAT on ingress, reverse NAT on egress.
pub(crate) const NODEPORT_INGRESS: &str = "portico_nodeport_in";
pub(crate) const NODEPORT_EGRESS: &str = "portico_nodeport_out";

/// L2 announcements (`bpf/l2.c`).
pub(crate) static L2: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/l2.o"));

/// Its XDP program.
pub(crate) const L2_PROGRAM: &str = "portico_l2_arp";
