//! Property tests for the parsers and encoders of our own (issue 5,
//! "Fuzzing and property tests"): option parsing, the information string,
//! subject formatting and its escaping, SNI names and the environment
//! scan, and key and certificate loading. Each property is checked
//! against an expectation written here from the manual pages' rules (doc/), not by
//! calling the code under test twice. The fuzz targets in `fuzz/` check
//! the same invariants on unstructured input; inputs they found are kept
//! at the end of this file as regression cases.
//!
//! Case counts are chosen so that the whole file runs in a few seconds in
//! a debug build; `PROPTEST_CASES=N` raises every count for a longer run.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use s6_tls::cli::log::Log;
use s6_tls::cli::opts::{self, ClientCert, Options, Program};
use s6_tls::info::{self, dn};
use s6_tls::tls::tickets::{self, Ticketer};
use s6_tls::tls::{pki, sni};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::{Arc, OnceLock};

/// `cases` for one block, unless `PROPTEST_CASES` asks for more; failures
/// are not persisted to files (the regression cases below are explicit).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(cases, |n: u32| n.max(cases));
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn os(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

// ---------------------------------------------------------------------
// Information string
// ---------------------------------------------------------------------

/// A name: non-empty, no NUL, no `=`; sometimes plain ASCII, sometimes
/// anything else Unicode has.
fn info_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z_]{1,12}",
        "[^\\x00=]{1,8}",
        select(vec![
            "SSL_PROTOCOL",
            "SSL_PEER_CERT_SUBJECT",
            "X",
            "\n",
            " "
        ])
        .prop_map(String::from),
    ]
}

/// A value: no NUL, may be empty, may hold `=` and newlines.
fn info_value() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        "[=\n a-z]{0,10}",
        "[^\\x00]{0,16}",
        Just(String::new()),
        Just("CN=a\\,b\\=c\\\nd".to_owned()),
    ])
}

fn info_entries() -> impl Strategy<Value = Vec<info::Entry>> {
    vec((info_name(), info_value()), 0..8)
}

/// Bytes over a small alphabet, so that NULs, `=` and bad UTF-8 meet often.
fn info_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(
            select(vec![0u8, 0, b'=', b'A', b'b', b'\n', 0xff, 0xc3, 0xa9]),
            0..24
        ),
        vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    /// What `encode` writes, `decode` reads back, bare names included.
    #[test]
    fn info_round_trip(entries in info_entries()) {
        let bytes = info::encode(&entries);
        prop_assert!(bytes.ends_with(b"\0\0"));
        prop_assert_eq!(info::decode(&bytes), Ok(entries));
    }

    /// `complete_len` finds exactly the end of an encoded string, whatever
    /// follows it, and nothing in any strict prefix.
    #[test]
    fn info_complete_len_finds_the_end(entries in info_entries(), after in info_bytes()) {
        let bytes = info::encode(&entries);
        for cut in 0..bytes.len() {
            prop_assert_eq!(info::complete_len(&bytes[..cut]), None, "cut at {}", cut);
            prop_assert!(info::decode(&bytes[..cut]).is_err());
        }
        let mut stream = bytes.clone();
        stream.extend_from_slice(&after);
        prop_assert_eq!(info::complete_len(&stream), Some(bytes.len()));
    }

    /// `decode` never panics; what it accepts is exactly what `encode`
    /// would have written (one canonical form), and `complete_len` agrees.
    #[test]
    fn info_decode_arbitrary_bytes(bytes in info_bytes()) {
        if let Ok(entries) = info::decode(&bytes) {
            prop_assert_eq!(info::encode(&entries), bytes.clone());
            prop_assert_eq!(info::complete_len(&bytes), Some(bytes.len()));
        }
    }

    /// Entries the format cannot carry never change the meaning of the
    /// others: bad names are left out, values holding NUL become bare.
    #[test]
    fn info_encode_unrepresentable(entries in vec((
        prop_oneof!["[A-Z]{1,4}", "[A-Z=\\x00]{0,4}"],
        prop::option::of("[a-z=\\x00]{0,6}"),
    ), 0..8)) {
        let expected: Vec<info::Entry> = entries
            .iter()
            .filter(|(n, _)| !n.is_empty() && !n.contains('=') && !n.contains('\0'))
            .map(|(n, v)| (n.clone(), v.clone().filter(|v| !v.contains('\0'))))
            .collect();
        prop_assert_eq!(info::decode(&info::encode(&entries)), Ok(expected));
    }
}

#[test]
fn info_examples() {
    assert_eq!(info::encode(&[]), b"\0\0");
    assert_eq!(
        info::encode(&[("A".into(), Some(String::new())), ("B".into(), None)]),
        b"A=\0B\0\0"
    );
    assert_eq!(info::complete_len(b"A\0\0B=1\0\0"), Some(3));
    assert!(info::decode(b"A\0\0B=1\0\0").is_err());
    assert!(info::decode(b"\0").is_err());
}

/// Every suite the provider can negotiate has its OpenSSL name (doc/s6-tlsd-io.md),
/// never the debug fallback; the names are distinct.
#[test]
fn info_cipher_names() {
    let mut names: Vec<String> = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .map(|s| info::cipher_name(s.suite()))
        .collect();
    for name in &names {
        let openssl_style =
            name.starts_with("TLS_") && !name.starts_with("TLS13_") || name.starts_with("ECDHE-");
        assert!(openssl_style, "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-'),
            "{name}"
        );
    }
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n);
    assert!(n >= 9, "{names:?}");
    let _ = info::cipher_name(rustls::CipherSuite::Unknown(0x1234));
}

// ---------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------

const PROGRAMS: [Program; 6] = [
    Program::TlsdIo,
    Program::Ucspitlsd,
    Program::Tlsd,
    Program::TlscIo,
    Program::Ucspitlsc,
    Program::Tlsc,
];

/// Arbitrary argv words: known options and their pieces, numbers,
/// anything printable, any bytes at all.
fn argv_word() -> impl Strategy<Value = OsString> {
    prop_oneof![
        select(vec![
            "-S",
            "-s",
            "-J",
            "-j",
            "-Y",
            "-y",
            "-Z",
            "-z",
            "-v",
            "-K",
            "-k",
            "-d",
            "--",
            "-",
            "-Sy",
            "-v2",
            "-x",
            "-Sv",
            "--close-notify",
            "--verbosity",
            "--verbosity=2",
            "--kimeout=",
            "--sni",
            "--mandatory-sni",
            "--keep",
            "--notification-fd=3",
            "--handshake-timeout",
            "--nope",
            "--close-notify=1",
            "--=",
            "-6",
            "-7",
            "-63",
            "--servername=mail.example.org",
            "--no-verify-cert",
            "--no-client-cert",
            "--read-fd=9",
            "0",
            "1",
            "prog",
            "4294967295",
            "4294967296",
            "2147483648",
            "007",
        ])
        .prop_map(OsString::from),
        "-?[-0-9a-zA-Z=]{0,6}".prop_map(OsString::from),
        any::<String>().prop_map(OsString::from),
        vec(any::<u8>(), 0..6).prop_map(OsString::from_vec),
    ]
}

/// One option of a command line, with a valid value where it takes one.
#[derive(Debug, Clone)]
enum Item {
    Flag(char),
    Value(char, String),
}

/// The long form of option `c` for `program`: the client programs give
/// `-Y`, `-y`, `-K` and `-k` their own meanings.
fn long_name(program: Program, c: char) -> &'static str {
    match (program.is_client(), c) {
        (true, 'Y') => return "no-client-cert",
        (true, 'y') => return "client-cert",
        (true, 'K') => return "handshake-timeout",
        (true, 'k') => return "servername",
        _ => {}
    }
    match c {
        'S' => "close-notify",
        's' => "no-close-notify",
        'J' => "enforce-close-notify",
        'j' => "no-enforce-close-notify",
        'Y' => "client-cert",
        'y' => "mandatory-client-cert",
        'Z' => "keep",
        'z' => "no-keep",
        'v' => "verbosity",
        'K' => "kimeout",
        'k' => "sni-level",
        'd' => "notification-fd",
        '6' => "read-fd",
        '7' => "write-fd",
        _ => unreachable!(),
    }
}

/// The options a program knows, as items with valid values: decimal
/// numbers that fit (with leading zeros now and then).
fn items(program: Program) -> impl Strategy<Value = Vec<Item>> {
    let flags: &'static str = if program.is_engine() {
        "SsJjYy"
    } else {
        "SsJjYyZz"
    };
    let values: &'static str = match program {
        Program::TlsdIo | Program::TlscIo => "vKkd",
        Program::Ucspitlsc | Program::Tlsc => "vKk67",
        Program::Ucspitlsd | Program::Tlsd => "vKk",
    };
    let number = prop_oneof![
        (0u32..5).prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        (0u32..100).prop_map(|n| format!("00{n}")),
    ];
    let item = prop_oneof![
        select(flags.chars().collect::<Vec<_>>()).prop_map(Item::Flag),
        (
            select(values.chars().collect::<Vec<_>>()),
            number,
            "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
        )
            .prop_map(move |(c, n, name)| {
                let value = match c {
                    // -d is a descriptor: keep it an int.
                    'd' => (n.parse::<u64>().unwrap() % (1 << 31)).to_string(),
                    // The network's descriptors: 3 or more, and never the
                    // same (nor -6 the default 7).
                    '6' => (8 + n.parse::<u64>().unwrap() % 40).to_string(),
                    '7' => (50 + n.parse::<u64>().unwrap() % 50).to_string(),
                    'k' if program.is_client() => name,
                    _ => n,
                };
                Item::Value(c, value)
            }),
    ];
    vec(item, 0..8)
}

/// What the items mean, written from the tables of the manual pages:
/// later options override earlier ones.
fn model(program: Program, items: &[Item]) -> Options {
    let mut o = Options::default();
    for item in items {
        if program.is_client() {
            match item {
                Item::Flag('Y') => o.present_cert = false,
                Item::Flag('y') => o.present_cert = true,
                Item::Value('K', n) => o.handshake_timeout_ms = n.parse().unwrap(),
                Item::Value('k', name) => o.server_name = Some(name.clone()),
                Item::Value('6', n) => o.net_read_fd = n.parse().unwrap(),
                Item::Value('7', n) => o.net_write_fd = n.parse().unwrap(),
                _ => {}
            }
            if matches!(
                item,
                Item::Flag('Y' | 'y') | Item::Value('K' | 'k' | '6' | '7', _)
            ) {
                continue;
            }
        }
        match item {
            Item::Flag('S') => o.close_notify = true,
            Item::Flag('s') => o.close_notify = false,
            Item::Flag('J') => o.enforce_close_notify = true,
            Item::Flag('j') => o.enforce_close_notify = false,
            Item::Flag('Y') => o.client_cert = ClientCert::Optional,
            Item::Flag('y') => o.client_cert = ClientCert::Mandatory,
            Item::Flag('Z') => o.keep_env = true,
            Item::Flag('z') => o.keep_env = false,
            Item::Value(c, n) => {
                let n: u32 = n.parse().unwrap();
                match c {
                    'v' => o.verbosity = n,
                    'K' => o.kimeout_ms = n,
                    'k' => o.sni_level = n.min(2),
                    'd' => o.notif_fd = Some(n as i32),
                    _ => unreachable!(),
                }
            }
            Item::Flag(_) => unreachable!(),
        }
    }
    o
}

/// The ways of writing the same options.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// `-S -y -v 2`
    Separate,
    /// `-S -y -v2`
    Attached,
    /// `--close-notify --verbosity=2`
    LongEquals,
    /// `--close-notify --verbosity 2`
    LongSeparate,
    /// `-Syv2`: flags bundled, a value ends its bundle.
    Bundled,
}

const STYLES: [Style; 5] = [
    Style::Separate,
    Style::Attached,
    Style::LongEquals,
    Style::LongSeparate,
    Style::Bundled,
];

fn render(program: Program, items: &[Item], style: Style) -> Vec<String> {
    let mut out = Vec::new();
    let mut bundle = String::new();
    for item in items {
        match (style, item) {
            (Style::Bundled, Item::Flag(c)) => bundle.push(*c),
            (Style::Bundled, Item::Value(c, n)) => {
                out.push(format!("-{bundle}{c}{n}"));
                bundle.clear();
            }
            (Style::Separate | Style::Attached, Item::Flag(c)) => out.push(format!("-{c}")),
            (Style::LongEquals | Style::LongSeparate, Item::Flag(c)) => {
                out.push(format!("--{}", long_name(program, *c)))
            }
            (Style::Separate, Item::Value(c, n)) => out.extend([format!("-{c}"), n.clone()]),
            (Style::Attached, Item::Value(c, n)) => out.push(format!("-{c}{n}")),
            (Style::LongEquals, Item::Value(c, n)) => {
                out.push(format!("--{}={n}", long_name(program, *c)))
            }
            (Style::LongSeparate, Item::Value(c, n)) => {
                out.extend([format!("--{}", long_name(program, *c)), n.clone()])
            }
        }
    }
    if !bundle.is_empty() {
        out.push(format!("-{bundle}"));
    }
    out
}

fn operands_for(program: Program) -> Vec<OsString> {
    if program.is_engine() {
        os(&["0", "1"])
    } else {
        os(&["prog"])
    }
}

fn program_and_items() -> impl Strategy<Value = (Program, Vec<Item>)> {
    select(PROGRAMS.to_vec()).prop_flat_map(|p| (Just(p), items(p)))
}

/// An operand that is not an option: does not start with `-`.
fn operand() -> impl Strategy<Value = OsString> {
    prop_oneof![
        "[^-\\x00][^\\x00]{0,8}".prop_map(OsString::from),
        (
            any::<u8>().prop_filter("not a dash", |b| *b != b'-'),
            vec(any::<u8>(), 0..6)
        )
            .prop_map(|(b, rest)| OsString::from_vec([vec![b], rest].concat())),
        Just(OsString::from("-")),
    ]
}

/// A decimal number as skalibs reads it, judged without `str::parse`:
/// digits only, at least one, value at most 2^32 - 1.
fn decimal_model(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        n = n * 10 + u64::from(b - b'0');
        if n > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(n as u32)
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary argv never panics: either options and operands that obey
    /// the rules, or a usage error with exit code 100: a one-line problem
    /// and the usage summary.
    #[test]
    fn opts_arbitrary_argv(program in select(PROGRAMS.to_vec()), args in vec(argv_word(), 0..8)) {
        match opts::parse(program, &args) {
            Err(e) => {
                prop_assert_eq!(e.code, 100);
                let prefix = format!("usage: {} ", program.name());
                let usage = e.usage.unwrap_or_default();
                prop_assert!(usage.starts_with(&prefix), "{:?}", usage);
                prop_assert!(!e.message.is_empty() && !e.message.contains('\n'), "{:?}", e.message);
                prop_assert!(!usage.contains('\n'));
            }
            Ok((o, operands)) => {
                if program.is_engine() {
                    prop_assert_eq!(operands.len(), 2);
                } else {
                    prop_assert!(!operands.is_empty());
                }
                let start = args.len() - operands.len();
                prop_assert_eq!(&args[start..], &operands[..]);
                let first = operands[0].as_bytes();
                let after_dashdash = start > 0 && args[start - 1] == *"--";
                prop_assert!(after_dashdash || first == b"-" || !first.starts_with(b"-"));
                if program.is_engine() {
                    prop_assert!(!o.keep_env);
                } else {
                    prop_assert_eq!(o.notif_fd, None);
                }
            }
        }
    }

    /// Every way of writing the same options parses to the same thing,
    /// and to what the options mean.
    #[test]
    fn opts_styles_are_equivalent((program, items) in program_and_items()) {
        let expected = model(program, &items);
        for style in STYLES {
            let mut args: Vec<OsString> = render(program, &items, style).into_iter().map(OsString::from).collect();
            args.extend(operands_for(program));
            let parsed = opts::parse(program, &args);
            prop_assert_eq!(parsed, Ok((expected.clone(), operands_for(program))), "{:?}", args);
        }
    }

    /// Parsing stops at the first word that does not start with `-`:
    /// everything from there on belongs to prog, options or not.
    #[test]
    fn opts_stop_at_first_operand(
        (program, items) in program_and_items(),
        style in select(STYLES.to_vec()),
        first in operand(),
        tail in vec(argv_word(), 0..5),
    ) {
        let mut args: Vec<OsString> = render(program, &items, style).into_iter().map(OsString::from).collect();
        let mut operands = vec![first];
        if program.is_engine() {
            // The engines take exactly two operands.
            operands.push(tail.first().cloned().unwrap_or_else(|| "1".into()));
        } else {
            operands.extend(tail);
        }
        args.extend(operands.iter().cloned());
        prop_assert_eq!(opts::parse(program, &args), Ok((model(program, &items), operands)));
    }

    /// ... and right after `--`, whatever the words look like.
    #[test]
    fn opts_stop_after_dashdash(
        (program, items) in program_and_items(),
        style in select(STYLES.to_vec()),
        rest in vec(argv_word(), 1..5),
    ) {
        let mut args: Vec<OsString> = render(program, &items, style).into_iter().map(OsString::from).collect();
        args.push("--".into());
        args.extend(rest.iter().cloned());
        let parsed = opts::parse(program, &args);
        if program.is_engine() && rest.len() != 2 {
            prop_assert_eq!(parsed.map_err(|e| e.code), Err(100));
        } else {
            prop_assert_eq!(parsed, Ok((model(program, &items), rest)));
        }
    }

    /// A word that starts with `-` and is not UTF-8 is an unknown option,
    /// not prog: skalibs reads argv as bytes.
    #[test]
    fn opts_non_utf8_dash_word_is_usage(
        (program, items) in program_and_items(),
        mut junk in vec(any::<u8>(), 0..6),
        // Bytes that never occur in UTF-8, anywhere after the dash.
        (bad, at) in (select(vec![0xc0u8, 0xc1, 0xf5, 0xf8, 0xfe, 0xff]), any::<usize>()),
    ) {
        let mut args: Vec<OsString> = render(program, &items, Style::Bundled).into_iter().map(OsString::from).collect();
        junk.insert(at % (junk.len() + 1), bad);
        let word = [b"-".as_slice(), &junk].concat();
        args.push(OsString::from_vec(word));
        args.extend(operands_for(program));
        prop_assert_eq!(opts::parse(program, &args).map_err(|e| e.code), Err(100));
    }

    /// Values: accepted exactly when they are decimal numbers that fit,
    /// in every form; `-d` also has to fit a descriptor.
    #[test]
    fn opts_values(
        s in prop_oneof!["[0-9]{0,12}", "[-+ 0-9a-f]{0,4}", any::<String>()],
        c in select(vec!['v', 'K', 'k', 'd']),
    ) {
        let expected = decimal_model(&s).filter(|n| c != 'd' || *n <= i32::MAX as u32);
        prop_assert_eq!(opts::parse_decimal(&s), decimal_model(&s));
        for args in [
            vec![format!("-{c}"), s.clone()],
            vec![format!("-{c}{s}")],
            vec![format!("--{}={s}", long_name(Program::TlsdIo, c))],
            vec![format!("--{}", long_name(Program::TlsdIo, c)), s.clone()],
        ] {
            let mut args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
            args.extend(os(&["0", "1"]));
            let parsed = opts::parse(Program::TlsdIo, &args);
            match expected {
                Some(n) => {
                    let items = [Item::Value(c, n.to_string())];
                    prop_assert_eq!(parsed, Ok((model(Program::TlsdIo, &items), os(&["0", "1"]))), "{:?}", args);
                }
                // `-v2x` and `--verbosity=-1` are usage errors; `-v ""`
                // too. (Separate `-v -1` takes `-1` as the value.)
                None => prop_assert_eq!(parsed.map_err(|e| e.code), Err(100), "{:?}", args),
            }
        }
    }
}

#[test]
fn opts_spec_examples() {
    let parse = |w: &[&str]| opts::parse(Program::Ucspitlsd, &os(w)).unwrap();
    assert_eq!(parse(&["-Sy", "p"]), parse(&["-S", "-y", "p"]));
    let v2 = parse(&["-v2", "p"]);
    assert_eq!(v2.0.verbosity, 2);
    for form in [
        &["-v", "2", "p"][..],
        &["--verbosity=2", "p"],
        &["--verbosity", "2", "p"],
    ] {
        assert_eq!(parse(form), v2, "{form:?}");
    }
    // Never permute: `prog -x` passes `-x` to prog.
    assert_eq!(parse(&["prog", "-S"]).1, os(&["prog", "-S"]));
    assert!(!parse(&["prog", "-S"]).0.close_notify);
}

// ---------------------------------------------------------------------
// Subject DN: escaping and formatting
// ---------------------------------------------------------------------

#[path = "support/dn_model.rs"]
mod dn_model;
use dn_model::{subject_parts, unescape, ORDER, SPECIAL};

/// The escaping of doc/s6-tlsd-io.md, written another way than dn.rs: first the
/// space at each end, then every special character of the middle.
fn expected_escape(value: &str) -> String {
    let (lead, rest) = match value.strip_prefix(' ') {
        Some(rest) => ("\\ ", rest),
        None => ("", value),
    };
    let (middle, trail) = match rest.strip_suffix(' ') {
        Some(middle) => (middle, "\\ "),
        None => (rest, ""),
    };
    let mut out = lead.to_owned();
    for c in middle.chars() {
        if SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out + trail
}

/// Whatever `format_subject` returns must be one of the three shapes of
/// doc/s6-tlsd-io.md, with no NUL (it goes into an information string).
fn check_subject_shape(subject: &Option<String>) -> Result<(), TestCaseError> {
    let Some(s) = subject else { return Ok(()) };
    prop_assert!(!s.contains('\0'), "NUL in {:?}", s);
    if s == "<invalid>" {
        return Ok(());
    }
    let parts = subject_parts(s);
    prop_assert!(parts.is_some(), "unparsable subject {:?}", s);
    let mut last = 0;
    for (key, value) in parts.unwrap() {
        let rank = ORDER.iter().position(|k| *k == key);
        prop_assert!(rank.is_some(), "unknown key in {:?}", s);
        prop_assert!(rank.unwrap() >= last, "out of order: {:?}", s);
        last = rank.unwrap();
        prop_assert!(unescape(value).is_some(), "badly escaped {:?}", s);
    }
    Ok(())
}

fn dn_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ ,=+<>#\\\\\na-zé;\"]{0,12}",
        any::<String>(),
        vec(select(vec![' ', ',', '\\', 'a', '\n', '#']), 0..6).prop_map(String::from_iter),
    ]
}

proptest! {
    #![proptest_config(config(2048))]

    /// `escape_value` is reversible, escapes everything the manual lists,
    /// and matches the rules written independently above.
    #[test]
    fn dn_escape_round_trip(value in dn_text()) {
        let escaped = dn::escape_value(&value);
        prop_assert_eq!(unescape(&escaped), Some(value.clone()), "{:?}", escaped);
        prop_assert_eq!(&escaped, &expected_escape(&value));
        if !value.contains(SPECIAL) && !value.starts_with(' ') && !value.ends_with(' ') {
            prop_assert_eq!(escaped, value);
        }
    }

    /// Arbitrary bytes are not a certificate; nothing panics.
    #[test]
    fn dn_arbitrary_bytes(bytes in prop_oneof![
        vec(any::<u8>(), 0..64),
        vec(select(vec![0x30u8, 0x31, 0x06, 0x0c, 0x02, 0xa0, 0x80, 0x81, 0x82, 0x84, 0x00, 0x03, 0x55, 0x04]), 0..64),
    ]) {
        let checked = dn::check_certificate(&bytes);
        let subject = dn::format_subject(&bytes);
        if checked.is_err() {
            prop_assert_eq!(subject.as_deref(), Some("<invalid>"));
        }
        check_subject_shape(&subject)?;
    }
}

/// An attribute of a generated certificate: its type (0..6 the shown
/// ones in the documented order, 6.. others), how it is encoded, its text.
#[derive(Debug, Clone)]
struct Attr {
    kind: usize,
    encoding: u8,
    value: String,
}

/// Attribute types by index: the six shown ones, then three that are not.
fn dn_type(kind: usize) -> rcgen::DnType {
    use rcgen::DnType::*;
    match kind {
        0 => CountryName,
        1 => StateOrProvinceName,
        2 => LocalityName,
        3 => OrganizationName,
        4 => OrganizationalUnitName,
        5 => CommonName,
        6 => CustomDnType(vec![2, 5, 4, 5]), // serialNumber
        7 => CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]), // emailAddress
        _ => CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]), // DC
    }
}

/// The value as rcgen will encode it, made to fit the string type chosen
/// (rcgen refuses what a type cannot hold).
fn dn_value(encoding: u8, text: &str) -> (rcgen::DnValue, String) {
    use rcgen::DnValue;
    let fit = |ok: &dyn Fn(char) -> bool| -> String {
        text.chars().map(|c| if ok(c) { c } else { 'x' }).collect()
    };
    match encoding {
        1 => {
            // yasna refuses `?`, which rcgen lets through.
            let t = fit(&|c| c.is_ascii_alphanumeric() || " '()+,-./:=".contains(c));
            (DnValue::PrintableString(t.as_str().try_into().unwrap()), t)
        }
        2 => {
            let t = fit(&|c| c.is_ascii());
            (DnValue::Ia5String(t.as_str().try_into().unwrap()), t)
        }
        3 => {
            let t = fit(&|c| (' '..='~').contains(&c));
            (DnValue::TeletexString(t.as_str().try_into().unwrap()), t)
        }
        4 => {
            let t = fit(&|c| (c as u32) < 0xffff);
            (DnValue::BmpString(t.as_str().try_into().unwrap()), t)
        }
        5 => (
            DnValue::UniversalString(text.try_into().unwrap()),
            text.to_owned(),
        ),
        _ => (DnValue::Utf8String(text.to_owned()), text.to_owned()),
    }
}

fn key_pair() -> &'static rcgen::KeyPair {
    static KEY: OnceLock<rcgen::KeyPair> = OnceLock::new();
    KEY.get_or_init(|| rcgen::KeyPair::generate().unwrap())
}

/// A self-signed certificate with these subject attributes, in this
/// order; returns its DER and the texts as encoded.
fn certificate(attrs: &[Attr]) -> (Vec<u8>, Vec<(usize, String)>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let mut texts = Vec::new();
    for a in attrs {
        let (value, text) = dn_value(a.encoding, &a.value);
        params.distinguished_name.push(dn_type(a.kind), value);
        texts.push((a.kind, text));
    }
    let cert = params.self_signed(key_pair()).unwrap();
    (cert.der().to_vec(), texts)
}

/// Distinct attribute types in any order, with arbitrary texts.
fn attrs() -> impl Strategy<Value = Vec<Attr>> {
    subsequence((0..9usize).collect::<Vec<_>>(), 0..=9)
        .prop_shuffle()
        .prop_flat_map(|kinds| {
            let n = kinds.len();
            (
                Just(kinds),
                vec(0u8..8, n),
                vec(prop_oneof![3 => dn_text(), 1 => "[a-z\\x00]{1,4}"], n),
            )
        })
        .prop_map(|(kinds, encodings, values)| {
            kinds
                .into_iter()
                .zip(encodings)
                .zip(values)
                .map(|((kind, encoding), value)| Attr {
                    kind,
                    encoding,
                    value,
                })
                .collect()
        })
}

/// The documented subject: the shown attributes present, in the order C, ST,
/// L, O, OU, CN, escaped, joined by `, `; a bare name if none; and
/// `<invalid>` when a value cannot travel (it holds a NUL).
fn expected_subject(texts: &[(usize, String)]) -> Option<String> {
    let mut shown: Vec<&(usize, String)> = texts.iter().filter(|(k, _)| *k < 6).collect();
    if shown.iter().any(|(_, t)| t.contains('\0')) {
        return Some("<invalid>".into());
    }
    if shown.is_empty() {
        return None;
    }
    shown.sort_by_key(|(k, _)| *k);
    let parts: Vec<String> = shown
        .iter()
        .map(|(k, t)| format!("{}={}", ORDER[*k], expected_escape(t)))
        .collect();
    Some(parts.join(", "))
}

/// Byte-level mutations of real input: replace, insert, delete, truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(
        prop_oneof![
            4 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
            1 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Insert(p, b)),
            1 => any::<usize>().prop_map(Mutation::Delete),
            1 => any::<usize>().prop_map(Mutation::Truncate),
        ],
        1..5,
    )
}

fn mutate(mut bytes: Vec<u8>, how: &[Mutation]) -> Vec<u8> {
    for m in how {
        let len = bytes.len();
        match *m {
            Mutation::Set(p, b) if len > 0 => bytes[p % len] = b,
            Mutation::Insert(p, b) => bytes.insert(p % (len + 1), b),
            Mutation::Delete(p) if len > 0 => {
                bytes.remove(p % len);
            }
            Mutation::Truncate(p) => bytes.truncate(p % (len + 1)),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config(256))]

    /// Certificates made by rcgen with arbitrary subjects (any attribute
    /// order, any of the directory string types, arbitrary text) give
    /// exactly the subject doc/s6-tlsd-io.md describes.
    #[test]
    fn dn_format_generated_certificates(attrs in attrs()) {
        let (der, texts) = certificate(&attrs);
        prop_assert!(dn::check_certificate(&der).is_ok());
        prop_assert_eq!(dn::format_subject(&der), expected_subject(&texts));
    }

    /// Mutated and truncated real certificates: no panic, and the result
    /// keeps its shape; a strict prefix never passes as a certificate.
    #[test]
    fn dn_mutated_certificates(attrs in attrs(), how in mutations(), cut in any::<usize>()) {
        let (der, _) = certificate(&attrs);
        let mutated = mutate(der.clone(), &how);
        let subject = dn::format_subject(&mutated);
        if dn::check_certificate(&mutated).is_err() {
            prop_assert_eq!(subject.as_deref(), Some("<invalid>"));
        }
        check_subject_shape(&subject)?;
        let prefix = &der[..cut % der.len()];
        prop_assert!(dn::check_certificate(prefix).is_err());
        prop_assert_eq!(dn::format_subject(prefix), Some("<invalid>".to_owned()));
    }
}

#[test]
fn dn_spec_examples() {
    let attr = |kind, value: &str| Attr {
        kind,
        encoding: 0,
        value: value.into(),
    };
    let full = [
        attr(5, "full.client"),
        attr(4, "Testing Unit"),
        attr(3, "Example Org"),
        attr(2, "Paris"),
        attr(1, "Ile-de-France"),
        attr(0, "FR"),
    ];
    let cases: [(&[Attr], Option<&str>); 5] = [
        (
            &full,
            Some("C=FR, ST=Ile-de-France, L=Paris, O=Example Org, OU=Testing Unit, CN=full.client"),
        ),
        (
            &[attr(5, "a,b=c+d<e>f#g\\h;i")],
            Some("CN=a\\,b\\=c\\+d\\<e\\>f\\#g\\\\h;i"),
        ),
        (&[attr(5, " lead trail ")], Some("CN=\\ lead trail\\ ")),
        (&[attr(5, "line1\nline2")], Some("CN=line1\\\nline2")),
        (&[attr(7, "x@example.org")], None),
    ];
    for (attrs, expected) in cases {
        let (der, _) = certificate(attrs);
        assert_eq!(dn::format_subject(&der).as_deref(), expected);
    }
}

// ---------------------------------------------------------------------
// SNI: names, matching, selection, the environment
// ---------------------------------------------------------------------

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{0,6}"
}

fn signing_key() -> Arc<dyn rustls::sign::SigningKey> {
    static KEY: OnceLock<Arc<dyn rustls::sign::SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| pki::parse_key(&key_pair().serialize_der()).unwrap())
        .clone()
}

/// A certified key told apart by the bytes of its (fake) certificate.
fn tagged(tag: u8) -> Arc<rustls::sign::CertifiedKey> {
    Arc::new(rustls::sign::CertifiedKey::new(
        vec![rustls::pki_types::CertificateDer::from(vec![tag])],
        signing_key(),
    ))
}

fn tag_of(key: Option<Arc<rustls::sign::CertifiedKey>>) -> Option<u8> {
    key.map(|k| k.cert[0].as_ref()[0])
}

/// A name for the environment (as x in `KEYFILE:x`): a few fixed ones,
/// plain and wildcard names, TLD wildcards, broken ones.
fn env_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => select(vec![
            "a.org",
            "A.ORG",
            "a.org.",
            "*.a.org",
            "*.A.org.",
            "b.a.org",
            "*.org",
            "*.com.",
            "*",
            "*.",
            "",
            ".",
            "a..org",
            "a.*.org",
            "**.a.org",
            "org",
            "*.b.a.org",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => vec(label(), 1..4).prop_map(|l| l.join(".").into_bytes()),
        1 => vec(label(), 1..4).prop_map(|l| format!("*.{}", l.join(".")).into_bytes()),
        1 => vec(any::<u8>(), 0..4),
    ]
}

/// Environment variables: the pairs' halves and unrelated ones.
fn env_var() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let name = prop_oneof![
        4 => env_name().prop_map(|n| [b"KEYFILE:".to_vec(), n].concat()),
        4 => env_name().prop_map(|n| [b"CERTFILE:".to_vec(), n].concat()),
        1 => select(vec!["KEYFILE", "CERTFILE", "PATH", "KEYFILE_x", "keyfile:a.org"])
            .prop_map(|s| s.as_bytes().to_vec()),
    ];
    (name, vec(any::<u8>(), 0..4))
}

/// An environment: single variables, and whole pairs (so that complete
/// configurations, and names equal once normalised, come up often).
fn env() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let pair =
        (env_name(), vec(any::<u8>(), 0..3), vec(any::<u8>(), 0..3)).prop_map(|(n, k, c)| {
            vec![
                ([b"KEYFILE:".to_vec(), n.clone()].concat(), k),
                ([b"CERTFILE:".to_vec(), n].concat(), c),
            ]
        });
    let single = env_var().prop_map(|v| vec![v]);
    vec(prop_oneof![2 => pair, 1 => single], 0..6).prop_map(|groups| groups.concat())
}

/// Is a normalised environment name usable? A DNS name of non-empty
/// labels without `*`, or `*.` and such a name of at least two labels.
fn usable(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let plain =
        |ls: &[&str]| !ls.is_empty() && ls.iter().all(|l| !l.is_empty() && !l.contains('*'));
    match labels.split_first() {
        Some((&"*", parent)) => parent.len() >= 2 && plain(parent),
        _ => plain(&labels),
    }
}

/// What `scan_env` should make of an environment with distinct variable
/// names: the pairs sorted by normalised name and the `*.tld` pairs
/// skipped, or an error.
fn scan_model(vars: &[(Vec<u8>, Vec<u8>)]) -> Result<sni::Scan, ()> {
    use std::collections::BTreeMap;
    let half = |prefix: &[u8]| -> BTreeMap<Vec<u8>, Vec<u8>> {
        vars.iter()
            .filter_map(|(n, v)| Some((n.strip_prefix(prefix)?.to_vec(), v.clone())))
            .collect()
    };
    let (keys, certs) = (half(b"KEYFILE:"), half(b"CERTFILE:"));
    if !keys.keys().eq(certs.keys()) {
        return Err(());
    }
    let mut pairs = Vec::new();
    let mut skipped = Vec::new();
    for (x, key) in keys {
        let text = String::from_utf8(x.clone()).map_err(|_| ())?;
        let name = text.strip_suffix('.').unwrap_or(&text).to_ascii_lowercase();
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() == 2 && labels[0] == "*" && usable(labels[1]) {
            skipped.push(format!("KEYFILE:{text}"));
            continue;
        }
        if !usable(&name) {
            return Err(());
        }
        pairs.push(sni::NamedPair {
            name,
            cert: OsString::from_vec(certs[&x].clone()),
            key: OsString::from_vec(key),
        });
    }
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    if pairs.windows(2).any(|w| w[0].name == w[1].name) {
        return Err(());
    }
    skipped.sort();
    Ok(sni::Scan { pairs, skipped })
}

proptest! {
    #![proptest_config(config(1024))]

    /// `normalize` ignores case and one trailing dot, and nothing else.
    #[test]
    fn sni_normalize(labels in vec(label(), 1..5), spelling in any::<u64>()) {
        let name = labels.join(".");
        let written: String = name
            .chars()
            .enumerate()
            .map(|(i, c)| if (spelling >> (i % 63)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect();
        prop_assert_eq!(sni::normalize(&written), Some(name.clone()));
        prop_assert_eq!(sni::normalize(&format!("{written}.")), Some(name.clone()));
        prop_assert_eq!(sni::normalize(&format!("{written}..")), Some(format!("{name}.")));
        prop_assert_eq!(sni::normalize(&format!("x{written}")), Some(format!("x{name}")));
    }

    /// `*.parent` matches a host of exactly one more label than parent
    /// and nothing else; a plain name matches itself only.
    #[test]
    fn sni_wildcard_one_label(
        parent in vec(label(), 2..4),
        host in vec(label(), 0..6),
        extra in label(),
        how in 0..4u8,
    ) {
        let host = match how {
            0 => [vec![extra], parent.clone()].concat(),
            1 => [vec![extra.clone(), extra], parent.clone()].concat(),
            2 => parent.clone(),
            _ => host,
        };
        let pattern = format!("*.{}", parent.join("."));
        let expected = host.len() == parent.len() + 1 && host[1..] == parent[..];
        prop_assert_eq!(sni::matches(&pattern, &host.join(".")), expected);
        prop_assert_eq!(
            sni::matches(&parent.join("."), &host.join(".")),
            host == parent
        );
    }

    /// Selection: the exact name (any case, trailing dot or not), then
    /// the one-label wildcard, then the plain pair, else nothing.
    #[test]
    fn sni_select(
        names in vec(vec(label(), 1..4), 0..6),
        wild in vec(any::<bool>(), 6),
        with_default in any::<bool>(),
        host in vec(label(), 1..5),
        (hosts_from, spelling) in (0..8usize, any::<u64>()),
    ) {
        // Names as scan_env would give them: normalised, distinct.
        let mut patterns: Vec<String> = names
            .iter()
            .zip(&wild)
            .filter(|(l, _)| l.len() >= 2)
            .map(|(l, w)| if *w { format!("*.{}", l.join(".")) } else { l.join(".") })
            .chain(names.iter().filter(|l| l.len() < 2).map(|l| l.join(".")))
            .collect();
        patterns.sort();
        patterns.dedup();
        let named: Vec<(String, _)> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), tagged(i as u8)))
            .collect();
        let default = with_default.then(|| tagged(200));
        let selector = sni::Selector::new(named, default);
        // A host that hits a pattern now and then.
        let host = match patterns.get(hosts_from) {
            Some(p) => match p.strip_prefix("*.") {
                Some(parent) => format!("{}.{parent}", host[0]),
                None => p.clone(),
            },
            None => host.join("."),
        };
        let written: String = host
            .chars()
            .enumerate()
            .map(|(i, c)| if (spelling >> (i % 63)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
            .collect();
        let written = if spelling >> 63 == 1 { format!("{written}.") } else { written };
        let exact = patterns.iter().position(|p| *p == host);
        let wildcard = patterns.iter().position(|p| {
            p.strip_prefix("*.").is_some_and(|parent| {
                host.split_once('.').is_some_and(|(_, rest)| rest == parent)
            })
        });
        let expected = exact
            .or(wildcard)
            .map(|i| i as u8)
            .or(with_default.then_some(200));
        prop_assert_eq!(tag_of(selector.select(Some(&written))), expected);
        prop_assert_eq!(
            tag_of(selector.select(None)),
            with_default.then_some(200)
        );
    }

    /// A wildcard over a top-level domain is skipped, named by its
    /// variable; one over a name of two labels or more is a pair.
    #[test]
    fn sni_tld_wildcard_skipped(tld in "[a-z]{1,6}", sld in label(), case in any::<u64>()) {
        let v = |n: String, p: &str| (OsString::from(n), OsString::from(p));
        for name in [format!("*.{tld}"), format!("*.{tld}.")] {
            let name: String = name.chars().enumerate()
                .map(|(i, c)| if (case >> (i % 63)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            let scan = sni::scan_env([
                v(format!("KEYFILE:{name}"), "k"),
                v(format!("CERTFILE:{name}"), "c"),
            ]).unwrap();
            prop_assert!(scan.pairs.is_empty());
            prop_assert_eq!(scan.skipped, vec![format!("KEYFILE:{name}")]);
        }
        let ok = sni::scan_env([
            v(format!("KEYFILE:*.{sld}.{tld}"), "k"),
            v(format!("CERTFILE:*.{sld}.{tld}"), "c"),
        ]).unwrap();
        prop_assert_eq!(&ok.pairs[0].name, &format!("*.{sld}.{tld}"));
        prop_assert!(ok.skipped.is_empty());
    }

    /// An environment (distinct variable names, as a real one has) gives
    /// the pairs the model expects, or an error with exit code 96.
    #[test]
    fn sni_scan_env_model(vars in env()) {
        let mut seen = std::collections::BTreeSet::new();
        let vars: Vec<_> = vars.into_iter().filter(|(n, _)| seen.insert(n.clone())).collect();
        let got = sni::scan_env(
            vars.iter().map(|(n, v)| (OsString::from_vec(n.clone()), OsString::from_vec(v.clone()))),
        );
        match (got, scan_model(&vars)) {
            (Ok(pairs), Ok(expected)) => prop_assert_eq!(pairs, expected),
            (Err(e), Err(())) => prop_assert_eq!(e.code, 96),
            (got, expected) => {
                return Err(TestCaseError::fail(format!("{vars:?}: got {got:?}, expected {expected:?}")));
            }
        }
    }

    /// Any list at all (duplicates too): no panic; an error is a 96.
    #[test]
    fn sni_scan_env_arbitrary(vars in vec((vec(any::<u8>(), 0..12), vec(any::<u8>(), 0..4)), 0..8),
                              more in vec(env_var(), 0..6)) {
        let all = vars.into_iter().chain(more).map(|(n, v)| (OsString::from_vec(n), OsString::from_vec(v)));
        if let Err(e) = sni::scan_env(all) {
            prop_assert_eq!(e.code, 96);
        }
    }
}

// ---------------------------------------------------------------------
// Keys and certificates
// ---------------------------------------------------------------------

/// Real keys and certificates in every accepted form (the fuzz seeds,
/// made with openssl): PKCS#8, PKCS#1 and SEC1, PEM and DER.
/// `load_pair` warns about certificates it serves anyway; not here.
const QUIET: Log = Log {
    prog: "properties",
    verbosity: 0,
};

const KEYS: &[(&str, &[u8])] = &[
    (
        "rsa-pkcs8.pem",
        include_bytes!("../fuzz/seeds/pki_key/rsa-pkcs8.pem"),
    ),
    (
        "rsa-pkcs8.der",
        include_bytes!("../fuzz/seeds/pki_key/rsa-pkcs8.der"),
    ),
    (
        "rsa-pkcs1.pem",
        include_bytes!("../fuzz/seeds/pki_key/rsa-pkcs1.pem"),
    ),
    (
        "rsa-pkcs1.der",
        include_bytes!("../fuzz/seeds/pki_key/rsa-pkcs1.der"),
    ),
    (
        "p256-pkcs8.pem",
        include_bytes!("../fuzz/seeds/pki_key/p256-pkcs8.pem"),
    ),
    (
        "p256-pkcs8.der",
        include_bytes!("../fuzz/seeds/pki_key/p256-pkcs8.der"),
    ),
    (
        "p256-sec1.pem",
        include_bytes!("../fuzz/seeds/pki_key/p256-sec1.pem"),
    ),
    (
        "p256-sec1.der",
        include_bytes!("../fuzz/seeds/pki_key/p256-sec1.der"),
    ),
    (
        "p384-pkcs8.pem",
        include_bytes!("../fuzz/seeds/pki_key/p384-pkcs8.pem"),
    ),
    (
        "p384-pkcs8.der",
        include_bytes!("../fuzz/seeds/pki_key/p384-pkcs8.der"),
    ),
    (
        "ed-pkcs8.pem",
        include_bytes!("../fuzz/seeds/pki_key/ed-pkcs8.pem"),
    ),
    (
        "ed-pkcs8.der",
        include_bytes!("../fuzz/seeds/pki_key/ed-pkcs8.der"),
    ),
    (
        "cert-then-key.pem",
        include_bytes!("../fuzz/seeds/pki_key/cert-then-key.pem"),
    ),
];

const CHAINS: &[(&str, &[u8])] = &[
    (
        "chain.pem",
        include_bytes!("../fuzz/seeds/pki_chain/chain.pem"),
    ),
    (
        "rsa-cert.pem",
        include_bytes!("../fuzz/seeds/pki_chain/rsa-cert.pem"),
    ),
    ("ca.der", include_bytes!("../fuzz/seeds/pki_chain/ca.der")),
];

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        base64(der)
    )
    .into_bytes()
}

/// Where the first PEM section ends (just past its END line's dashes).
fn first_pem_end(bytes: &[u8]) -> Option<usize> {
    let end = bytes.windows(9).position(|w| w == b"-----END ")?;
    let close = bytes[end + 9..].windows(5).position(|w| w == b"-----")?;
    Some(end + 9 + close + 5)
}

/// The PEM label of a seed key, from its file name.
fn key_label(name: &str) -> &'static str {
    if name.contains("pkcs1") {
        "RSA PRIVATE KEY"
    } else if name.contains("sec1") {
        "EC PRIVATE KEY"
    } else {
        "PRIVATE KEY"
    }
}

/// The base64 of `der` in lines of `width`.
fn key_lines(der: &[u8], width: usize) -> Vec<String> {
    key_lines_of(&base64(der), width)
}

fn key_lines_of(text: &str, width: usize) -> Vec<String> {
    text.as_bytes()
        .chunks(width)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect()
}

#[test]
fn pki_real_inputs_load() {
    for (name, bytes) in KEYS {
        assert!(pki::parse_key(bytes).is_ok(), "{name}");
    }
    for (name, bytes) in CHAINS {
        assert!(pki::parse_chain(bytes).is_ok(), "{name}");
    }
    let encrypted = include_bytes!("../fuzz/seeds/pki_key/p256-encrypted.pem");
    assert!(pki::parse_key(encrypted).is_err());
    // doc/s6-tlsd-io.md: RSA from 2048 bits.
    let small = include_bytes!("../fuzz/seeds/pki_key/rsa1024-pkcs8.pem");
    assert!(pki::parse_key(small).is_err());
    assert_eq!(pki::parse_chain(CHAINS[0].1).unwrap().len(), 2);
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes, bare or in PEM armour with any label, are neither
    /// a key nor a certificate chain: an error, no panic.
    #[test]
    fn pki_arbitrary_bytes(
        bytes in vec(any::<u8>(), 0..300),
        label in select(vec!["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "CERTIFICATE", "X"]),
        armour in any::<bool>(),
    ) {
        let input = if armour { pem(label, &bytes) } else { bytes };
        prop_assert!(pki::parse_key(&input).is_err());
        prop_assert!(pki::parse_chain(&input).is_err());
    }

    /// PEM keys are decoded by pem-rfc7468 straight into a wiped buffer
    /// (src/tls/pki.rs): any line width from 4 up (every line but the last
    /// as long as the first, as every tool writes), one line, CRLF or LF,
    /// text, blank lines and other blocks around the key, spaces after
    /// its END line give the same key as the DER.
    #[test]
    fn pki_pem_key_any_layout(
        which in select(vec![1usize, 3, 5, 7, 9, 11]),
        width in prop_oneof![4usize..100, Just(usize::MAX)],
        crlf in any::<bool>(),
        (before, after) in (
            select(vec!["", "junk\n", "\n\n", "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n", "-----BEGIN X-----\n!\n-----END X-----\n"]),
            select(vec!["", "\n\n", "trailer\n", "-----BEGIN X-----\n!\n-----END X-----\n"]),
        ),
        end_spaces in select(vec!["", " ", "\t "]),
    ) {
        let (name, der) = KEYS[which];
        let nl = if crlf { "\r\n" } else { "\n" };
        let body = key_lines(der, width).join(nl);
        let label = key_label(name);
        let input = format!("{before}-----BEGIN {label}-----{nl}{body}{nl}-----END {label}-----{end_spaces}{nl}{after}");
        let from_pem = pki::parse_key(input.as_bytes());
        prop_assert!(from_pem.is_ok(), "{}: {:?}", name, from_pem.err());
        let from_der = pki::parse_key(der).unwrap();
        let (from_pem, from_der) = (from_pem.unwrap(), from_der);
        let (a, b) = (from_pem.public_key(), from_der.public_key());
        prop_assert!(a.is_some());
        prop_assert_eq!(a, b);
    }

    /// Where pem-rfc7468 is stricter than OpenSSL (which loads all of
    /// these; tests/tlsd_io_pki.rs `pem_layouts_openssl_takes_and_we_refuse`
    /// runs it on the same layouts, and doc/s6-tlsd-io.md lists them): a
    /// line longer than the first, a blank line right after BEGIN, a
    /// space or tab anywhere in the base64, lines under 4 characters.
    /// Each is an error that names the key's block.
    #[test]
    fn pki_pem_key_stricter_than_openssl(
        which in select(vec![1usize, 3, 5, 7, 9, 11]),
        how in 0..4u8,
        at in any::<usize>(),
        blank in select(vec![" ", "\t"]),
    ) {
        let (name, der) = KEYS[which];
        let text = base64(der);
        let lines = match how {
            // The first line shorter than the second.
            0 => {
                let (head, rest) = text.split_at(4 + at % (text.len() / 2 - 4));
                let mut lines = vec![head.to_owned()];
                lines.extend(key_lines_of(rest, head.len() + 1));
                lines
            }
            // A blank line right after BEGIN.
            1 => {
                let mut lines = key_lines(der, 64);
                lines.insert(0, String::new());
                lines
            }
            2 => {
                let mut text = text.clone();
                text.insert_str(at % (text.len() + 1), blank);
                vec![text]
            }
            _ => key_lines(der, 1 + at % 3),
        };
        let label = key_label(name);
        let input = format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"));
        let err = pki::parse_key(input.as_bytes()).err();
        prop_assert!(
            err.as_ref().is_some_and(|e| e.starts_with(&format!("PEM block {label}: "))),
            "{} {:?}: {:?}", name, lines, err
        );
    }

    /// A byte outside the base64 alphabet (and not a line end) anywhere
    /// in a PEM key's body, or data after its padding, is an error.
    #[test]
    fn pki_pem_key_bad_base64(
        which in select(vec![1usize, 5, 9, 11]),
        bad in any::<u8>().prop_filter("not base64 nor a line end", |b| {
            !b.is_ascii_alphanumeric() && !b"+/=\r\n".contains(b)
        }),
        at in any::<usize>(),
        pad in any::<bool>(),
    ) {
        let (_, der) = KEYS[which];
        let mut text = base64(der).into_bytes();
        if pad {
            // Data after padding: `=` in the middle.
            let at = 4 * (at % (text.len() / 4));
            text.insert(at, b'=');
        } else {
            text.insert(at % (text.len() + 1), bad);
        }
        let mut input = b"-----BEGIN PRIVATE KEY-----\n".to_vec();
        input.extend_from_slice(&text);
        input.extend_from_slice(b"\n-----END PRIVATE KEY-----\n");
        prop_assert!(pki::parse_key(&input).is_err());
    }

    /// Mutated real keys: no panic (a mutated key may still be a key).
    /// Truncated ones — DER cut anywhere, PEM cut before its first
    /// section ends — are errors.
    #[test]
    fn pki_mutated_keys(which in 0..KEYS.len(), how in mutations(), cut in any::<usize>()) {
        let (name, real) = KEYS[which];
        let _ = pki::parse_key(&mutate(real.to_vec(), &how));
        let limit = if name.ends_with(".der") {
            real.len()
        } else {
            // The key of cert-then-key.pem is its second section.
            let first = first_pem_end(real).unwrap();
            if name.starts_with("cert-then-key") { first + first_pem_end(&real[first..]).unwrap() } else { first }
        };
        let cut = cut % limit;
        prop_assert!(pki::parse_key(&real[..cut]).is_err(), "{} cut at {}", name, cut);
    }

    /// Mutated real certificates and chains: no panic, and whatever is
    /// accepted passes the certificate check; truncated ones are errors.
    #[test]
    fn pki_mutated_chains(which in 0..CHAINS.len(), how in mutations(), cut in any::<usize>()) {
        let (name, real) = CHAINS[which];
        if let Ok(chain) = pki::parse_chain(&mutate(real.to_vec(), &how)) {
            prop_assert!(!chain.is_empty());
            for cert in &chain {
                prop_assert!(dn::check_certificate(cert).is_ok());
            }
        }
        let limit = if name.ends_with(".der") { real.len() } else { first_pem_end(real).unwrap() };
        let cut = cut % limit;
        prop_assert!(pki::parse_chain(&real[..cut]).is_err(), "{} cut at {}", name, cut);
    }

    /// Through the loaders the programs use, a bad key or certificate is
    /// a configuration error: exit code 96.
    #[test]
    fn pki_bad_files_exit_96(junk in vec(any::<u8>(), 0..200), which in 0..3u8) {
        let dir = std::env::temp_dir().join(format!("s6-tls-prop-{}-{which}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good_cert, good_key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let bad = dir.join("bad");
        std::fs::write(&good_cert, CHAINS[1].1).unwrap();
        std::fs::write(&good_key, KEYS[0].1).unwrap();
        std::fs::write(&bad, &junk).unwrap();
        let err = match which {
            0 => pki::load_pair("CERTFILE", &bad, "KEYFILE", &good_key, &QUIET).err(),
            1 => pki::load_pair("CERTFILE", &good_cert, "KEYFILE", &bad, &QUIET).err(),
            _ => pki::load_anchors(None, Some(&bad)).err(),
        };
        std::fs::remove_dir_all(&dir).unwrap();
        prop_assert_eq!(err.map(|e| e.code), Some(96));
    }
}

// ---------------------------------------------------------------------
// Session tickets
// ---------------------------------------------------------------------

fn ticket_key() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), tickets::KEY_LEN)
}

const T0: u64 = 1_800_000_000;

proptest! {
    #![proptest_config(config(512))]

    /// The model of doc/s6-tlsd-io.md: a ticket sealed with the first key
    /// of a file opens, for the same service identity, under any file that
    /// holds that key anywhere, from 60 s before its issue time until its
    /// lifetime has passed; under a file without it, or for another
    /// identity, it does not.
    #[test]
    fn tickets_open_exactly_under_the_model(
        sealer in vec(ticket_key(), 1..4),
        newer in vec(ticket_key(), 0..3),
        older in vec(ticket_key(), 0..3),
        plain in vec(any::<u8>(), 0..300),
        identity in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        lifetime in 1..=tickets::MAX_LIFETIME,
        age in -120i64..700_000,
    ) {
        let ticket = Ticketer::new(&sealer.concat(), &identity, lifetime).unwrap()
            .seal_at(&plain, T0).unwrap();
        let at = T0.checked_add_signed(age).unwrap();
        let fresh = age >= -60 && age < i64::from(lifetime);
        let holding: Vec<Vec<u8>> = newer.iter().chain([&sealer[0]]).chain(&older).cloned().collect();
        let opener = Ticketer::new(&holding.concat(), &identity, lifetime).unwrap();
        prop_assert_eq!(opener.open_at(&ticket, at), fresh.then(|| plain.clone()));
        let without: Vec<Vec<u8>> = newer.iter().chain(&sealer[1..]).chain(&older).cloned().collect();
        if !without.is_empty() {
            let gone = Ticketer::new(&without.concat(), &identity, lifetime).unwrap();
            prop_assert_eq!(gone.open_at(&ticket, T0), None);
        }
        if other != identity {
            let elsewhere = Ticketer::new(&holding.concat(), &other, lifetime).unwrap();
            prop_assert_eq!(elsewhere.open_at(&ticket, T0), None);
        }
    }

    /// A ticket with any byte changed, cut anywhere, or with bytes added
    /// does not open; neither do arbitrary bytes.
    #[test]
    fn tickets_mutated_or_arbitrary(
        key in ticket_key(),
        plain in vec(any::<u8>(), 0..100),
        pos in any::<usize>(),
        flip in 1..=255u8,
        extra in vec(any::<u8>(), 1..8),
        junk in vec(any::<u8>(), 0..200),
    ) {
        let t = Ticketer::new(&key, &[0; 32], 3600).unwrap();
        let ticket = t.seal_at(&plain, T0).unwrap();
        let pos = pos % ticket.len();
        let mut changed = ticket.clone();
        changed[pos] ^= flip;
        prop_assert_eq!(t.open_at(&changed, T0), None);
        prop_assert_eq!(t.open_at(&ticket[..pos], T0), None);
        prop_assert_eq!(t.open_at(&[ticket.as_slice(), &extra].concat(), T0), None);
        prop_assert_eq!(t.open_at(&junk, T0), None);
    }

    /// A key file is one or more whole 80-byte keys.
    #[test]
    fn tickets_key_file_size(len in 0usize..400) {
        let ok = Ticketer::new(&vec![0x42; len], &[0; 32], 60).is_ok();
        prop_assert_eq!(ok, len > 0 && len % tickets::KEY_LEN == 0, "{} bytes", len);
    }
}

// ---------------------------------------------------------------------
// Regression cases: inputs the fuzzers and properties found
// ---------------------------------------------------------------------

/// fuzz/opts: a word starting with `-` that is not UTF-8 was taken as
/// prog (`s6-tlsd -SJYv\xb0 -K7 -k2 prog` ran prog `-SJYv\xb0`).
#[test]
fn regression_opts_non_utf8_option() {
    let args = vec![
        OsString::from_vec(b"-SJYv\xb0".to_vec()),
        "-K7".into(),
        "-k2".into(),
        "prog".into(),
    ];
    let err = opts::parse(Program::Tlsd, &args).unwrap_err();
    assert_eq!(err.code, 100);
    assert_eq!(err.message, "unrecognized option: -SJYv\u{fffd}");
    assert!(err.usage.unwrap().starts_with("usage: s6-tlsd "));
    // Not starting with `-`, it is prog, as before.
    let args = vec![OsString::from_vec(b"pr\xb0g".to_vec())];
    assert_eq!(opts::parse(Program::Tlsd, &args).unwrap().1, args);
}

/// fuzz/dn: a NUL inside an attribute value went into the information
/// string as is, ending SSL_PEER_CERT_SUBJECT early and starting a new
/// entry of the certificate holder's choosing.
#[test]
fn regression_dn_nul_in_value() {
    let attrs = [Attr {
        kind: 5,
        encoding: 0,
        value: "www.example.org\0SSL_TLS_SNI_SERVERNAME=evil".into(),
    }];
    let (der, _) = certificate(&attrs);
    let subject = dn::format_subject(&der);
    assert_eq!(subject.as_deref(), Some("<invalid>"));
    let bytes = info::encode(&[("SSL_PEER_CERT_SUBJECT".into(), subject)]);
    assert_eq!(info::decode(&bytes).unwrap().len(), 1);
    // BMP and Universal strings can hold a NUL too.
    for encoding in [4, 5] {
        let (der, _) = certificate(&[Attr {
            kind: 3,
            encoding,
            value: "a\0b".into(),
        }]);
        assert_eq!(dn::format_subject(&der).as_deref(), Some("<invalid>"));
    }
    // And even if a NUL reached the encoder, it could not split an entry.
    let bytes = info::encode(&[("A".into(), Some("x\0B=y".into())), ("C".into(), None)]);
    assert_eq!(
        info::decode(&bytes).unwrap(),
        vec![("A".into(), None), ("C".into(), None)]
    );
}

/// fuzz/sni_env: two pairs with the same name once normalised (here the
/// same variable twice; in a real environment `KEYFILE:A.org` and
/// `KEYFILE:a.org.`) left the choice of certificate to the order of the
/// environment.
#[test]
fn regression_sni_same_name_twice() {
    let v = |a: &str, b: &str| (OsString::from(a), OsString::from(b));
    let err = sni::scan_env([
        v("KEYFILE:A.org", "k1"),
        v("CERTFILE:A.org", "c1"),
        v("KEYFILE:a.org.", "k2"),
        v("CERTFILE:a.org.", "c2"),
    ])
    .unwrap_err();
    assert_eq!(err.code, 96);
    assert!(err.message.contains("a.org"), "{}", err.message);
    let err = sni::scan_env([
        v("CERTFILE:/", "J"),
        v("CERTFILE:/", ""),
        v("KEYFILE:/", ""),
        v("KEYFILE:/", ""),
    ])
    .unwrap_err();
    assert_eq!(err.code, 96);
}
