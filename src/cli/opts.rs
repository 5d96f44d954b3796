//! Command-line parsing with the skalibs conventions (doc/s6-tlsd-io.md,
//! "Options"): bundled short flags (`-Sy`), attached or separate values
//! (`-v2`, `-v 2`), `--name` and `--name=value` (or `--name value`) long
//! forms, parsing that stops at `--` or at the first word not starting
//! with `-`, and usage errors that name what is wrong.

use crate::cli::error::Fatal;
use std::ffi::OsString;

/// Which program is parsing: each accepts a slightly different set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `s6-tlsd-io`: takes `-d notif` and two operands, no `-Z`.
    TlsdIo,
    /// `s6-ucspitlsd`: takes `-Z`/`-z` and a prog.
    Ucspitlsd,
    /// `s6-tlsd`: takes `-Z`/`-z` and a prog.
    Tlsd,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::TlsdIo => "s6-tlsd-io",
            Program::Ucspitlsd => "s6-ucspitlsd",
            Program::Tlsd => "s6-tlsd",
        }
    }

    pub fn usage(self) -> String {
        let common = "[ -S | -s ] [ -J | -j ] [ -Y | -y ]";
        let tail = "[ -v verbosity ] [ -K kimeout ] [ --handshake-timeout=ms ] [ -k snilevel ]";
        match self {
            Program::TlsdIo => {
                format!("usage: s6-tlsd-io {common} {tail} [ -d notif ] [ -- ] fdr fdw")
            }
            p => format!(
                "usage: {} {common} [ -Z | -z ] {tail} [ -- ] prog...",
                p.name()
            ),
        }
    }
}

/// Client certificate policy (`-Y` / `-y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCert {
    #[default]
    None,
    Optional,
    Mandatory,
}

/// Everything the options can say; each program reads the part it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub close_notify: bool,
    pub enforce_close_notify: bool,
    pub client_cert: ClientCert,
    pub keep_env: bool,
    pub verbosity: u32,
    pub kimeout_ms: u32,
    pub handshake_timeout_ms: u32,
    pub sni_level: u32,
    pub notif_fd: Option<i32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            close_notify: false,
            enforce_close_notify: false,
            client_cert: ClientCert::None,
            keep_env: false,
            verbosity: 1,
            kimeout_ms: 0,
            handshake_timeout_ms: 0,
            sni_level: 0,
            notif_fd: None,
        }
    }
}

/// One option: its short letter (if any), its long name, whether it
/// takes a value, and which programs know it.
struct Spec {
    short: Option<char>,
    long: &'static str,
    value: bool,
    only: Option<&'static [Program]>,
}

const PROG_TAKERS: &[Program] = &[Program::Ucspitlsd, Program::Tlsd];
const IO_ONLY: &[Program] = &[Program::TlsdIo];

const SPECS: &[Spec] = &[
    spec(Some('S'), "close-notify", false, None),
    spec(Some('s'), "no-close-notify", false, None),
    spec(Some('J'), "enforce-close-notify", false, None),
    spec(Some('j'), "no-enforce-close-notify", false, None),
    spec(Some('Y'), "client-cert", false, None),
    spec(Some('y'), "mandatory-client-cert", false, None),
    spec(Some('Z'), "keep", false, Some(PROG_TAKERS)),
    spec(Some('z'), "no-keep", false, Some(PROG_TAKERS)),
    spec(Some('v'), "verbosity", true, None),
    spec(Some('K'), "kimeout", true, None),
    spec(None, "handshake-timeout", true, None),
    spec(Some('k'), "sni-level", true, None),
    spec(None, "sni", false, None),
    spec(None, "mandatory-sni", false, None),
    spec(Some('d'), "notification-fd", true, Some(IO_ONLY)),
];

const fn spec(
    short: Option<char>,
    long: &'static str,
    value: bool,
    only: Option<&'static [Program]>,
) -> Spec {
    Spec {
        short,
        long,
        value,
        only,
    }
}

fn known(program: Program, spec: &Spec) -> bool {
    spec.only.map_or(true, |list| list.contains(&program))
}

/// Parses `args` (without argv\[0\]); returns the options and the operands
/// (for s6-tlsd-io, `fdr fdw`; otherwise prog and its arguments). A usage
/// error names what is wrong and carries the usage summary.
pub fn parse(program: Program, args: &[OsString]) -> Result<(Options, Vec<OsString>), Fatal> {
    let usage = |problem: String| Fatal::wrong_usage(problem, program.usage());
    let mut opts = Options::default();
    let mut i = 0;
    while i < args.len() {
        let Some(word) = args[i].to_str() else {
            // Not UTF-8, so no option we know: an operand, unless it
            // starts with `-` (then it is an unknown option, as skalibs,
            // which works on bytes, would say).
            if args[i].as_encoded_bytes().starts_with(b"-") {
                return Err(usage(format!(
                    "unrecognized option: {}",
                    args[i].to_string_lossy()
                )));
            }
            break;
        };
        if word == "--" {
            i += 1;
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let spec = SPECS
                .iter()
                .find(|s| s.long == name && known(program, s))
                .ok_or_else(|| usage(format!("unrecognized long option: {name}")))?;
            let value = match (spec.value, attached) {
                (false, None) => None,
                (false, Some(_)) => {
                    return Err(usage(format!("option --{name} takes no value")));
                }
                (true, Some(v)) => Some(v),
                (true, None) => {
                    i += 1;
                    Some(value_at(args, i, &format!("--{name}")).map_err(usage)?)
                }
            };
            apply(&mut opts, spec, value.as_deref()).map_err(usage)?;
            i += 1;
            continue;
        }
        let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) else {
            break;
        };
        for (pos, c) in shorts.char_indices() {
            let spec = SPECS
                .iter()
                .find(|s| s.short == Some(c) && known(program, s))
                .ok_or_else(|| usage(format!("unrecognized short option: {c}")))?;
            if !spec.value {
                apply(&mut opts, spec, None).map_err(usage)?;
                continue;
            }
            let rest = &shorts[pos + c.len_utf8()..];
            let value = if rest.is_empty() {
                i += 1;
                value_at(args, i, &format!("-{c}")).map_err(usage)?
            } else {
                rest.to_owned()
            };
            apply(&mut opts, spec, Some(&value)).map_err(usage)?;
            break;
        }
        i += 1;
    }
    let operands = args[i.min(args.len())..].to_vec();
    let problem = match (program, operands.len()) {
        (Program::TlsdIo, 0) => Some("missing fdr and fdw".to_owned()),
        (Program::TlsdIo, 1) => Some("missing fdw".to_owned()),
        (Program::TlsdIo, 2) => None,
        (Program::TlsdIo, n) => Some(format!(
            "too many arguments: {n} where fdr fdw are expected"
        )),
        (_, 0) => Some("missing prog".to_owned()),
        _ => None,
    };
    match problem {
        Some(problem) => Err(usage(problem)),
        None => Ok((opts, operands)),
    }
}

/// The value of an option given as the next word, `args[i]`.
fn value_at(args: &[OsString], i: usize, option: &str) -> Result<String, String> {
    let word = args
        .get(i)
        .ok_or_else(|| format!("option {option} needs a value"))?;
    word.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("option {option}: {word:?} is not a number"))
}

/// Records one option, or says why its value is not acceptable.
fn apply(opts: &mut Options, spec: &Spec, value: Option<&str>) -> Result<(), String> {
    let number = || {
        value.and_then(parse_decimal).ok_or_else(|| {
            format!(
                "{} must be an unsigned integer, not {:?}",
                spec.long,
                value.unwrap_or_default()
            )
        })
    };
    match spec.long {
        "close-notify" => opts.close_notify = true,
        "no-close-notify" => opts.close_notify = false,
        "enforce-close-notify" => opts.enforce_close_notify = true,
        "no-enforce-close-notify" => opts.enforce_close_notify = false,
        "client-cert" => opts.client_cert = ClientCert::Optional,
        "mandatory-client-cert" => opts.client_cert = ClientCert::Mandatory,
        "keep" => opts.keep_env = true,
        "no-keep" => opts.keep_env = false,
        "verbosity" => opts.verbosity = number()?,
        "kimeout" => opts.kimeout_ms = number()?,
        "handshake-timeout" => opts.handshake_timeout_ms = number()?,
        // s6-networking treats every level from 2 up as 2.
        "sni-level" => opts.sni_level = number()?.min(2),
        "sni" => opts.sni_level = 1,
        "mandatory-sni" => opts.sni_level = 2,
        "notification-fd" => {
            opts.notif_fd = Some(i32::try_from(number()?).map_err(|_| {
                format!(
                    "notification-fd {:?} is not a descriptor number",
                    value.unwrap_or_default()
                )
            })?)
        }
        _ => unreachable!("option table and apply() disagree"),
    }
    Ok(())
}

/// A plain unsigned decimal number, as skalibs' `uint0_scan` accepts it:
/// digits only, no sign, no spaces.
pub fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn bundled_and_attached() {
        let (o, rest) = parse(
            Program::TlsdIo,
            &args(&["-Sy", "-v2", "-K", "500", "-d3", "0", "1"]),
        )
        .unwrap();
        assert!(o.close_notify);
        assert_eq!(o.client_cert, ClientCert::Mandatory);
        assert_eq!(o.verbosity, 2);
        assert_eq!(o.kimeout_ms, 500);
        assert_eq!(o.notif_fd, Some(3));
        assert_eq!(rest, args(&["0", "1"]));
    }

    #[test]
    fn long_forms() {
        let (o, _) = parse(
            Program::TlsdIo,
            &args(&[
                "--close-notify",
                "--verbosity=3",
                "--handshake-timeout",
                "9",
                "--mandatory-sni",
                "--notification-fd=5",
                "--",
                "6",
                "7",
            ]),
        )
        .unwrap();
        assert!(o.close_notify);
        assert_eq!(o.verbosity, 3);
        assert_eq!(o.handshake_timeout_ms, 9);
        assert_eq!(o.sni_level, 2);
        assert_eq!(o.notif_fd, Some(5));
    }

    #[test]
    fn stops_at_first_operand() {
        let (o, rest) = parse(Program::Ucspitlsd, &args(&["-Z", "prog", "-S"])).unwrap();
        assert!(o.keep_env);
        assert!(!o.close_notify);
        assert_eq!(rest, args(&["prog", "-S"]));
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        for bad in [
            &["-x", "0", "1"][..],
            &["-v", "abc", "0", "1"],
            &["-v"],
            &["-Z", "0", "1"],
            &["--close-notify=1", "0", "1"],
            &["--nope", "0", "1"],
            &["0"],
            &["0", "1", "2"],
            &["-K", "-1", "0", "1"],
        ] {
            let err = parse(Program::TlsdIo, &args(bad)).unwrap_err();
            assert_eq!(err.code, 100, "{bad:?}");
            assert!(err.usage.unwrap().starts_with("usage: s6-tlsd-io"));
        }
        assert_eq!(
            parse(Program::Tlsd, &args(&["-d", "3", "prog"]))
                .unwrap_err()
                .code,
            100
        );
        assert_eq!(parse(Program::Tlsd, &args(&["-S"])).unwrap_err().code, 100);
    }

    #[test]
    fn usage_errors_name_the_problem() {
        for (bad, problem) in [
            (&["-x", "0", "1"][..], "unrecognized short option: x"),
            (&["-Sxy", "0", "1"], "unrecognized short option: x"),
            (
                &["--close-notfy", "0", "1"],
                "unrecognized long option: close-notfy",
            ),
            (
                &["-v", "abc", "0", "1"],
                "verbosity must be an unsigned integer, not \"abc\"",
            ),
            (
                &["-K", "-5", "0", "1"],
                "kimeout must be an unsigned integer, not \"-5\"",
            ),
            (
                &["--handshake-timeout=1s", "0", "1"],
                "handshake-timeout must be an unsigned integer, not \"1s\"",
            ),
            (&["-v"], "option -v needs a value"),
            (
                &["0", "1", "--kimeout"],
                "too many arguments: 3 where fdr fdw are expected",
            ),
            (&["--kimeout"], "option --kimeout needs a value"),
            (
                &["--close-notify=1", "0", "1"],
                "option --close-notify takes no value",
            ),
            (
                &["-d", "4294967295", "0", "1"],
                "notification-fd \"4294967295\" is not a descriptor number",
            ),
            (&["-Z", "0", "1"], "unrecognized short option: Z"),
            (&["0"], "missing fdw"),
            (&[], "missing fdr and fdw"),
        ] {
            let err = parse(Program::TlsdIo, &args(bad)).unwrap_err();
            assert_eq!((err.code, err.message.as_str()), (100, problem), "{bad:?}");
        }
        let err = parse(Program::Tlsd, &args(&["-S"])).unwrap_err();
        assert_eq!(err.message, "missing prog");
        assert!(err.usage.unwrap().starts_with("usage: s6-tlsd "));
    }

    #[test]
    fn sni_levels_above_2_are_2() {
        for level in ["2", "3", "99", "4294967295"] {
            let (o, _) = parse(Program::TlsdIo, &args(&["-k", level, "0", "1"])).unwrap();
            assert_eq!(o.sni_level, 2, "{level}");
        }
    }
}
