//! s6-tlsd: immediate TLS for a UCSPI server; see doc/s6-tlsd.md.

use s6_tls::cli::opts::Program;
use std::process::ExitCode;

fn main() -> ExitCode {
    s6_tls::cli::main(Program::Tlsd, s6_tls::programs::tlsd::run)
}
