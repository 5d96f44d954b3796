//! The harness of the fault, load, scanner and secrets tests
//! (tests/faults.rs, tests/load.rs, tests/scan.rs, tests/secrets.rs):
//! certificates, a real `tcpserver` running `s6-ucspitlsd` in its own
//! process group (killed with everything under it on drop), /proc
//! inspection of the process tree, collection of s6-tlsd-io's exit status
//! (the test process is a child subreaper, so the engine, which outlives
//! prog, is reparented to us), and a non-blocking rustls client that moves
//! SHA-256-checked payloads both ways.
//!
//! Every wait is bounded.
#![allow(dead_code)]

use aws_lc_rs::digest::{Context, SHA256};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

pub const UCSPITLSD: &str = env!("CARGO_BIN_EXE_s6-ucspitlsd");

#[path = "../support/examples.rs"]
mod examples;
#[path = "../support/procfs.rs"]
mod procfs;
#[allow(unused_imports)]
pub use examples::{demo_exe, faultapp_exe};
pub use procfs::*;

// ---------------------------------------------------------------- setup

/// Makes this test process a child subreaper: when prog exits before
/// s6-tlsd-io (or is killed), the engine becomes our child and its exit
/// status can be collected with `reap`.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// A throwaway CA and a server certificate for `localhost`, on disk.
pub struct Pki {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: CertificateDer<'static>,
    /// The server's certificate.
    pub leaf: CertificateDer<'static>,
    /// The server key, PKCS#8 DER (what the key file's PEM encodes).
    pub key_der: Vec<u8>,
    /// The key file's text.
    pub key_pem: String,
}

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

/// The test CA.
fn ca() -> &'static Issuer {
    static CA: OnceLock<Issuer> = OnceLock::new();
    CA.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "s6-tls fault tests CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate")
    })
}

/// A server certificate for `localhost` with a key of `alg`, on disk.
fn make_pki(stem: &str, alg: &'static rcgen::SignatureAlgorithm) -> Pki {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let ca = ca();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate_for(alg).expect("server key");
    let cert = params.signed_by(&key, ca).expect("server certificate");

    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Directories of earlier runs whose process is gone.
    for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("s6-tls-faults-"))
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| state(p).is_none()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = base.join(format!("s6-tls-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the temporary directory");
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca.pem())).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    Pki {
        dir,
        cert: cert_path,
        key: key_path,
        ca: ca.der().clone(),
        leaf: cert.der().clone(),
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
    }
}

/// ECDSA P-256, what every test uses unless it says otherwise.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| make_pki("server", &rcgen::PKCS_ECDSA_P256_SHA256))
}

/// RSA 2048.
pub fn rsa_pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| make_pki("server-rsa", &rcgen::PKCS_RSA_SHA256))
}

/// A client configuration trusting the test CA, TLS 1.3 and 1.2.
pub fn client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(build_client_config(&[], false)))
        .clone()
}

/// A client configuration with some choices: versions (empty: both),
/// secret extraction for hand-crafted records.
pub fn build_client_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
    extract_secrets: bool,
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(pki().ca.clone()).expect("add CA");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions = if versions.is_empty() {
        rustls::ALL_VERSIONS
    } else {
        versions
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_secret_extraction = extract_secrets;
    config
}

// ------------------------------------------------------------ processes

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Exit statuses collected by `reap_orphans`, for `reap` to find.
static REAPED: Mutex<Vec<(i32, String, Exit)>> = Mutex::new(Vec::new());

fn exit_of(status: WaitStatus) -> Option<Exit> {
    match status {
        WaitStatus::Exited(_, code) => Some(Exit::Code(code)),
        WaitStatus::Signaled(_, sig, _) => Some(Exit::Signal(sig as i32)),
        _ => None,
    }
}

/// Waits (bounded) for a process that is or will become our child (the
/// engine is reparented to us when prog ends) and returns how it ended.
pub fn reap(pid: i32, timeout: Duration) -> Option<Exit> {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let mut reaped = REAPED.lock().unwrap();
            if let Some(i) = reaped.iter().position(|(p, _, _)| *p == pid) {
                return Some(reaped.remove(i).2);
            }
        }
        // Still running, or still prog's child (ECHILD): wait.
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            if let Some(exit) = exit_of(status) {
                return Some(exit);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reaps every zombie reparented to us from one server's process group
/// (sessions whose pids the test never learnt: a scanner's); returns
/// (pid, command, exit) of each. `reap` still finds them.
pub fn reap_orphans(server: &Server) -> Vec<(i32, String, Exit)> {
    let mut found = Vec::new();
    for pid in children(std::process::id() as i32) {
        let Some(name) = comm(pid) else { continue };
        if state(pid) != Some('Z') || pgid(pid) != Some(server.pid) {
            continue;
        }
        if let Some(exit) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            .ok()
            .and_then(exit_of)
        {
            found.push((pid, name, exit));
        }
    }
    REAPED.lock().unwrap().extend(found.iter().cloned());
    found
}

pub fn sigkill(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Waits until `cond` holds, polling every 5 ms; false on timeout.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// --------------------------------------------------------- super-server

/// ucspi-tcp's `tcpserver -v` running `s6-ucspitlsd OPTS -- PROG...` on
/// 127.0.0.1, with its stderr (its own log and that of every prog and
/// engine under it) collected.
pub struct Server {
    child: Child,
    pub port: u16,
    pub pid: i32,
    log: Arc<(Mutex<String>, Condvar)>,
}

pub struct ServerSpec<'a> {
    pub ucspitlsd: &'a [&'a str],
    pub prog: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// tcpserver -c: concurrent connections.
    pub concurrency: u32,
    /// The server's certificate and key (default: `pki()`).
    pub pki: Option<&'static Pki>,
}

impl Default for ServerSpec<'_> {
    fn default() -> Self {
        ServerSpec {
            ucspitlsd: &[],
            prog: &[],
            env: &[],
            concurrency: 40,
            pki: None,
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

impl Server {
    /// faultapp (or any prog) under s6-ucspitlsd with the test certificate.
    pub fn start(ucspitlsd: &[&str], prog: &[&str]) -> Server {
        Server::start_spec(&ServerSpec {
            ucspitlsd,
            prog,
            ..Default::default()
        })
    }

    pub fn start_spec(spec: &ServerSpec<'_>) -> Server {
        init();
        let pki = spec.pki.unwrap_or_else(pki);
        for _attempt in 0..20 {
            let port = free_port();
            let mut cmd = Command::new("tcpserver");
            cmd.args(["-v", "-R", "-H", "-l", "0", "-c"])
                .arg(spec.concurrency.to_string())
                .args(["127.0.0.1", &port.to_string(), UCSPITLSD])
                .args(spec.ucspitlsd)
                .arg("--")
                .args(spec.prog)
                .env("CERTFILE", &pki.cert)
                .env("KEYFILE", &pki.key)
                .envs(spec.env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .process_group(0);
            // SAFETY: close_range is async-signal-safe and touches no Rust
            // state. Descriptors the test process inherited (a jobserver's,
            // a harness's) must not reach tcpserver and every prog: mark
            // them close-on-exec (std's own exec-error pipe already is).
            unsafe {
                cmd.pre_exec(|| {
                    nix::libc::close_range(3, u32::MAX, nix::libc::CLOSE_RANGE_CLOEXEC as i32);
                    Ok(())
                });
            }
            let mut child = cmd
                .spawn()
                .expect("spawn tcpserver (apt-get install ucspi-tcp)");
            let pid = child.id() as i32;
            let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
            let stderr = child.stderr.take().expect("stderr");
            let sink = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if std::env::var_os("S6_TLS_TEST_ECHO").is_some() {
                                eprint!("[{port}] {line}");
                            }
                            let (lock, cvar) = &*sink;
                            lock.lock().unwrap().push_str(&line);
                            cvar.notify_all();
                        }
                    }
                }
            });
            let mut server = Server {
                child,
                port,
                pid,
                log,
            };
            server.wait_log(Duration::from_secs(10), |l| {
                l.contains("tcpserver: status: 0/") || l.contains("fatal")
            });
            let text = server.log();
            if text.contains("tcpserver: status: 0/") {
                return server;
            }
            if text.contains("unable to bind") {
                continue; // a port collision: another port
            }
            let _ = server.child.kill();
            panic!("tcpserver did not start:\n{text}");
        }
        panic!("no free port for tcpserver after 20 attempts");
    }

    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits until the collected stderr satisfies `pred`; false on timeout.
    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut text = lock.lock().unwrap();
        loop {
            if pred(&text) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            text = cvar.wait_timeout(text, deadline - now).unwrap().0;
        }
    }

    /// prog's raw wait status from `tcpserver: end PID status S`.
    pub fn prog_status(&self, prog: i32, timeout: Duration) -> Option<i32> {
        let needle = format!("tcpserver: end {prog} status ");
        self.wait_log(timeout, |t| t.contains(&needle));
        let text = self.log();
        let at = text.find(&needle)? + needle.len();
        text[at..].split_whitespace().next()?.parse().ok()
    }

    /// The faultapp report line of one prog, once it is there.
    pub fn report(&self, prog: i32, timeout: Duration) -> Option<Report> {
        let needle = format!("s6-tls-faultapp: pid={prog} mode=");
        self.wait_log(timeout, |t| t.contains(&needle));
        let text = self.log();
        let line = text.lines().find(|l| l.contains(&needle))?;
        Some(Report::parse(line))
    }

    pub fn fd_count(&self) -> usize {
        fd_count(self.pid)
    }

    pub fn descendants(&self) -> Vec<i32> {
        descendants(self.pid)
    }

    /// Waits until no process is left under tcpserver.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.descendants().is_empty())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let tree = self.descendants();
        // Everything under tcpserver is in its process group.
        let _ = kill(Pid::from_raw(-self.pid), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Orphans come to us (subreaper): reap them, bounded.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut left = tree;
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|&p| {
                !matches!(
                    waitpid(Pid::from_raw(p), Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                ) && state(p).is_some()
            });
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What a faultapp said at its end.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub line: String,
    pub mode: String,
    pub in_bytes: u64,
    pub in_sha: String,
    pub out_bytes: u64,
    pub out_sha: String,
    pub end: String,
}

impl Report {
    fn parse(line: &str) -> Report {
        let mut r = Report {
            line: line.to_owned(),
            ..Default::default()
        };
        for word in line.split_whitespace() {
            let Some((k, v)) = word.split_once('=') else {
                continue;
            };
            match k {
                "mode" => r.mode = v.to_owned(),
                "in" => r.in_bytes = v.parse().unwrap_or(u64::MAX),
                "in_sha256" => r.in_sha = v.to_owned(),
                "out" => r.out_bytes = v.parse().unwrap_or(u64::MAX),
                "out_sha256" => r.out_sha = v.to_owned(),
                "end" => r.end = v.to_owned(),
                _ => {}
            }
        }
        r
    }
}

// -------------------------------------------------------- the cleartext

pub fn connect(port: u16) -> TcpStream {
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    sock
}

/// One cleartext line, read byte by byte (nothing after it is consumed).
pub fn read_line(sock: &mut TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 4096 {
        if sock.read(&mut byte)? == 0 {
            break;
        }
        line.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The pids of one session: prog, and the helper that becomes s6-tlsd-io.
#[derive(Debug, Clone, Copy)]
pub struct Pids {
    pub prog: i32,
    pub engine: i32,
}

/// faultapp's dialogue up to its `220 go`; returns its pids.
pub fn faultapp_starttls(sock: &mut TcpStream) -> Pids {
    let greeting = read_line(sock).expect("read greeting");
    let field = |name: &str| -> i32 {
        greeting
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in greeting {greeting:?}"))
    };
    let pids = Pids {
        prog: field("pid="),
        engine: field("helper="),
    };
    assert!(pids.engine > 0, "helper not found: {greeting:?}");
    sock.write_all(b"STARTTLS\r\n").expect("send STARTTLS");
    let reply = read_line(sock).expect("read STARTTLS reply");
    assert!(reply.starts_with("220 go"), "STARTTLS reply {reply:?}");
    pids
}

/// The prog (child of tcpserver) and its helper, for a prog that does not
/// say its pids (the demo). Call with one connection open.
pub fn find_pids(server: &Server) -> Pids {
    let mut found = None;
    wait_until(Duration::from_secs(5), || {
        for prog in children(server.pid) {
            if let Some(&helper) = children(prog).first() {
                found = Some(Pids {
                    prog,
                    engine: helper,
                });
                return true;
            }
        }
        false
    });
    found.expect("prog and its helper under tcpserver")
}

/// The demo's dialogue up to its `220 2.0.0 Ready to start TLS`.
pub fn demo_starttls(sock: &mut TcpStream) {
    let banner = read_line(sock).expect("banner");
    assert!(banner.starts_with("220 "), "{banner:?}");
    sock.write_all(b"EHLO test\r\n").unwrap();
    loop {
        let line = read_line(sock).expect("EHLO reply");
        assert!(line.starts_with("250"), "{line:?}");
        if line.starts_with("250 ") {
            break;
        }
    }
    sock.write_all(b"STARTTLS\r\n").unwrap();
    let reply = read_line(sock).expect("STARTTLS reply");
    assert!(reply.starts_with("220 "), "{reply:?}");
}

/// Resets the connection: SO_LINGER 0, then close.
pub fn reset(sock: TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::Linger, &linger)
        .expect("SO_LINGER");
    drop(sock);
}

// --------------------------------------------------------- the payloads

/// A cheap payload: rotating windows over one random 1 MiB block shared
/// by every generator (so even an unoptimised test moves GiB, and 200
/// sessions do not hold 200 blocks), from a random starting point.
pub struct Pattern {
    block: &'static [u8],
    k: usize,
}

impl Pattern {
    pub fn new() -> Pattern {
        static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
        let block = BLOCK.get_or_init(|| {
            let mut block = vec![0u8; (1 << 20) + 65536];
            aws_lc_rs::rand::fill(&mut block).expect("random");
            block
        });
        let mut start = [0u8; 4];
        aws_lc_rs::rand::fill(&mut start).expect("random");
        Pattern {
            block,
            k: u32::from_le_bytes(start) as usize % 4096,
        }
    }

    pub fn next(&mut self, max: usize) -> &[u8] {
        let start = (self.k * 104_729) % (1 << 20);
        self.k += 1;
        &self.block[start..start + max.min(65536)]
    }
}

impl Default for Pattern {
    fn default() -> Self {
        Pattern::new()
    }
}

pub fn sha_hex(ctx: Context) -> String {
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(data);
    sha_hex(ctx)
}

// ----------------------------------------------------------- TLS client

/// What to do once everything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSend {
    /// Nothing: keep the connection open.
    Nothing,
    /// close_notify, then shutdown(SHUT_WR).
    CloseNotify,
    /// shutdown(SHUT_WR) without close_notify.
    Shutdown,
}

/// How the receiving side ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Still open (the plan did not wait for the end).
    Open,
    CloseNotify,
    /// TCP EOF without close_notify.
    UncleanEof,
    Tls(String),
    Io(io::ErrorKind, String),
}

/// Counters the hook sees.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Plaintext accepted by rustls.
    pub sent: u64,
    /// TLS bytes written to the socket.
    pub wire_out: u64,
    pub received: u64,
}

/// Called after every step of [`Client::run`]; false stops the run.
pub type Hook<'a> = dyn FnMut(&mut ClientConnection, &Progress) -> bool + 'a;

pub struct Plan<'a> {
    pub send: u64,
    pub after: AfterSend,
    /// Stop once this many bytes arrived (None: wait for the end).
    pub expect: Option<u64>,
    /// Called after every step; false stops the run.
    pub hook: Option<&'a mut Hook<'a>>,
    pub timeout: Duration,
    /// Keep what was received (small transfers only).
    pub keep: bool,
    /// Stop as soon as the receiving side ends, even with more to send.
    pub stop_on_end: bool,
}

impl Default for Plan<'_> {
    fn default() -> Self {
        Plan {
            send: 0,
            after: AfterSend::CloseNotify,
            expect: None,
            hook: None,
            timeout: Duration::from_secs(30),
            keep: false,
            stop_on_end: false,
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub progress: Progress,
    pub sent_sha: String,
    pub received_sha: String,
    pub received_data: Vec<u8>,
    pub end: End,
    /// An error on the sending side (EPIPE, ECONNRESET), if any.
    pub send_error: Option<io::ErrorKind>,
    pub timed_out: bool,
    pub stopped: bool,
    pub elapsed: Duration,
}

/// A rustls client on a non-blocking socket, driven by `poll`.
pub struct Client {
    pub sock: TcpStream,
    pub conn: ClientConnection,
}

impl Client {
    pub fn new(sock: TcpStream, config: Arc<ClientConfig>) -> Client {
        sock.set_nonblocking(true).expect("non-blocking");
        let conn = ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
            .expect("client connection");
        Client { sock, conn }
    }

    /// Runs the handshake to its end (bounded).
    pub fn handshake(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while self.conn.is_handshaking() || self.conn.wants_write() {
            if Instant::now() >= deadline {
                return Err("handshake timed out".into());
            }
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("write: {e}")),
                }
            }
            if !self.conn.is_handshaking() {
                if self.conn.wants_write() {
                    self.wait(true, deadline);
                }
                continue;
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Err("EOF during the handshake".into()),
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        let _ = self.conn.write_tls(&mut self.sock);
                        return Err(format!("TLS: {e}"));
                    }
                    // Early data from the server is not expected here.
                    let _ = self.conn.reader().read(&mut buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(self.conn.wants_write(), deadline)
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok(())
    }

    fn wait(&self, want_write: bool, deadline: Instant) {
        let mut flags = PollFlags::POLLIN;
        if want_write {
            flags |= PollFlags::POLLOUT;
        }
        let ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .min(50) as u16;
        let mut fds = [PollFd::new(self.sock.as_fd(), flags)];
        let _ = poll(&mut fds, ms.max(1));
    }

    /// Sends `commands` inside TLS, then reads every reply to the end of
    /// the session; the replies as text.
    pub fn converse(&mut self, commands: &[u8]) -> String {
        self.conn.writer().write_all(commands).unwrap();
        let out = self.run(&mut Plan {
            send: 0,
            after: AfterSend::Nothing,
            keep: true,
            ..Default::default()
        });
        String::from_utf8_lossy(&out.received_data).into_owned()
    }

    /// Moves `plan.send` bytes out while reading everything that comes.
    pub fn run(&mut self, plan: &mut Plan<'_>) -> Outcome {
        let started = Instant::now();
        let deadline = started + plan.timeout;
        let mut pattern = Pattern::new();
        let mut sent_ctx = Context::new(&SHA256);
        let mut recv_ctx = Context::new(&SHA256);
        let mut progress = Progress::default();
        let mut received_data = Vec::new();
        let mut after_done = false;
        let mut shut = false;
        let mut end = End::Open;
        let mut send_error = None;
        let mut timed_out = false;
        let mut stopped = false;
        let mut buf = vec![0u8; 65536];
        loop {
            // Plaintext into rustls only when everything before is on the wire.
            if send_error.is_none() && progress.sent < plan.send && !self.conn.wants_write() {
                let left = usize::try_from(plan.send - progress.sent).unwrap_or(usize::MAX);
                let chunk = pattern.next(left);
                let n = self.conn.writer().write(chunk).unwrap_or(0);
                sent_ctx.update(&chunk[..n]);
                progress.sent += n as u64;
            }
            if send_error.is_none() && progress.sent == plan.send && !after_done {
                after_done = true;
                if plan.after == AfterSend::CloseNotify {
                    self.conn.send_close_notify();
                }
            }
            while send_error.is_none() && self.conn.wants_write() {
                match self.conn.write_tls(&mut self.sock) {
                    Ok(n) => progress.wire_out += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => send_error = Some(e.kind()),
                }
            }
            if after_done && !shut && !self.conn.wants_write() && plan.after != AfterSend::Nothing {
                shut = true;
                let _ = self.sock.shutdown(Shutdown::Write);
            }
            if end == End::Open {
                match self.conn.read_tls(&mut self.sock) {
                    Ok(0) => {
                        if let Err(e) = self.conn.process_new_packets() {
                            end = End::Tls(e.to_string());
                        }
                    }
                    Ok(_) => {
                        if let Err(e) = self.conn.process_new_packets() {
                            end = End::Tls(e.to_string());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => end = End::Io(e.kind(), e.to_string()),
                }
                loop {
                    match self.conn.reader().read(&mut buf) {
                        Ok(0) => {
                            if matches!(end, End::Open) {
                                end = End::CloseNotify;
                            }
                            break;
                        }
                        Ok(n) => {
                            recv_ctx.update(&buf[..n]);
                            if plan.keep {
                                received_data.extend_from_slice(&buf[..n]);
                            }
                            progress.received += n as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            if matches!(end, End::Open) {
                                end = End::UncleanEof;
                            }
                            break;
                        }
                        Err(e) => {
                            if matches!(end, End::Open) {
                                end = End::Tls(e.to_string());
                            }
                            break;
                        }
                    }
                }
            }
            if let Some(hook) = plan.hook.as_mut() {
                if !hook(&mut self.conn, &progress) {
                    stopped = true;
                    break;
                }
            }
            let send_finished =
                send_error.is_some() || (after_done && (plan.after == AfterSend::Nothing || shut));
            let recv_finished =
                end != End::Open || plan.expect.is_some_and(|e| progress.received >= e);
            if send_finished && recv_finished {
                break;
            }
            if plan.stop_on_end && end != End::Open {
                break;
            }
            // The peer is gone: nothing more can be sent either.
            if matches!(end, End::Io(..) | End::Tls(_)) {
                break;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            let mut flags = PollFlags::empty();
            if end == End::Open {
                flags |= PollFlags::POLLIN;
            }
            if send_error.is_none() && self.conn.wants_write() {
                flags |= PollFlags::POLLOUT;
            }
            let idle = !(send_error.is_none() && progress.sent < plan.send);
            if idle || self.conn.wants_write() {
                let mut fds = [PollFd::new(self.sock.as_fd(), flags)];
                let _ = poll(&mut fds, 20u16);
            }
        }
        Outcome {
            progress,
            sent_sha: sha_hex(sent_ctx),
            received_sha: sha_hex(recv_ctx),
            received_data,
            end,
            send_error,
            timed_out,
            stopped,
            elapsed: started.elapsed(),
        }
    }
}

/// One faultapp session up to an established TLS connection.
pub fn faultapp_session(server: &Server) -> (Client, Pids) {
    let mut sock = connect(server.port);
    let pids = faultapp_starttls(&mut sock);
    let mut client = Client::new(sock, client_config());
    client
        .handshake(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("handshake: {e}\n{}", server.log()));
    (client, pids)
}

/// The common end of every case: the engine's exit, prog's end, nothing
/// left under the super-server, no descriptor leaked by it.
pub struct Ending {
    pub engine: Option<Exit>,
    pub prog_status: Option<i32>,
}

pub fn finish(server: &Server, pids: Pids, fds_before: usize, timeout: Duration) -> Ending {
    let engine = reap(pids.engine, timeout);
    let prog_status = server.prog_status(pids.prog, timeout);
    let idle = server.wait_idle(timeout);
    let log = server.log();
    assert!(
        idle,
        "processes left under tcpserver: {:?}\n{log}",
        server.descendants()
    );
    assert!(
        state(pids.engine).is_none(),
        "engine {} still there: {:?}\n{log}",
        pids.engine,
        state(pids.engine)
    );
    let fds_after = server.fd_count();
    assert_eq!(
        fds_before, fds_after,
        "tcpserver's descriptors: {fds_before} before, {fds_after} after\n{log}"
    );
    Ending {
        engine,
        prog_status,
    }
}

// ----------------------------------------- hand-crafted TLS 1.3 records

/// One direction of TLS 1.3 record protection, from secrets rustls
/// handed over (`dangerous_extract_secrets`).
pub struct RecordKeys {
    key: aws_lc_rs::aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl RecordKeys {
    pub fn new((seq, secrets): (u64, rustls::ConnectionTrafficSecrets)) -> RecordKeys {
        use aws_lc_rs::aead::CHACHA20_POLY1305;
        use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_128_GCM, AES_256_GCM};
        use rustls::ConnectionTrafficSecrets as S;
        let (alg, key, iv) = match secrets {
            S::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
            S::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
            S::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
            _ => panic!("unexpected cipher"),
        };
        RecordKeys {
            key: LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).expect("key")),
            iv: iv.as_ref().try_into().expect("12-byte iv"),
            seq,
        }
    }

    fn nonce(&mut self) -> aws_lc_rs::aead::Nonce {
        let mut n = self.iv;
        for (i, b) in self.seq.to_be_bytes().iter().enumerate() {
            n[4 + i] ^= b;
        }
        self.seq += 1;
        aws_lc_rs::aead::Nonce::assume_unique_for_key(n)
    }

    /// A whole protected record of inner content type `typ`.
    pub fn seal(&mut self, typ: u8, payload: &[u8]) -> Vec<u8> {
        let mut inner = payload.to_vec();
        inner.push(typ);
        let len = (inner.len() + 16) as u16;
        let header = [0x17, 0x03, 0x03, (len >> 8) as u8, len as u8];
        let nonce = self.nonce();
        self.key
            .seal_in_place_append_tag(nonce, aws_lc_rs::aead::Aad::from(header), &mut inner)
            .expect("seal");
        let mut record = header.to_vec();
        record.extend_from_slice(&inner);
        record
    }

    /// Opens one record (header included): (inner type, payload).
    pub fn open(&mut self, record: &[u8]) -> Option<(u8, Vec<u8>)> {
        let header: [u8; 5] = record.get(..5)?.try_into().ok()?;
        let mut body = record[5..].to_vec();
        let nonce = self.nonce();
        let plain = self
            .key
            .open_in_place(nonce, aws_lc_rs::aead::Aad::from(header), &mut body)
            .ok()?;
        let mut plain = plain.to_vec();
        while plain.last() == Some(&0) {
            plain.pop();
        }
        let typ = plain.pop()?;
        Some((typ, plain))
    }
}

/// A TLS 1.3 connection taken over from rustls after the handshake.
pub struct RawTls {
    pub sock: TcpStream,
    pub tx: RecordKeys,
    pub rx: RecordKeys,
}

impl RawTls {
    /// Completes a handshake with rustls (secret extraction on), then
    /// takes the keys. Blocking socket, 10 s timeouts.
    pub fn takeover(sock: TcpStream) -> RawTls {
        let config = Arc::new(build_client_config(&[&rustls::version::TLS13], true));
        let mut client = Client::new(sock, config);
        client
            .handshake(Duration::from_secs(10))
            .expect("handshake");
        let secrets = client.conn.dangerous_extract_secrets().expect("secrets");
        client.sock.set_nonblocking(false).unwrap();
        RawTls {
            sock: client.sock,
            tx: RecordKeys::new(secrets.tx),
            rx: RecordKeys::new(secrets.rx),
        }
    }

    /// Reads one whole record (blocking, bounded by the socket timeout).
    pub fn read_record(&mut self) -> io::Result<Vec<u8>> {
        let mut header = [0u8; 5];
        self.sock.read_exact(&mut header)?;
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        let mut record = header.to_vec();
        record.resize(5 + len, 0);
        self.sock.read_exact(&mut record[5..])?;
        Ok(record)
    }

    /// Reads application data until `want` bytes or the end of the stream.
    pub fn read_data(&mut self, want: usize) -> (Vec<u8>, Option<String>) {
        let mut data = Vec::new();
        while data.len() < want {
            let record = match self.read_record() {
                Ok(r) => r,
                Err(e) => return (data, Some(format!("{:?}", e.kind()))),
            };
            match self.rx.open(&record) {
                Some((23, payload)) => data.extend_from_slice(&payload),
                Some((21, alert)) => return (data, Some(format!("alert {alert:?}"))),
                Some((t, _)) => return (data, Some(format!("record type {t}"))),
                None => return (data, Some("undecryptable record".into())),
            }
        }
        (data, None)
    }
}
