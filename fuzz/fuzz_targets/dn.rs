//! Arbitrary bytes (and, from the seeds, mutated real certificates) as a
//! client certificate: `check_certificate` and `format_subject` never
//! panic; a certificate that does not check is `<invalid>`; any other
//! subject reads back as `KEY=value` parts in the documented order, with every
//! special character escaped and no NUL byte (it goes into an information
//! string and then an environment variable). `escape_value` is reversible
//! on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tls::info::dn;

#[path = "../../tests/support/dn_model.rs"]
mod dn_model;
use dn_model::{subject_parts, unescape, ORDER};

fuzz_target!(|data: &[u8]| {
    let checked = dn::check_certificate(data);
    let subject = dn::format_subject(data);
    if checked.is_err() {
        assert_eq!(subject.as_deref(), Some("<invalid>"));
    }
    if let Some(s) = &subject {
        assert!(!s.contains('\0'), "NUL in {s:?}");
        if s != "<invalid>" {
            let parts = subject_parts(s).unwrap_or_else(|| panic!("unparsable subject {s:?}"));
            let mut last = 0;
            for (key, value) in parts {
                let rank = ORDER.iter().position(|k| *k == key).expect("known key");
                assert!(rank >= last, "order in {s:?}");
                last = rank;
                unescape(value).unwrap_or_else(|| panic!("unescaped special in {s:?}"));
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let escaped = dn::escape_value(&text);
    assert_eq!(unescape(&escaped).as_deref(), Some(&*text), "{escaped:?}");
});
