//! Arbitrary environments for SNI certificate selection. Each input line
//! is one variable `NAME=value`; a line starting with `k` or `c` stands
//! for `KEYFILE:` or `CERTFILE:` followed by the rest of the name, so that
//! the fuzzer reaches the pairs quickly. `scan_env` never panics; an error
//! is a configuration error (96); a success pairs every `KEYFILE:x` with
//! its `CERTFILE:x`, with normalised, usable, distinct names. `normalize`
//! and `matches` agree with their definitions on the same names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tls::tls::sni;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

fn var(line: &[u8]) -> (OsString, OsString) {
    let (name, value) = match line.iter().position(|&b| b == b'=') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let name = match name.split_first() {
        Some((b'k', rest)) => [b"KEYFILE:".as_slice(), rest].concat(),
        Some((b'c', rest)) => [b"CERTFILE:".as_slice(), rest].concat(),
        _ => name.to_vec(),
    };
    (OsString::from_vec(name), OsString::from_vec(value.to_vec()))
}

/// The definition of a wildcard match, written differently from sni.rs.
fn wildcard_match(parent: &str, host: &str) -> bool {
    host.len() > parent.len() + 1
        && host.ends_with(parent)
        && host.as_bytes()[host.len() - parent.len() - 1] == b'.'
        && !host[..host.len() - parent.len() - 1].contains('.')
}

fuzz_target!(|data: &[u8]| {
    let vars: Vec<(OsString, OsString)> = data.split(|&b| b == b'\n').map(var).collect();
    let with = |prefix: &[u8]| {
        vars.iter()
            .filter(|(n, _)| n.as_bytes().starts_with(prefix))
            .count()
    };
    match sni::scan_env(vars.clone()) {
        Err(e) => {
            assert_eq!(e.code, 96, "{e:?}");
            assert!(e.message.contains("KEYFILE:") || e.message.contains("CERTFILE:"));
        }
        Ok(sni::Scan { pairs, skipped }) => {
            // Every KEYFILE: is a pair kept or a *.tld pair skipped.
            assert_eq!(pairs.len() + skipped.len(), with(b"KEYFILE:"));
            assert_eq!(pairs.len() + skipped.len(), with(b"CERTFILE:"));
            for w in pairs.windows(2) {
                assert!(w[0].name < w[1].name, "not sorted or not distinct");
            }
            for p in &pairs {
                assert_eq!(sni::normalize(&p.name).as_deref(), Some(&*p.name));
                let plain = p.name.strip_prefix("*.").unwrap_or(&p.name);
                assert!(!plain.contains('*') && !plain.split('.').any(str::is_empty));
                if p.name.starts_with("*.") {
                    assert!(plain.contains('.'), "wildcard over a TLD: {}", p.name);
                }
                // The key and the certificate come from the same x.
                let from = vars.iter().find(|(n, v)| {
                    n.as_bytes().strip_prefix(b"KEYFILE:").is_some_and(|x| {
                        std::str::from_utf8(x)
                            .ok()
                            .and_then(sni::normalize)
                            .as_deref()
                            == Some(&*p.name)
                    }) && *v == p.key
                });
                let (n, _) = from.expect("key from a KEYFILE:x");
                let x = &n.as_bytes()[b"KEYFILE:".len()..];
                let cert_var = [b"CERTFILE:".as_slice(), x].concat();
                let cert = vars.iter().find(|(n, _)| n.as_bytes() == cert_var);
                assert_eq!(cert.map(|(_, v)| v), Some(&p.cert));
            }
            // Matching, on every name against every name.
            for p in &pairs {
                for q in &pairs {
                    let host = q.name.strip_prefix("*.").unwrap_or(&q.name);
                    let expected = match p.name.strip_prefix("*.") {
                        Some(parent) => wildcard_match(parent, host),
                        None => p.name == host,
                    };
                    assert_eq!(sni::matches(&p.name, host), expected, "{} {host}", p.name);
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let n = sni::normalize(text);
        assert_eq!(sni::normalize(&text.to_ascii_uppercase()), n);
        match &n {
            None => assert!(text.is_empty() || text == "."),
            Some(n) => {
                assert!(!n.is_empty() && !n.bytes().any(|b| b.is_ascii_uppercase()));
                assert!(
                    n.len() == text.len() || (n.len() + 1 == text.len() && text.ends_with('.'))
                );
                assert_eq!(sni::normalize(&format!("{n}.")).as_deref(), Some(&**n));
            }
        }
    }
});
