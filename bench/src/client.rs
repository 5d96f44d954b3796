//! The bench client: a TLS client on rustls (SNI set, no certificate
//! verification, resumption only when asked for) or a plain TCP client,
//! speaking the bench app's protocol, with large buffers on the socket.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};
use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name the client sends in SNI.
pub const SNI: &str = "bench.example";
const BIG: usize = 256 * 1024;

/// How the session gets to its commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Banner, `STARTTLS`, `220`, then the TLS handshake (s6-ucspitlsd).
    StartTls,
    /// Banner, `STARTTLS`, `220`, then cleartext (the plain pipeline).
    Plain,
    /// TLS handshake first, then the banner (s6-tlsd, stunnel4).
    Immediate,
    /// The banner at once, in cleartext: a TLS client in front of us
    /// (s6-tlsc-io, stunnel4 `client = yes`) talks TLS to an immediate
    /// server.
    Cleartext,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "starttls" => Some(Mode::StartTls),
            "plain" => Some(Mode::Plain),
            "immediate" => Some(Mode::Immediate),
            "cleartext" => Some(Mode::Cleartext),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client configuration: rustls's defaults (TLS 1.3 and 1.2, its
/// cipher suite and key exchange order), no verification, no resumption.
pub fn client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.enable_sni = true;
    Arc::new(config)
}

/// The same, with rustls's in-memory session store: every connection
/// made with it offers a ticket from an earlier one when it has one.
pub fn resuming_client_config() -> Arc<ClientConfig> {
    let mut config = (*client_config()).clone();
    config.resumption = Resumption::in_memory_sessions(1024);
    Arc::new(config)
}

/// What was negotiated, for the report.
#[derive(Clone, Debug, Default)]
pub struct Negotiated {
    pub protocol: String,
    pub suite: String,
    pub group: String,
}

/// One connection to the bench app.
pub struct Conn {
    sock: TcpStream,
    tls: Option<ClientConnection>,
    /// Bytes read from the socket that rustls has not taken yet.
    net: Box<[u8]>,
    net_start: usize,
    net_end: usize,
    net_eof: bool,
    /// Cleartext received and not consumed yet (lines).
    text: Vec<u8>,
    /// TLS bytes written to and read from the socket so far.
    tls_out: u64,
    tls_in: u64,
    /// Both directions' TLS bytes when the client's handshake was done.
    handshake_bytes: u64,
    /// A TLS client front serves us: it ends the session when we end
    /// ours, so QUIT is followed by our half-close.
    front: bool,
}

fn other(msg: impl ToString) -> io::Error {
    io::Error::other(msg.to_string())
}

impl Conn {
    fn new(sock: TcpStream, mode: Mode) -> Conn {
        Conn {
            sock,
            tls: None,
            net: vec![0; BIG].into_boxed_slice(),
            net_start: 0,
            net_end: 0,
            net_eof: false,
            text: Vec::with_capacity(256),
            tls_out: 0,
            tls_in: 0,
            handshake_bytes: 0,
            front: mode == Mode::Cleartext,
        }
    }

    /// Connects and brings the session to the command phase: banner and
    /// STARTTLS and handshake as the mode says.
    pub fn open(addr: SocketAddr, mode: Mode, config: &Arc<ClientConfig>) -> io::Result<Conn> {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(Duration::from_secs(30)))?;
        sock.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut conn = Conn::new(sock, mode);
        if mode == Mode::Immediate {
            conn.start_tls(config)?;
        }
        if matches!(mode, Mode::Immediate | Mode::Cleartext) {
            conn.expect_line("220")?;
            return Ok(conn);
        }
        conn.expect_line("220")?;
        conn.write_all(b"STARTTLS\r\n")?;
        conn.expect_line("220")?;
        if mode == Mode::StartTls {
            conn.start_tls(config)?;
        }
        Ok(conn)
    }

    fn start_tls(&mut self, config: &Arc<ClientConfig>) -> io::Result<()> {
        let name = ServerName::try_from(SNI).expect("valid name");
        let mut tls = ClientConnection::new(config.clone(), name).map_err(other)?;
        tls.set_buffer_limit(None);
        self.tls = Some(tls);
        self.handshake()?;
        self.handshake_bytes = self.tls_out + self.tls_in;
        Ok(())
    }

    /// The TLS bytes both sides had sent when the client's handshake was
    /// done (under TLS 1.3 the server's tickets come after).
    pub fn handshake_bytes(&self) -> u64 {
        self.handshake_bytes
    }

    /// Did the server resume the session from a ticket?
    pub fn resumed(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.handshake_kind() == Some(HandshakeKind::Resumed))
    }

    fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.flush_tls()?;
            let tls = self.tls.as_ref().expect("tls");
            if !tls.is_handshaking() {
                return Ok(());
            }
            if !self.feed()? {
                return Err(other("server closed the connection during the handshake"));
            }
        }
    }

    pub fn negotiated(&self) -> Negotiated {
        let Some(tls) = self.tls.as_ref() else {
            return Negotiated {
                protocol: "plain".into(),
                ..Default::default()
            };
        };
        Negotiated {
            protocol: tls
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            suite: tls
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            group: tls
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
                .unwrap_or_default(),
        }
    }

    /// Sends everything rustls has queued.
    fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        while tls.wants_write() {
            self.tls_out += tls.write_tls(&mut self.sock)? as u64;
        }
        Ok(())
    }

    /// Reads the socket (if rustls has taken everything we hold) and feeds
    /// rustls. False at EOF.
    fn feed(&mut self) -> io::Result<bool> {
        if self.net_start == self.net_end {
            if self.net_eof {
                return Ok(false);
            }
            let n = self.sock.read(&mut self.net)?;
            self.net_start = 0;
            self.net_end = n;
            if n == 0 {
                self.net_eof = true;
                let tls = self.tls.as_mut().expect("tls");
                let _ = tls.read_tls(&mut io::empty());
                tls.process_new_packets().map_err(other)?;
                return Ok(false);
            }
        }
        let tls = self.tls.as_mut().expect("tls");
        let mut slice = &self.net[self.net_start..self.net_end];
        let n = tls.read_tls(&mut slice)?;
        self.net_start += n;
        self.tls_in += n as u64;
        tls.process_new_packets().map_err(other)?;
        Ok(true)
    }

    /// Calls `f` on the next cleartext bytes available (blocking), and
    /// consumes as many as it returns. Returns 0 at the end of the stream.
    fn with_cleartext(&mut self, f: &mut dyn FnMut(&[u8]) -> usize) -> io::Result<usize> {
        if !self.text.is_empty() {
            let n = f(&self.text);
            self.text.drain(..n);
            return Ok(n);
        }
        if self.tls.is_none() {
            if self.net_start == self.net_end {
                if self.net_eof {
                    return Ok(0);
                }
                let n = self.sock.read(&mut self.net)?;
                self.net_start = 0;
                self.net_end = n;
                if n == 0 {
                    self.net_eof = true;
                    return Ok(0);
                }
            }
            let n = f(&self.net[self.net_start..self.net_end]);
            self.net_start += n;
            return Ok(n);
        }
        loop {
            let tls = self.tls.as_mut().expect("tls");
            let mut reader = tls.reader();
            match reader.fill_buf() {
                Ok([]) => return Ok(0),
                Ok(chunk) => {
                    let n = f(chunk);
                    reader.consume(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The server half-closed without close_notify (s6-tlsd-io -s).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if !self.feed()? {
                let tls = self.tls.as_mut().expect("tls");
                match tls.reader().fill_buf() {
                    Ok(chunk) if !chunk.is_empty() => continue,
                    _ => return Ok(0),
                }
            }
            self.flush_tls()?;
        }
    }

    /// Reads one line (without its CR LF).
    pub fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        loop {
            let mut done = false;
            let n = self.with_cleartext(&mut |chunk| {
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&chunk[..i]);
                        done = true;
                        i + 1
                    }
                    None => {
                        line.extend_from_slice(chunk);
                        chunk.len()
                    }
                }
            })?;
            if done {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn expect_line(&mut self, prefix: &str) -> io::Result<String> {
        let line = self.read_line()?;
        if !line.starts_with(prefix) {
            return Err(other(format!("expected {prefix}, got {line:?}")));
        }
        Ok(line)
    }

    /// Reads and discards exactly `n` bytes of cleartext.
    pub fn discard(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let want = n;
            let got = self.with_cleartext(&mut |chunk| chunk.len().min(want as usize))?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            n -= got as u64;
        }
        Ok(())
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self.tls.as_mut() {
            None => self.sock.write_all(data),
            Some(tls) => {
                tls.writer().write_all(data)?;
                self.flush_tls()
            }
        }
    }

    /// One command, one reply line.
    pub fn command(&mut self, line: &str) -> io::Result<String> {
        self.write_all(format!("{line}\r\n").as_bytes())?;
        self.read_line()
    }

    /// `SEND n`: the server sends n bytes; returns the elapsed time.
    pub fn down(&mut self, n: u64) -> io::Result<Duration> {
        let t = Instant::now();
        self.write_all(format!("SEND {n}\r\n").as_bytes())?;
        self.discard(n)?;
        Ok(t.elapsed())
    }

    /// `RECV n`: we send n bytes, the server answers `OK n`.
    pub fn up(&mut self, n: u64) -> io::Result<Duration> {
        let payload = vec![b'y'; BIG];
        let t = Instant::now();
        self.write_all(format!("RECV {n}\r\n").as_bytes())?;
        let mut left = n;
        while left > 0 {
            let k = left.min(BIG as u64) as usize;
            self.write_all(&payload[..k])?;
            left -= k as u64;
        }
        let reply = self.read_line()?;
        let elapsed = t.elapsed();
        if reply != format!("OK {n}") {
            return Err(other(format!("RECV answered {reply:?}")));
        }
        Ok(elapsed)
    }

    /// `count` PING/PONG round trips; each one's duration.
    pub fn ping(&mut self, count: usize) -> io::Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            self.write_all(b"PING\r\n")?;
            let reply = self.read_line()?;
            times.push(t.elapsed());
            if reply != "PONG" {
                return Err(other(format!("PING answered {reply:?}")));
            }
        }
        Ok(times)
    }

    /// `QUIT`, then read to the end of the stream, answer a close_notify
    /// and close.
    pub fn quit(mut self) -> io::Result<()> {
        let reply = self.command("QUIT")?;
        if !reply.starts_with("221") {
            return Err(other(format!("QUIT answered {reply:?}")));
        }
        if self.front {
            self.sock.shutdown(std::net::Shutdown::Write)?;
        }
        let mut extra = 0usize;
        loop {
            let n = self.with_cleartext(&mut |chunk| chunk.len())?;
            if n == 0 {
                break;
            }
            extra += n;
        }
        if extra > 0 {
            return Err(other(format!("{extra} bytes after 221")));
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self.flush_tls();
        }
        Ok(())
    }
}

/// One full session: connect, banner, STARTTLS, handshake, INFO, QUIT,
/// close. Returns whether the handshake resumed a session.
pub fn session(addr: SocketAddr, mode: Mode, config: &Arc<ClientConfig>) -> io::Result<bool> {
    let mut conn = Conn::open(addr, mode, config)?;
    let info = conn.command("INFO")?;
    if !info.starts_with("250") {
        return Err(other(format!("INFO answered {info:?}")));
    }
    let resumed = conn.resumed();
    conn.quit()?;
    Ok(resumed)
}

/// One full session, with the time each phase took (µs): connect,
/// banner, STARTTLS answer, handshake, INFO, QUIT answer, end of stream.
pub fn session_phases(
    addr: SocketAddr,
    mode: Mode,
    config: &Arc<ClientConfig>,
) -> io::Result<Vec<(&'static str, f64)>> {
    let mut phases = Vec::new();
    let mut t = Instant::now();
    let mut lap = |name: &'static str, phases: &mut Vec<(&'static str, f64)>| {
        phases.push((name, t.elapsed().as_secs_f64() * 1e6));
        t = Instant::now();
    };
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    lap("connect", &mut phases);
    let mut conn = Conn::new(sock, mode);
    if mode == Mode::Immediate {
        conn.start_tls(config)?;
        lap("handshake", &mut phases);
        conn.expect_line("220")?;
        lap("banner", &mut phases);
    } else if mode == Mode::Cleartext {
        conn.expect_line("220")?;
        lap("banner", &mut phases);
    } else {
        conn.expect_line("220")?;
        lap("banner", &mut phases);
        conn.write_all(b"STARTTLS\r\n")?;
        conn.expect_line("220")?;
        lap("starttls", &mut phases);
        if mode == Mode::StartTls {
            conn.start_tls(config)?;
            lap("handshake", &mut phases);
        }
    }
    conn.command("INFO")?;
    lap("info", &mut phases);
    conn.write_all(b"QUIT\r\n")?;
    conn.expect_line("221")?;
    lap("quit", &mut phases);
    while conn.with_cleartext(&mut |c| c.len())? > 0 {}
    lap("eof", &mut phases);
    Ok(phases)
}

/// Result of a sessions run.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionsResult {
    pub sessions: u64,
    /// Of `sessions`, those the server resumed from a ticket.
    pub resumed: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl SessionsResult {
    pub fn per_second(&self) -> f64 {
        self.sessions as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sessions from `concurrency` threads, each with its own configuration
/// from `config` (so its own session store, if it keeps one), until
/// `duration` has passed (sessions under way then are finished and
/// counted). Stops early after too many errors.
pub fn sessions(
    addr: SocketAddr,
    mode: Mode,
    config: fn() -> Arc<ClientConfig>,
    concurrency: usize,
    duration: Duration,
) -> SessionsResult {
    let start = Instant::now();
    let deadline = start + duration;
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            // One configuration per thread, as each client machine has its
            // own session store.
            let config = config();
            let first_error = first_error.clone();
            std::thread::spawn(move || {
                let (mut ok, mut resumed, mut errors) = (0u64, 0u64, 0u64);
                while Instant::now() < deadline && errors < 100 {
                    match session(addr, mode, &config) {
                        Ok(r) => {
                            ok += 1;
                            resumed += u64::from(r);
                        }
                        Err(e) => {
                            errors += 1;
                            first_error
                                .lock()
                                .unwrap()
                                .get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (ok, resumed, errors)
            })
        })
        .collect();
    let mut result = SessionsResult::default();
    for t in threads {
        let (ok, resumed, errors) = t.join().unwrap_or((0, 0, 1));
        result.sessions += ok;
        result.resumed += resumed;
        result.errors += errors;
    }
    result.elapsed = start.elapsed();
    if let Some(e) = first_error.lock().unwrap().take() {
        eprintln!(
            "bench: warning: {} failed sessions ({mode:?} on {addr}), first: {e}",
            result.errors
        );
    }
    result
}
