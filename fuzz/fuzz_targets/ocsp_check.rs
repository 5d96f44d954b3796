//! Arbitrary bytes (and, from the seeds, mutated real responses) as an
//! OCSPFILE: `ocsp::check` accepts or gives a reason, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::CertificateDer;
use s6_tls::tls::ocsp;

/// The certificate and CA the seed responses were made for.
const LEAF: &[u8] = include_bytes!("../seeds/ocsp_check/leaf.cert");
const CA: &[u8] = include_bytes!("../seeds/ocsp_check/ca.cert");
/// A time between the seed responses' thisUpdate and nextUpdate.
const SEEDS_VALID_AT: u64 = 1_796_126_400;

fuzz_target!(|data: &[u8]| {
    let chain = [CertificateDer::from(LEAF), CertificateDer::from(CA)];
    for chain in [&chain[..], &chain[..1]] {
        if let Err(why) = ocsp::check(data, chain, SEEDS_VALID_AT) {
            assert!(!why.is_empty() && !why.contains('\n'), "{why:?}");
        }
    }
});
