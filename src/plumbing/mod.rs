//! UCSPI-TLS descriptor plumbing shared by the programs: close-on-exec
//! pipes and socket pairs, fork, building prog's environment, and exec.

pub mod fds;
pub mod privs;

use crate::cli::error::Fatal;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{dup2, execvpe, ForkResult};
use std::convert::Infallible;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// A pipe whose two ends are closed on exec until we say otherwise.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

pub fn pipe() -> Result<Pipe, Fatal> {
    let (read, write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Fatal::sys("create a pipe", e))?;
    Ok(Pipe { read, write })
}

/// A connected pair of Unix stream sockets, closed on exec.
pub fn socket_pair() -> Result<(OwnedFd, OwnedFd), Fatal> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Fatal::sys("create a socket pair", e))
}

/// Lets a descriptor survive exec.
pub fn keep_on_exec(fd: &OwnedFd) -> Result<(), Fatal> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
        .map_err(|e| Fatal::sys("clear close-on-exec", e))?;
    Ok(())
}

/// Makes `fd` the descriptor number `target` (0 or 1), kept on exec.
pub fn move_to(fd: OwnedFd, target: i32) -> Result<(), Fatal> {
    if fd.as_raw_fd() == target {
        return keep_on_exec(&fd);
    }
    // SAFETY: `target` is 0 or 1, which this process owns as its standard
    // descriptors; dup2 replaces it atomically and we never close it here.
    let mut standard = std::mem::ManuallyDrop::new(unsafe {
        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(target)
    });
    dup2(fd.as_fd(), &mut standard).map_err(|e| Fatal::sys(format!("dup2 to fd {target}"), e))?;
    Ok(())
}

pub enum Forked {
    Parent { child: nix::unistd::Pid },
    Child,
}

pub fn fork() -> Result<Forked, Fatal> {
    // SAFETY: every program calling this is single-threaded, so the child
    // may run arbitrary code, not only async-signal-safe functions.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { child }) => Ok(Forked::Parent { child }),
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Err(e) => Err(Fatal::sys("fork", e)),
    }
}

/// The TLS configuration variables prog must not see unless `-Z`.
pub fn is_tls_variable(name: &[u8]) -> bool {
    matches!(
        name,
        b"CADIR" | b"CAFILE" | b"CERTFILE" | b"KEYFILE" | b"TLS_UID" | b"TLS_GID"
    ) || name.starts_with(b"CERTFILE:")
        || name.starts_with(b"KEYFILE:")
}

/// prog's environment: ours, less the TLS variables unless `keep`, with
/// `changes` applied in order (`Some` sets, `None` unsets).
pub fn prog_environment(
    keep: bool,
    changes: &[(String, Option<String>)],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| keep || !is_tls_variable(name.as_bytes()))
        .collect();
    for (name, value) in changes {
        env.retain(|(n, _)| n.as_bytes() != name.as_bytes());
        if let Some(v) = value {
            env.push((name.into(), v.into()));
        }
    }
    env
}

fn cstring(s: &OsStr) -> Result<CString, Fatal> {
    CString::new(s.as_bytes()).map_err(|_| {
        Fatal::usage(format!(
            "argument contains a NUL byte: {}",
            s.to_string_lossy()
        ))
    })
}

/// Executes prog (searched in PATH) with the given environment, SIGPIPE
/// back to its default disposition.
pub fn exec_prog(argv: &[OsString], env: &[(OsString, OsString)]) -> Result<Infallible, Fatal> {
    let args = argv
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .iter()
        .map(|(n, v)| {
            let mut entry = n.clone().into_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            CString::new(entry).map_err(|_| Fatal::usage("environment entry contains a NUL byte"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // SAFETY: restoring the default disposition changes no Rust state; the
    // Rust runtime ignores SIGPIPE, and prog must not inherit that.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let err = execvpe(&args[0], &args, &envp).unwrap_err();
    Err(Fatal::sys(
        format!("exec {}", argv[0].to_string_lossy()),
        err,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_variables() {
        for name in [
            "CADIR",
            "CAFILE",
            "CERTFILE",
            "KEYFILE",
            "TLS_UID",
            "TLS_GID",
            "CERTFILE:a.org",
            "KEYFILE:*.a.org",
        ] {
            assert!(is_tls_variable(name.as_bytes()), "{name}");
        }
        for name in ["PATH", "CERTFILES", "KEYFILE_X", "SSLCTLFD", "cadir"] {
            assert!(!is_tls_variable(name.as_bytes()), "{name}");
        }
    }
}
