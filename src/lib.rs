//! s6-tls: memory-safe UCSPI-TLS tools on rustls.
//!
//! The binaries in `src/bin/` only name their program and call into this
//! library. Each folder owns one concern:
//!
//! - [`cli`]: the command line (skalibs conventions), messages, the error
//!   type and its exit codes, and the `main` every program shares;
//! - [`tls`]: the TLS configuration from the environment, server and
//!   client: keys, certificate chains and trust anchors, selection by
//!   server name, verification of the server, session tickets and OCSP
//!   stapling, and the TLS library's errors in words;
//! - [`tunnel`]: the engine between the network and the application;
//! - [`info`]: the connection information string and the subject DN;
//! - [`plumbing`]: descriptors, pipes, fork and exec, privileges;
//! - [`programs`]: what each program does, from its options to its end;
//! - [`ucspi`]: the application side of UCSPI-TLS, for programs that
//!   run under s6-ucspitlsd or s6-ucspitlsc.
pub mod cli;
pub mod info;
pub mod plumbing;
pub mod programs;
pub mod tls;
pub mod tunnel;
pub mod ucspi;
