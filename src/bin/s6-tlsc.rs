//! s6-tlsc: immediate TLS for a UCSPI client; see doc/s6-tlsc.md.

use s6_tls::cli::opts::Program;
use std::process::ExitCode;

fn main() -> ExitCode {
    s6_tls::cli::main(Program::Tlsc, s6_tls::programs::tlsc::run)
}
