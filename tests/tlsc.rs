//! s6-tlsc end to end under ucspi-tcp's `tcpclient`: prog runs only after
//! the server is verified, with its cleartext on the same fds 6/7 the
//! network was on, nothing else of the connection, and the information in
//! its environment; a refused server means prog never runs and s6-tlsc
//! exits with the engine's code; 64 MiB each way through a shell prog;
//! bad usage.

mod client;
mod common;
#[path = "support/procfs.rs"]
mod procfs;
mod superserver;

use client::{
    assert_client_engine, assert_usage, bad_certificates, dropping, group_gone, only_child,
    run_alone, send_stream, tcpclient, RustlsServer, ServerSpec, PATIENCE,
};
use common::{pki, standard, Listener, Stream, TempDir, DEADLINE};
use std::collections::BTreeSet;
use std::path::Path;
use superserver::{testapp_exe, Dump};

const TLSC: &str = env!("CARGO_BIN_EXE_s6-tlsc");

/// The client's environment: the standard CA as `CAFILE` and `CADIR`, a
/// client pair, `TLS_UID`/`TLS_GID` (our own ids), and stale values of
/// the information's variables.
fn client_env(dir: &TempDir) -> Vec<(String, String)> {
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let cadir = dir.subdir("cadir");
    std::fs::write(cadir.join("ca.pem"), pki().ca.cert_pem()).unwrap();
    let (cert, key) = pki().client_full.write(dir, "client");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        ("CAFILE".into(), s(&ca)),
        ("CADIR".into(), s(&cadir)),
        ("CERTFILE".into(), s(&cert)),
        ("KEYFILE".into(), s(&key)),
        ("TLS_UID".into(), nix::unistd::getuid().to_string()),
        ("TLS_GID".into(), nix::unistd::getgid().to_string()),
        ("SSL_TLS_SNI_SERVERNAME".into(), "stale.example".into()),
        ("KEEPME".into(), "yes".into()),
    ]
}

const TLS_VARIABLES: &[&str] = &[
    "CADIR", "CAFILE", "CERTFILE", "KEYFILE", "TLS_UID", "TLS_GID",
];

#[test]
fn prog_runs_after_the_handshake_with_cleartext_on_6_and_7() {
    for (keep, sni_args, sni) in [
        (false, &["-k", "localhost"][..], Some("localhost")),
        (true, &["-Z", "-v0"][..], None),
    ] {
        let dir = TempDir::new("tlsc");
        let server = RustlsServer::start(ServerSpec::new(&pki().server_p256));
        let dump = dir.path().join("dump");
        let mut cmd = vec![TLSC];
        cmd.extend_from_slice(sni_args);
        cmd.extend(["--", testapp_exe(), "dump", dump.to_str().unwrap()]);
        let (mut group, _) = tcpclient(server.port, &cmd, &client_env(&dir), &dir, "tlsc");
        assert_eq!(group.exit_code(), 0, "{}", group.stderr());
        let dump = Dump::parse(&std::fs::read_to_string(&dump).unwrap());
        let open: BTreeSet<i32> = dump.fds.keys().copied().collect();
        assert_eq!(open, [0, 1, 2, 6, 7].into(), "{:?}", dump.fds);
        assert!(dump.target(6).starts_with("pipe:["), "{}", dump.target(6));
        assert!(dump.target(7).starts_with("pipe:["), "{}", dump.target(7));
        assert_ne!(dump.target(6), dump.target(7));
        let env = |name: &str| dump.env.get(name).map(String::as_str);
        assert_eq!(env("SSL_PROTOCOL"), Some("TLSv1.3"));
        assert_eq!(env("SSL_CIPHER"), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!(env("SSL_TLS_SNI_SERVERNAME"), sni);
        let hash = format!("SHA256:{}", pki().server_p256.sha256());
        assert_eq!(env("SSL_PEER_CERT_HASH"), Some(hash.as_str()));
        assert_eq!(env("SSL_PEER_CERT_SUBJECT"), Some("CN=localhost"));
        assert_eq!(env("TCPREMOTEIP"), Some("127.0.0.1"), "run by tcpclient");
        assert_eq!(env("KEEPME"), Some("yes"));
        for var in TLS_VARIABLES {
            assert_eq!(dump.env.contains_key(*var), keep, "{var} with keep={keep}");
        }
        for var in ["SSLCTLFD", "SSLREADFD", "SSLWRITEFD"] {
            assert!(!dump.env.contains_key(var), "{var} under s6-tlsc");
        }
        assert!(
            group_gone(group.pid, DEADLINE),
            "the engine is left running"
        );
        let served = server.finish();
        assert_eq!(served.sni.as_deref(), sni);
    }
}

#[test]
fn sixty_four_mib_each_way_through_a_shell_prog() {
    const LEN: usize = 64 << 20;
    let dir = TempDir::new("tlsc-bulk");
    let upload = Stream::bytes(11, LEN);
    let data = dir.write("upload", &upload);
    let result = dir.path().join("result");
    let listener = Listener::new();
    // prog sends the file and closes fd 7 (the server reads EOF) while
    // hashing everything it reads on fd 6 to EOF.
    let script = r#"cat "$1" >&7 & exec 7>&-; sha256sum <&6 >"$2"; wait"#;
    let cmd = [
        TLSC,
        "-k",
        "localhost",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        data.to_str().unwrap(),
        result.to_str().unwrap(),
    ];
    let (mut group, _) = tcpclient(listener.addr.port(), &cmd, &client_env(&dir), &dir, "tlsc");
    let mut server = standard(&dir, &[]).spawn(Some(listener.accept()));
    let writer = send_stream(server.app_in.take().unwrap(), 12, LEN);
    let received = server.app_read_to_eof();
    let sent = writer.join().unwrap();
    assert_eq!(received.len(), LEN);
    assert_eq!(common::sha256_hex(&received), common::sha256_hex(&upload));
    assert_eq!(group.exit_code(), 0, "{}", group.stderr());
    server.wait().assert_clean(0);
    let result = std::fs::read_to_string(&result).unwrap();
    assert_eq!(result, format!("{sent}  -\n"));
    assert!(group_gone(group.pid, DEADLINE));
}

#[test]
fn a_refused_server_means_prog_never_runs() {
    for bad in bad_certificates().into_iter().take(3) {
        let dir = TempDir::new("tlsc-refused");
        let mut spec = ServerSpec::new(&bad.leaf);
        spec.early = b"SERVER CLEARTEXT".to_vec();
        let server = RustlsServer::start(spec);
        let ran = dir.path().join("ran");
        let cmd = [
            TLSC,
            "-k",
            bad.name,
            "--",
            "sh",
            "-c",
            r#"cat <&6 >"$1""#,
            "sh",
            ran.to_str().unwrap(),
        ];
        let (mut group, _) = tcpclient(server.port, &cmd, &client_env(&dir), &dir, "tlsc");
        assert_eq!(group.exit_code(), 98, "{}: {}", bad.what, group.stderr());
        let stderr = group.stderr();
        assert!(
            stderr.contains("s6-tlsc-io: fatal: TLS handshake failed: invalid peer certificate: "),
            "{}: {stderr:?}",
            bad.what
        );
        assert!(bad.explains(&stderr), "{}: {stderr:?}", bad.what);
        assert!(!ran.exists(), "{}: prog ran", bad.what);
        assert!(group_gone(group.pid, DEADLINE));
        assert_eq!(server.finish().received, b"");
    }
}

#[test]
fn a_server_that_never_answers_ends_with_the_handshake_timeout() {
    let dir = TempDir::new("tlsc-silent");
    let listener = Listener::new();
    let ran = dir.path().join("ran");
    let cmd = [
        TLSC,
        "-k",
        "localhost",
        "-K",
        "300",
        "--",
        "touch",
        ran.to_str().unwrap(),
    ];
    let (mut group, _) = tcpclient(listener.addr.port(), &cmd, &client_env(&dir), &dir, "tlsc");
    let _held = listener.accept();
    let status = group.wait_within(PATIENCE);
    assert_eq!(status.code(), Some(98), "{}", group.stderr());
    assert!(group
        .stderr()
        .contains("s6-tlsc-io: fatal: timed out: handshake not complete after 300 ms"));
    assert!(!ran.exists());
}

#[test]
fn usage_and_descriptor_errors() {
    let dir = TempDir::new("tlsc-usage");
    let env = client_env(&dir);
    for args in [
        &[][..],
        &["-x", "prog"],
        &["-6", "2", "prog"],
        &["-6", "9", "-7", "9", "prog"],
        &["-d", "3", "prog"],
    ] {
        assert_usage(TLSC, "s6-tlsc", args, &env);
    }
    // Not under a UCSPI client: fds 6/7 are not open.
    let (code, stderr) = run_alone(TLSC, &["-k", "localhost", "true"], &env);
    assert_eq!(code, Some(111));
    assert_eq!(
        stderr,
        "s6-tlsc: fatal: unable to check network fds: Bad file descriptor\n"
    );
}

#[test]
fn the_child_becomes_the_engine_holding_only_its_descriptors() {
    let dir = TempDir::new("tlsc-engine");
    let listener = Listener::new();
    // prog echoes what the server sends.
    let cmd = [
        TLSC,
        "-k",
        "localhost",
        "--",
        "sh",
        "-c",
        "exec cat <&6 >&7",
    ];
    let env = dropping(client_env(&dir));
    let (mut group, _) = tcpclient(listener.addr.port(), &cmd, &env, &dir, "c");
    let mut server = standard(&dir, &[]).spawn(Some(listener.accept()));
    server.app_write(b"ping").unwrap();
    assert_eq!(server.app_read_exact(4), b"ping");
    assert_client_engine(only_child(group.pid), "s6-tlsc");
    server.close_app_in();
    assert_eq!(server.app_read_to_eof(), b"");
    server.wait().assert_clean(0);
    assert_eq!(group.exit_code(), 0, "{}", group.stderr());
}

#[test]
fn bad_trust_anchors_end_s6_tlsc_before_prog() {
    let dir = TempDir::new("tlsc-anchors");
    let empty = dir.write("empty.pem", "");
    let ran = dir.path().join("ran");
    let cmd = [
        TLSC,
        "-k",
        "localhost",
        "--",
        "touch",
        ran.to_str().unwrap(),
    ];
    let no_anchors: Vec<(String, String)> = client_env(&dir)
        .into_iter()
        .filter(|(name, _)| name != "CAFILE" && name != "CADIR")
        .collect();
    let empty_anchors = [("CAFILE".to_owned(), empty.to_string_lossy().into_owned())];
    for (env, code, line) in [
        (
            no_anchors,
            100,
            "s6-tlsc-io: fatal: neither CADIR nor CAFILE is set",
        ),
        (
            empty_anchors.to_vec(),
            96,
            "s6-tlsc-io: fatal: trust anchor ",
        ),
    ] {
        let listener = Listener::new();
        let (mut group, _) = tcpclient(listener.addr.port(), &cmd, &env, &dir, "c");
        let _sock = listener.accept();
        assert_eq!(group.exit_code(), code, "{}", group.stderr());
        assert!(group.stderr().contains(line), "{}", group.stderr());
        assert!(!ran.exists());
    }
}
