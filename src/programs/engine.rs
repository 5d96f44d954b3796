//! The TLS engine, for either role, run in the current process: what
//! s6-tlsd-io does on its own descriptors ([`run`]), and what the helper
//! of s6-ucspitlsd and the child of s6-tlsd do to become that engine
//! without a second exec ([`become_engine`]).
//!
//! A role is a [`Role`]: the engine's program name and how its connection
//! is made: [`SERVER`] and [`CLIENT`]. Each program passes its role to the
//! same functions, here and in [`super::starttls`] and
//! [`super::immediate`], with its own network descriptor numbers
//! ([`NetFds`]).

use crate::cli::error::{Fatal, EXIT_SETUP};
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::info;
use crate::plumbing::fds::{check_open, close_all_but, own_fd, parse_fd};
use crate::plumbing::privs;
use crate::tls::{client, config, errors};
use crate::tunnel::{Connection, Fds, Peer, Tunnel};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// What differs between the engines of the two roles.
pub struct Role {
    /// The engine's program name: its process name and the prefix of its
    /// messages, whichever program runs it.
    pub name: &'static str,
    /// Reads every file the configuration needs (privileges are still
    /// those of the start) and makes the connection, nothing sent yet,
    /// with what the information string will say about the peer.
    pub connect: Connect,
}

/// How a role makes its connection (see [`Role::connect`]); the log is for
/// the warnings that loading the configuration may print.
pub type Connect = fn(&Options, &Log) -> Result<(Connection, Peer), Fatal>;

/// The server: s6-tlsd-io, and the engine of s6-ucspitlsd and s6-tlsd.
pub const SERVER: Role = Role {
    name: "s6-tlsd-io",
    connect: server_connection,
};

/// The client: s6-tlsc-io, and the engine of s6-ucspitlsc and s6-tlsc.
pub const CLIENT: Role = Role {
    name: "s6-tlsc-io",
    connect: client::connect,
};

fn server_connection(opts: &Options, log: &Log) -> Result<(Connection, Peer), Fatal> {
    let (config, sent_name) = config::server_config(opts, log)?;
    let conn = rustls::server::UnbufferedServerConnection::new(config).map_err(|e| {
        Fatal::new(
            EXIT_SETUP,
            format!("unable to create TLS connection: {}", errors::describe(&e)),
        )
    })?;
    let peer = Peer {
        called: "client",
        entries: Box::new(move |conn: &rustls::CommonState| {
            info::server_entries(conn, sent_name.get().as_deref())
        }),
    };
    Ok((conn.into(), peer))
}

/// The descriptor numbers of the network connection (two different
/// ones): 0 and 1 on the server side.
#[derive(Debug, Clone, Copy)]
pub struct NetFds {
    pub read: RawFd,
    pub write: RawFd,
}

impl NetFds {
    /// A super-server's: the connection on stdin and stdout.
    pub const STANDARD: NetFds = NetFds { read: 0, write: 1 };

    /// A UCSPI client's: fds 6/7 unless `-6`/`-7` say otherwise; both
    /// must be open (else 111).
    pub fn client(opts: &Options) -> Result<NetFds, Fatal> {
        for fd in [opts.net_read_fd, opts.net_write_fd] {
            check_open(fd).map_err(|e| Fatal::sys("check network fds", e))?;
        }
        Ok(NetFds {
            read: opts.net_read_fd,
            write: opts.net_write_fd,
        })
    }
}

/// The `fdr fdw` operands and the `-d notif` of an engine program:
/// decimal, distinct from each other and from 0 and 1 (else 100), open
/// (else 111).
pub fn operand_fds(
    opts: &Options,
    operands: &[OsString],
) -> Result<(OwnedFd, OwnedFd, Option<OwnedFd>), Fatal> {
    let word = |i: usize| operands[i].to_string_lossy().into_owned();
    let fdr = parse_fd("fdr", &word(0))?;
    let fdw = parse_fd("fdw", &word(1))?;
    let mut named = vec![("fdr", fdr), ("fdw", fdw)];
    named.extend(opts.notif_fd.map(|fd| ("notif", fd)));
    // 0 and 1 are the other side of the tunnel and 2 is stderr: an engine
    // owning one of them would close it under the program's feet.
    if let Some((what, fd)) = named.iter().find(|(_, fd)| *fd < 3) {
        return Err(Fatal::usage(format!(
            "{what} must be 3 or more (0 and 1 are the other side, 2 is stderr), not {fd}"
        )));
    }
    let distinct = named
        .iter()
        .enumerate()
        .all(|(i, (_, n))| !named[..i].iter().any(|(_, m)| m == n));
    if !distinct {
        return Err(Fatal::usage("fdr, fdw and notif must be distinct"));
    }
    Ok((
        own_fd("fdr", fdr)?,
        own_fd("fdw", fdw)?,
        opts.notif_fd.map(|fd| own_fd("notif", fd)).transpose()?,
    ))
}

/// Loads the configuration, drops privileges, and runs the tunnel, in
/// this order: every file is read with the privileges of the start, and
/// the first byte of the handshake is handled without them.
pub fn run(role: &Role, opts: &Options, fds: Fds, log: &Log) -> Result<(), Fatal> {
    let (uid, gid) = privs::ids_from_env()?;
    let (conn, peer) = (role.connect)(opts, log)?;
    privs::drop_privileges(uid, gid, log)?;
    Tunnel::new(conn, peer, opts, fds, *log)?.run()
}

/// Turns this process into the role's engine, as if it had been
/// executed with `net`, `fdr fdw` and `notify`: it takes the engine's name
/// (so `ps` and `pgrep -x s6-tlsd-io` show it), holds no descriptor but
/// these (and stderr), runs, and exits with the engine's message and code.
pub fn become_engine(
    role: &Role,
    opts: &Options,
    net: NetFds,
    fdr: OwnedFd,
    fdw: OwnedFd,
    notify: Option<OwnedFd>,
) -> ! {
    let log = Log {
        prog: role.name,
        verbosity: opts.verbosity,
    };
    let result =
        take_descriptors(role, net, fdr, fdw, notify).and_then(|fds| run(role, opts, fds, &log));
    std::process::exit(crate::cli::conclude(&log, result).into())
}

fn take_descriptors(
    role: &Role,
    net: NetFds,
    fdr: OwnedFd,
    fdw: OwnedFd,
    notify: Option<OwnedFd>,
) -> Result<Fds, Fatal> {
    let name = std::ffi::CString::new(role.name).expect("no NUL in a program name");
    // Only what ps shows: nothing depends on it.
    let _ = nix::sys::prctl::set_name(&name);
    let mut keep = vec![net.read, net.write, fdr.as_raw_fd(), fdw.as_raw_fd()];
    keep.extend(notify.as_ref().map(|fd| fd.as_raw_fd()));
    close_all_but(&keep)?;
    Ok(Fds {
        net_in: own_fd("network input", net.read)?,
        net_out: own_fd("network output", net.write)?,
        app_in: fdr,
        app_out: fdw,
        notify,
    })
}
