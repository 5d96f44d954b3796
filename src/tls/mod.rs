//! The TLS side of every program: what the environment says about keys,
//! certificates, trust anchors and server names, turned into a rustls
//! configuration (server or client) before the first byte of the
//! handshake, and the connection each role opens with it.
pub mod client;
pub mod config;
pub mod pki;
pub mod sni;
