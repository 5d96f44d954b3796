//! s6-tlsc: immediate TLS for an ordinary UCSPI client, with the
//! client's engine and the network on fds 6/7 (`-6`/`-7`), where prog
//! then finds its cleartext (see [`super::immediate`]).

use super::engine::{NetFds, CLIENT};
use super::immediate;
use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use std::ffi::OsString;

pub fn run(opts: &Options, prog: &[OsString], log: &Log) -> Result<(), Fatal> {
    immediate::run(&CLIENT, opts, prog, NetFds::client(opts)?, log)
}
