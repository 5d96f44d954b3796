//! Helpers for the tests of the client programs (s6-tlsc-io, s6-tlsc,
//! s6-ucspitlsc): the TLS servers they talk to, each a real peer on
//! 127.0.0.1, and the server certificates every verification failure
//! needs.
//!
//! - [`RustlsServer`]: one connection served by rustls in a thread, which
//!   can send "half-RTT" data with its first flight (TLS 1.3), so that a
//!   client refusing the certificate provably had the server's cleartext
//!   on the wire and did not deliver it;
//! - [`Announced`]: a server process that prints `ACCEPT 127.0.0.1:PORT`
//!   on its first stdout line: `openssl s_server` ([`s_server`]) and a
//!   Python `ssl` server ([`python_server`]);
//! - [`Bad`]: the server certificates a client must refuse;
//! - [`tlsc_io`]: s6-tlsc-io with the application on its fds 0/1 and the
//!   network on 3/4;
//! - [`tcpclient`]: a command line under ucspi-tcp's `tcpclient`, which
//!   connects and runs it with the connection on fds 6/7 and `TCPREMOTEIP`
//!   and friends set.
#![allow(dead_code)]

use crate::common::{
    drain, pki, ChildGuard, KeyKind, Leaf, Listener, Spawn, TempDir, Versions, DEADLINE,
};
use crate::superserver::Group;
use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const TLSC_IO: &str = env!("CARGO_BIN_EXE_s6-tlsc-io");

/// s6-tlsc-io with `args` then `3 4`: the application on pipes at its fds
/// 0/1 ([`crate::common::Engine::app_in`]/`app_out`), `sock` on fds 3
/// (read) and 4 (write), `CAFILE` the standard CA written in `dir`.
pub fn tlsc_io(dir: &TempDir, args: &[&str], sock: TcpStream) -> Spawn {
    // Written once per directory: rewriting a file another engine of the
    // test is reading would race with it.
    let ca = dir.path().join("tlsc-ca.pem");
    if !ca.exists() {
        dir.write("tlsc-ca.pem", pki().ca.cert_pem());
    }
    let mut words = args.to_vec();
    words.extend(["3", "4"]);
    Spawn::program(TLSC_IO, words)
        .app_std()
        .net_on(3, 4, sock)
        .env("CAFILE", ca)
}

/// `tcpclient -RHl0 127.0.0.1 PORT cmd...` in its own process group, with
/// exactly `env` (and a PATH), stdout into `dir/NAME.stdout` (returned),
/// stderr into `dir/NAME.stderr`.
pub fn tcpclient(
    port: u16,
    cmd: &[&str],
    env: &[(String, String)],
    dir: &TempDir,
    name: &str,
) -> (Group, PathBuf) {
    let stdout = dir.path().join(format!("{name}.stdout"));
    let mut command = Command::new("tcpclient");
    command
        .args(["-RHl0", "127.0.0.1", &port.to_string()])
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("create stdout file"));
    (Group::spawn(command, env, dir, name), stdout)
}

/// Whether every process of group `pgid` is gone within `within` (the
/// engine a program leaves behind has ended too).
pub fn group_gone(pgid: u32, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    let pgid = nix::unistd::Pid::from_raw(pgid as i32);
    loop {
        if nix::sys::signal::killpg(pgid, None) == Err(nix::errno::Errno::ESRCH) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `len` bytes of [`crate::common::Stream`] `seed` to `fd` in a
/// thread, then closes it; the thread returns their SHA-256.
pub fn send_stream(fd: std::os::fd::OwnedFd, seed: u64, len: usize) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let data = crate::common::Stream::bytes(seed, len);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        crate::common::write_all_fd(std::os::fd::AsFd::as_fd(&fd), &data, deadline)
            .expect("write the stream");
        crate::common::sha256_hex(&data)
    })
}

/// The only child of `parent`, within [`DEADLINE`].
pub fn only_child(parent: u32) -> i32 {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let [child] = crate::procfs::children(parent as i32)[..] {
            return child;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{parent} has no single child"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the client's engine process must look like while it runs: still
/// the executable `exe` (never exec'd), named `s6-tlsc-io`, holding
/// stderr, the network on fds 6/7 and its two pipes and nothing else, and
/// (as root) the ids 65534.
pub fn assert_client_engine(engine: i32, exe: &str) {
    use crate::procfs::{comm, fd_targets, status_field};
    let path = std::fs::read_link(format!("/proc/{engine}/exe")).expect("exe");
    assert!(path.ends_with(exe), "{path:?}: the engine was exec'd");
    assert_eq!(comm(engine).as_deref(), Some("s6-tlsc-io"));
    let fds = fd_targets(engine);
    let target = |n: i32| fds.iter().find(|(fd, _)| *fd == n).map(|(_, t)| t.as_str());
    assert!(target(2).is_some_and(|t| t.ends_with(".stderr")), "{fds:?}");
    assert!(
        target(6).is_some_and(|t| t.starts_with("socket:")),
        "{fds:?}"
    );
    assert_eq!(target(6), target(7), "{fds:?}");
    let others: Vec<&str> = fds
        .iter()
        .filter(|(fd, _)| ![2, 6, 7].contains(fd))
        .map(|(_, t)| t.split(':').next().unwrap_or(t))
        .collect();
    assert_eq!(others, ["pipe", "pipe"], "{fds:?}");
    if nix::unistd::geteuid().is_root() {
        let uid = status_field(engine, "Uid").unwrap_or_default();
        assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
        assert_eq!(status_field(engine, "Groups").as_deref(), Some(""));
    }
}

/// `env` with `TLS_UID`/`TLS_GID` 65534 when we are root (a real drop).
pub fn dropping(mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    if nix::unistd::geteuid().is_root() {
        env.retain(|(name, _)| name != "TLS_UID" && name != "TLS_GID");
        env.push(("TLS_UID".into(), "65534".into()));
        env.push(("TLS_GID".into(), "65534".into()));
    }
    env
}

/// Runs `program args` with exactly `env`, outside any super-client (no
/// fds 6/7): its exit code and stderr.
pub fn run_alone(program: &str, args: &[&str], env: &[(String, String)]) -> (Option<i32>, String) {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .expect("run the program");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that `args` is wrong usage for `program` (named `name`): exit
/// 100, one line `NAME: fatal: ...` naming the problem, then one line
/// `NAME: usage: NAME ...`.
pub fn assert_usage(program: &str, name: &str, args: &[&str], env: &[(String, String)]) {
    let (code, stderr) = run_alone(program, args, env);
    assert_eq!(code, Some(100), "{args:?}: {stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with(&format!("{name}: fatal: "))
            && lines[1].starts_with(&format!("{name}: usage: {name} ")),
        "{args:?}: {stderr:?}"
    );
}

/// A connection to `port` on 127.0.0.1.
pub fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect to the test server")
}

// ---------------------------------------------------------------------
// A rustls server in a thread

/// What [`RustlsServer`] saw of its one connection.
#[derive(Debug)]
pub struct Served {
    /// The handshake's error, or the connection's, if any.
    pub error: Option<String>,
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// The client's end-entity certificate.
    pub client_cert: Option<CertificateDer<'static>>,
    /// Everything the client sent, up to its EOF or close_notify.
    pub received: Vec<u8>,
    /// Whether the client ended with a close_notify.
    pub close_notify: bool,
    /// The key exchange group of the handshake.
    pub group: Option<rustls::NamedGroup>,
}

/// How [`RustlsServer`] is set up.
pub struct ServerSpec {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub versions: Versions,
    /// Sent before the handshake completes: with TLS 1.3, in the
    /// server's first flight.
    pub early: Vec<u8>,
    /// Sent after the client's EOF or close_notify, then a close_notify.
    pub reply: Vec<u8>,
    /// Anchors a client certificate must verify against (required).
    pub client_roots: Option<Vec<CertificateDer<'static>>>,
}

impl ServerSpec {
    /// `leaf` (with `chain` after it) over TLS 1.3 and 1.2.
    pub fn new(leaf: &Leaf) -> ServerSpec {
        ServerSpec {
            chain: vec![leaf.cert.clone()],
            key: leaf.rustls_key(),
            versions: Versions::Both,
            early: Vec::new(),
            reply: Vec::new(),
            client_roots: None,
        }
    }
}

/// One TLS connection accepted and served in a thread.
pub struct RustlsServer {
    pub port: u16,
    thread: Option<JoinHandle<Served>>,
}

impl RustlsServer {
    pub fn start(spec: ServerSpec) -> RustlsServer {
        let listener = Listener::new();
        let port = listener.addr.port();
        let thread = std::thread::spawn(move || serve(&listener, spec));
        RustlsServer {
            port,
            thread: Some(thread),
        }
    }

    /// Waits for the connection's end (bounded by the socket timeouts).
    pub fn finish(mut self) -> Served {
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("server thread")
    }
}

fn serve(listener: &Listener, spec: ServerSpec) -> Served {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(spec.versions.protocols())
        .expect("versions");
    let builder = match &spec.client_roots {
        Some(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for root in roots {
                store.add(root.clone()).expect("client root");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(spec.chain, spec.key)
        .expect("server certificate");
    config.send_half_rtt_data = true;
    let mut conn = ServerConnection::new(Arc::new(config)).expect("server connection");
    conn.writer()
        .write_all(&spec.early)
        .expect("buffer early data");
    let mut sock = listener.accept();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    sock.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut served = Served {
        error: None,
        sni: None,
        client_cert: None,
        received: Vec::new(),
        close_notify: false,
        group: None,
    };
    let result = (|| -> io::Result<()> {
        while conn.is_handshaking() {
            let (r, w) = conn.complete_io(&mut sock)?;
            if r == 0 && w == 0 && conn.is_handshaking() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        served.sni = conn.server_name().map(str::to_owned);
        served.group = conn.negotiated_key_exchange_group().map(|g| g.name());
        served.client_cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned());
        let mut buf = [0u8; 16384];
        loop {
            conn.complete_io(&mut sock)?;
            match conn.reader().read(&mut buf) {
                Ok(0) => {
                    served.close_notify = true;
                    break;
                }
                Ok(n) => served.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if conn.wants_read() && conn.read_tls(&mut sock)? == 0 {
                        break;
                    }
                    conn.process_new_packets().map_err(io::Error::other)?;
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        conn.writer().write_all(&spec.reply)?;
        conn.send_close_notify();
        while conn.wants_write() {
            conn.write_tls(&mut sock)?;
        }
        Ok(())
    })();
    served.error = result.err().map(|e| e.to_string());
    served
}

// ---------------------------------------------------------------------
// Server processes that announce their port

/// A server process that printed `ACCEPT 127.0.0.1:PORT` first on its
/// stdout; the rest of its stdout and its stderr are collected.
pub struct Announced {
    pub port: u16,
    pub guard: ChildGuard,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Announced {
    /// Spawns `cmd` and waits, bounded, for its announcement.
    pub fn spawn(mut cmd: Command) -> Announced {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard(cmd.spawn().expect("spawn the test server"));
        let stderr = drain(guard.0.stderr.take().expect("stderr"));
        let mut reader = BufReader::new(guard.0.stdout.take().expect("stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return Vec::new();
                    }
                    Ok(_) => {
                        if let Some(port) = line
                            .trim()
                            .strip_prefix("ACCEPT ")
                            .and_then(|a| a.rsplit_once(':'))
                            .and_then(|(_, p)| p.parse::<u16>().ok())
                        {
                            let _ = tx.send(Some(port));
                            break;
                        }
                    }
                }
            }
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            rest
        });
        let port = match rx.recv_timeout(DEADLINE) {
            Ok(Some(port)) => port,
            other => {
                let _ = guard.0.kill();
                let _ = guard.0.wait();
                panic!(
                    "no ACCEPT line from {:?} ({other:?}): {}",
                    cmd.get_program(),
                    String::from_utf8_lossy(&stderr.join().unwrap_or_default())
                );
            }
        };
        Announced {
            port,
            guard,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Waits for the exit (bounded) and returns (status, stdout after the
    /// announcement, stderr).
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let status = self.guard.wait_within(DEADLINE);
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.expect("joined once").join().unwrap_or_default())
                .into_owned()
        };
        (status, text(self.stdout.take()), text(self.stderr.take()))
    }
}

/// `openssl s_server` on 127.0.0.1, one connection, serving `cert`/`key`,
/// with `args` added.
pub fn s_server(cert: &Path, key: &Path, args: &[&str]) -> Announced {
    let mut cmd = Command::new(crate::common::OPENSSL);
    cmd.args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"])
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(args);
    Announced::spawn(cmd)
}

/// A Python `ssl` server on 127.0.0.1 for one connection: it sends
/// `hello from python\n`, reads to the client's EOF, answers
/// `got N bytes\n`, ends with a close_notify, and prints `received N`
/// and the client certificate's subject CN (or `no client certificate`)
/// on stdout. With `client_ca`, a client certificate is required.
pub fn python_server(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Announced {
    const SCRIPT: &str = r#"
import socket, ssl, sys
cert, key, ca = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if ca:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca)
lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen(1)
print("ACCEPT 127.0.0.1:%d" % lsock.getsockname()[1], flush=True)
lsock.settimeout(30)
raw, _ = lsock.accept()
raw.settimeout(30)
conn = ctx.wrap_socket(raw, server_side=True)
peer = conn.getpeercert()
conn.sendall(b"hello from python\n")
got = 0
while True:
    data = conn.recv(65536)
    if not data:
        break
    got += len(data)
conn.sendall(b"got %d bytes\n" % got)
conn.unwrap()
conn.close()
print("received %d" % got)
if peer:
    print("client " + dict(x[0] for x in peer["subject"])["commonName"])
else:
    print("no client certificate")
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg(cert)
        .arg(key)
        .arg(client_ca.map(PathBuf::from).unwrap_or_default());
    Announced::spawn(cmd)
}

// ---------------------------------------------------------------------
// Certificates a client must refuse

/// A server certificate (with what the server sends after it) that the
/// standard CA's clients must refuse with `-k name`, and the words of the
/// reason: one of `reason` must appear in the message, compared without
/// case, spaces or underscores (so that both rustls's names,
/// `UnknownIssuer`, and plain words, "unknown issuer", match).
pub struct Bad {
    pub what: &'static str,
    pub leaf: Leaf,
    pub intermediates: Vec<CertificateDer<'static>>,
    pub name: &'static str,
    pub reason: &'static [&'static str],
}

impl Bad {
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![self.leaf.cert.clone()];
        chain.extend(self.intermediates.iter().cloned());
        chain
    }

    /// Whether `message` gives this case's reason.
    pub fn explains(&self, message: &str) -> bool {
        let squash = |s: &str| {
            s.chars()
                .filter(|c| !matches!(c, ' ' | '_'))
                .flat_map(char::to_lowercase)
                .collect::<String>()
        };
        let message = squash(message);
        self.reason.iter().any(|r| message.contains(&squash(r)))
    }
}

fn server_params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("names");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

/// Every certificate the client must refuse, as the issue lists them.
pub fn bad_certificates() -> Vec<Bad> {
    let pki = pki();
    let names = ["localhost", "127.0.0.1"];
    let mut expired = server_params(&names);
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let mut future = server_params(&names);
    future.not_before = rcgen::date_time_ymd(2090, 1, 1);
    future.not_after = rcgen::date_time_ymd(2091, 1, 1);
    let mut client_only = server_params(&names);
    client_only.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let intermediate = pki.ca.intermediate("s6-tls Test Intermediate");
    let self_signed = {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = server_params(&names)
            .self_signed(&key)
            .expect("self-signed");
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
            kind: KeyKind::EcdsaP256,
        }
    };
    let mut forged = pki.ca.server(&names, KeyKind::EcdsaP256);
    // The last byte of the DER is the last byte of the signature.
    let mut der = forged.cert.to_vec();
    *der.last_mut().expect("DER") ^= 0x01;
    forged.cert = CertificateDer::from(der);
    let bad = |what, leaf, name, reason| Bad {
        what,
        leaf,
        intermediates: Vec::new(),
        name,
        reason,
    };
    vec![
        bad(
            "unknown CA",
            pki.other_ca.server(&names, KeyKind::EcdsaP256),
            "localhost",
            &["unknown issuer"],
        ),
        bad("self-signed", self_signed, "localhost", &["unknown issuer"]),
        bad(
            "expired",
            pki.ca.issue(expired, KeyKind::EcdsaP256),
            "localhost",
            &["expired"],
        ),
        bad(
            "not yet valid",
            pki.ca.issue(future, KeyKind::EcdsaP256),
            "localhost",
            &["not valid yet", "not valid before"],
        ),
        bad(
            "wrong DNS name",
            pki.ca.server(&["other.example"], KeyKind::EcdsaP256),
            "localhost",
            &["not valid for"],
        ),
        bad(
            "wrong IP address",
            pki.ca.server(&["127.0.0.2"], KeyKind::EcdsaP256),
            "127.0.0.1",
            &["not valid for"],
        ),
        bad(
            "missing intermediate",
            intermediate.server(&names, KeyKind::EcdsaP256),
            "localhost",
            &["unknown issuer"],
        ),
        bad(
            "client-auth only",
            pki.ca.issue(client_only, KeyKind::EcdsaP256),
            "localhost",
            &["invalid purpose", "server authentication"],
        ),
        bad(
            "bad signature",
            forged,
            "localhost",
            &["bad signature", "signature does not verify"],
        ),
    ]
}

/// How long a client may take to give up on a server that never answers.
pub const PATIENCE: Duration = Duration::from_secs(10);
