//! s6-tlsd-io: the TLS server engine; see doc/s6-tlsd-io.md.

use s6_tls::cli::opts::Program;
use std::process::ExitCode;

fn main() -> ExitCode {
    s6_tls::cli::main(Program::TlsdIo, s6_tls::programs::tlsd_io::run)
}
