//! s6-tlsd: see doc/s6-tlsd.md.

use s6_tls::error::Fatal;
use s6_tls::log::Log;
use s6_tls::opts::{self, Program};
use std::process::ExitCode;

fn run(log: &mut Log) -> Result<(), Fatal> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let (opts, prog) = opts::parse(Program::Tlsd, &args)?;
    log.verbosity = opts.verbosity;
    s6_tls::tlsd::run(&opts, &prog)
}

fn main() -> ExitCode {
    let mut log = Log {
        prog: Program::Tlsd.name(),
        verbosity: 1,
    };
    match run(&mut log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log.exit_message(&e);
            ExitCode::from(e.code)
        }
    }
}
