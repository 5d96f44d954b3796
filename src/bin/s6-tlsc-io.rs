//! s6-tlsc-io: the TLS client engine; see doc/s6-tlsc-io.md.

use s6_tls::cli::opts::Program;
use std::process::ExitCode;

fn main() -> ExitCode {
    s6_tls::cli::main(Program::TlscIo, s6_tls::programs::tlsc_io::run)
}
