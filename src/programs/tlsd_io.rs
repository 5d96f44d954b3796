//! s6-tlsd-io: takes its descriptors (the network on fds 0/1, `fdr fdw`
//! and `-d notif` by number) and runs the server's engine on them.

use super::engine::{self, SERVER};
use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::plumbing::fds::{own_fd, parse_fd};
use crate::tunnel::Fds;
use std::ffi::OsString;

/// `operands` are `fdr fdw`, as the option parser checked.
pub fn run(opts: &Options, operands: &[OsString], log: &Log) -> Result<(), Fatal> {
    let word = |i: usize| operands[i].to_string_lossy().into_owned();
    let fdr = parse_fd("fdr", &word(0))?;
    let fdw = parse_fd("fdw", &word(1))?;
    let mut named = vec![("fdr", fdr), ("fdw", fdw)];
    named.extend(opts.notif_fd.map(|fd| ("notif", fd)));
    // 0 and 1 are the network and 2 is stderr: an engine owning one of
    // them would close it under the program's feet.
    if let Some((what, fd)) = named.iter().find(|(_, fd)| *fd < 3) {
        return Err(Fatal::usage(format!(
            "{what} must be 3 or more (0 and 1 are the network, 2 is stderr), not {fd}"
        )));
    }
    let distinct = named
        .iter()
        .enumerate()
        .all(|(i, (_, n))| !named[..i].iter().any(|(_, m)| m == n));
    if !distinct {
        return Err(Fatal::usage("fdr, fdw and notif must be distinct"));
    }
    let fds = Fds {
        net_in: own_fd("network input", 0)?,
        net_out: own_fd("network output", 1)?,
        app_in: own_fd("fdr", fdr)?,
        app_out: own_fd("fdw", fdw)?,
        notify: opts.notif_fd.map(|fd| own_fd("notif", fd)).transpose()?,
    };
    engine::run(&SERVER, opts, fds, log)
}
