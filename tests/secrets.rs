//! Secrets and privileges, through s6-ucspitlsd under ucspi-tcp's
//! tcpserver, looking at the real processes in /proc:
//!
//! - prog never sees key material: none of the TLS variables in its
//!   environment (unless -Z), no descriptor of a key or certificate file,
//!   exactly its own end of each UCSPI-TLS descriptor;
//! - after the privilege drop (TLS_UID/TLS_GID, as root) s6-tlsd-io has
//!   every uid and gid at 65534, no supplementary group and no
//!   capability, so `setuid(0)` must fail;
//! - the private key's bytes, as read from disk, are not left in
//!   s6-tlsd-io's memory once parsed, from a key file of its own (PEM or
//!   DER) or from one PEM file holding the chain and the key; nor are the
//!   secret bytes of the ticket keys.

#[path = "faults/harness.rs"]
mod harness;

use harness::*;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

const TLS_VARIABLES: [&str; 8] = [
    "CADIR",
    "CAFILE",
    "CERTFILE",
    "KEYFILE",
    "TLS_UID",
    "TLS_GID",
    "CERTFILE:mail.example.org",
    "KEYFILE:mail.example.org",
];

fn environ(pid: i32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    raw.split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let e = String::from_utf8_lossy(e);
            let (n, v) = e.split_once('=').unwrap_or((&e, ""));
            (n.to_owned(), v.to_owned())
        })
        .collect()
}

/// The access mode of a descriptor: 0 read, 1 write, 2 both.
fn access_mode(pid: i32, fd: i32) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("flags");
    u32::from_str_radix(flags.trim(), 8).expect("octal flags") & 3
}

fn env_for_secrets(uid: bool) -> Vec<(&'static str, String)> {
    let pki = pki();
    let dir = pki.dir.to_string_lossy().into_owned();
    let cert = pki.cert.to_string_lossy().into_owned();
    let key = pki.key.to_string_lossy().into_owned();
    let mut env = vec![
        ("CADIR", dir),
        ("CAFILE", cert.clone()),
        ("CERTFILE:mail.example.org", cert),
        ("KEYFILE:mail.example.org", key),
    ];
    if uid {
        env.push(("TLS_UID", "65534".into()));
        env.push(("TLS_GID", "65534".into()));
    }
    env
}

fn start(opts: &[&str], env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    Server::start_spec(&ServerSpec {
        ucspitlsd: opts,
        prog: &[faultapp_exe(), "echo"],
        env: &env,
        ..Default::default()
    })
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn prog_never_sees_key_material() {
    let env = env_for_secrets(is_root());
    let server = start(&[], &env);
    let fds = server.fd_count();
    let pki = pki();
    let secret_paths = [
        pki.key.to_string_lossy().into_owned(),
        pki.cert.to_string_lossy().into_owned(),
    ];
    let mut sock = connect(server.port);
    // The cleartext phase: prog is running, the helper waits for its byte.
    let greeting = read_line(&mut sock).unwrap();
    let prog: i32 = greeting
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|v| v.parse().ok())
        .expect("pid in greeting");
    let prog_env = environ(prog);
    for var in TLS_VARIABLES {
        assert!(
            prog_env.iter().all(|(n, _)| n != var),
            "prog sees {var}: {prog_env:?}"
        );
    }
    let value = |name: &str| -> i32 {
        prog_env
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in prog's environment"))
    };
    let (ctl, rd, wr) = (value("SSLCTLFD"), value("SSLREADFD"), value("SSLWRITEFD"));
    let targets = fd_targets(prog);
    let numbers: Vec<i32> = targets.iter().map(|(fd, _)| *fd).collect();
    let mut expected = vec![0, 1, 2, ctl, rd, wr];
    expected.sort();
    assert_eq!(numbers, expected, "prog's descriptors: {targets:?}");
    let target = |fd: i32| targets.iter().find(|(n, _)| *n == fd).unwrap().1.clone();
    assert!(target(0).starts_with("socket:") && target(0) == target(1));
    assert!(target(ctl).starts_with("socket:") && target(ctl) != target(0));
    assert!(target(rd).starts_with("pipe:") && target(wr).starts_with("pipe:"));
    assert_ne!(target(rd), target(wr));
    // Its own end of each pipe only.
    assert_eq!((access_mode(prog, rd), access_mode(prog, wr)), (0, 1));
    for (fd, t) in &targets {
        assert!(
            !secret_paths.iter().any(|p| t == p),
            "prog's fd {fd} is {t}"
        );
    }

    // Through the handshake and some traffic: the same, seen again.
    sock.write_all_str("STARTTLS\r\n");
    assert!(read_line(&mut sock).unwrap().starts_with("220 go"));
    let helper = children(prog)[0];
    let mut client = Client::new(sock, client_config());
    client.handshake(T).expect("handshake");
    let out = client.run(&mut Plan {
        send: 100_000,
        after: AfterSend::Nothing,
        expect: Some(100_000),
        ..Default::default()
    });
    assert_eq!(out.received_sha, out.sent_sha);
    let after = fd_targets(prog);
    for (fd, t) in &after {
        assert!(
            !secret_paths.iter().any(|p| t == p),
            "prog's fd {fd} is {t}"
        );
    }
    // The engine itself holds no file open any more either: keys are
    // read, then the files closed.
    let engine_fds = fd_targets(helper);
    assert_eq!(comm(helper).as_deref(), Some("s6-tlsd-io"));
    for (fd, t) in &engine_fds {
        assert!(
            t.starts_with("socket:") || t.starts_with("pipe:") || *fd == 2,
            "engine fd {fd} is {t}"
        );
    }
    drop(client);
    let end = finish(
        &server,
        Pids {
            prog,
            engine: helper,
        },
        fds,
        T,
    );
    assert_eq!(end.engine, Some(Exit::Code(0)), "{}", server.log());
}

/// Positive control: with -Z the variables do reach prog, so the test
/// above can see them when they are there.
#[test]
fn prog_sees_tls_variables_with_keep() {
    let env = env_for_secrets(false);
    let server = start(&["-Z"], &env);
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    let prog_env = environ(pids.prog);
    for var in [
        "CADIR",
        "CAFILE",
        "CERTFILE",
        "KEYFILE",
        "KEYFILE:mail.example.org",
    ] {
        assert!(
            prog_env.iter().any(|(n, _)| n == var),
            "{var} missing with -Z"
        );
    }
}

#[test]
fn engine_cannot_regain_root_after_the_drop() {
    if !is_root() {
        eprintln!("skipped: needs root (TLS_UID/TLS_GID only act as root)");
        return;
    }
    let env = env_for_secrets(true);
    let server = start(&[], &env);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let out = client.run(&mut Plan {
        send: 50_000,
        after: AfterSend::Nothing,
        expect: Some(50_000),
        ..Default::default()
    });
    assert_eq!(out.received_sha, out.sent_sha);
    let field = |name| status_field(pids.engine, name).unwrap_or_default();
    let squash = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(squash(field("Uid")), "65534 65534 65534 65534");
    assert_eq!(squash(field("Gid")), "65534 65534 65534 65534");
    assert_eq!(field("Groups"), "", "supplementary groups left");
    // No capability either: setuid(0), setgroups, chown... would fail.
    for cap in ["CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}");
    }
    // The key file is root's, mode 0600: it was read before the drop.
    let meta = std::fs::metadata(&pki().key).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    drop(client);
    let end = finish(&server, pids, fds, T);
    assert_eq!(end.engine, Some(Exit::Code(0)), "{}", server.log());
}

#[test]
fn engine_keeps_root_without_tls_uid() {
    // Control for the test above: the fields do show root when no drop
    // is asked for.
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let server = start(&[], &[]);
    let (_client, pids) = faultapp_session(&server);
    let uid = status_field(pids.engine, "Uid").unwrap_or_default();
    assert_eq!(uid.split_whitespace().next(), Some("0"));
}

/// Every anonymous, readable mapping of a process (heap, stacks, anonymous
/// maps), as (start, bytes).
fn anonymous_memory(pid: i32) -> Vec<(u64, Vec<u8>)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open mem");
    let mut out = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let path = fields.get(5).copied().unwrap_or("");
        if !fields[1].starts_with('r')
            || !(path.is_empty() || path == "[heap]" || path == "[stack]")
        {
            continue;
        }
        let (a, b) = fields[0].split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            out.push((a, buf));
        }
    }
    out
}

fn find_all(memory: &[(u64, Vec<u8>)], needle: &[u8]) -> Vec<u64> {
    let mut hits = Vec::new();
    for (start, bytes) in memory {
        let mut i = 0;
        while i + needle.len() <= bytes.len() {
            if bytes[i] == needle[0] && bytes[i..i + needle.len()] == *needle {
                hits.push(start + i as u64);
            }
            i += 1;
        }
    }
    hits
}

/// One session with `env`; returns s6-tlsd-io's anonymous memory as it
/// was during the session, once checked that the search works.
fn engine_memory_during_a_session(env: &[(&'static str, String)]) -> Vec<(u64, Vec<u8>)> {
    let server = start(&[], env);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let out = client.run(&mut Plan {
        send: 10_000,
        after: AfterSend::Nothing,
        expect: Some(10_000),
        ..Default::default()
    });
    assert_eq!(out.received_sha, out.sent_sha);
    let memory = anonymous_memory(pids.engine);
    // The search works: the certificate, which the engine keeps, is there.
    assert!(
        !find_all(&memory, &pki().leaf[..64]).is_empty(),
        "certificate not found: the memory search is broken"
    );
    drop(client);
    let end = finish(&server, pids, fds, T);
    assert_eq!(end.engine, Some(Exit::Code(0)), "{}", server.log());
    memory
}

/// Which of `needles` are in `memory`, with where.
fn found_in(
    memory: &[(u64, Vec<u8>)],
    needles: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (what, needle) in needles {
        let hits = find_all(memory, &needle);
        if !hits.is_empty() {
            found.push(format!("{what} at {hits:x?}"));
        }
    }
    found
}

/// One session with `env` (KEYFILE, perhaps CERTFILE, as the test's own
/// certificate and key in some layout); then s6-tlsd-io's anonymous
/// memory is searched for the private key as the file held it. Returns
/// what was found, with where.
fn key_left_in_memory(env: &[(&'static str, String)]) -> Vec<String> {
    let memory = engine_memory_during_a_session(env);
    let pki = pki();
    // The P-256 private scalar inside the PKCS#8 DER: ... 02 01 01 04 20 <32>.
    let der = &pki.key_der;
    let at = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("ECPrivateKey in PKCS#8")
        + 5;
    let scalar = der[at..at + 32].to_vec();
    // The base64 text of the PEM file, and which of its characters carry
    // the scalar: DER bytes at..at+32 are characters 4*at/3 to 4*(at+32)/3.
    let b64: String = pki
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let (b0, b1) = (at * 4 / 3 + 1, (at + 32) * 4 / 3);
    let total: usize = memory.iter().map(|(_, b)| b.len()).sum();
    let found = found_in(
        &memory,
        [
            ("the key file's PKCS#8 DER", der.clone()),
            ("the private scalar", scalar.clone()),
            (
                "the first half of the private scalar",
                scalar[..16].to_vec(),
            ),
            (
                "the second half of the private scalar",
                scalar[16..].to_vec(),
            ),
            (
                "the private scalar in base64 (first half)",
                b64.as_bytes()[b0..b0 + 20].to_vec(),
            ),
            (
                "the private scalar in base64 (second half)",
                b64.as_bytes()[b1 - 20..b1].to_vec(),
            ),
        ]
        .map(|(what, needle)| (what.to_owned(), needle)),
    );
    eprintln!(
        "{env:?}: {} KiB of s6-tlsd-io's anonymous memory searched; found: {found:?}",
        total / 1024
    );
    found
}

/// The secret part of a TICKETKEYFILE key (all but its 16-byte name,
/// which tickets carry in clear) is not left in s6-tlsd-io's memory once
/// the ticket keys are derived from it.
#[test]
fn ticket_key_bytes_are_wiped_from_engine_memory() {
    let pki = pki();
    let keys: Vec<u8> = (0..160u32).map(|i| (i * 37 + 11) as u8).collect();
    let path = pki.dir.join("ticket.key");
    std::fs::write(&path, &keys).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let memory = engine_memory_during_a_session(&[
        ("KEYFILE", pki.key.to_string_lossy().into_owned()),
        ("TICKETKEYFILE", path.to_string_lossy().into_owned()),
    ]);
    let needles = keys.chunks(80).enumerate().flat_map(|(k, key)| {
        [
            ("all", &key[16..]),
            ("the first half", &key[16..48]),
            ("the second half", &key[48..]),
        ]
        .map(|(what, part)| (format!("{what} of key {k}'s secret"), part.to_vec()))
    });
    let found = found_in(&memory, needles);
    assert!(
        found.is_empty(),
        "ticket key material left in memory: {found:#?}"
    );
}

fn keyfile(path: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![("KEYFILE", path.to_string_lossy().into_owned())]
}

#[test]
fn private_key_bytes_are_wiped_from_engine_memory_pem() {
    let found = key_left_in_memory(&keyfile(&pki().key));
    assert!(found.is_empty(), "key material left in memory: {found:#?}");
}

/// One PEM file as both CERTFILE and KEYFILE, key after the chain and
/// before it: the chain parser must skip the key's block without decoding
/// it, and the key parser wipes what it decodes.
#[test]
fn private_key_bytes_are_wiped_from_engine_memory_combined_pem() {
    let pki = pki();
    let chain = std::fs::read_to_string(&pki.cert).unwrap();
    for (name, text) in [
        ("combined-key-last.pem", format!("{chain}{}", pki.key_pem)),
        ("combined-key-first.pem", format!("{}{chain}", pki.key_pem)),
    ] {
        let path = pki.dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut env = keyfile(&path);
        env.push(("CERTFILE", path.to_string_lossy().into_owned()));
        let found = key_left_in_memory(&env);
        assert!(
            found.is_empty(),
            "{name}: key material left in memory: {found:#?}"
        );
    }
}

#[test]
fn private_key_bytes_are_wiped_from_engine_memory_der() {
    let pki = pki();
    let der = pki.dir.join("server-key.der");
    std::fs::write(&der, &pki.key_der).unwrap();
    std::fs::set_permissions(&der, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let found = key_left_in_memory(&keyfile(&der));
    assert!(found.is_empty(), "key material left in memory: {found:#?}");
}

trait WriteStr {
    fn write_all_str(&mut self, s: &str);
}

impl WriteStr for std::net::TcpStream {
    fn write_all_str(&mut self, s: &str) {
        std::io::Write::write_all(self, s.as_bytes()).expect("write");
    }
}
