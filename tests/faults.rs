//! Fault injection: hostile or broken clients and applications, each
//! through s6-ucspitlsd under ucspi-tcp's `tcpserver`, with real TLS on
//! 127.0.0.1. Every case ends with the same checks (`harness::finish`):
//! s6-tlsd-io's exit code, prog's end, nothing left under the
//! super-server, no descriptor leaked by it; and each case checks that
//! both sides saw the end promptly and what data went through.
//!
//! The application is `s6-tls-faultapp` (src/bin/s6-tls-faultapp.rs)
//! except where the case is about the SMTP demo.

#[path = "faults/harness.rs"]
mod harness;

use harness::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);
const MIB: u64 = 1 << 20;

fn exit_code(status: Option<i32>) -> Option<i32> {
    status.map(|s| if s & 0x7f == 0 { s >> 8 } else { -(s & 0x7f) })
}

/// Reads until EOF or error (bounded by the socket timeout): what came,
/// and how it ended.
fn drain(sock: &mut std::net::TcpStream) -> (Vec<u8>, String) {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return (data, "eof".into()),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => return (data, format!("{:?}", e.kind())),
        }
    }
}

// ------------------------------------------------------------ client faults

#[test]
fn client_reset_mid_handshake() {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    let mut client = Client::new(sock, client_config());
    // The ClientHello goes out; wait for the server's first flight.
    client
        .conn
        .write_tls(&mut client.sock)
        .expect("ClientHello");
    let got = wait_until(
        T,
        || matches!(client.conn.read_tls(&mut client.sock), Ok(n) if n > 0),
    );
    assert!(got, "no server flight\n{}", server.log());
    let _ = client.conn.process_new_packets();
    let reset_at = Instant::now();
    reset(client.sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    // A reset is a failed system call (documented: 111).
    assert_eq!(end.engine, Some(Exit::Code(111)), "{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: unable to read from network: Connection reset by peer")
            || log.contains(
                "s6-tlsd-io: fatal: unable to write to network: Connection reset by peer"
            ),
        "{log}"
    );
    // prog learns that TLS did not come up.
    assert_eq!(exit_code(end.prog_status), Some(2), "{log}");
    assert!(reset_at.elapsed() < Duration::from_secs(3));
}

#[test]
fn client_reset_mid_transfer() {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let mut hook = |_: &mut rustls::ClientConnection, p: &Progress| p.received < 2 * MIB;
    let out = client.run(&mut Plan {
        send: 64 * MIB,
        hook: Some(&mut hook),
        ..Default::default()
    });
    assert!(out.stopped, "{out:?}");
    let reset_at = Instant::now();
    reset(client.sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(111)), "{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: unable to")
            && log.contains("network: Connection reset by peer"),
        "{log}"
    );
    // The application saw its end and reported it.
    let report = server.report(pids.prog, T).expect("report");
    assert!(report.in_bytes >= 2 * MIB, "{report:?}");
    assert_eq!(exit_code(end.prog_status), Some(0), "{log}");
    assert!(reset_at.elapsed() < Duration::from_secs(3));
}

#[test]
fn client_vanishes_after_starttls_with_kimeout() {
    let server = Server::start(&["-K", "500"], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    let started = Instant::now();
    // Say nothing more; the engine must give up on its own.
    let (data, how) = drain(&mut sock);
    let seen = started.elapsed();
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: timed out: no data for 500 ms during the handshake"),
        "{log}"
    );
    assert_eq!((data.len(), how.as_str()), (0, "eof"), "client side");
    assert!(
        seen >= Duration::from_millis(450) && seen < Duration::from_secs(3),
        "EOF after {seen:?}"
    );
    assert_eq!(exit_code(end.prog_status), Some(2), "{log}");
}

#[test]
fn client_vanishes_after_starttls_without_kimeout() {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    std::thread::sleep(Duration::from_millis(1500));
    // Without -K the engine waits for the ClientHello for ever.
    assert!(alive(pids.engine), "engine gone\n{}", server.log());
    assert_eq!(comm(pids.engine).as_deref(), Some("s6-tlsd-io"));
    assert!(alive(pids.prog));
    let closed = Instant::now();
    drop(sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: TLS handshake failed: peer closed the connection"),
        "{log}"
    );
    assert_eq!(exit_code(end.prog_status), Some(2), "{log}");
    assert!(closed.elapsed() < Duration::from_secs(3));
}

#[test]
fn client_sends_half_a_record_and_stalls() {
    let server = Server::start(&["-K", "500"], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    client.sock.set_nonblocking(false).unwrap();
    // Application data header announcing 256 bytes, then 100 of them.
    let mut half = vec![0x17, 0x03, 0x03, 0x01, 0x00];
    half.extend_from_slice(&[0x5a; 100]);
    client.sock.write_all(&half).unwrap();
    let started = Instant::now();
    let (_, how) = drain(&mut client.sock);
    let seen = started.elapsed();
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: timed out: no data for 500 ms after the handshake"),
        "{log}"
    );
    assert_eq!(how, "eof");
    assert!(
        seen >= Duration::from_millis(450) && seen < Duration::from_secs(3),
        "{seen:?}"
    );
    let report = server.report(pids.prog, T).expect("report");
    assert_eq!(
        (report.in_bytes, report.end.as_str()),
        (0, "eof"),
        "{report:?}"
    );
}

/// One session, `bytes` written raw after the handshake: the engine must
/// end with 98 and a TLS error, the application must get nothing.
fn bad_record_case(what: &str, bytes: impl FnOnce(&mut RawTls) -> Vec<u8>) {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    let mut raw = RawTls::takeover(sock);
    // A round trip first, so the server has finished its handshake too.
    let ping = raw.tx.seal(23, b"ping");
    raw.sock.write_all(&ping).unwrap();
    assert_eq!(raw.read_data(4), (b"ping".to_vec(), None), "{what}");
    let bytes = bytes(&mut raw);
    let _ = raw.sock.write_all(&bytes);
    let started = Instant::now();
    let (reply, how) = drain(&mut raw.sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{what}\n{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: TLS error: "),
        "{what}\n{log}"
    );
    // At most an alert record comes back, then the end.
    assert!(reply.len() < 64, "{what}: {reply:?}");
    assert!(how == "eof" || how == "ConnectionReset", "{what}: {how}");
    assert!(started.elapsed() < Duration::from_secs(3), "{what}");
    let report = server.report(pids.prog, T).expect("report");
    assert_eq!(report.in_bytes, 4, "{what}: {report:?}");
    eprintln!(
        "{what}: {}",
        log.lines()
            .find(|l| l.contains("s6-tlsd-io: fatal"))
            .unwrap_or("")
    );
}

#[test]
fn client_sends_an_oversized_record() {
    // A whole record of 16896 bytes > 2^14 + 256, the TLS 1.3 limit.
    bad_record_case("16896-byte record of garbage", |_| {
        let mut record = vec![0x17, 0x03, 0x03, 0x42, 0x00];
        record.resize(5 + 0x4200, 0x5a);
        record
    });
    // A header announcing 65535 bytes: refused before the body arrives.
    bad_record_case("65535-byte header", |_| {
        let mut record = vec![0x17, 0x03, 0x03, 0xff, 0xff];
        record.resize(5 + 64, 0);
        record
    });
    // Properly protected, but 2^14 + 1 bytes of plaintext.
    bad_record_case("protected record with 16385 bytes of plaintext", |raw| {
        raw.tx.seal(23, &[0x41; 16385])
    });
    // Properly protected, 16896 bytes on the wire.
    bad_record_case("protected record of 16896 bytes", |raw| {
        raw.tx.seal(23, &[0x41; 16896 - 17])
    });
}

#[test]
fn client_stalls_inside_an_oversized_record_with_kimeout() {
    // rustls accepts record headers up to 2^14 + 2048 and judges the
    // record once whole; a peer that announces 16896 bytes and stalls is
    // ended by -K like any stall.
    let server = Server::start(&["-K", "500"], &[faultapp_exe(), "sink"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    client.sock.set_nonblocking(false).unwrap();
    let mut record = vec![0x17, 0x03, 0x03, 0x42, 0x00];
    record.extend_from_slice(&[0u8; 64]);
    client.sock.write_all(&record).unwrap();
    let (_, how) = drain(&mut client.sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(
        log.contains("timed out: no data for 500 ms after the handshake"),
        "{log}"
    );
    assert_eq!(how, "eof");
}

#[test]
fn client_sends_a_fatal_alert_during_the_handshake() {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    let mut client = Client::new(sock, client_config());
    client
        .conn
        .write_tls(&mut client.sock)
        .expect("ClientHello");
    client.sock.set_nonblocking(false).unwrap();
    // Plaintext fatal handshake_failure alert.
    client
        .sock
        .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
        .unwrap();
    let started = Instant::now();
    let (_, how) = drain(&mut client.sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(
        log.contains(
            "s6-tlsd-io: fatal: TLS handshake failed: the peer sent the alert handshake_failure"
        ),
        "{log}"
    );
    assert!(how == "eof" || how == "ConnectionReset", "{how}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(exit_code(end.prog_status), Some(2), "{log}");
}

#[test]
fn client_sends_a_fatal_alert_after_the_handshake() {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    let mut raw = RawTls::takeover(sock);
    // Some data, echoed, then a fatal internal_error alert (encrypted).
    let data = raw.tx.seal(23, b"before the alert");
    raw.sock.write_all(&data).unwrap();
    let (echo, err) = raw.read_data(16);
    assert_eq!((echo.as_slice(), err), (&b"before the alert"[..], None));
    let alert = raw.tx.seal(21, &[2, 80]);
    raw.sock.write_all(&alert).unwrap();
    let started = Instant::now();
    let (_, how) = drain(&mut raw.sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: TLS error: the peer sent the alert internal_error"),
        "{log}"
    );
    assert!(how == "eof" || how == "ConnectionReset", "{how}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let report = server.report(pids.prog, T).expect("report");
    assert_eq!(report.in_bytes, 16, "{report:?}");
    assert_eq!(exit_code(end.prog_status), Some(0), "{log}");
}

#[test]
fn client_sends_data_and_a_fatal_alert_in_one_write() {
    // A fatal alert aborts the connection (98), but the authentic records
    // before it, decrypted in the same batch, still reach the application.
    let server = Server::start(&[], &[faultapp_exe(), "sink"]);
    let fds = server.fd_count();
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    let mut raw = RawTls::takeover(sock);
    let mut bytes = raw.tx.seal(23, b"just before the alert");
    bytes.extend(raw.tx.seal(21, &[2, 80]));
    raw.sock.write_all(&bytes).unwrap();
    let (_, how) = drain(&mut raw.sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(how == "eof" || how == "ConnectionReset", "{how}");
    let report = server.report(pids.prog, T).expect("report");
    assert_eq!(
        (report.in_bytes, report.in_sha.as_str()),
        (21, sha256_hex(b"just before the alert").as_str()),
        "{report:?}"
    );
}

/// close_notify from the client is a clean end: everything before it is
/// delivered, the application reads EOF, its answer still goes out.
fn close_notify_case(opts: &[&str], expect_end: End) {
    let server = Server::start(opts, &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let out = client.run(&mut Plan {
        send: 3 * MIB + 12345,
        after: AfterSend::CloseNotify,
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
    assert!(!out.timed_out && out.send_error.is_none(), "{out:?}");
    assert_eq!(out.end, expect_end, "{out:?}");
    assert_eq!(out.progress.received, out.progress.sent);
    assert_eq!(out.received_sha, out.sent_sha);
    let report = server.report(pids.prog, T).expect("report");
    assert_eq!(
        (report.in_bytes, &report.in_sha, report.end.as_str()),
        (out.progress.sent, &out.sent_sha, "eof")
    );
    assert_eq!(exit_code(end.prog_status), Some(0), "{log}");
}

#[test]
fn client_close_notify_is_a_clean_end() {
    // Default -s: the engine half-closes TCP without close_notify.
    close_notify_case(&[], End::UncleanEof);
}

#[test]
fn client_close_notify_is_a_clean_end_with_close_notify_back() {
    close_notify_case(&["-S"], End::CloseNotify);
}

#[test]
fn client_data_after_close_notify_is_ignored() {
    for separate in [false, true] {
        let server = Server::start(&[], &[faultapp_exe(), "sink"]);
        let fds = server.fd_count();
        let mut sock = connect(server.port);
        let pids = faultapp_starttls(&mut sock);
        let mut raw = RawTls::takeover(sock);
        let mut bytes = raw.tx.seal(23, b"before");
        bytes.extend(raw.tx.seal(21, &[1, 0])); // close_notify
        let after = raw.tx.seal(23, b"AFTER THE CLOSE");
        if separate {
            raw.sock.write_all(&bytes).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let _ = raw.sock.write_all(&after);
        } else {
            bytes.extend(after);
            raw.sock.write_all(&bytes).unwrap();
        }
        let (_, how) = drain(&mut raw.sock);
        let end = finish(&server, pids, fds, T);
        let log = server.log();
        assert_eq!(
            end.engine,
            Some(Exit::Code(0)),
            "separate={separate}\n{log}"
        );
        let report = server.report(pids.prog, T).expect("report");
        assert_eq!(
            (report.in_bytes, report.in_sha.as_str()),
            (6, sha256_hex(b"before").as_str()),
            "separate={separate}: {report:?}"
        );
        assert!(how == "eof" || how == "ConnectionReset", "{how}");
    }
}

#[test]
fn client_key_updates_repeatedly_under_tls13() {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    assert_eq!(
        client.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut updates = 0u32;
    let mut next = 0u64;
    let mut hook = |conn: &mut rustls::ClientConnection, p: &Progress| {
        // One KeyUpdate per 64 KiB chunk of data (rustls resets its flood
        // counter whenever application data arrives).
        if p.sent >= next && updates < 300 {
            conn.refresh_traffic_keys().expect("KeyUpdate");
            updates += 1;
            next = p.sent + 1;
        }
        true
    };
    let out = client.run(&mut Plan {
        send: 24 * MIB,
        hook: Some(&mut hook),
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert!(updates >= 250, "{updates} KeyUpdates");
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
    assert_eq!(out.end, End::UncleanEof, "{out:?}");
    assert_eq!(
        (out.progress.received, &out.received_sha),
        (out.progress.sent, &out.sent_sha)
    );
}

#[test]
fn client_key_update_flood_is_cut_off() {
    // rustls allows 32 KeyUpdate requests in a row without application
    // data in between (BoringSSL's limit); a flood ends the connection.
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    for _ in 0..100 {
        client.conn.refresh_traffic_keys().expect("KeyUpdate");
    }
    let out = client.run(&mut Plan {
        send: 0,
        after: AfterSend::Nothing,
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: TLS error: the peer broke the TLS protocol (too many key update requests)"),
        "{log}"
    );
    assert!(out.end != End::Open, "{out:?}");
}

/// The SMTP demo under s6-ucspitlsd, plus a connection up to EHLO.
fn demo_connection(server: &Server) -> (std::net::TcpStream, Pids) {
    let mut sock = connect(server.port);
    let banner = read_line(&mut sock).unwrap();
    assert!(banner.starts_with("220 "), "{banner:?}");
    let pids = find_pids(server);
    sock.write_all(b"EHLO test\r\n").unwrap();
    loop {
        let line = read_line(&mut sock).unwrap();
        assert!(line.starts_with("250"), "{line:?}");
        if line.starts_with("250 ") {
            break;
        }
    }
    (sock, pids)
}

#[test]
fn pipelined_plaintext_after_starttls_never_reaches_the_app() {
    // The attacker's variant: STARTTLS and a command in one segment, then
    // more cleartext instead of a ClientHello.
    let server = Server::start(&[], &[demo_exe()]);
    let fds = server.fd_count();
    let (mut sock, pids) = demo_connection(&server);
    sock.write_all(b"STARTTLS\r\nNOOP\r\n").unwrap();
    let reply = read_line(&mut sock).unwrap();
    assert!(reply.starts_with("220 2.0.0"), "{reply:?}");
    sock.write_all(b"NOOP\r\nNOOP\r\n").unwrap();
    let (rest, _) = drain(&mut sock);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(98)), "{log}");
    assert!(
        log.contains("s6-tlsd-io: fatal: TLS handshake failed"),
        "{log}"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains("250"),
        "a pipelined command was answered: {rest:?}"
    );
    assert!(
        log.contains("ucspitls-demo: fatal: the TLS handshake failed"),
        "{log}"
    );
    assert!(
        log.contains("discarded 6 bytes pipelined after STARTTLS"),
        "{log}"
    );
}

#[test]
fn pipelined_plaintext_then_tls_is_never_answered() {
    // The same segment, then a real handshake: the command pipelined in
    // cleartext must not be executed inside TLS.
    let server = Server::start(&[], &[demo_exe()]);
    let fds = server.fd_count();
    let (mut sock, pids) = demo_connection(&server);
    sock.write_all(b"STARTTLS\r\nNOOP pipelined\r\n").unwrap();
    let reply = read_line(&mut sock).unwrap();
    assert!(reply.starts_with("220 2.0.0"), "{reply:?}");
    let mut client = Client::new(sock, client_config());
    match client.handshake(T) {
        Ok(()) => {
            // What the client says inside TLS, then the server's answers.
            let text = client.converse(b"NOOP inside\r\nQUIT\r\n");
            assert!(
                text.starts_with("250 2.0.0 OK inside [TLS TLSv1.3"),
                "{text:?}"
            );
            assert!(!text.contains("pipelined"), "{text:?}");
            assert!(text.ends_with("221 2.0.0 Bye\r\n"), "{text:?}");
            let end = finish(&server, pids, fds, T);
            assert_eq!(end.engine, Some(Exit::Code(0)), "{}", server.log());
        }
        Err(e) => {
            // Also acceptable: the pipelined bytes reached the engine and
            // broke the handshake.
            let end = finish(&server, pids, fds, T);
            assert_eq!(end.engine, Some(Exit::Code(98)), "{e}\n{}", server.log());
        }
    }
    let log = server.log();
    assert!(
        log.contains("discarded 16 bytes pipelined after STARTTLS"),
        "{log}"
    );
}

#[test]
fn client_renegotiation_under_tls12_is_refused() {
    use std::process::{Command, Stdio};
    let server = Server::start(&[], &[demo_exe()]);
    let fds = server.fd_count();
    let mut child = Command::new("openssl")
        .args(["s_client", "-starttls", "smtp", "-tls1_2", "-connect"])
        .arg(format!("127.0.0.1:{}", server.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    let mut pids = None;
    wait_until(T, || {
        for prog in children(server.pid) {
            if let Some(&engine) = children(prog).first() {
                if comm(engine).as_deref() == Some("s6-tlsd-io") {
                    pids = Some(Pids { prog, engine });
                    return true;
                }
            }
        }
        false
    });
    let pids = pids.expect("session under tcpserver");
    std::thread::sleep(Duration::from_millis(500));
    // s_client's R command: a new ClientHello on the established connection.
    let _ = stdin.write_all(b"R\n");
    std::thread::sleep(Duration::from_millis(700));
    let _ = stdin.write_all(b"NOOP after renegotiation\n");
    std::thread::sleep(Duration::from_millis(500));
    let _ = stdin.write_all(b"QUIT\n");
    drop(stdin);
    let exited = wait_until(T, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert!(exited, "s_client hung\n{stdout}\n{stderr}");
    assert!(stdout.contains("Protocol  : TLSv1.2"), "{stdout}");
    // Refused: either the connection stays usable (the NOOP is answered
    // under the original session), or it ends with an alert; never a
    // crash, never a renegotiated session.
    match end.engine {
        Some(Exit::Code(0)) => assert!(
            stdout.contains("250 2.0.0 OK after renegotiation"),
            "{stdout}\n{stderr}\n{log}"
        ),
        Some(Exit::Code(98)) => assert!(log.contains("s6-tlsd-io: fatal: TLS error"), "{log}"),
        other => panic!("engine ended {other:?}\n{stdout}\n{stderr}\n{log}"),
    }
    eprintln!(
        "renegotiation: engine {:?} ({}); s_client said: {}",
        end.engine,
        log.lines()
            .find(|l| l.contains("s6-tlsd-io: fatal"))
            .unwrap_or("no error"),
        stderr
            .lines()
            .chain(stdout.lines())
            .filter(|l| l.contains("RENEG")
                || l.contains("alert")
                || l.starts_with("250 2.0.0 OK after"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

// --------------------------------------------------------------- app faults

#[test]
fn app_killed_while_reading() {
    let server = Server::start(&[], &[faultapp_exe(), "sink"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let mut killed_at = None;
    let mut hook = |_: &mut rustls::ClientConnection, p: &Progress| {
        if killed_at.is_none() && p.wire_out >= 8 * MIB {
            sigkill(pids.prog);
            killed_at = Some(Instant::now());
        }
        true
    };
    let out = client.run(&mut Plan {
        send: 1 << 30,
        after: AfterSend::Nothing,
        hook: Some(&mut hook),
        timeout: Duration::from_secs(20),
        stop_on_end: true,
        ..Default::default()
    });
    let killed_at = killed_at.expect("killed");
    let noticed = killed_at.elapsed();
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert!(!out.timed_out, "client never noticed: {out:?}\n{log}");
    assert!(noticed < Duration::from_secs(3), "{noticed:?}");
    // The engine half-closes: the client reads EOF (or a reset, if the
    // engine closed with its data unread).
    assert!(
        matches!(out.end, End::UncleanEof | End::Io(..)) || out.send_error.is_some(),
        "{out:?}"
    );
    assert_eq!(end.prog_status, Some(9), "{log}");
    // For the engine, a vanished application closed both pipes: a normal end.
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
}

#[test]
fn app_killed_while_writing() {
    let server = Server::start(&[], &[faultapp_exe(), "source", "1000000000000"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let mut killed_at = None;
    let mut hook = |_: &mut rustls::ClientConnection, p: &Progress| {
        if killed_at.is_none() && p.received >= 8 * MIB {
            sigkill(pids.prog);
            killed_at = Some(Instant::now());
        }
        true
    };
    let out = client.run(&mut Plan {
        send: 0,
        after: AfterSend::Nothing,
        hook: Some(&mut hook),
        timeout: Duration::from_secs(20),
        ..Default::default()
    });
    let killed_at = killed_at.expect("killed");
    let noticed = killed_at.elapsed();
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert!(!out.timed_out, "{out:?}\n{log}");
    assert!(noticed < Duration::from_secs(3), "{noticed:?}");
    // No close_notify (-s): the client can tell the stream was cut.
    assert_eq!(out.end, End::UncleanEof, "{out:?}");
    assert_eq!(end.prog_status, Some(9), "{log}");
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
}

fn close_read_case(client_sends: u64) {
    let n = 8 * MIB + 777;
    let arg = n.to_string();
    let server = Server::start(&[], &[faultapp_exe(), "close-read", &arg]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let out = client.run(&mut Plan {
        send: client_sends,
        after: AfterSend::Nothing,
        timeout: Duration::from_secs(20),
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    let report = server.report(pids.prog, T).expect("report");
    eprintln!(
        "close-read, client sending {client_sends}: engine {:?}, client received {} of {n}, ended {:?}",
        end.engine, out.progress.received, out.end
    );
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
    assert_eq!(
        (report.out_bytes, report.end.as_str()),
        (n, "eof"),
        "{report:?}"
    );
    assert_eq!(
        (out.progress.received, &out.received_sha),
        (n, &report.out_sha),
        "client got {out:?}\n{log}"
    );
    assert_eq!(out.end, End::UncleanEof, "{out:?}");
    assert_eq!(exit_code(end.prog_status), Some(0), "{log}");
}

#[test]
fn app_closes_its_reader_but_keeps_writing() {
    close_read_case(0);
}

#[test]
fn app_closes_its_reader_but_keeps_writing_while_the_client_sends() {
    close_read_case(2 * MIB);
}

#[test]
fn app_closes_its_writer_but_keeps_reading() {
    let server = Server::start(&[], &[faultapp_exe(), "close-write"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let out = client.run(&mut Plan {
        send: 16 * MIB + 5,
        after: AfterSend::CloseNotify,
        timeout: Duration::from_secs(20),
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert!(out.send_error.is_none() && !out.timed_out, "{out:?}");
    // The engine half-closed at once (the app's EOF); the client went on.
    assert_eq!((out.end, out.progress.received), (End::UncleanEof, 0));
    let report = server.report(pids.prog, T).expect("report");
    assert_eq!(
        (report.in_bytes, &report.in_sha, report.end.as_str()),
        (out.progress.sent, &out.sent_sha, "eof"),
        "{log}"
    );
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
}

#[test]
fn app_never_reads_backpressure_bounds_memory() {
    let server = Server::start(&[], &[faultapp_exe(), "never-read", "30"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let rss_start = rss_kib(pids.engine).expect("engine rss");
    let mut last = (0u64, Instant::now());
    let mut max_rss = rss_start;
    let mut hook = |_: &mut rustls::ClientConnection, p: &Progress| {
        if let Some(rss) = rss_kib(pids.engine) {
            max_rss = max_rss.max(rss);
        }
        if p.wire_out != last.0 {
            last = (p.wire_out, Instant::now());
        }
        // Stalled for a whole second: backpressure reached the client.
        last.1.elapsed() < Duration::from_secs(1)
    };
    let out = client.run(&mut Plan {
        send: 64 * MIB,
        after: AfterSend::Nothing,
        hook: Some(&mut hook),
        timeout: Duration::from_secs(20),
        ..Default::default()
    });
    let rss_stalled = rss_kib(pids.engine).expect("engine rss");
    max_rss = max_rss.max(rss_stalled);
    eprintln!(
        "never-read: client stalled after {} bytes on the wire; engine VmRSS {} KiB at start, {} KiB stalled, {} KiB max",
        out.progress.wire_out, rss_start, rss_stalled, max_rss
    );
    assert!(out.stopped, "the client never stalled: {out:?}");
    assert!(out.progress.wire_out < 32 * MIB, "{out:?}");
    assert!(max_rss < 8 * 1024, "engine VmRSS {max_rss} KiB");
    assert!(
        max_rss < rss_start + 2048,
        "engine grew {rss_start} -> {max_rss} KiB"
    );
    // The application goes away: the engine ends, the client notices.
    sigkill(pids.prog);
    let out = client.run(&mut Plan {
        send: 0,
        after: AfterSend::Nothing,
        timeout: Duration::from_secs(5),
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert!(!out.timed_out, "{out:?}");
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
}

#[test]
fn app_sends_y_twice() {
    let server = Server::start(&[], &[faultapp_exe(), "double-y"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let out = client.run(&mut Plan {
        send: MIB,
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
    assert_eq!(
        (out.progress.received, &out.received_sha),
        (MIB, &out.sent_sha),
        "{log}"
    );
    // The helper shut its reading side down: a later byte fails (EPIPE).
    assert!(
        log.contains(&format!("pid={} Y after the handshake: Err(", pids.prog)),
        "{log}"
    );
    assert_eq!(exit_code(end.prog_status), Some(0), "{log}");
    assert!(!log.contains("s6-ucspitlsd: fatal"), "{log}");
}

#[test]
fn shutdown_write_without_close_notify_is_a_normal_end() {
    // -j (default): the client's EOF without close_notify delivers
    // everything; -J would make it an error (covered by the engine tests).
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let out = client.run(&mut Plan {
        send: 2 * MIB,
        after: AfterSend::Shutdown,
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    assert_eq!(end.engine, Some(Exit::Code(0)), "{}", server.log());
    assert_eq!(
        (out.progress.received, &out.received_sha),
        (2 * MIB, &out.sent_sha)
    );
    let _ = client.sock.shutdown(Shutdown::Both);
}
