//! `portico-agent probe`: dials an address the way an application would and reports what
//! the socket load balancer did — which address `getpeername` shows and which backend
//! answered (backends that greet with their name, like the tests' and `portico-echo`'s
//! line mode). A diagnostic for operators, and the client of the privileged tests.
//!
//! Output, one line per attempt:
//! ```text
//!   ok peer=<address getpeername or recvfrom reports> reply=<first line of the reply>
//!   error kind=<io::ErrorKind> os=<errno>
//!   echo <line>            (--hold: each stdin line sent, and the reply read back)
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use crate::service::Protocol;

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    /// Attempts, each on a new socket.
    pub count: u32,
    /// UDP: datagrams sent on each socket (to see that a socket sticks to one backend).
    pub per_socket: u32,
    /// TCP: after the first attempt, keep the connection and echo stdin lines over it.
    pub hold: bool,
    pub timeout: Duration,
}

/// Runs the probe, writing its report to `out` and reading `--hold` lines from `input`.
pub fn run(cfg: &ProbeConfig, input: impl BufRead, mut out: impl Write) -> io::Result<()> {
    match cfg.protocol {
        Protocol::Tcp => tcp(cfg, input, &mut out),
        Protocol::Udp => udp(cfg, &mut out),
    }
}

fn report_error(out: &mut impl Write, e: &io::Error) -> io::Result<()> {
    writeln!(
        out,
        "error kind={:?} os={}",
        e.kind(),
        e.raw_os_error().unwrap_or(0)
    )?;
    out.flush()
}

fn tcp(cfg: &ProbeConfig, input: impl BufRead, out: &mut impl Write) -> io::Result<()> {
    for _ in 0..cfg.count {
        let stream = match TcpStream::connect_timeout(&cfg.addr, cfg.timeout) {
            Ok(s) => s,
            Err(e) => {
                report_error(out, &e)?;
                continue;
            }
        };
        stream.set_read_timeout(Some(cfg.timeout))?;
        let peer = stream.peer_addr()?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut greeting = String::new();
        if let Err(e) = reader.read_line(&mut greeting) {
            report_error(out, &e)?;
            continue;
        }
        writeln!(out, "ok peer={peer} reply={}", greeting.trim_end())?;
        out.flush()?;
        if cfg.hold {
            return hold(stream, reader, input, out);
        }
    }
    Ok(())
}

/// Sends each input line over `stream` and reports the reply, until input ends.
fn hold(
    mut stream: TcpStream,
    mut reader: BufReader<TcpStream>,
    input: impl BufRead,
    out: &mut impl Write,
) -> io::Result<()> {
    for line in input.lines() {
        let line = line?;
        stream.write_all(format!("{line}\n").as_bytes())?;
        let mut reply = String::new();
        match reader.read_line(&mut reply) {
            Ok(0) => writeln!(out, "error kind=UnexpectedEof os=0")?,
            Ok(_) => writeln!(out, "echo {}", reply.trim_end())?,
            Err(e) => report_error(out, &e)?,
        }
        out.flush()?;
    }
    Ok(())
}

fn udp(cfg: &ProbeConfig, out: &mut impl Write) -> io::Result<()> {
    let bind: SocketAddr = if cfg.addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    for _ in 0..cfg.count {
        // Unconnected on purpose: every datagram goes through sendmsg4 and every reply
        // through recvmsg4.
        let socket = UdpSocket::bind(bind)?;
        socket.set_read_timeout(Some(cfg.timeout))?;
        for _ in 0..cfg.per_socket.max(1) {
            if let Err(e) = socket.send_to(b"probe\n", cfg.addr) {
                report_error(out, &e)?;
                continue;
            }
            let mut buf = [0u8; 512];
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let reply = String::from_utf8_lossy(&buf[..n]);
                    writeln!(out, "ok peer={from} reply={}", reply.trim_end())?;
                }
                Err(e) => report_error(out, &e)?,
            }
            out.flush()?;
        }
    }
    Ok(())
}
