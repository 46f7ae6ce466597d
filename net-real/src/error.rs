//! The errors of the real backend: what stops a process from starting or a
//! worker from finishing. Each displays as one line a script can show as is.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why the driver could not start or did not finish cleanly.
#[derive(Debug)]
#[non_exhaustive]
pub enum NetError {
    /// The configuration is inconsistent (zero workers, too many, ...).
    Config {
        /// What is wrong, in words.
        what: String,
    },
    /// A listening socket could not be created, bound or set up.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
    /// A worker cannot be pinned to `core`: it does not exist here or the
    /// process may not run on it.
    Pin {
        /// The CPU asked for.
        core: usize,
        /// The CPUs this process may use.
        available: Vec<usize>,
    },
    /// An OS resource of the event loop (epoll, eventfd, thread) failed.
    Io {
        /// What was being done.
        context: &'static str,
        /// The system's reason.
        source: io::Error,
    },
    /// A worker thread panicked: a bug, never the peer's fault.
    WorkerPanicked {
        /// The worker's index.
        worker: usize,
    },
    /// The write-ahead log could not start.
    Wal(crate::wal::WalError),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Config { what } => write!(f, "invalid configuration: {what}"),
            NetError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            NetError::Pin { core, available } => {
                write!(
                    f,
                    "cannot pin a worker to CPU {core}: this process may use CPUs "
                )?;
                write_cpu_list(f, available)
            }
            NetError::Io { context, source } => write!(f, "{context}: {source}"),
            NetError::WorkerPanicked { worker } => write!(f, "worker {worker} panicked"),
            NetError::Wal(e) => write!(f, "{e}"),
        }
    }
}

fn write_cpu_list(f: &mut fmt::Formatter<'_>, cpus: &[usize]) -> fmt::Result {
    if cpus.is_empty() {
        return f.write_str("(none reported)");
    }
    for (i, cpu) in cpus.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{cpu}")?;
    }
    Ok(())
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Bind { source, .. } | NetError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_as_one_line() {
        let e = NetError::Pin {
            core: 7,
            available: vec![0, 1],
        };
        assert_eq!(
            e.to_string(),
            "cannot pin a worker to CPU 7: this process may use CPUs 0,1"
        );
        let e = NetError::Bind {
            addr: "127.0.0.1:9000".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert!(e
            .to_string()
            .starts_with("cannot listen on 127.0.0.1:9000: "));
        assert!(!e.to_string().contains('\n'));
    }
}
