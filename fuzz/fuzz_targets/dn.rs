//! Arbitrary bytes (and, from the seeds, mutated real certificates) as a
//! client certificate: `check_certificate` and `format_subject` never
//! panic; a certificate that does not check is `<invalid>`; any other
//! subject reads back as `KEY=value` parts in SPEC.md's order, with every
//! special character escaped and no NUL byte (it goes into an information
//! string and then an environment variable). `escape_value` is reversible
//! on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tls::dn;

const ORDER: [&str; 6] = ["C", "ST", "L", "O", "OU", "CN"];
const SPECIAL: &[char] = &[',', '=', '+', '<', '>', '#', '\\', '\n'];

/// Reads one escaped value; `None` if something is not escaped that must be.
fn unescape(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(*chars.get(i + 1)?);
            i += 2;
            continue;
        }
        if SPECIAL.contains(&c) || (c == ' ' && (i == 0 || i + 1 == chars.len())) {
            return None;
        }
        out.push(c);
        i += 1;
    }
    Some(out)
}

/// Splits a formatted subject at its unescaped `, ` separators.
fn parts(subject: &str) -> Option<Vec<(&str, &str)>> {
    let bytes = subject.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => {
                if bytes.get(i + 1) != Some(&b' ') {
                    return None;
                }
                out.push(&subject[start..i]);
                start = i + 2;
                i += 2;
            }
            _ => i += 1,
        }
    }
    out.push(subject.get(start..)?);
    out.into_iter().map(|p| p.split_once('=')).collect()
}

fuzz_target!(|data: &[u8]| {
    let checked = dn::check_certificate(data);
    let subject = dn::format_subject(data);
    if checked.is_err() {
        assert_eq!(subject.as_deref(), Some("<invalid>"));
    }
    if let Some(s) = &subject {
        assert!(!s.contains('\0'), "NUL in {s:?}");
        if s != "<invalid>" {
            let parts = parts(s).unwrap_or_else(|| panic!("unparsable subject {s:?}"));
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
