//! Helpers for the tests of the super-server links (s6-ucspitlsd, s6-tlsd
//! and the demo): processes in their own process group with stderr in a
//! file, run either directly on an accepted loopback connection or under
//! a real super-server (ucspi-tcp's `tcpserver`,
//! `systemd-socket-activate --inetd -a`), plus the small protocol helpers
//! the tests share (cleartext lines, the test app's dumps and trailers).
//!
//! Every wait is bounded; every process group started here is killed and
//! its leader reaped when its guard is dropped, even on panic.
#![allow(dead_code)]

use crate::common::{pki, End, TempDir, TlsClient, DEADLINE};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const UCSPITLSD: &str = env!("CARGO_BIN_EXE_s6-ucspitlsd");
pub const TLSD: &str = env!("CARGO_BIN_EXE_s6-tlsd");

#[path = "../support/examples.rs"]
mod examples;
#[allow(unused_imports)]
pub use examples::{demo_client_exe, demo_exe, testapp_exe};

/// How long a super-server may take to start listening.
const READY: Duration = Duration::from_secs(10);

/// A process started in its own process group, its stderr in a file.
/// Dropping it kills the whole group and reaps the leader.
pub struct Group {
    child: Option<Child>,
    pub pid: u32,
    pub stderr_path: PathBuf,
    /// The same file, open for reading: it stays readable after the
    /// temporary directory is removed.
    stderr_file: std::fs::File,
}

impl Group {
    /// Spawns `cmd` (whose stdin/stdout the caller has set) with an
    /// environment of exactly `env` plus a minimal PATH, stderr into
    /// `dir/NAME.stderr`, and no inherited descriptor beyond 0, 1, 2.
    pub fn spawn(mut cmd: Command, env: &[(String, String)], dir: &TempDir, name: &str) -> Group {
        let stderr_path = dir.path().join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        let stderr_file = std::fs::File::open(&stderr_path).expect("open stderr file");
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::from(stderr))
            .process_group(0);
        // SAFETY: between fork and exec the closure only calls fcntl, which
        // is async-signal-safe; marking descriptors close-on-exec keeps
        // whatever the test process inherited out of the child.
        unsafe {
            cmd.pre_exec(|| {
                for fd in 3..1024 {
                    nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "spawn {:?}: {e} (scripts/packages lists the Debian packages the tests run; scripts/test installs them)",
                cmd.get_program()
            )
        });
        Group {
            pid: child.id(),
            child: Some(child),
            stderr_path,
            stderr_file,
        }
    }

    /// The exit status if the leader has exited (and is now reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().expect("waitpid")?;
        self.child = None;
        Some(status)
    }

    /// Waits for the leader to exit, at most `within`; on expiry kills the
    /// group and panics (with what it wrote on stderr).
    pub fn wait_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "pid {} still running after {within:?}; stderr: {:?}",
                    self.pid,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The leader's exit code; panics if it was killed by a signal.
    pub fn exit_code(&mut self) -> i32 {
        let status = self.wait_within(DEADLINE);
        status.code().unwrap_or_else(|| {
            panic!(
                "pid {} killed by signal {:?}; stderr: {:?}",
                self.pid,
                status.signal(),
                self.stderr()
            )
        })
    }

    /// Everything the group wrote on stderr so far.
    pub fn stderr(&self) -> String {
        use std::os::unix::fs::FileExt;
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match self.stderr_file.read_at(&mut buf, data.len() as u64) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read {}: {e}", self.stderr_path.display()),
            }
        }
        String::from_utf8_lossy(&data).into_owned()
    }

    /// Waits until stderr contains `needle`; panics after `DEADLINE`.
    pub fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.stderr();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "stderr never showed {needle:?}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the whole group (SIGKILL) and reaps the leader.
    pub fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `program args` the way a super-server would, on one fresh
/// loopback connection: the accepted socket is its stdin and stdout.
/// Returns the process and the client's end (blocking, with timeouts).
pub fn direct(
    program: &str,
    args: &[&str],
    env: &[(String, String)],
    dir: &TempDir,
) -> (Group, TcpStream) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    direct_cmd(cmd, env, dir)
}

/// [`direct`] with a command prepared by the caller.
pub fn direct_cmd(mut cmd: Command, env: &[(String, String)], dir: &TempDir) -> (Group, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    set_timeouts(&client);
    let (server, _) = listener.accept().expect("accept");
    drop(listener);
    let out = server.try_clone().expect("dup socket");
    cmd.stdin(Stdio::from(OwnedFd::from(server)))
        .stdout(Stdio::from(OwnedFd::from(out)));
    let name = Path::new(cmd.get_program())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let group = Group::spawn(cmd, env, dir, &name);
    // `cmd` held our copies of the server's socket: they are closed now,
    // so the client sees EOF exactly when the server side closes.
    (group, client)
}

/// Starts `cmd` as a careless super-server or shell would: SIGCHLD,
/// SIGHUP and SIGTERM ignored, SIGTERM and SIGUSR1 blocked. All of it
/// survives exec.
pub fn with_dirty_signals(cmd: &mut Command) {
    // SAFETY: between fork and exec the closure only calls signal,
    // sigemptyset, sigaddset and sigprocmask, all async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            use nix::libc;
            for sig in [libc::SIGCHLD, libc::SIGHUP, libc::SIGTERM] {
                libc::signal(sig, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// progs that cannot be executed, each with the exit code skalibs'
/// convention gives it (127 not found, 126 not executable) and the
/// reason `exec` reports.
pub fn unexecutable_progs(dir: &TempDir) -> Vec<(String, i32, &'static str)> {
    let plain = dir.write("not-executable", "#!/bin/sh\n");
    vec![
        ("/nonexistent/prog".into(), 127, "No such file or directory"),
        (
            "s6-tls-not-in-path".into(),
            127,
            "No such file or directory",
        ),
        (
            plain.to_string_lossy().into_owned(),
            126,
            "Permission denied",
        ),
    ]
}

/// A prog that prints its own blocked and ignored signal sets.
pub const SIGNAL_STATE: &[&str] = &["/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"];

/// Asserts that what [`SIGNAL_STATE`] printed shows nothing blocked and
/// nothing ignored, but for signals 32 and 33, which the C library
/// reserves (no program can change them through it).
pub fn assert_clean_signals(output: &[u8]) {
    let text = String::from_utf8_lossy(output);
    let sets: Vec<(&str, u64)> = text
        .lines()
        .filter_map(|l| {
            let (name, hex) = l.split_once(":\t")?;
            Some((name, u64::from_str_radix(hex, 16).ok()?))
        })
        .collect();
    let names: Vec<&str> = sets.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["SigBlk", "SigIgn"], "{text:?}");
    let reserved = 0b11 << 31;
    for (name, set) in sets {
        assert_eq!(set & !reserved, 0, "{name} {set:016x}: {text:?}");
    }
}

pub fn set_timeouts(sock: &TcpStream) {
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    sock.set_write_timeout(Some(DEADLINE)).unwrap();
}

/// Which real super-server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ucspi-tcp's `tcpserver -q -R -H -l0 127.0.0.1 PORT prog...`.
    Tcpserver,
    /// `systemd-socket-activate --inetd -a -l 127.0.0.1:PORT prog...`.
    SocketActivate,
}

/// A super-server listening on 127.0.0.1, running `cmd` per connection.
pub struct SuperServer {
    pub group: Group,
    pub port: u16,
    pub kind: Kind,
}

impl SuperServer {
    /// Starts the super-server on a free port (retrying on a collision)
    /// and waits, bounded, until it listens. `env` is the environment of
    /// every connection's command.
    pub fn start(kind: Kind, cmd: &[&str], env: &[(String, String)], dir: &TempDir) -> SuperServer {
        for attempt in 0..8 {
            let port = free_port();
            let mut command;
            let mut group_env = Vec::new();
            match kind {
                Kind::Tcpserver => {
                    command = Command::new("tcpserver");
                    command.args(["-q", "-R", "-H", "-l0", "127.0.0.1", &port.to_string()]);
                    group_env.extend_from_slice(env);
                }
                Kind::SocketActivate => {
                    command = Command::new("systemd-socket-activate");
                    command.args(["--inetd", "-a", "-l", &format!("127.0.0.1:{port}")]);
                    // -E refuses names systemd finds invalid (`CERTFILE:x`):
                    // those go through env(1) in front of the command.
                    let (plain, odd): (Vec<_>, Vec<_>) =
                        env.iter().partition(|(k, _)| !k.contains(':'));
                    for (k, v) in plain {
                        command.arg("-E").arg(format!("{k}={v}"));
                    }
                    if !odd.is_empty() {
                        command.arg("/usr/bin/env");
                        command.args(odd.iter().map(|(k, v)| format!("{k}={v}")));
                    }
                }
            }
            command.args(cmd).stdin(Stdio::null()).stdout(Stdio::null());
            let name = format!("{kind:?}-{attempt}");
            let mut group = Group::spawn(command, &group_env, dir, &name);
            let deadline = Instant::now() + READY;
            loop {
                if group.try_wait().is_some() {
                    // The port was taken meanwhile: try another one.
                    assert!(
                        group.stderr().contains("ddress"),
                        "{kind:?} exited: {:?}",
                        group.stderr()
                    );
                    break;
                }
                if listens(group.pid, port) {
                    return SuperServer { group, port, kind };
                }
                if Instant::now() >= deadline {
                    panic!(
                        "{kind:?} not listening on port {port} after {READY:?}: {:?}",
                        group.stderr()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        panic!("{kind:?} could not bind a free port in 8 attempts");
    }

    /// A new client connection (blocking, with timeouts).
    pub fn connect(&self) -> TcpStream {
        let sock = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to super-server");
        set_timeouts(&sock);
        sock
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// The inodes (as `socket:[N]`, the target of a /proc/PID/fd link) of the
/// TCP sockets bound to 127.0.0.1:`port`: the listening one when `peer`
/// is `None`, else the connected one whose peer is 127.0.0.1:`peer`.
pub fn tcp_sockets(port: u16, peer: Option<u16>) -> Vec<String> {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    let local = format!("0100007F:{port:04X}");
    let (remote, state) = match peer {
        None => ("00000000:0000".to_owned(), "0A"),
        Some(p) => (format!("0100007F:{p:04X}"), "01"),
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1] == local && f[2] == remote && f[3] == state)
                .then(|| format!("socket:[{}]", f[9]))
        })
        .collect()
}

/// Whether process `pid` has a descriptor on one of `sockets`.
fn holds(pid: u32, sockets: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|target| sockets.iter().any(|i| target.as_os_str() == i.as_str()))
}

/// Every process holding one of `sockets`.
pub fn holders(sockets: &[String]) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| holds(pid, sockets))
        .collect()
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port`
/// (read from /proc, without connecting: a probe connection would run
/// the served program once).
fn listens(pid: u32, port: u16) -> bool {
    let sockets = tcp_sockets(port, None);
    !sockets.is_empty() && holds(pid, &sockets)
}

/// The TLS configuration of a server: CERTFILE/KEYFILE (the standard
/// ECDSA pair), CAFILE and CADIR (the standard CA), an SNI pair
/// `CERTFILE:a.example`/`KEYFILE:a.example`, TLS_UID/TLS_GID set to
/// our own ids (so a privilege drop is harmless), and a session ticket
/// key file (TICKETKEYFILE, TICKETLIFETIME).
pub fn tls_env(dir: &TempDir) -> Vec<(String, String)> {
    let (cert, key) = pki().server_p256.write(dir, "server");
    let (sni_cert, sni_key) = pki().server_rsa.write(dir, "sni");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let cadir = dir.subdir("cadir");
    std::fs::write(cadir.join("ca.pem"), pki().ca.cert_pem()).unwrap();
    let tickets = dir.write("tickets.key", [0x5a; 80]);
    std::fs::set_permissions(&tickets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        ("CERTFILE".into(), s(&cert)),
        ("KEYFILE".into(), s(&key)),
        ("CAFILE".into(), s(&ca)),
        ("CADIR".into(), s(&cadir)),
        ("CERTFILE:a.example".into(), s(&sni_cert)),
        ("KEYFILE:a.example".into(), s(&sni_key)),
        ("TLS_UID".into(), nix::unistd::getuid().to_string()),
        ("TLS_GID".into(), nix::unistd::getgid().to_string()),
        ("TICKETKEYFILE".into(), s(&tickets)),
        ("TICKETLIFETIME".into(), "600".into()),
    ]
}

/// The names s6-ucspitlsd and s6-tlsd remove from prog's environment.
pub const TLS_VARIABLES: &[&str] = &[
    "CADIR",
    "CAFILE",
    "CERTFILE",
    "KEYFILE",
    "CERTFILE:a.example",
    "KEYFILE:a.example",
    "TLS_UID",
    "TLS_GID",
    "TICKETKEYFILE",
    "TICKETLIFETIME",
];

/// `tls_env` plus `extra` pairs.
pub fn env_with(dir: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = tls_env(dir);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// What `s6-tls-testapp dump` printed: its environment and its open
/// descriptors with their targets.
#[derive(Debug)]
pub struct Dump {
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub fds: BTreeMap<i32, String>,
}

impl Dump {
    pub fn parse(text: &str) -> Dump {
        assert!(text.ends_with("end\n"), "incomplete dump: {text:?}");
        let mut dump = Dump {
            args: Vec::new(),
            env: BTreeMap::new(),
            fds: BTreeMap::new(),
        };
        for line in text.lines() {
            if let Some(arg) = line.strip_prefix("arg ") {
                dump.args.push(arg.into());
            } else if let Some(entry) = line.strip_prefix("env ") {
                let (k, v) = entry.split_once('=').expect("env line");
                dump.env.insert(k.into(), v.into());
            } else if let Some(entry) = line.strip_prefix("fd ") {
                let (n, target) = entry.split_once(' ').expect("fd line");
                dump.fds
                    .insert(n.parse().expect("fd number"), target.into());
            }
        }
        dump
    }

    /// The descriptor number in variable `var`.
    pub fn fd_var(&self, var: &str) -> i32 {
        let value = self
            .env
            .get(var)
            .unwrap_or_else(|| panic!("{var} not set: {:?}", self.env));
        value
            .parse()
            .unwrap_or_else(|_| panic!("{var}={value:?} is not decimal"))
    }

    /// The target of descriptor `fd` (`socket:[N]`, `pipe:[N]`, a path).
    pub fn target(&self, fd: i32) -> &str {
        self.fds
            .get(&fd)
            .unwrap_or_else(|| panic!("fd {fd} not open: {:?}", self.fds))
    }
}

/// The trailer of the test app's `hash`, `reply` and `write-then-read`.
#[derive(Debug, PartialEq, Eq)]
pub struct Trailer {
    pub recv_len: u64,
    pub recv_hash: String,
    pub sent_len: u64,
    pub sent_hash: String,
}

impl Trailer {
    pub fn parse(text: &[u8]) -> Trailer {
        let text = String::from_utf8_lossy(text);
        let f: Vec<&str> = text.split_whitespace().collect();
        assert!(
            f.len() == 6 && f[0] == "recv" && f[3] == "sent" && text.ends_with('\n'),
            "bad trailer {text:?}"
        );
        Trailer {
            recv_len: f[1].parse().unwrap(),
            recv_hash: f[2].into(),
            sent_len: f[4].parse().unwrap(),
            sent_hash: f[5].into(),
        }
    }
}

/// Reads one line (up to LF, included) byte by byte, so that nothing
/// after it is taken from the socket; panics on EOF or timeout.
pub fn read_line(sock: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.last() != Some(&b'\n') {
        match sock.read(&mut byte) {
            Ok(0) => panic!("EOF after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read after {:?}: {e}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Reads an SMTP reply (its lines, up to the one with a space after the
/// code).
pub fn read_reply(sock: &mut TcpStream) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(sock);
        let last = line.as_bytes().get(3) == Some(&b' ');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

/// Reads everything up to EOF (cleartext); panics on timeout or error.
pub fn read_to_eof(sock: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    sock.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("read after {:?}: {e}", String::from_utf8_lossy(&out)));
    out
}

pub fn write_all(sock: &mut TcpStream, data: &[u8]) {
    sock.write_all(data).expect("write to the connection");
}

/// Full duplex through `client`, all at once: sends everything `source`
/// produces (then a close_notify if `close_after`) while handing the
/// server's data to `sink` until it ends. Returns how it ended, or what
/// went wrong (a TLS or socket error, or `within` expiring).
pub fn duplex(
    client: &mut TlsClient,
    mut source: impl FnMut(&mut [u8]) -> usize,
    mut sink: impl FnMut(&[u8]),
    close_after: bool,
    within: Duration,
) -> Result<End, String> {
    let deadline = Instant::now() + within;
    let (conn, sock) = (&mut client.conn, &mut client.sock);
    sock.set_nonblocking(true).unwrap();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut readbuf = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0, 0);
    let (mut source_done, mut closed) = (false, false);
    let mut ended: Option<End> = None;
    let result = loop {
        if Instant::now() >= deadline {
            break Err(format!("not finished within {within:?}"));
        }
        let mut progress = false;
        // Produce: at most one chunk of plaintext waits in rustls.
        while !source_done && !conn.wants_write() {
            if start == end {
                (start, end) = (0, source(&mut chunk));
                if end == 0 {
                    source_done = true;
                    break;
                }
            }
            match conn.writer().write(&chunk[start..end]) {
                Ok(0) => break,
                Ok(n) => {
                    start += n;
                    progress = true;
                }
                Err(e) => return Err(format!("rustls write: {e}")),
            }
        }
        if source_done && close_after && !closed {
            conn.send_close_notify();
            closed = true;
        }
        // Send.
        let mut send_error = None;
        while conn.wants_write() {
            match conn.write_tls(sock) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    send_error = Some(format!("send: {e}"));
                    break;
                }
            }
        }
        if let Some(e) = send_error {
            break Err(e);
        }
        // Receive.
        if ended.is_none() {
            match conn.read_tls(sock) {
                Ok(_) => {
                    progress = true;
                    if let Err(e) = conn.process_new_packets() {
                        break Err(format!("TLS error: {e}"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(format!("receive: {e}")),
            }
            loop {
                match conn.reader().read(&mut readbuf) {
                    Ok(0) => {
                        ended = Some(End::CloseNotify);
                        break;
                    }
                    Ok(n) => sink(&readbuf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        ended = Some(End::Eof);
                        break;
                    }
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        }
        if let Some(end) = ended {
            if source_done && !conn.wants_write() {
                break Ok(end);
            }
        }
        if !progress {
            let mut flags = PollFlags::empty();
            if ended.is_none() {
                flags |= PollFlags::POLLIN;
            }
            if conn.wants_write() {
                flags |= PollFlags::POLLOUT;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().clamp(1, 1000) as u16;
            let mut fds = [PollFd::new(sock.as_fd(), flags)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => break Err(format!("poll: {e}")),
            }
        }
    };
    sock.set_nonblocking(false).unwrap();
    result
}
