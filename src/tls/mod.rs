//! The TLS side of every program: what the environment says about keys,
//! certificates, trust anchors, server names, session ticket keys and
//! OCSP responses, turned into a rustls configuration (server or client)
//! before the first byte of the handshake, and the connection each role
//! opens with it; and the words for what goes wrong with it ([`errors`]).
pub mod client;
pub mod config;
pub mod errors;
pub mod ocsp;
pub mod pki;
pub mod sni;
pub mod tickets;
