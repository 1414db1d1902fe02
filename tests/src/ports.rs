//! Free loopback ports, chosen by the kernel: bind 127.0.0.1:0, read the port, let go.
//!
//! Never a fixed port: tests run in parallel with each other and with other projects.

use std::net::{SocketAddr, TcpListener};

/// A port on 127.0.0.1 that was free a moment ago (the kernel's choice).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_free_port_can_be_bound() {
        let port = super::free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }
}
