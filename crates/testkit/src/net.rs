use std::net::{Ipv4Addr, TcpListener};

/// A TCP port on 127.0.0.1 that was free when this returned: bound to port 0, read back,
/// released. Another process may take it before the caller binds it, so prefer handing
/// `127.0.0.1:0` to the code under test and reading the bound address back; use this only
/// for programs that cannot report the port they bound.
///
/// Panics when the loopback interface refuses to bind at all: no test could run then.
pub fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(error) => panic!("cannot bind 127.0.0.1:0 to find a free port: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        // Another test may grab it in between; only a refusal other than "in use" is a bug.
        if let Err(error) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
        }
    }
}
