//! Dropping root privileges to `TLS_UID`/`TLS_GID` once every secret is
//! loaded and before the first byte of the handshake.

use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::parse_decimal;
use nix::unistd::{geteuid, setgid, setgroups, setuid, Gid, Uid};

fn id_from_env(name: &str) -> Result<Option<u32>, Fatal> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .and_then(parse_decimal)
            .map(Some)
            .ok_or_else(|| Fatal::usage(format!("invalid {name}: not a decimal number"))),
    }
}

/// Reads and checks `TLS_UID`/`TLS_GID` (not decimal: 100). Call early,
/// so bad values are reported before anything is loaded.
pub fn ids_from_env() -> Result<(Option<u32>, Option<u32>), Fatal> {
    Ok((id_from_env("TLS_UID")?, id_from_env("TLS_GID")?))
}

/// As root, with either id set: clear supplementary groups, then setgid,
/// then setuid. Not root: nothing to drop. Only one of the two is half a
/// drop, accepted as s6-networking accepts it, with a warning.
pub fn drop_privileges(uid: Option<u32>, gid: Option<u32>, log: &Log) -> Result<(), Fatal> {
    if !geteuid().is_root() || (uid.is_none() && gid.is_none()) {
        return Ok(());
    }
    match (uid, gid) {
        (None, Some(_)) => log.warn(
            "TLS_GID is set but TLS_UID is not: the engine keeps running as root (uid 0) while it reads the peer's data",
        ),
        (Some(_), None) => log.warn(
            "TLS_UID is set but TLS_GID is not: the engine keeps group 0 while it reads the peer's data",
        ),
        _ => {}
    }
    setgroups(&[]).map_err(|e| Fatal::sys("setgroups", e))?;
    if let Some(gid) = gid {
        setgid(Gid::from_raw(gid)).map_err(|e| Fatal::sys("setgid", e))?;
    }
    if let Some(uid) = uid {
        setuid(Uid::from_raw(uid)).map_err(|e| Fatal::sys("setuid", e))?;
    }
    Ok(())
}
