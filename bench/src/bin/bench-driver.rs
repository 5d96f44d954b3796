//! bench-driver: runs every row of the benchmark against real super-servers
//! on 127.0.0.1 and prints one table. Normally run through `bench/run`,
//! which builds everything and makes the throwaway certificates:
//!
//!     bench-driver --bin DIR --bench-bin DIR --tmp DIR [--quick]
//!
//! `--bin`: where s6-ucspitlsd, s6-tlsd-io, s6-tlsd and s6-tlsc-io are
//! (target/release);
//! `--bench-bin`: where bench-app is; `--tmp`: a scratch directory holding
//! ec.crt/ec.key, rsa.crt/rsa.key and ticket.key (80 bytes, mode 0600),
//! where logs are written.
//!
//! The servers run pinned to CPU 0, the client (this process) to CPU 1.
//! Every row is measured over interleaved rounds: round 1 of every row,
//! then round 2, and so on.

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use s6_tls_bench::client::{self, Conn, Mode, Negotiated};
use s6_tls_bench::{stats, sys};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Settings {
    quick: bool,
    rounds: usize,
    bytes: u64,
    pings: usize,
    session_time: Duration,
    startup_runs: usize,
    openssl_seconds: u32,
    bin: PathBuf,
    bench_bin: PathBuf,
    tmp: PathBuf,
    server_cpu: usize,
    client_cpu: usize,
}

fn usage() -> ! {
    eprintln!("usage: bench-driver --bin DIR --bench-bin DIR --tmp DIR [--quick]");
    std::process::exit(100);
}

fn settings() -> Settings {
    let mut args = std::env::args().skip(1);
    let (mut bin, mut bench_bin, mut tmp, mut quick) = (None, None, None, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--bin" => bin = args.next().map(PathBuf::from),
            "--bench-bin" => bench_bin = args.next().map(PathBuf::from),
            "--tmp" => tmp = args.next().map(PathBuf::from),
            _ => usage(),
        }
    }
    let (Some(bin), Some(bench_bin), Some(tmp)) = (bin, bench_bin, tmp) else {
        usage()
    };
    let two = sys::online_cpus() >= 2;
    Settings {
        quick,
        rounds: if quick { 1 } else { 3 },
        bytes: if quick { 32 << 20 } else { 512 << 20 },
        pings: if quick { 200 } else { 2000 },
        session_time: Duration::from_secs(if quick { 1 } else { 10 }),
        startup_runs: if quick { 10 } else { 100 },
        openssl_seconds: if quick { 1 } else { 2 },
        bin,
        bench_bin,
        tmp,
        server_cpu: 0,
        client_cpu: if two { 1 } else { 0 },
    }
}

/// A tcpserver on 127.0.0.1, pinned to the server CPU, killed on drop.
struct Server {
    name: &'static str,
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(
        s: &Settings,
        name: &'static str,
        prog: &[OsString],
        env: &[(&str, PathBuf)],
    ) -> io::Result<Server> {
        let port = sys::free_port()?;
        let log = s.tmp.join(format!("{name}.log"));
        let mut cmd = Command::new("tcpserver");
        // -c: room above 16 concurrent sessions; -R -H -l0: no ident or DNS.
        cmd.args(["-c", "64", "-b", "64", "-R", "-H", "-l", "0", "127.0.0.1"])
            .arg(port.to_string())
            .args(prog)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        for var in [
            "CERTFILE",
            "KEYFILE",
            "CADIR",
            "CAFILE",
            "TLS_UID",
            "TLS_GID",
            "TICKETKEYFILE",
            "TICKETLIFETIME",
            "OCSPFILE",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let cpu = s.server_cpu;
        // SAFETY: sched_setaffinity is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || sys::pin_to(cpu));
        }
        let child = cmd.spawn()?;
        let server = Server {
            name,
            port,
            child,
            log,
        };
        if !sys::wait_until(Duration::from_secs(5), || sys::listening(port)) {
            return Err(io::Error::other(format!("{name}: tcpserver is not listening")));
        }
        Ok(server)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until every session process has ended and been reaped.
    fn wait_idle(&self) -> bool {
        sys::wait_until(Duration::from_secs(20), || sys::children(self.pid()).is_empty())
    }

    /// Process ids of the connection's processes whose comm is `comm`.
    fn find(&self, comm: &str) -> Vec<i32> {
        sys::descendants(self.pid())
            .into_iter()
            .filter(|&p| sys::comm(p).as_deref() == Some(comm))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Servers {
    tls_ec: Server,
    tls_rsa: Server,
    /// The same two with TICKETKEYFILE: sessions can resume.
    tickets_ec: Server,
    tickets_rsa: Server,
    plain: Server,
    tlsd: Server,
    stunnel: Server,
    /// Client fronts: each connection runs a TLS client to `tlsd`.
    tlsc: Server,
    stunnel_client: Server,
}

fn os(p: &Path) -> OsString {
    p.as_os_str().to_owned()
}

fn start_servers(s: &Settings) -> io::Result<Servers> {
    let ucspitlsd = os(&s.bin.join("s6-ucspitlsd"));
    let tlsd = os(&s.bin.join("s6-tlsd"));
    let app = os(&s.bench_bin.join("bench-app"));
    let ec = [
        ("CERTFILE", s.tmp.join("ec.crt")),
        ("KEYFILE", s.tmp.join("ec.key")),
    ];
    let rsa = [
        ("CERTFILE", s.tmp.join("rsa.crt")),
        ("KEYFILE", s.tmp.join("rsa.key")),
    ];
    let with_tickets = |pair: &[(&'static str, PathBuf); 2]| {
        let mut env = pair.to_vec();
        env.push(("TICKETKEYFILE", s.tmp.join("ticket.key")));
        env
    };
    let chain = |wrapper: &OsString, mode: &str| {
        vec![wrapper.clone(), "--".into(), app.clone(), mode.into()]
    };
    let conf = s.tmp.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "; stunnel4 in inetd mode (no accept, no service section): the\n\
             ; connection is on fds 0/1. Defaults otherwise, but TIMEOUTclose.\n\
             pid =\nsyslog = no\ndebug = 3\noutput = {log}\n\
             cert = {crt}\nkey = {key}\n\
             exec = {app}\nexecArgs = bench-app immediate\n\
             TIMEOUTclose = 0\n",
            log = s.tmp.join("stunnel-output.log").display(),
            crt = s.tmp.join("ec.crt").display(),
            key = s.tmp.join("ec.key").display(),
            app = s.bench_bin.join("bench-app").display(),
        ),
    )?;
    let tlsd = Server::start(s, "s6-tlsd", &chain(&tlsd, "immediate"), &ec)?;
    // The client fronts: the bench client's cleartext connection on fds
    // 0/1, a TLS connection to s6-tlsd made per session, the server's
    // certificate verified against itself (it is CA:FALSE).
    let tlsd_port = tlsd.port.to_string();
    let tlsc = [
        "tcpclient".into(),
        "-RHl0".into(),
        "127.0.0.1".into(),
        tlsd_port.clone().into(),
        os(&s.bin.join("s6-tlsc-io")),
        "-k".into(),
        client::SNI.into(),
        "6".into(),
        "7".into(),
    ];
    let client_conf = s.tmp.join("stunnel-client.conf");
    std::fs::write(
        &client_conf,
        format!(
            "; stunnel4 as a TLS client in inetd mode: the cleartext side on\n\
             ; fds 0/1, a TLS connection to s6-tlsd, verified as s6-tlsc-io does.\n\
             pid =\nsyslog = no\ndebug = 3\noutput = {log}\n\
             client = yes\nconnect = 127.0.0.1:{tlsd_port}\nsni = {sni}\n\
             verifyChain = yes\nCAfile = {crt}\ncheckHost = {sni}\n\
             TIMEOUTclose = 0\n",
            log = s.tmp.join("stunnel-client-output.log").display(),
            crt = s.tmp.join("ec.crt").display(),
            sni = client::SNI,
        ),
    )?;
    let ca = [("CAFILE", s.tmp.join("ec.crt"))];
    Ok(Servers {
        tls_ec: Server::start(s, "s6-ucspitlsd-ecdsa", &chain(&ucspitlsd, "starttls"), &ec)?,
        tls_rsa: Server::start(s, "s6-ucspitlsd-rsa", &chain(&ucspitlsd, "starttls"), &rsa)?,
        tickets_ec: Server::start(
            s,
            "s6-ucspitlsd-ecdsa-tickets",
            &chain(&ucspitlsd, "starttls"),
            &with_tickets(&ec),
        )?,
        tickets_rsa: Server::start(
            s,
            "s6-ucspitlsd-rsa-tickets",
            &chain(&ucspitlsd, "starttls"),
            &with_tickets(&rsa),
        )?,
        plain: Server::start(s, "plain", &chain(&ucspitlsd, "plain"), &ec)?,
        stunnel: Server::start(
            s,
            "stunnel4",
            &["/usr/bin/stunnel4".into(), os(&conf)],
            &[],
        )?,
        tlsc: Server::start(s, "s6-tlsc-io", &tlsc, &ca)?,
        stunnel_client: Server::start(
            s,
            "stunnel4-client",
            &["/usr/bin/stunnel4".into(), os(&client_conf)],
            &[],
        )?,
        tlsd,
    })
}

/// Everything measured, by row key, one value per round (or per run).
#[derive(Default)]
struct Results {
    values: BTreeMap<&'static str, Vec<f64>>,
    negotiated: BTreeMap<&'static str, Negotiated>,
    errors: Vec<String>,
}

impl Results {
    fn push(&mut self, key: &'static str, v: f64) {
        eprintln!("bench:   {key:<28} {v:.2}");
        self.values.entry(key).or_default().push(v);
    }

    fn extend(&mut self, key: &'static str, vs: &[f64]) {
        eprintln!(
            "bench:   {key:<28} median {:.2} of {} runs",
            stats::median(vs),
            vs.len()
        );
        self.values.entry(key).or_default().extend_from_slice(vs);
    }

    fn fail(&mut self, what: &str, e: io::Error) {
        eprintln!("bench: error: {what}: {e}");
        self.errors.push(format!("{what}: {e}"));
    }
}

#[derive(Clone, Copy)]
enum Dir {
    Down,
    Up,
}

/// One transfer: MB/s, the CPU the session's server processes (app,
/// engine, stunnel) used for it and the CPU the client used, in ms per MiB.
fn transfer(
    server: &Server,
    mode: Mode,
    cfg: &Arc<ClientConfig>,
    dir: Dir,
    bytes: u64,
) -> io::Result<(f64, f64, f64, Negotiated)> {
    if !server.wait_idle() {
        return Err(io::Error::other("sessions still running"));
    }
    let mut conn = Conn::open(server.addr(), mode, cfg)?;
    let cpu0 = sys::descendants_cpu_seconds(server.pid());
    let client0 = sys::thread_cpu_seconds();
    let t = match dir {
        Dir::Down => conn.down(bytes)?,
        Dir::Up => conn.up(bytes)?,
    };
    let client1 = sys::thread_cpu_seconds();
    let cpu1 = sys::descendants_cpu_seconds(server.pid());
    let negotiated = conn.negotiated();
    conn.quit()?;
    let mib = bytes as f64 / (1 << 20) as f64;
    Ok((
        bytes as f64 / t.as_secs_f64() / 1e6,
        (cpu1 - cpu0) * 1e3 / mib,
        (client1 - client0) * 1e3 / mib,
        negotiated,
    ))
}

fn ping(server: &Server, mode: Mode, cfg: &Arc<ClientConfig>, n: usize) -> io::Result<(f64, f64)> {
    let mut conn = Conn::open(server.addr(), mode, cfg)?;
    // A few round trips first, so that the first samples are not the
    // connection's start.
    conn.ping(20)?;
    let times: Vec<f64> = conn
        .ping(n)?
        .iter()
        .map(|d| d.as_secs_f64() * 1e6)
        .collect();
    conn.quit()?;
    Ok((stats::median(&times), stats::percentile(&times, 99.0)))
}

/// Sessions per second, the server's CPU milliseconds per session
/// (super-server + everything it reaped, user + system), and the fraction
/// of sessions resumed from a ticket.
fn sessions(
    server: &Server,
    mode: Mode,
    cfg: fn() -> Arc<ClientConfig>,
    concurrency: usize,
    time: Duration,
) -> io::Result<(f64, f64, f64)> {
    if !server.wait_idle() {
        return Err(io::Error::other("sessions still running before the run"));
    }
    let before = sys::cpu_seconds_with_children(server.pid())
        .ok_or_else(|| io::Error::other("no /proc/PID/stat"))?;
    let r = client::sessions(server.addr(), mode, cfg, concurrency, time);
    if !server.wait_idle() {
        return Err(io::Error::other("sessions still running 20 s after the run"));
    }
    let after = sys::cpu_seconds_with_children(server.pid())
        .ok_or_else(|| io::Error::other("no /proc/PID/stat"))?;
    if r.sessions == 0 {
        return Err(io::Error::other("no session completed"));
    }
    if r.errors > 0 {
        return Err(io::Error::other(format!("{} sessions failed", r.errors)));
    }
    Ok((
        r.per_second(),
        (after - before) * 1000.0 / r.sessions as f64,
        r.resumed as f64 / r.sessions as f64,
    ))
}

/// The TLS bytes of one handshake (both directions, until the client's
/// handshake is done): a full one with `full`, or a resumed one, after a
/// first session has given the client a ticket.
fn handshake_bytes(server: &Server, full: &Arc<ClientConfig>, resumed: bool) -> io::Result<f64> {
    let cfg = if resumed {
        let cfg = client::resuming_client_config();
        client::session(server.addr(), Mode::StartTls, &cfg)?;
        cfg
    } else {
        full.clone()
    };
    let conn = Conn::open(server.addr(), Mode::StartTls, &cfg)?;
    if conn.resumed() != resumed {
        return Err(io::Error::other(format!(
            "{}: the session was {}resumed",
            server.name,
            if resumed { "not " } else { "" }
        )));
    }
    let bytes = conn.handshake_bytes() as f64;
    conn.quit()?;
    Ok(bytes)
}

/// Memory of one process of a session, KiB.
#[derive(Clone, Copy)]
struct Mem {
    rss: f64,
    private: f64,
    dirty: f64,
}

fn mem_of(pid: i32) -> io::Result<Mem> {
    let rss = sys::rss_kib(pid).ok_or_else(|| io::Error::other("no VmRSS"))?;
    let private = sys::private_kib(pid).ok_or_else(|| io::Error::other("no smaps_rollup"))?;
    let dirty = sys::private_dirty_kib(pid).ok_or_else(|| io::Error::other("no smaps_rollup"))?;
    Ok(Mem {
        rss: rss as f64,
        private: private as f64,
        dirty: dirty as f64,
    })
}

fn open_idle(server: &Server, mode: Mode, cfg: &Arc<ClientConfig>) -> io::Result<Conn> {
    let mut conn = Conn::open(server.addr(), mode, cfg)?;
    let info = conn.command("INFO")?;
    if !info.starts_with("250") {
        return Err(io::Error::other(format!("INFO answered {info:?}")));
    }
    std::thread::sleep(Duration::from_millis(200));
    Ok(conn)
}

/// The memory of the session process named `comm` (s6-tlsd-io, stunnel4)
/// while one session is held idle after the handshake; then while a second
/// one is held too, the second one's (what one more session costs: the
/// program's text is then shared, not private).
fn memory(
    server: &Server,
    mode: Mode,
    cfg: &Arc<ClientConfig>,
    comm: &str,
) -> io::Result<(Mem, Mem)> {
    if !server.wait_idle() {
        return Err(io::Error::other("sessions still running"));
    }
    let first = open_idle(server, mode, cfg)?;
    let pids = server.find(comm);
    let [pid] = pids[..] else {
        return Err(io::Error::other(format!("{} {comm} processes", pids.len())));
    };
    let alone = mem_of(pid)?;
    let second = open_idle(server, mode, cfg)?;
    let pids: Vec<i32> = server.find(comm).into_iter().filter(|&p| p != pid).collect();
    let [pid2] = pids[..] else {
        return Err(io::Error::other(format!("{} new {comm} processes", pids.len())));
    };
    let next = mem_of(pid2)?;
    first.quit()?;
    second.quit()?;
    Ok((alone, next))
}

/// A close-on-exec pipe whose ends are numbered 10 or more, out of the
/// way of the descriptors a child is given.
fn high_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just opened both; we own them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((high(r)?, high(w)?))
}

fn high(fd: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new one we own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Spawns `cmd` pinned to `cpu`, returning the child and CLOCK_MONOTONIC
/// taken in the child just before its execve. `moves` are (from, to)
/// descriptor renumberings done in the child first.
fn spawn_timed(
    cmd: &mut Command,
    cpu: usize,
    moves: Vec<(RawFd, RawFd)>,
) -> io::Result<(Child, u64)> {
    let (r, w) = high_pipe()?;
    let wfd = w.as_raw_fd();
    // SAFETY: only async-signal-safe calls (dup2, sched_setaffinity,
    // clock_gettime, write) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &moves {
                if libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            sys::pin_to(cpu)?;
            let t = sys::monotonic_ns().to_ne_bytes();
            libc::write(wfd, t.as_ptr().cast(), t.len());
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(w);
    let mut buf = [0u8; 8];
    std::fs::File::from(r).read_exact(&mut buf)?;
    Ok((child, u64::from_ne_bytes(buf)))
}

/// Exec of `cmd` (a chain ending in `bench-app probe`) to the app's main, µs.
fn exec_to_app(mut cmd: Command, cpu: usize) -> io::Result<f64> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let (mut child, t0) = spawn_timed(&mut cmd, cpu, Vec::new())?;
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)?;
    child.wait()?;
    let t1: u64 = out
        .trim()
        .parse()
        .map_err(|_| io::Error::other(format!("probe printed {out:?}")))?;
    Ok(t1.saturating_sub(t0) as f64 / 1e3)
}

/// s6-tlsd-io from exec to ready for the ClientHello, µs. With `prequeue`,
/// the ClientHello is already queued on its socket, and the time is to the
/// first byte of its answer (start-up + first flight); without, the time
/// is to its first sleep in poll waiting for the ClientHello, watched
/// through /proc/PID/stat from the other CPU.
fn tlsdio_start(s: &Settings, cfg: &Arc<ClientConfig>, prequeue: bool) -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    client.set_nodelay(true)?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (sock, _) = listener.accept()?;
    if prequeue {
        let name = ServerName::try_from(client::SNI).expect("valid name");
        let mut tls = ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
        while tls.wants_write() {
            tls.write_tls(&mut client)?;
        }
    }
    let (fdr, app_w) = high_pipe()?;
    let (app_r, fdw) = high_pipe()?;
    let mut cmd = Command::new(s.bin.join("s6-tlsd-io"));
    cmd.args(["--", "3", "4"])
        .env("CERTFILE", s.tmp.join("ec.crt"))
        .env("KEYFILE", s.tmp.join("ec.key"))
        .stdin(Stdio::from(OwnedFd::from(sock.try_clone()?)))
        .stdout(Stdio::from(OwnedFd::from(sock)))
        .stderr(Stdio::null());
    let moves = vec![(fdr.as_raw_fd(), 3), (fdw.as_raw_fd(), 4)];
    let (mut child, t0) = spawn_timed(&mut cmd, s.server_cpu, moves)?;
    let pid = child.id() as i32;
    let result = if prequeue {
        let mut buf = [0u8; 16384];
        match client.read(&mut buf) {
            Ok(n) if n > 0 => Ok(sys::monotonic_ns()),
            Ok(_) => Err(io::Error::other("s6-tlsd-io closed the connection")),
            Err(e) => Err(e),
        }
    } else {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((comm, state)) = sys::comm_state(pid) {
                if comm == "s6-tlsd-io" && state == 'S' {
                    break Ok(sys::monotonic_ns());
                }
                if state == 'Z' {
                    break Err(io::Error::other("s6-tlsd-io exited"));
                }
            }
            if Instant::now() > deadline {
                break Err(io::Error::other("s6-tlsd-io never waited"));
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    drop((app_w, app_r, client));
    Ok(result?.saturating_sub(t0) as f64 / 1e3)
}

/// What `openssl speed -seconds N ARGS` prints, run on `cpu`.
fn openssl_speed_output(args: &[&str], seconds: u32, cpu: usize) -> io::Result<String> {
    let mut cmd = Command::new("openssl");
    // Options before the algorithm names, which end them.
    cmd.args(["speed", "-seconds", &seconds.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: sched_setaffinity is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || sys::pin_to(cpu));
    }
    Ok(String::from_utf8_lossy(&cmd.output()?.stdout).into_owned())
}

fn openssl_speed(cipher: &str, seconds: u32, cpu: usize) -> io::Result<f64> {
    let text = openssl_speed_output(&["-evp", cipher, "-bytes", "16384"], seconds, cpu)?;
    let want = cipher.to_ascii_uppercase();
    text.lines()
        .filter(|l| l.starts_with(&want))
        .filter_map(|l| l.split_ascii_whitespace().last())
        .filter_map(|w| w.strip_suffix('k'))
        .filter_map(|w| w.parse::<f64>().ok())
        .next_back()
        .map(|k| k * 1000.0 / 1e6)
        .ok_or_else(|| io::Error::other(format!("cannot parse openssl speed output: {text:?}")))
}

/// One public-key operation of `openssl speed ALG` on one core, µs: the
/// first rate column of the line naming it (sign/s, or op/s for ECDH).
fn openssl_speed_op(alg: &str, line: &str, seconds: u32, cpu: usize) -> io::Result<f64> {
    let text = openssl_speed_output(&[alg], seconds, cpu)?;
    // "rsa 2048 bits 0.000998s 0.000030s 1002.0 33112.5": times, then rates.
    text.lines()
        .filter(|l| l.contains(line))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_ascii_whitespace().collect();
            let is_time = |w: &&str| w.strip_suffix('s').is_some_and(|t| t.parse::<f64>().is_ok());
            let last_time = words.iter().rposition(is_time)?;
            words.get(last_time + 1)?.parse::<f64>().ok()
        })
        .next_back()
        // A run openssl timed as 0 s of CPU has an "inf" rate.
        .filter(|&rate| rate.is_finite() && rate > 0.0)
        .map(|rate| 1e6 / rate)
        .ok_or_else(|| io::Error::other(format!("cannot parse openssl speed {alg} output: {text:?}")))
}

fn round(s: &Settings, sv: &Servers, cfg: &Arc<ClientConfig>, res: &mut Results) {
    use Mode::*;
    let tls = [
        ("tls", &sv.tls_ec, StartTls),
        ("plain", &sv.plain, Plain),
        ("tlsd", &sv.tlsd, Immediate),
        ("stunnel", &sv.stunnel, Immediate),
        ("tlsc", &sv.tlsc, Cleartext),
        ("stunnelc", &sv.stunnel_client, Cleartext),
    ];
    for (dir, dname) in [(Dir::Down, "down"), (Dir::Up, "up")] {
        for (name, server, mode) in tls {
            let key: &'static str = Box::leak(format!("{dname}.{name}").into_boxed_str());
            match transfer(server, mode, cfg, dir, s.bytes) {
                Ok((mbs, cpu, client_cpu, neg)) => {
                    res.push(key, mbs);
                    res.push(Box::leak(format!("cpu.{key}").into_boxed_str()), cpu);
                    res.push(Box::leak(format!("ccpu.{key}").into_boxed_str()), client_cpu);
                    // Through a client front, our side of the session is
                    // cleartext: nothing to report.
                    if mode != Cleartext {
                        res.negotiated.insert(server.name, neg);
                    }
                }
                Err(e) => res.fail(key, e),
            }
        }
    }
    for (name, server, mode) in [("tls", &sv.tls_ec, StartTls), ("plain", &sv.plain, Plain)] {
        match ping(server, mode, cfg, s.pings) {
            Ok((median, p99)) => {
                res.push(Box::leak(format!("ping.{name}").into_boxed_str()), median);
                res.push(Box::leak(format!("p99.{name}").into_boxed_str()), p99);
            }
            Err(e) => res.fail(&format!("ping {name}"), e),
        }
    }
    // The full sessions' client keeps no tickets; the resumed sessions'
    // client threads each keep theirs.
    let runs: [(&'static str, &Server, Mode, usize, bool); 14] = [
        ("sess2.tls", &sv.tls_ec, StartTls, 2, false),
        ("sess2.plain", &sv.plain, Plain, 2, false),
        ("sess2.rsa", &sv.tls_rsa, StartTls, 2, false),
        ("sess16.tls", &sv.tls_ec, StartTls, 16, false),
        ("sess16.rsa", &sv.tls_rsa, StartTls, 16, false),
        ("sess16.plain", &sv.plain, Plain, 16, false),
        ("sess2.tlsd", &sv.tlsd, Immediate, 2, false),
        ("sess2.stunnel", &sv.stunnel, Immediate, 2, false),
        ("sess2.tls.resumed", &sv.tickets_ec, StartTls, 2, true),
        ("sess2.rsa.resumed", &sv.tickets_rsa, StartTls, 2, true),
        ("sess16.tls.resumed", &sv.tickets_ec, StartTls, 16, true),
        ("sess16.rsa.resumed", &sv.tickets_rsa, StartTls, 16, true),
        ("sess2.tlsc", &sv.tlsc, Cleartext, 2, false),
        ("sess2.stunnelc", &sv.stunnel_client, Cleartext, 2, false),
    ];
    for (key, server, mode, conc, resuming) in runs {
        let run_cfg = if resuming {
            client::resuming_client_config
        } else {
            client::client_config
        };
        match sessions(server, mode, run_cfg, conc, s.session_time) {
            Ok((rate, cpu_ms, resumed)) => {
                res.push(key, rate);
                res.push(Box::leak(format!("cpu.{key}").into_boxed_str()), cpu_ms);
                if resuming {
                    res.push(Box::leak(format!("share.{key}").into_boxed_str()), resumed * 100.0);
                }
            }
            Err(e) => res.fail(key, e),
        }
    }
    for (name, server) in [("tls", &sv.tickets_ec), ("rsa", &sv.tickets_rsa)] {
        for (kind, resumed) in [("full", false), ("resumed", true)] {
            let key: &'static str = Box::leak(format!("hsbytes.{name}.{kind}").into_boxed_str());
            match handshake_bytes(server, cfg, resumed) {
                Ok(bytes) => res.push(key, bytes),
                Err(e) => res.fail(key, e),
            }
        }
    }
    match memory(&sv.tls_ec, StartTls, cfg, "s6-tlsd-io") {
        Ok((alone, next)) => {
            res.push("rss.tlsdio", alone.rss);
            res.push("private.tlsdio", alone.private);
            res.push("dirty.tlsdio", alone.dirty);
            res.push("private2.tlsdio", next.private);
        }
        Err(e) => res.fail("memory s6-tlsd-io", e),
    }
    match memory(&sv.stunnel, Immediate, cfg, "stunnel4") {
        Ok((alone, next)) => {
            res.push("rss.stunnel", alone.rss);
            res.push("private.stunnel", alone.private);
            res.push("dirty.stunnel", alone.dirty);
            res.push("private2.stunnel", next.private);
        }
        Err(e) => res.fail("memory stunnel4", e),
    }
    let app = s.bench_bin.join("bench-app");
    let mut times = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..s.startup_runs {
        let mut chain = Command::new(s.bin.join("s6-ucspitlsd"));
        chain.arg("--").arg(&app).arg("probe");
        match exec_to_app(chain, s.server_cpu) {
            Ok(us) => times.0.push(us),
            Err(e) => res.fail("start-up s6-ucspitlsd", e),
        }
        let mut direct = Command::new(&app);
        direct.arg("probe");
        match exec_to_app(direct, s.server_cpu) {
            Ok(us) => times.1.push(us),
            Err(e) => res.fail("start-up bench-app", e),
        }
        match tlsdio_start(s, cfg, false) {
            Ok(us) => times.2.push(us),
            Err(e) => res.fail("start-up s6-tlsd-io", e),
        }
        match tlsdio_start(s, cfg, true) {
            Ok(us) => times.3.push(us),
            Err(e) => res.fail("start-up s6-tlsd-io (first flight)", e),
        }
    }
    res.extend("start.ucspitlsd", &times.0);
    res.extend("start.app", &times.1);
    res.extend("start.tlsdio", &times.2);
    res.extend("start.flight", &times.3);
    for (key, cipher) in [("aes128", "aes-128-gcm"), ("aes256", "aes-256-gcm")] {
        match openssl_speed(cipher, s.openssl_seconds, s.server_cpu) {
            Ok(mbs) => res.push(key, mbs),
            Err(e) => res.fail(cipher, e),
        }
    }
    let ops = [
        ("rsa.sign", "rsa2048", "rsa 2048 bits"),
        ("ecdsa.sign", "ecdsap256", "ecdsa (nistp256)"),
        ("x25519.op", "ecdhx25519", "(X25519)"),
    ];
    for (key, alg, line) in ops {
        // openssl times its runs in ticks of CPU time: a run it timed as
        // 0 s gets another try.
        let op = || openssl_speed_op(alg, line, s.openssl_seconds, s.server_cpu);
        match op().or_else(|_| op()).or_else(|_| op()) {
            Ok(us) => res.push(key, us),
            Err(e) => res.fail(alg, e),
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    /// Informative row, no target.
    Info,
    /// value / reference ≥ x
    RatioAtLeast(f64),
    /// value / reference ≤ x
    RatioAtMost(f64),
    /// value ≤ x (absolute)
    AtMost(f64),
}

struct Row {
    label: &'static str,
    key: &'static str,
    reference: Option<(&'static str, &'static str)>,
    target: Target,
    decimals: usize,
}

const fn row(
    label: &'static str,
    key: &'static str,
    reference: Option<(&'static str, &'static str)>,
    target: Target,
    decimals: usize,
) -> Row {
    Row {
        label,
        key,
        reference,
        target,
        decimals,
    }
}

fn rows() -> Vec<Row> {
    use Target::*;
    let plain = |k| Some(("plain", k));
    let stunnel = |k| Some(("stunnel4", k));
    let full_rsa = |k| Some(("full RSA-2048", k));
    let full_ec = |k| Some(("full ECDSA", k));
    let client = |k| Some(("stunnel4 client", k));
    // The server engine doing the same work: its figures include the
    // bench app's (small) share.
    let tlsd = |k| Some(("s6-tlsd server", k));
    vec![
        row("down MB/s (s6-ucspitlsd, TLS 1.3)", "down.tls", plain("down.plain"), RatioAtLeast(0.55), 1),
        row("up MB/s (s6-ucspitlsd, TLS 1.3)", "up.tls", plain("up.plain"), RatioAtLeast(0.55), 1),
        row("  server CPU ms/MiB down", "cpu.down.tls", plain("cpu.down.plain"), Info, 3),
        row("  server CPU ms/MiB up", "cpu.up.tls", plain("cpu.up.plain"), Info, 3),
        row("  client CPU ms/MiB down", "ccpu.down.tls", plain("ccpu.down.plain"), Info, 3),
        row("  client CPU ms/MiB up", "ccpu.up.tls", plain("ccpu.up.plain"), Info, 3),
        row("ping median µs", "ping.tls", plain("ping.plain"), RatioAtMost(1.2), 1),
        row("ping p99 µs", "p99.tls", plain("p99.plain"), Info, 1),
        row("sessions/s c2 ECDSA P-256", "sess2.tls", plain("sess2.plain"), RatioAtLeast(0.5), 1),
        row("sessions/s c2 RSA-2048", "sess2.rsa", plain("sess2.plain"), RatioAtLeast(0.5), 1),
        row("sessions/s c16 ECDSA P-256", "sess16.tls", plain("sess16.plain"), Info, 1),
        row("server CPU ms/session c16", "cpu.sess16.tls", plain("cpu.sess16.plain"), RatioAtMost(2.0), 3),
        row("s6-tlsd-io private KiB (idle, its text too)", "private.tlsdio", None, Info, 0),
        row("s6-tlsd-io Rss KiB (idle, alone)", "rss.tlsdio", None, AtMost(2560.0), 0),
        row("  its Private_Dirty KiB", "dirty.tlsdio", None, Info, 0),
        row("  private KiB, 2nd of 2 idle sessions", "private2.tlsdio", Some(("stunnel4", "private2.stunnel")), Info, 0),
        row("start-up s6-ucspitlsd→app µs", "start.ucspitlsd", Some(("bench-app alone", "start.app")), Info, 0),
        row("start-up s6-tlsd-io→ready µs", "start.tlsdio", None, Info, 0),
        row("s6-tlsd-io exec→ServerHello µs", "start.flight", None, Info, 0),
        row("s6-tlsd down MB/s", "down.tlsd", stunnel("down.stunnel"), RatioAtLeast(1.0), 1),
        row("s6-tlsd up MB/s", "up.tlsd", stunnel("up.stunnel"), RatioAtLeast(1.0), 1),
        row("  s6-tlsd server CPU ms/MiB down", "cpu.down.tlsd", stunnel("cpu.down.stunnel"), Info, 3),
        row("  s6-tlsd server CPU ms/MiB up", "cpu.up.tlsd", stunnel("cpu.up.stunnel"), Info, 3),
        row("s6-tlsd sessions/s c2", "sess2.tlsd", stunnel("sess2.stunnel"), RatioAtLeast(1.0), 1),
        row("resumed sessions/s c2 RSA-2048", "sess2.rsa.resumed", full_rsa("sess2.rsa"), RatioAtLeast(1.25), 1),
        row("resumed sessions/s c16 RSA-2048", "sess16.rsa.resumed", full_rsa("sess16.rsa"), RatioAtLeast(1.25), 1),
        row("  resumed RSA-2048 vs full ECDSA c2", "sess2.rsa.resumed", full_ec("sess2.tls"), RatioAtLeast(1.0), 1),
        row("  resumed RSA-2048 vs full ECDSA c16", "sess16.rsa.resumed", full_ec("sess16.tls"), RatioAtLeast(1.0), 1),
        row("resumed sessions/s c2 ECDSA P-256", "sess2.tls.resumed", full_ec("sess2.tls"), Info, 1),
        row("resumed sessions/s c16 ECDSA P-256", "sess16.tls.resumed", full_ec("sess16.tls"), Info, 1),
        row("  server CPU ms/session c16 RSA resumed", "cpu.sess16.rsa.resumed", full_rsa("cpu.sess16.rsa"), Info, 3),
        row("  % of those sessions resumed (RSA c16)", "share.sess16.rsa.resumed", None, Info, 1),
        row("handshake bytes ECDSA resumed", "hsbytes.tls.resumed", full_ec("hsbytes.tls.full"), Info, 0),
        row("handshake bytes RSA-2048 resumed", "hsbytes.rsa.resumed", full_rsa("hsbytes.rsa.full"), Info, 0),
        row("client s6-tlsc-io down MB/s", "down.tlsc", client("down.stunnelc"), RatioAtLeast(1.0), 1),
        row("client s6-tlsc-io up MB/s", "up.tlsc", client("up.stunnelc"), RatioAtLeast(1.0), 1),
        row("  s6-tlsc-io CPU ms/MiB down", "cpu.down.tlsc", client("cpu.down.stunnelc"), Info, 3),
        row("  s6-tlsc-io CPU ms/MiB up", "cpu.up.tlsc", client("cpu.up.stunnelc"), Info, 3),
        row("  s6-tlsc-io ms/MiB down (decrypts)", "cpu.down.tlsc", tlsd("cpu.up.tlsd"), Info, 3),
        row("  s6-tlsc-io ms/MiB up (encrypts)", "cpu.up.tlsc", tlsd("cpu.down.tlsd"), Info, 3),
        row("client s6-tlsc-io sessions/s c2", "sess2.tlsc", client("sess2.stunnelc"), RatioAtLeast(1.0), 1),
    ]
}

fn reference_rows() -> Vec<Row> {
    use Target::Info;
    vec![
        row("plain down MB/s", "down.plain", None, Info, 1),
        row("plain up MB/s", "up.plain", None, Info, 1),
        row("plain ping median µs", "ping.plain", None, Info, 1),
        row("plain ping p99 µs", "p99.plain", None, Info, 1),
        row("plain sessions/s c2", "sess2.plain", None, Info, 1),
        row("plain sessions/s c16", "sess16.plain", None, Info, 1),
        row("plain server CPU ms/session c16", "cpu.sess16.plain", None, Info, 3),
        row("server CPU ms/session c2 ECDSA", "cpu.sess2.tls", None, Info, 3),
        row("server CPU ms/session c2 RSA", "cpu.sess2.rsa", None, Info, 3),
        row("full sessions/s c16 RSA-2048", "sess16.rsa", None, Info, 1),
        row("server CPU ms/session c16 RSA", "cpu.sess16.rsa", None, Info, 3),
        row("handshake bytes ECDSA full", "hsbytes.tls.full", None, Info, 0),
        row("handshake bytes RSA-2048 full", "hsbytes.rsa.full", None, Info, 0),
        row("% of sessions resumed c2 ECDSA", "share.sess2.tls.resumed", None, Info, 1),
        row("% of sessions resumed c16 ECDSA", "share.sess16.tls.resumed", None, Info, 1),
        row("% of sessions resumed c2 RSA-2048", "share.sess2.rsa.resumed", None, Info, 1),
        row("server CPU ms/session c2 ECDSA resumed", "cpu.sess2.tls.resumed", None, Info, 3),
        row("server CPU ms/session c2 RSA resumed", "cpu.sess2.rsa.resumed", None, Info, 3),
        row("server CPU ms/session c16 ECDSA resumed", "cpu.sess16.tls.resumed", None, Info, 3),
        row("server CPU ms/session c2 plain", "cpu.sess2.plain", None, Info, 3),
        row("server CPU ms/session c2 s6-tlsd", "cpu.sess2.tlsd", None, Info, 3),
        row("server CPU ms/session c2 stunnel4", "cpu.sess2.stunnel", None, Info, 3),
        row("stunnel4 down MB/s", "down.stunnel", None, Info, 1),
        row("stunnel4 up MB/s", "up.stunnel", None, Info, 1),
        row("stunnel4 sessions/s c2", "sess2.stunnel", None, Info, 1),
        row("stunnel4 client down MB/s", "down.stunnelc", None, Info, 1),
        row("stunnel4 client up MB/s", "up.stunnelc", None, Info, 1),
        row("stunnel4 client sessions/s c2", "sess2.stunnelc", None, Info, 1),
        row("stunnel4 private KiB (idle)", "private.stunnel", None, Info, 0),
        row("stunnel4 Rss KiB (idle)", "rss.stunnel", None, Info, 0),
        row("stunnel4 Private_Dirty KiB (idle)", "dirty.stunnel", None, Info, 0),
        row("openssl speed aes-128-gcm 16 KiB MB/s", "aes128", None, Info, 1),
        row("openssl speed aes-256-gcm 16 KiB MB/s", "aes256", None, Info, 1),
        row("openssl speed rsa2048 sign µs", "rsa.sign", None, Info, 1),
        row("openssl speed ecdsap256 sign µs", "ecdsa.sign", None, Info, 1),
        row("openssl speed ecdhx25519 µs", "x25519.op", None, Info, 1),
    ]
}

fn fmt(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "—".into()
    } else {
        format!("{v:.decimals$}")
    }
}

fn print_table(res: &Results) -> usize {
    let none = Vec::new();
    let get = |k: &str| res.values.get(k).unwrap_or(&none);
    let mut lines = vec![[
        "row".to_string(),
        "value (median)".into(),
        "min–max".into(),
        "reference".into(),
        "ratio".into(),
        "target".into(),
        "met".into(),
    ]];
    let mut unmet = 0;
    let main_rows = rows().into_iter().chain(session_cost_rows()).collect();
    for (section, rows) in [(0, main_rows), (1, reference_rows())] {
        if section == 1 {
            lines.push(["reference rows".into(), "".into(), "".into(), "".into(), "".into(), "".into(), "".into()]);
        }
        for r in rows {
            let vs = get(r.key);
            let med = stats::median(vs);
            let range = format!("{}–{}", fmt(stats::min(vs), r.decimals), fmt(stats::max(vs), r.decimals));
            let (refs, ratio) = match r.reference {
                Some((name, key)) => {
                    let m = stats::median(get(key));
                    (format!("{} ({name})", fmt(m, r.decimals)), med / m)
                }
                Option::None => ("—".into(), f64::NAN),
            };
            let (target, met) = match r.target {
                Target::Info => ("—".to_string(), None),
                Target::RatioAtLeast(x) => (format!("≥ {x} ×"), Some(ratio >= x)),
                Target::RatioAtMost(x) => (format!("≤ {x} ×"), Some(ratio <= x)),
                Target::AtMost(x) => (format!("≤ {x}"), Some(med <= x)),
            };
            let met = match met {
                Some(true) => "yes".to_string(),
                Some(false) => {
                    unmet += 1;
                    "NO".into()
                }
                Option::None => "".into(),
            };
            lines.push([
                r.label.to_string(),
                fmt(med, r.decimals),
                range,
                refs,
                if ratio.is_nan() { "—".into() } else { format!("{ratio:.3}") },
                target,
                met,
            ]);
        }
    }
    let mut widths = [0usize; 7];
    for l in &lines {
        for (i, c) in l.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let cell = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.chars().count()));
    for (n, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l.iter().enumerate().map(|(i, c)| cell(c, widths[i])).collect();
        println!("| {} |", cells.join(" | "));
        if n == 0 {
            let seps: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            println!("|-{}-|", seps.join("-|-"));
        }
    }
    unmet
}

fn log_problems(sv: &Servers) -> Vec<String> {
    let mut out = Vec::new();
    for server in [
        &sv.tls_ec,
        &sv.tls_rsa,
        &sv.plain,
        &sv.tlsd,
        &sv.stunnel,
        &sv.tlsc,
        &sv.stunnel_client,
    ] {
        let text = std::fs::read_to_string(&server.log).unwrap_or_default();
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("fatal") || l.contains("warning") || l.contains("error"))
            .collect();
        if !bad.is_empty() {
            out.push(format!(
                "{}: {} error lines in {}, first: {}",
                server.name,
                bad.len(),
                server.log.display(),
                bad[0]
            ));
        }
    }
    out
}

fn fsync(path: &Path) {
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.sync_all()) {
        eprintln!("bench: warning: fsync {}: {e}", path.display());
    }
}

fn main() {
    let s = settings();
    if let Err(e) = sys::pin_to(s.client_cpu) {
        eprintln!("bench: warning: unable to pin the client to CPU {}: {e}", s.client_cpu);
    }
    let cfg = client::client_config();
    // Freshly built programs have dirty page-cache pages, which smaps would
    // count as Private_Dirty: write them back first.
    for prog in ["s6-tlsd-io", "s6-ucspitlsd", "s6-tlsd"] {
        fsync(&s.bin.join(prog));
    }
    fsync(&s.bench_bin.join("bench-app"));
    // How busy the machine is without us: one second, before anything starts.
    let ncpu = sys::online_cpus() as f64;
    let quiet_before = sys::system_busy_seconds();
    std::thread::sleep(Duration::from_secs(1));
    let idle_load = match (quiet_before, sys::system_busy_seconds()) {
        (Some(a), Some(b)) => (b - a) / ncpu * 100.0,
        _ => f64::NAN,
    };
    let busy_before = sys::system_busy_seconds();
    let own_before = sys::own_cpu_seconds();
    let servers = match start_servers(&s) {
        Ok(sv) => sv,
        Err(e) => {
            eprintln!("bench: fatal: unable to start the servers: {e}");
            std::process::exit(111);
        }
    };
    let started = Instant::now();
    let mut res = Results::default();
    for r in 0..s.rounds {
        eprintln!("bench: round {}/{} ({:.0} s so far)", r + 1, s.rounds, started.elapsed().as_secs_f64());
        round(&s, &servers, &cfg, &mut res);
        session_cost_round(&s, &servers, &cfg, &mut res);
    }
    derive_session_costs(&mut res);
    let problems = log_problems(&servers);
    drop(servers);
    // Everything we started has been reaped: what else ran meanwhile?
    let wall = started.elapsed().as_secs_f64();
    let foreign = match (busy_before, sys::system_busy_seconds()) {
        (Some(a), Some(b)) => ((b - a) - (sys::own_cpu_seconds() - own_before)) / (wall * ncpu) * 100.0,
        _ => f64::NAN,
    };
    println!();
    println!(
        "{} round(s){}; transfers {} MiB, {} pings, sessions for {} s, {} start-ups per round; \
         servers on CPU {}, client on CPU {}; {:.0} s.",
        s.rounds,
        if s.quick { " (QUICK: smoke test, not for the record)" } else { "" },
        s.bytes >> 20,
        s.pings,
        s.session_time.as_secs(),
        s.startup_runs,
        s.server_cpu,
        s.client_cpu,
        started.elapsed().as_secs_f64()
    );
    println!(
        "other processes on this machine: {idle_load:.0}% of the {ncpu} CPUs busy in the second \
         before the run, {:.0}% during it (CPU time not ours / (wall time × CPUs)).",
        foreign.max(0.0)
    );
    println!();
    let unmet = print_table(&res);
    println!();
    for (name, n) in &res.negotiated {
        println!("negotiated with {name}: {} {} {}", n.protocol, n.suite, n.group);
    }
    for p in &problems {
        println!("server log: {p}");
    }
    for e in &res.errors {
        println!("measurement error: {e}");
    }
    println!("targets not met: {unmet}");
    let _ = io::stdout().flush();
    if !res.errors.is_empty() {
        std::process::exit(1);
    }
}

/// The engine's own CPU (s6-tlsd-io alone, not the application) for one
/// transfer through s6-ucspitlsd, ms per MiB, in user mode and in the
/// kernel.
fn engine_cpu(server: &Server, cfg: &Arc<ClientConfig>, dir: Dir, bytes: u64) -> io::Result<sys::Cpu> {
    if !server.wait_idle() {
        return Err(io::Error::other("sessions still running"));
    }
    let mut conn = Conn::open(server.addr(), Mode::StartTls, cfg)?;
    let [pid] = server.find("s6-tlsd-io")[..] else {
        return Err(io::Error::other("not one s6-tlsd-io"));
    };
    let cpu = || sys::cpu_split_with_children(pid).ok_or_else(|| io::Error::other("no /proc/PID/stat"));
    let before = cpu()?;
    match dir {
        Dir::Down => conn.down(bytes)?,
        Dir::Up => conn.up(bytes)?,
    };
    let after = cpu()?;
    conn.quit()?;
    let per_mib = |s: f64| s * 1e3 / (bytes as f64 / (1 << 20) as f64);
    Ok(sys::Cpu {
        user: per_mib(after.user - before.user),
        system: per_mib(after.system - before.system),
    })
}

/// Three idle sessions held open at once: each engine's Private_Dirty and
/// Pss, KiB. The program's text, shared by the three, counts in neither
/// Private figure and a third of it in each Pss.
fn idle_sessions(server: &Server, cfg: &Arc<ClientConfig>, n: usize) -> io::Result<Vec<(f64, f64)>> {
    if !server.wait_idle() {
        return Err(io::Error::other("sessions still running"));
    }
    let conns = (0..n)
        .map(|_| open_idle(server, Mode::StartTls, cfg))
        .collect::<io::Result<Vec<Conn>>>()?;
    let pids = server.find("s6-tlsd-io");
    if pids.len() != n {
        return Err(io::Error::other(format!("{} s6-tlsd-io for {n} sessions", pids.len())));
    }
    let mem = pids
        .iter()
        .map(|&p| match (sys::private_dirty_kib(p), sys::pss_kib(p)) {
            (Some(dirty), Some(pss)) => Ok((dirty as f64, pss as f64)),
            _ => Err(io::Error::other("no smaps_rollup")),
        })
        .collect::<io::Result<Vec<_>>>()?;
    for c in conns {
        c.quit()?;
    }
    Ok(mem)
}

/// The measurements of the per-session cost rows (engine CPU per byte,
/// idle memory of three sessions), one round.
fn session_cost_round(s: &Settings, sv: &Servers, cfg: &Arc<ClientConfig>, res: &mut Results) {
    let keys = [
        (Dir::Down, ["ecpu.down", "ecpu.down.user", "ecpu.down.sys"]),
        (Dir::Up, ["ecpu.up", "ecpu.up.user", "ecpu.up.sys"]),
    ];
    for (dir, [key, user, system]) in keys {
        match engine_cpu(&sv.tls_ec, cfg, dir, s.bytes) {
            Ok(ms) => {
                res.push(key, ms.user + ms.system);
                res.push(user, ms.user);
                res.push(system, ms.system);
            }
            Err(e) => res.fail(key, e),
        }
    }
    match idle_sessions(&sv.tls_ec, cfg, 3) {
        Ok(mem) => {
            for (dirty, pss) in mem {
                res.push("dirty3.tlsdio", dirty);
                res.push("pss3.tlsdio", pss);
            }
        }
        Err(e) => res.fail("memory of 3 idle sessions", e),
    }
}

/// Rows computed from others, round by round: the TLS cost per session
/// (TLS minus plain in the same round) and AES-256-GCM's cost per MiB.
fn derive_session_costs(res: &mut Results) {
    let minus = |res: &Results, a: &str, b: &str| -> Vec<f64> {
        match (res.values.get(a), res.values.get(b)) {
            (Some(x), Some(y)) => x.iter().zip(y).map(|(x, y)| x - y).collect(),
            _ => Vec::new(),
        }
    };
    let ec = minus(res, "cpu.sess16.tls", "cpu.sess16.plain");
    let rsa = minus(res, "cpu.sess2.rsa", "cpu.sess2.plain");
    // MB/s (10^6 bytes) to ms per MiB.
    let aes: Vec<f64> = res.values.get("aes256").map_or(Vec::new(), |v| v.iter().map(|mbs| 1048.576 / mbs).collect());
    res.values.insert("cost.sess16.tls", ec);
    res.values.insert("cost.sess2.rsa", rsa);
    res.values.insert("aes256.ms", aes);
}

fn session_cost_rows() -> Vec<Row> {
    use Target::*;
    let aes = |k| Some(("AES-256-GCM", k));
    vec![
        row("s6-tlsd-io CPU ms/MiB down", "ecpu.down", aes("aes256.ms"), RatioAtMost(1.6), 3),
        row("s6-tlsd-io CPU ms/MiB up", "ecpu.up", aes("aes256.ms"), RatioAtMost(1.6), 3),
        row("  of it user mode, down", "ecpu.down.user", aes("aes256.ms"), Info, 3),
        row("  of it user mode, up", "ecpu.up.user", aes("aes256.ms"), Info, 3),
        row("  of it kernel, down", "ecpu.down.sys", Some(("plain server", "cpu.down.plain")), Info, 3),
        row("  of it kernel, up", "ecpu.up.sys", Some(("plain server", "cpu.up.plain")), Info, 3),
        row("TLS cost ms/session c16 ECDSA (− plain)", "cost.sess16.tls", None, AtMost(0.5), 3),
        row("TLS cost ms/session c2 RSA-2048 (− plain)", "cost.sess2.rsa", None, AtMost(0.8), 3),
        row("3 idle sessions: Private_Dirty KiB each", "dirty3.tlsdio", None, AtMost(160.0), 0),
        row("3 idle sessions: Pss KiB each", "pss3.tlsdio", None, Info, 0),
    ]
}
