//! bench-app: the benchmark's UCSPI-TLS application. Large buffers, no
//! per-byte work.
//!
//!     bench-app [starttls|plain|immediate|probe]      (or BENCH_MODE=...)
//!
//! - `starttls` (default), under s6-ucspitlsd: SMTP-ish greeting on fds 0/1,
//!   `STARTTLS` is answered `220`, then `Y` goes to the control socket
//!   (via `s6_tls::ucspi`) and the session continues on the tunnel.
//! - `plain`, under s6-ucspitlsd: the same, but after answering `STARTTLS`
//!   the app closes the UCSPI-TLS descriptors (the helper exits, no TLS
//!   engine ever runs) and the session continues in cleartext on fds 0/1:
//!   the reference pipeline.
//! - `immediate`, under s6-tlsd or stunnel4 (inetd mode): greeting and
//!   session directly on fds 0/1.
//! - `probe`: prints CLOCK_MONOTONIC (ns) on stdout and exits at once; the
//!   start-up row measures the time from exec to here.
//!
//! Session commands (lines ending in CRLF or LF):
//! `SEND n` writes n bytes; `RECV n` reads n bytes and answers `OK n`;
//! `PING` answers `PONG`; `INFO` answers `250 ` and the connection
//! information; `QUIT` answers `221 bye` and ends.
//!
//! At the end the app closes every descriptor and reaps its children
//! (the UCSPI-TLS helper or s6-tlsd-io), so that their CPU time is
//! accounted to it and, through it, to the super-server.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;

const BIG: usize = 256 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    StartTls,
    Plain,
    Immediate,
    Probe,
}

fn mode() -> Mode {
    let word = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BENCH_MODE").ok())
        .unwrap_or_default();
    match word.as_str() {
        "" | "starttls" => Mode::StartTls,
        "plain" => Mode::Plain,
        "immediate" => Mode::Immediate,
        "probe" => Mode::Probe,
        other => {
            eprintln!("bench-app: fatal: unknown mode {other:?}");
            std::process::exit(100);
        }
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let mode = mode();
    if mode == Mode::Probe {
        let now = monotonic_ns();
        println!("{now}");
        // Under s6-ucspitlsd the helper is our child: end it and reap it.
        reap_children();
        return;
    }
    let code = match run(mode) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench-app: fatal: {e}");
            111
        }
    };
    reap_children();
    std::process::exit(code);
}

fn run(mode: Mode) -> io::Result<()> {
    // SAFETY: fds 0 and 1 are the connection the super-server gave us; the
    // app owns them from here on and closes them when the session ends.
    let net_in = unsafe { File::from_raw_fd(0) };
    let mut net_out = unsafe { File::from_raw_fd(1) };
    net_out.write_all(b"220 s6-tls-bench ESMTP\r\n")?;
    let mut rd = BufReader::with_capacity(64 * 1024, net_in);
    if mode == Mode::Immediate {
        let info = immediate_info();
        return session(&mut rd, &mut net_out, &info);
    }
    let ucspi = s6_tls::ucspi::Ucspi::from_env().map_err(io::Error::other)?;
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd == "QUIT" {
            return net_out.write_all(b"221 bye\r\n");
        }
        if cmd != "STARTTLS" {
            net_out.write_all(b"250 ok\r\n")?;
            continue;
        }
        net_out.write_all(b"220 ready to start TLS\r\n")?;
        if mode == Mode::Plain {
            // Same chain, no engine: decline TLS and go on in cleartext.
            drop(ucspi);
            return session(&mut rd, &mut net_out, "plain");
        }
        if !rd.buffer().is_empty() {
            return Err(io::Error::other("client sent data after STARTTLS"));
        }
        drop(rd);
        drop(net_out);
        let tls = ucspi.start_tls_with_info().map_err(io::Error::other)?;
        let info = tls
            .info
            .iter()
            .map(|(n, v)| format!("{n}={}", v.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut reader = BufReader::with_capacity(64 * 1024, tls.reader);
        let mut writer = tls.writer;
        return session(&mut reader, &mut writer, &info);
    }
}

fn immediate_info() -> String {
    let names = ["SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI_SERVERNAME"];
    let parts: Vec<String> = names
        .iter()
        .filter_map(|n| std::env::var(n).ok().map(|v| format!("{n}={v}")))
        .collect();
    if parts.is_empty() {
        "immediate".into()
    } else {
        parts.join(" ")
    }
}

fn number(word: Option<&str>) -> Option<u64> {
    word.and_then(|w| w.parse().ok())
}

fn session<R: Read, W: Write>(rd: &mut BufReader<R>, wr: &mut W, info: &str) -> io::Result<()> {
    let payload = vec![b'x'; BIG];
    let mut scratch = vec![0u8; BIG];
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "SEND" => {
                let Some(mut n) = number(words.next()) else {
                    wr.write_all(b"501 SEND n\r\n")?;
                    continue;
                };
                while n > 0 {
                    let k = n.min(BIG as u64) as usize;
                    wr.write_all(&payload[..k])?;
                    n -= k as u64;
                }
            }
            "RECV" => {
                let Some(total) = number(words.next()) else {
                    wr.write_all(b"501 RECV n\r\n")?;
                    continue;
                };
                let mut left = total;
                while left > 0 {
                    let k = left.min(BIG as u64) as usize;
                    // BufReader hands out what it buffered, then reads
                    // large requests straight into `scratch`.
                    let got = rd.read(&mut scratch[..k])?;
                    if got == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    left -= got as u64;
                }
                wr.write_all(format!("OK {total}\r\n").as_bytes())?;
            }
            "PING" => wr.write_all(b"PONG\r\n")?,
            "INFO" => wr.write_all(format!("250 {info}\r\n").as_bytes())?,
            "QUIT" => return wr.write_all(b"221 bye\r\n"),
            _ => wr.write_all(b"500 unknown command\r\n")?,
        }
    }
}

/// Waits for every child (s6-ucspitlsd's helper, or s6-tlsd-io), bounded:
/// an alarm ends the app after 10 s rather than hang the benchmark.
fn reap_children() {
    // SAFETY: closing the standard descriptors and the UCSPI-TLS ones (if
    // still open) is what ends the children; nothing uses them any more.
    unsafe {
        for fd in 0..64 {
            if fd != 2 {
                libc::close(fd);
            }
        }
        libc::alarm(10);
    }
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}
