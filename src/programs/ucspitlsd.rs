//! s6-ucspitlsd: sets up the UCSPI-TLS descriptors, becomes prog, and
//! leaves a helper that waits for prog's one-byte command and then
//! becomes s6-tlsd-io.

use crate::cli::error::{Fatal, EXIT_USAGE};
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::plumbing::{self, Forked};
use nix::sys::socket::{shutdown, Shutdown};
use std::convert::Infallible;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Runs s6-ucspitlsd; returns only on failure (or when the helper ends
/// without starting TLS, with `Ok`).
pub fn run(opts: &Options, prog: &[OsString], log: &Log) -> Result<(), Fatal> {
    let engine = plumbing::engine_path();
    // prog writes cleartext into `to_engine`, reads it from `to_prog`.
    let to_engine = plumbing::pipe()?;
    let to_prog = plumbing::pipe()?;
    let (ctl_prog, ctl_helper) = plumbing::socket_pair()?;
    let prog_pid = std::process::id();
    match plumbing::fork()? {
        Forked::Parent { .. } => {
            drop((to_engine.read, to_prog.write, ctl_helper));
            become_prog(opts, prog, ctl_prog, to_prog.read, to_engine.write).map(|_| ())
        }
        Forked::Child => {
            drop((to_engine.write, to_prog.read, ctl_prog));
            helper(
                opts,
                log,
                prog_pid,
                engine,
                ctl_helper,
                to_engine.read,
                to_prog.write,
            )
            .map(|_| ())
        }
    }
}

fn become_prog(
    opts: &Options,
    prog: &[OsString],
    ctl: OwnedFd,
    read: OwnedFd,
    write: OwnedFd,
) -> Result<Infallible, Fatal> {
    let mut changes = Vec::with_capacity(3);
    for (name, fd) in [
        ("SSLCTLFD", &ctl),
        ("SSLREADFD", &read),
        ("SSLWRITEFD", &write),
    ] {
        plumbing::keep_on_exec(fd)?;
        changes.push((name.to_owned(), Some(fd.as_raw_fd().to_string())));
    }
    let env = plumbing::prog_environment(opts.keep_env, &changes);
    plumbing::exec_prog(prog, &env)
}

fn helper(
    opts: &Options,
    log: &Log,
    prog_pid: u32,
    engine: Option<PathBuf>,
    ctl: OwnedFd,
    fdr: OwnedFd,
    fdw: OwnedFd,
) -> Result<(), Fatal> {
    let mut command = [0u8; 1];
    let n = loop {
        match nix::unistd::read(&ctl, &mut command) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Fatal::sys("read from the control socket", e)),
        }
    };
    if n == 0 {
        log.info(&format!("pid {prog_pid} declined opportunistic TLS"));
        return Ok(());
    }
    let notify = match command[0] {
        b'y' => {
            drop(ctl);
            None
        }
        b'Y' => {
            shutdown(ctl.as_raw_fd(), Shutdown::Read)
                .map_err(|e| Fatal::sys("shut down the control socket", e))?;
            Some(ctl)
        }
        other => {
            return Err(Fatal::new(
                EXIT_USAGE,
                format!("invalid command 0x{other:02x} on the control socket: expected y or Y"),
            ))
        }
    };
    log.info(&format!("pid {prog_pid} accepted opportunistic TLS"));
    plumbing::exec_engine(engine.as_ref(), opts, &fdr, &fdw, notify.as_ref()).map(|_| ())
}
