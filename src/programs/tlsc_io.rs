//! s6-tlsc-io: the client engine, the application on fds 0/1, the
//! network on `fdr fdw`.

use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::programs::engine;
use crate::tls::role::Role;
use std::ffi::OsString;

pub fn run(opts: &Options, operands: &[OsString], log: &Log) -> Result<(), Fatal> {
    engine::run(Role::Client, opts, operands, log)
}
