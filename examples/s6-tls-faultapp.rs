//! s6-tls-faultapp: a misbehaving UCSPI-TLS application for the fault,
//! load and secrets tests (tests/faults.rs, tests/load.rs, ...). It is run
//! as prog under s6-ucspitlsd:
//!
//!     s6-tls-faultapp MODE [ARG]
//!
//! Cleartext phase on fds 0/1, a tiny STARTTLS dialogue:
//!
//! ```text
//! server: 220 faultapp pid=<own pid> helper=<helper pid>\r\n
//! client: STARTTLS\r\n
//! server: 220 go\r\n
//! ```
//!
//! then `Y` on SSLCTLFD and, once the handshake is done, MODE:
//!
//! | MODE | what it does |
//! |---|---|
//! | `echo` | copies SSLREADFD to SSLWRITEFD until EOF |
//! | `sink` | reads SSLREADFD until EOF, then closes SSLWRITEFD |
//! | `source N` | writes N bytes, closes SSLWRITEFD, then reads until EOF |
//! | `close-read N` | closes SSLREADFD at once, then writes N bytes and exits |
//! | `close-write` | closes SSLWRITEFD at once, then reads until EOF |
//! | `never-read [S]` | never reads; writes nothing; exits after S seconds (60) |
//! | `double-y` | sends `YY` in one write, reads the information, sends one more `Y`, then echoes |
//!
//! "Killed by a signal" cases need no mode: the test kills the pid from
//! the greeting with SIGKILL. At the end, one line on stderr (one write,
//! so lines of concurrent sessions never mix):
//!
//!     s6-tls-faultapp: pid=P mode=M in=N in_sha256=HEX out=N out_sha256=HEX end=eof|error:...
//!
//! Exit codes: 0 done; 2 TLS did not come up; 3 unexpected cleartext
//! command; 100 usage; 111 I/O error before TLS.

use aws_lc_rs::digest::{Context, SHA256};
use s6_tls::ucspi::Ucspi;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Bytes moved and their SHA-256, for one direction.
struct Tally {
    bytes: u64,
    hash: Context,
}

impl Tally {
    fn new() -> Self {
        Tally {
            bytes: 0,
            hash: Context::new(&SHA256),
        }
    }

    fn add(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.hash.update(data);
    }

    fn finish(self) -> (u64, String) {
        let digest = self.hash.finish();
        let hex = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        (self.bytes, hex)
    }
}

/// One line on stderr in a single write.
fn say(line: &str) {
    let _ = io::stderr().write_all(format!("s6-tls-faultapp: {line}\n").as_bytes());
}

fn die(code: i32, line: &str) -> ! {
    say(&format!("pid={} fatal: {line}", std::process::id()));
    std::process::exit(code)
}

/// The helper s6-ucspitlsd forked: our only child, found in /proc.
fn helper_pid() -> u32 {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4 (ppid) comes after the parenthesised command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(me) {
            return pid;
        }
    }
    0
}

/// Reads one cleartext line byte by byte, so nothing after it is consumed.
fn read_line(input: &mut File) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 512 {
        if input.read(&mut byte)? == 0 {
            break;
        }
        line.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// A cheap deterministic byte source: rotating windows over a 64 KiB
/// block, so the test binary's unoptimised code spends nothing on it.
struct Pattern {
    block: Vec<u8>,
    k: usize,
}

impl Pattern {
    fn new() -> Self {
        let mut x: u32 = 0x9e37_79b9;
        let block = (0..65536)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        Pattern { block, k: 0 }
    }

    fn next(&mut self, max: usize) -> &[u8] {
        let start = (self.k * 7919) % 32768;
        self.k += 1;
        &self.block[start..start + max.min(32768)]
    }
}

fn source(writer: &mut File, n: u64, out: &mut Tally) -> io::Result<()> {
    let mut pattern = Pattern::new();
    while out.bytes < n {
        let left = usize::try_from(n - out.bytes).unwrap_or(usize::MAX);
        let chunk = pattern.next(left);
        writer.write_all(chunk)?;
        out.add(chunk);
    }
    Ok(())
}

fn sink(reader: &mut File, inp: &mut Tally) -> io::Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => inp.add(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn echo(reader: &mut File, writer: &mut File, inp: &mut Tally, out: &mut Tally) -> io::Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        inp.add(&buf[..n]);
        writer.write_all(&buf[..n])?;
        out.add(&buf[..n]);
    }
}

fn number(arg: Option<&String>, default: u64) -> u64 {
    match arg {
        None => default,
        Some(s) => s
            .parse()
            .unwrap_or_else(|_| die(100, &format!("not a number: {s}"))),
    }
}

/// The protocol by hand, to misbehave: `YY` in one write (the helper
/// reads one byte), the information read to its end, then one more `Y`
/// once the helper has shut its side down.
fn double_y(me: u32) -> (File, File) {
    let fd = |var: &str| -> File {
        let n = std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or_else(|| die(100, &format!("{var} not set")));
        // SAFETY: s6-ucspitlsd opened these for us, and only this function
        // takes them.
        File::from(unsafe { OwnedFd::from_raw_fd(n) })
    };
    let mut ctl = fd("SSLCTLFD");
    if let Err(e) = ctl.write_all(b"YY") {
        die(111, &format!("write YY: {e}"));
    }
    // Read up to the end of the information, not to EOF: the helper
    // closes its end with our second `Y` unread, which makes a read past
    // the information fail with ECONNRESET.
    let mut info = Vec::new();
    let mut chunk = [0u8; 1024];
    while s6_tls::info::complete_len(&info).is_none() && info.len() < 65536 {
        match ctl.read(&mut chunk) {
            Ok(0) => die(2, &format!("TLS did not come up: information {info:?}")),
            Ok(n) => info.extend_from_slice(&chunk[..n]),
            Err(e) => die(111, &format!("read the information: {e}")),
        }
    }
    let again = ctl.write_all(b"Y");
    say(&format!("pid={me} Y after the handshake: {again:?}"));
    (fd("SSLREADFD"), fd("SSLWRITEFD"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let known = [
        "echo",
        "sink",
        "source",
        "close-read",
        "close-write",
        "never-read",
        "double-y",
    ];
    if !known.contains(&mode.as_str()) {
        die(
            100,
            "usage: s6-tls-faultapp echo|sink|source N|close-read N|close-write|never-read [S]|double-y",
        );
    }
    let me = std::process::id();
    // SAFETY: fds 0 and 1 are the connection, given by the super-server;
    // nothing else here uses them.
    let (mut input, mut output) = unsafe {
        (
            File::from(OwnedFd::from_raw_fd(0)),
            File::from(OwnedFd::from_raw_fd(1)),
        )
    };
    let greeting = format!("220 faultapp pid={me} helper={}\r\n", helper_pid());
    if let Err(e) = output.write_all(greeting.as_bytes()) {
        die(111, &format!("write greeting: {e}"));
    }
    match read_line(&mut input) {
        Ok(line) if line.eq_ignore_ascii_case("STARTTLS") => {}
        Ok(line) => {
            let _ = output.write_all(b"500 expected STARTTLS\r\n");
            die(3, &format!("unexpected command {line:?}"));
        }
        Err(e) => die(111, &format!("read command: {e}")),
    }
    if let Err(e) = output.write_all(b"220 go\r\n") {
        die(111, &format!("write reply: {e}"));
    }
    // From here on fds 0/1 belong to the engine.
    drop((input, output));

    let (reader, writer) = if mode == "double-y" {
        double_y(me)
    } else {
        let tls = Ucspi::from_env()
            .and_then(|u| u.start_tls_with_info())
            .unwrap_or_else(|e| die(2, &format!("TLS did not come up: {e}")));
        (tls.reader, tls.writer)
    };
    let (mut reader, mut writer) = (Some(reader), Some(writer));
    let mut inp = Tally::new();
    let mut out = Tally::new();
    let arg = args.get(1);
    let result = match mode.as_str() {
        "echo" | "double-y" => echo(
            reader.as_mut().expect("open"),
            writer.as_mut().expect("open"),
            &mut inp,
            &mut out,
        ),
        "sink" => sink(reader.as_mut().expect("open"), &mut inp),
        "source" => {
            let n = number(arg, 0);
            source(writer.as_mut().expect("open"), n, &mut out).and_then(|_| {
                writer = None;
                sink(reader.as_mut().expect("open"), &mut inp)
            })
        }
        "close-read" => {
            reader = None;
            source(writer.as_mut().expect("open"), number(arg, 0), &mut out)
        }
        "close-write" => {
            writer = None;
            sink(reader.as_mut().expect("open"), &mut inp)
        }
        "never-read" => {
            let deadline = Instant::now() + Duration::from_secs(number(arg, 60));
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        _ => unreachable!("checked above"),
    };
    drop((reader, writer));
    let end = match result {
        Ok(()) => "eof".to_owned(),
        Err(e) => format!("error:{}", e.kind()),
    };
    let (in_n, in_h) = inp.finish();
    let (out_n, out_h) = out.finish();
    say(&format!(
        "pid={me} mode={mode} in={in_n} in_sha256={in_h} out={out_n} out_sha256={out_h} end={end}"
    ));
}
