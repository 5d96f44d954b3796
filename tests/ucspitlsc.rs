//! s6-ucspitlsc end to end under ucspi-tcp's `tcpclient`: STARTTLS with
//! the demo server (s6-ucspitlsd under `tcpserver`) and the demo client
//! (`s6_tls::ucspi` on the client side); prog's descriptors (6/7 the
//! network, the three UCSPI-TLS ones) and environment; the information
//! through `Y`; 64 MiB each way; the command byte; a refused server
//! (the helper exits 98, prog reads EOF on the control socket and no
//! cleartext); bad usage.

mod client;
mod common;
#[path = "support/procfs.rs"]
mod procfs;
mod superserver;

use client::{
    assert_client_engine, assert_usage, bad_certificates, dropping, group_gone, only_child,
    run_alone, send_stream, tcpclient, RustlsServer, ServerSpec,
};
use common::{decode_info, pki, standard, Listener, TempDir, DEADLINE};
use std::collections::BTreeSet;
use std::path::Path;
use superserver::{
    demo_client_exe, demo_exe, testapp_exe, tls_env, Dump, Kind, SuperServer, Trailer, UCSPITLSD,
};

const UCSPITLSC: &str = env!("CARGO_BIN_EXE_s6-ucspitlsc");

/// `CAFILE` (the standard CA), a client pair, `TLS_UID`/`TLS_GID`.
fn client_env(dir: &TempDir) -> Vec<(String, String)> {
    let ca = dir.write("client-ca.pem", pki().ca.cert_pem());
    let (cert, key) = pki().client_full.write(dir, "client");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        ("CAFILE".into(), s(&ca)),
        ("CERTFILE".into(), s(&cert)),
        ("KEYFILE".into(), s(&key)),
        ("TLS_UID".into(), nix::unistd::getuid().to_string()),
        ("TLS_GID".into(), nix::unistd::getgid().to_string()),
    ]
}

#[test]
fn starttls_with_the_demo_server() {
    let dir = TempDir::new("ucspitlsc-demo");
    let server = SuperServer::start(
        Kind::Tcpserver,
        &[UCSPITLSD, "-S", "--", demo_exe()],
        &tls_env(&dir),
        &dir,
    );
    let cmd = [
        UCSPITLSC,
        "-k",
        "localhost",
        "--",
        demo_client_exe(),
        "you@localhost",
    ];
    let (mut group, stdout) = tcpclient(server.port, &cmd, &client_env(&dir), &dir, "client");
    assert_eq!(group.exit_code(), 0, "{}", group.stderr());
    let out = std::fs::read_to_string(stdout).unwrap();
    // The demo's EHLO inside TLS reports the TLS parameters it got.
    assert!(out.contains("250-STARTTLS"), "{out}");
    assert!(
        out.contains("250-TLS TLSv1.3 TLS_AES_256_GCM_SHA384 SNI=localhost"),
        "{out}"
    );
    assert!(out.contains("250 2.0.0 Message accepted"), "{out}");
    assert!(out.contains("221 2.0.0 Bye"), "{out}");
    assert!(
        out.contains("-- TLS TLSv1.3 TLS_AES_256_GCM_SHA384, server CN=localhost"),
        "the client reports the server it verified: {out}"
    );
    assert!(group_gone(group.pid, DEADLINE));
}

#[test]
fn prog_descriptors_and_environment() {
    for keep in [false, true] {
        let dir = TempDir::new("ucspitlsc-dump");
        let listener = Listener::new();
        let dump = dir.path().join("dump");
        let mut cmd = vec![UCSPITLSC];
        if keep {
            cmd.push("-Z");
        }
        cmd.extend(["--", testapp_exe(), "dump", dump.to_str().unwrap()]);
        let (mut group, _) = tcpclient(
            listener.addr.port(),
            &cmd,
            &client_env(&dir),
            &dir,
            "client",
        );
        let _sock = listener.accept();
        assert_eq!(group.exit_code(), 0, "{}", group.stderr());
        let dump = Dump::parse(&std::fs::read_to_string(&dump).unwrap());
        let ctl = dump.fd_var("SSLCTLFD");
        let read = dump.fd_var("SSLREADFD");
        let write = dump.fd_var("SSLWRITEFD");
        let open: BTreeSet<i32> = dump.fds.keys().copied().collect();
        assert_eq!(
            open,
            [0, 1, 2, 6, 7, ctl, read, write].into(),
            "{:?}",
            dump.fds
        );
        assert!(dump.target(6).starts_with("socket:["), "{}", dump.target(6));
        assert_eq!(dump.target(6), dump.target(7), "6/7 are the connection");
        assert!(dump.target(ctl).starts_with("socket:["));
        assert_ne!(dump.target(ctl), dump.target(6));
        assert!(dump.target(read).starts_with("pipe:["));
        assert!(dump.target(write).starts_with("pipe:["));
        assert_eq!(
            dump.env.get("TCPREMOTEIP").map(String::as_str),
            Some("127.0.0.1")
        );
        for var in ["CAFILE", "CERTFILE", "KEYFILE", "TLS_UID", "TLS_GID"] {
            assert_eq!(dump.env.contains_key(var), keep, "{var} with keep={keep}");
        }
        assert!(
            group_gone(group.pid, DEADLINE),
            "the helper is left running"
        );
    }
}

/// Also: the helper is the engine itself, holding only its descriptors,
/// its privileges dropped (as root).
#[test]
fn information_through_y_and_an_echo() {
    let dir = TempDir::new("ucspitlsc-info");
    let listener = Listener::new();
    let info = dir.path().join("info");
    let cmd = [
        UCSPITLSC,
        "-k",
        "localhost",
        "--",
        testapp_exe(),
        "info",
        "Y",
        info.to_str().unwrap(),
    ];
    let env = dropping(client_env(&dir));
    let (mut group, _) = tcpclient(listener.addr.port(), &cmd, &env, &dir, "c");
    let mut server = standard(&dir, &["-d", "5"])
        .notify(5)
        .spawn(Some(listener.accept()));
    let seen_by_server = decode_info(&server.read_notification());
    server.app_write(b"ping").unwrap();
    assert_eq!(server.app_read_exact(4), b"ping", "echoed by prog");
    // prog is the group's leader; the helper, its child, is the engine.
    assert_client_engine(only_child(group.pid), "s6-ucspitlsc");
    server.close_app_in();
    assert_eq!(server.app_read_to_eof(), b"");
    server.wait().assert_clean(0);
    assert_eq!(group.exit_code(), 0, "{}", group.stderr());
    let expected = format!(
        "SSL_PROTOCOL={}\0SSL_CIPHER={}\0SSL_TLS_SNI_SERVERNAME=localhost\0\
         SSL_PEER_CERT_HASH=SHA256:{}\0SSL_PEER_CERT_SUBJECT=CN=localhost\0\0",
        seen_by_server[0].1.as_deref().unwrap(),
        seen_by_server[1].1.as_deref().unwrap(),
        pki().server_p256.sha256()
    );
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&info).unwrap()),
        expected
    );
    assert_eq!(
        seen_by_server[2],
        ("SSL_TLS_SNI_SERVERNAME".into(), Some("localhost".into()))
    );
    assert!(group_gone(group.pid, DEADLINE));
}

#[test]
fn sixty_four_mib_each_way() {
    const LEN: usize = 64 << 20;
    let dir = TempDir::new("ucspitlsc-bulk");
    let listener = Listener::new();
    let n = LEN.to_string();
    let cmd = [
        UCSPITLSC,
        "-k",
        "localhost",
        "--",
        testapp_exe(),
        "hash",
        &n,
        &n,
    ];
    let (mut group, _) = tcpclient(listener.addr.port(), &cmd, &client_env(&dir), &dir, "c");
    let mut server = standard(&dir, &[]).spawn(Some(listener.accept()));
    let writer = send_stream(server.app_in.take().unwrap(), 21, LEN);
    let received = server.app_read_to_eof();
    let sent = writer.join().unwrap();
    assert!(received.len() > LEN, "{} bytes", received.len());
    let (data, trailer) = received.split_at(LEN);
    let trailer = Trailer::parse(trailer);
    assert_eq!(trailer.recv_len, LEN as u64);
    assert_eq!(trailer.recv_hash, sent);
    assert_eq!(trailer.sent_len, LEN as u64);
    assert_eq!(trailer.sent_hash, common::sha256_hex(data));
    assert_eq!(group.exit_code(), 0, "{}", group.stderr());
    server.wait().assert_clean(0);
}

#[test]
fn the_command_byte() {
    // (prog's behaviour, what it prints)
    for (behaviour, expected) in [
        (&["decline"][..], "helper exit 0\nbye\n"),
        (&["cmd", "x"], "helper exit 100\n"),
    ] {
        let dir = TempDir::new("ucspitlsc-cmd");
        let listener = Listener::new();
        let mut cmd = vec![UCSPITLSC, "-k", "localhost", "--", testapp_exe()];
        cmd.extend_from_slice(behaviour);
        let (mut group, stdout) =
            tcpclient(listener.addr.port(), &cmd, &client_env(&dir), &dir, "c");
        let _sock = listener.accept();
        assert_eq!(group.exit_code(), 0, "{}", group.stderr());
        assert_eq!(std::fs::read_to_string(stdout).unwrap(), expected);
    }
}

#[test]
fn a_refused_server_gives_prog_eof_and_no_cleartext() {
    let bad = bad_certificates().remove(0);
    for behaviour in [&["cmd", "Y"][..], &["info", "Y", "INFO"]] {
        let dir = TempDir::new("ucspitlsc-refused");
        let info = dir.path().join("info");
        let mut spec = ServerSpec::new(&bad.leaf);
        spec.early = b"SERVER CLEARTEXT".to_vec();
        let server = RustlsServer::start(spec);
        let mut cmd = vec![UCSPITLSC, "-k", bad.name, "--", testapp_exe()];
        cmd.extend(behaviour.iter().map(|w| {
            if *w == "INFO" {
                info.to_str().unwrap()
            } else {
                w
            }
        }));
        let (mut group, stdout) = tcpclient(server.port, &cmd, &client_env(&dir), &dir, "c");
        assert_eq!(group.exit_code(), 0, "{}", group.stderr());
        // prog learns of the failure at once; the engine says why as it
        // exits, after its linger.
        assert!(group_gone(group.pid, DEADLINE));
        let stderr = group.stderr();
        assert!(
            stderr.contains("s6-tlsc-io: fatal: TLS handshake failed: invalid peer certificate: "),
            "{stderr:?}"
        );
        assert!(bad.explains(&stderr), "{stderr:?}");
        if behaviour[0] == "cmd" {
            assert_eq!(std::fs::read_to_string(stdout).unwrap(), "helper exit 98\n");
        } else {
            assert_eq!(
                std::fs::read(&info).unwrap(),
                b"",
                "EOF without information"
            );
        }
        let served = server.finish();
        assert_eq!(served.received, b"", "prog echoed nothing: it got nothing");
    }
}

#[test]
fn usage_and_descriptor_errors() {
    let dir = TempDir::new("ucspitlsc-usage");
    let env = client_env(&dir);
    for args in [
        &[][..],
        &["-x", "prog"],
        &["-7", "1", "prog"],
        &["-6", "7", "prog"],
        &["--kimeout", "prog"],
    ] {
        assert_usage(UCSPITLSC, "s6-ucspitlsc", args, &env);
    }
    // Not under a UCSPI client: fds 6/7 are not open.
    let (code, stderr) = run_alone(UCSPITLSC, &["true"], &env);
    assert_eq!(code, Some(111));
    assert_eq!(
        stderr,
        "s6-ucspitlsc: fatal: unable to check network fds: Bad file descriptor\n"
    );
}
