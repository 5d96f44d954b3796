//! What the two engine programs, s6-tlsd-io and s6-tlsc-io, do alike:
//! take their descriptors (the network and the application on numbers
//! that depend on the role), load the role's configuration, drop
//! privileges, and run the tunnel.

use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::plumbing::fds::{own_fd, parse_fd};
use crate::plumbing::privs;
use crate::tls::role::Role;
use crate::tunnel::{Fds, Tunnel};
use std::ffi::OsString;

/// `operands` are `fdr fdw`, as the option parser checked. The server
/// has the network on 0/1 and the application on `fdr fdw`; the client
/// the reverse.
pub fn run(role: Role, opts: &Options, operands: &[OsString], log: &Log) -> Result<(), Fatal> {
    let word = |i: usize| operands[i].to_string_lossy().into_owned();
    let fdr = parse_fd("fdr", &word(0))?;
    let fdw = parse_fd("fdw", &word(1))?;
    let mut numbers = vec![0, 1, fdr, fdw];
    numbers.extend(opts.notif_fd);
    let distinct = numbers
        .iter()
        .enumerate()
        .all(|(i, n)| !numbers[..i].contains(n));
    if !distinct {
        return Err(Fatal::usage(
            "fdr, fdw and notif must be distinct from each other and from 0 and 1",
        ));
    }
    let notify = opts.notif_fd.map(|fd| own_fd("notif", fd)).transpose()?;
    let fds = match role {
        Role::Server => Fds {
            net_in: own_fd("network input", 0)?,
            net_out: own_fd("network output", 1)?,
            app_in: own_fd("fdr", fdr)?,
            app_out: own_fd("fdw", fdw)?,
            notify,
        },
        Role::Client => Fds {
            net_in: own_fd("fdr", fdr)?,
            net_out: own_fd("fdw", fdw)?,
            app_in: own_fd("application input", 0)?,
            app_out: own_fd("application output", 1)?,
            notify,
        },
    };
    let (uid, gid) = privs::ids_from_env()?;
    let loaded = role.load(opts, log)?;
    privs::drop_privileges(uid, gid)?;
    let (conn, peer) = loaded.open()?;
    Tunnel::new(conn, peer, opts, fds, *log)?.run()
}
