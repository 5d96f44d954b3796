//! Arbitrary bytes (and, from the seeds, mutated real keys, PEM and DER)
//! as KEYFILE: `parse_key` returns a signing key or an error (which the
//! programs turn into exit 96), never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tls::tls::pki;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = pki::parse_key(data) {
        // A key we accept can say what it is and make a signer.
        let _ = key.algorithm();
        let _ = key.public_key();
    }
});
