//! Arbitrary bytes on the notification channel: `complete_len` and
//! `decode` never panic; `complete_len` points just past the first
//! `\0\0`; and whatever `decode` accepts is canonical: encoding the
//! entries gives back exactly the bytes decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tls::info;

fuzz_target!(|data: &[u8]| {
    let whole = info::decode(data);
    let Some(n) = info::complete_len(data) else {
        assert!(!data.windows(2).any(|w| w == b"\0\0"));
        assert!(whole.is_err(), "decoded a string without a terminator");
        return;
    };
    assert!(n >= 2 && n <= data.len());
    assert_eq!(&data[n - 2..n], b"\0\0");
    assert!(!data[..n - 1].windows(2).any(|w| w == b"\0\0"));
    if let Ok(entries) = info::decode(&data[..n]) {
        for (name, value) in &entries {
            assert!(!name.is_empty() && !name.contains(['\0', '=']));
            assert!(value.as_deref().is_none_or(|v| !v.contains('\0')));
        }
        assert_eq!(info::encode(&entries), &data[..n]);
    }
    if n < data.len() {
        // Bytes after the first terminator make the whole undecodable.
        assert!(whole.is_err(), "decoded past the terminator");
    }
});
