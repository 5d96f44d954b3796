//! s6-tlsd: immediate TLS for an ordinary UCSPI server, with the server's
//! engine and the network on fds 0/1 (see [`super::immediate`]).

use super::engine::{NetFds, SERVER};
use super::immediate;
use crate::cli::error::Fatal;
use crate::cli::opts::Options;
use std::ffi::OsString;

pub fn run(opts: &Options, prog: &[OsString]) -> Result<(), Fatal> {
    immediate::run(&SERVER, opts, prog, NetFds::STANDARD)
}
