//! s6-tlsd-io: the TLS server engine. Network on fds 0/1, cleartext to the
//! application on `fdr`/`fdw`.

use s6_tls::engine::{Fds, Tunnel};
use s6_tls::error::Fatal;
use s6_tls::fds::{own_fd, parse_fd};
use s6_tls::log::Log;
use s6_tls::opts::{self, Program};
use s6_tls::{config, privs};
use std::process::ExitCode;

fn run(log: &mut Log) -> Result<(), Fatal> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let (opts, operands) = opts::parse(Program::TlsdIo, &args)?;
    log.verbosity = opts.verbosity;
    let word = |i: usize| operands[i].to_string_lossy().into_owned();
    let fdr = parse_fd("fdr", &word(0))?;
    let fdw = parse_fd("fdw", &word(1))?;
    let mut numbers = vec![0, 1, fdr, fdw];
    numbers.extend(opts.notif_fd);
    let distinct = numbers
        .iter()
        .enumerate()
        .all(|(i, n)| !numbers[..i].contains(n));
    if !distinct {
        return Err(Fatal::usage(
            "fdr, fdw and notif must be distinct from each other and from 0 and 1",
        ));
    }
    let fds = Fds {
        net_in: own_fd("network input", 0)?,
        net_out: own_fd("network output", 1)?,
        app_in: own_fd("fdr", fdr)?,
        app_out: own_fd("fdw", fdw)?,
        notify: opts.notif_fd.map(|fd| own_fd("notif", fd)).transpose()?,
    };
    let (uid, gid) = privs::ids_from_env()?;
    let config = config::server_config(&opts)?;
    privs::drop_privileges(uid, gid)?;
    Tunnel::new(config, &opts, fds, *log)?.run()
}

fn main() -> ExitCode {
    let mut log = Log {
        prog: "s6-tlsd-io",
        verbosity: 1,
    };
    match run(&mut log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log.exit_message(&e);
            ExitCode::from(e.code)
        }
    }
}
