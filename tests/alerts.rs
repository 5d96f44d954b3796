//! A failing engine's alert reaches the peer, then its FIN: never a TCP
//! reset that would destroy the alert. Through s6-tlsd and s6-ucspitlsd
//! (also under tcpserver),
//! with a raw TCP client that sends what a TLS stack never would, and
//! keeps sending after its bad record, so that input is still unread in
//! the server's socket when the engine fails.

mod common;
mod superserver;

use common::{ClientSetup, TempDir, TlsClient, DEADLINE};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};
use superserver::{direct, tls_env, Group, Kind, SuperServer, TESTAPP, TLSD, UCSPITLSD};

/// TLS alert descriptions (RFC 8446, 6.2).
const DECODE_ERROR: u8 = 50;
const FATAL: u8 = 2;

/// The two programs that run the engine for a super-server, each with a
/// prog that starts TLS at once (s6-ucspitlsd) or never runs (s6-tlsd):
/// on one accepted connection, or s6-ucspitlsd under ucspi-tcp's
/// tcpserver.
#[derive(Debug, Clone, Copy)]
enum Via {
    Tlsd,
    Ucspitlsd,
    Tcpserver,
}

const ALL: [Via; 3] = [Via::Tlsd, Via::Ucspitlsd, Via::Tcpserver];

impl Via {
    fn start(self, dir: &TempDir, prog: &[&str]) -> (Group, TcpStream) {
        let program = match self {
            Via::Tlsd => TLSD,
            Via::Ucspitlsd | Via::Tcpserver => UCSPITLSD,
        };
        let mut args = vec![program, "--", TESTAPP];
        args.extend(prog);
        if let Via::Tcpserver = self {
            let server = SuperServer::start(Kind::Tcpserver, &args, &tls_env(dir), dir);
            let sock = server.connect();
            return (server.group, sock);
        }
        direct(program, &args[1..], &tls_env(dir), dir)
    }

    /// A session whose prog only echoes (s6-ucspitlsd: after `Y`).
    fn echo(self, dir: &TempDir) -> (Group, TcpStream) {
        let file = dir.path().join("info").to_string_lossy().into_owned();
        match self {
            Via::Tlsd => self.start(dir, &["dump", &file]),
            Via::Ucspitlsd | Via::Tcpserver => self.start(dir, &["info", "Y", &file]),
        }
    }

    /// Waits for the engine's last line (it is printed after the linger,
    /// just before the exit) and returns the whole stderr.
    fn engine_failed(self, server: &mut Group, message: &str) -> String {
        let line = format!("s6-tlsd-io: fatal: {message}");
        let stderr = server.wait_stderr(&line);
        if let Via::Tlsd = self {
            // s6-tlsd waits for its engine and exits with its code.
            assert_eq!(server.exit_code(), 98, "{stderr}");
        }
        stderr
    }
}

/// One TLS record of `content_type` (TLS 1.0 on the wire, as a first
/// ClientHello is) around `body`.
fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("a record body fits in 16 bits");
    let mut out = vec![content_type, 3, 1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn garbage(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Reads to the end of the connection: what came, and how it ended
/// (Ok at EOF, the error otherwise; a reset is `ConnectionReset`).
fn read_to_end(sock: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        match sock.read(&mut buf) {
            Ok(0) => return (data, Ok(())),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (data, Err(e)),
        }
    }
    (data, Err(io::ErrorKind::TimedOut.into()))
}

/// The plaintext records of `data` (header, body), as far as they are whole.
fn records(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([data[3], data[4]]));
        let Some(body) = data.get(5..5 + len) else {
            break;
        };
        out.push((data[0], body));
        data = &data[5 + len..];
    }
    out
}

/// The client read exactly one fatal alert of `description`, then EOF.
fn assert_alert_then_eof(data: &[u8], end: io::Result<()>, description: u8, stderr: &str) {
    assert!(
        end.is_ok(),
        "the connection ended with {end:?} instead of EOF after {data:02x?}; stderr: {stderr}"
    );
    assert_eq!(
        records(data),
        vec![(21u8, &[FATAL, description][..])],
        "{data:02x?}; stderr: {stderr}"
    );
}

/// A ClientHello of the largest size a handshake message may have (the
/// whole flight is over 64 KiB on the wire) whose session id claims 255
/// bytes: the engine reads it all before it can judge it, and the client
/// is still sending when it does.
#[test]
fn malformed_client_hello_of_over_64_kib_gets_its_alert_then_eof() {
    for via in ALL {
        let dir = TempDir::new("alert-big");
        let (mut server, mut sock) = via.echo(&dir);
        let size: u32 = 0xffff;
        let mut message = vec![1];
        message.extend_from_slice(&size.to_be_bytes()[1..]);
        message.extend_from_slice(&[3, 3]);
        message.extend(garbage(32));
        message.push(255);
        message.extend(garbage(size as usize - message.len() + 4));
        let flight: Vec<u8> = message.chunks(16384).flat_map(|c| record(22, c)).collect();
        assert!(flight.len() > 64 * 1024);
        let sent = sock.write_all(&flight);
        let (data, end) = read_to_end(&mut sock);
        let stderr = via.engine_failed(&mut server, "TLS handshake failed");
        assert!(sent.is_ok(), "{via:?}: sending: {sent:?}; stderr: {stderr}");
        assert_alert_then_eof(&data, end, DECODE_ERROR, &stderr);
    }
}

/// A bad ClientHello followed at once by 40 KiB of further records (more
/// than the engine reads at a time), then one more record each time the
/// server has said nothing for 10 ms: the alert still arrives, then EOF.
#[test]
fn records_after_a_bad_one_do_not_turn_the_alert_into_a_reset() {
    for via in ALL {
        let dir = TempDir::new("alert-more");
        let (mut server, mut sock) = via.echo(&dir);
        // A ClientHello of 4 bytes cannot even hold its version.
        let mut flight = record(22, &[1, 0, 0, 4, 3, 3, 0, 0]);
        for _ in 0..40 {
            flight.extend(record(22, &garbage(1024)));
        }
        let mut sent = sock.write_all(&flight);
        for _ in 0..500 {
            if sent.is_err() || readable(&sock, Duration::from_millis(10)) {
                break;
            }
            sent = sock.write_all(&record(22, &garbage(1024)));
        }
        let (data, end) = read_to_end(&mut sock);
        let stderr = via.engine_failed(&mut server, "TLS handshake failed");
        assert!(sent.is_ok(), "{via:?}: sending: {sent:?}; stderr: {stderr}");
        assert_alert_then_eof(&data, end, DECODE_ERROR, &stderr);
    }
}

/// Waits, bounded, until what the server sends has stopped piling up in
/// our receive buffer: the window is closed.
fn wait_until_full(sock: &TcpStream) {
    let queued = || {
        let mut n: nix::libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer.
        unsafe { nix::libc::ioctl(sock.as_raw_fd(), nix::libc::FIONREAD, &mut n) };
        n
    };
    let mut last = -1;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        let now = queued();
        if now > 0 && now == last {
            return;
        }
        last = now;
    }
    panic!("the server's data never filled the receive buffer ({last} bytes)");
}

fn readable(sock: &TcpStream, within: Duration) -> bool {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(within.as_millis()).unwrap_or(u16::MAX);
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// The linger after a failure is bounded: a client that never reads (its
/// receive window closed, so our last bytes are never acknowledged) and
/// keeps sending after a bad record does not keep the engine alive.
#[test]
fn a_client_that_never_reads_and_keeps_sending_cannot_hold_a_failed_engine() {
    let dir = TempDir::new("alert-bound");
    let (mut server, sock) = Via::Ucspitlsd.start(&dir, &["hash", "1000000000", "eof"]);
    let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
    client.handshake().expect("handshake");
    wait_until_full(&client.sock);
    // Until the engine goes: a record rustls cannot decrypt, again and
    // again, bounded in count and time.
    let mut sock = client.sock.try_clone().expect("dup the socket");
    sock.set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let bad = record(23, &garbage(1024));
        for _ in 0..100_000_000 {
            if started.elapsed() > Duration::from_secs(20) {
                return "gave up";
            }
            match sock.write_all(&bad) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return "the connection ended",
            }
        }
        "sent everything"
    });
    // prog learns of the failure at once: the engine closes its pipes
    // before it lingers, and prints its last line after.
    server.wait_within(DEADLINE);
    let early = server.stderr();
    assert!(!early.contains("s6-tlsd-io: fatal"), "{early}");
    let stderr = server.wait_stderr("s6-tlsd-io: fatal: TLS error");
    let took = started.elapsed();
    drop(client);
    let why = sender.join().expect("sender");
    assert!(
        took < Duration::from_secs(10),
        "the engine lingered {took:?}; stderr: {stderr}"
    );
    assert_eq!(why, "the connection ended", "{stderr}");
}
