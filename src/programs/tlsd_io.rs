//! s6-tlsd-io: the server engine, network on fds 0/1, the application
//! on `fdr fdw`.

use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::programs::engine;
use crate::tls::role::Role;
use std::ffi::OsString;

pub fn run(opts: &Options, operands: &[OsString], log: &Log) -> Result<(), Fatal> {
    engine::run(Role::Server, opts, operands, log)
}
