//! Session resumption across processes (`TICKETKEYFILE`): every
//! connection is served by a new s6-tlsd-io, and a ticket one process
//! issued resumes the session in the next. `openssl s_client -sess_out`
//! / `-sess_in` and rustls's own resumption store as clients; key
//! rotation; tickets bound to the service's certificate, client
//! verification mode and anchors; corrupted and truncated tickets; the
//! key file's checks; `SSL_SESSION_RESUMED` through s6-tlsd and
//! s6-ucspitlsd.

mod common;
mod superserver;

use common::*;
use der::asn1::OctetString;
use der::{Any, Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};
use rustls::client::Resumption;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use superserver::{direct, testapp_exe, tls_env, Dump, TLSD, UCSPITLSD};

const BOTH: [Versions; 2] = [Versions::Tls13, Versions::Tls12];

/// A ticket key whose bytes (its name first) depend on `seed`.
fn key(seed: u8) -> [u8; 80] {
    std::array::from_fn(|i| seed ^ (i as u8))
}

/// Writes `keys`, concatenated, to a file of mode 0600.
fn key_file(dir: &TempDir, name: &str, keys: &[[u8; 80]]) -> PathBuf {
    let path = dir.write(name, keys.concat());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// s6-tlsd-io with `args`, `-d 5`, the standard pair, `CAFILE` = the
/// standard CA, and `TICKETKEYFILE` = `keys`.
fn service(dir: &TempDir, args: &[&str], keys: &Path) -> Spawn {
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let mut words = args.to_vec();
    words.extend(["-d", "5"]);
    standard(dir, &words)
        .notify(5)
        .env("CAFILE", ca)
        .env("TICKETKEYFILE", keys)
}

fn entry(info: &[u8], name: &str) -> Option<String> {
    decode_info(info)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", String::from_utf8_lossy(info)))
        .1
}

/// The information string less `SSL_SESSION_RESUMED`.
fn without_resumed(info: &[u8]) -> Vec<(String, Option<String>)> {
    decode_info(info)
        .into_iter()
        .filter(|(n, _)| n != "SSL_SESSION_RESUMED")
        .collect()
}

// ---------------------------------------------------------------------
// openssl s_client

/// One `openssl s_client` session trusting the standard CA; the engine
/// must end cleanly.
fn s_client(dir: &TempDir, spawn: Spawn, args: &[&OsStr]) -> (String, Vec<u8>) {
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let (out, info, exit) = s_client_session(spawn, &ca, args);
    exit.assert_clean(0);
    (out, info)
}

fn version_flag(v: Versions) -> (&'static str, &'static str) {
    match v {
        Versions::Tls12 => ("-tls1_2", "TLSv1.2"),
        _ => ("-tls1_3", "TLSv1.3"),
    }
}

/// A first session saved with `-sess_out`, then `-sess_in` on a second
/// connection served by another process: `Reused`, with the same
/// information but for `SSL_SESSION_RESUMED`. The key file is made as
/// the manual page says, with `openssl rand 80`.
#[test]
fn openssl_resumes_across_processes() {
    for v in BOTH {
        let dir = TempDir::new("resume-openssl");
        let keys = dir.write("keys", run_openssl(["rand", "80"]));
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let sess = dir.path().join("sess.pem");
        let (flag, name) = version_flag(v);
        let (out, first) = s_client(
            &dir,
            service(&dir, &[], &keys),
            &[flag.as_ref(), "-sess_out".as_ref(), sess.as_os_str()],
        );
        assert!(out.contains(&format!("New, {name}")), "{out}");
        assert!(
            out.contains("TLS session ticket lifetime hint: 7200 (seconds)"),
            "{out}"
        );
        assert_eq!(
            entry(&first, "SSL_SESSION_RESUMED").as_deref(),
            Some("Initial")
        );
        let (out, second) = s_client(
            &dir,
            service(&dir, &[], &keys),
            &[flag.as_ref(), "-sess_in".as_ref(), sess.as_os_str()],
        );
        assert!(out.contains(&format!("Reused, {name}")), "{v:?}: {out}");
        assert_eq!(
            entry(&second, "SSL_SESSION_RESUMED").as_deref(),
            Some("Resumed")
        );
        assert_eq!(without_resumed(&first), without_resumed(&second));
    }
}

/// TICKETLIFETIME is the lifetime the tickets announce.
#[test]
fn ticket_lifetime_is_announced() {
    let dir = TempDir::new("resume-lifetime");
    let keys = key_file(&dir, "keys", &[key(1)]);
    let (out, _) = s_client(
        &dir,
        service(&dir, &[], &keys).env("TICKETLIFETIME", "60"),
        &["-tls1_3".as_ref()],
    );
    assert!(
        out.contains("TLS session ticket lifetime hint: 60 (seconds)"),
        "{out}"
    );
}

/// A ticket issued under key 1 still opens when key 1 is second in the
/// file (rotation has begun), and no longer once it is gone.
#[test]
fn key_rotation() {
    for v in BOTH {
        let dir = TempDir::new("resume-rotation");
        let (flag, name) = version_flag(v);
        let sess = dir.path().join("sess.pem");
        let old = key_file(&dir, "old", &[key(1)]);
        let rotated = key_file(&dir, "rotated", &[key(2), key(1)]);
        let gone = key_file(&dir, "gone", &[key(2)]);
        let save = [flag.as_ref(), "-sess_out".as_ref(), sess.as_os_str()];
        let load = [flag.as_ref(), "-sess_in".as_ref(), sess.as_os_str()];
        let (out, _) = s_client(&dir, service(&dir, &[], &old), &save);
        assert!(out.contains(&format!("New, {name}")), "{out}");
        let (out, info) = s_client(&dir, service(&dir, &[], &rotated), &load);
        assert!(out.contains(&format!("Reused, {name}")), "{v:?}: {out}");
        assert_eq!(
            entry(&info, "SSL_SESSION_RESUMED").as_deref(),
            Some("Resumed")
        );
        let (out, info) = s_client(&dir, service(&dir, &[], &gone), &load);
        assert!(out.contains(&format!("New, {name}")), "{v:?}: {out}");
        assert_eq!(
            entry(&info, "SSL_SESSION_RESUMED").as_deref(),
            Some("Initial")
        );
    }
}

/// Rewrites the ticket inside the saved OpenSSL session `from` (the
/// `[10]` field of its SSL_SESSION structure) with `change`, into `to`.
fn rewrite_ticket(dir: &TempDir, from: &Path, to: &Path, change: impl Fn(&mut Vec<u8>)) {
    let der = run_openssl([
        "sess_id".as_ref(),
        "-in".as_ref(),
        from.as_os_str(),
        "-outform".as_ref(),
        "DER".as_ref(),
    ]);
    let outer = Any::from_der(&der).expect("SSL_SESSION");
    let mut reader = SliceReader::new(outer.value()).unwrap();
    let mut fields = Vec::new();
    while !reader.is_finished() {
        fields.push(Any::decode(&mut reader).expect("SSL_SESSION field"));
    }
    let ticket_tag = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N10,
    };
    let field = fields
        .iter_mut()
        .find(|f| f.tag() == ticket_tag)
        .expect("a ticket in the saved session");
    let mut ticket = OctetString::from_der(field.value()).unwrap().into_bytes();
    change(&mut ticket);
    let inner = OctetString::new(ticket).unwrap().to_der().unwrap();
    *field = Any::new(ticket_tag, inner).unwrap();
    let body: Vec<u8> = fields.iter().flat_map(|f| f.to_der().unwrap()).collect();
    let der = Any::new(Tag::Sequence, body).unwrap().to_der().unwrap();
    let der_path = dir.write("changed.der", der);
    run_openssl([
        "sess_id".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        der_path.as_os_str(),
        "-out".as_ref(),
        to.as_os_str(),
    ]);
}

/// A ticket changed in one byte, cut in half, or cut shorter than its
/// header gets a full handshake, never an error exit (s_client() asserts
/// the clean end). The unchanged ticket resumes, so the changes are what
/// the server refused.
#[test]
fn corrupted_or_truncated_ticket_gets_a_full_handshake() {
    type Change = fn(&mut Vec<u8>);
    let changes: [(&str, Change); 4] = [
        ("unchanged", |_| {}),
        ("one byte", |t| {
            let i = t.len() / 2;
            t[i] ^= 0x01;
        }),
        ("half", |t| t.truncate(t.len() / 2)),
        ("header", |t| t.truncate(20)),
    ];
    for v in BOTH {
        let dir = TempDir::new("resume-corrupt");
        let keys = key_file(&dir, "keys", &[key(1)]);
        let (flag, name) = version_flag(v);
        let sess = dir.path().join("sess.pem");
        let changed = dir.path().join("changed.pem");
        s_client(
            &dir,
            service(&dir, &[], &keys),
            &[flag.as_ref(), "-sess_out".as_ref(), sess.as_os_str()],
        );
        for (what, change) in changes {
            rewrite_ticket(&dir, &sess, &changed, change);
            let (out, info) = s_client(
                &dir,
                service(&dir, &[], &keys),
                &[flag.as_ref(), "-sess_in".as_ref(), changed.as_os_str()],
            );
            let expected = if what == "unchanged" { "Reused" } else { "New" };
            assert!(
                out.contains(&format!("{expected}, {name}")),
                "{v:?} {what}: {out}"
            );
            let resumed = if what == "unchanged" {
                "Resumed"
            } else {
                "Initial"
            };
            assert_eq!(
                entry(&info, "SSL_SESSION_RESUMED").as_deref(),
                Some(resumed),
                "{v:?} {what}"
            );
        }
    }
}

// ---------------------------------------------------------------------
// rustls as the client, with its own resumption store

/// A client configuration from `setup` with a real in-memory session
/// store, kept across connections.
fn resuming(setup: &ClientSetup) -> Arc<ClientConfig> {
    let mut config = (*setup.config()).clone();
    config.resumption = Resumption::in_memory_sessions(32);
    Arc::new(config)
}

/// A client on `sock` (SNI localhost) with `config`, its handshake done.
fn client_on(
    sock: std::net::TcpStream,
    config: &Arc<ClientConfig>,
    stderr: impl FnOnce() -> String,
) -> TlsClient {
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    sock.set_write_timeout(Some(DEADLINE)).unwrap();
    let name = "localhost".try_into().unwrap();
    let conn = ClientConnection::new(config.clone(), name).expect("client connection");
    let mut client = TlsClient { conn, sock };
    if let Err(e) = client.handshake() {
        panic!("handshake: {e}; server: {}", stderr());
    }
    client
}

/// One session with a fresh engine from `spawn`: a byte from the app
/// (after any ticket), then the client's close_notify and the app's EOF. Returns what the
/// client saw of the handshake and the information string.
fn rustls_session(spawn: Spawn, config: &Arc<ClientConfig>) -> (HandshakeKind, Vec<u8>) {
    let (sock, server_sock) = tcp_pair();
    let mut engine = spawn.spawn(Some(server_sock));
    let mut client = client_on(sock, config, || format!("{:?}", engine.kill()));
    let info = engine.read_notification();
    engine.app_write(b"x").unwrap();
    assert_eq!(client.recv_exact(1), b"x");
    client.close_notify().unwrap();
    assert_eq!(engine.app_read_to_eof(), b"");
    engine.close_app_in();
    // Without -S the app's EOF ends the stream with a TCP EOF.
    let (_, end) = client.recv_to_end();
    assert_eq!(end.unwrap(), End::Eof);
    engine.wait().assert_clean(0);
    (client.conn.handshake_kind().expect("handshake done"), info)
}

/// rustls resumes from its store; the resumed session's PEER entries are
/// the client certificate the first handshake verified.
#[test]
fn rustls_resumes_with_the_client_certificate() {
    for v in BOTH {
        let dir = TempDir::new("resume-rustls");
        let keys = key_file(&dir, "keys", &[key(1)]);
        let config = resuming(&ClientSetup::new().versions(v).identity(&pki().client_full));
        let (kind, first) = rustls_session(service(&dir, &["-y"], &keys), &config);
        assert_eq!(kind, HandshakeKind::Full, "{v:?}");
        assert_eq!(
            entry(&first, "SSL_PEER_CERT_SUBJECT").as_deref(),
            Some(CLIENT_FULL_SUBJECT)
        );
        let (kind, second) = rustls_session(service(&dir, &["-y"], &keys), &config);
        assert_eq!(kind, HandshakeKind::Resumed, "{v:?}");
        assert_eq!(
            entry(&second, "SSL_SESSION_RESUMED").as_deref(),
            Some("Resumed")
        );
        assert_eq!(without_resumed(&first), without_resumed(&second), "{v:?}");
    }
}

/// No 0-RTT: the tickets allow no early data, so a client that would send
/// some has nothing to send it with.
#[test]
fn tickets_allow_no_early_data() {
    let dir = TempDir::new("resume-0rtt");
    let keys = key_file(&dir, "keys", &[key(1)]);
    let mut config = (*resuming(&ClientSetup::new().versions(Versions::Tls13))).clone();
    config.enable_early_data = true;
    let config = Arc::new(config);
    let (kind, _) = rustls_session(service(&dir, &[], &keys), &config);
    assert_eq!(kind, HandshakeKind::Full);
    let name = "localhost".try_into().unwrap();
    let mut conn = ClientConnection::new(config.clone(), name).expect("client connection");
    assert!(conn.early_data().is_none(), "a ticket allowed early data");
    // The ticket is there all the same: the next session resumes.
    let (kind, _) = rustls_session(service(&dir, &[], &keys), &config);
    assert_eq!(kind, HandshakeKind::Resumed);
}

/// Two services sharing one key file: a ticket from the first gets a full
/// handshake at the second when it serves another certificate, asks for
/// a client certificate where the first did not, or trusts other
/// anchors. The first service resumes its own ticket each time, so
/// tickets were there to be refused.
#[test]
fn ticket_opens_only_the_service_that_issued_it() {
    let dir = TempDir::new("resume-identity");
    let keys = key_file(&dir, "keys", &[key(1)]);
    let (rsa_cert, rsa_key) = pki().server_rsa.write(&dir, "rsa");
    let both_cas = dir.write("both.pem", pki().ca.cert_pem() + &pki().other_ca.cert_pem());
    type Other<'a> = Box<dyn Fn() -> Spawn + 'a>;
    let cases: [(&str, &[&str], Other); 3] = [
        (
            "another certificate",
            &[],
            Box::new(|| service(&dir, &[], &keys).cert(&rsa_cert, &rsa_key)),
        ),
        (
            "-y after none",
            &[],
            Box::new(|| service(&dir, &["-y"], &keys)),
        ),
        (
            "other anchors",
            &["-y"],
            Box::new(|| service(&dir, &["-y"], &keys).env("CAFILE", &both_cas)),
        ),
    ];
    for (what, issuer_args, other) in &cases {
        for v in BOTH {
            let setup = ClientSetup::new().versions(v).identity(&pki().client_full);
            let config = resuming(&setup);
            let (kind, _) = rustls_session(service(&dir, issuer_args, &keys), &config);
            assert_eq!(kind, HandshakeKind::Full, "{what} {v:?}");
            let (kind, _) = rustls_session(service(&dir, issuer_args, &keys), &config);
            assert_eq!(kind, HandshakeKind::Resumed, "{what} {v:?}: control");
            let (kind, info) = rustls_session(other(), &config);
            assert_eq!(kind, HandshakeKind::Full, "{what} {v:?}");
            assert_eq!(
                entry(&info, "SSL_SESSION_RESUMED").as_deref(),
                Some("Initial")
            );
        }
    }
}

// ---------------------------------------------------------------------
// The key file

/// What s6-tlsd-io says of a key file it refuses, before any handshake.
fn refused(dir: &TempDir, extra: &[(&str, &OsStr)]) -> Exit {
    let mut spawn = standard(dir, &[]);
    for (name, value) in extra {
        spawn = spawn.env(*name, *value);
    }
    spawn.spawn(None).wait_within(Duration::from_secs(10))
}

#[test]
fn key_file_checks() {
    let dir = TempDir::new("resume-keyfile");
    let readable = dir.write("readable", key(1));
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o640)).unwrap();
    let empty = key_file(&dir, "empty", &[]);
    let odd = dir.write("odd", [0u8; 100]);
    std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o600)).unwrap();
    let missing = dir.path().join("missing");
    let good = key_file(&dir, "good", &[key(1)]);
    let var = "TICKETKEYFILE";
    let shown = |p: &Path| format!("TICKETKEYFILE {}: ", p.display());
    refused(&dir, &[(var, readable.as_os_str())]).assert_fatal(
        96,
        &format!("{}readable by group or others (mode 640)", shown(&readable)),
    );
    refused(&dir, &[(var, empty.as_os_str())]).assert_fatal(96, &format!("{}empty", shown(&empty)));
    refused(&dir, &[(var, odd.as_os_str())]).assert_fatal(
        96,
        &format!(
            "{}100 bytes is not a whole number of 80-byte keys",
            shown(&odd)
        ),
    );
    refused(&dir, &[(var, missing.as_os_str())]).assert_fatal(
        96,
        &format!(
            "unable to read TICKETKEYFILE {}: No such file or directory",
            missing.display()
        ),
    );
    // A device never ends: refused before it is read.
    refused(&dir, &[(var, "/dev/zero".as_ref())])
        .assert_fatal(96, "TICKETKEYFILE /dev/zero: not a regular file");
    refused(
        &dir,
        &[(var, good.as_os_str()), ("TICKETLIFETIME", "1d".as_ref())],
    )
    .assert_fatal(100, "TICKETLIFETIME \"1d\": expected a number of seconds");
}

// ---------------------------------------------------------------------
// s6-tlsd

/// prog under s6-tlsd sees `SSL_SESSION_RESUMED`, and not the key file's
/// name.
#[test]
fn s6_tlsd_tells_prog_the_session_was_resumed() {
    let dir = TempDir::new("resume-tlsd");
    let env = tls_env(&dir);
    let config = resuming(&ClientSetup::new().versions(Versions::Tls13));
    for expected in ["Initial", "Resumed"] {
        let (mut server, sock) = direct(TLSD, &["--", testapp_exe(), "dump"], &env, &dir);
        let mut client = client_on(sock, &config, || server.stderr());
        let (data, end) = client.recv_to_end();
        assert_eq!(end.expect("the dump ends cleanly"), End::Eof);
        let dump = Dump::parse(&String::from_utf8(data).expect("UTF-8 dump"));
        assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
        assert_eq!(
            dump.env.get("SSL_SESSION_RESUMED").map(String::as_str),
            Some(expected)
        );
        assert!(!dump.env.contains_key("TICKETKEYFILE"));
    }
}

/// prog under s6-ucspitlsd reads `SSL_SESSION_RESUMED` in the
/// information that `Y` asks for.
#[test]
fn s6_ucspitlsd_y_says_the_session_was_resumed() {
    let dir = TempDir::new("resume-ucspitlsd");
    let env = tls_env(&dir);
    let config = resuming(&ClientSetup::new().versions(Versions::Tls13));
    let file = dir.path().join("info");
    let file_arg = file.to_string_lossy().into_owned();
    for expected in ["Initial", "Resumed"] {
        let _ = std::fs::remove_file(&file);
        let args = ["--", testapp_exe(), "info", "Y", &file_arg];
        let (mut server, sock) = direct(UCSPITLSD, &args, &env, &dir);
        let mut client = client_on(sock, &config, || server.stderr());
        client.send(b"ping\n").unwrap();
        assert_eq!(client.recv_exact(5), b"ping\n");
        client.close_notify().unwrap();
        let _ = client.recv_to_end();
        assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
        let info = std::fs::read(&file).expect("prog wrote the information");
        assert_eq!(
            entry(&info, "SSL_SESSION_RESUMED").as_deref(),
            Some(expected)
        );
    }
}
