//! s6-tlsd-io: the command line, the environment, configuration errors
//! found at start, verbosity, and the privilege drop.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// Runs s6-tlsd-io without a network connection (it must fail before
/// touching one) and returns how it ended.
fn run_without_network(spawn: Spawn) -> Exit {
    spawn.spawn(None).wait_within(Duration::from_secs(10))
}

/// s6-tlsd-io with app pipes on 3/4, `args` then `3 4`, and the given
/// environment, no network.
fn configured(args: &[&str], env: &[(&str, &Path)]) -> Exit {
    let mut words: Vec<&str> = args.to_vec();
    words.extend(["3", "4"]);
    let mut spawn = Spawn::new(words).app(3, 4);
    for (k, v) in env {
        spawn = spawn.env(*k, *v);
    }
    run_without_network(spawn)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// ---------------------------------------------------------------------
// Usage

/// The problem on a `fatal` line, then the usage summary, as skalibs
/// prints them; exit 100.
#[test]
fn wrong_usage_is_100_with_the_problem_then_the_usage_line() {
    for (args, problem) in [
        (&[][..], "missing fdr and fdw"),
        (&["3"], "missing fdw"),
        (
            &["3", "4", "5"],
            "too many arguments: 3 where fdr fdw are expected",
        ),
        (&["-x", "3", "4"], "unrecognized short option: x"),
        (&["-Z", "3", "4"], "unrecognized short option: Z"),
        (&["-v", "3"], "missing fdr and fdw"),
        (
            &["-v", "abc", "3", "4"],
            "verbosity must be an unsigned integer, not \"abc\"",
        ),
        (
            &["-K", "-5", "3", "4"],
            "kimeout must be an unsigned integer, not \"-5\"",
        ),
        (
            &["-k", "one", "3", "4"],
            "sni-level must be an unsigned integer, not \"one\"",
        ),
        (
            &["-d", "x", "3", "4"],
            "notification-fd must be an unsigned integer, not \"x\"",
        ),
        (
            &["--close-notfy", "3", "4"],
            "unrecognized long option: close-notfy",
        ),
        (
            &["--close-notify=1", "3", "4"],
            "option --close-notify takes no value",
        ),
        (&["--verbosity"], "option --verbosity needs a value"),
        (&["--", "3"], "missing fdw"),
    ] {
        let exit = run_without_network(Spawn::new(args.iter().copied()).app(3, 4));
        assert_eq!(exit.code, Some(100), "{args:?}: {exit:?}");
        let lines: Vec<&str> = exit.stderr.lines().collect();
        assert!(
            lines.len() == 2
                && lines[0] == format!("s6-tlsd-io: fatal: {problem}")
                && lines[1].starts_with("s6-tlsd-io: usage: s6-tlsd-io [")
                && lines[1].ends_with("fdr fdw"),
            "{args:?}: {:?}",
            exit.stderr
        );
    }
}

#[test]
fn descriptors_that_are_not_numbers_are_100() {
    for (args, what) in [
        (&["abc", "4"][..], "invalid fdr"),
        (&["3", "4x"], "invalid fdw"),
        (&["3", ""], "invalid fdw"),
        (&["3", "99999999999"], "invalid fdw"),
        (
            &["-d", "5", "3", "3"],
            "fdr, fdw and notif must be distinct",
        ),
        (&["0", "4"], "fdr must be 3 or more"),
        (&["3", "1"], "fdw must be 3 or more"),
        (&["2", "4"], "fdr must be 3 or more"),
        (&["3", "2"], "fdw must be 3 or more"),
        (&["-d", "1", "3", "4"], "notif must be 3 or more"),
        (&["-d2", "3", "4"], "notif must be 3 or more"),
        (
            &["-d", "4", "3", "4"],
            "fdr, fdw and notif must be distinct",
        ),
    ] {
        let exit = run_without_network(Spawn::new(args.iter().copied()).app(3, 4));
        exit.assert_fatal(100, what);
    }
}

#[test]
fn descriptors_that_are_not_open_are_111() {
    // (The error text after the colon is EBADF's description.)
    let exit = run_without_network(Spawn::new(["7", "8"]));
    exit.assert_fatal(111, "unable to use fdr (fd 7): Bad file");
    let (r, _w) = pipe();
    let exit = run_without_network(Spawn::new(["3", "8"]).fd(3, r));
    exit.assert_fatal(111, "unable to use fdw (fd 8): Bad file");
    let exit = run_without_network(Spawn::new(["-d", "9", "3", "4"]).app(3, 4));
    exit.assert_fatal(111, "unable to use notif (fd 9): Bad file");
}

// ---------------------------------------------------------------------
// The environment

#[test]
fn missing_certfile_or_keyfile_is_100() {
    let dir = TempDir::new("missing");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    configured(&[], &[("KEYFILE", &key)]).assert_fatal(100, "CERTFILE not set");
    configured(&[], &[("CERTFILE", &cert)]).assert_fatal(100, "KEYFILE not set");
    configured(&[], &[]).assert_fatal(100, "CERTFILE not set");
    // An empty value is no value.
    configured(&[], &[("CERTFILE", Path::new("")), ("KEYFILE", &key)])
        .assert_fatal(100, "CERTFILE not set");
}

#[test]
fn bad_tls_uid_or_gid_is_100() {
    let dir = TempDir::new("uid");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    for (var, value) in [
        ("TLS_UID", "abc"),
        ("TLS_UID", "-1"),
        ("TLS_UID", "12x"),
        ("TLS_GID", "abc"),
        ("TLS_GID", " 1"),
    ] {
        let exit = configured(
            &[],
            &[
                ("CERTFILE", &cert),
                ("KEYFILE", &key),
                (var, Path::new(value)),
            ],
        );
        exit.assert_fatal(100, &format!("invalid {var}: not a decimal number"));
    }
}

fn assert_config_error(env: &[(&str, &Path)], args: &[&str], start: &str) {
    configured(args, env).assert_fatal(96, start);
}

#[test]
fn unreadable_key_or_certificate_is_96() {
    let dir = TempDir::new("unreadable");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    let nowhere = dir.path().join("nowhere.pem");
    assert_config_error(
        &[("CERTFILE", &nowhere), ("KEYFILE", &key)],
        &[],
        &format!(
            "unable to read CERTFILE {}: No such file or directory",
            nowhere.display()
        ),
    );
    assert_config_error(
        &[("CERTFILE", &cert), ("KEYFILE", dir.path())],
        &[],
        &format!(
            "unable to read KEYFILE {}: Is a directory",
            dir.path().display()
        ),
    );
    if !is_root() {
        let locked = dir.write("locked.key", &pki().server_p256.key_pem);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert_config_error(
            &[("CERTFILE", &cert), ("KEYFILE", &locked)],
            &[],
            &format!(
                "unable to read KEYFILE {}: Permission denied",
                locked.display()
            ),
        );
    }
}

#[test]
fn empty_garbage_or_truncated_files_are_96() {
    let dir = TempDir::new("garbage");
    let leaf = &pki().server_p256;
    let (cert, key) = leaf.write(&dir, "server");
    let empty = dir.write("empty", "");
    let garbage = dir.write("garbage", Stream::bytes(20, 3000));
    let text = dir.write("text", "this is not a certificate\n");
    let half_cert = dir.write("half.crt", &leaf.cert_pem[..leaf.cert_pem.len() / 2]);
    let half_key = dir.write("half.key", &leaf.key_pem[..leaf.key_pem.len() / 2]);
    let cut_der = dir.write("cut.der", &leaf.cert[..leaf.cert.len() - 10]);
    let cut_key_der = dir.write("cut-key.der", &leaf.key_der[..leaf.key_der.len() - 10]);
    let key_as_cert = dir.write("key-as-cert.pem", &leaf.key_pem);
    let cert_as_key = dir.write("cert-as-key.pem", &leaf.cert_pem);
    for bad_cert in [&empty, &garbage, &text, &half_cert, &cut_der, &key_as_cert] {
        let exit = configured(&[], &[("CERTFILE", bad_cert), ("KEYFILE", &key)]);
        exit.assert_fatal(96, &format!("CERTFILE {}: ", bad_cert.display()));
        assert_plain_words(&exit.stderr);
    }
    configured(&[], &[("CERTFILE", &half_cert), ("KEYFILE", &key)]).assert_fatal(
        96,
        &format!(
            "CERTFILE {}: PEM block CERTIFICATE has no END line\n",
            half_cert.display()
        ),
    );
    let bad_base64 = dir.write(
        "base64.crt",
        "-----BEGIN CERTIFICATE-----\nZm9v!!\n-----END CERTIFICATE-----\n",
    );
    configured(&[], &[("CERTFILE", &bad_base64), ("KEYFILE", &key)]).assert_fatal(
        96,
        &format!(
            "CERTFILE {}: PEM block CERTIFICATE: invalid base64: every line but the last \
             must be as long as the first, with no spaces, blank lines or headers\n",
            bad_base64.display()
        ),
    );
    for bad_key in [
        &empty,
        &garbage,
        &text,
        &half_key,
        &cut_key_der,
        &cert_as_key,
    ] {
        let exit = configured(&[], &[("CERTFILE", &cert), ("KEYFILE", bad_key)]);
        exit.assert_fatal(96, &format!("KEYFILE {}: ", bad_key.display()));
        assert_plain_words(&exit.stderr);
    }
}

/// A message in words: no Rust debug form of a library error (a
/// CamelCase variant name, a list of byte values).
fn assert_plain_words(message: &str) {
    let camel = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| {
            w.as_bytes()
                .windows(2)
                .any(|p| p[0].is_ascii_lowercase() && p[1].is_ascii_uppercase())
        });
    assert!(!camel && !message.contains("(["), "{message:?}");
    let bytes_list = message
        .split('[')
        .skip(1)
        .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    assert!(!bytes_list, "{message:?}");
}

#[test]
fn encrypted_keys_are_96() {
    let dir = TempDir::new("encrypted");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    let key_s = key.to_str().unwrap();
    let pkcs8 = dir.path().join("pkcs8-encrypted.key");
    let legacy = dir.path().join("legacy-encrypted.key");
    let der = dir.path().join("pkcs8-encrypted.der");
    let encrypt = ["-passout", "pass:secret", "-in", key_s, "-out"];
    let topk8 = ["pkcs8", "-topk8", "-v2", "aes-256-cbc"];
    run_openssl(
        topk8
            .iter()
            .chain(&encrypt)
            .chain(&[pkcs8.to_str().unwrap()]),
    );
    run_openssl(
        ["ec", "-aes256"]
            .iter()
            .chain(&encrypt)
            .chain(&[legacy.to_str().unwrap()]),
    );
    // The same PKCS#8 structure in DER, where there is no PEM label.
    run_openssl(
        topk8
            .iter()
            .chain(&["-outform", "DER"])
            .chain(&encrypt)
            .chain(&[der.to_str().unwrap()]),
    );
    assert!(std::fs::read_to_string(&legacy)
        .unwrap()
        .contains("Proc-Type: 4,ENCRYPTED"));
    for encrypted in [&pkcs8, &legacy] {
        let exit = configured(&[], &[("CERTFILE", &cert), ("KEYFILE", encrypted)]);
        exit.assert_fatal(
            96,
            &format!(
                "KEYFILE {}: encrypted private keys are not supported",
                encrypted.display()
            ),
        );
    }
    configured(&[], &[("CERTFILE", &cert), ("KEYFILE", &der)])
        .assert_fatal(96, &format!("KEYFILE {}: ", der.display()));
}

#[test]
fn key_not_matching_its_certificate_is_96() {
    let dir = TempDir::new("mismatch");
    let (cert, _) = pki().server_p256.write(&dir, "p256");
    let (rsa_cert, rsa_key) = pki().server_rsa.write(&dir, "rsa");
    let (_, other_key) = pki().client_full.write(&dir, "other");
    for (c, k) in [
        (&cert, &other_key),
        (&cert, &rsa_key),
        (&rsa_cert, &other_key),
    ] {
        let exit = configured(&[], &[("CERTFILE", c), ("KEYFILE", k)]);
        exit.assert_fatal(
            96,
            &format!(
                "KEYFILE {} does not match CERTFILE {}: the private key is not the key of the certificate\n",
                k.display(),
                c.display()
            ),
        );
    }
}

/// A chain whose first certificate is not the key's, but a later one is:
/// the message says how to fix the file. Also for an SNI pair.
#[test]
fn chain_not_leaf_first_is_96_and_says_so() {
    let dir = TempDir::new("leaflast");
    let intermediate = pki().ca.intermediate("s6-tls Test Intermediate");
    let leaf = intermediate.server(&["localhost"], KeyKind::EcdsaP256);
    let (_, key) = leaf.write(&dir, "leaf");
    let backwards = dir.write(
        "backwards.pem",
        format!("{}{}", intermediate.cert_pem(), leaf.cert_pem),
    );
    let message = |cert_var: &str, key_var: &str| {
        format!(
            "{key_var} {} does not match {cert_var} {}: the first certificate in {cert_var} \
             must be the one for {key_var} (leaf first); the key is the one of certificate 2\n",
            key.display(),
            backwards.display()
        )
    };
    configured(&[], &[("CERTFILE", &backwards), ("KEYFILE", &key)])
        .assert_fatal(96, &message("CERTFILE", "KEYFILE"));
    configured(
        &["-k2"],
        &[("CERTFILE:a.test", &backwards), ("KEYFILE:a.test", &key)],
    )
    .assert_fatal(96, &message("CERTFILE:a.test", "KEYFILE:a.test"));
}

#[test]
fn rsa_key_under_2048_bits_is_96() {
    let dir = TempDir::new("rsa1024");
    let key = dir.path().join("rsa1024.key");
    let cert = dir.path().join("rsa1024.crt");
    run_openssl([
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-days",
        "2",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    configured(&[], &[("CERTFILE", &cert), ("KEYFILE", &key)]).assert_fatal(
        96,
        &format!(
            "KEYFILE {}: unusable private key: not an RSA key of 2048 bits or more, \
             nor an ECDSA P-256, P-384 or P-521 key, nor an Ed25519 key\n",
            key.display()
        ),
    );
}

#[test]
fn sni_pair_errors_are_96() {
    let dir = TempDir::new("snierr");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    let named = |k: &str, c: Option<&str>| {
        let mut env = vec![
            ("CERTFILE".to_owned(), cert.clone()),
            ("KEYFILE".to_owned(), key.clone()),
        ];
        env.push((k.to_owned(), key.clone()));
        if let Some(c) = c {
            env.push((c.to_owned(), cert.clone()));
        }
        env
    };
    let run = |args: &[&str], env: Vec<(String, std::path::PathBuf)>| {
        let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (k.as_str(), v.as_path())).collect();
        configured(args, &env)
    };
    run(&["-k1"], named("KEYFILE:mail.example.org", None)).assert_fatal(
        96,
        "KEYFILE:mail.example.org is set but CERTFILE:mail.example.org is not",
    );
    // A lone CERTFILE:x (with the KEYFILE of another name).
    let mut env = named("KEYFILE:a.example.org", Some("CERTFILE:a.example.org"));
    env.push(("CERTFILE:b.example.org".into(), cert.clone()));
    run(&["-k1"], env).assert_fatal(
        96,
        "CERTFILE:b.example.org is set but KEYFILE:b.example.org is not",
    );
    run(
        &["-k", "2"],
        named("KEYFILE:a.*.com", Some("CERTFILE:a.*.com")),
    )
    .assert_fatal(96, "KEYFILE:a.*.com: not a usable server name");
    // A named pair's files are checked like the plain pair's.
    let nowhere = dir.path().join("nowhere");
    let mut env = named("KEYFILE:mail.example.org", None);
    env.push(("CERTFILE:mail.example.org".into(), nowhere.clone()));
    run(&["--sni"], env).assert_fatal(
        96,
        &format!(
            "unable to read CERTFILE:mail.example.org {}: No such file or directory",
            nowhere.display()
        ),
    );
    // Without -k, named pairs are not looked at: this one is broken and
    // the engine starts anyway (and waits for a client: kill it).
    let env = named("KEYFILE:mail.example.org", None);
    let mut spawn = Spawn::new(["3", "4"]).app(3, 4);
    for (k, v) in &env {
        spawn = spawn.env(k, v);
    }
    let (_client, server) = tcp_pair();
    let mut engine = spawn.spawn(Some(server));
    engine.assert_running_after(Duration::from_millis(300));
    assert_eq!(engine.kill().stderr, "");
}

#[test]
fn trust_anchor_errors() {
    let dir = TempDir::new("caerr");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    let base = [("CERTFILE", cert.as_path()), ("KEYFILE", key.as_path())];
    for flag in ["-Y", "-y", "--client-cert", "--mandatory-client-cert"] {
        configured(&[flag], &base).assert_fatal(
            100,
            "client certificates requested but neither CADIR nor CAFILE is set",
        );
    }
    let empty_dir = dir.subdir("empty-cadir");
    let mut env = base.to_vec();
    env.push(("CADIR", &empty_dir));
    configured(&["-Y"], &env).assert_fatal(
        96,
        &format!("no trust anchor found in CADIR {}", empty_dir.display()),
    );
    let nowhere = dir.path().join("nowhere");
    let mut env = base.to_vec();
    env.push(("CADIR", &nowhere));
    configured(&["-y"], &env)
        .assert_fatal(96, &format!("unable to read CADIR {}", nowhere.display()));
    let empty = dir.write("empty.pem", "");
    let mut env = base.to_vec();
    env.push(("CAFILE", &empty));
    configured(&["-Y"], &env).assert_fatal(96, &format!("trust anchor {}: ", empty.display()));
    let mut env = base.to_vec();
    env.push(("CAFILE", &nowhere));
    configured(&["-Y"], &env)
        .assert_fatal(96, &format!("unable to read CAFILE {}", nowhere.display()));
}

// ---------------------------------------------------------------------
// Option forms

/// `--` ends the options; bundled flags (`-SJ`) and an attached value at
/// the end of a bundle (`-SJv2`) work.
#[test]
fn double_dash_bundles_and_attached_values() {
    for args in [&["-S", "--"][..], &["-SJv2", "--"], &["-SJ", "-v", "2"]] {
        let dir = TempDir::new("forms");
        let mut s = session(standard(&dir, args), &ClientSetup::new(), "localhost");
        // -S: close_notify on the app's EOF.
        s.engine.app_write(b"x").unwrap();
        s.engine.close_app_in();
        let (data, end) = s.client.recv_to_end();
        assert_eq!(data, b"x");
        assert_eq!(end.unwrap(), End::CloseNotify, "{args:?}");
        let exit = if args.concat().contains('J') {
            // -J: EOF without close_notify is 98.
            s.client.shutdown_write();
            assert_eq!(s.engine.app_read_to_eof(), b"");
            let exit = s.engine.wait();
            assert_eq!(exit.code, Some(98), "{args:?} {exit:?}");
            exit
        } else {
            s.client.close_notify().unwrap();
            assert_eq!(s.engine.app_read_to_eof(), b"");
            let exit = s.engine.wait();
            assert_eq!(exit.code, Some(0), "{args:?} {exit:?}");
            exit
        };
        let info_lines = exit
            .stderr
            .lines()
            .filter(|l| l.starts_with("s6-tlsd-io: info: "))
            .count();
        let verbose = args.concat().contains("v2") || args.contains(&"2");
        assert_eq!(
            info_lines,
            usize::from(verbose),
            "{args:?}: {:?}",
            exit.stderr
        );
    }
}

// ---------------------------------------------------------------------
// Verbosity

/// -v2: one info line after the handshake (protocol, cipher, SNI, client
/// subject, handshake time); the default level prints nothing for a clean
/// session.
#[test]
fn verbosity_2_logs_the_handshake() {
    let expect = |args: &[&str], versions: Versions, line_tail: &str| {
        let dir = TempDir::new("v2");
        let mut s = session(
            standard(&dir, args),
            &ClientSetup::new().versions(versions),
            "localhost",
        );
        s.client.close_notify().unwrap();
        assert_eq!(s.engine.app_read_to_eof(), b"");
        s.engine.close_app_in();
        let exit = s.engine.wait();
        assert_eq!(exit.code, Some(0));
        if line_tail.is_empty() {
            assert_eq!(exit.stderr, "", "{args:?}");
            return;
        }
        let line = exit
            .stderr
            .strip_prefix("s6-tlsd-io: info: handshake done in ")
            .unwrap_or_else(|| panic!("{args:?}: {:?}", exit.stderr));
        let (ms, rest) = line.split_once(" ms: ").expect("handshake time");
        assert!(ms.parse::<u64>().is_ok(), "{ms:?}");
        assert_eq!(rest, line_tail, "{args:?}");
    };
    let tls13 = "protocol=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 sni=localhost client=-\n";
    expect(&["-v2"], Versions::Tls13, tls13);
    expect(&["-v", "2"], Versions::Tls13, tls13);
    expect(&["--verbosity=2"], Versions::Tls13, tls13);
    expect(
        &["-v2"],
        Versions::Tls12,
        "protocol=TLSv1.2 cipher=ECDHE-ECDSA-AES256-GCM-SHA384 sni=localhost client=-\n",
    );
    expect(&[], Versions::Tls13, "");
    expect(&["-v1"], Versions::Tls13, "");
    expect(&["-v0"], Versions::Tls13, "");
}

/// -v0 silences warnings (here: the notification reader is gone), not
/// fatal errors.
#[test]
fn verbosity_0_silences_warnings_only() {
    for (args, expected) in [
        (
            &["-d5"][..],
            "s6-tlsd-io: warning: unable to send the connection information: Broken pipe\n",
        ),
        (&["-v0", "-d5"], ""),
    ] {
        let dir = TempDir::new("v0");
        let (client_sock, server_sock) = tcp_pair();
        let mut engine = standard(&dir, args).notify(5).spawn(Some(server_sock));
        // Nobody will read the notification.
        engine.notify = None;
        let mut c = TlsClient::new(client_sock, &ClientSetup::new(), "localhost");
        c.handshake().unwrap();
        c.send(b"x").unwrap();
        assert_eq!(engine.app_read_exact(1), b"x");
        c.close_notify().unwrap();
        engine.close_app_in();
        let exit = engine.wait();
        assert_eq!(exit.code, Some(0));
        assert_eq!(exit.stderr, expected, "{args:?}");
    }
    // Fatal errors are printed at -v0.
    configured(&["-v0"], &[]).assert_fatal(100, "CERTFILE not set");
}

// ---------------------------------------------------------------------
// Privileges

/// As root with TLS_UID/TLS_GID: the running engine has dropped to them,
/// with no supplementary groups, after loading root-only files.
#[test]
fn privilege_drop() {
    if !is_root() {
        eprintln!("privilege_drop: not root, nothing to test");
        return;
    }
    let dir = TempDir::new("privs");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The test process itself has supplementary groups to lose.
    let before = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(before.contains("\nUid:\t0\t"), "the test runs as root");
    let spawn = Spawn::new(["3", "4"])
        .app(3, 4)
        .cert(&cert, &key)
        .env("TLS_UID", "65534")
        .env("TLS_GID", "65534");
    let mut s = session(spawn, &ClientSetup::new(), "localhost");
    s.client.send(b"hello").unwrap();
    assert_eq!(s.engine.app_read_exact(5), b"hello");
    assert_eq!(s.engine.proc_status("Uid"), "65534\t65534\t65534\t65534");
    assert_eq!(s.engine.proc_status("Gid"), "65534\t65534\t65534\t65534");
    assert_eq!(s.engine.proc_status("Groups"), "");
    s.engine.app_write(b"world").unwrap();
    assert_eq!(s.client.recv_exact(5), b"world");
    s.client.close_notify().unwrap();
    s.engine.close_app_in();
    assert_eq!(s.engine.app_read_to_eof(), b"");
    s.engine.wait().assert_clean(0);

    // Half a drop (one of the two ids) is done as asked, with a warning.
    for (var, uid, gid, warning) in [
        (
            "TLS_GID",
            "0\t0\t0\t0",
            "65534\t65534\t65534\t65534",
            "s6-tlsd-io: warning: TLS_GID is set but TLS_UID is not: the engine keeps running as root (uid 0) while it reads the peer's data\n",
        ),
        (
            "TLS_UID",
            "65534\t65534\t65534\t65534",
            "0\t0\t0\t0",
            "s6-tlsd-io: warning: TLS_UID is set but TLS_GID is not: the engine keeps group 0 while it reads the peer's data\n",
        ),
    ] {
        let spawn = Spawn::new(["3", "4"])
            .app(3, 4)
            .cert(&cert, &key)
            .env(var, "65534");
        let mut s = session(spawn, &ClientSetup::new(), "localhost");
        s.client.send(b"x").unwrap();
        assert_eq!(s.engine.app_read_exact(1), b"x");
        assert_eq!(s.engine.proc_status("Uid"), uid, "{var}");
        assert_eq!(s.engine.proc_status("Gid"), gid, "{var}");
        s.client.close_notify().unwrap();
        s.engine.close_app_in();
        let exit = s.engine.wait();
        assert_eq!(exit.code, Some(0), "{var}");
        assert_eq!(exit.stderr, warning, "{var}");
    }

    // Without the variables, nothing is dropped.
    let dir = TempDir::new("privs0");
    let mut s = session(standard(&dir, &[]), &ClientSetup::new(), "localhost");
    s.client.send(b"x").unwrap();
    assert_eq!(s.engine.app_read_exact(1), b"x");
    assert!(s.engine.proc_status("Uid").starts_with("0\t"));
    s.client.close_notify().unwrap();
    s.engine.close_app_in();
    s.engine.wait().assert_clean(0);
}

/// With -k 1 the plain pair is optional, but half of it is an error; with
/// -k 2 it is ignored, halves included.
#[test]
fn plain_pair_at_sni_levels() {
    let dir = TempDir::new("plainhalf");
    let (cert, key) = pki().server_p256.write(&dir, "server");
    let named: [(&str, &Path); 2] = [
        ("CERTFILE:mail.example.org", &cert),
        ("KEYFILE:mail.example.org", &key),
    ];
    fn with<'a>(
        named: &[(&'a str, &'a Path)],
        extra: &[(&'a str, &'a Path)],
    ) -> Vec<(&'a str, &'a Path)> {
        let mut env = named.to_vec();
        env.extend_from_slice(extra);
        env
    }
    configured(&["-k1"], &with(&named, &[("CERTFILE", &cert)]))
        .assert_fatal(100, "KEYFILE not set");
    configured(&["-k1"], &with(&named, &[("KEYFILE", &key)])).assert_fatal(100, "CERTFILE not set");
    // Neither: no certificate at all.
    configured(&["-k1"], &[]).assert_fatal(100, "no certificate configured");
    configured(&["-k2"], &[("CERTFILE", &cert), ("KEYFILE", &key)])
        .assert_fatal(100, "no certificate configured");
    // Named pairs only, at -k1 and -k2 (with a plain half at -k2): the
    // engine starts and waits for a client.
    for (args, extra) in [
        (&["-k1"][..], &[][..]),
        (&["-k2"], &[("CERTFILE", cert.as_path())]),
    ] {
        let mut spawn = Spawn::new(args.iter().copied().chain(["3", "4"])).app(3, 4);
        for (k, v) in with(&named, extra) {
            spawn = spawn.env(k, v);
        }
        let (_client, server) = tcp_pair();
        let mut engine = spawn.spawn(Some(server));
        engine.assert_running_after(Duration::from_millis(300));
        assert_eq!(engine.kill().stderr, "", "{args:?}");
    }
}
