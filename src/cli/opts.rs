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
    /// `s6-tlsc-io`: the client engine; `-d notif` and two operands.
    TlscIo,
    /// `s6-ucspitlsc`: `-Z`/`-z`, `-6`/`-7` and a prog.
    Ucspitlsc,
    /// `s6-tlsc`: `-Z`/`-z`, `-6`/`-7` and a prog.
    Tlsc,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::TlsdIo => "s6-tlsd-io",
            Program::Ucspitlsd => "s6-ucspitlsd",
            Program::Tlsd => "s6-tlsd",
            Program::TlscIo => "s6-tlsc-io",
            Program::Ucspitlsc => "s6-ucspitlsc",
            Program::Tlsc => "s6-tlsc",
        }
    }

    /// The client programs: `-k` names the server, `-K` bounds the
    /// handshake, `-y` presents a certificate.
    pub fn is_client(self) -> bool {
        matches!(self, Program::TlscIo | Program::Ucspitlsc | Program::Tlsc)
    }

    /// The engines, which take `fdr fdw` operands rather than a prog.
    pub fn is_engine(self) -> bool {
        matches!(self, Program::TlsdIo | Program::TlscIo)
    }

    pub fn usage(self) -> String {
        let common = "[ -S | -s ] [ -J | -j ] [ -Y | -y ]";
        let tail = if self.is_client() {
            "[ -v verbosity ] [ -K timeout ] [ --kimeout=ms ] [ -k servername ] [ --no-verify-cert ]"
        } else {
            "[ -v verbosity ] [ -K kimeout ] [ --handshake-timeout=ms ] [ -k snilevel ]"
        };
        let name = self.name();
        match self {
            Program::TlsdIo | Program::TlscIo => {
                format!("usage: {name} {common} {tail} [ -d notif ] [ -- ] fdr fdw")
            }
            Program::Ucspitlsc | Program::Tlsc => {
                format!("usage: {name} {common} [ -Z | -z ] {tail} [ -6 rfd ] [ -7 wfd ] [ -- ] prog...")
            }
            Program::Ucspitlsd | Program::Tlsd => {
                format!("usage: {name} {common} [ -Z | -z ] {tail} [ -- ] prog...")
            }
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
    /// Client: the name sent as SNI and checked (`-k servername`).
    pub server_name: Option<String>,
    /// Client: present `CERTFILE`/`KEYFILE` to the server (`-y`).
    pub present_cert: bool,
    /// Client: `--no-verify-cert` turns this off.
    pub verify_cert: bool,
    /// s6-tlsc and s6-ucspitlsc: the network descriptors (`-6`, `-7`).
    pub net_read_fd: i32,
    pub net_write_fd: i32,
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
            server_name: None,
            present_cert: false,
            verify_cert: true,
            net_read_fd: 6,
            net_write_fd: 7,
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

const PROG_TAKERS: &[Program] = &[
    Program::Ucspitlsd,
    Program::Tlsd,
    Program::Ucspitlsc,
    Program::Tlsc,
];
const IO_ONLY: &[Program] = &[Program::TlsdIo, Program::TlscIo];
const SERVERS: &[Program] = &[Program::TlsdIo, Program::Ucspitlsd, Program::Tlsd];
const CLIENTS: &[Program] = &[Program::TlscIo, Program::Ucspitlsc, Program::Tlsc];
const CLIENT_WRAPPERS: &[Program] = &[Program::Ucspitlsc, Program::Tlsc];

// The same letter means what s6-networking gives it in each role: `-K`
// is inactivity on the server and the handshake deadline on the client;
// `-k` is the SNI level on the server and the server's name on the client.
const SPECS: &[Spec] = &[
    spec(Some('S'), "close-notify", false, None),
    spec(Some('s'), "no-close-notify", false, None),
    spec(Some('J'), "enforce-close-notify", false, None),
    spec(Some('j'), "no-enforce-close-notify", false, None),
    spec(Some('Y'), "client-cert", false, Some(SERVERS)),
    spec(Some('y'), "mandatory-client-cert", false, Some(SERVERS)),
    spec(Some('Z'), "keep", false, Some(PROG_TAKERS)),
    spec(Some('z'), "no-keep", false, Some(PROG_TAKERS)),
    spec(Some('v'), "verbosity", true, None),
    spec(Some('K'), "kimeout", true, Some(SERVERS)),
    spec(None, "handshake-timeout", true, Some(SERVERS)),
    spec(Some('k'), "sni-level", true, Some(SERVERS)),
    spec(None, "sni", false, Some(SERVERS)),
    spec(None, "mandatory-sni", false, Some(SERVERS)),
    spec(Some('d'), "notification-fd", true, Some(IO_ONLY)),
    spec(Some('Y'), "no-client-cert", false, Some(CLIENTS)),
    spec(Some('y'), "client-cert", false, Some(CLIENTS)),
    spec(Some('K'), "handshake-timeout", true, Some(CLIENTS)),
    spec(None, "kimeout", true, Some(CLIENTS)),
    spec(Some('k'), "servername", true, Some(CLIENTS)),
    spec(None, "no-verify-cert", false, Some(CLIENTS)),
    spec(Some('6'), "read-fd", true, Some(CLIENT_WRAPPERS)),
    spec(Some('7'), "write-fd", true, Some(CLIENT_WRAPPERS)),
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
            apply(&mut opts, program, spec, value.as_deref()).map_err(usage)?;
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
                apply(&mut opts, program, spec, None).map_err(usage)?;
                continue;
            }
            let rest = &shorts[pos + c.len_utf8()..];
            let value = if rest.is_empty() {
                i += 1;
                value_at(args, i, &format!("-{c}")).map_err(usage)?
            } else {
                rest.to_owned()
            };
            apply(&mut opts, program, spec, Some(&value)).map_err(usage)?;
            break;
        }
        i += 1;
    }
    let operands = args[i.min(args.len())..].to_vec();
    let problem = match (program.is_engine(), operands.len()) {
        (true, 0) => Some("missing fdr and fdw".to_owned()),
        (true, 1) => Some("missing fdw".to_owned()),
        (true, 2) => None,
        (true, n) => Some(format!(
            "too many arguments: {n} where fdr fdw are expected"
        )),
        (false, 0) => Some("missing prog".to_owned()),
        _ => None,
    };
    let problem = problem.or_else(|| {
        (opts.net_read_fd == opts.net_write_fd).then(|| {
            format!(
                "read-fd and write-fd must differ, not both {}",
                opts.net_read_fd
            )
        })
    });
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
fn apply(
    opts: &mut Options,
    program: Program,
    spec: &Spec,
    value: Option<&str>,
) -> Result<(), String> {
    let number = || {
        value.and_then(parse_decimal).ok_or_else(|| {
            format!(
                "{} must be an unsigned integer, not {:?}",
                spec.long,
                value.unwrap_or_default()
            )
        })
    };
    // Descriptors 0, 1 and 2 stay prog's own.
    let net_fd = || {
        value
            .and_then(parse_decimal)
            .filter(|&n| n >= 3)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| {
                format!(
                    "{} must be a descriptor number of 3 or more, not {:?}",
                    spec.long,
                    value.unwrap_or_default()
                )
            })
    };
    match spec.long {
        "client-cert" if program.is_client() => opts.present_cert = true,
        "no-client-cert" => opts.present_cert = false,
        "servername" => {
            let name = value.filter(|v| !v.is_empty());
            opts.server_name = Some(name.ok_or("servername must not be empty")?.to_owned())
        }
        "no-verify-cert" => opts.verify_cert = false,
        "read-fd" => opts.net_read_fd = net_fd()?,
        "write-fd" => opts.net_write_fd = net_fd()?,
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

    #[test]
    fn client_letters() {
        let (o, rest) = parse(
            Program::Tlsc,
            &args(&["-yK", "500", "-kmail.example.org", "-6", "3", "-74", "prog"]),
        )
        .unwrap();
        assert!(o.present_cert);
        assert_eq!(o.handshake_timeout_ms, 500);
        assert_eq!(o.kimeout_ms, 0);
        assert_eq!(o.server_name.as_deref(), Some("mail.example.org"));
        assert_eq!((o.net_read_fd, o.net_write_fd), (3, 4));
        assert_eq!(rest, args(&["prog"]));
        let (o, rest) = parse(
            Program::TlscIo,
            &args(&[
                "-y",
                "-Y",
                "--kimeout=9",
                "--servername=10.0.0.1",
                "--no-verify-cert",
                "-d5",
                "3",
                "4",
            ]),
        )
        .unwrap();
        assert!(!o.present_cert && !o.verify_cert);
        assert_eq!(o.kimeout_ms, 9);
        assert_eq!(o.server_name.as_deref(), Some("10.0.0.1"));
        assert_eq!(o.notif_fd, Some(5));
        assert_eq!(rest, args(&["3", "4"]));
    }

    #[test]
    fn client_rejects() {
        for (program, bad) in [
            (Program::Tlsc, &["-6", "2", "prog"][..]),
            (Program::Tlsc, &["-7", "0", "prog"]),
            (Program::Ucspitlsc, &["-6", "7", "prog"]),
            (Program::Ucspitlsc, &["-6", "9", "-7", "9", "prog"]),
            (Program::Tlsc, &["-k", "", "prog"]),
            (Program::Tlsc, &["--sni-level=1", "prog"]),
            (Program::Tlsc, &["-d", "3", "prog"]),
            (Program::TlscIo, &["-6", "3", "0", "1"]),
            (Program::TlscIo, &["-Z", "0", "1"]),
            (Program::TlscIo, &["0"]),
            (Program::Ucspitlsd, &["--no-verify-cert", "prog"]),
            (Program::TlsdIo, &["-k", "name", "0", "1"]),
        ] {
            let err = parse(program, &args(bad)).unwrap_err();
            assert_eq!(err.code, 100, "{bad:?}");
            assert!(err
                .usage
                .unwrap()
                .starts_with(&format!("usage: {}", program.name())));
        }
    }
}
