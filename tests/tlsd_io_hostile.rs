//! s6-tlsd-io against clients that do not speak TLS 1.2/1.3 properly,
//! peers that vanish, and applications that die: every case ends with
//! the documented exit code, no hang, and no process left behind.

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How long a failing engine may take to notice.
const PROMPT: Duration = Duration::from_secs(10);

/// Sends `bytes` on a fresh connection (which stays open), expects the
/// engine to fail the handshake with 98, and returns what the client got
/// back and the engine's stderr.
fn hostile_hello(bytes: &[u8]) -> (Vec<u8>, String) {
    let dir = TempDir::new("hostile");
    let (mut client, server) = tcp_pair();
    let mut engine = standard(&dir, &["-d", "5"]).notify(5).spawn(Some(server));
    client.write_all(bytes).unwrap();
    let exit = engine.wait_within(PROMPT);
    exit.assert_fatal(98, "TLS handshake failed: ");
    // No information string after a failed handshake: EOF at once.
    assert_eq!(engine.read_notification(), b"");
    assert_eq!(engine.app_read_to_eof(), b"");
    let mut back = Vec::new();
    let _ = client.read_to_end(&mut back);
    (back, exit.stderr)
}

/// The engine answered with a TLS alert record (content type 21).
fn assert_alert(back: &[u8]) {
    assert!(
        back.len() >= 7 && back[0] == 0x15 && back[1] == 0x03,
        "expected a TLS alert, got {back:02x?}"
    );
}

/// A ClientHello record: `record_version`, `client_version`, the cipher
/// suites and raw extensions.
fn hello(record_version: u16, client_version: u16, suites: &[u16], extensions: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(client_version.to_be_bytes());
    body.extend(Stream::bytes(42, 32)); // random
    body.push(0); // session id
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null
    if !extensions.is_empty() {
        body.extend((extensions.len() as u16).to_be_bytes());
        body.extend(extensions);
    }
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16];
    record.extend(record_version.to_be_bytes());
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut v = kind.to_be_bytes().to_vec();
    v.extend((data.len() as u16).to_be_bytes());
    v.extend(data);
    v
}

/// server_name, supported_groups, ec_point_formats, signature_algorithms.
fn common_extensions() -> Vec<u8> {
    let mut v = Vec::new();
    let name = b"localhost";
    let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    v.extend(extension(0x0000, &sni));
    v.extend(extension(0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]));
    v.extend(extension(0x000b, &[1, 0]));
    v.extend(extension(
        0x000d,
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    ));
    v
}

#[test]
fn plaintext_instead_of_a_hello() {
    for text in [
        &b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"[..],
        b"EHLO client.example.org\r\n",
    ] {
        let (back, _) = hostile_hello(text);
        assert_alert(&back);
    }
}

#[test]
fn random_bytes_instead_of_a_hello() {
    // Pure noise (fixed seeds, so a failure reproduces).
    for seed in [1, 2, 3] {
        let (_, stderr) = hostile_hello(&Stream::bytes(seed, 4096));
        assert!(stderr.contains("TLS handshake failed"), "{stderr}");
    }
    // A plausible record header around a noise body: here the noise
    // announces an oversized handshake message (rustls sends no alert
    // for that one).
    let mut record = vec![0x16, 0x03, 0x01, 0x00, 0xc8];
    record.extend(Stream::bytes(4, 200));
    let (_, stderr) = hostile_hello(&record);
    assert_eq!(
        stderr,
        format!("{FATAL}TLS handshake failed: the peer sent a message too large\n")
    );
    // A ClientHello header around a noise body.
    let mut record = vec![0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4];
    record.extend(Stream::bytes(4, 196));
    let (back, _) = hostile_hello(&record);
    assert_alert(&back);
}

#[test]
fn sslv2_hello() {
    for version in [[0x00, 0x02], [0x03, 0x01]] {
        let mut msg = vec![0x80, 0x2e, 0x01];
        msg.extend(version);
        msg.extend([0x00, 0x15, 0x00, 0x00, 0x00, 0x10]);
        for spec in [
            [0x01, 0x00, 0x80],
            [0x02, 0x00, 0x80],
            [0x03, 0x00, 0x80],
            [0x04, 0x00, 0x80],
            [0x05, 0x00, 0x80],
            [0x06, 0x00, 0x40],
            [0x07, 0x00, 0xc0],
        ] {
            msg.extend(spec);
        }
        msg.extend(Stream::bytes(5, 16));
        assert_eq!(msg.len(), 2 + 0x2e);
        hostile_hello(&msg);
    }
}

#[test]
fn ssl3_hello() {
    let (back, _) = hostile_hello(&hello(0x0300, 0x0300, &[0x000a, 0x002f], &[]));
    assert_alert(&back);
}

#[test]
fn tls10_and_tls11_hellos() {
    for version in [0x0301, 0x0302] {
        let suites = [0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035, 0x000a];
        let (back, stderr) = hostile_hello(&hello(0x0301, version, &suites, &common_extensions()));
        assert_alert(&back);
        assert!(stderr.contains("TLS handshake failed"), "{stderr}");
    }
}

#[test]
fn hello_without_a_common_cipher() {
    // TLS 1.2, RSA key exchange and CBC only.
    let (back, _) = hostile_hello(&hello(
        0x0301,
        0x0303,
        &[0x002f, 0x0035, 0x000a, 0x003c],
        &common_extensions(),
    ));
    assert_alert(&back);
    // TLS 1.3, CCM suites only (not offered by the server).
    let mut ext = common_extensions();
    ext.extend(extension(0x002b, &[2, 0x03, 0x04]));
    let mut share = vec![0, 36, 0x00, 0x1d, 0x00, 32];
    share.extend(Stream::bytes(6, 32));
    ext.extend(extension(0x0033, &share));
    let (back, _) = hostile_hello(&hello(0x0301, 0x0303, &[0x1304, 0x1305], &ext));
    assert_alert(&back);
}

/// The same through a real client: rustls offering only TLS 1.2 suites
/// whose key type does not match the server's certificate.
#[test]
fn rustls_client_without_a_usable_suite() {
    let dir = TempDir::new("nosuite");
    let (client_sock, server_sock) = tcp_pair();
    let mut engine = standard(&dir, &[]).spawn(Some(server_sock));
    let setup = ClientSetup::new()
        .versions(Versions::Tls12)
        .suites(&[rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]);
    let mut c = TlsClient::new(client_sock, &setup, "localhost");
    let err = c.handshake().unwrap_err();
    assert!(err.to_string().contains("HandshakeFailure"), "{err}");
    engine.wait_within(PROMPT).assert_fatal(
        98,
        "TLS handshake failed: no cipher suite in common with the peer",
    );
}

#[test]
fn peer_closing_during_the_handshake() {
    let full = client_hello(&ClientSetup::new(), "localhost");
    for cut in [0, 1, 5, full.len() / 2] {
        let dir = TempDir::new("hsclose");
        let (mut client, server) = tcp_pair();
        let mut engine = standard(&dir, &[]).spawn(Some(server));
        client.write_all(&full[..cut]).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        engine
            .wait_within(PROMPT)
            .assert_fatal(98, "TLS handshake failed: ");
    }
}

/// A reset while the engine waits for the peer: 111, read error.
#[test]
fn peer_reset_while_idle() {
    let dir = TempDir::new("rstidle");
    let mut s = session(standard(&dir, &[]), &ClientSetup::new(), "localhost");
    s.client.send(b"before the reset").unwrap();
    assert_eq!(s.engine.app_read_exact(16), b"before the reset");
    set_linger_zero(&s.client.sock);
    let Session { mut engine, client } = s;
    drop(client);
    let exit = engine.wait_within(PROMPT);
    exit.assert_fatal(111, "unable to read from network: Connection reset by peer");
}

/// A reset in the middle of a bulk transfer both ways: the engine exits
/// promptly with 111 (a read or write error on the network).
#[test]
fn peer_reset_mid_transfer() {
    let dir = TempDir::new("rstbulk");
    let mut s = session(standard(&dir, &[]), &ClientSetup::new(), "localhost");
    let app_in = s.engine.app_in.take().unwrap();
    // The app writes until the engine stops reading it.
    let writer = std::thread::spawn(move || {
        let chunk = Stream::bytes(11, 64 * 1024);
        let deadline = Instant::now() + DEADLINE;
        while write_all_fd(app_in.as_fd(), &chunk, deadline).is_ok() {}
    });
    let app_out = s.engine.app_out.take().unwrap();
    let reader = std::thread::spawn(move || read_to_eof(app_out.as_fd()));
    // The client sends some and receives some, then resets while the app
    // is still writing.
    let sent = Stream::bytes(12, 256 * 1024);
    s.client.send(&sent).unwrap();
    let got = s.client.recv_exact(256 * 1024);
    assert!(got == Stream::bytes(11, 64 * 1024).repeat(4));
    set_linger_zero(&s.client.sock);
    let Session { mut engine, client } = s;
    drop(client);
    let exit = engine.wait_within(PROMPT);
    assert_eq!(exit.code, Some(111), "{exit:?}");
    let network_error = exit.stderr
        == format!("{FATAL}unable to read from network: Connection reset by peer\n")
        || exit.stderr == format!("{FATAL}unable to write to network: Connection reset by peer\n")
        || exit.stderr == format!("{FATAL}unable to write to network: Broken pipe\n");
    assert!(network_error, "{:?}", exit.stderr);
    writer.join().unwrap();
    // The app got (a prefix of) the client's data, then EOF.
    let delivered = reader.join().unwrap();
    assert!(sent.starts_with(&delivered), "{} bytes", delivered.len());
}

/// The application exits (both its ends closed) in the middle of a
/// transfer both ways: everything it wrote reaches the client, followed
/// by a FIN; the client's extra data is dropped; the engine ends with 0.
#[test]
fn app_exiting_mid_transfer() {
    const APP_WRITES: usize = 3 << 20;
    let dir = TempDir::new("appexit");
    let mut s = session(standard(&dir, &[]), &ClientSetup::new(), "localhost");
    let app_in = s.engine.app_in.take().unwrap();
    let app_out = s.engine.app_out.take().unwrap();
    let app = std::thread::spawn(move || {
        let got = read_exact_fd(app_out.as_fd(), 100_000);
        let last = Stream::bytes(15, APP_WRITES);
        write_all_fd(app_in.as_fd(), &last, Instant::now() + DEADLINE).unwrap();
        // Exit: both ends close here.
        got
    });
    let mut received = Sha256::new();
    let mut stream = Stream::new(14, 1 << 30);
    let outcome =
        s.client
            .duplex_outcome(|buf| stream.fill(buf), |data| received.update(data), false);
    assert_eq!(outcome.end.unwrap(), End::Eof);
    assert_eq!(received.len, APP_WRITES as u64);
    assert_eq!(
        received.finish(),
        sha256_hex(&Stream::bytes(15, APP_WRITES)),
        "the app's data"
    );
    // The client could not send its whole gigabyte: the engine stopped
    // reading, then was gone.
    let err = outcome.send_error.expect("sending must have failed");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{err}"
    );
    assert!(app.join().unwrap() == Stream::bytes(14, 100_000));
    s.engine.wait_within(PROMPT).assert_clean(0);
}

/// A forged record after the handshake: what came before is delivered,
/// then 98 with the TLS library's reason.
#[test]
fn forged_record_after_the_handshake() {
    for v in [Versions::Tls13, Versions::Tls12] {
        let dir = TempDir::new("forged");
        let mut s = session(
            standard(&dir, &[]),
            &ClientSetup::new().versions(v),
            "localhost",
        );
        s.client.send(b"genuine").unwrap();
        let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        forged.extend(Stream::bytes(16, 0x40));
        s.client.sock.write_all(&forged).unwrap();
        assert_eq!(s.engine.app_read_to_eof(), b"genuine");
        s.engine.wait_within(PROMPT).assert_fatal(
            98,
            "TLS error: a record failed to decrypt: corrupted or forged data",
        );
        // The client is told.
        let mut buf = [0; 16];
        assert!(s.client.recv(&mut buf).is_err());
    }
}

/// The client's last handshake flight, application data and a forged
/// record in one segment (TLS 1.3): the handshake counts as done (the
/// information string is sent), the data is delivered, then 98.
#[test]
fn handshake_end_data_and_forged_record_in_one_read() {
    let dir = TempDir::new("forged1");
    let (client_sock, server_sock) = tcp_pair();
    let mut engine = standard(&dir, &["-d5"]).notify(5).spawn(Some(server_sock));
    let mut c = TlsClient::new(
        client_sock,
        &ClientSetup::new().versions(Versions::Tls13),
        "localhost",
    );
    // Hello out; the server's flight in; the client's Finished is queued
    // but not sent.
    c.flush().unwrap();
    while c.conn.is_handshaking() {
        c.conn.read_tls(&mut c.sock).unwrap();
        c.conn.process_new_packets().unwrap();
    }
    c.conn.writer().write_all(b"genuine").unwrap();
    let mut segment = Vec::new();
    while c.conn.wants_write() {
        c.conn.write_tls(&mut segment).unwrap();
    }
    segment.extend([0x17, 0x03, 0x03, 0x00, 0x40]);
    segment.extend(Stream::bytes(17, 0x40));
    c.sock.write_all(&segment).unwrap();
    let info = engine.read_notification();
    assert!(info.starts_with(b"SSL_PROTOCOL=TLSv1.3\0"), "{info:?}");
    assert_eq!(engine.app_read_to_eof(), b"genuine");
    engine.wait_within(PROMPT).assert_fatal(
        98,
        "TLS error: a record failed to decrypt: corrupted or forged data",
    );
}
