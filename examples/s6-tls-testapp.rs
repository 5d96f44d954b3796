//! s6-tls-testapp: the applications the integration tests run under
//! s6-ucspitlsd and s6-tlsd, in one small binary. The first argument
//! selects the behaviour; failures print `s6-tls-testapp: fatal: ...` on
//! stderr and exit 1.
//!
//! - `dump [FILE [ARG...]]`: write `arg ARG` for each ARG, `env NAME=value`
//!   for each environment variable, then `fd N TARGET` for each open
//!   descriptor (from `/proc/self/fd`, without the one used to list it),
//!   then `end`, on stdout (and into FILE unless it is `-`); exit without
//!   any UCSPI-TLS command.
//! - `info y|Y FILE`: send the command, copy every byte then read on
//!   `SSLCTLFD` up to its EOF into FILE (raw), then echo the tunnel
//!   (`SSLREADFD` to `SSLWRITEFD`) until EOF.
//! - `cmd BYTE`: send the first byte of BYTE, wait for the helper (our only
//!   child) and print `helper exit CODE` on stdout.
//! - `decline`: close `SSLCTLFD`, wait for the helper, print
//!   `helper exit CODE`, wait 300 ms, print `bye`, exit.
//! - `die-after-Y`: send `Y` and exit at once.
//! - `early N`: write N bytes of the pattern `i % 251` to `SSLWRITEFD`,
//!   send `Y`, write the next N bytes of the pattern, wait for the
//!   handshake information, write `END\n`, exit.
//! - `hash SEND RECV`: start TLS with `Y` (through `s6_tls::ucspi`), then at
//!   once write SEND pseudo-random bytes and read RECV bytes (a number, or
//!   `eof`), both hashed with SHA-256; then write the trailer
//!   `recv COUNT HEX sent COUNT HEX\n` and exit.
//! - `reply SEND`: as `hash SEND eof`, but writing only after the read
//!   reached EOF.
//! - `take-twice`: take the descriptors with `Ucspi::from_env`, call it
//!   again while holding them, print `second: ` and that call's error (or
//!   `taken again`) on stdout, exit.
//! - `write-then-read SEND FILE`: start TLS with `Y`, write SEND bytes,
//!   close `SSLWRITEFD`, read to EOF, write the trailer into FILE, exit.

use aws_lc_rs::digest::{Context, SHA256};
use s6_tls::ucspi::{Tls, Ucspi};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A descriptor named by an environment variable, as a `File`.
fn env_fd(var: &str) -> Result<File> {
    let fd: i32 = std::env::var(var)
        .map_err(|_| format!("{var} is not set"))?
        .parse()?;
    // SAFETY: the UCSPI-TLS server gave this descriptor to us alone, and
    // each variable is taken once.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn stdout_file() -> File {
    // SAFETY: fd 1 is ours; nothing else in this program uses it.
    File::from(unsafe { OwnedFd::from_raw_fd(1) })
}

fn dump(file: Option<&String>, args: &[String]) -> Result<()> {
    let mut text = String::new();
    for arg in args {
        text.push_str(&format!("arg {arg}\n"));
    }
    for (name, value) in std::env::vars_os() {
        let (name, value) = (name.to_string_lossy(), value.to_string_lossy());
        text.push_str(&format!("env {name}={value}\n"));
    }
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut fds: Vec<i32> = listed
        .into_iter()
        // The directory's own descriptor is closed by now.
        .filter(|&fd| unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } != -1)
        .collect();
    fds.sort();
    for fd in fds {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))?;
        text.push_str(&format!("fd {fd} {}\n", target.display()));
    }
    text.push_str("end\n");
    if let Some(path) = file.filter(|f| *f != "-") {
        std::fs::write(path, &text)?;
    }
    stdout_file().write_all(text.as_bytes())?;
    Ok(())
}

fn wait_helper() -> Result<String> {
    use nix::sys::wait::{wait, WaitStatus};
    Ok(match wait()? {
        WaitStatus::Exited(_, code) => format!("helper exit {code}\n"),
        WaitStatus::Signaled(_, sig, _) => format!("helper signal {sig}\n"),
        other => format!("helper {other:?}\n"),
    })
}

fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 251) as u8).collect()
}

/// xorshift64*: cheap pseudo-random bytes, so that reordered or lost
/// chunks change the digest.
fn random_fill(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

fn hex(ctx: Context) -> String {
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `n` pseudo-random bytes; returns the count and their digest.
fn send_random(mut w: &File, n: u64) -> io::Result<(u64, String)> {
    let (mut ctx, mut state, mut left) = (Context::new(&SHA256), 0x5eed_u64 ^ n, n);
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        random_fill(&mut state, &mut buf[..k]);
        w.write_all(&buf[..k])?;
        ctx.update(&buf[..k]);
        left -= k as u64;
    }
    Ok((n, hex(ctx)))
}

/// Reads `limit` bytes (or to EOF if `None`); returns the count and digest.
fn recv_hash(mut r: &File, limit: Option<u64>) -> io::Result<(u64, String)> {
    let (mut ctx, mut count) = (Context::new(&SHA256), 0u64);
    let mut buf = vec![0u8; 64 * 1024];
    while limit.map_or(true, |l| count < l) {
        let want = limit.map_or(buf.len() as u64, |l| (l - count).min(buf.len() as u64));
        match r.read(&mut buf[..want as usize])? {
            0 if limit.is_some() => return Err(io::ErrorKind::UnexpectedEof.into()),
            0 => break,
            k => {
                ctx.update(&buf[..k]);
                count += k as u64;
            }
        }
    }
    Ok((count, hex(ctx)))
}

fn trailer(recv: (u64, String), sent: (u64, String)) -> String {
    format!("recv {} {} sent {} {}\n", recv.0, recv.1, sent.0, sent.1)
}

fn start_tls() -> Result<Tls> {
    Ok(Ucspi::from_env()?.start_tls_with_info()?)
}

fn number(arg: Option<&String>) -> Result<u64> {
    Ok(arg.ok_or("missing number")?.parse()?)
}

fn run(args: &[String]) -> Result<()> {
    let arg = |i: usize| args.get(i);
    match arg(0).map(String::as_str).unwrap_or("") {
        "dump" => dump(arg(1), args.get(2..).unwrap_or_default())?,
        "info" => {
            let mut ctl = env_fd("SSLCTLFD")?;
            ctl.write_all(arg(1).ok_or("missing command")?.as_bytes())?;
            let mut received = Vec::new();
            ctl.read_to_end(&mut received)?;
            std::fs::write(arg(2).ok_or("missing FILE")?, &received)?;
            let (mut r, mut w) = (env_fd("SSLREADFD")?, env_fd("SSLWRITEFD")?);
            // Not io::copy: its splice fails on a gone reader even at EOF.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf)? {
                    0 => break,
                    n => w.write_all(&buf[..n])?,
                }
            }
        }
        "cmd" => {
            let byte = arg(1)
                .and_then(|s| s.bytes().next())
                .ok_or("missing BYTE")?;
            env_fd("SSLCTLFD")?.write_all(&[byte])?;
            stdout_file().write_all(wait_helper()?.as_bytes())?;
        }
        "decline" => {
            drop(env_fd("SSLCTLFD")?);
            let mut out = stdout_file();
            out.write_all(wait_helper()?.as_bytes())?;
            std::thread::sleep(Duration::from_millis(300));
            out.write_all(b"bye\n")?;
        }
        "die-after-Y" => {
            env_fd("SSLCTLFD")?.write_all(b"Y")?;
            std::process::exit(0);
        }
        "early" => {
            let n = number(arg(1))? as usize;
            let (mut ctl, mut w) = (env_fd("SSLCTLFD")?, env_fd("SSLWRITEFD")?);
            w.write_all(&pattern(0, n))?;
            ctl.write_all(b"Y")?;
            w.write_all(&pattern(n, n))?;
            let mut info = Vec::new();
            ctl.read_to_end(&mut info)?;
            if !info.ends_with(b"\0\0") {
                return Err("the TLS handshake failed".into());
            }
            w.write_all(b"END\n")?;
        }
        "hash" => {
            let (send, recv) = (number(arg(1))?, arg(2).ok_or("missing RECV")?);
            let limit = if recv == "eof" {
                None
            } else {
                Some(recv.parse()?)
            };
            let tls = start_tls()?;
            let (r, mut w) = (tls.reader, tls.writer);
            let reader = std::thread::spawn(move || recv_hash(&r, limit));
            let sent = send_random(&w, send)?;
            let received = reader.join().map_err(|_| "reader panicked")??;
            w.write_all(trailer(received, sent).as_bytes())?;
        }
        "reply" => {
            let send = number(arg(1))?;
            let tls = start_tls()?;
            let received = recv_hash(&tls.reader, None)?;
            let sent = send_random(&tls.writer, send)?;
            (&tls.writer).write_all(trailer(received, sent).as_bytes())?;
        }
        "write-then-read" => {
            let (send, file) = (number(arg(1))?, arg(2).ok_or("missing FILE")?);
            let tls = start_tls()?;
            let sent = send_random(&tls.writer, send)?;
            drop(tls.writer);
            let received = recv_hash(&tls.reader, None)?;
            std::fs::write(file, trailer(received, sent))?;
        }
        "take-twice" => {
            let _first = Ucspi::from_env()?;
            let line = match Ucspi::from_env() {
                Ok(_) => "second: taken again\n".to_owned(),
                Err(e) => format!("second: {e}\n"),
            };
            stdout_file().write_all(line.as_bytes())?;
        }
        other => return Err(format!("unknown behaviour {other:?}").into()),
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        // One write: the engine shares our stderr (eprintln! writes in pieces).
        let line = format!("s6-tls-testapp: fatal: {e}\n");
        let _ = io::stderr().write_all(line.as_bytes());
        std::process::exit(1);
    }
}
