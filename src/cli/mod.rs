//! The command line and what a program says on its way out: option
//! parsing, messages, the error type and its exit codes, and the `main`
//! every program shares (parse the command line, run, and turn a failure
//! into its one message and its exit code).

pub mod error;
pub mod log;
pub mod opts;

use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::{Options, Program};
use std::ffi::OsString;
use std::process::ExitCode;

/// Runs `body` with the parsed options and operands of `program`.
pub fn main(
    program: Program,
    body: impl FnOnce(&Options, &[OsString], &Log) -> Result<(), Fatal>,
) -> ExitCode {
    let mut log = Log {
        prog: program.name(),
        verbosity: 1,
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = opts::parse(program, &args).and_then(|(opts, operands)| {
        log.verbosity = opts.verbosity;
        body(&opts, &operands, &log)
    });
    ExitCode::from(conclude(&log, result))
}

/// A program's end: its one message if it failed, and its exit code.
pub fn conclude(log: &Log, result: Result<(), Fatal>) -> u8 {
    match result {
        Ok(()) => crate::cli::error::EXIT_OK,
        Err(e) => {
            log.exit_message(&e);
            e.code
        }
    }
}
