//! s6-tls: memory-safe UCSPI-TLS tools on rustls.
//!
//! The binaries in `src/bin/` only parse their command line, call into
//! this library and map errors to exit codes. Each module owns one concern:
//!
//! - [`opts`]: command-line parsing with the skalibs conventions;
//! - [`config`]: the TLS configuration from the environment;
//! - [`pki`]: keys, certificate chains and trust anchors, PEM or DER;
//! - [`sni`]: certificate selection by server name;
//! - [`privs`]: dropping root privileges;
//! - [`engine`]: the tunnel between the network and the application;
//! - [`info`]: the connection information string;
//! - [`dn`]: the subject of a certificate as text;
//! - [`fds`]: descriptors named on the command line;
//! - [`plumbing`]: pipes, socket pairs, fork and exec for the wrappers;
//! - [`tlsd_io`], [`ucspitlsd`], [`tlsd`]: what each program does;
//! - [`cli`]: the `main` they share;
//! - [`ucspi`]: the application side of UCSPI-TLS, for programs;
//! - [`log`], [`error`]: messages and exit codes.
pub mod cli;
pub mod config;
pub mod dn;
pub mod engine;
pub mod error;
pub mod fds;
pub mod info;
pub mod log;
pub mod opts;
pub mod pki;
pub mod plumbing;
pub mod privs;
pub mod sni;
pub mod tlsd;
pub mod tlsd_io;
pub mod ucspi;
pub mod ucspitlsd;
