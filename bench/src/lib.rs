//! The s6-tls benchmark: the client side (`client`), statistics (`stats`)
//! and the system helpers of the driver (`sys`). The binaries are
//! `bench-app` (the UCSPI-TLS application), `bench-client` (one workload
//! against any server) and `bench-driver` (the whole table; run through
//! `bench/run`).
pub mod client;
pub mod stats;
pub mod sys;
