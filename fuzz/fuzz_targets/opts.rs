//! Arbitrary argv for each program: `opts::parse` returns the options and
//! the operands, or a usage error (exit 100, a one-line problem and the
//! usage summary `usage: ...`); never
//! panics. What it accepts obeys the skalibs rules: the operands are the
//! words after `--` or from the first word not starting with `-`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s6_tls::cli::opts::{self, Program};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let program = match selector % 6 {
        0 => Program::TlsdIo,
        1 => Program::Ucspitlsd,
        2 => Program::Tlsd,
        3 => Program::TlscIo,
        4 => Program::Ucspitlsc,
        _ => Program::Tlsc,
    };
    let args: Vec<OsString> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == 0)
            .map(|w| OsString::from_vec(w.to_vec()))
            .collect()
    };
    match opts::parse(program, &args) {
        Err(e) => {
            assert_eq!(e.code, 100, "{args:?}: {e:?}");
            let usage = e.usage.as_deref().unwrap_or_default();
            assert!(usage.starts_with("usage: "), "{args:?}: {e:?}");
            assert!(!e.message.is_empty() && !e.message.contains('\n'), "{e:?}");
            assert!(!usage.contains('\n'), "{e:?}");
        }
        Ok((o, operands)) => {
            if program.is_engine() {
                assert_eq!(operands.len(), 2, "{args:?}");
            } else {
                assert!(!operands.is_empty(), "{args:?}");
            }
            // The operands are a suffix of argv ...
            let start = args.len() - operands.len();
            assert_eq!(&args[start..], &operands[..]);
            // ... that starts after `--` or at a word that is not an option.
            let first = operands[0].as_bytes();
            let after_dashdash = start > 0 && args[start - 1].as_bytes() == b"--";
            assert!(
                after_dashdash || first == b"-" || !first.starts_with(b"-"),
                "{args:?}"
            );
            if program.is_engine() {
                assert!(!o.keep_env);
            } else {
                assert_eq!(o.notif_fd, None);
            }
            // The network descriptors of the client wrappers: 3 or more,
            // distinct.
            assert!(o.net_read_fd >= 3 && o.net_write_fd >= 3, "{args:?}");
            assert_ne!(o.net_read_fd, o.net_write_fd, "{args:?}");
            if o.server_name.is_some() {
                assert!(program.is_client(), "{args:?}");
            }
        }
    }
});
