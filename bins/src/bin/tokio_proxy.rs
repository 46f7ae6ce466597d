//! `tokio_proxy`: the baseline `fepbench baseline` measures fep_gateway
//! against: what a typical Rust user would write instead of a gateway, a
//! TCP relay with `tokio::io::copy_bidirectional` per client connection.
//!
//! One upstream connection per client (it relays bytes; it does not speak
//! the protocol), `TCP_NODELAY` on both sides, a current-thread runtime (the
//! same one-thread budget as a one-worker gateway). Prints `ready <addr>`
//! once it listens; SIGINT/SIGTERM end it with exit code 0.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use fep_bins::cli::{warn_short_open_files, watch_lifeline};
use fep_bins::limits::{raise_nofile, NofileGoal, SERVER_CONNECTIONS_PLANNED};
use tokio::net::{TcpListener, TcpStream};

/// A copy_bidirectional TCP relay, the baseline for fep_gateway.
#[derive(Debug, Parser)]
#[command(name = "tokio_proxy", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free one; see the `ready` line).
    #[arg(long, default_value = "127.0.0.1:9000", env = "FEP_LISTEN")]
    listen: SocketAddr,
    /// Address to relay each client connection to.
    #[arg(long, default_value = "127.0.0.1:10000", env = "FEP_UPSTREAM")]
    upstream: SocketAddr,
    /// TCP congestion control of every socket, by its kernel name (cubic,
    /// reno, bbr, …); default: the system's.
    #[arg(long, env = "FEP_TCP_CONGESTION")]
    tcp_congestion: Option<String>,
}

fn main() -> ExitCode {
    let cli: Cli = fep_bins::cli::parse_or_exit();
    watch_lifeline();
    if let Some(name) = &cli.tcp_congestion {
        if let Err(e) = fep_net::check_congestion(name) {
            eprintln!("tokio_proxy: TCP congestion control {name:?} is not available here: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Two descriptors per client (its socket and its upstream's): as many
    // as the hard limit allows.
    let nofile = raise_nofile(NofileGoal::server(2));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio_proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = match stop_flag() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("tokio_proxy: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(cli.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("tokio_proxy: cannot bind {}: {e}", cli.listen);
                return ExitCode::FAILURE;
            }
        };
        warn_short_open_files(
            &nofile,
            &format!("{SERVER_CONNECTIONS_PLANNED} clients (2 sockets each)"),
        );
        match listener.local_addr() {
            Ok(addr) => println!("ready {addr}"),
            Err(e) => {
                eprintln!("tokio_proxy: no local address: {e}");
                return ExitCode::FAILURE;
            }
        }
        tokio::select! {
            biased;
            _ = stop => ExitCode::SUCCESS,
            code = accept_loop(listener, cli.upstream, cli.tcp_congestion) => code,
        }
    })
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    congestion: Option<String>,
) -> ExitCode {
    // Past the bound a new client waits in the kernel's backlog until one
    // leaves (each holds two sockets and two copy buffers).
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(PROXY_CONNECTIONS_MAX));
    let mut said = false;
    loop {
        let Ok(slot) = std::sync::Arc::clone(&slots).acquire_owned().await else {
            return ExitCode::FAILURE;
        };
        match listener.accept().await {
            Ok((client, _)) => {
                said = false;
                let congestion = congestion.clone();
                tokio::spawn(async move {
                    relay(client, upstream, congestion).await;
                    drop(slot);
                });
            }
            // Out of descriptors or memory for a moment: say it once, wait
            // for clients to leave, and go on serving the ones it has.
            Err(e) => {
                if !std::mem::replace(&mut said, true) {
                    eprintln!("tokio_proxy: accept: {e}; retrying");
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Clients relayed at once (each holds two sockets and two copy buffers).
const PROXY_CONNECTIONS_MAX: usize = 65_536;
/// How long the dial to the upstream may take for one client.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

async fn relay(mut client: TcpStream, upstream: SocketAddr, congestion: Option<String>) {
    if let Some(name) = &congestion {
        // Checked at start: it cannot fail for want of the algorithm.
        let _ = socket2::SockRef::from(&client).set_tcp_congestion(name.as_bytes());
    }
    let dial = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream));
    let mut server = match dial.await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => {
            eprintln!("tokio_proxy: cannot connect to {upstream}: {e}");
            return;
        }
        Err(_) => {
            eprintln!(
                "tokio_proxy: cannot connect to {upstream}: no answer in {CONNECT_TIMEOUT:?}"
            );
            return;
        }
    };
    if let Some(name) = &congestion {
        let _ = socket2::SockRef::from(&server).set_tcp_congestion(name.as_bytes());
    }
    // Latency is the point: never wait to coalesce small frames.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // A peer closing or resetting ends the relay; nothing to report.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Resolves when SIGINT or SIGTERM arrives. The runtime has no signal
/// driver (tokio's `signal` feature is not enabled), so a small thread
/// waits on signal-hook and completes a oneshot.
fn stop_flag() -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let _ = tx.send(());
            }
        })?;
    Ok(rx)
}
