//! tokio_proxy, the baseline relay: it announces its address, relays bytes
//! both ways unchanged, and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

/// An upstream that answers each read with the same bytes reversed, so the
/// test can tell the relay's output from its input.
fn reversing_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    buf[..n].reverse();
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn tokio_proxy_relays_both_ways_and_stops_on_sigterm() {
    let upstream = reversing_upstream();
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_tokio_proxy"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ready ")
        .expect("a ready line")
        .to_string();

    for _ in 0..2 {
        let mut client = TcpStream::connect(&addr).unwrap();
        client.write_all(b"abc").unwrap();
        let mut reply = [0u8; 3];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"cba");
    }

    let pid = rustix::process::Pid::from_child(&proxy);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(proxy.wait().unwrap().code(), Some(0));
}

#[test]
fn tokio_proxy_refuses_an_address_it_cannot_bind_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokio_proxy"))
        .args(["--listen", &taken.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("tokio_proxy: cannot bind"), "{stderr}");
}
