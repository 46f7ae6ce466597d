//! Socket set-up: listeners that share a port, dials, per-socket options.

use std::io;
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::config::Config;
use crate::error::NetError;
use crate::limits::LISTEN_BACKLOG;

/// `count` listeners on one address, each with `SO_REUSEPORT` so the kernel
/// spreads new connections over the workers. Port 0 is resolved once so all
/// share the port. Returns them with the bound address.
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    config: &Config,
) -> Result<(Vec<TcpListener>, SocketAddr), NetError> {
    let bind_error = |source| NetError::Bind { addr, source };
    // SO_REUSEPORT would let us join another process's group on the same
    // port and silently split its traffic. A probe bound without it fails
    // if anybody listens there, and resolves port 0.
    let probe = new_socket(addr).map_err(bind_error)?;
    probe.set_reuse_address(true).map_err(bind_error)?;
    probe.bind(&addr.into()).map_err(bind_error)?;
    let port = probe
        .local_addr()
        .map_err(bind_error)?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| bind_error(io::Error::other("not an IP socket")))?;
    drop(probe);
    let bound = SocketAddr::new(addr.ip(), port);
    let bind_error = |source| NetError::Bind {
        addr: bound,
        source,
    };
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let s = new_socket(bound).map_err(bind_error)?;
        s.set_reuse_address(true).map_err(bind_error)?;
        s.set_reuse_port(true).map_err(bind_error)?;
        s.set_nonblocking(true).map_err(bind_error)?;
        // Accepted sockets inherit these; they are set again per socket.
        s.set_tcp_nodelay(true).map_err(bind_error)?;
        set_options(&s, config).map_err(bind_error)?;
        s.bind(&bound.into()).map_err(bind_error)?;
        s.listen(LISTEN_BACKLOG).map_err(bind_error)?;
        listeners.push(TcpListener::from_std(s.into()));
    }
    Ok((listeners, bound))
}

/// Starts a nonblocking connect to `addr`; completion is reported as
/// `WRITABLE`.
pub(crate) fn dial(addr: SocketAddr, config: &Config) -> io::Result<TcpStream> {
    let s = new_socket(addr)?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    // Before connect, so the window scale matches a small receive buffer.
    set_options(&s, config)?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(s.into()))
}

/// Options of an accepted socket.
pub(crate) fn configure_stream(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nodelay(true)?;
    set_options(&SockRef::from(stream), config)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
}

/// The per-socket options of [`Config`]: buffer sizes and the congestion
/// control algorithm.
fn set_options(s: &Socket, config: &Config) -> io::Result<()> {
    if let Some(bytes) = config.send_buffer {
        s.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = config.recv_buffer {
        s.set_recv_buffer_size(bytes)?;
    }
    if let Some(name) = &config.tcp_congestion {
        s.set_tcp_congestion(name.as_bytes())?;
    }
    Ok(())
}

/// Whether this process may use TCP congestion control `name` on its
/// sockets: sets it on a socket that is never connected. The kernel says
/// `ENOENT` for a name it does not know and `EPERM` for one an
/// unprivileged process may not choose. [`crate::start`] checks
/// [`Config::tcp_congestion`] with it; other processes (fepbench, the tokio
/// proxy) check theirs before they start anything.
pub fn check_congestion(name: &str) -> io::Result<()> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_tcp_congestion(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(s: &Socket) -> Vec<u8> {
        let mut name = s.tcp_congestion().expect("TCP_CONGESTION reads back");
        // The kernel pads the name with NULs to its buffer's size.
        name.retain(|&b| b != 0);
        name
    }

    #[test]
    fn a_configured_congestion_control_is_set_on_the_socket() {
        // `reno` is built into every Linux kernel and always allowed.
        let config = Config::new().tcp_congestion(Some("reno".to_owned()));
        let s = new_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        set_options(&s, &config).unwrap();
        assert_eq!(name_of(&s), b"reno");
        let plain = new_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        set_options(&plain, &Config::new()).unwrap();
        assert_ne!(name_of(&plain), b"", "the system's default stays");
    }

    #[test]
    fn an_unknown_congestion_control_is_refused() {
        assert!(check_congestion("reno").is_ok());
        let e = check_congestion("no-such-cc").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    }
}
