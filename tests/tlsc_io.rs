//! s6-tlsc-io, the client engine, against real servers on 127.0.0.1:
//! rustls (in a thread, sending half-RTT data), `openssl s_server`, a
//! Python `ssl` server and our own s6-tlsd-io. Verification (every
//! certificate the client must refuse: 98, the reason on one line, no
//! cleartext delivered), the information string byte for byte, the close
//! rules seen from the server, 64 MiB each way, timeouts, hostile
//! servers, bad usage and bad files, the privilege drop.

mod client;
mod common;
#[path = "support/procfs.rs"]
mod procfs;
mod superserver;

use client::{
    assert_usage, bad_certificates, connect, python_server, s_server, tlsc_io, RustlsServer,
    ServerSpec, PATIENCE,
};
use common::{
    decode_info, pki, set_linger_zero, standard, tcp_pair, Exit, KeyKind, Listener, Spawn, Stream,
    TempDir, Versions, DEADLINE,
};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

const FATAL: &str = "s6-tlsc-io: fatal: ";
const REFUSED: &str = "s6-tlsc-io: fatal: TLS handshake failed: invalid peer certificate: ";
const NOT_VERIFIED: &str =
    "s6-tlsc-io: warning: --no-verify-cert: the server's certificate is not verified\n";
const NAME_NOT_VERIFIED: &str =
    "s6-tlsc-io: warning: no -k servername: the server's name is not verified\n";

/// The one line of a fatal exit, after its prefix.
fn fatal_line(exit: &Exit, code: i32) -> &str {
    exit.fatal_line(code, FATAL)
}

#[test]
fn every_bad_server_certificate_is_refused_with_no_cleartext() {
    for versions in [Versions::Tls13, Versions::Tls12] {
        for bad in bad_certificates() {
            let dir = TempDir::new("refuse");
            let mut spec = ServerSpec::new(&bad.leaf);
            spec.chain = bad.chain();
            spec.versions = versions;
            spec.early = b"SERVER CLEARTEXT".to_vec();
            let server = RustlsServer::start(spec);
            let mut engine = tlsc_io(&dir, &["-k", bad.name], connect(server.port)).spawn(None);
            // (The engine may have refused the server already.)
            let _ = engine.app_write(b"CLIENT CLEARTEXT");
            // prog reads EOF, and nothing before it.
            assert_eq!(engine.app_read_to_eof(), b"", "{} {versions:?}", bad.what);
            let exit = engine.wait();
            assert_eq!(exit.code, Some(98), "{} {versions:?}: {exit:?}", bad.what);
            assert!(
                exit.stderr.starts_with(REFUSED) && exit.stderr.matches('\n').count() == 1,
                "{} {versions:?}: {:?}",
                bad.what,
                exit.stderr
            );
            assert!(
                bad.explains(&exit.stderr),
                "{} {versions:?}: the reason should say {:?}: {:?}",
                bad.what,
                bad.reason,
                exit.stderr
            );
            let served = server.finish();
            assert!(served.error.is_some(), "{}: {served:?}", bad.what);
            assert_eq!(served.received, b"", "{}: the client sent data", bad.what);
        }
    }
}

#[test]
fn no_verify_cert_accepts_them_with_a_warning_and_bare_peer_entries() {
    for bad in bad_certificates() {
        let dir = TempDir::new("noverify");
        let mut spec = ServerSpec::new(&bad.leaf);
        spec.chain = bad.chain();
        spec.early = b"hello".to_vec();
        spec.reply = b"bye".to_vec();
        let server = RustlsServer::start(spec);
        let mut engine = tlsc_io(
            &dir,
            &["--no-verify-cert", "-k", bad.name, "-d", "5"],
            connect(server.port),
        )
        .notify(5)
        .spawn(None);
        let info = decode_info(&engine.read_notification());
        assert_eq!(info[3], ("SSL_PEER_CERT_HASH".into(), None), "{}", bad.what);
        assert_eq!(
            info[4],
            ("SSL_PEER_CERT_SUBJECT".into(), None),
            "{}",
            bad.what
        );
        assert_eq!(engine.app_read_exact(5), b"hello", "{}", bad.what);
        engine.app_write(b"ping").unwrap();
        engine.close_app_in();
        assert_eq!(engine.app_read_to_eof(), b"bye", "{}", bad.what);
        let exit = engine.wait();
        assert_eq!(exit.code, Some(0), "{}: {exit:?}", bad.what);
        assert_eq!(exit.stderr, NOT_VERIFIED, "{}", bad.what);
        let served = server.finish();
        assert_eq!(served.received, b"ping", "{}", bad.what);
    }
}

#[test]
fn without_k_the_chain_is_verified_but_not_the_name() {
    let dir = TempDir::new("nok");
    let other_name = pki().ca.server(&["other.example"], KeyKind::EcdsaP256);
    let server = RustlsServer::start(ServerSpec::new(&other_name));
    let mut engine = tlsc_io(&dir, &["-d", "5"], connect(server.port))
        .notify(5)
        .spawn(None);
    let info = decode_info(&engine.read_notification());
    assert_eq!(info[2], ("SSL_TLS_SNI_SERVERNAME".into(), None));
    assert_eq!(
        info[3],
        (
            "SSL_PEER_CERT_HASH".into(),
            Some(format!("SHA256:{}", other_name.sha256()))
        )
    );
    engine.close_app_in();
    assert_eq!(engine.app_read_to_eof(), b"");
    let exit = engine.wait();
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert_eq!(exit.stderr, NAME_NOT_VERIFIED);
    assert_eq!(server.finish().sni, None, "no -k, no SNI");

    // The chain still is.
    let stranger = pki().other_ca.server(&["localhost"], KeyKind::EcdsaP256);
    let server = RustlsServer::start(ServerSpec::new(&stranger));
    let mut engine = tlsc_io(&dir, &["-v0"], connect(server.port)).spawn(None);
    assert_eq!(engine.app_read_to_eof(), b"");
    let exit = engine.wait();
    assert!(exit.stderr.starts_with(REFUSED), "{exit:?}");
    assert_eq!(exit.code, Some(98));
}

/// The expected information string for the standard P-256 server.
fn expected_info(protocol: &str, cipher: &str, sni: Option<&str>) -> Vec<u8> {
    let leaf = &pki().server_p256;
    let mut v = format!("SSL_PROTOCOL={protocol}\0SSL_CIPHER={cipher}\0").into_bytes();
    match sni {
        Some(name) => v.extend(format!("SSL_TLS_SNI_SERVERNAME={name}\0").bytes()),
        None => v.extend(b"SSL_TLS_SNI_SERVERNAME\0"),
    }
    v.extend(format!("SSL_PEER_CERT_HASH=SHA256:{}\0", leaf.sha256()).bytes());
    v.extend(b"SSL_PEER_CERT_SUBJECT=CN=localhost\0\0");
    v
}

#[test]
fn information_string_byte_for_byte() {
    for (versions, protocol, cipher) in [
        (Versions::Tls13, "TLSv1.3", "TLS_AES_256_GCM_SHA384"),
        (Versions::Tls12, "TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ] {
        for (name, sni) in [("localhost", Some("localhost")), ("127.0.0.1", None)] {
            let dir = TempDir::new("info");
            let mut spec = ServerSpec::new(&pki().server_p256);
            spec.versions = versions;
            let server = RustlsServer::start(spec);
            let mut engine = tlsc_io(&dir, &["-k", name, "-d", "5"], connect(server.port))
                .notify(5)
                .spawn(None);
            assert_eq!(
                String::from_utf8_lossy(&engine.read_notification()),
                String::from_utf8_lossy(&expected_info(protocol, cipher, sni)),
                "{versions:?} -k {name}"
            );
            engine.close_app_in();
            assert_eq!(engine.app_read_to_eof(), b"");
            engine.wait().assert_clean(0);
            let served = server.finish();
            assert_eq!(served.sni.as_deref(), sni, "the SNI sent");
            assert_eq!(served.error, None);
            // The post-quantum hybrid is offered first, and taken where
            // it exists (TLS 1.3).
            let group = match versions {
                Versions::Tls13 => rustls::NamedGroup::X25519MLKEM768,
                _ => rustls::NamedGroup::X25519,
            };
            assert_eq!(served.group, Some(group), "{versions:?}");
        }
    }
}

#[test]
fn close_rules_seen_from_the_server() {
    // (versions, options, the server saw a close_notify, the app gets the reply)
    for (versions, args, notify, reply) in [
        (Versions::Tls13, &["-s"][..], false, true),
        (Versions::Tls12, &[][..], false, true),
        (Versions::Tls13, &["-S"][..], true, true),
        (Versions::Tls12, &["-S"][..], true, false),
    ] {
        let dir = TempDir::new("close");
        let mut spec = ServerSpec::new(&pki().server_p256);
        spec.versions = versions;
        spec.reply = b"the whole answer".to_vec();
        let server = RustlsServer::start(spec);
        let mut words = vec!["-k", "localhost"];
        words.extend_from_slice(args);
        let mut engine = tlsc_io(&dir, &words, connect(server.port)).spawn(None);
        engine.app_write(b"request").unwrap();
        engine.close_app_in();
        let got = engine.app_read_to_eof();
        let exit = engine.wait();
        exit.assert_clean(0);
        let served = server.finish();
        assert_eq!(served.received, b"request", "{versions:?} {args:?}");
        assert_eq!(
            served.close_notify, notify,
            "{versions:?} {args:?}: {served:?}"
        );
        if reply {
            assert_eq!(got, b"the whole answer", "{versions:?} {args:?}");
        } else {
            assert_eq!(got, b"", "{versions:?} {args:?}");
        }
    }
}

/// s6-tlsd-io and s6-tlsc-io on the two ends of one connection.
fn our_pair(
    dir: &TempDir,
    server_args: &[&str],
    client_args: &[&str],
) -> (common::Engine, common::Engine) {
    let (client_sock, server_sock) = tcp_pair();
    let server = standard(dir, server_args).spawn(Some(server_sock));
    let mut words = vec!["-k", "localhost"];
    words.extend_from_slice(client_args);
    let client = tlsc_io(dir, &words, client_sock).spawn(None);
    (server, client)
}

#[test]
fn sixty_four_mib_each_way_with_our_server() {
    const LEN: u64 = 64 << 20;
    let dir = TempDir::new("bulk");
    let (mut server, mut client) = our_pair(&dir, &[], &[]);
    let mut threads = Vec::new();
    for (seed, from, to) in [
        (1, client.app_in.take(), server.app_out.take()),
        (2, server.app_in.take(), client.app_out.take()),
    ] {
        let (from, to) = (from.unwrap(), to.unwrap());
        let writer = std::thread::spawn(move || {
            let mut stream = Stream::new(seed, LEN);
            let mut sent = common::Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let n = stream.fill(&mut buf);
                if n == 0 {
                    break;
                }
                sent.update(&buf[..n]);
                common::write_all_fd(from.as_fd(), &buf[..n], deadline).expect("write");
            }
            sent.finish()
        });
        let reader = std::thread::spawn(move || {
            let mut got = common::Sha256::new();
            let mut len = 0u64;
            let mut buf = vec![0u8; 256 * 1024];
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match common::read_some(to.as_fd(), &mut buf, deadline).expect("read") {
                    0 => break,
                    n => {
                        got.update(&buf[..n]);
                        len += n as u64;
                    }
                }
            }
            (len, got.finish())
        });
        threads.push((writer, reader));
    }
    for (writer, reader) in threads {
        let sent = writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), (LEN, sent));
    }
    server.wait().assert_clean(0);
    client.wait().assert_clean(0);
}

#[test]
fn enforce_close_notify_against_our_server() {
    let dir = TempDir::new("enforce");
    // Our server's default end is a half-close without close_notify.
    let (mut server, mut client) = our_pair(&dir, &[], &["-J"]);
    server.app_write(b"last words").unwrap();
    server.close_app_in();
    assert_eq!(client.app_read_exact(10), b"last words");
    let exit = client.wait();
    assert_eq!(
        fatal_line(&exit, 98),
        "remote closed connection without a close_notify"
    );
    server.kill();

    // With -S on the server, the end is clean.
    let (mut server, mut client) = our_pair(&dir, &["-S"], &["-J"]);
    server.app_write(b"last words").unwrap();
    server.close_app_in();
    assert_eq!(client.app_read_exact(10), b"last words");
    assert_eq!(client.app_read_to_eof(), b"");
    client.close_app_in();
    client.wait().assert_clean(0);
    server.wait().assert_clean(0);
}

#[test]
fn client_certificate_to_our_server() {
    let dir = TempDir::new("clientcert");
    let (cert, key) = pki().client_full.write(&dir, "client");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let (client_sock, server_sock) = tcp_pair();
    let mut server = standard(&dir, &["-y", "-d", "5"])
        .env("CAFILE", &ca)
        .notify(5)
        .spawn(Some(server_sock));
    let mut client = tlsc_io(&dir, &["-k", "localhost", "-y"], client_sock)
        .cert(&cert, &key)
        .spawn(None);
    let info = decode_info(&server.read_notification());
    assert_eq!(
        info[4],
        (
            "SSL_PEER_CERT_SUBJECT".into(),
            Some(common::CLIENT_FULL_SUBJECT.into())
        )
    );
    client.close_app_in();
    server.close_app_in();
    assert_eq!(client.app_read_to_eof(), b"");
    client.wait().assert_clean(0);
    server.wait().assert_clean(0);

    // -Y (the default) presents nothing: a server that requires one refuses.
    let (client_sock, server_sock) = tcp_pair();
    let mut server = standard(&dir, &["-y"])
        .env("CAFILE", &ca)
        .spawn(Some(server_sock));
    let mut client = tlsc_io(&dir, &["-k", "localhost", "-Y"], client_sock)
        .cert(&cert, &key)
        .spawn(None);
    assert_eq!(client.app_read_to_eof(), b"");
    assert_eq!(client.wait().code, Some(98));
    assert_eq!(server.wait().code, Some(98));
}

/// `openssl s_server -rev` answers each line reversed.
fn reversed(server_args: &[&str], client_args: &[&str], env: &[(&str, &Path)]) -> (Exit, String) {
    let dir = TempDir::new("sserver");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let mut args = vec!["-rev", "-CAfile"];
    let ca_text = ca.to_string_lossy().into_owned();
    args.push(&ca_text);
    args.extend_from_slice(server_args);
    let server = s_server(&cert, &key, &args);
    let mut words = vec!["-S"];
    words.extend_from_slice(client_args);
    let mut spawn = tlsc_io(&dir, &words, connect(server.port));
    for (k, v) in env {
        spawn = spawn.env(*k, *v);
    }
    let mut engine = spawn.spawn(None);
    let _ = engine.app_write(b"hello s_server\n");
    let mut got = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    let fd = engine.app_out.take().unwrap();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\n") && Instant::now() < deadline {
        match common::read_some(fd.as_fd(), &mut buf, deadline) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    engine.close_app_in();
    drop(fd);
    let exit = engine.wait();
    let (_, stdout, _) = server.finish();
    (
        exit,
        String::from_utf8_lossy(&got).into_owned() + "|" + &stdout,
    )
}

#[test]
fn openssl_s_server_tls13_and_tls12() {
    for version in ["-tls1_3", "-tls1_2"] {
        let (exit, out) = reversed(&[version], &["-k", "localhost"], &[]);
        assert_eq!(exit.code, Some(0), "{version}: {exit:?}");
        assert!(out.starts_with("revres_s olleh\n"), "{version}: {out:?}");
    }
}

#[test]
fn openssl_s_server_checks_the_sni() {
    let dir = TempDir::new("sni");
    let (cert2, key2) = pki().server_rsa.write(&dir, "other");
    let (c2, k2) = (cert2.to_string_lossy(), key2.to_string_lossy());
    let sni_args = [
        "-servername",
        "localhost",
        "-servername_fatal",
        "-cert2",
        &c2,
        "-key2",
        &k2,
    ];
    let (exit, out) = reversed(&sni_args, &["-k", "localhost"], &[]);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(out.starts_with("revres_s olleh\n"), "{out:?}");
    // A name the server does not serve is refused by the server.
    let (exit, out) = reversed(&sni_args, &["-k", "other.localhost"], &[]);
    assert_eq!(exit.code, Some(98), "{exit:?} {out:?}");
    assert!(exit.stderr.contains("alert"), "{exit:?}");
}

#[test]
fn openssl_s_server_requires_a_client_certificate() {
    let dir = TempDir::new("sverify");
    let (cert, key) = pki().client_full.write(&dir, "client");
    let env = [("CERTFILE", cert.as_path()), ("KEYFILE", key.as_path())];
    for tls in ["-tls1_3", "-tls1_2"] {
        let (exit, out) = reversed(&[tls, "-Verify", "1"], &["-k", "localhost", "-y"], &env);
        assert_eq!(exit.code, Some(0), "{tls}: {exit:?}");
        assert!(out.starts_with("revres_s olleh\n"), "{tls}: {out:?}");
        // Without -y the server refuses (TLS 1.3 clients learn it after
        // their Finished, TLS 1.2 ones during the handshake).
        let (exit, out) = reversed(&[tls, "-Verify", "1"], &["-k", "localhost"], &env);
        assert_eq!(exit.code, Some(98), "{tls}: {exit:?}");
        assert!(!out.starts_with("revres_s olleh"), "{tls}: {out:?}");
    }
}

#[test]
fn python_ssl_server() {
    let dir = TempDir::new("python");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    let (ccert, ckey) = pki().client_full.write(&dir, "client");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    for client_ca in [None, Some(ca.as_path())] {
        let server = python_server(&cert, &key, client_ca);
        // OpenSSL refuses to write after a TCP half-close without
        // close_notify (the -s default): end with -S.
        let args: &[&str] = match client_ca {
            Some(_) => &["-S", "-k", "localhost", "-y"],
            None => &["-S", "-k", "localhost"],
        };
        let mut engine = tlsc_io(&dir, args, connect(server.port))
            .cert(&ccert, &ckey)
            .spawn(None);
        let upload = Stream::bytes(7, 100_000);
        engine.app_write(&upload).unwrap();
        engine.close_app_in();
        let got = engine.app_read_to_eof();
        if got != b"hello from python\ngot 100000 bytes\n" {
            let _ = engine.wait();
            let (_, _, stderr) = server.finish();
            panic!("{:?}; python: {stderr}", String::from_utf8_lossy(&got));
        }
        let exit = engine.wait();
        let (status, stdout, stderr) = server.finish();
        assert!(status.success(), "python: {stderr}");
        exit.assert_clean(0);
        let who = if client_ca.is_some() {
            "client full.client"
        } else {
            "no client certificate"
        };
        assert_eq!(stdout, format!("received 100000\n{who}\n"));
    }
}

#[test]
fn timeouts() {
    let dir = TempDir::new("timeouts");
    // A server that accepts and never answers: -K bounds the handshake.
    let silent = Listener::new();
    let sock = std::net::TcpStream::connect(silent.addr).unwrap();
    let _held = silent.accept();
    let started = Instant::now();
    let mut engine = tlsc_io(&dir, &["-k", "localhost", "-K", "300"], sock).spawn(None);
    let exit = engine.wait_within(PATIENCE);
    assert_eq!(
        fatal_line(&exit, 98),
        "timed out: handshake not complete after 300 ms"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(engine.app_read_to_eof(), b"");

    // --kimeout: inactivity after the handshake.
    let (mut server, mut client) = our_pair(&dir, &[], &["--kimeout=300"]);
    server.app_write(b"x").unwrap();
    assert_eq!(client.app_read_exact(1), b"x");
    let exit = client.wait_within(PATIENCE);
    assert_eq!(
        fatal_line(&exit, 98),
        "timed out: no data for 300 ms after the handshake"
    );
    server.kill();
}

#[test]
fn hostile_servers() {
    let dir = TempDir::new("hostile");
    // Resets after reading the ClientHello.
    let listener = Listener::new();
    let sock = std::net::TcpStream::connect(listener.addr).unwrap();
    let mut engine = tlsc_io(&dir, &["-k", "localhost"], sock).spawn(None);
    let mut accepted = listener.accept();
    let mut hello = [0u8; 5];
    accepted.read_exact(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a handshake record");
    set_linger_zero(&accepted);
    drop(accepted);
    assert_eq!(engine.app_read_to_eof(), b"");
    let exit = engine.wait();
    assert!(matches!(exit.code, Some(98) | Some(111)), "{exit:?}");
    fatal_line(&exit, exit.code.unwrap());

    // Answers with garbage.
    let listener = Listener::new();
    let sock = std::net::TcpStream::connect(listener.addr).unwrap();
    let mut engine = tlsc_io(&dir, &["-k", "localhost"], sock).spawn(None);
    let mut accepted = listener.accept();
    accepted.read_exact(&mut hello).unwrap();
    let _ = accepted.write_all(&Stream::bytes(3, 4096));
    assert_eq!(engine.app_read_to_eof(), b"");
    let exit = engine.wait();
    // Held open until the engine is gone, so it cannot read a reset.
    drop(accepted);
    let line = fatal_line(&exit, 98);
    assert!(line.starts_with("TLS handshake failed: "), "{line}");

    // Closes at once (a FIN: closing with the ClientHello unread would
    // be a reset).
    let listener = Listener::new();
    let sock = std::net::TcpStream::connect(listener.addr).unwrap();
    let mut engine = tlsc_io(&dir, &["-k", "localhost"], sock).spawn(None);
    let accepted = listener.accept();
    accepted.shutdown(std::net::Shutdown::Write).unwrap();
    let exit = engine.wait();
    drop(accepted);
    assert_eq!(
        fatal_line(&exit, 98),
        "TLS handshake failed: peer closed the connection"
    );
}

/// s6-tlsc-io on an unused connection, for errors found before any byte.
fn start_error(args: &[&str], env: &[(&str, &Path)], with_ca: bool) -> Exit {
    let dir = TempDir::new("starterr");
    let (client_sock, _server_sock) = tcp_pair();
    let mut spawn = if with_ca {
        tlsc_io(&dir, args, client_sock)
    } else {
        let mut words = args.to_vec();
        words.extend(["3", "4"]);
        Spawn::program(client::TLSC_IO, words)
            .app_std()
            .net_on(3, 4, client_sock)
    };
    for (k, v) in env {
        spawn = spawn.env(*k, *v);
    }
    spawn.spawn(None).wait()
}

#[test]
fn usage_errors_are_100_with_one_usage_line() {
    for args in [
        &["-x", "3", "4"][..],
        &["3"],
        &["-k"],
        &["-6", "3", "3", "4"],
        &["-Z", "3", "4"],
        &["--sni", "3", "4"],
    ] {
        assert_usage(client::TLSC_IO, "s6-tlsc-io", args, &[]);
    }
}

#[test]
fn bad_environment_and_files() {
    let dir = TempDir::new("badenv");
    let empty = dir.write("empty.pem", "");
    let garbage = dir.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let nowhere = dir.path().join("nowhere.pem");
    let empty_dir = dir.subdir("empty-cadir");
    let (cert, _) = pki().client_full.write(&dir, "client");
    let (_, other_key) = pki().server_p256.write(&dir, "server");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());

    let exit = start_error(&["-k", "localhost"], &[], false);
    assert_eq!(fatal_line(&exit, 100), "neither CADIR nor CAFILE is set");
    for bad in [&empty, &garbage, &nowhere] {
        let exit = start_error(&["-k", "localhost"], &[("CAFILE", bad)], false);
        let line = fatal_line(&exit, 96);
        assert!(line.contains(&bad.display().to_string()), "{line}");
    }
    let exit = start_error(&["-k", "localhost"], &[("CADIR", &empty_dir)], false);
    assert!(fatal_line(&exit, 96).starts_with("no trust anchor found in CADIR"));
    let exit = start_error(&["-y", "-k", "localhost"], &[("CAFILE", &ca)], false);
    assert_eq!(fatal_line(&exit, 100), "-y given but CERTFILE not set");
    let exit = start_error(&["-y"], &[("CAFILE", &ca), ("CERTFILE", &cert)], false);
    assert_eq!(fatal_line(&exit, 100), "-y given but KEYFILE not set");
    let exit = start_error(
        &["-y", "-k", "localhost"],
        &[("CERTFILE", &cert), ("KEYFILE", &other_key)],
        true,
    );
    assert!(fatal_line(&exit, 96).contains("does not match"), "{exit:?}");
    let exit = start_error(&["-k", "not a name!"], &[], true);
    assert!(
        fatal_line(&exit, 100).starts_with("invalid servername"),
        "{exit:?}"
    );

    // A network descriptor that is not open.
    let out = std::process::Command::new(client::TLSC_IO)
        .args(["-k", "localhost", "8", "9"])
        .env_clear()
        .env("CAFILE", &ca)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111));
}

#[test]
fn privilege_drop() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("privilege_drop: not root, nothing to test");
        return;
    }
    let dir = TempDir::new("privs");
    let (mut server, mut client) = {
        let (client_sock, server_sock) = tcp_pair();
        let server = standard(&dir, &[]).spawn(Some(server_sock));
        let client = tlsc_io(&dir, &["-k", "localhost"], client_sock)
            .env("TLS_UID", "65534")
            .env("TLS_GID", "65534")
            .spawn(None);
        (server, client)
    };
    server.app_write(b"hello").unwrap();
    assert_eq!(client.app_read_exact(5), b"hello");
    assert_eq!(client.proc_status("Uid"), "65534\t65534\t65534\t65534");
    assert_eq!(client.proc_status("Gid"), "65534\t65534\t65534\t65534");
    assert_eq!(client.proc_status("Groups"), "");
    client.close_app_in();
    server.close_app_in();
    client.wait().assert_clean(0);
    server.wait().assert_clean(0);
}

#[test]
fn cadir_of_any_files_wins_over_cafile() {
    let dir = TempDir::new("cadir");
    let cadir = dir.subdir("anchors");
    // Any name, PEM or DER; an unrelated anchor beside the right one.
    std::fs::write(cadir.join("other.pem"), pki().other_ca.cert_pem()).unwrap();
    std::fs::write(cadir.join("the-ca"), pki().ca.cert_der()).unwrap();
    let garbage = dir.write("garbage.pem", "not a certificate");
    let server = RustlsServer::start(ServerSpec::new(&pki().server_p256));
    let mut engine = tlsc_io(&dir, &["-k", "localhost"], connect(server.port))
        .env("CADIR", &cadir)
        .env("CAFILE", &garbage)
        .spawn(None);
    engine.close_app_in();
    assert_eq!(engine.app_read_to_eof(), b"");
    engine.wait().assert_clean(0);
    assert_eq!(server.finish().error, None);
}
