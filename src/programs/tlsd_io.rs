//! s6-tlsd-io: takes its descriptors (the network on fds 0/1, `fdr fdw`
//! and `-d notif` by number) and runs the server's engine on them.

use super::engine::{self, SERVER};
use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::plumbing::fds::own_fd;
use crate::tunnel::Fds;
use std::ffi::OsString;

/// `operands` are `fdr fdw`, as the option parser checked.
pub fn run(opts: &Options, operands: &[OsString], log: &Log) -> Result<(), Fatal> {
    let (fdr, fdw, notify) = engine::operand_fds(opts, operands)?;
    let fds = Fds {
        net_in: own_fd("network input", 0)?,
        net_out: own_fd("network output", 1)?,
        app_in: fdr,
        app_out: fdw,
        notify,
    };
    engine::run(&SERVER, opts, fds, log)
}
