//! The engine runs in s6-ucspitlsd's helper and in s6-tlsd's child
//! themselves, without a second exec: seen in /proc during a session, the
//! process is still the program's executable, is named `s6-tlsd-io`,
//! speaks as `s6-tlsd-io`, holds only its own descriptors (not the
//! leftovers its parent inherited, which prog still has), and has dropped
//! its privileges (as root).

mod common;
#[path = "faults/harness.rs"]
mod harness;
mod superserver;

use common::{ClientSetup, End, TempDir, TlsClient};
use harness::{children, comm, fd_targets, status_field};
use std::time::{Duration, Instant};
use superserver::{direct, tls_env, Group, TESTAPP, TLSD, UCSPITLSD};

/// Opens fds 7 and 8 on /dev/null, as a careless parent would leave them,
/// and executes the rest of the command line.
const LEFTOVERS: &str = "exec 7</dev/null 8</dev/null; exec \"$0\" \"$@\"";

/// The server's environment, with a drop to nobody when we are root.
fn env(dir: &TempDir) -> Vec<(String, String)> {
    let mut env = tls_env(dir);
    if nix::unistd::geteuid().is_root() {
        for (name, value) in &mut env {
            if name == "TLS_UID" || name == "TLS_GID" {
                *value = "65534".into();
            }
        }
    }
    env
}

/// `program args...` under the shell that leaves fds 7 and 8 open, on
/// one connection; then a handshake and an echo, so the engine is running.
fn session(dir: &TempDir, program: &str, args: &[&str]) -> (Group, TlsClient) {
    let mut words = vec!["-c", LEFTOVERS, program];
    words.extend(args);
    let (server, sock) = direct("/bin/sh", &words, &env(dir), dir);
    let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
    client
        .handshake()
        .unwrap_or_else(|e| panic!("handshake: {e}; stderr: {}", server.stderr()));
    client.send(b"ping\n").unwrap();
    assert_eq!(client.recv_exact(5), b"ping\n", "{}", server.stderr());
    (server, client)
}

/// The engine: prog's only child.
fn engine_of(prog: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let [engine] = children(prog)[..] {
            return engine;
        }
        assert!(Instant::now() < deadline, "prog {prog} has no single child");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the engine process must look like: `exe` (no exec since the
/// program started), its name, its descriptors (0 and 1 the TCP socket, 2
/// the log, then `others`, in any order), its ids.
fn assert_engine(engine: i32, exe: &str, others: &[&str], stderr: &str) {
    let path = std::fs::read_link(format!("/proc/{engine}/exe")).expect("exe");
    assert!(path.ends_with(exe), "{path:?}: the engine was exec'd");
    assert_eq!(comm(engine).as_deref(), Some("s6-tlsd-io"));
    let fds = fd_targets(engine);
    let numbers: Vec<i32> = fds.iter().map(|(fd, _)| *fd).collect();
    assert!(numbers.len() == 3 + others.len(), "{fds:?}");
    assert!(
        fds[0].1.starts_with("socket:") && fds[1].1 == fds[0].1,
        "{fds:?}"
    );
    assert!(fds[2].1.ends_with(".stderr"), "{fds:?}");
    let mut kinds: Vec<&str> = fds[3..]
        .iter()
        .map(|(_, target)| target.split(':').next().unwrap_or(target))
        .collect();
    kinds.sort_unstable();
    let mut expected = others.to_vec();
    expected.sort_unstable();
    assert_eq!(kinds, expected, "{fds:?}");
    if nix::unistd::geteuid().is_root() {
        let uid = status_field(engine, "Uid").unwrap_or_default();
        assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
        assert_eq!(status_field(engine, "Groups").as_deref(), Some(""));
    }
    assert!(
        stderr.contains("s6-tlsd-io: info: handshake done"),
        "{stderr}"
    );
}

/// prog still holds the leftovers: the engine closed them itself.
fn assert_leftovers(prog: i32) {
    let fds = fd_targets(prog);
    for fd in [7, 8] {
        assert!(fds.contains(&(fd, "/dev/null".into())), "{fds:?}");
    }
}

/// A whole session of `program args...`: the engine checked while it
/// runs, then a clean end.
fn check_engine_of(program: &str, args: &[&str], exe: &str) {
    let dir = TempDir::new("engine");
    let file = dir.path().join("info").to_string_lossy().into_owned();
    let args: Vec<&str> = args
        .iter()
        .map(|&a| if a == "FILE" { file.as_str() } else { a })
        .collect();
    let (mut server, mut client) = session(&dir, program, &args);
    let prog = server.pid as i32;
    let engine = engine_of(prog);
    // A notification channel (s6-tlsd's pipe, the control socket after
    // Y) is closed once the information is sent: the two pipe ends stay.
    assert_engine(engine, exe, &["pipe", "pipe"], &server.stderr());
    assert_leftovers(prog);
    client.close_notify().unwrap();
    let (rest, end) = client.recv_to_end();
    assert_eq!((rest, end.unwrap()), (Vec::new(), End::Eof));
    assert_eq!(server.exit_code(), 0, "{}", server.stderr());
}

#[test]
fn ucspitlsd_helper_becomes_the_engine_holding_only_its_descriptors() {
    let args = ["-v2", "--", TESTAPP, "info", "Y", "FILE"];
    check_engine_of(UCSPITLSD, &args, "s6-ucspitlsd");
}

#[test]
fn tlsd_child_becomes_the_engine_holding_only_its_descriptors() {
    check_engine_of(TLSD, &["-v2", "--", "/bin/cat"], "s6-tlsd");
}
