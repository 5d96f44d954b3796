//! s6-tlsd-io: certificates. Key types and encodings, chains, SNI
//! selection, client certificates and trust anchors, the information
//! string byte for byte, OpenSSL cipher names, and `openssl s_client`.

mod common;

use common::*;
use rcgen::DnType;
use rustls::crypto::aws_lc_rs::cipher_suite as suite;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BOTH: [Versions; 2] = [Versions::Tls13, Versions::Tls12];

/// Runs a session to its clean end (data both ways, close_notify, the
/// app's EOF) and returns the information string from fd 5.
fn info_of(spawn: Spawn, setup: &ClientSetup, server_name: &str) -> Vec<u8> {
    let (info, exit) = info_and_exit(spawn, setup, server_name);
    exit.assert_clean(0);
    info
}

/// [`info_of`], and how the engine ended.
fn info_and_exit(spawn: Spawn, setup: &ClientSetup, server_name: &str) -> (Vec<u8>, Exit) {
    let mut s = session(spawn, setup, server_name);
    let info = s.engine.read_notification();
    s.client.send(b"ping").unwrap();
    assert_eq!(s.engine.app_read_exact(4), b"ping");
    s.engine.app_write(b"pong").unwrap();
    assert_eq!(s.client.recv_exact(4), b"pong");
    s.client.close_notify().unwrap();
    assert_eq!(s.engine.app_read_to_eof(), b"");
    s.engine.close_app_in();
    (info, s.engine.wait())
}

/// The value of one entry of an information string.
fn entry(info: &[u8], name: &str) -> Option<String> {
    decode_info(info)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {info:?}"))
        .1
}

/// s6-tlsd-io with `args`, `-d 5`, the standard server pair and
/// `CAFILE` = the standard CA.
fn with_ca(dir: &TempDir, args: &[&str]) -> Spawn {
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let mut words = args.to_vec();
    words.extend(["-d", "5"]);
    standard(dir, &words).notify(5).env("CAFILE", ca)
}

/// Expects the handshake to fail on the engine's side with 98 and a
/// message starting with `reason`; no information string is sent.
fn expect_handshake_failure(spawn: Spawn, setup: &ClientSetup, name: &str, reason: &str) -> Exit {
    let (client_sock, server_sock) = tcp_pair();
    let mut engine = spawn.spawn(Some(server_sock));
    let mut c = TlsClient::new(client_sock, setup, name);
    // Under TLS 1.3 the client may finish first; it then learns of the
    // failure from the alert when it reads.
    if c.handshake().is_ok() {
        let mut buf = [0; 16];
        assert!(c.recv(&mut buf).is_err(), "the client should see an alert");
    }
    let exit = engine.wait_within(Duration::from_secs(10));
    exit.assert_fatal(98, &format!("TLS handshake failed: {reason}"));
    if engine.notify.is_some() {
        assert_eq!(engine.read_notification(), b"", "no information string");
    }
    exit
}

// ---------------------------------------------------------------------
// The information string

#[test]
fn information_string_without_client_certificate_or_sni() {
    for d in [
        &["-d", "5"][..],
        &["-d5"],
        &["--notification-fd=5"],
        &["--notification-fd", "5"],
    ] {
        let dir = TempDir::new("info0");
        let info = info_of(
            standard(&dir, d).notify(5),
            &ClientSetup::new().versions(Versions::Tls13),
            "127.0.0.1",
        );
        assert_eq!(
            info,
            b"SSL_PROTOCOL=TLSv1.3\0SSL_CIPHER=TLS_AES_256_GCM_SHA384\0SSL_TLS_SNI_SERVERNAME\0\
              SSL_PEER_CERT_HASH\0SSL_PEER_CERT_SUBJECT\0SSL_SESSION_RESUMED=Initial\0\0",
            "{d:?}: {}",
            String::from_utf8_lossy(&info)
        );
    }
}

#[test]
fn information_string_with_everything() {
    let dir = TempDir::new("info1");
    let client = &pki().client_full;
    let setup = ClientSetup::new()
        .versions(Versions::Tls12)
        .suites(&[suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256])
        .identity(client);
    let info = info_of(with_ca(&dir, &["-Y"]), &setup, "localhost");
    let expected = format!(
        "SSL_PROTOCOL=TLSv1.2\0SSL_CIPHER=ECDHE-ECDSA-AES128-GCM-SHA256\0\
         SSL_TLS_SNI_SERVERNAME=localhost\0SSL_PEER_CERT_HASH=SHA256:{}\0\
         SSL_PEER_CERT_SUBJECT={CLIENT_FULL_SUBJECT}\0SSL_SESSION_RESUMED=Initial\0\0",
        sha256_hex(&client.cert)
    );
    assert_eq!(String::from_utf8(info).unwrap(), expected);
    // The hash is of the DER certificate, in lowercase hex.
    assert_eq!(client.sha256().len(), 64);
    assert!(client
        .sha256()
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

/// Subjects: attribute order, escaping, UTF-8, and the bare name when no
/// shown attribute is present.
#[test]
fn subject_formats_and_escaping() {
    let dc = DnType::CustomDnType(vec![0, 9, 2342, 19_200_300, 100, 1, 25]);
    type Subject<'a> = Vec<(DnType, &'a str)>;
    let cases: Vec<(Subject, Option<&str>)> = vec![
        (
            vec![(DnType::CommonName, "a,b=c+d<e>f#g\\h;i")],
            Some("CN=a\\,b\\=c\\+d\\<e\\>f\\#g\\\\h;i"),
        ),
        (
            vec![(DnType::CommonName, " lead trail ")],
            Some("CN=\\ lead trail\\ "),
        ),
        (
            vec![(DnType::CommonName, "line1\nline2")],
            Some("CN=line1\\\nline2"),
        ),
        (
            vec![
                (DnType::CommonName, "Zoë 🦀"),
                (DnType::OrganizationName, "Société Générale"),
                (DnType::CountryName, "FR"),
            ],
            Some("C=FR, O=Société Générale, CN=Zoë 🦀"),
        ),
        (
            vec![
                (dc.clone(), "example"),
                (DnType::OrganizationalUnitName, "+unit+"),
            ],
            Some("OU=\\+unit\\+"),
        ),
        (vec![(dc, "example")], None),
        (vec![], None),
    ];
    for (subject, expected) in cases {
        let leaf = pki().ca.client(&subject, KeyKind::EcdsaP256);
        let dir = TempDir::new("subject");
        let info = info_of(
            with_ca(&dir, &["-y"]),
            &ClientSetup::new().identity(&leaf),
            "localhost",
        );
        assert_eq!(
            entry(&info, "SSL_PEER_CERT_SUBJECT").as_deref(),
            expected,
            "{subject:?}"
        );
        assert_eq!(
            entry(&info, "SSL_PEER_CERT_HASH"),
            Some(format!("SHA256:{}", leaf.sha256()))
        );
    }
}

/// A subject is the peer's text: at -v2 its controls are escaped in the
/// log, so a CA-issued certificate cannot forge a line (or a terminal
/// sequence) there, while the information string keeps its bytes.
#[test]
fn a_logged_subject_cannot_forge_a_line() {
    let cn = "evil\ns6-tlsd-io: fatal: forged\r\u{1b}[2K\u{202e}";
    let leaf = pki()
        .ca
        .client(&[(DnType::CommonName, cn)], KeyKind::EcdsaP256);
    let dir = TempDir::new("log-injection");
    let (info, exit) = info_and_exit(
        with_ca(&dir, &["-y", "-v2"]),
        &ClientSetup::new().identity(&leaf),
        "localhost",
    );
    let subject = entry(&info, "SSL_PEER_CERT_SUBJECT").expect("a subject");
    assert_eq!(subject, format!("CN={}", cn.replace('\n', "\\\n")));
    assert_eq!(exit.code, Some(0), "{:?}", exit.stderr);
    assert_eq!(exit.stderr.lines().count(), 1, "{:?}", exit.stderr);
    assert!(
        exit.stderr
            .ends_with(" client=CN=evil\\\\x0as6-tlsd-io: fatal: forged\\x0d\\x1b[2K\\u{202e}\n"),
        "{:?}",
        exit.stderr
    );
}

// ---------------------------------------------------------------------
// Client certificates

#[test]
fn optional_client_certificate() {
    for v in BOTH {
        for flag in ["-Y", "--client-cert"] {
            let dir = TempDir::new("optional");
            // Without one: bare PEER entries.
            let info = info_of(
                with_ca(&dir, &[flag]),
                &ClientSetup::new().versions(v),
                "localhost",
            );
            assert_eq!(entry(&info, "SSL_PEER_CERT_HASH"), None);
            assert_eq!(entry(&info, "SSL_PEER_CERT_SUBJECT"), None);
            // With one.
            let client = &pki().client_full;
            let info = info_of(
                with_ca(&dir, &[flag]),
                &ClientSetup::new().versions(v).identity(client),
                "localhost",
            );
            assert_eq!(
                entry(&info, "SSL_PEER_CERT_HASH"),
                Some(format!("SHA256:{}", client.sha256()))
            );
            assert_eq!(
                entry(&info, "SSL_PEER_CERT_SUBJECT").as_deref(),
                Some(CLIENT_FULL_SUBJECT)
            );
        }
    }
}

#[test]
fn mandatory_client_certificate() {
    for v in BOTH {
        for flag in ["-y", "--mandatory-client-cert"] {
            let dir = TempDir::new("mandatory");
            let client = &pki().client_full;
            let info = info_of(
                with_ca(&dir, &[flag]),
                &ClientSetup::new().versions(v).identity(client),
                "localhost",
            );
            assert_eq!(
                entry(&info, "SSL_PEER_CERT_HASH"),
                Some(format!("SHA256:{}", client.sha256()))
            );
            expect_handshake_failure(
                with_ca(&dir, &[flag]),
                &ClientSetup::new().versions(v),
                "localhost",
                "the peer presented no certificate",
            );
        }
    }
}

/// A presented certificate must verify, with -Y as with -y.
#[test]
fn client_certificate_that_does_not_verify_is_98() {
    let expired = {
        let mut params = rcgen::CertificateParams::default();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        pki().ca.issue(params, KeyKind::EcdsaP256)
    };
    // A CA certificate (basicConstraints CA) presented as the client's own.
    let ca_as_leaf = {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        pki().ca.issue(params, KeyKind::EcdsaP256)
    };
    let cases = [
        (
            &pki().client_other,
            "it is not issued by a trusted certificate authority (unknown issuer)",
        ),
        (&expired, "it expired on 2001-01-01T00:00:00Z"),
        (
            &ca_as_leaf,
            "it is a CA certificate, used as an end-entity certificate",
        ),
    ];
    for v in BOTH {
        for flag in ["-Y", "-y"] {
            for (leaf, why) in &cases {
                let dir = TempDir::new("wrongca");
                expect_handshake_failure(
                    with_ca(&dir, &[flag]),
                    &ClientSetup::new().versions(v).identity(leaf),
                    "localhost",
                    &format!("invalid peer certificate: {why}\n"),
                );
            }
        }
    }
}

/// CADIR: every regular file, PEM or DER, whatever its name;
/// subdirectories ignored. CAFILE: a PEM bundle. CADIR wins over CAFILE.
#[test]
fn trust_anchors_from_cadir_and_cafile() {
    let dir = TempDir::new("anchors");
    let cadir = dir.subdir("cadir");
    std::fs::write(cadir.join("other.pem"), pki().other_ca.cert_pem()).unwrap();
    std::fs::write(cadir.join("anchor"), &pki().ca.cert_der()[..]).unwrap();
    std::fs::create_dir(cadir.join("nested")).unwrap();
    std::fs::write(cadir.join("nested").join("junk"), "not a certificate").unwrap();
    let bundle = dir.write(
        "bundle.pem",
        format!("{}{}", pki().other_ca.cert_pem(), pki().ca.cert_pem()),
    );
    let only_other = dir.subdir("only-other");
    std::fs::write(only_other.join("a.pem"), pki().other_ca.cert_pem()).unwrap();
    let ours = dir.write("ours.pem", pki().ca.cert_pem());
    let nowhere = dir.path().join("nowhere.pem");

    let spawn = |env: &[(&str, &Path)]| {
        let mut s = standard(&dir, &["-y", "-d5"]).notify(5);
        for (k, v) in env {
            s = s.env(*k, *v);
        }
        s
    };
    for client in [&pki().client_full, &pki().client_other] {
        let setup = ClientSetup::new().identity(client);
        for env in [
            &[("CADIR", cadir.as_path())][..],
            &[("CAFILE", bundle.as_path())],
        ] {
            let info = info_of(spawn(env), &setup, "localhost");
            assert_eq!(
                entry(&info, "SSL_PEER_CERT_HASH"),
                Some(format!("SHA256:{}", client.sha256()))
            );
        }
    }
    // CADIR wins: CAFILE is not even read.
    let setup = ClientSetup::new().identity(&pki().client_full);
    info_of(
        spawn(&[("CADIR", &cadir), ("CAFILE", &nowhere)]),
        &setup,
        "localhost",
    );
    expect_handshake_failure(
        spawn(&[("CADIR", &only_other), ("CAFILE", &ours)]),
        &setup,
        "localhost",
        "invalid peer certificate: ",
    );
}

// ---------------------------------------------------------------------
// Server keys, encodings, chains

/// Every key type, under both protocol versions, verified by the client
/// against the CA (the certificate names localhost).
#[test]
fn server_key_types() {
    let p384 = pki().ca.server(&["localhost"], KeyKind::EcdsaP384);
    for (leaf, tls12_cipher) in [
        (&pki().server_p256, "ECDHE-ECDSA-AES256-GCM-SHA384"),
        (&p384, "ECDHE-ECDSA-AES256-GCM-SHA384"),
        (&pki().server_rsa, "ECDHE-RSA-AES256-GCM-SHA384"),
        (&pki().server_ed25519, "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ] {
        for v in BOTH {
            let dir = TempDir::new("keytype");
            let (cert, key) = leaf.write(&dir, "server");
            let spawn = Spawn::new(["-d5", "3", "4"])
                .app(3, 4)
                .notify(5)
                .cert(&cert, &key);
            let mut s = session(spawn, &ClientSetup::new().versions(v), "localhost");
            assert_eq!(s.client.server_leaf(), leaf.cert, "{:?}", leaf.kind);
            let info = s.engine.read_notification();
            let cipher = entry(&info, "SSL_CIPHER").unwrap();
            match v {
                Versions::Tls12 => assert_eq!(cipher, tls12_cipher, "{:?}", leaf.kind),
                _ => assert_eq!(cipher, "TLS_AES_256_GCM_SHA384"),
            }
            s.client.close_notify().unwrap();
            assert_eq!(s.engine.app_read_to_eof(), b"");
            s.engine.close_app_in();
            s.engine.wait().assert_clean(0);
        }
    }
}

/// Keys in PKCS#8, SEC1 and PKCS#1, PEM and DER; certificates in DER.
#[test]
fn key_and_certificate_encodings() {
    let dir = TempDir::new("encodings");
    let ec = &pki().server_p256;
    let rsa = &pki().server_rsa;
    let (ec_cert, ec_key) = ec.write(&dir, "ec");
    let (rsa_cert, rsa_key) = rsa.write(&dir, "rsa");
    let out = |name: &str| dir.path().join(name);
    let convert = |args: &[&str], input: &Path, output: &Path| {
        let mut words: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        words.extend([
            "-in".as_ref(),
            input.as_os_str(),
            "-out".as_ref(),
            output.as_os_str(),
        ]);
        run_openssl(words);
    };
    convert(&["ec"], &ec_key, &out("sec1.pem"));
    convert(&["ec", "-outform", "DER"], &ec_key, &out("sec1.der"));
    convert(&["rsa", "-traditional"], &rsa_key, &out("pkcs1.pem"));
    convert(
        &["rsa", "-traditional", "-outform", "DER"],
        &rsa_key,
        &out("pkcs1.der"),
    );
    let pem = |p: &str| std::fs::read_to_string(out(p)).unwrap();
    assert!(pem("sec1.pem").contains("BEGIN EC PRIVATE KEY"));
    assert!(pem("pkcs1.pem").contains("BEGIN RSA PRIVATE KEY"));
    let ec_der_cert = dir.write("ec.der", &ec.cert[..]);
    let ec_der_key = dir.write("ec-key.der", &ec.key_der);
    let rsa_der_cert = dir.write("rsa.der", &rsa.cert[..]);
    let cases: Vec<(&Leaf, PathBuf, PathBuf)> = vec![
        (ec, ec_cert.clone(), out("sec1.pem")),
        (ec, ec_cert.clone(), out("sec1.der")),
        (ec, ec_der_cert.clone(), ec_der_key.clone()),
        (ec, ec_der_cert, ec_key),
        (ec, ec_cert, ec_der_key),
        (rsa, rsa_cert.clone(), out("pkcs1.pem")),
        (rsa, rsa_der_cert, out("pkcs1.der")),
        (rsa, rsa_cert, rsa_key),
    ];
    for (leaf, cert, key) in cases {
        let spawn = Spawn::new(["3", "4"]).app(3, 4).cert(&cert, &key);
        let mut s = session(spawn, &ClientSetup::new(), "localhost");
        assert_eq!(s.client.server_leaf(), leaf.cert, "{cert:?} {key:?}");
        s.client.close_notify().unwrap();
        assert_eq!(s.engine.app_read_to_eof(), b"");
        s.engine.close_app_in();
        s.engine.wait().assert_clean(0);
    }
}

/// A PEM chain (leaf then intermediate) is sent whole: a client that
/// trusts only the root verifies it; without the intermediate it cannot.
#[test]
fn certificate_chain() {
    let intermediate = pki().ca.intermediate("s6-tls Test Intermediate");
    let leaf = intermediate.server(&["localhost"], KeyKind::EcdsaP256);
    let dir = TempDir::new("chain");
    let (chain, key) = leaf.write_chain(&dir, "chained", &[&intermediate]);
    let mut s = session(
        Spawn::new(["3", "4"]).app(3, 4).cert(&chain, &key),
        &ClientSetup::new(),
        "localhost",
    );
    let presented = s.client.conn.peer_certificates().unwrap().to_vec();
    assert_eq!(presented, vec![leaf.cert.clone(), intermediate.cert_der()]);
    s.client.close_notify().unwrap();
    s.engine.close_app_in();
    assert_eq!(s.engine.app_read_to_eof(), b"");
    s.engine.wait().assert_clean(0);

    let (alone, key) = leaf.write(&dir, "alone");
    let (client_sock, server_sock) = tcp_pair();
    let mut engine = Spawn::new(["3", "4"])
        .app(3, 4)
        .cert(&alone, &key)
        .spawn(Some(server_sock));
    let mut c = TlsClient::new(client_sock, &ClientSetup::new(), "localhost");
    let err = c.handshake().unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    engine
        .wait_within(Duration::from_secs(10))
        .assert_fatal(
            98,
            "TLS handshake failed: the peer sent the alert unknown_ca: it does not trust the issuer of our certificate",
        );
}

// ---------------------------------------------------------------------
// Our own certificate: served as it is, with a warning when clients may
// refuse it (the key check compares public keys, it verifies nothing)

/// One session with `cert`/`key` and `args`, to a client that accepts any
/// certificate: the certificate presented, and the engine's exit.
fn serve_own(
    cert: &Path,
    key: &Path,
    args: &[&str],
) -> (rustls::pki_types::CertificateDer<'static>, Exit) {
    let mut words = args.to_vec();
    words.extend(["3", "4"]);
    let spawn = Spawn::new(words).app(3, 4).cert(cert, key);
    let mut s = session(spawn, &ClientSetup::new().trust(Trust::Any), "localhost");
    let leaf = s.client.server_leaf();
    s.client.close_notify().unwrap();
    assert_eq!(s.engine.app_read_to_eof(), b"");
    s.engine.close_app_in();
    (leaf, s.engine.wait())
}

/// `openssl x509 -req` without extensions makes a v1 certificate, as old
/// deployments have them: served (s6-networking serves it), with a
/// warning at -v1 and up; `openssl s_client` verifies it (it is its own
/// trust anchor) and talks. RSA and EC keys. (rustls refuses v1
/// certificates even when told to accept any, so OpenSSL is the client.)
#[test]
fn x509_v1_server_certificate_is_served_with_a_warning() {
    let dir = TempDir::new("v1");
    let ec = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..];
    for (stem, newkey, verbosity) in [("ec", ec, "-v1"), ("rsa", &["-newkey", "rsa:2048"], "-v0")] {
        let key = dir.path().join(format!("{stem}.key"));
        let csr = dir.path().join(format!("{stem}.csr"));
        let cert = dir.path().join(format!("{stem}.crt"));
        let mut req = vec!["req", "-new", "-nodes", "-subj", "/CN=localhost"];
        req.extend(newkey);
        req.extend([
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ]);
        run_openssl(req);
        run_openssl([
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            csr.to_str().unwrap(),
            "-key",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]);
        let text = String::from_utf8(run_openssl([
            "x509",
            "-noout",
            "-text",
            "-in",
            cert.to_str().unwrap(),
        ]))
        .unwrap();
        assert!(
            text.contains("Version: 1 (0x0)"),
            "the test needs a v1 certificate: {text}"
        );

        let spawn = Spawn::new([verbosity, "3", "4"])
            .app(3, 4)
            .cert(&cert, &key);
        let (mut engine, mut openssl, mut stdin, stdout, _stderr) =
            s_client(&cert, spawn, "-tls1_3");
        stdin.write_all(b"over v1\n").unwrap();
        assert_eq!(engine.app_read_exact(8), b"over v1\n", "{stem}");
        engine.app_write(b"reply\n").unwrap();
        assert_eq!(read_until(&stdout, "reply\n"), "reply\n");
        drop(stdin);
        assert_eq!(engine.app_read_to_eof(), b"");
        engine.close_app_in();
        let exit = engine.wait();
        assert!(openssl.wait_within(DEADLINE).success(), "{stem}");
        if verbosity == "-v0" {
            exit.assert_clean(0);
            continue;
        }
        assert_eq!(exit.code, Some(0), "{stem}: {:?}", exit.stderr);
        assert_eq!(
            exit.stderr,
            format!(
                "s6-tlsd-io: warning: CERTFILE {}: an X.509 v1 or v2 certificate: many clients refuse certificates older than v3\n",
                cert.display()
            ),
        );
    }
}

/// A CA certificate as our own is served (we verify nothing of our own
/// certificate); a verifying rustls client refuses it, and the engine's
/// line says the client refused our certificate, in words.
#[test]
fn ca_certificate_as_our_own_is_refused_by_the_client_in_words() {
    let dir = TempDir::new("caasown");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let (cert, key) = pki()
        .ca
        .issue(params, KeyKind::EcdsaP256)
        .write(&dir, "ca-leaf");
    expect_handshake_failure(
        Spawn::new(["3", "4"]).app(3, 4).cert(&cert, &key),
        &ClientSetup::new(),
        "localhost",
        "the peer sent the alert certificate_unknown: it refused our certificate\n",
    );
}

/// An expired or not yet valid certificate is served as it is, with a
/// warning line at start that says when it was or will be valid.
#[test]
fn server_certificate_out_of_its_validity_is_served_with_a_warning() {
    let dir = TempDir::new("validity");
    let leaf = |from: (i32, u8, u8), to: (i32, u8, u8)| {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        pki().ca.issue(params, KeyKind::EcdsaP256)
    };
    for (stem, leaf, warning) in [
        ("expired", leaf((2000, 1, 1), (2001, 1, 1)), "the certificate expired on 2001-01-01T00:00:00Z: clients will refuse it"),
        ("future", leaf((2100, 1, 1), (2101, 1, 1)), "the certificate is not valid before 2100-01-01T00:00:00Z: clients will refuse it until then"),
    ] {
        let (cert, key) = leaf.write(&dir, stem);
        let (presented, exit) = serve_own(&cert, &key, &[]);
        assert_eq!(presented, leaf.cert, "{stem}");
        assert_eq!(exit.code, Some(0), "{stem}: {:?}", exit.stderr);
        assert_eq!(
            exit.stderr,
            format!("s6-tlsd-io: warning: CERTFILE {}: {warning}\n", cert.display()),
        );
    }
}

// ---------------------------------------------------------------------
// Cipher names

#[test]
fn openssl_cipher_names() {
    let cases = [
        (
            Versions::Tls13,
            suite::TLS13_AES_128_GCM_SHA256,
            false,
            "TLS_AES_128_GCM_SHA256",
        ),
        (
            Versions::Tls13,
            suite::TLS13_AES_256_GCM_SHA384,
            false,
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            Versions::Tls13,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            false,
            "TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            Versions::Tls12,
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            false,
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            Versions::Tls12,
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            false,
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            Versions::Tls12,
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            false,
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
        (
            Versions::Tls12,
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            true,
            "ECDHE-RSA-AES128-GCM-SHA256",
        ),
        (
            Versions::Tls12,
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            true,
            "ECDHE-RSA-AES256-GCM-SHA384",
        ),
        (
            Versions::Tls12,
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            true,
            "ECDHE-RSA-CHACHA20-POLY1305",
        ),
    ];
    for (v, s, rsa, name) in cases {
        let dir = TempDir::new("cipher");
        let leaf = if rsa {
            &pki().server_rsa
        } else {
            &pki().server_p256
        };
        let (cert, key) = leaf.write(&dir, "server");
        let spawn = Spawn::new(["-d5", "3", "4"])
            .app(3, 4)
            .notify(5)
            .cert(&cert, &key);
        let info = info_of(
            spawn,
            &ClientSetup::new().versions(v).suites(&[s]),
            "localhost",
        );
        let protocol = if v == Versions::Tls13 {
            "TLSv1.3"
        } else {
            "TLSv1.2"
        };
        assert_eq!(entry(&info, "SSL_PROTOCOL").as_deref(), Some(protocol));
        assert_eq!(entry(&info, "SSL_CIPHER").as_deref(), Some(name));
    }
}

/// The server's preference wins over the client's order.
#[test]
fn server_cipher_preference() {
    for (v, offered, chosen) in [
        (
            Versions::Tls13,
            vec![
                suite::TLS13_CHACHA20_POLY1305_SHA256,
                suite::TLS13_AES_128_GCM_SHA256,
                suite::TLS13_AES_256_GCM_SHA384,
            ],
            "TLS_AES_256_GCM_SHA384",
        ),
        (
            Versions::Tls12,
            vec![
                suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ],
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
    ] {
        let dir = TempDir::new("pref");
        let info = info_of(
            standard(&dir, &["-d5"]).notify(5),
            &ClientSetup::new().versions(v).suites(&offered),
            "localhost",
        );
        assert_eq!(entry(&info, "SSL_CIPHER").as_deref(), Some(chosen));
    }
}

// ---------------------------------------------------------------------
// SNI

struct SniSetup {
    dir: TempDir,
    default: Leaf,
    mail: Leaf,
    wild: Leaf,
}

impl SniSetup {
    fn new() -> SniSetup {
        SniSetup {
            dir: TempDir::new("sni"),
            default: pki().server_p256.clone(),
            mail: pki().ca.server(&["mail.example.org"], KeyKind::EcdsaP256),
            wild: pki().ca.server(&["*.wild.example.org"], KeyKind::Ed25519),
        }
    }

    /// s6-tlsd-io with `args -d5 3 4`, the plain pair (or a missing one)
    /// and the two named pairs.
    fn spawn(&self, args: &[&str], plain_present: bool) -> Spawn {
        let (dc, dk) = self.default.write(&self.dir, "default");
        let (mc, mk) = self.mail.write(&self.dir, "mail");
        let (wc, wk) = self.wild.write(&self.dir, "wild");
        let mut words = args.to_vec();
        words.extend(["-d5", "3", "4"]);
        let spawn = Spawn::new(words)
            .app(3, 4)
            .notify(5)
            .env("CERTFILE:mail.example.org", mc)
            .env("KEYFILE:mail.example.org", mk)
            .env("CERTFILE:*.Wild.Example.org", wc)
            .env("KEYFILE:*.Wild.Example.org", wk);
        if plain_present {
            spawn.cert(&dc, &dk)
        } else {
            let nowhere = self.dir.path().join("nowhere");
            spawn.cert(&nowhere, &nowhere)
        }
    }

    /// Connects with `name` (an IP address sends no SNI) and returns the
    /// certificate presented and the SNI entry.
    fn presented(
        &self,
        spawn: Spawn,
        name: &str,
    ) -> (rustls::pki_types::CertificateDer<'static>, Option<String>) {
        let (leaf, sni, exit) = self.presented_and_exit(spawn, name);
        exit.assert_clean(0);
        (leaf, sni)
    }

    /// [`SniSetup::presented`], and how the engine ended.
    fn presented_and_exit(
        &self,
        spawn: Spawn,
        name: &str,
    ) -> (
        rustls::pki_types::CertificateDer<'static>,
        Option<String>,
        Exit,
    ) {
        let setup = ClientSetup::new().trust(Trust::Any);
        let mut s = session(spawn, &setup, name);
        let info = s.engine.read_notification();
        let leaf = s.client.server_leaf();
        s.client.close_notify().unwrap();
        assert_eq!(s.engine.app_read_to_eof(), b"");
        s.engine.close_app_in();
        let exit = s.engine.wait();
        (leaf, entry(&info, "SSL_TLS_SNI_SERVERNAME"), exit)
    }
}

/// A `*.tld` pair (which s6-networking never matches) is skipped with a
/// warning at -v1 and up: every name still gets its pair or the default.
#[test]
fn sni_bare_tld_wildcard_pair_is_skipped() {
    let t = SniSetup::new();
    let tld = pki().ca.server(&["a.test"], KeyKind::EcdsaP256);
    let (tc, tk) = tld.write(&t.dir, "tld");
    let spawn = |verbosity: &str| {
        t.spawn(&["-k1", verbosity], true)
            .env("CERTFILE:*.test", &tc)
            .env("KEYFILE:*.test", &tk)
    };
    let warning = "s6-tlsd-io: warning: KEYFILE:*.test: a wildcard over a top-level domain never matches: pair skipped\n";
    for (name, expected) in [
        ("a.test", &t.default),
        ("mail.example.org", &t.mail),
        ("a.wild.example.org", &t.wild),
        ("127.0.0.1", &t.default),
    ] {
        let (leaf, _, exit) = t.presented_and_exit(spawn("-v1"), name);
        assert_eq!(leaf, expected.cert, "{name}");
        assert_eq!(exit.code, Some(0), "{name}: {:?}", exit.stderr);
        assert_eq!(exit.stderr, warning, "{name}");
    }
    let (leaf, _, exit) = t.presented_and_exit(spawn("-v0"), "a.test");
    assert_eq!(leaf, t.default.cert);
    exit.assert_clean(0);
    // -k2: only the named pairs, and a.test has none.
    let k2 = t
        .spawn(&["-k2"], false)
        .env("CERTFILE:*.test", &tc)
        .env("KEYFILE:*.test", &tk);
    let (leaf, _, exit) = t.presented_and_exit(k2, "mail.example.org");
    assert_eq!(leaf, t.mail.cert);
    assert_eq!(exit.stderr, warning);
}

#[test]
fn sni_selection_with_a_default() {
    let t = SniSetup::new();
    let cases = [
        ("mail.example.org", &t.mail, Some("mail.example.org")),
        ("MAIL.Example.ORG", &t.mail, Some("mail.example.org")),
        ("a.wild.example.org", &t.wild, Some("a.wild.example.org")),
        ("X.WILD.example.org", &t.wild, Some("x.wild.example.org")),
        (
            "a.b.wild.example.org",
            &t.default,
            Some("a.b.wild.example.org"),
        ),
        ("wild.example.org", &t.default, Some("wild.example.org")),
        ("other.org", &t.default, Some("other.org")),
        ("127.0.0.1", &t.default, None),
    ];
    for (name, expected, sni) in cases {
        let (leaf, got_sni) = t.presented(t.spawn(&["-k1"], true), name);
        assert_eq!(leaf, expected.cert, "{name}");
        assert_eq!(got_sni.as_deref(), sni, "{name}");
    }
    // The other spellings of -k 1.
    for args in [&["-k", "1"][..], &["--sni"], &["--sni-level=1"]] {
        for (name, expected, _) in [&cases[0], &cases[2], &cases[6]] {
            let (leaf, _) = t.presented(t.spawn(args, true), name);
            assert_eq!(leaf, expected.cert, "{args:?} {name}");
        }
    }
}

/// -k2: the plain CERTFILE/KEYFILE are ignored (here they do not even
/// exist), and a name without a pair fails the handshake. Every level
/// above 2 is 2, as in s6-networking.
#[test]
fn sni_level_2_has_no_default() {
    let t = SniSetup::new();
    for args in [
        &["-k2"][..],
        &["--mandatory-sni"],
        &["--sni-level", "2"],
        &["-k3"],
        &["--sni-level=99"],
    ] {
        let (leaf, _) = t.presented(t.spawn(args, false), "mail.example.org");
        assert_eq!(leaf, t.mail.cert);
        let (leaf, _) = t.presented(t.spawn(args, false), "z.wild.example.org");
        assert_eq!(leaf, t.wild.cert);
        for name in ["other.org", "a.b.wild.example.org", "127.0.0.1"] {
            expect_handshake_failure(
                t.spawn(args, false),
                &ClientSetup::new().trust(Trust::Any),
                name,
                "no certificate for the server name the client asked for",
            );
        }
    }
}

/// Without -k, the named pairs are not used.
#[test]
fn sni_level_0_uses_the_plain_pair() {
    let t = SniSetup::new();
    let (leaf, sni) = t.presented(t.spawn(&[], true), "mail.example.org");
    assert_eq!(leaf, t.default.cert);
    assert_eq!(sni.as_deref(), Some("mail.example.org"));
}

// ---------------------------------------------------------------------
// openssl s_client

/// `openssl s_client` against the engine: verification, data both ways,
/// a clean close; its view of the protocol and cipher matches the
/// information string.
#[test]
fn openssl_s_client() {
    let dir = TempDir::new("openssl");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let (client_cert, client_key) = pki().client_full.write(&dir, "client");
    for (version_flag, with_client_cert) in [("-tls1_3", false), ("-tls1_2", true)] {
        let listener = Listener::new();
        let mut args: Vec<std::ffi::OsString> = vec![
            "s_client".into(),
            "-connect".into(),
            listener.addr.to_string().into(),
            "-servername".into(),
            "localhost".into(),
            "-CAfile".into(),
            ca.clone().into(),
            "-verify_return_error".into(),
            "-brief".into(),
            version_flag.into(),
        ];
        if with_client_cert {
            args.extend([
                "-cert".into(),
                client_cert.clone().into(),
                "-key".into(),
                client_key.clone().into(),
            ]);
        }
        let mut openssl = ChildGuard(
            Command::new(OPENSSL)
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn openssl"),
        );
        let mut stdin = openssl.0.stdin.take().unwrap();
        let stdout = openssl.0.stdout.take().unwrap();
        let stderr = drain(openssl.0.stderr.take().unwrap());
        let server_sock = listener.accept();
        let engine_args: &[&str] = if with_client_cert { &["-y"] } else { &[] };
        let mut engine = with_ca(&dir, engine_args).spawn(Some(server_sock));

        stdin.write_all(b"hello from openssl\n").unwrap();
        assert_eq!(engine.app_read_exact(19), b"hello from openssl\n");
        let info = engine.read_notification();
        engine.app_write(b"hello from the app\n").unwrap();
        let stdout_fd: std::os::fd::OwnedFd = stdout.into();
        set_nonblocking(stdout_fd.as_fd());
        let seen = read_until(&stdout_fd, "hello from the app\n");
        assert!(seen.ends_with("hello from the app\n"), "{seen:?}");
        // EOF on its stdin: s_client sends close_notify and waits for our
        // side to close.
        drop(stdin);
        assert_eq!(engine.app_read_to_eof(), b"");
        engine.close_app_in();
        engine.wait().assert_clean(0);
        let status = openssl.wait_within(DEADLINE);
        let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
        assert!(status.success(), "openssl: {status}: {stderr}");
        let protocol = entry(&info, "SSL_PROTOCOL").unwrap();
        let cipher = entry(&info, "SSL_CIPHER").unwrap();
        assert!(stderr.contains("Verification: OK"), "{stderr}");
        assert!(
            stderr.contains(&format!("Protocol version: {protocol}")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("Ciphersuite: {cipher}")),
            "{stderr}"
        );
        assert_eq!(
            protocol,
            if with_client_cert {
                "TLSv1.2"
            } else {
                "TLSv1.3"
            }
        );
        assert_eq!(
            entry(&info, "SSL_TLS_SNI_SERVERNAME").as_deref(),
            Some("localhost")
        );
        if with_client_cert {
            assert_eq!(
                entry(&info, "SSL_PEER_CERT_HASH"),
                Some(format!("SHA256:{}", pki().client_full.sha256()))
            );
            assert_eq!(
                entry(&info, "SSL_PEER_CERT_SUBJECT").as_deref(),
                Some(CLIENT_FULL_SUBJECT)
            );
        } else {
            assert_eq!(entry(&info, "SSL_PEER_CERT_HASH"), None);
        }
    }
}

/// The bundle `-Sy`: a client certificate is required, and the app's EOF
/// is answered with a close_notify.
#[test]
fn bundled_sy() {
    let dir = TempDir::new("sy");
    let client = &pki().client_full;
    let mut s = session(
        with_ca(&dir, &["-Sy"]),
        &ClientSetup::new().identity(client),
        "localhost",
    );
    let info = s.engine.read_notification();
    assert_eq!(
        entry(&info, "SSL_PEER_CERT_HASH"),
        Some(format!("SHA256:{}", client.sha256()))
    );
    s.engine.app_write(b"bye").unwrap();
    s.engine.close_app_in();
    let (data, end) = s.client.recv_to_end();
    assert_eq!(data, b"bye");
    assert_eq!(end.unwrap(), End::CloseNotify);
    s.client.close_notify().unwrap();
    assert_eq!(s.engine.app_read_to_eof(), b"");
    s.engine.wait().assert_clean(0);
    expect_handshake_failure(
        with_ca(&dir, &["-Sy"]),
        &ClientSetup::new(),
        "localhost",
        "the peer presented no certificate",
    );
}

/// Starts `openssl s_client VERSION` against a fresh engine (standard
/// pair, `-v2`); returns the engine, s_client, its stdin, and its stdout
/// and stderr (non-blocking, for [`read_until`]).
/// `openssl s_client` trusting only `ca`, verifying (`-verify_return_error`),
/// against the engine `spawn`.
fn s_client(
    ca: &Path,
    spawn: Spawn,
    version_flag: &str,
) -> (
    Engine,
    ChildGuard,
    std::process::ChildStdin,
    std::os::fd::OwnedFd,
    std::os::fd::OwnedFd,
) {
    let listener = Listener::new();
    let mut openssl = ChildGuard(
        Command::new(OPENSSL)
            .args(["s_client", "-connect", &listener.addr.to_string()])
            .args(["-servername", "localhost", "-CAfile"])
            .arg(ca)
            .args(["-verify_return_error", "-brief", version_flag])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl"),
    );
    let stdin = openssl.0.stdin.take().unwrap();
    let stdout: std::os::fd::OwnedFd = openssl.0.stdout.take().unwrap().into();
    let stderr: std::os::fd::OwnedFd = openssl.0.stderr.take().unwrap().into();
    set_nonblocking(stdout.as_fd());
    set_nonblocking(stderr.as_fd());
    let engine = spawn.spawn(Some(listener.accept()));
    (engine, openssl, stdin, stdout, stderr)
}

/// TLS 1.3 key update requested by OpenSSL (`K`): answered, traffic
/// goes on.
#[test]
fn openssl_key_update() {
    let dir = TempDir::new("keyupdate");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let (mut engine, mut openssl, mut stdin, stdout, stderr) =
        s_client(&ca, standard(&dir, &["-v2"]), "-tls1_3");
    stdin.write_all(b"before\n").unwrap();
    assert_eq!(engine.app_read_exact(7), b"before\n");
    // s_client reads its commands from whole reads of stdin: wait until
    // it has taken this one before sending more.
    stdin.write_all(b"K\n").unwrap();
    read_until(&stderr, "KEYUPDATE\n");
    stdin.write_all(b"after\n").unwrap();
    assert_eq!(engine.app_read_exact(6), b"after\n");
    engine.app_write(b"reply\n").unwrap();
    assert_eq!(read_until(&stdout, "reply\n"), "reply\n");
    // The client closes first (close_notify), then the app.
    drop(stdin);
    assert_eq!(engine.app_read_to_eof(), b"");
    engine.close_app_in();
    engine.wait().assert_no_complaint(0);
    assert!(openssl.wait_within(DEADLINE).success());
}

/// What the README says of `-s`: OpenSSL 3 answers our half-close (no
/// close_notify) with a fatal decode_error alert, which the engine, still
/// reading the client for the application, logs as the reason of its 98;
/// with `-S` the client gets its close_notify and all ends cleanly.
#[test]
fn openssl_answers_a_half_close_with_decode_error_and_s_upper_ends_cleanly() {
    for flag in ["-s", "-S"] {
        let dir = TempDir::new("decodeerror");
        let ca = dir.write("ca.pem", pki().ca.cert_pem());
        let (mut engine, mut openssl, stdin, stdout, _stderr) =
            s_client(&ca, standard(&dir, &[flag]), "-tls1_3");
        engine.app_write(b"hello\n").unwrap();
        assert_eq!(read_until(&stdout, "hello\n"), "hello\n");
        // The application ends its output and goes on reading.
        engine.close_app_in();
        assert_eq!(engine.app_read_to_eof(), b"", "{flag}");
        let exit = engine.wait();
        drop(stdin);
        openssl.wait_within(DEADLINE);
        if flag == "-S" {
            exit.assert_clean(0);
        } else {
            exit.assert_fatal(98, "TLS error: the peer sent the alert decode_error\n");
        }
    }
}

/// TLS 1.2 renegotiation requested by OpenSSL (`R`) is refused: OpenSSL
/// gives up with a fatal alert, which ends the engine with 98.
#[test]
fn openssl_renegotiation_is_refused() {
    let dir = TempDir::new("reneg");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let (mut engine, mut openssl, mut stdin, _stdout, stderr) =
        s_client(&ca, standard(&dir, &["-v2"]), "-tls1_2");
    stdin.write_all(b"before\n").unwrap();
    assert_eq!(engine.app_read_exact(7), b"before\n");
    stdin.write_all(b"R\n").unwrap();
    assert_eq!(engine.app_read_to_eof(), b"");
    let exit = engine.wait();
    assert_eq!(exit.code, Some(98));
    assert!(
        exit.stderr.ends_with(&format!(
            "{FATAL}TLS error: the peer sent the alert handshake_failure: it found no acceptable parameters\n"
        )),
        "{:?}",
        exit.stderr
    );
    drop(stdin);
    assert!(!openssl.wait_within(DEADLINE).success());
    let stderr = String::from_utf8(read_to_eof(stderr.as_fd())).unwrap();
    assert!(
        stderr.contains("RENEGOTIATING") && stderr.contains("no renegotiation"),
        "{stderr}"
    );
}

/// -k1 without a plain pair: named pairs only, and no default.
#[test]
fn sni_level_1_without_a_default() {
    let t = SniSetup::new();
    let (mc, mk) = t.mail.write(&t.dir, "mail-only");
    let spawn = || {
        Spawn::new(["-k1", "-d5", "3", "4"])
            .app(3, 4)
            .notify(5)
            .env("CERTFILE:mail.example.org", &mc)
            .env("KEYFILE:mail.example.org", &mk)
    };
    let (leaf, _) = t.presented(spawn(), "mail.example.org");
    assert_eq!(leaf, t.mail.cert);
    expect_handshake_failure(
        spawn(),
        &ClientSetup::new().trust(Trust::Any),
        "other.org",
        "no certificate for the server name the client asked for",
    );
}

/// Where pem-rfc7468 is stricter than OpenSSL: layouts `openssl pkey`
/// loads and s6-tlsd-io refuses with exit 96, naming the block (the list
/// in doc/s6-tlsd-io.md; tests/properties.rs
/// `pki_pem_key_stricter_than_openssl` varies them).
#[test]
fn pem_layouts_openssl_takes_and_we_refuse() {
    let dir = TempDir::new("pemstrict");
    let leaf = &pki().server_p256;
    let (cert, _) = leaf.write(&dir, "server");
    let body: Vec<&str> = leaf
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let text = body.concat();
    let key = |lines: Vec<String>, begin_end: &str| {
        format!(
            "-----BEGIN PRIVATE KEY-----{begin_end}\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    };
    let each = |f: &dyn Fn(&str) -> String| body.iter().map(|l| f(l)).collect::<Vec<_>>();
    let chunks = |text: &str, width: usize| {
        text.as_bytes()
            .chunks(width)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect::<Vec<_>>()
    };
    let mut uneven = vec![text[..40].to_owned()];
    uneven.extend(chunks(&text[40..], 64));
    let mut blank_first = vec![String::new()];
    blank_first.extend(each(&|l| l.to_owned()));
    for (what, pem) in [
        ("a first line shorter than the next", key(uneven, "")),
        ("a blank line after BEGIN", key(blank_first, "")),
        ("spaces at line ends", key(each(&|l| format!("{l}  ")), "")),
        (
            "a space at line starts",
            key(each(&|l| format!(" {l}")), ""),
        ),
        (
            "a space inside a line",
            key(vec![format!("{} {}", &text[..10], &text[10..])], ""),
        ),
        ("lines of 2 characters", key(chunks(&text, 2), "")),
        (
            "a space after BEGIN's dashes",
            key(each(&|l| l.to_owned()), " "),
        ),
    ] {
        let path = dir.write("key.pem", &pem);
        run_openssl(["pkey", "-noout", "-in", path.to_str().unwrap()]);
        let exit = Spawn::new(["3", "4"])
            .app(3, 4)
            .cert(&cert, &path)
            .spawn(None)
            .wait_within(Duration::from_secs(10));
        exit.assert_fatal(
            96,
            &format!("KEYFILE {}: PEM block PRIVATE KEY: ", path.display()),
        );
        assert_eq!(exit.stderr.lines().count(), 1, "{what}: {}", exit.stderr);
    }
}

/// PEM files as tools write them: `openssl ecparam -genkey` (EC
/// PARAMETERS before the key), CRLF line ends, `openssl x509 -text`
/// (a text dump before the certificate), coreutils `base64` (76 columns),
/// `openssl base64 -A` (one line), and `openssl pkcs12 -nodes` (one file,
/// key and certificate, each after its `Bag Attributes` text).
#[test]
fn pem_variants_from_real_tools() {
    let dir = TempDir::new("pemvariants");
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let (key_s, cert_s) = (key.to_str().unwrap(), cert.to_str().unwrap());
    run_openssl(["ecparam", "-name", "prime256v1", "-genkey", "-out", key_s]);
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN EC PARAMETERS-----"),
        "{key_pem}"
    );
    run_openssl([
        "req",
        "-x509",
        "-subj",
        "/CN=localhost",
        "-days",
        "2",
        "-key",
        key_s,
        "-out",
        cert_s,
    ]);
    let text = run_openssl(["x509", "-text", "-in", cert_s]);
    let cert_pem = std::fs::read_to_string(&cert).unwrap();
    let crlf = |s: &str| s.replace('\n', "\r\n");
    let with_text = dir.write("text.pem", &text);
    assert!(!text.starts_with(b"-----BEGIN"));
    let crlf_cert = dir.write("crlf.crt", crlf(&cert_pem));
    let crlf_key = dir.write("crlf.key", crlf(&key_pem));
    let cert_der = dir.write(
        "cert.der",
        run_openssl(["x509", "-in", cert_s, "-outform", "DER"]),
    );
    // PKCS#8: `openssl pkey -outform DER` writes SEC1 for an EC key.
    let key_der = dir.write(
        "key.der",
        run_openssl([
            "pkcs8", "-topk8", "-nocrypt", "-in", key_s, "-outform", "DER",
        ]),
    );
    // The base64 of a DER file by `tool`, as a PEM block.
    let armour = |label: &str, der: &Path, tool: &str, args: &[&str]| {
        let mut args = args.to_vec();
        args.push(der.to_str().unwrap());
        let body = String::from_utf8(run_tool(tool, args)).unwrap();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            body.trim_end()
        )
    };
    let mime = |der, label| armour(label, der, "/usr/bin/base64", &[]);
    let one_line = |der, label| armour(label, der, OPENSSL, &["base64", "-A", "-in"]);
    let mime_cert = dir.write("mime.crt", mime(&cert_der, "CERTIFICATE"));
    let mime_key = dir.write("mime.key", mime(&key_der, "PRIVATE KEY"));
    let mime_text = std::fs::read_to_string(&mime_key).unwrap();
    assert_eq!(mime_text.lines().nth(1).map(str::len), Some(76));
    let one_cert = dir.write("one.crt", crlf(&one_line(&cert_der, "CERTIFICATE")));
    let one_key = dir.write("one.key", one_line(&key_der, "PRIVATE KEY"));
    let p12 = dir.path().join("both.p12");
    let p12_s = p12.to_str().unwrap();
    run_openssl([
        "pkcs12", "-export", "-in", cert_s, "-inkey", key_s, "-passout", "pass:x", "-out", p12_s,
    ]);
    let both = dir.write(
        "both.pem",
        run_openssl(["pkcs12", "-in", p12_s, "-nodes", "-passin", "pass:x"]),
    );
    assert!(std::fs::read_to_string(&both)
        .unwrap()
        .starts_with("Bag Attributes"));
    let expected = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()
    };
    for (cert, key) in [
        (cert.clone(), key.clone()),
        (crlf_cert, crlf_key),
        (with_text, key.clone()),
        (mime_cert, mime_key),
        (one_cert, one_key),
        (both.clone(), both),
    ] {
        let spawn = Spawn::new(["3", "4"]).app(3, 4).cert(&cert, &key);
        let mut s = session(spawn, &ClientSetup::new().trust(Trust::Any), "localhost");
        assert_eq!(s.client.server_leaf(), expected, "{cert:?} {key:?}");
        s.client.close_notify().unwrap();
        assert_eq!(s.engine.app_read_to_eof(), b"");
        s.engine.close_app_in();
        s.engine.wait().assert_clean(0);
    }
}
