//! The STARTTLS demo behind real super-servers (ucspi-tcp's `tcpserver`
//! and `systemd-socket-activate --inetd -a`), `s6-ucspitlsd --
//! ucspitls-demo`, driven by real SMTP clients: `openssl s_client
//! -starttls smtp`, `swaks --tls` and Python's smtplib. Each must reach
//! TLS 1.3 and complete a session. Commands pipelined after STARTTLS
//! must never be executed.

mod common;
mod superserver;

use common::{pki, ClientSetup, TempDir, TlsClient};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};
use std::fs::File;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use superserver::{demo_exe, read_line, read_reply, Group, Kind, SuperServer, UCSPITLSD};

/// The demo behind `kind`, with the standard server certificate, as the
/// README runs it (`s6-ucspitlsd -v2 -- ucspitls-demo`).
fn demo(kind: Kind, dir: &TempDir) -> (SuperServer, PathBuf) {
    demo_with(kind, &[], dir)
}

/// The demo with more s6-ucspitlsd options.
fn demo_with(kind: Kind, opts: &[&str], dir: &TempDir) -> (SuperServer, PathBuf) {
    let (cert, key) = pki().server_p256.write(dir, "server");
    let ca = dir.write("ca.pem", pki().ca.cert_pem());
    let env = vec![
        ("CERTFILE".to_owned(), cert.to_string_lossy().into_owned()),
        ("KEYFILE".to_owned(), key.to_string_lossy().into_owned()),
    ];
    let mut cmd = vec![UCSPITLSD, "-v2"];
    cmd.extend(opts);
    cmd.extend(["--", demo_exe()]);
    let server = SuperServer::start(kind, &cmd, &env, dir);
    (server, ca)
}

/// What a client program did: exit code, stdout, stderr.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs a client program with `stdin` as its input, bounded.
fn run_client(program: &str, args: &[String], stdin: &[u8], dir: &TempDir, name: &str) -> Run {
    let input = dir.write(&format!("{name}.stdin"), stdin);
    let out_path = dir.path().join(format!("{name}.stdout"));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::from(File::open(input).unwrap()))
        .stdout(Stdio::from(File::create(&out_path).unwrap()));
    let env = [("HOME".to_owned(), dir.path().to_string_lossy().into_owned())];
    let mut group = Group::spawn(cmd, &env, dir, name);
    let status = group.wait_within(Duration::from_secs(30));
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: group.stderr(),
    }
}

fn assert_contains(run: &Run, haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "missing {needle:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        run.stdout,
        run.stderr
    );
}

/// The demo logged the acceptance of STARTTLS (`-v 2`).
fn assert_accepted(server: &SuperServer) {
    server.group.wait_stderr("accepted opportunistic TLS");
}

// ---------------------------------------------------------------------
// openssl s_client -starttls smtp

/// With `-S` the session ends with a close_notify and s_client exits 0;
/// without it (the default, and the README's command) OpenSSL 3 reports
/// the TCP EOF after `221` as "unexpected eof" and exits 1.
fn openssl(kind: Kind, close_notify: bool) {
    let dir = TempDir::new("demo-openssl");
    let opts: &[&str] = if close_notify { &["-S"] } else { &[] };
    let (server, ca) = demo_with(kind, opts, &dir);
    let args: Vec<String> = [
        "s_client",
        "-starttls",
        "smtp",
        "-connect",
        &format!("127.0.0.1:{}", server.port),
        "-servername",
        "localhost",
        "-CAfile",
        &ca.to_string_lossy(),
        "-verify_return_error",
        "-brief",
        "-crlf",
        "-ign_eof",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = run_client(
        "openssl",
        &args,
        b"EHLO client.example\nNOOP over-tls\nQUIT\n",
        &dir,
        "openssl",
    );
    assert_contains(&run, &run.stderr, "Protocol version: TLSv1.3");
    assert_contains(&run, &run.stderr, "Verification: OK");
    assert_contains(&run, &run.stdout, "250-TLS TLSv1.3 TLS_");
    assert_contains(&run, &run.stdout, "SNI=localhost");
    assert_contains(&run, &run.stdout, "250 2.0.0 OK over-tls [TLS TLSv1.3");
    assert_contains(&run, &run.stdout, "221 2.0.0 Bye");
    if close_notify {
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        assert!(!run.stderr.contains("error"), "{}", run.stderr);
    } else {
        let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("error")).collect();
        assert!(
            errors.len() == 1 && errors[0].contains("unexpected eof while reading"),
            "only the missing close_notify: {}",
            run.stderr
        );
    }
    assert_accepted(&server);
}

#[test]
fn openssl_s_client_under_tcpserver() {
    openssl(Kind::Tcpserver, true);
}

#[test]
fn openssl_s_client_under_socket_activate() {
    openssl(Kind::SocketActivate, true);
}

#[test]
fn openssl_s_client_with_the_readme_command() {
    openssl(Kind::SocketActivate, false);
}

// ---------------------------------------------------------------------
// swaks --tls

fn swaks(kind: Kind) {
    let dir = TempDir::new("demo-swaks");
    let (server, ca) = demo(kind, &dir);
    let args: Vec<String> = [
        "--to",
        "rcpt@example.org",
        "--from",
        "sender@example.org",
        "--helo",
        "client.example",
        "--server",
        "127.0.0.1",
        "--port",
        &server.port.to_string(),
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        &ca.to_string_lossy(),
        "--tls-sni",
        "localhost",
        "--timeout",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = run_client("swaks", &args, b"", &dir, "swaks");
    assert!(
        !format!("{}{}", run.stdout, run.stderr).contains("requires Net::SSLeay"),
        "swaks cannot do TLS: install the Debian package libnet-ssleay-perl\n{}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let transcript = &run.stdout;
    assert_contains(&run, transcript, "=== TLS started with cipher TLSv1.3:");
    // Lines marked ~> and <~ went through TLS.
    assert_contains(&run, transcript, " ~> EHLO client.example");
    assert_contains(&run, transcript, "<~  250-TLS TLSv1.3 ");
    assert_contains(&run, transcript, "<~  250 2.0.0 Message accepted");
    assert_contains(&run, transcript, "<~  221 2.0.0 Bye");
    assert_accepted(&server);
}

#[test]
fn swaks_under_tcpserver() {
    swaks(Kind::Tcpserver);
}

#[test]
fn swaks_under_socket_activate() {
    swaks(Kind::SocketActivate);
}

// ---------------------------------------------------------------------
// Python's smtplib

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
    code, _ = s.ehlo("client.example")
    assert code == 250 and s.has_extn("starttls"), "no STARTTLS offered"
    code, msg = s.starttls(context=ctx)
    print("starttls", code, msg.decode())
    print("version", s.sock.version(), s.sock.cipher()[0])
    code, msg = s.ehlo("client.example")
    print("ehlo", code, msg.decode().replace("\n", " | "))
    print("noop", *s.noop())
    s.sendmail("a@example.org", ["b@example.org"], "Subject: hi\r\n\r\nbody\r\n")
    print("quit", *s.quit())
"#;

fn smtplib(kind: Kind) {
    let dir = TempDir::new("demo-python");
    let (server, ca) = demo(kind, &dir);
    let args = vec![
        "-c".to_owned(),
        SMTPLIB.to_owned(),
        server.port.to_string(),
        ca.to_string_lossy().into_owned(),
    ];
    let run = run_client("python3", &args, b"", &dir, "python");
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run, &run.stdout, "starttls 220 ");
    assert_contains(&run, &run.stdout, "version TLSv1.3 TLS_");
    assert_contains(&run, &run.stdout, "ehlo 250 ");
    assert_contains(&run, &run.stdout, "TLS TLSv1.3 TLS_");
    assert_contains(&run, &run.stdout, "quit 221 ");
    assert_accepted(&server);
}

#[test]
fn python_smtplib_under_tcpserver() {
    smtplib(Kind::Tcpserver);
}

#[test]
fn python_smtplib_under_socket_activate() {
    smtplib(Kind::SocketActivate);
}

// ---------------------------------------------------------------------
// CVE-2011-0411: commands pipelined after STARTTLS

fn pipelined_command_is_not_executed(kind: Kind) {
    let dir = TempDir::new("demo-pipelining");
    let (server, _) = demo(kind, &dir);
    let mut sock = server.connect();
    let banner = read_reply(&mut sock);
    assert!(banner[0].starts_with("220 "), "{banner:?}");
    superserver::write_all(&mut sock, b"EHLO client.example\r\n");
    let ehlo = read_reply(&mut sock);
    assert!(ehlo.iter().any(|l| l.contains("STARTTLS")), "{ehlo:?}");
    // One write, one segment: the injected command arrives with STARTTLS.
    superserver::write_all(&mut sock, b"STARTTLS\r\nNOOP injected\r\n");
    let ready = read_line(&mut sock);
    assert!(ready.starts_with("220 "), "{ready:?}");
    // Nothing more in cleartext.
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut extra = [0u8; 256];
    match sock.read(&mut extra) {
        Ok(n) => panic!(
            "cleartext after the 220: {:?}",
            String::from_utf8_lossy(&extra[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    let mut client = TlsClient::new(sock, &ClientSetup::new(), "localhost");
    if let Err(e) = client.handshake() {
        // The engine got the injected bytes where a ClientHello belongs:
        // it fails the handshake with an alert, nothing was executed. A
        // cleartext reply where a TLS record belongs would be an answer
        // to the injected command, though, however late.
        let e = e.to_string();
        assert!(
            !e.contains("corrupt") && !e.contains("InvalidMessage"),
            "cleartext where the ServerHello belongs: {e}"
        );
        return;
    }
    server
        .group
        .wait_stderr("discarded 15 bytes pipelined after STARTTLS");
    client.send(b"NOOP probe\r\nQUIT\r\n").unwrap();
    let (data, _) = client.recv_to_end();
    let transcript = String::from_utf8_lossy(&data);
    assert!(
        !transcript.contains("injected"),
        "the pipelined command was executed: {transcript:?}"
    );
    let lines: Vec<&str> = transcript.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("250 2.0.0 OK probe [TLS TLSv1.3")
            && lines[1].starts_with("221 "),
        "after TLS, only the probe and QUIT are answered: {transcript:?}"
    );
    assert_accepted(&server);
}

#[test]
fn pipelined_command_after_starttls_is_discarded_under_tcpserver() {
    pipelined_command_is_not_executed(Kind::Tcpserver);
}

#[test]
fn pipelined_command_after_starttls_is_discarded_under_socket_activate() {
    pipelined_command_is_not_executed(Kind::SocketActivate);
}

// ---------------------------------------------------------------------
// One command line, one reply

/// A line longer than the demo accepts is refused as one line: its tail
/// must never be taken for a command of its own (in DATA, that would let
/// a long body line end the message early and smuggle commands).
#[test]
fn overlong_line_gets_one_reply_and_its_tail_is_not_a_command() {
    let dir = TempDir::new("demo-longline");
    let (server, _) = demo(Kind::Tcpserver, &dir);
    let mut sock = server.connect();
    read_reply(&mut sock);
    let mut line = b"NOOP ".to_vec();
    line.resize(4096, b'a');
    line.extend_from_slice(b"RSET\r\n");
    line.extend_from_slice(b"NOOP next\r\n");
    superserver::write_all(&mut sock, &line);
    let first = read_reply(&mut sock);
    assert!(
        first[0].starts_with("500 "),
        "overlong line refused: {:.80}",
        first[0]
    );
    let second = read_reply(&mut sock);
    assert!(
        second[0].starts_with("250 2.0.0 OK next"),
        "the next reply is the next line's: {:.80}",
        second[0]
    );
    superserver::write_all(&mut sock, b"QUIT\r\n");
    assert!(read_reply(&mut sock)[0].starts_with("221 "));
}

/// The same in DATA: a long body line whose tail looks like the end of
/// the message must not end it, and what follows stays body text.
#[test]
fn overlong_body_line_does_not_end_the_message() {
    let dir = TempDir::new("demo-smuggle");
    let (server, _) = demo(Kind::Tcpserver, &dir);
    let mut sock = server.connect();
    read_reply(&mut sock);
    superserver::write_all(
        &mut sock,
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n",
    );
    read_reply(&mut sock);
    read_reply(&mut sock);
    superserver::write_all(&mut sock, b"DATA\r\n");
    assert!(read_reply(&mut sock)[0].starts_with("354 "));
    let mut body = vec![b'x'; 4096];
    body.extend_from_slice(b".\r\nNOOP smuggled\r\n.\r\nNOOP after\r\n");
    superserver::write_all(&mut sock, &body);
    let accepted = read_reply(&mut sock);
    assert!(
        accepted[0].starts_with("250 2.0.0 Message accepted"),
        "{accepted:?}"
    );
    let next = read_reply(&mut sock);
    assert!(next[0].starts_with("250 2.0.0 OK after"), "{next:?}");
}

/// Without s6-ucspitlsd, STARTTLS is refused and the session goes on.
#[test]
fn starttls_without_ucspitlsd_is_refused_and_the_session_goes_on() {
    let dir = TempDir::new("demo-plain");
    let server = SuperServer::start(Kind::Tcpserver, &[demo_exe()], &[], &dir);
    let mut sock = server.connect();
    read_reply(&mut sock);
    superserver::write_all(&mut sock, b"STARTTLS\r\nNOOP still-here\r\nQUIT\r\n");
    assert!(read_reply(&mut sock)[0].starts_with("454 "));
    let noop = read_reply(&mut sock);
    assert!(
        noop[0].starts_with("250 2.0.0 OK still-here [cleartext]"),
        "{noop:?}"
    );
    assert!(read_reply(&mut sock)[0].starts_with("221 "));
    server.group.wait_stderr("SSLCTLFD is not set");
}

// ---------------------------------------------------------------------
// scripts/demo stops as a whole

/// Kills the process group of the demo's super-server if the test fails
/// before the script stopped it.
struct KillGroup(Option<Pid>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// `scripts/demo` as a user runs it (with the test's builds, DEMO_BIN),
/// a session in progress, then `signal` to the script's pid alone: the
/// script exits, and no process is left holding the listener or the
/// session's socket, which the client sees end.
fn demo_script_stops_on(signal: Signal, server: &str) {
    let dir = TempDir::new("demo-script");
    let port = superserver::free_port();
    let bin = Path::new(UCSPITLSD).parent().unwrap();
    assert_eq!(
        Path::new(demo_exe()),
        bin.join("examples/ucspitls-demo"),
        "DEMO_BIN holds the programs and examples/"
    );
    let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo"));
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let env = [
        ("DEMO_PORT".to_owned(), port.to_string()),
        ("DEMO_BIN".to_owned(), bin.to_string_lossy().into_owned()),
        ("DEMO_SERVER".to_owned(), server.to_owned()),
        // Its own copy: the tests run several demos at once.
        (
            "DEMO_CAFILE".to_owned(),
            dir.path().join("ca.pem").to_string_lossy().into_owned(),
        ),
    ];
    let mut script = Group::spawn(cmd, &env, &dir, "demo-script");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut guard = KillGroup(None);
    let listener = loop {
        let sockets = superserver::tcp_sockets(port, None);
        if let Some(&pid) = superserver::holders(&sockets).first() {
            guard.0 = Some(getpgid(Some(Pid::from_raw(pid as i32))).expect("getpgid"));
            break sockets;
        }
        assert!(script.try_wait().is_none(), "{:?}", script.stderr());
        assert!(
            Instant::now() < deadline,
            "never listened: {:?}",
            script.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let cafile = dir.path().join("ca.pem");
    assert!(cafile.exists(), "no copy of the certificate for clients");
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    superserver::set_timeouts(&sock);
    assert!(read_line(&mut sock).starts_with("220 "));
    let session = superserver::tcp_sockets(port, Some(sock.local_addr().unwrap().port()));
    assert!(!superserver::holders(&session).is_empty(), "no session");

    kill(Pid::from_raw(script.pid as i32), signal).expect("kill");
    let status = script.wait_within(Duration::from_secs(10));
    assert_ne!(status.code(), Some(0), "{status:?}");
    assert_eq!(
        superserver::read_to_eof(&mut sock),
        b"",
        "the session ended"
    );
    // The session's last processes may take a moment to go.
    let gone = |sockets: &[String]| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !superserver::holders(sockets).is_empty() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };
    assert!(gone(&listener), "the listener outlived the demo");
    assert!(gone(&session), "the session outlived the demo");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!cafile.exists(), "the certificate's copy outlived the demo");
    assert!(!script.stderr().contains("fatal"), "{:?}", script.stderr());
    guard.0 = None;
}

#[test]
fn demo_script_stops_as_a_whole_on_sigterm() {
    demo_script_stops_on(Signal::SIGTERM, "systemd-socket-activate");
    demo_script_stops_on(Signal::SIGTERM, "tcpserver");
}

#[test]
fn demo_script_stops_as_a_whole_on_sigint() {
    demo_script_stops_on(Signal::SIGINT, "systemd-socket-activate");
    demo_script_stops_on(Signal::SIGINT, "tcpserver");
}
