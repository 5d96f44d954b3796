//! Arbitrary bytes (and, from the seeds, mutated real certificates and
//! bundles, PEM and DER) as CERTFILE or a trust anchor: `parse_chain`
//! returns certificates or an error (exit 96), never panics; what it
//! returns is non-empty and every certificate in it passes
//! `check_certificate`, can be formatted and offered to rustls as an anchor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tls::info::dn;
use s6_tls::tls::pki;

fuzz_target!(|data: &[u8]| {
    if let Ok(chain) = pki::parse_chain(data) {
        assert!(!chain.is_empty());
        for cert in &chain {
            assert!(dn::check_certificate(cert).is_ok());
            let _ = dn::format_subject(cert);
        }
        // What rustls does with a trust anchor must not panic either.
        let mut store = rustls::RootCertStore::empty();
        let _ = store.add_parsable_certificates(chain);
    }
});
