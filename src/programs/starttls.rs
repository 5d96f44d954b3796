//! UCSPI-TLS for either role (s6-ucspitlsd, and the client's
//! s6-ucspitlsc): sets up the three UCSPI-TLS descriptors, becomes prog,
//! and leaves a helper that waits for prog's one-byte command and then
//! becomes the role's engine in its own process (see
//! [`super::engine::become_engine`]).
//!
//! A program calls [`run`] with its role and where its network is.

use super::engine::{self, NetFds, Role};
use crate::cli::error::{Fatal, EXIT_USAGE};
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::plumbing::{self, Forked};
use nix::sys::socket::{shutdown, Shutdown};
use std::convert::Infallible;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};

/// Returns only on failure (or when the helper ends without starting
/// TLS, with `Ok`). The network stays on `net` for prog's cleartext phase.
pub fn run(
    role: &Role,
    opts: &Options,
    prog: &[OsString],
    net: NetFds,
    log: &Log,
) -> Result<(), Fatal> {
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
            match wait_for_command(log, prog_pid, ctl_helper)? {
                Command::Declined => Ok(()),
                Command::Start { notify } => {
                    engine::become_engine(role, opts, net, to_engine.read, to_prog.write, notify)
                }
            }
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

/// What prog asked the helper for.
enum Command {
    /// It closed the control socket: no TLS.
    Declined,
    /// `y` (no notification) or `Y` (the control socket, shut down for
    /// reading, is the notification channel).
    Start { notify: Option<OwnedFd> },
}

fn wait_for_command(log: &Log, prog_pid: u32, ctl: OwnedFd) -> Result<Command, Fatal> {
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
        return Ok(Command::Declined);
    }
    let notify = match command[0] {
        b'y' => None,
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
    Ok(Command::Start { notify })
}
