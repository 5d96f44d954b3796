//! s6-tlsc-io: takes its descriptors (the application on fds 0/1, the
//! network as `fdr fdw`, `-d notif` by number) and runs the client's
//! engine on them.

use super::engine::{self, CLIENT};
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
        net_in: fdr,
        net_out: fdw,
        app_in: own_fd("application input", 0)?,
        app_out: own_fd("application output", 1)?,
        notify,
    };
    engine::run(&CLIENT, opts, fds, log)
}
