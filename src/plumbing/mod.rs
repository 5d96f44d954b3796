//! UCSPI-TLS descriptor plumbing shared by s6-ucspitlsd and s6-tlsd:
//! close-on-exec pipes and socket pairs, fork, finding s6-tlsd-io,
//! building prog's environment, and exec.

pub mod fds;
pub mod privs;

use crate::cli::error::Fatal;
use crate::cli::opts::{engine_args, Options};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{dup2, execv, execvpe, ForkResult};
use std::convert::Infallible;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

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
        b"CADIR"
            | b"CAFILE"
            | b"CERTFILE"
            | b"KEYFILE"
            | b"TLS_UID"
            | b"TLS_GID"
            | b"TICKETKEYFILE"
            | b"TICKETLIFETIME"
            | b"OCSPFILE"
    ) || name.starts_with(b"CERTFILE:")
        || name.starts_with(b"KEYFILE:")
        || name.starts_with(b"OCSPFILE:")
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

/// Where s6-tlsd-io is: next to the running executable, else `None` (PATH).
pub fn engine_path() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.parent()?.join("s6-tlsd-io");
    beside.is_file().then_some(beside)
}

/// Executes s6-tlsd-io with the options translated, the network still on
/// fds 0/1, and `fdr`/`fdw` (and `notify`) passed by number.
pub fn exec_engine(
    engine: Option<&PathBuf>,
    opts: &Options,
    fdr: &OwnedFd,
    fdw: &OwnedFd,
    notify: Option<&OwnedFd>,
) -> Result<Infallible, Fatal> {
    for fd in [Some(fdr), Some(fdw), notify].into_iter().flatten() {
        keep_on_exec(fd)?;
    }
    let mut args: Vec<CString> = vec![CString::new("s6-tlsd-io").expect("no NUL")];
    let mut words = engine_args(opts);
    if let Some(fd) = notify {
        words.push(format!("-d{}", fd.as_raw_fd()));
    }
    words.push("--".into());
    words.push(fdr.as_raw_fd().to_string());
    words.push(fdw.as_raw_fd().to_string());
    args.extend(words.into_iter().map(|w| CString::new(w).expect("no NUL")));
    let err = match engine {
        Some(path) => execv(&cstring(path.as_os_str())?, &args).unwrap_err(),
        None => nix::unistd::execvp(&args[0], &args).unwrap_err(),
    };
    Err(Fatal::sys("exec s6-tlsd-io", err))
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
            "TICKETKEYFILE",
            "TICKETLIFETIME",
            "OCSPFILE",
            "OCSPFILE:a.org",
        ] {
            assert!(is_tls_variable(name.as_bytes()), "{name}");
        }
        for name in [
            "PATH",
            "CERTFILES",
            "KEYFILE_X",
            "SSLCTLFD",
            "cadir",
            "OCSPFILES",
        ] {
            assert!(!is_tls_variable(name.as_bytes()), "{name}");
        }
    }
}
