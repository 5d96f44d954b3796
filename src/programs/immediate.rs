//! Immediate TLS for either role (s6-tlsd, and the client's s6-tlsc):
//! forks a child that becomes the role's engine (see
//! [`super::engine::become_engine`]) with a notification pipe, waits for
//! the handshake's information, applies it to the environment and becomes
//! prog with its cleartext on the network's descriptor numbers.
//!
//! A program calls [`run`] with its role and where its network is.

use super::engine::{self, NetFds, Role};
use crate::cli::error::{Fatal, EXIT_SYS};
use crate::cli::opts::Options;
use crate::info;
use crate::plumbing::{self, Forked};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::os::fd::OwnedFd;

pub fn run(role: &Role, opts: &Options, prog: &[OsString], net: NetFds) -> Result<(), Fatal> {
    let to_engine = plumbing::pipe()?;
    let to_prog = plumbing::pipe()?;
    let notify = plumbing::pipe()?;
    match plumbing::fork()? {
        Forked::Child => {
            drop((to_engine.write, to_prog.read, notify.read));
            engine::become_engine(
                role,
                opts,
                net,
                to_engine.read,
                to_prog.write,
                Some(notify.write),
            )
        }
        Forked::Parent { child } => {
            drop((to_engine.read, to_prog.write, notify.write));
            let entries = match read_information(role, notify.read)? {
                Some(entries) => entries,
                None => return Err(engine_failure(role, child)),
            };
            let env = plumbing::prog_environment(opts.keep_env, &entries);
            plumbing::move_to(to_prog.read, net.read)?;
            plumbing::move_to(to_engine.write, net.write)?;
            plumbing::exec_prog(prog, &env).map(|_| ())
        }
    }
}

/// Reads the information string to its `\0\0`; `None` if the engine
/// closed the pipe first (the handshake failed).
fn read_information(role: &Role, fd: OwnedFd) -> Result<Option<Vec<info::Entry>>, Fatal> {
    let mut data = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(len) = info::complete_len(&data) {
            let entries = info::decode(&data[..len]).map_err(|e| {
                Fatal::new(
                    EXIT_SYS,
                    format!("invalid information from {}: {e}", role.name),
                )
            })?;
            return Ok(Some(entries));
        }
        match nix::unistd::read(&fd, &mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Fatal::sys("read from the notification pipe", e)),
        }
    }
}

/// The engine ended before the handshake: exit as it did (it has already
/// said why).
fn engine_failure(role: &Role, child: Pid) -> Fatal {
    let code = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => break code as u8,
            Ok(WaitStatus::Signaled(..)) => break EXIT_SYS,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break EXIT_SYS,
        }
    };
    Fatal::new(
        code,
        format!("{} exited {code} before the handshake completed", role.name),
    )
}
