//! Arbitrary session tickets for the ticket decoder: `open_at` never
//! panics and opens nothing it did not seal (the fuzzer has no key);
//! whatever it sealed it opens, and once a byte of that ticket is
//! changed or the ticket is cut short, it does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tls::tls::tickets::Ticketer;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let keys = [[0x11u8; 80], [0x22; 80]].concat();
    let ticketer = Ticketer::new(&keys, &[7; 32], 3600).expect("two keys");
    assert_eq!(ticketer.open_at(data, NOW), None, "opened a forged ticket");
    let sealed = ticketer.seal_at(data, NOW).expect("seal");
    assert_eq!(ticketer.open_at(&sealed, NOW).as_deref(), Some(data));
    let pos = data.first().map_or(0, |&b| usize::from(b)) % sealed.len();
    let mut changed = sealed.clone();
    changed[pos] ^= 0x80;
    assert_eq!(ticketer.open_at(&changed, NOW), None, "byte {pos} changed");
    assert_eq!(ticketer.open_at(&sealed[..pos], NOW), None, "cut at {pos}");
});
