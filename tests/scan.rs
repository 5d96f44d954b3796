//! Scanners and protocol checks against the real server: the SMTP demo
//! (`ucspitls-demo`) under s6-ucspitlsd under ucspi-tcp's tcpserver.
//!
//! - testssl.sh (`--starttls smtp`): protocols, cipher categories and the
//!   known vulnerabilities, read from its JSON output;
//! - `openssl s_client`: TLS 1.0 and 1.1 refused, TLS 1.2 and 1.3 with
//!   X25519, P-256 and P-384 (OpenSSL 3.0 has no ML-KEM);
//! - rustls as client: X25519MLKEM768 is negotiated when offered.
//!
//! The last testssl findings are recorded in doc/testing.md.

#[path = "faults/harness.rs"]
mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn demo_server(pki: &'static Pki) -> Server {
    Server::start_spec(&ServerSpec {
        prog: &[demo_exe()],
        pki: Some(pki),
        ..Default::default()
    })
}

/// Runs a command with a deadline; its stdout and stderr together.
fn run_bounded(cmd: &mut Command, stdin: &[u8], timeout: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let done = wait_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (if done { out.status.code() } else { None }, text)
}

/// Every session's engine ended, and how: a map from exit to count.
fn engine_exits(server: &Server) -> BTreeMap<String, usize> {
    assert!(server.wait_idle(T), "{:?}", server.descendants());
    let mut exits = BTreeMap::new();
    // The last orphans may take a moment to reach us.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        for (_, name, exit) in reap_orphans(server) {
            *exits.entry(format!("{name} {exit:?}")).or_insert(0) += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    exits
}

fn s_client(port: u16, args: &[&str]) -> (Option<i32>, String) {
    run_bounded(
        Command::new("openssl")
            .args(["s_client", "-starttls", "smtp", "-ign_eof", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(args),
        b"NOOP hello\r\nQUIT\r\n",
        T,
    )
}

#[test]
fn testssl_finds_nothing() {
    if !have("testssl") {
        panic!("testssl not installed (Debian package testssl.sh)");
    }
    let server = demo_server(rsa_pki());
    let fds = server.fd_count();
    let json = pki().dir.join(format!("testssl-{}.json", server.port));
    let _ = std::fs::remove_file(&json);
    let started = Instant::now();
    let (code, output) = run_bounded(
        Command::new("testssl")
            .args([
                "--quiet",
                "--color",
                "0",
                "--warnings",
                "off",
                "--starttls",
                "smtp",
                "--protocols",
                "--std",
                "--vulnerable",
                "--fast",
                "--jsonfile-pretty",
            ])
            .arg(&json)
            .arg(format!("127.0.0.1:{}", server.port)),
        b"",
        Duration::from_secs(240),
    );
    let took = started.elapsed();
    assert!(code.is_some(), "testssl did not finish in time:\n{output}");
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON ({e}); testssl said:\n{output}"));
    let findings = parse_findings(&text);
    let get = |id: &str| -> (String, String) {
        findings
            .iter()
            .find(|f| f.0 == id)
            .map(|f| (f.1.clone(), f.2.clone()))
            .unwrap_or_else(|| panic!("no finding {id} in\n{text}"))
    };
    let mut problems = Vec::new();
    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        if get(id).1 != "not offered" {
            problems.push(format!("{id}: {:?}", get(id)));
        }
    }
    for id in ["TLS1_2", "TLS1_3"] {
        if !get(id).1.starts_with("offered") {
            problems.push(format!("{id}: {:?}", get(id)));
        }
    }
    for id in [
        "cipherlist_NULL",
        "cipherlist_aNULL",
        "cipherlist_EXPORT",
        "cipherlist_LOW",
        "cipherlist_3DES_IDEA",
        "cipherlist_AVERAGE",
    ] {
        if get(id).1 != "not offered" {
            problems.push(format!("{id}: {:?}", get(id)));
        }
    }
    if !get("cipherlist_STRONG").1.starts_with("offered") {
        problems.push(format!("cipherlist_STRONG: {:?}", get("cipherlist_STRONG")));
    }
    let vulnerabilities = [
        "heartbleed",
        "CCS",
        "ROBOT",
        "secure_renego",
        "secure_client_renego",
        "CRIME_TLS",
        "POODLE_SSL",
        "fallback_SCSV",
        "SWEET32",
        "FREAK",
        "DROWN",
        "LOGJAM",
        "BEAST",
        "LUCKY13",
        "RC4",
    ];
    for id in vulnerabilities {
        let (severity, finding) = get(id);
        // testssl cannot test RC4 with Debian's OpenSSL; the cipher
        // categories above, tested with its own sockets, include RC4 (LOW).
        let local_rc4 = id == "RC4" && finding.contains("local OpenSSL");
        if !(severity == "OK" || severity == "INFO" || local_rc4) {
            problems.push(format!("{id}: {severity} {finding}"));
        }
    }
    // Whatever else testssl judged in these sections.
    for (id, severity, finding) in &findings {
        let bad = matches!(severity.as_str(), "LOW" | "MEDIUM" | "HIGH" | "CRITICAL");
        if bad && !(id == "RC4" && finding.contains("local OpenSSL")) {
            problems.push(format!("{id}: {severity} {finding}"));
        }
    }
    problems.dedup();
    let exits = engine_exits(&server);
    assert_eq!(server.fd_count(), fds);
    eprintln!(
        "testssl took {took:?}; {} findings; engine exits over its {} connections: {exits:?}",
        findings.len(),
        server.log().matches("tcpserver: end ").count()
    );
    for (id, severity, finding) in &findings {
        eprintln!("  {id:24} {severity:8} {finding}");
    }
    assert!(problems.is_empty(), "testssl found: {problems:#?}");
    // Hundreds of odd handshakes: none crashed an engine.
    assert!(
        exits.keys().all(|k| !k.contains("Signal")),
        "an engine was killed by a signal: {exits:?}"
    );
}

/// (id, severity, finding) of every entry of testssl's pretty JSON
/// (its layout is one `"key" : "value"` per line, so no JSON parser is
/// needed).
fn parse_findings(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String, String)> = None;
    for line in text.lines() {
        let line = line.trim().trim_end_matches(',');
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        let value = value.trim().trim_matches('"').to_owned();
        match key {
            "id" => {
                if let Some(f) = current.take() {
                    out.push(f);
                }
                current = Some((value, String::new(), String::new()));
            }
            "severity" => {
                if let Some(f) = current.as_mut() {
                    f.1 = value;
                }
            }
            "finding" => {
                if let Some(f) = current.as_mut() {
                    f.2 = value;
                }
            }
            _ => {}
        }
    }
    out.extend(current);
    out
}

#[test]
fn openssl_refuses_tls10_and_tls11() {
    let server = demo_server(rsa_pki());
    let fds = server.fd_count();
    for version in ["-tls1", "-tls1_1"] {
        // SECLEVEL=0 so that OpenSSL 3 really offers the old protocol.
        let (code, out) = s_client(server.port, &[version, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert_ne!(code, Some(0), "{version}: {out}");
        assert!(out.contains("Cipher is (NONE)"), "{version}: {out}");
        assert!(!out.contains("250 2.0.0 OK hello"), "{version}: {out}");
        assert!(out.contains("alert"), "{version}: {out}");
    }
    let exits = engine_exits(&server);
    assert_eq!(server.fd_count(), fds);
    assert_eq!(exits.get("s6-tlsd-io Code(98)"), Some(&2), "{exits:?}");
    let log = server.log();
    assert_eq!(
        log.matches(
            "s6-tlsd-io: fatal: TLS handshake failed: the peer sent no signature_algorithms extension, as TLS 1.0 and 1.1 clients do"
        )
        .count(),
        2,
        "{log}"
    );
}

/// s_client's line naming the key exchange.
fn temp_key(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("Server Temp Key:"))
        .unwrap_or("no Server Temp Key")
        .to_owned()
}

fn group_matrix(pki: &'static Pki, cases: &[(&str, &str, &str)]) {
    let server = demo_server(pki);
    let fds = server.fd_count();
    for &(version, group, expect_key) in cases {
        let (code, out) = s_client(server.port, &[version, "-groups", group]);
        let proto = if version == "-tls1_3" {
            "TLSv1.3"
        } else {
            "TLSv1.2"
        };
        assert!(
            out.contains(&format!("250 2.0.0 OK hello [TLS {proto} ")),
            "{version} {group}: {code:?}\n{out}\n{}",
            server.log()
        );
        assert!(out.contains("221 2.0.0 Bye"), "{version} {group}: {out}");
        assert_eq!(temp_key(&out), expect_key, "{version} {group}");
    }
    let exits = engine_exits(&server);
    assert_eq!(server.fd_count(), fds);
    assert_eq!(
        exits.get("s6-tlsd-io Code(0)"),
        Some(&cases.len()),
        "{exits:?}\n{}",
        server.log()
    );
}

const X25519: &str = "Server Temp Key: X25519, 253 bits";
const P256: &str = "Server Temp Key: ECDH, prime256v1, 256 bits";
const P384: &str = "Server Temp Key: ECDH, secp384r1, 384 bits";

#[test]
fn openssl_tls12_and_tls13_with_each_group_rsa() {
    group_matrix(
        rsa_pki(),
        &[
            ("-tls1_3", "X25519", X25519),
            ("-tls1_3", "P-256", P256),
            ("-tls1_3", "P-384", P384),
            ("-tls1_2", "X25519", X25519),
            ("-tls1_2", "P-256", P256),
            ("-tls1_2", "P-384", P384),
        ],
    );
}

#[test]
fn openssl_tls12_and_tls13_with_each_group_ecdsa() {
    // Under TLS 1.2, a client's group list also limits the curve of an
    // ECDSA certificate (RFC 8422): OpenSSL refuses a P-256 certificate
    // when it offered only X25519 or only P-384, so with an ECDSA P-256
    // certificate those two need P-256 in the list too.
    group_matrix(
        pki(),
        &[
            ("-tls1_3", "X25519", X25519),
            ("-tls1_3", "P-256", P256),
            ("-tls1_3", "P-384", P384),
            ("-tls1_2", "X25519:P-256", X25519),
            ("-tls1_2", "P-256", P256),
        ],
    );
}

#[test]
fn rustls_negotiates_x25519mlkem768_when_offered() {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    use rustls::NamedGroup;
    let server = demo_server(pki());
    let fds = server.fd_count();
    let only = |groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>| {
        let mut provider = default_provider();
        provider.kx_groups = groups;
        provider
    };
    let cases: Vec<(&str, rustls::crypto::CryptoProvider, NamedGroup)> = vec![
        (
            "X25519MLKEM768 alone",
            only(vec![kx_group::X25519MLKEM768]),
            NamedGroup::X25519MLKEM768,
        ),
        (
            "rustls defaults",
            default_provider(),
            NamedGroup::X25519MLKEM768,
        ),
        // rustls sends a key share for its first group only; the server
        // takes a group it has a share for rather than ask for another
        // with a HelloRetryRequest.
        (
            "X25519 before X25519MLKEM768",
            only(vec![kx_group::X25519, kx_group::X25519MLKEM768]),
            NamedGroup::X25519,
        ),
        (
            "X25519MLKEM768 before X25519",
            only(vec![kx_group::X25519MLKEM768, kx_group::X25519]),
            NamedGroup::X25519MLKEM768,
        ),
        (
            "X25519 alone",
            only(vec![kx_group::X25519]),
            NamedGroup::X25519,
        ),
    ];
    for (what, provider, expect) in cases {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki().ca.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut sock = connect(server.port);
        demo_starttls(&mut sock);
        let mut client = Client::new(sock, Arc::new(config));
        client.handshake(T).expect("handshake");
        let group = client
            .conn
            .negotiated_key_exchange_group()
            .map(|g| g.name());
        let text = client.converse(b"NOOP pq\r\nQUIT\r\n");
        assert_eq!(group, Some(expect), "{what}");
        assert!(
            text.starts_with("250 2.0.0 OK pq [TLS TLSv1.3"),
            "{what}: {text:?}"
        );
        eprintln!("{what}: negotiated {group:?}");
    }
    let exits = engine_exits(&server);
    assert_eq!(server.fd_count(), fds);
    assert_eq!(exits.get("s6-tlsd-io Code(0)"), Some(&5), "{exits:?}");
}
