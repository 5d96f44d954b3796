//! s6-ucspitlsd: UCSPI-TLS for a STARTTLS server; see doc/s6-ucspitlsd.md.

use s6_tls::cli::opts::Program;
use std::process::ExitCode;

fn main() -> ExitCode {
    s6_tls::cli::main(Program::Ucspitlsd, s6_tls::programs::ucspitlsd::run)
}
