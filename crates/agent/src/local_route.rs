//! `local` routes over rtnetlink, without iproute2: the agent's image is `FROM scratch`,
//! so there is no `ip` binary to run.
//!
//! One request per change, as `ip route replace local <ip>/32 dev lo` sends it:
//!
//! ```text
//!   nlmsghdr  RTM_NEWROUTE | RTM_DELROUTE, REQUEST|ACK (+CREATE|REPLACE for new)
//!   rtmsg     AF_INET, dst_len 32, table local, scope host, type local
//!   RTA_DST   the address       RTA_OIF   lo's ifindex       RTA_TABLE  local
//! ```
//!
//! and the kernel's answer is an `NLMSG_ERROR` whose error field is 0 (done) or a
//! negative errno. A route in another network namespace is changed from a short-lived
//! thread that enters the namespace first: a netlink socket belongs to the namespace it
//! was opened in, and only that thread ever leaves the agent's own namespace.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
const RT_TABLE_LOCAL: u8 = 255;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_HOST: u8 = 254;
/// Deletes match a route of any scope, as iproute2's do.
const RT_SCOPE_NOWHERE: u8 = 255;
const RTN_LOCAL: u8 = 2;
const NLMSG_HEADER_LEN: usize = 16;

/// A change to the `local` route of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Create the route, or replace one to the same destination.
    Replace,
    Delete,
}

/// Why the kernel did not make a change.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetlinkError {
    #[error("entering network namespace {path}: {source}")]
    Netns { path: String, source: io::Error },
    #[error("{what}: {source}")]
    Socket { what: &'static str, source: Errno },
    #[error("the kernel answered: {0}")]
    Kernel(Errno),
    #[error("malformed netlink answer ({0} bytes)")]
    Malformed(usize),
    #[error("the namespace thread panicked")]
    Thread,
}

impl NetlinkError {
    /// The route to delete was not there.
    pub(crate) fn is_missing(&self) -> bool {
        matches!(self, NetlinkError::Kernel(Errno::ESRCH))
    }
}

/// Applies `change` for `<ip>/32 dev lo` in the network namespace at `netns`
/// (`/run/netns/<name>`), or in this process's own when `None`.
pub(crate) fn change_local_route(
    netns: Option<&Path>,
    change: Change,
    ip: Ipv4Addr,
) -> Result<(), NetlinkError> {
    let Some(path) = netns else {
        return send_change(change, ip);
    };
    let path = path.to_path_buf();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let netns_error = |source| NetlinkError::Netns {
                    path: path.display().to_string(),
                    source,
                };
                let file = File::open(&path).map_err(netns_error)?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| netns_error(e.into()))?;
                send_change(change, ip)
            })
            .join()
            .map_err(|_| NetlinkError::Thread)?
    })
}

fn send_change(change: Change, ip: Ipv4Addr) -> Result<(), NetlinkError> {
    let socket_error = |what| move |source| NetlinkError::Socket { what, source };
    let lo = nix::net::if_::if_nametoindex("lo").map_err(socket_error("finding lo"))?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(socket_error("opening a netlink socket"))?;
    let request = encode(change, ip, lo, 1);
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(socket_error("sending to netlink"))?;
    let mut answer = [0u8; 4096];
    let n = recv(fd.as_raw_fd(), &mut answer, MsgFlags::empty())
        .map_err(socket_error("reading from netlink"))?;
    decode_ack(&answer[..n])
}

/// The request message for `change`; `lo` is the loopback device's ifindex.
fn encode(change: Change, ip: Ipv4Addr, lo: u32, seq: u32) -> Vec<u8> {
    let (kind, flags, scope) = match change {
        Change::Replace => (
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            RT_SCOPE_HOST,
        ),
        Change::Delete => (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, RT_SCOPE_NOWHERE),
    };
    let mut body = vec![
        nix::libc::AF_INET as u8,
        32, // dst_len
        0,  // src_len
        0,  // tos
        RT_TABLE_LOCAL,
        RTPROT_BOOT,
        scope,
        RTN_LOCAL,
    ];
    body.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    attribute(&mut body, RTA_DST, &ip.octets());
    attribute(&mut body, RTA_OIF, &lo.to_ne_bytes());
    attribute(
        &mut body,
        RTA_TABLE,
        &u32::from(RT_TABLE_LOCAL).to_ne_bytes(),
    );

    let len = u32::try_from(NLMSG_HEADER_LEN + body.len()).unwrap_or(u32::MAX);
    let mut message = Vec::with_capacity(NLMSG_HEADER_LEN + body.len());
    message.extend_from_slice(&len.to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&seq.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    message.extend_from_slice(&body);
    message
}

/// Appends a route attribute (4-byte header, value padded to 4 bytes).
fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Reads the kernel's acknowledgement: an `NLMSG_ERROR` carrying 0 or `-errno`.
fn decode_ack(answer: &[u8]) -> Result<(), NetlinkError> {
    let malformed = || NetlinkError::Malformed(answer.len());
    let field = |at: usize, len: usize| answer.get(at..at + len).ok_or_else(malformed);
    let kind = u16::from_ne_bytes(field(4, 2)?.try_into().map_err(|_| malformed())?);
    if kind != NLMSG_ERROR {
        return Err(malformed());
    }
    let error = i32::from_ne_bytes(
        field(NLMSG_HEADER_LEN, 4)?
            .try_into()
            .map_err(|_| malformed())?,
    );
    match error {
        0 => Ok(()),
        e => Err(NetlinkError::Kernel(Errno::from_raw(-e))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_replace_request_is_laid_out_as_iproute2_sends_it() {
        let message = encode(Change::Replace, Ipv4Addr::new(10, 1, 2, 3), 1, 7);
        // 16 header + 12 rtmsg + 3 attributes of 8 bytes.
        assert_eq!(message.len(), 52);
        assert_eq!(u32::from_ne_bytes(message[0..4].try_into().unwrap()), 52);
        assert_eq!(
            u16::from_ne_bytes(message[4..6].try_into().unwrap()),
            RTM_NEWROUTE
        );
        assert_eq!(
            u16::from_ne_bytes(message[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        assert_eq!(u32::from_ne_bytes(message[8..12].try_into().unwrap()), 7);
        assert_eq!(
            &message[16..24],
            &[
                2,
                32,
                0,
                0,
                RT_TABLE_LOCAL,
                RTPROT_BOOT,
                RT_SCOPE_HOST,
                RTN_LOCAL
            ]
        );
        // RTA_DST carries the address in network order.
        assert_eq!(&message[28..36], &[8, 0, 1, 0, 10, 1, 2, 3]);
    }

    #[test]
    fn acknowledgements_and_errors_are_told_apart() {
        let ack = |error: i32| {
            let mut answer = vec![0u8; 36];
            answer[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
            answer[16..20].copy_from_slice(&error.to_ne_bytes());
            answer
        };
        assert!(decode_ack(&ack(0)).is_ok());
        let missing = decode_ack(&ack(-nix::libc::ESRCH)).unwrap_err();
        assert!(missing.is_missing(), "{missing}");
        assert!(matches!(
            decode_ack(&ack(-nix::libc::EPERM)),
            Err(NetlinkError::Kernel(Errno::EPERM))
        ));
        assert!(matches!(
            decode_ack(&[0u8; 3]),
            Err(NetlinkError::Malformed(3))
        ));
    }
}
