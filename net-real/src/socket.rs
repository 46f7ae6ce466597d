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
        set_buffers(&s, config).map_err(bind_error)?;
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
    set_buffers(&s, config)?;
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
    set_buffers(&SockRef::from(stream), config)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
}

fn set_buffers(s: &Socket, config: &Config) -> io::Result<()> {
    if let Some(bytes) = config.send_buffer {
        s.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = config.recv_buffer {
        s.set_recv_buffer_size(bytes)?;
    }
    Ok(())
}
