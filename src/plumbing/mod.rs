//! UCSPI-TLS descriptor plumbing shared by the programs: close-on-exec
//! pipes and socket pairs, fork, building prog's environment, and exec.

pub mod fds;
pub mod privs;

use crate::cli::error::{Fatal, EXIT_CANNOT_EXEC, EXIT_NOT_FOUND};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{dup2, execvpe, ForkResult};
use std::convert::Infallible;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
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
/// `target` then belongs to the process's standard descriptors, not to
/// an `OwnedFd`: nothing here may close it.
pub fn move_to(fd: OwnedFd, target: i32) -> Result<(), Fatal> {
    if fd.as_raw_fd() == target {
        keep_on_exec(&fd)?;
        let _ = fd.into_raw_fd();
        return Ok(());
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

/// What SIGPIPE becomes in [`reset_signals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sigpipe {
    /// Our own processes: a closed pipe or socket is an EPIPE to handle.
    Ignored,
    /// prog: the disposition every program expects to start with.
    Default,
}

/// Every ignored signal back to its default disposition and none blocked,
/// SIGPIPE aside. A super-server or shell may leave SIGCHLD ignored
/// (children are then reaped by the kernel and `waitpid` fails) or
/// signals blocked, and both survive exec. Handlers do not survive exec,
/// so any found here are the Rust runtime's own and stay; the numbers the
/// C library reserves for itself refuse `sigaction` and are left alone.
pub fn reset_signals(sigpipe: Sigpipe) -> Result<(), Fatal> {
    use nix::libc;
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a zeroed sigaction is a valid out-parameter, and a null
        // new action only reads the current one.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } != 0 {
            continue;
        }
        let wanted = match (sig, sigpipe) {
            (libc::SIGPIPE, Sigpipe::Ignored) => libc::SIG_IGN,
            (libc::SIGPIPE, Sigpipe::Default) => libc::SIG_DFL,
            _ if current.sa_sigaction == libc::SIG_IGN => libc::SIG_DFL,
            _ => continue,
        };
        let mut action = current;
        action.sa_sigaction = wanted;
        action.sa_flags = 0;
        // SAFETY: only the default or ignore disposition is installed, so
        // no code of ours ever runs in a signal context.
        if unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) } != 0 {
            return Err(Fatal::sys(
                format!("reset the disposition of signal {sig}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Fatal::sys("unblock signals", e))
}

/// Executes prog (searched in PATH) with the given environment and clean
/// signal dispositions (SIGPIPE at its default, nothing ignored or
/// blocked).
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
    // The Rust runtime ignores SIGPIPE; prog must not inherit that.
    reset_signals(Sigpipe::Default)?;
    let err = execvpe(&args[0], &args, &envp).unwrap_err();
    // skalibs' convention, which supervision logs are read with: 127 when
    // prog is not found, 126 when it is there but cannot be executed.
    let code = if err == Errno::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_EXEC
    };
    Err(Fatal {
        code,
        ..Fatal::sys(format!("exec {}", argv[0].to_string_lossy()), err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_a_descriptor_onto_itself_keeps_it_open_on_exec() {
        let Pipe { read, write } = pipe().unwrap();
        let n = read.as_raw_fd();
        move_to(read, n).unwrap();
        // SAFETY: F_GETFD only inspects the descriptor table entry.
        let flags = unsafe { nix::libc::fcntl(n, nix::libc::F_GETFD) };
        assert_eq!(flags, 0, "fd {n} open, close-on-exec cleared");
        // SAFETY: move_to gave up ownership of `n`; the test takes it back
        // to close it.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) });
        drop(write);
    }

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
