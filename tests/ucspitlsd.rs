//! s6-ucspitlsd end to end: real processes on real loopback TCP, prog
//! being `s6-tls-testapp`, the client rustls (or plain TCP before TLS).
//! Run directly on an accepted connection (as a super-server would) when
//! the test needs prog's exit status and stderr, under `tcpserver` and
//! `systemd-socket-activate --inetd -a` when it is about what prog
//! inherits from a real super-server.

mod common;
mod superserver;

use common::{
    encode_info, pki, ClientSetup, End, Sha256, Stream, TempDir, TlsClient, Versions,
    CLIENT_FULL_SUBJECT,
};
use rustls::crypto::aws_lc_rs::cipher_suite;
use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, Instant};
use superserver::{
    assert_clean_signals, direct, direct_cmd, env_with, read_line, read_to_eof, testapp_exe,
    tls_env, unexecutable_progs, with_dirty_signals, Dump, Group, Kind, SuperServer, Trailer,
    SIGNAL_STATE, TLS_VARIABLES, UCSPITLSD,
};

/// `s6-ucspitlsd OPTS -- s6-tls-testapp APP...` on a fresh connection.
fn ucspitlsd(dir: &TempDir, opts: &[&str], app: &[&str]) -> (Group, std::net::TcpStream) {
    let mut args = opts.to_vec();
    args.extend(["--", testapp_exe()]);
    args.extend(app);
    direct(UCSPITLSD, &args, &tls_env(dir), dir)
}

fn path_str(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------
// The information string

/// Runs prog `info CMD FILE`: the client does its handshake, one echo
/// round trip and a close_notify; returns what prog read on SSLCTLFD
/// (the whole of it, up to EOF), the client and the server process.
fn info_session(
    opts: &[&str],
    command: &str,
    setup: &ClientSetup,
    server_name: &str,
) -> (Vec<u8>, TlsClient, Group, TempDir) {
    let dir = TempDir::new("ucspi-info");
    let file = path_str(&dir, "info");
    let (mut server, sock) = ucspitlsd(&dir, opts, &["info", command, &file]);
    let mut client = TlsClient::new(sock, setup, server_name);
    client
        .handshake()
        .unwrap_or_else(|e| panic!("handshake: {e}; stderr: {:?}", server.stderr()));
    client.send(b"ping\n").unwrap();
    assert_eq!(client.recv_exact(5), b"ping\n", "echo through the tunnel");
    client.close_notify().unwrap();
    let (rest, end) = client.recv_to_end();
    assert_eq!(rest, b"", "nothing after the echo");
    assert_eq!(end.unwrap(), End::Eof, "-s: prog's EOF is a TCP EOF");
    assert_eq!(server.exit_code(), 0, "prog; stderr: {:?}", server.stderr());
    let info = std::fs::read(&file).expect("prog wrote what it read on SSLCTLFD");
    (info, client, server, dir)
}

/// The five documented entries must come first, byte for byte; more
/// (well-formed) entries may follow; then the terminator and EOF.
fn assert_info(received: &[u8], five: &[(&str, Option<&str>)]) {
    let mut expected = encode_info(five);
    expected.pop(); // the terminator: more entries may come first
    assert!(
        received.starts_with(&expected) && received.ends_with(b"\0\0"),
        "information string\n got: {:?}\nwant: {:?}",
        String::from_utf8_lossy(received),
        String::from_utf8_lossy(&encode_info(five))
    );
    let extra = &received[expected.len()..received.len() - 1];
    for entry in extra.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        assert!(
            entry.starts_with(b"SSL_"),
            "unexpected extra entry {:?}",
            String::from_utf8_lossy(entry)
        );
    }
}

#[test]
fn big_y_returns_the_information_byte_for_byte() {
    let setup = ClientSetup::new()
        .versions(Versions::Tls13)
        .suites(&[cipher_suite::TLS13_CHACHA20_POLY1305_SHA256]);
    let (info, _client, server, _dir) = info_session(&["-v2"], "Y", &setup, "localhost");
    assert_info(
        &info,
        &[
            ("SSL_PROTOCOL", Some("TLSv1.3")),
            ("SSL_CIPHER", Some("TLS_CHACHA20_POLY1305_SHA256")),
            ("SSL_TLS_SNI_SERVERNAME", Some("localhost")),
            ("SSL_PEER_CERT_HASH", None),
            ("SSL_PEER_CERT_SUBJECT", None),
        ],
    );
    let accepted = format!(
        "s6-ucspitlsd: info: pid {} accepted opportunistic TLS\n",
        server.pid
    );
    let stderr = server.stderr();
    assert!(stderr.contains(&accepted), "-v 2 log: {stderr:?}");
    assert!(!stderr.contains("declined"), "{stderr:?}");
}

#[test]
fn big_y_information_with_tls12_client_certificate_and_no_sni() {
    let setup = ClientSetup::new()
        .versions(Versions::Tls12)
        .suites(&[cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256])
        .identity(&pki().client_full);
    // An IP address as the server name: no SNI is sent.
    let (info, _client, _server, _dir) = info_session(&["-y"], "Y", &setup, "127.0.0.1");
    let hash = format!("SHA256:{}", pki().client_full.sha256());
    assert_info(
        &info,
        &[
            ("SSL_PROTOCOL", Some("TLSv1.2")),
            ("SSL_CIPHER", Some("ECDHE-ECDSA-AES128-GCM-SHA256")),
            ("SSL_TLS_SNI_SERVERNAME", None),
            ("SSL_PEER_CERT_HASH", Some(&hash)),
            ("SSL_PEER_CERT_SUBJECT", Some(CLIENT_FULL_SUBJECT)),
        ],
    );
}

#[test]
fn small_y_sends_nothing_back() {
    let (info, client, _server, _dir) = info_session(&[], "y", &ClientSetup::new(), "localhost");
    assert_eq!(info, b"", "after y, SSLCTLFD is closed without data");
    assert!(!client.conn.is_handshaking());
}

#[test]
fn failed_handshake_after_big_y_gives_prog_eof_without_data() {
    let dir = TempDir::new("ucspi-hsfail");
    let file = path_str(&dir, "info");
    let (mut server, mut sock) = ucspitlsd(&dir, &[], &["info", "Y", &file]);
    superserver::write_all(&mut sock, b"EHLO this is not a ClientHello\r\n");
    // The engine answers with an alert (or nothing) and closes.
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    assert_eq!(server.exit_code(), 0, "prog; stderr: {:?}", server.stderr());
    assert_eq!(
        std::fs::read(&file).expect("prog's report"),
        b"",
        "prog read EOF on SSLCTLFD, no data"
    );
    // The engine may close its descriptors before its message is out.
    server.wait_stderr("s6-tlsd-io: fatal: TLS handshake failed");
}

// ---------------------------------------------------------------------
// What prog inherits, under real super-servers

fn dump_under(kind: Kind, opts: &[&str]) -> (Dump, Vec<(String, String)>) {
    let dir = TempDir::new("ucspi-env");
    let env = env_with(&dir, &[("KEEPME", "yes")]);
    let mut cmd = vec![UCSPITLSD];
    cmd.extend(opts);
    cmd.extend(["--", testapp_exe(), "dump"]);
    let server = SuperServer::start(kind, &cmd, &env, &dir);
    let mut sock = server.connect();
    let text = read_to_eof(&mut sock);
    let text = String::from_utf8(text).expect("UTF-8 dump");
    let dump = Dump::parse(&text);
    assert_eq!(
        dump.env.get("KEEPME").map(String::as_str),
        Some("yes"),
        "other variables pass through"
    );
    if kind == Kind::Tcpserver {
        assert_eq!(dump.env.get("PROTO").map(String::as_str), Some("TCP"));
    }
    assert_descriptors(&dump);
    drop(server);
    (dump, env)
}

/// fds 0 and 1: the connection; 2: stderr; then exactly the three new
/// ones, distinct, of the right kinds.
fn assert_descriptors(dump: &Dump) {
    let ctl = dump.fd_var("SSLCTLFD");
    let r = dump.fd_var("SSLREADFD");
    let w = dump.fd_var("SSLWRITEFD");
    let expected: BTreeSet<i32> = [0, 1, 2, ctl, r, w].into();
    assert_eq!(expected.len(), 6, "three new descriptors: {ctl} {r} {w}");
    let open: BTreeSet<i32> = dump.fds.keys().copied().collect();
    assert_eq!(open, expected, "prog's descriptors: {:?}", dump.fds);
    let net = dump.target(0);
    assert!(net.starts_with("socket:["), "fd 0: {net}");
    assert_eq!(dump.target(1), net, "fds 0 and 1 are the connection");
    assert!(dump.target(ctl).starts_with("socket:["), "SSLCTLFD");
    assert_ne!(dump.target(ctl), net, "SSLCTLFD is not the network");
    assert!(dump.target(r).starts_with("pipe:["), "SSLREADFD");
    assert!(dump.target(w).starts_with("pipe:["), "SSLWRITEFD");
    assert_ne!(dump.target(r), dump.target(w), "two different pipes");
}

fn assert_tls_variables(dump: &Dump, env: &[(String, String)], kept: bool) {
    for name in TLS_VARIABLES {
        let value = dump.env.get(*name);
        if kept {
            let (_, want) = env.iter().find(|(k, _)| k == name).unwrap();
            assert_eq!(value, Some(want), "{name} kept unchanged with -Z");
        } else {
            assert_eq!(value, None, "{name} must be removed");
        }
    }
}

#[test]
fn tcpserver_prog_gets_three_descriptors_and_no_tls_variables() {
    let (dump, env) = dump_under(Kind::Tcpserver, &[]);
    assert_tls_variables(&dump, &env, false);
}

#[test]
fn tcpserver_prog_keeps_tls_variables_with_big_z() {
    let (dump, env) = dump_under(Kind::Tcpserver, &["-Z"]);
    assert_tls_variables(&dump, &env, true);
}

#[test]
fn options_after_prog_belong_to_prog() {
    let dir = TempDir::new("ucspi-argv");
    let (mut server, mut sock) = direct(
        UCSPITLSD,
        &["-v2", testapp_exe(), "dump", "-", "-Z", "--", "-S"],
        &tls_env(&dir),
        &dir,
    );
    let dump = Dump::parse(&String::from_utf8(read_to_eof(&mut sock)).unwrap());
    assert_eq!(dump.args, ["-Z", "--", "-S"], "prog's arguments, untouched");
    assert_tls_variables(&dump, &[], false);
    assert_descriptors(&dump);
    assert_eq!(server.exit_code(), 0);
}

#[test]
fn socket_activate_prog_gets_three_descriptors_and_no_tls_variables() {
    let (dump, env) = dump_under(Kind::SocketActivate, &["-z"]);
    assert_tls_variables(&dump, &env, false);
}

#[test]
fn socket_activate_prog_keeps_tls_variables_with_keep() {
    let (dump, env) = dump_under(Kind::SocketActivate, &["--keep"]);
    assert_tls_variables(&dump, &env, true);
}

// ---------------------------------------------------------------------
// The helper's command byte

#[test]
fn closing_the_control_socket_declines_and_the_connection_closes_with_prog() {
    let dir = TempDir::new("ucspi-decline");
    let (mut server, mut sock) = ucspitlsd(&dir, &["-v", "2"], &["decline"]);
    assert_eq!(read_line(&mut sock), "helper exit 0\n");
    // The helper is gone, prog is still there: the connection is open.
    assert_eq!(read_line(&mut sock), "bye\n");
    assert_eq!(read_to_eof(&mut sock), b"", "EOF once prog exits");
    assert_eq!(server.exit_code(), 0);
    assert_eq!(
        server.stderr(),
        format!(
            "s6-ucspitlsd: info: pid {} declined opportunistic TLS\n",
            server.pid
        )
    );
}

#[test]
fn unknown_command_byte_makes_the_helper_exit_100() {
    for byte in ["x", "n", "\u{7f}"] {
        let dir = TempDir::new("ucspi-badcmd");
        let (mut server, mut sock) = ucspitlsd(&dir, &["-v2"], &["cmd", byte]);
        assert_eq!(
            read_line(&mut sock),
            "helper exit 100\n",
            "command {byte:?}"
        );
        assert_eq!(read_to_eof(&mut sock), b"");
        assert_eq!(server.exit_code(), 0);
        let stderr = server.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one message: {stderr:?}");
        assert!(
            lines[0].starts_with("s6-ucspitlsd: fatal: ") && lines[0].contains("command"),
            "{stderr:?}"
        );
    }
}

/// prog dies right after `Y` without writing anything: nothing can ever
/// move, so the engine ends at once — no timeout needed — and a silent
/// client sees the connection close.
#[test]
fn prog_dying_right_after_big_y_with_a_silent_client_closes_the_connection() {
    let dir = TempDir::new("ucspi-die");
    let (mut server, mut sock) = ucspitlsd(&dir, &["-v2"], &["die-after-Y"]);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    sock.read_to_end(&mut rest)
        .unwrap_or_else(|e| panic!("the connection must close: {e}"));
    assert_eq!(rest, b"");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.exit_code(), 0);
    server.wait_stderr("accepted opportunistic TLS");
}

#[test]
fn prog_dying_right_after_big_y_hangs_nothing() {
    let dir = TempDir::new("ucspi-die-hs");
    let (mut server, sock) = ucspitlsd(&dir, &[], &["die-after-Y"]);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
    client
        .sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let hung = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    match client.handshake() {
        Ok(()) => {
            // The engine completes the handshake (prog may have written
            // something before dying), then the connection ends.
            let (data, end) = client.recv_to_end();
            assert_eq!(data, b"");
            if let Err(e) = end {
                assert!(!hung(&e), "hung: {e}");
            }
        }
        Err(e) => assert!(!hung(&e), "hung in the handshake: {e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert_eq!(server.exit_code(), 0);
}

// ---------------------------------------------------------------------
// Data through the tunnel

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn cleartext_written_before_the_handshake_arrives_intact_and_in_order() {
    let dir = TempDir::new("ucspi-early");
    let (mut server, sock) = ucspitlsd(&dir, &[], &["early", "40000"]);
    let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
    client.handshake().unwrap();
    let (data, end) = client.recv_to_end();
    let mut expected = pattern(80_000);
    expected.extend_from_slice(b"END\n");
    assert!(data == expected, "{} bytes, in order", data.len());
    assert_eq!(end.unwrap(), End::Eof);
    assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
}

/// Runs the full-duplex `hash SEND RECV` app; the client sends
/// `upload` bytes (then a close_notify if `close`) while reading
/// `SEND` bytes and the trailer. Returns the trailer, the digests of what
/// the client sent and received, and how the server's data ended.
fn hash_session(opts: &[&str], send: u64, recv: &str, upload: u64, close: bool) -> HashResult {
    let dir = TempDir::new("ucspi-hash");
    let (mut server, sock) = ucspitlsd(&dir, opts, &["hash", &send.to_string(), recv]);
    let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
    client.handshake().unwrap();
    let mut source = Stream::new(upload ^ 0x1234, upload);
    let (mut sent, mut received, mut tail) = (Sha256::new(), Sha256::new(), Vec::new());
    let end = superserver::duplex(
        &mut client,
        |buf| {
            let n = source.fill(buf);
            sent.update(&buf[..n]);
            n
        },
        |data| {
            let body = (send - received.len).min(data.len() as u64) as usize;
            received.update(&data[..body]);
            tail.extend_from_slice(&data[body..]);
        },
        close,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}; stderr: {:?}", server.stderr()));
    assert_eq!(server.exit_code(), 0, "prog; stderr: {:?}", server.stderr());
    assert_eq!(received.len, send, "the app's data, complete");
    let trailer = Trailer::parse(&tail);
    HashResult {
        trailer,
        sent: sent.finish(),
        received: received.finish(),
        end,
    }
}

struct HashResult {
    trailer: Trailer,
    sent: String,
    received: String,
    end: End,
}

impl HashResult {
    fn assert_intact(&self, up: u64, down: u64) {
        assert_eq!(self.trailer.recv_len, up, "bytes the app received");
        assert_eq!(self.trailer.recv_hash, self.sent, "SHA-256 client to app");
        assert_eq!(self.trailer.sent_len, down, "bytes the app sent");
        assert_eq!(
            self.trailer.sent_hash, self.received,
            "SHA-256 app to client"
        );
    }
}

#[test]
fn sixty_four_mib_each_way_at_once() {
    const N: u64 = 64 << 20;
    let result = hash_session(&[], N, "eof", N, true);
    result.assert_intact(N, N);
    assert_eq!(result.end, End::Eof);
}

// Issue 4: the last bytes of either side are never held back.

#[test]
fn last_reply_reaches_the_client_when_the_app_exits_at_once() {
    for (size, opts, end) in [
        (8u64 << 20, &[][..], End::Eof),
        (1, &[], End::Eof),
        (8 << 20, &["-S"], End::CloseNotify),
        (1, &["-S"], End::CloseNotify),
    ] {
        let result = hash_session(opts, size, "0", 0, false);
        result.assert_intact(0, size);
        assert_eq!(result.end, end, "{size} bytes, {opts:?}");
    }
}

#[test]
fn upload_with_nothing_after_it_reaches_the_app_completely() {
    for size in [8u64 << 20, 1] {
        let result = hash_session(&[], 0, &size.to_string(), size, false);
        result.assert_intact(size, 0);
    }
}

// ---------------------------------------------------------------------
// Half-close, seen from the client

#[test]
fn client_half_close_with_close_notify_still_gets_the_whole_answer() {
    const REQUEST: u64 = 100_000;
    const ANSWER: u64 = 1 << 20;
    // (options, also half-close TCP after the close_notify, expected end)
    for (opts, tcp_shutdown, expected_end) in [
        (&[][..], false, End::Eof),
        (&[], true, End::Eof),
        (&["-S"], true, End::CloseNotify),
    ] {
        let dir = TempDir::new("ucspi-halfclose");
        let (mut server, sock) = ucspitlsd(&dir, opts, &["reply", &ANSWER.to_string()]);
        let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
        client.handshake().unwrap();
        let request = Stream::bytes(99, REQUEST as usize);
        client.send(&request).unwrap();
        client.close_notify().unwrap();
        if tcp_shutdown {
            client.shutdown_write();
        }
        let (data, end) = client.recv_to_end();
        let end = end.unwrap_or_else(|e| panic!("{opts:?}: {e}; {:?}", server.stderr()));
        assert_eq!(end, expected_end, "{opts:?}");
        assert!(data.len() as u64 > ANSWER, "answer and trailer");
        let (answer, tail) = data.split_at(ANSWER as usize);
        let trailer = Trailer::parse(tail);
        assert_eq!(trailer.recv_len, REQUEST);
        assert_eq!(trailer.recv_hash, common::sha256_hex(&request));
        assert_eq!(trailer.sent_len, ANSWER);
        assert_eq!(trailer.sent_hash, common::sha256_hex(answer));
        assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
    }
}

/// prog writes `answer` bytes and closes SSLWRITEFD, then reads to EOF.
/// The client reads the answer to its end, then (if `upload` is some)
/// sends that many bytes and a close_notify; returns how the answer
/// ended and prog's report.
fn app_eof_session(opts: &[&str], versions: Versions, upload: Option<u64>) -> (End, Trailer) {
    const ANSWER: u64 = 300_000;
    let dir = TempDir::new("ucspi-appeof");
    let report = path_str(&dir, "report");
    let (mut server, sock) = ucspitlsd(
        &dir,
        opts,
        &["write-then-read", &ANSWER.to_string(), &report],
    );
    let mut client = TlsClient::new(sock, &ClientSetup::new().versions(versions), "localhost");
    client.handshake().unwrap();
    let (answer, end) = client.recv_to_end();
    let end = end.unwrap_or_else(|e| panic!("{e}; {:?}", server.stderr()));
    assert_eq!(answer.len() as u64, ANSWER);
    let mut uploaded = Sha256::new();
    if let Some(n) = upload {
        let data = Stream::bytes(5, n as usize);
        uploaded.update(&data);
        client.send(&data).unwrap();
        client.close_notify().unwrap();
    } else {
        // Nothing more from the client: let prog see its EOF.
        let _ = client.sock.shutdown(std::net::Shutdown::Write);
    }
    assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
    let trailer = Trailer::parse(&std::fs::read(&report).expect("prog's report"));
    assert_eq!(trailer.sent_hash, common::sha256_hex(&answer));
    if upload.is_some() {
        assert_eq!(trailer.recv_len, uploaded.len, "upload after the app's EOF");
        assert_eq!(trailer.recv_hash, uploaded.finish());
    }
    (end, trailer)
}

#[test]
fn app_eof_with_small_s_is_a_tcp_eof_and_the_client_can_still_send() {
    let (end, _) = app_eof_session(&["-s"], Versions::Tls13, Some(200_000));
    assert_eq!(end, End::Eof, "-s: no close_notify");
    let (end, _) = app_eof_session(&[], Versions::Tls12, Some(200_000));
    assert_eq!(end, End::Eof, "-s under TLS 1.2 too");
}

#[test]
fn app_eof_with_big_s_is_a_close_notify_and_tls13_stays_full_duplex() {
    let (end, _) = app_eof_session(&["-S"], Versions::Tls13, Some(200_000));
    assert_eq!(end, End::CloseNotify);
}

#[test]
fn app_eof_with_big_s_under_tls12_ends_the_connection() {
    let (end, trailer) = app_eof_session(&["-S"], Versions::Tls12, None);
    assert_eq!(end, End::CloseNotify);
    assert_eq!(
        trailer.recv_len, 0,
        "TLS 1.2: nothing is read after close_notify"
    );
}

// ---------------------------------------------------------------------
// Options reach s6-tlsd-io; the TLS variables still reach it

/// prog `info y`: the client handshakes with `setup` and `server_name`,
/// does one echo round trip, then ends with `finish`; returns the client
/// and the server process after prog exited.
fn echo_session(
    opts: &[&str],
    setup: &ClientSetup,
    server_name: &str,
    finish: impl FnOnce(&mut TlsClient),
) -> (TlsClient, Group) {
    let dir = TempDir::new("ucspi-opts");
    let file = path_str(&dir, "info");
    let (mut server, sock) = ucspitlsd(&dir, opts, &["info", "y", &file]);
    let mut client = TlsClient::new(sock, setup, server_name);
    client
        .handshake()
        .unwrap_or_else(|e| panic!("handshake: {e}; stderr: {:?}", server.stderr()));
    client.send(b"ping\n").unwrap();
    assert_eq!(client.recv_exact(5), b"ping\n");
    finish(&mut client);
    assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
    (client, server)
}

#[test]
fn sni_level_selects_the_named_certificate_which_prog_never_sees() {
    let setup = ClientSetup::new().trust(common::Trust::Any);
    for (opts, name, leaf) in [
        (&["--sni"][..], "a.example", &pki().server_rsa),
        (&["-k", "1"], "A.Example", &pki().server_rsa),
        (&["-k1"], "localhost", &pki().server_p256),
        (&[], "a.example", &pki().server_p256),
        // Every level above 2 is 2: the named pairs only.
        (&["-k3"], "a.example", &pki().server_rsa),
        (&["--sni-level=42"], "a.example", &pki().server_rsa),
    ] {
        let (client, _) = echo_session(opts, &setup, name, |c| c.close_notify().unwrap());
        assert!(
            client.server_leaf() == leaf.cert,
            "{opts:?} with SNI {name}: wrong certificate"
        );
    }
}

#[test]
fn enforce_close_notify_reaches_the_engine() {
    let eof_without_alert = |c: &mut TlsClient| c.shutdown_write();
    let (_, server) = echo_session(&["-J"], &ClientSetup::new(), "localhost", eof_without_alert);
    server.wait_stderr("s6-tlsd-io: fatal: remote closed connection without a close_notify");
    let (_, server) = echo_session(&[], &ClientSetup::new(), "localhost", eof_without_alert);
    assert_eq!(server.stderr(), "", "-j: a plain EOF is a normal end");
}

#[test]
fn handshake_timeout_bounds_a_silent_client() {
    let dir = TempDir::new("ucspi-hstimeout");
    let file = path_str(&dir, "info");
    let (mut server, mut sock) =
        ucspitlsd(&dir, &["--handshake-timeout=500"], &["info", "Y", &file]);
    let started = Instant::now();
    assert_eq!(read_to_eof(&mut sock), b"");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.exit_code(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), b"", "EOF on SSLCTLFD");
    server.wait_stderr("s6-tlsd-io: fatal: timed out: handshake not complete");
}

// ---------------------------------------------------------------------
// Exit codes of s6-ucspitlsd itself

#[test]
fn usage_errors_exit_100_before_anything_runs() {
    for args in [
        &[][..],
        &["-v2"],
        &["-x", testapp_exe(), "dump"],
        &["-v", "two", testapp_exe(), "dump"],
        &["-K", "-1", testapp_exe(), "dump"],
        &["--nope", testapp_exe(), "dump"],
        &["--keep=1", testapp_exe(), "dump"],
        &["-d", "3", testapp_exe(), "dump"],
    ] {
        let dir = TempDir::new("ucspi-usage");
        let (mut server, mut sock) = direct(UCSPITLSD, args, &tls_env(&dir), &dir);
        assert_eq!(read_to_eof(&mut sock), b"", "{args:?}: prog never ran");
        assert_eq!(server.exit_code(), 100, "{args:?}");
        let stderr = server.stderr();
        assert!(
            stderr.lines().count() == 2
                && stderr.starts_with("s6-ucspitlsd: fatal: ")
                && stderr.contains("\ns6-ucspitlsd: usage: s6-ucspitlsd "),
            "{args:?}: {stderr:?}"
        );
    }
}

/// prog not found: 127; found but not executable: 126 (skalibs' codes).
#[test]
fn prog_that_cannot_be_executed_exits_127_or_126_and_the_helper_goes_quietly() {
    let dir = TempDir::new("ucspi-noexec");
    for (prog, code, why) in unexecutable_progs(&dir) {
        let (mut server, mut sock) = direct(UCSPITLSD, &["--", &prog], &tls_env(&dir), &dir);
        assert_eq!(read_to_eof(&mut sock), b"", "{prog}: the connection closes");
        assert_eq!(server.exit_code(), code, "{prog}");
        assert_eq!(
            server.stderr(),
            format!("s6-ucspitlsd: fatal: unable to exec {prog}: {why}\n")
        );
    }
}

// ---------------------------------------------------------------------
// The application library outside a UCSPI-TLS server

#[test]
fn the_library_says_clearly_what_is_missing_and_closes_nothing() {
    let dir = TempDir::new("ucspi-lib");
    for (env, expected) in [
        (
            vec![],
            "SSLCTLFD is not set: not running under a UCSPI-TLS server",
        ),
        (
            vec![
                ("SSLCTLFD", "99"),
                ("SSLREADFD", "98"),
                ("SSLWRITEFD", "97"),
            ],
            "SSLCTLFD=\"99\" is not an open descriptor",
        ),
        (
            vec![("SSLCTLFD", "2"), ("SSLREADFD", "x"), ("SSLWRITEFD", "1")],
            "SSLREADFD=\"x\" is not an open descriptor",
        ),
        (
            vec![("SSLCTLFD", "2"), ("SSLREADFD", "0")],
            "SSLWRITEFD is not set",
        ),
        // One descriptor must never get two owners (a double close).
        (
            vec![("SSLCTLFD", "2"), ("SSLREADFD", "0"), ("SSLWRITEFD", "0")],
            "SSLREADFD and SSLWRITEFD both name descriptor 0",
        ),
    ] {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cmd = std::process::Command::new(testapp_exe());
        cmd.args(["hash", "0", "0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        let mut app = Group::spawn(cmd, &env, &dir, "testapp");
        assert_eq!(app.exit_code(), 1, "{env:?}");
        let stderr = app.stderr();
        assert!(stderr.contains(expected), "{env:?}: {stderr:?}");
    }
}

/// prog gets clean signal dispositions whatever s6-ucspitlsd inherited:
/// nothing ignored (SIGCHLD included), nothing blocked.
#[test]
fn prog_inherits_no_ignored_or_blocked_signal() {
    let dir = TempDir::new("ucspi-signals");
    let mut cmd = std::process::Command::new(UCSPITLSD);
    cmd.arg("--").args(SIGNAL_STATE);
    with_dirty_signals(&mut cmd);
    let (mut server, mut sock) = direct_cmd(cmd, &tls_env(&dir), &dir);
    let out = read_to_eof(&mut sock);
    assert_clean_signals(&out);
    assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
}

/// `Ucspi::from_env` takes the descriptors once per process: a second
/// call, while the first owner holds them, is refused, so no descriptor
/// ever gets two owners (a double close of whatever reused its number).
#[test]
fn the_library_takes_the_descriptors_once_per_process() {
    let dir = TempDir::new("ucspi-twice");
    let (mut server, mut sock) = ucspitlsd(&dir, &["-v2"], &["take-twice"]);
    assert_eq!(
        String::from_utf8_lossy(&read_to_eof(&mut sock)),
        "second: the UCSPI-TLS descriptors were already taken: Ucspi::from_env succeeds once per process\n"
    );
    assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
}
