//! Helpers shared by the integration tests.
//!
//! Every test drives the real binaries as child processes over real
//! loopback TCP connections, so this module provides:
//!
//! - [`TempDir`]: a private directory under the system temp dir, removed
//!   when dropped (certificates and keys are written there, never committed);
//! - [`Ca`], [`Leaf`], [`KeyKind`], [`pki`]: certificates generated at test
//!   time with rcgen (a CA, intermediates, server and client leaves with any
//!   key type and subject), and one shared standard set per test binary;
//! - [`tcp_pair`], [`Listener`]: a listener on 127.0.0.1 port 0, a connected
//!   client and the accepted server socket;
//! - [`Spawn`], [`Engine`], [`Exit`]: s6-tlsd-io (or any program) spawned
//!   with the accepted socket on fds 0 and 1, real pipes on chosen fd
//!   numbers (`fdr`/`fdw`, a notification pipe), a captured stderr, and
//!   bounded waits that kill, reap and fail on expiry;
//! - [`ClientSetup`], [`TlsClient`]: a rustls client (TLS 1.3, 1.2 or both,
//!   chosen cipher suites, a real root store or a recording accept-anything
//!   verifier, an optional client certificate, a session store that counts
//!   what the server offered for resumption), with blocking-with-deadline
//!   helpers and a full-duplex pump for bulk transfers;
//! - bounded reads and writes on raw descriptors ([`read_exact_fd`],
//!   [`read_to_eof`], [`write_all_fd`], ...), a deterministic byte
//!   [`Stream`] and SHA-256 helpers ([`sha256_hex`], [`Sha256`]).
//!
//! Every wait in here has a deadline ([`DEADLINE`] unless told otherwise);
//! nothing sleeps for correctness.
#![allow(dead_code)]

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, RsaKeySize,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, NamedGroup, SignatureScheme};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest any single step of a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The path of the s6-tlsd-io binary cargo built for these tests.
pub const TLSD_IO: &str = env!("CARGO_BIN_EXE_s6-tlsd-io");

/// The prefix of every fatal message of s6-tlsd-io.
pub const FATAL: &str = "s6-tlsd-io: fatal: ";

// ---------------------------------------------------------------------
// Temporary directories

/// A private directory, removed with its contents when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/s6-tls-test-TAG-PID-N`, mode 0700.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("s6-tls-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file in the directory and returns its path.
    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Creates a subdirectory and returns its path.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------
// Certificates

/// The key types the servers and clients are tested with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Ed25519,
}

/// A fresh key pair of the given kind.
pub fn key_pair(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
    }
    .expect("key generation")
}

/// A certificate authority (a root, or an intermediate when made by
/// [`Ca::intermediate`]) that issues leaves.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A self-signed ECDSA P-256 root named `CN=cn`.
    pub fn new(cn: &str) -> Ca {
        let issuer = CertifiedIssuer::self_signed(ca_params(cn), key_pair(KeyKind::EcdsaP256))
            .expect("self-signed CA");
        Ca { issuer }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, cn: &str) -> Ca {
        let issuer =
            CertifiedIssuer::signed_by(ca_params(cn), key_pair(KeyKind::EcdsaP256), &self.issuer)
                .expect("intermediate CA");
        Ca { issuer }
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server leaf for `names` (DNS names or IP addresses in the SAN;
    /// the first name is also the CN).
    pub fn server(&self, names: &[&str], kind: KeyKind) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server names");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, kind)
    }

    /// A client leaf with exactly the given subject attributes, in that
    /// order (an empty list gives an empty subject).
    pub fn client(&self, subject: &[(DnType, &str)], kind: KeyKind) -> Leaf {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (ty, value) in subject {
            dn.push(ty.clone(), *value);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, kind)
    }

    /// Issues a leaf from arbitrary parameters (e.g. an expired validity).
    pub fn issue(&self, params: CertificateParams, kind: KeyKind) -> Leaf {
        let key = key_pair(kind);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            cert: cert.der().clone(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
            kind,
        }
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// An end-entity certificate and its private key (PKCS#8).
#[derive(Clone)]
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
    pub kind: KeyKind,
}

impl Leaf {
    /// Writes `STEM.crt` and `STEM.key` (PEM) in `dir`; returns (cert, key).
    pub fn write(&self, dir: &TempDir, stem: &str) -> (PathBuf, PathBuf) {
        (
            dir.write(&format!("{stem}.crt"), &self.cert_pem),
            dir.write(&format!("{stem}.key"), &self.key_pem),
        )
    }

    /// Writes the leaf followed by `chain` (intermediates) as one PEM file
    /// and the key; returns (cert, key).
    pub fn write_chain(&self, dir: &TempDir, stem: &str, chain: &[&Ca]) -> (PathBuf, PathBuf) {
        let mut pem = self.cert_pem.clone();
        for ca in chain {
            pem.push_str(&ca.cert_pem());
        }
        (
            dir.write(&format!("{stem}.crt"), pem),
            dir.write(&format!("{stem}.key"), &self.key_pem),
        )
    }

    pub fn rustls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// SHA-256 of the DER certificate, lowercase hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.cert)
    }
}

/// The standard certificates of a test binary, generated once.
pub struct Pki {
    /// The CA every standard certificate chains to.
    pub ca: Ca,
    /// Another CA, trusted by nobody unless a test says so.
    pub other_ca: Ca,
    /// Server leaves for `localhost` and 127.0.0.1, one per key kind.
    pub server_p256: Leaf,
    pub server_rsa: Leaf,
    pub server_ed25519: Leaf,
    /// A client with the full subject C, ST, L, O, OU, CN (pushed in a
    /// scrambled order, to test that the output order is fixed).
    pub client_full: Leaf,
    /// A client signed by `other_ca`.
    pub client_other: Leaf,
}

/// The subject of [`Pki::client_full`] as SSL_PEER_CERT_SUBJECT shows it.
pub const CLIENT_FULL_SUBJECT: &str =
    "C=FR, ST=Ile-de-France, L=Paris, O=Example Org, OU=Testing Unit, CN=full.client";

/// The standard certificates, generated on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = Ca::new("s6-tls Test CA");
        let other_ca = Ca::new("s6-tls Other CA");
        let names = ["localhost", "127.0.0.1"];
        Pki {
            server_p256: ca.server(&names, KeyKind::EcdsaP256),
            server_rsa: ca.server(&names, KeyKind::Rsa2048),
            server_ed25519: ca.server(&names, KeyKind::Ed25519),
            client_full: ca.client(
                &[
                    (DnType::CommonName, "full.client"),
                    (DnType::OrganizationalUnitName, "Testing Unit"),
                    (DnType::CountryName, "FR"),
                    (DnType::LocalityName, "Paris"),
                    (DnType::StateOrProvinceName, "Ile-de-France"),
                    (DnType::OrganizationName, "Example Org"),
                ],
                KeyKind::EcdsaP256,
            ),
            client_other: other_ca.client(&[(DnType::CommonName, "stranger")], KeyKind::EcdsaP256),
            ca,
            other_ca,
        }
    })
}

// ---------------------------------------------------------------------
// TCP

/// A listener on 127.0.0.1, port chosen by the kernel.
pub struct Listener {
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

impl Listener {
    pub fn new() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local_addr");
        Listener { listener, addr }
    }

    /// Accepts one connection within [`DEADLINE`]; the socket is blocking.
    pub fn accept(&self) -> TcpStream {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    sock.set_nonblocking(false).expect("blocking socket");
                    return sock;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        wait_fd(self.listener.as_fd(), PollFlags::POLLIN, deadline),
                        "no connection to accept within {DEADLINE:?}"
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

impl Default for Listener {
    fn default() -> Self {
        Self::new()
    }
}

/// A connected loopback pair: (client side, accepted server side), both
/// blocking with [`DEADLINE`] timeouts on the client side.
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = Listener::new();
    let client = TcpStream::connect(listener.addr).expect("connect to 127.0.0.1");
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.set_write_timeout(Some(DEADLINE)).unwrap();
    let server = listener.accept();
    (client, server)
}

/// Makes the next `close` of `sock` send a TCP reset (SO_LINGER 0).
pub fn set_linger_zero(sock: &TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a properly sized and initialised struct.
    let rc = unsafe {
        nix::libc::setsockopt(
            sock.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_LINGER,
            (&linger as *const nix::libc::linger).cast(),
            std::mem::size_of::<nix::libc::linger>() as nix::libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------
// Bounded I/O on raw descriptors

/// A pipe whose both ends are close-on-exec: (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).expect("F_GETFL"));
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("F_SETFL");
}

/// Waits until `fd` reports one of `flags` (or an error/hangup); false
/// if `deadline` passed first.
pub fn wait_fd(fd: BorrowedFd<'_>, flags: PollFlags, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(fd, flags)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => {}
            Ok(_) => return true,
            Err(Errno::EINTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Reads what is available (blocking until something is, or EOF), at most
/// `buf.len()` bytes; 0 means EOF. Panics on timeout.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        assert!(
            wait_fd(fd, PollFlags::POLLIN, deadline),
            "timed out waiting to read fd {}",
            fd.as_raw_fd()
        );
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(n),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads exactly `n` bytes within [`DEADLINE`]; panics on EOF or timeout.
pub fn read_exact_fd(fd: BorrowedFd<'_>, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = vec![0; n];
    let mut got = 0;
    while got < n {
        match read_some(fd, &mut out[got..], deadline).expect("read") {
            0 => panic!(
                "EOF after {got} of {n} bytes: {:?}",
                String::from_utf8_lossy(&out[..got])
            ),
            k => got += k,
        }
    }
    out
}

/// Reads until EOF within [`DEADLINE`].
pub fn read_to_eof(fd: BorrowedFd<'_>) -> Vec<u8> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match read_some(fd, &mut buf, deadline).expect("read") {
            0 => return out,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes everything, waiting for room, within `deadline`; Err(EPIPE)
/// etc. if the reader is gone. Panics on timeout.
pub fn write_all_fd(fd: BorrowedFd<'_>, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => assert!(
                wait_fd(fd, PollFlags::POLLOUT, deadline),
                "timed out writing to fd {}",
                fd.as_raw_fd()
            ),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Data and digests

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An incremental SHA-256 that also counts bytes.
pub struct Sha256 {
    ctx: aws_lc_rs::digest::Context,
    pub len: u64,
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256 {
            ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            len: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.len += data.len() as u64;
    }

    pub fn finish(self) -> String {
        hex(self.ctx.finish().as_ref())
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

/// A deterministic pseudo-random byte stream of a given length
/// (xorshift64*), so that reordered, lost or duplicated chunks change
/// the digest.
pub struct Stream {
    state: u64,
    remaining: u64,
}

impl Stream {
    pub fn new(seed: u64, len: u64) -> Stream {
        Stream {
            state: seed | 1,
            remaining: len,
        }
    }

    /// Fills up to `buf.len()` bytes; 0 when the stream is over.
    pub fn fill(&mut self, buf: &mut [u8]) -> usize {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let word = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        self.remaining -= n as u64;
        n
    }

    /// The whole stream in memory (for small lengths).
    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        let n = Stream::new(seed, len as u64).fill(&mut v);
        assert_eq!(n, len);
        v
    }
}

// ---------------------------------------------------------------------
// Spawning the engine

/// How to run a program under test: its arguments, its whole environment
/// (nothing is inherited), and the descriptors it gets beyond 0, 1, 2.
pub struct Spawn {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    fds: Vec<(RawFd, OwnedFd)>,
    app_in: Option<OwnedFd>,
    app_out: Option<OwnedFd>,
    notify: Option<OwnedFd>,
    /// The child's fds 0 and 1 when they are not the network.
    stdio: Option<(OwnedFd, OwnedFd)>,
}

impl Spawn {
    /// s6-tlsd-io with exactly these arguments, an empty environment and
    /// no descriptor beyond 0, 1, 2.
    pub fn new<I, S>(args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Spawn::program(TLSD_IO, args)
    }

    /// Any program, as [`Spawn::new`].
    pub fn program<I, S>(program: impl Into<OsString>, args: I) -> Spawn
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Spawn {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            fds: Vec::new(),
            app_in: None,
            app_out: None,
            notify: None,
            stdio: None,
        }
    }

    /// Pipes for an application on the child's fds 0 and 1 (the client
    /// engine's side): the test writes what the child reads on fd 0 on
    /// [`Engine::app_in`], reads what it writes on fd 1 on
    /// [`Engine::app_out`]. Spawn with `None` then.
    pub fn app_std(mut self) -> Spawn {
        let (stdin, app_in) = pipe();
        set_nonblocking(app_in.as_fd());
        let (app_out, stdout) = pipe();
        set_nonblocking(app_out.as_fd());
        self.stdio = Some((stdin, stdout));
        self.app_in = Some(app_in);
        self.app_out = Some(app_out);
        self
    }

    /// A connected socket on two descriptors of the child, `r` for
    /// reading and `w` for writing (a UCSPI client's 6 and 7).
    pub fn net_on(self, r: RawFd, w: RawFd, sock: TcpStream) -> Spawn {
        let dup = sock.try_clone().expect("dup socket");
        self.fd(r, OwnedFd::from(sock)).fd(w, OwnedFd::from(dup))
    }

    /// Pipes for the application side: the child reads cleartext on
    /// `fdr` (the test writes it on [`Engine::app_in`]) and writes
    /// cleartext on `fdw` (the test reads it on [`Engine::app_out`]).
    pub fn app(mut self, fdr: RawFd, fdw: RawFd) -> Spawn {
        let (r, w) = pipe();
        set_nonblocking(w.as_fd());
        self.fds.push((fdr, r));
        self.app_in = Some(w);
        let (r, w) = pipe();
        set_nonblocking(r.as_fd());
        self.fds.push((fdw, w));
        self.app_out = Some(r);
        self
    }

    /// A notification pipe: the child writes on `fd`, the test reads
    /// [`Engine::notify`].
    pub fn notify(mut self, fd: RawFd) -> Spawn {
        let (r, w) = pipe();
        set_nonblocking(r.as_fd());
        self.fds.push((fd, w));
        self.notify = Some(r);
        self
    }

    /// Any descriptor, placed at `target` in the child.
    pub fn fd(mut self, target: RawFd, fd: OwnedFd) -> Spawn {
        self.fds.push((target, fd));
        self
    }

    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Spawn {
        self.env.push((name.into(), value.into()));
        self
    }

    /// `CERTFILE` and `KEYFILE`.
    pub fn cert(self, cert: &Path, key: &Path) -> Spawn {
        self.env("CERTFILE", cert).env("KEYFILE", key)
    }

    /// Starts the child with `net` on fds 0 and 1 (or /dev/null on both
    /// when `None`).
    pub fn spawn(self, net: Option<TcpStream>) -> Engine {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        match net {
            Some(sock) => {
                let out = sock.try_clone().expect("dup socket");
                cmd.stdin(Stdio::from(OwnedFd::from(sock)))
                    .stdout(Stdio::from(OwnedFd::from(out)));
            }
            None => match self.stdio {
                Some((stdin, stdout)) => {
                    cmd.stdin(Stdio::from(stdin)).stdout(Stdio::from(stdout));
                }
                None => {
                    cmd.stdin(Stdio::null()).stdout(Stdio::null());
                }
            },
        }
        cmd.stderr(Stdio::piped());
        const MAX: usize = 8;
        assert!(self.fds.len() <= MAX, "too many descriptors");
        let mut sources = [-1; MAX];
        let mut targets = [-1; MAX];
        for (i, (target, fd)) in self.fds.iter().enumerate() {
            assert!(
                *target >= 3 && *target < 64,
                "target fd {target} out of range"
            );
            sources[i] = fd.as_raw_fd();
            targets[i] = *target;
        }
        let count = self.fds.len();
        // SAFETY: the closure runs between fork and exec and only calls
        // async-signal-safe functions (fcntl, dup2, close) on plain arrays.
        unsafe {
            cmd.pre_exec(move || {
                use nix::libc;
                // First move every source out of the way (close-on-exec
                // copies at 64 and up), then place them: a source may
                // already sit on another entry's target.
                let mut moved = [-1; MAX];
                for i in 0..count {
                    let fd = libc::fcntl(sources[i], libc::F_DUPFD_CLOEXEC, 64);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    moved[i] = fd;
                }
                for i in 0..count {
                    if libc::dup2(moved[i], targets[i]) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // Nothing else survives: a number the test did not place
                // is guaranteed closed in the child. Below 64, close; from
                // 64 up (where std keeps its exec-error pipe, and where
                // inherited descriptors such as cargo's jobserver live),
                // mark close-on-exec.
                for fd in 3..64 {
                    if !targets[..count].contains(&fd) {
                        libc::close(fd);
                    }
                }
                const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
                if libc::syscall(libc::SYS_close_range, 64u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
                    for fd in 64..4096 {
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", self.program));
        // Our copies of the child's ends are closed here, so that EOF on
        // the test's ends means the child closed (or exited).
        drop(self.fds);
        let mut stderr = child.stderr.take().expect("stderr pipe");
        let (tx, stderr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v);
            let _ = tx.send(v);
        });
        Engine {
            pid: child.id(),
            child: Some(child),
            app_in: self.app_in,
            app_out: self.app_out,
            notify: self.notify,
            stderr: Some(stderr_rx),
        }
    }
}

/// How a child ended, with everything it wrote on stderr.
#[derive(Debug, Clone)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr: String,
}

impl Exit {
    /// Asserts the exit code and that stderr holds nothing but info and
    /// debug lines (no warning, no fatal error).
    pub fn assert_no_complaint(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "exit status; stderr: {:?}",
            self.stderr
        );
        for line in self.stderr.lines() {
            assert!(
                line.contains(": info: ") || line.contains(": debug: "),
                "unexpected stderr line {line:?}"
            );
        }
    }

    /// Asserts the exit code and that stderr is empty.
    pub fn assert_clean(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "exit status; stderr: {:?}",
            self.stderr
        );
        assert_eq!(self.stderr, "", "stderr should be empty");
    }

    /// Asserts the exit code and that stderr is exactly one line
    /// `s6-tlsd-io: fatal: ` + something starting with `start`.
    /// A `start` ending in a newline is the whole line.
    pub fn assert_fatal(&self, code: i32, start: &str) {
        let line = self.fatal_line(code, FATAL);
        match start.strip_suffix('\n') {
            Some(whole) => assert_eq!(line, whole, "stderr {:?}", self.stderr),
            None => assert!(
                line.starts_with(start),
                "stderr {:?} should start with {FATAL}{start:?}",
                self.stderr
            ),
        }
    }

    /// Asserts the exit code and that stderr is exactly one line that
    /// starts with `prefix` (`PROGNAME: fatal: `); returns the rest of it.
    pub fn fatal_line(&self, code: i32, prefix: &str) -> &str {
        assert_eq!(
            self.code,
            Some(code),
            "exit status; stderr: {:?}",
            self.stderr
        );
        assert!(
            self.stderr.ends_with('\n') && self.stderr.matches('\n').count() == 1,
            "stderr should be one line: {:?}",
            self.stderr
        );
        self.stderr
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("stderr {:?} should start with {prefix:?}", self.stderr))
            .trim_end()
    }
}

/// A running child: the test's ends of its pipes, and its stderr.
/// Dropping it kills and reaps the child if it is still running.
pub struct Engine {
    child: Option<Child>,
    pub pid: u32,
    /// Write end of the pipe the engine reads cleartext from (its `fdr`).
    pub app_in: Option<OwnedFd>,
    /// Read end of the pipe the engine writes cleartext to (its `fdw`).
    pub app_out: Option<OwnedFd>,
    /// Read end of the notification pipe.
    pub notify: Option<OwnedFd>,
    /// Everything the child wrote on stderr, sent when the pipe closes.
    stderr: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
}

impl Engine {
    /// Waits for the child to exit, at most `within`; on expiry kills it,
    /// reaps it and panics.
    pub fn wait_within(&mut self, within: Duration) -> Exit {
        match self.try_wait_within(within) {
            Some(exit) => exit,
            None => {
                let exit = self.kill();
                panic!(
                    "pid {} still running after {within:?}; killed: {exit:?}",
                    self.pid
                );
            }
        }
    }

    /// [`Engine::wait_within`] with [`DEADLINE`].
    pub fn wait(&mut self) -> Exit {
        self.wait_within(DEADLINE)
    }

    /// Waits at most `within`; `None` if the child is still running (it
    /// is left running).
    pub fn try_wait_within(&mut self, within: Duration) -> Option<Exit> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("child already reaped");
        loop {
            if let Some(status) = child.try_wait().expect("waitpid") {
                self.child = None;
                // Reaped: the pid is gone.
                let pid = nix::unistd::Pid::from_raw(self.pid as i32);
                assert_eq!(nix::sys::signal::kill(pid, None), Err(Errno::ESRCH));
                // Its stderr closes with it, unless something it left
                // behind still holds it: that fails the test.
                let stderr = match self.stderr.take() {
                    Some(rx) => rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
                        panic!(
                            "pid {} exited but its stderr is still open: a process was left behind",
                            self.pid
                        )
                    }),
                    None => Vec::new(),
                };
                return Some(Exit {
                    code: status.code(),
                    signal: status.signal(),
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling waitpid is how we await the exit event here; the
            // interval only bounds the latency of noticing it.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Asserts the child is still running after `d`.
    pub fn assert_running_after(&mut self, d: Duration) {
        if let Some(exit) = self.try_wait_within(d) {
            panic!("pid {} exited early: {exit:?}", self.pid);
        }
    }

    /// Kills (SIGKILL) and reaps the child.
    pub fn kill(&mut self) -> Exit {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.wait_within(DEADLINE)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("waitpid").is_none(),
            None => false,
        }
    }

    /// Writes cleartext for the engine to send; Err if it stopped reading.
    pub fn app_write(&self, data: &[u8]) -> io::Result<()> {
        let fd = self.app_in.as_ref().expect("app_in open");
        write_all_fd(fd.as_fd(), data, Instant::now() + DEADLINE)
    }

    /// Reads exactly `n` bytes of cleartext the engine received.
    pub fn app_read_exact(&self, n: usize) -> Vec<u8> {
        read_exact_fd(self.app_out.as_ref().expect("app_out open").as_fd(), n)
    }

    /// Reads cleartext until the engine closes `fdw`.
    pub fn app_read_to_eof(&self) -> Vec<u8> {
        read_to_eof(self.app_out.as_ref().expect("app_out open").as_fd())
    }

    /// The application's EOF: closes the test's end of `fdr`.
    pub fn close_app_in(&mut self) {
        self.app_in = None;
    }

    /// The application stops reading: closes the test's end of `fdw`.
    pub fn close_app_out(&mut self) {
        self.app_out = None;
    }

    /// Everything written on the notification descriptor until it is closed.
    pub fn read_notification(&self) -> Vec<u8> {
        read_to_eof(self.notify.as_ref().expect("notification pipe").as_fd())
    }

    /// The lines `Uid:`, `Gid:`, `Groups:` of /proc/PID/status.
    pub fn proc_status(&self, field: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
            .trim()
            .to_owned()
    }

    /// The descriptor numbers open in the child.
    pub fn open_fds(&self) -> Vec<RawFd> {
        let mut v: Vec<RawFd> = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("read /proc/PID/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns any command with its stdin/stdout/stderr piped, reaped (killed
/// if needed) when the guard is dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits for the exit within `within`; kills, reaps and panics on expiry.
    pub fn wait_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("waitpid") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                panic!("pid {} still running after {within:?}", self.0.id());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------
// The rustls client

/// Which protocol versions the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    Tls13,
    Tls12,
    Both,
}

impl Versions {
    /// The versions, as rustls's builders take them.
    pub fn protocols(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        match self {
            Versions::Tls13 => TLS13,
            Versions::Tls12 => TLS12,
            Versions::Both => rustls::ALL_VERSIONS,
        }
    }
}

/// How the client checks the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// A real WebPKI verification against these roots, for the server name.
    Roots(Vec<CertificateDer<'static>>),
    /// Accept any certificate (handshake signatures are still checked);
    /// what was presented is in `conn.peer_certificates()`.
    Any,
}

/// Counts what the server offered for session resumption.
#[derive(Debug, Default)]
pub struct CountingStore {
    pub tls13_tickets: AtomicUsize,
    pub tls12_sessions: AtomicUsize,
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {
        self.tls12_sessions.fetch_add(1, Ordering::SeqCst);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, _: Tls13ClientSessionValue) {
        self.tls13_tickets.fetch_add(1, Ordering::SeqCst);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        None
    }
}

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Everything that makes a client configuration.
#[derive(Clone)]
pub struct ClientSetup {
    pub versions: Versions,
    /// `None`: the provider's defaults.
    pub suites: Option<Vec<rustls::SupportedCipherSuite>>,
    pub trust: Trust,
    /// A client certificate chain and its key (PKCS#8 DER).
    pub identity: Option<(Vec<CertificateDer<'static>>, Vec<u8>)>,
    pub store: Arc<CountingStore>,
}

impl ClientSetup {
    /// TLS 1.3 and 1.2, default suites, trusting the standard CA, no
    /// client certificate.
    pub fn new() -> ClientSetup {
        ClientSetup {
            versions: Versions::Both,
            suites: None,
            trust: Trust::Roots(vec![pki().ca.cert_der()]),
            identity: None,
            store: Arc::new(CountingStore::default()),
        }
    }

    pub fn versions(mut self, v: Versions) -> ClientSetup {
        self.versions = v;
        self
    }

    pub fn suites(mut self, s: &[rustls::SupportedCipherSuite]) -> ClientSetup {
        self.suites = Some(s.to_vec());
        self
    }

    pub fn trust(mut self, t: Trust) -> ClientSetup {
        self.trust = t;
        self
    }

    /// Presents `leaf` as the client certificate.
    pub fn identity(mut self, leaf: &Leaf) -> ClientSetup {
        self.identity = Some((vec![leaf.cert.clone()], leaf.key_der.clone()));
        self
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(suites) = &self.suites {
            provider.cipher_suites = suites.clone();
        }
        let provider = Arc::new(provider);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions.protocols())
            .expect("client protocol versions");
        let builder = match &self.trust {
            Trust::Roots(roots) => {
                let mut store = rustls::RootCertStore::empty();
                for root in roots {
                    store.add(root.clone()).expect("root certificate");
                }
                builder.with_root_certificates(store)
            }
            Trust::Any => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider))),
        };
        let mut config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(
                    chain.clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
                )
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        config.resumption = Resumption::store(self.store.clone());
        Arc::new(config)
    }
}

impl Default for ClientSetup {
    fn default() -> Self {
        Self::new()
    }
}

/// How the server's data stream ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A close_notify alert.
    CloseNotify,
    /// TCP EOF without close_notify.
    Eof,
}

/// A rustls client on a blocking socket whose reads and writes time out
/// after [`DEADLINE`].
pub struct TlsClient {
    pub conn: ClientConnection,
    pub sock: TcpStream,
}

impl TlsClient {
    /// Starts a client on `sock` for `server_name` (a DNS name is sent as
    /// SNI; an IP address sends none).
    pub fn new(sock: TcpStream, setup: &ClientSetup, server_name: &str) -> TlsClient {
        sock.set_read_timeout(Some(DEADLINE)).unwrap();
        sock.set_write_timeout(Some(DEADLINE)).unwrap();
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let conn = ClientConnection::new(setup.config(), name).expect("client connection");
        TlsClient { conn, sock }
    }

    /// Runs the handshake to its end (on the client's side).
    pub fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            let (r, w) = self.conn.complete_io(&mut self.sock)?;
            if r == 0 && w == 0 && self.conn.is_handshaking() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.flush()
    }

    /// Sends everything rustls has queued.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }

    /// Encrypts and sends `data`.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.conn.writer().write(rest)?;
            rest = &rest[n..];
            self.flush()?;
        }
        self.flush()
    }

    /// Reads cleartext: Ok(0) after the server's close_notify,
    /// Err(UnexpectedEof) after a TCP EOF without it, other errors for TLS
    /// alerts and socket failures (including the timeout).
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut eofs = 0;
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if eofs > 1 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.flush()?;
            if self.conn.read_tls(&mut self.sock)? == 0 {
                eofs += 1;
            }
            if let Err(e) = self.conn.process_new_packets() {
                // Send the alert rustls queued, as a real client would.
                let _ = self.flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Reads exactly `n` bytes; panics on anything else.
    pub fn recv_exact(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        let mut got = 0;
        while got < n {
            match self.recv(&mut out[got..]) {
                Ok(0) => panic!("close_notify after {got} of {n} bytes"),
                Ok(k) => got += k,
                Err(e) => panic!("error after {got} of {n} bytes: {e}"),
            }
        }
        out
    }

    /// Reads until the server's data ends; returns the data and how it
    /// ended (or the error that stopped it).
    pub fn recv_to_end(&mut self) -> (Vec<u8>, io::Result<End>) {
        let mut out = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            match self.recv(&mut buf) {
                Ok(0) => return (out, Ok(End::CloseNotify)),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return (out, Ok(End::Eof)),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    /// Sends a close_notify alert (the TCP connection stays open).
    pub fn close_notify(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()
    }

    /// Half-closes TCP without any alert.
    pub fn shutdown_write(&self) {
        self.sock
            .shutdown(Shutdown::Write)
            .expect("shutdown(SHUT_WR)");
    }

    /// The leaf certificate the server presented.
    pub fn server_leaf(&self) -> CertificateDer<'static> {
        self.conn
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("server certificate")
            .clone()
            .into_owned()
    }

    /// Full duplex: sends everything `source` produces (then a
    /// close_notify if `close_after` is set) while reading the server's
    /// data into `sink` until it ends, all at once, within [`DEADLINE`].
    /// Panics on any error; returns how the server's data ended.
    pub fn duplex(
        &mut self,
        source: impl FnMut(&mut [u8]) -> usize,
        sink: impl FnMut(&[u8]),
        close_after: bool,
    ) -> End {
        let outcome = self.duplex_outcome(source, sink, close_after);
        if let Some(e) = outcome.send_error {
            panic!("client send failed: {e}");
        }
        outcome
            .end
            .unwrap_or_else(|e| panic!("client receive failed: {e}"))
    }

    /// As [`TlsClient::duplex`], but errors end a direction instead of
    /// panicking: a send error stops sending, a receive error ends
    /// receiving. Returns when both directions have ended.
    pub fn duplex_outcome(
        &mut self,
        mut source: impl FnMut(&mut [u8]) -> usize,
        mut sink: impl FnMut(&[u8]),
        close_after: bool,
    ) -> Duplex {
        let deadline = Instant::now() + DEADLINE;
        self.sock.set_nonblocking(true).unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        let (mut start, mut end) = (0, 0);
        let mut source_done = false;
        let mut send_error: Option<io::Error> = None;
        let mut ended: Option<io::Result<End>> = None;
        let mut readbuf = vec![0u8; 256 * 1024];
        loop {
            let mut progress = false;
            // Send: hand rustls one chunk whenever everything encrypted so
            // far is on the wire, until the socket is full.
            while send_error.is_none() {
                if self.conn.wants_write() {
                    match self.conn.write_tls(&mut self.sock) {
                        Ok(_) => progress = true,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => send_error = Some(e),
                    }
                    continue;
                }
                if source_done {
                    break;
                }
                if start == end {
                    start = 0;
                    end = source(&mut chunk);
                    if end == 0 {
                        source_done = true;
                        if close_after {
                            self.conn.send_close_notify();
                        }
                        continue;
                    }
                }
                let n = self
                    .conn
                    .writer()
                    .write(&chunk[start..end])
                    .expect("rustls write");
                assert!(n > 0, "rustls took no plaintext with nothing pending");
                start += n;
                progress = true;
            }
            // Receive: drain the plaintext, then the socket.
            while ended.is_none() {
                match self.conn.reader().read(&mut readbuf) {
                    Ok(0) => ended = Some(Ok(End::CloseNotify)),
                    Ok(n) => sink(&readbuf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        ended = Some(Ok(End::Eof))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match self.conn.read_tls(&mut self.sock) {
                            Ok(_) => {
                                progress = true;
                                if let Err(e) = self.conn.process_new_packets() {
                                    ended =
                                        Some(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => ended = Some(Err(e)),
                        }
                    }
                    Err(e) => ended = Some(Err(e)),
                }
            }
            let sending = send_error.is_none() && (!source_done || self.conn.wants_write());
            if !sending {
                if let Some(end) = ended.take() {
                    self.sock.set_nonblocking(false).unwrap();
                    return Duplex { end, send_error };
                }
            }
            if progress {
                continue;
            }
            let mut flags = PollFlags::empty();
            if ended.is_none() {
                flags |= PollFlags::POLLIN;
            }
            if sending && self.conn.wants_write() {
                flags |= PollFlags::POLLOUT;
            }
            assert!(
                wait_fd(self.sock.as_fd(), flags, deadline),
                "duplex transfer did not finish within {DEADLINE:?}"
            );
        }
    }
}

/// What [`TlsClient::duplex_outcome`] saw.
#[derive(Debug)]
pub struct Duplex {
    /// How the server's data ended, or the error that ended it.
    pub end: io::Result<End>,
    /// The error that stopped sending, if any.
    pub send_error: Option<io::Error>,
}

/// A handshake-complete session: the engine spawned on an accepted
/// connection with app pipes on 3/4 (and a notification pipe on 5 if
/// `args` contains `-d5`), and the client after its handshake.
pub struct Session {
    pub engine: Engine,
    pub client: TlsClient,
}

/// Spawns `spawn` on a fresh connection and runs the client's handshake;
/// panics if it fails.
pub fn session(spawn: Spawn, setup: &ClientSetup, server_name: &str) -> Session {
    let (client_sock, server_sock) = tcp_pair();
    let engine = spawn.spawn(Some(server_sock));
    let mut client = TlsClient::new(client_sock, setup, server_name);
    if let Err(e) = client.handshake() {
        let mut engine = engine;
        let exit = engine.kill();
        panic!("client handshake failed: {e}; engine: {exit:?}");
    }
    Session { engine, client }
}

/// Decodes an information string into (name, value) pairs, checking its
/// framing (entries ended by NUL, the whole ended by one more NUL).
pub fn decode_info(bytes: &[u8]) -> Vec<(String, Option<String>)> {
    assert!(
        bytes.ends_with(b"\0\0"),
        "not terminated by \\0\\0: {bytes:?}"
    );
    let body = &bytes[..bytes.len() - 2];
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0)
        .map(|e| {
            let text = std::str::from_utf8(e).expect("UTF-8 entry");
            match text.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (text.to_owned(), None),
            }
        })
        .collect()
}

/// Builds an information string from (name, value) pairs.
pub fn encode_info(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in entries {
        out.extend_from_slice(name.as_bytes());
        if let Some(v) = value {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(0);
    }
    if entries.is_empty() {
        out.push(0);
    }
    out.push(0);
    out
}

/// s6-tlsd-io with `args` followed by the operands `3 4`, application
/// pipes on 3 and 4, and `CERTFILE`/`KEYFILE` set to the standard ECDSA
/// server pair written in `dir`.
pub fn standard(dir: &TempDir, args: &[&str]) -> Spawn {
    let (cert, key) = pki().server_p256.write(dir, "server");
    let mut words: Vec<&str> = args.to_vec();
    words.extend(["3", "4"]);
    Spawn::new(words).app(3, 4).cert(&cert, &key)
}

/// The bytes of the ClientHello a rustls client with `setup` sends.
pub fn client_hello(setup: &ClientSetup, server_name: &str) -> Vec<u8> {
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let mut conn = ClientConnection::new(setup.config(), name).expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write to a Vec");
    }
    out
}

/// The openssl command line tool (OpenSSL 3), for conversions the tests
/// need and for `s_client`.
pub const OPENSSL: &str = "/usr/bin/openssl";

/// Runs `openssl ARGS...` to completion (bounded by [`DEADLINE`]) and
/// returns its stdout; panics if it fails.
pub fn run_openssl<I, S>(args: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_tool(OPENSSL, args)
}

/// Runs `program ARGS...` to completion (bounded by [`DEADLINE`]) and
/// returns its stdout; panics if it fails.
pub fn run_tool<I, S>(program: &str, args: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let child = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let mut guard = ChildGuard(child);
    let stdout = drain(guard.0.stdout.take().expect("stdout"));
    let stderr = drain(guard.0.stderr.take().expect("stderr"));
    // On expiry the child is killed, so both pipes reach EOF.
    let status = guard.wait_within(DEADLINE);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "{program} {args:?}: {status}: {}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// Reads `fd` until what was read contains `needle` (panics on EOF or
/// after [`DEADLINE`]); returns everything read.
pub fn read_until(fd: &OwnedFd, needle: &str) -> String {
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let mut buf = [0; 4096];
        let n = read_some(fd.as_fd(), &mut buf, deadline).unwrap();
        assert!(
            n > 0,
            "EOF before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// One session of `openssl s_client ARGS` (SNI localhost, `ca` trusted,
/// verification errors fatal) with a fresh engine from `spawn`, which
/// must have a notification pipe: a line each way, then s_client's EOF,
/// which must end it with 0. Returns s_client's stdout, the information
/// string and how the engine ended.
pub fn s_client_session(
    spawn: Spawn,
    ca: &Path,
    args: &[&std::ffi::OsStr],
) -> (String, Vec<u8>, Exit) {
    let listener = Listener::new();
    let mut openssl = ChildGuard(
        Command::new(OPENSSL)
            .args(["s_client", "-connect", &listener.addr.to_string()])
            .args([
                "-servername",
                "localhost",
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(ca)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl"),
    );
    let mut stdin = openssl.0.stdin.take().unwrap();
    let stdout: OwnedFd = openssl.0.stdout.take().unwrap().into();
    set_nonblocking(stdout.as_fd());
    let stderr = drain(openssl.0.stderr.take().unwrap());
    let mut engine = spawn.spawn(Some(listener.accept()));
    stdin.write_all(b"ping\n").unwrap();
    assert_eq!(engine.app_read_exact(5), b"ping\n");
    let info = engine.read_notification();
    engine.app_write(b"pong\n").unwrap();
    // Tickets come before the reply: once it is read, s_client has them.
    let mut out = read_until(&stdout, "pong\n");
    drop(stdin);
    assert_eq!(engine.app_read_to_eof(), b"");
    engine.close_app_in();
    let exit = engine.wait();
    let status = openssl.wait_within(DEADLINE);
    out.push_str(&String::from_utf8_lossy(&read_to_eof(stdout.as_fd())));
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(status.success(), "openssl: {status}: {stderr}\n{out}");
    (out, info, exit)
}

/// Reads `r` to its end in a thread.
pub fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}
