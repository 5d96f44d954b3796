//! s6-tlsd end to end: the handshake's information becomes prog's
//! environment, prog gets the cleartext on fds 0/1 and nothing else, and
//! a failing s6-tlsd-io means prog never runs and s6-tlsd exits with the
//! engine's code.

mod common;
mod superserver;

use common::{pki, ClientSetup, End, KeyKind, TempDir, TlsClient, Versions, CLIENT_FULL_SUBJECT};
use rcgen::DnType;
use rustls::crypto::aws_lc_rs::cipher_suite;
use std::collections::BTreeSet;
use std::io::Read;
use std::process::Command;
use std::time::Duration;
use superserver::{
    assert_clean_signals, direct, direct_cmd, env_with, testapp_exe, tls_env, unexecutable_progs,
    with_dirty_signals, Dump, Group, Kind, SuperServer, SIGNAL_STATE, TLSD, TLS_VARIABLES,
};

/// Stale values that must not survive into prog's environment when the
/// information says the variable is unset.
const STALE: &[(&str, &str)] = &[
    ("SSL_TLS_SNI_SERVERNAME", "stale.example"),
    ("SSL_PEER_CERT_HASH", "SHA256:stale"),
    ("SSL_PEER_CERT_SUBJECT", "CN=stale"),
    ("KEEPME", "yes"),
];

/// Reads prog's dump through the tunnel, to its end.
fn read_dump(client: &mut TlsClient) -> Dump {
    let (data, end) = client.recv_to_end();
    assert_eq!(end.expect("the dump ends cleanly"), End::Eof);
    Dump::parse(&String::from_utf8(data).expect("UTF-8 dump"))
}

/// prog sees fd 0 and 1 as two different pipes, 2, and nothing else.
fn assert_cleartext_fds(dump: &Dump) {
    let open: BTreeSet<i32> = dump.fds.keys().copied().collect();
    assert_eq!(open, [0, 1, 2].into(), "prog's descriptors: {:?}", dump.fds);
    assert!(
        dump.target(0).starts_with("pipe:["),
        "fd 0: {}",
        dump.target(0)
    );
    assert!(
        dump.target(1).starts_with("pipe:["),
        "fd 1: {}",
        dump.target(1)
    );
    assert_ne!(dump.target(0), dump.target(1));
    for var in ["SSLCTLFD", "SSLREADFD", "SSLWRITEFD"] {
        assert!(!dump.env.contains_key(var), "{var} under s6-tlsd");
    }
}

fn env_value<'a>(dump: &'a Dump, name: &str) -> Option<&'a str> {
    dump.env.get(name).map(String::as_str)
}

#[test]
fn tcpserver_prog_environment_after_the_handshake() {
    let dir = TempDir::new("tlsd-env");
    let env = env_with(&dir, STALE);
    let server = SuperServer::start(
        Kind::Tcpserver,
        &[TLSD, "--", testapp_exe(), "dump"],
        &env,
        &dir,
    );
    let setup = ClientSetup::new()
        .versions(Versions::Tls13)
        .suites(&[cipher_suite::TLS13_AES_128_GCM_SHA256]);
    let mut client = TlsClient::new(server.connect(), &setup, "localhost");
    client.handshake().unwrap();
    let dump = read_dump(&mut client);
    assert_eq!(env_value(&dump, "SSL_PROTOCOL"), Some("TLSv1.3"));
    assert_eq!(
        env_value(&dump, "SSL_CIPHER"),
        Some("TLS_AES_128_GCM_SHA256")
    );
    assert_eq!(
        env_value(&dump, "SSL_TLS_SNI_SERVERNAME"),
        Some("localhost")
    );
    assert_eq!(
        env_value(&dump, "SSL_PEER_CERT_HASH"),
        None,
        "unset: absent"
    );
    assert_eq!(
        env_value(&dump, "SSL_PEER_CERT_SUBJECT"),
        None,
        "unset: absent"
    );
    assert_eq!(env_value(&dump, "KEEPME"), Some("yes"));
    assert_eq!(
        env_value(&dump, "PROTO"),
        Some("TCP"),
        "tcpserver's variables"
    );
    for name in TLS_VARIABLES {
        assert_eq!(env_value(&dump, name), None, "{name} must be removed");
    }
    assert_cleartext_fds(&dump);
}

/// `s6-tlsd OPTS -- s6-tls-testapp dump` on a fresh connection with the
/// standard TLS environment plus `extra`; the client's handshake must
/// succeed; returns the dump and the variables the server had.
fn dump_direct(
    opts: &[&str],
    extra: &[(&str, &str)],
    setup: &ClientSetup,
    server_name: &str,
) -> (Dump, Vec<(String, String)>) {
    let dir = TempDir::new("tlsd-dump");
    let env = env_with(&dir, extra);
    let mut args = opts.to_vec();
    args.extend(["--", testapp_exe(), "dump"]);
    let (mut server, sock) = direct(TLSD, &args, &env, &dir);
    let mut client = TlsClient::new(sock, setup, server_name);
    client
        .handshake()
        .unwrap_or_else(|e| panic!("handshake: {e}; stderr: {:?}", server.stderr()));
    let dump = read_dump(&mut client);
    assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
    assert_cleartext_fds(&dump);
    (dump, env)
}

#[test]
fn tls12_without_sni_unsets_the_server_name() {
    let setup = ClientSetup::new()
        .versions(Versions::Tls12)
        .suites(&[cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]);
    let (dump, _) = dump_direct(&[], STALE, &setup, "127.0.0.1");
    assert_eq!(env_value(&dump, "SSL_PROTOCOL"), Some("TLSv1.2"));
    assert_eq!(
        env_value(&dump, "SSL_CIPHER"),
        Some("ECDHE-ECDSA-AES256-GCM-SHA384")
    );
    for unset in [
        "SSL_TLS_SNI_SERVERNAME",
        "SSL_PEER_CERT_HASH",
        "SSL_PEER_CERT_SUBJECT",
    ] {
        assert_eq!(env_value(&dump, unset), None, "{unset}");
    }
}

#[test]
fn big_z_keeps_the_tls_variables() {
    for opt in ["-Z", "--keep"] {
        let (dump, env) = dump_direct(&[opt], &[], &ClientSetup::new(), "localhost");
        for name in TLS_VARIABLES {
            let (_, want) = env.iter().find(|(k, _)| k == name).unwrap();
            assert_eq!(dump.env.get(*name), Some(want), "{name} with {opt}");
        }
    }
}

#[test]
fn client_certificate_in_the_environment() {
    let setup = ClientSetup::new().identity(&pki().client_full);
    let (dump, _) = dump_direct(&["-y"], STALE, &setup, "localhost");
    let hash = format!("SHA256:{}", pki().client_full.sha256());
    assert_eq!(env_value(&dump, "SSL_PEER_CERT_HASH"), Some(hash.as_str()));
    assert_eq!(
        env_value(&dump, "SSL_PEER_CERT_SUBJECT"),
        Some(CLIENT_FULL_SUBJECT)
    );
    for name in TLS_VARIABLES {
        assert_eq!(env_value(&dump, name), None, "{name} must be removed");
    }
}

#[test]
fn long_information_is_read_to_its_terminator() {
    // A subject longer than any single read of the notification pipe.
    let cn = "x".repeat(9000);
    let leaf = pki()
        .ca
        .client(&[(DnType::CommonName, cn.as_str())], KeyKind::EcdsaP256);
    let setup = ClientSetup::new().identity(&leaf);
    let (dump, _) = dump_direct(&["-Y"], &[], &setup, "localhost");
    assert_eq!(
        env_value(&dump, "SSL_PEER_CERT_SUBJECT"),
        Some(format!("CN={cn}").as_str())
    );
    assert_eq!(
        env_value(&dump, "SSL_PEER_CERT_HASH"),
        Some(format!("SHA256:{}", leaf.sha256()).as_str())
    );
}

#[test]
fn cleartext_flows_both_ways_through_prog() {
    let dir = TempDir::new("tlsd-cat");
    let (mut server, sock) = direct(TLSD, &["--", "cat"], &tls_env(&dir), &dir);
    let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
    client.handshake().unwrap();
    let data = common::Stream::bytes(3, 1 << 20);
    let mut offset = 0;
    let mut echoed = Vec::new();
    let end = superserver::duplex(
        &mut client,
        |buf| {
            let n = buf.len().min(data.len() - offset);
            buf[..n].copy_from_slice(&data[offset..offset + n]);
            offset += n;
            n
        },
        |d| echoed.extend_from_slice(d),
        true,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(end, End::Eof);
    assert!(echoed == data, "echo of 1 MiB: {} bytes back", echoed.len());
    assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
}

// ---------------------------------------------------------------------
// The engine fails: prog never runs

/// Runs `s6-tlsd OPTS -- s6-tls-testapp dump MARKER` with `env`, lets
/// `client` do what it does, and returns s6-tlsd's exit code and stderr,
/// checking that prog never ran.
fn failing(
    opts: &[&str],
    env: impl FnOnce(&TempDir) -> Vec<(String, String)>,
    client: impl FnOnce(std::net::TcpStream),
) -> (i32, String) {
    let dir = TempDir::new("tlsd-fail");
    let marker = dir.path().join("prog-ran");
    let marker_arg = marker.to_string_lossy().into_owned();
    let mut args = opts.to_vec();
    args.extend(["--", testapp_exe(), "dump", &marker_arg]);
    let env = env(&dir);
    let (mut server, sock): (Group, _) = direct(TLSD, &args, &env, &dir);
    client(sock);
    let code = server.exit_code();
    assert!(!marker.exists(), "prog ran although the engine failed");
    (code, server.stderr())
}

#[test]
fn garbage_instead_of_a_client_hello_exits_98_without_prog() {
    let (code, stderr) = failing(&[], tls_env, |mut sock| {
        superserver::write_all(&mut sock, b"GET / HTTP/1.0\r\n\r\n");
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
    });
    assert_eq!(code, 98, "{stderr:?}");
    assert!(
        stderr.starts_with("s6-tlsd-io: fatal: TLS handshake failed"),
        "{stderr:?}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one failure, one line: {stderr:?}"
    );
}

/// At -v2 s6-tlsd says what it saw, as information, never as a second
/// fatal line.
#[test]
fn a_failed_handshake_at_v2_has_one_fatal_line_and_an_info_line() {
    let (code, stderr) = failing(&["-v2"], tls_env, |mut sock| {
        superserver::write_all(&mut sock, b"GET / HTTP/1.0\r\n\r\n");
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
    });
    assert_eq!(code, 98, "{stderr:?}");
    let fatal: Vec<&str> = stderr.lines().filter(|l| l.contains(": fatal: ")).collect();
    assert_eq!(fatal.len(), 1, "{stderr:?}");
    assert!(fatal[0].starts_with("s6-tlsd-io: fatal: "), "{stderr:?}");
    assert!(
        stderr.contains("s6-tlsd: info: s6-tlsd-io exited 98 before the handshake completed\n"),
        "{stderr:?}"
    );
}

#[test]
fn missing_mandatory_client_certificate_exits_98_without_prog() {
    let (code, stderr) = failing(&["-y"], tls_env, |sock| {
        let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
        // TLS 1.3: the client may finish first; the server's alert ends it.
        let _ = client.handshake();
        let _ = client.recv_to_end();
    });
    assert_eq!(code, 98, "{stderr:?}");
}

#[test]
fn client_closing_before_the_handshake_exits_98_without_prog() {
    let (code, stderr) = failing(&[], tls_env, drop);
    assert_eq!(code, 98, "{stderr:?}");
}

#[test]
fn configuration_error_exits_with_the_engine_code_without_prog() {
    let (code, stderr) = failing(
        &[],
        |dir| {
            let mut env = tls_env(dir);
            let bad = dir.write("bad.pem", "not a key\n");
            for (k, v) in env.iter_mut() {
                if k == "KEYFILE" {
                    *v = bad.to_string_lossy().into_owned();
                }
            }
            env
        },
        drop,
    );
    assert_eq!(code, 96, "{stderr:?}");
    assert!(stderr.starts_with("s6-tlsd-io: fatal: "), "{stderr:?}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one failure, one line: {stderr:?}"
    );
}

// ---------------------------------------------------------------------
// Exit codes of s6-tlsd itself

#[test]
fn usage_errors_exit_100_before_anything_runs() {
    for args in [
        &[][..],
        &["-S"],
        &["-x", testapp_exe(), "dump"],
        &["-v", "two", testapp_exe(), "dump"],
        &["-d", "3", testapp_exe(), "dump"],
        &["--sni-level", testapp_exe(), "dump"],
    ] {
        let dir = TempDir::new("tlsd-usage");
        let (mut server, mut sock) = direct(TLSD, args, &tls_env(&dir), &dir);
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest);
        assert_eq!(rest, b"", "{args:?}: nothing was sent");
        assert_eq!(server.exit_code(), 100, "{args:?}");
        let stderr = server.stderr();
        assert!(
            stderr.lines().count() == 2
                && stderr.starts_with("s6-tlsd: fatal: ")
                && stderr.contains("\ns6-tlsd: usage: s6-tlsd "),
            "{args:?}: {stderr:?}"
        );
    }
}

/// prog not found: 127; found but not executable: 126 (skalibs' codes).
#[test]
fn prog_that_cannot_be_executed_exits_127_or_126_after_the_handshake() {
    let dir = TempDir::new("tlsd-noexec");
    for (prog, code, why) in unexecutable_progs(&dir) {
        let (mut server, sock) = direct(TLSD, &["--", &prog], &tls_env(&dir), &dir);
        let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
        client.handshake().unwrap();
        let (data, _) = client.recv_to_end();
        assert_eq!(data, b"", "{prog}");
        assert_eq!(server.exit_code(), code, "{prog}");
        assert_eq!(
            server.stderr(),
            format!("s6-tlsd: fatal: unable to exec {prog}: {why}\n")
        );
    }
}

/// Inherited signal dispositions are cleaned: with SIGCHLD ignored (the
/// kernel would reap the engine itself) a failed handshake still gives
/// the engine's code and its one line, and prog gets nothing ignored or
/// blocked.
#[test]
fn ignored_sigchld_and_blocked_signals_are_not_inherited() {
    let dir = TempDir::new("tlsd-signals");
    let mut cmd = Command::new(TLSD);
    cmd.arg("--").args(SIGNAL_STATE);
    with_dirty_signals(&mut cmd);
    let (mut server, mut sock) = direct_cmd(cmd, &tls_env(&dir), &dir);
    superserver::write_all(&mut sock, b"GET / HTTP/1.0\r\n\r\n");
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    assert_eq!(server.exit_code(), 98, "{:?}", server.stderr());
    let stderr = server.stderr();
    assert!(stderr.starts_with("s6-tlsd-io: fatal: "), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");

    let mut cmd = Command::new(TLSD);
    cmd.arg("--").args(SIGNAL_STATE);
    with_dirty_signals(&mut cmd);
    let (mut server, sock) = direct_cmd(cmd, &tls_env(&dir), &dir);
    let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
    client.handshake().unwrap();
    let (data, _) = client.recv_to_end();
    assert_clean_signals(&data);
    assert_eq!(server.exit_code(), 0, "{:?}", server.stderr());
}
