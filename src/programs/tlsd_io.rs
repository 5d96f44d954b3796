//! s6-tlsd-io: takes its descriptors, loads the TLS configuration, drops
//! privileges, and runs the tunnel.

use crate::cli::error::{Fatal, EXIT_SETUP};
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::info;
use crate::plumbing::fds::{own_fd, parse_fd};
use crate::plumbing::privs;
use crate::tls::config;
use crate::tunnel::{Fds, Peer, Tunnel};
use std::ffi::OsString;

/// `operands` are `fdr fdw`, as the option parser checked.
pub fn run(opts: &Options, operands: &[OsString], log: &Log) -> Result<(), Fatal> {
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
    let fds = Fds {
        net_in: own_fd("network input", 0)?,
        net_out: own_fd("network output", 1)?,
        app_in: own_fd("fdr", fdr)?,
        app_out: own_fd("fdw", fdw)?,
        notify: opts.notif_fd.map(|fd| own_fd("notif", fd)).transpose()?,
    };
    let (uid, gid) = privs::ids_from_env()?;
    let config = config::server_config(opts)?;
    privs::drop_privileges(uid, gid)?;
    let conn = rustls::ServerConnection::new(config)
        .map_err(|e| Fatal::new(EXIT_SETUP, format!("unable to create TLS connection: {e}")))?;
    let peer = Peer {
        called: "client",
        entries: Box::new(info::server_entries),
    };
    Tunnel::new(conn.into(), peer, opts, fds, *log)?.run()
}
