//! s6-ucspitlsc: UCSPI-TLS for a STARTTLS client; see doc/s6-ucspitlsc.md.

use s6_tls::cli::opts::Program;
use std::process::ExitCode;

fn main() -> ExitCode {
    s6_tls::cli::main(Program::Ucspitlsc, s6_tls::programs::ucspitlsc::run)
}
