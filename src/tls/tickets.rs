//! Stateless session tickets shared across processes: the `TICKETKEYFILE`
//! key file, the service identity every ticket is bound to, and the
//! ticket sealing and opening behind rustls's [`ProducesTickets`].
//!
//! Every connection is a new process, so the only state two connections
//! can share is a file: one or more 80-byte keys (`openssl rand 80`,
//! concatenated, as nginx takes them). The first key seals new tickets;
//! every key opens them, which is what makes rotation seamless. Each
//! key's first 16 bytes name it on the wire; the AEAD key is derived from
//! the other 64 with HKDF and the service identity as salt, so a ticket
//! sealed by a service with another certificate, another client
//! verification mode or other trust anchors simply fails to open and the
//! client gets a full handshake.
//!
//! A ticket is `name (16) | issued (8, seconds since the epoch, big
//! endian) | nonce (12) | AES-256-GCM ciphertext and tag`, the first two
//! fields authenticated as associated data. Tickets older than the
//! lifetime are refused here, whatever the client claims.

use crate::cli::error::{describe_io, Fatal};
use crate::cli::opts::ClientCert;
use crate::tls::pki::env_path;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use rustls::server::ProducesTickets;
use rustls::sign::CertifiedKey;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// Bytes of one key in the file.
pub const KEY_LEN: usize = 80;
const NAME_LEN: usize = 16;
const ISSUED_LEN: usize = 8;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = NAME_LEN + ISSUED_LEN + NONCE_LEN;
/// Default ticket lifetime in seconds (`TICKETLIFETIME` changes it).
pub const DEFAULT_LIFETIME: u32 = 7200;
/// TLS 1.3 forbids advertising a longer lifetime (RFC 8446, 4.6.1).
pub const MAX_LIFETIME: u32 = 604_800;
/// How far in the future an issue time may lie: the machines of a
/// cluster sharing a key file do not agree on the second.
const CLOCK_SKEW: u64 = 60;
const KDF_INFO: &[u8] = b"s6-tls session ticket key v1";

/// A digest of what a ticket must not cross: every certificate chain the
/// service presents, its client certificate mode, and its trust anchors.
pub type Identity = [u8; 32];

/// Computes the [`Identity`] of a service from its certificate pairs (the
/// default pair unnamed, the SNI pairs with their names), its client
/// certificate mode, and its trust anchors if it asks for client
/// certificates.
pub fn service_identity<'a>(
    pairs: impl IntoIterator<Item = (Option<&'a str>, &'a CertifiedKey)>,
    mode: ClientCert,
    anchors: Option<&rustls::RootCertStore>,
) -> Identity {
    let mut ctx = Context::new(&SHA256);
    // Every field is length-prefixed, so no two identities hash the same
    // byte stream.
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    field(b"s6-tls service identity v1");
    field(match mode {
        ClientCert::None => b"no client certificate",
        ClientCert::Optional => b"optional client certificate",
        ClientCert::Mandatory => b"mandatory client certificate",
    });
    for (name, pair) in pairs {
        field(name.map_or(b"default pair".as_slice(), str::as_bytes));
        for cert in pair.cert.iter() {
            field(cert);
        }
    }
    for anchor in anchors.iter().flat_map(|store| store.roots.iter()) {
        field(&anchor.subject);
        field(&anchor.subject_public_key_info);
        field(anchor.name_constraints.as_deref().unwrap_or_default());
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Reads `TICKETKEYFILE`'s value `path`. Refused (96): anything but a
/// regular file, and a file that group or others can read. The buffer is
/// wiped when dropped.
pub fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Fatal> {
    let shown = path.display();
    let failed = |e: std::io::Error| {
        Fatal::config(format!(
            "unable to read TICKETKEYFILE {shown}: {}",
            describe_io(&e)
        ))
    };
    let mut file = std::fs::File::open(path).map_err(failed)?;
    let meta = file.metadata().map_err(failed)?;
    if !meta.is_file() {
        return Err(Fatal::config(format!(
            "TICKETKEYFILE {shown}: not a regular file"
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o044 != 0 {
        return Err(Fatal::config(format!(
            "TICKETKEYFILE {shown}: readable by group or others (mode {:o}): make it 0600",
            mode & 0o7777
        )));
    }
    // Reserved once, so the keys are never moved by a reallocation.
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    file.read_to_end(&mut bytes).map_err(failed)?;
    Ok(bytes)
}

fn check_size(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err(format!("empty: expected one or more {KEY_LEN}-byte keys"));
    }
    if bytes.len() % KEY_LEN != 0 {
        return Err(format!(
            "{} bytes is not a whole number of {KEY_LEN}-byte keys",
            bytes.len()
        ));
    }
    Ok(())
}

/// The ticketer `TICKETKEYFILE` and `TICKETLIFETIME` ask for, for the
/// service whose identity `identity` computes; `None` without
/// `TICKETKEYFILE`.
pub fn from_env(identity: impl FnOnce() -> Identity) -> Result<Option<Ticketer>, Fatal> {
    let Some(path) = env_path("TICKETKEYFILE") else {
        return Ok(None);
    };
    let lifetime = parse_lifetime(std::env::var_os("TICKETLIFETIME").as_deref())?;
    let path = Path::new(&path);
    let bytes = read_key_file(path)?;
    Ticketer::new(&bytes, &identity(), lifetime)
        .map(Some)
        .map_err(|e| Fatal::config(format!("TICKETKEYFILE {}: {e}", path.display())))
}

/// Parses `TICKETLIFETIME` (seconds, 1 to 604800); unset or empty means
/// [`DEFAULT_LIFETIME`].
pub fn parse_lifetime(value: Option<&OsStr>) -> Result<u32, Fatal> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_LIFETIME);
    };
    let text = value.to_string_lossy();
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_LIFETIME).contains(&n) => Ok(n),
        _ => Err(Fatal::usage(format!(
            "TICKETLIFETIME {text:?}: expected a number of seconds from 1 to {MAX_LIFETIME}"
        ))),
    }
}

struct TicketKey {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

/// Seals and opens tickets with the keys of one key file, for one service
/// identity.
pub struct Ticketer {
    /// The first seals; all open.
    keys: Vec<TicketKey>,
    lifetime: u32,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticketer")
            .field("keys", &self.keys.len())
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl Ticketer {
    /// Builds the keys from the file's bytes (as [`read_key_file`]
    /// checked them) for `identity`. The caller wipes `bytes`.
    pub fn new(bytes: &[u8], identity: &Identity, lifetime: u32) -> Result<Ticketer, String> {
        check_size(bytes)?;
        let salt = Salt::new(HKDF_SHA256, identity);
        let keys = bytes
            .chunks_exact(KEY_LEN)
            .map(|key| {
                let (name, secret) = key.split_at(NAME_LEN);
                let prk = salt.extract(secret);
                let okm = prk
                    .expand(&[KDF_INFO], &AES_256_GCM)
                    .map_err(|_| "unable to derive a ticket key".to_owned())?;
                Ok(TicketKey {
                    name: name.try_into().expect("NAME_LEN bytes"),
                    aead: LessSafeKey::new(UnboundKey::from(okm)),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Ticketer { keys, lifetime })
    }

    /// Seals `plain` as issued at `now` (seconds since the epoch).
    pub fn seal_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut nonce = [0; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&now.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&out[..NAME_LEN + ISSUED_LEN]),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// Opens a ticket presented at `now`: `None` if it is malformed, under
    /// no key of ours, for another identity, tampered with, or expired.
    pub fn open_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < HEADER_LEN + TAG_LEN {
            return None;
        }
        let (header, sealed) = ticket.split_at(HEADER_LEN);
        let (aad, nonce) = header.split_at(NAME_LEN + ISSUED_LEN);
        let (name, issued) = aad.split_at(NAME_LEN);
        let issued = u64::from_be_bytes(issued.try_into().ok()?);
        if issued > now.saturating_add(CLOCK_SKEW)
            || now.saturating_sub(issued) >= u64::from(self.lifetime)
        {
            return None;
        }
        // The same key may appear twice in a file; a name is not proof.
        self.keys.iter().filter(|k| k.name == name).find_map(|key| {
            let mut body = sealed.to_vec();
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let len = key
                .aead
                .open_in_place(nonce, Aad::from(aad), &mut body)
                .ok()?
                .len();
            body.truncate(len);
            Some(body)
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seeds: &[u8]) -> Vec<u8> {
        seeds.iter().flat_map(|&s| [s; KEY_LEN]).collect()
    }

    #[test]
    fn rotation() {
        let id = [7; 32];
        let old = Ticketer::new(&keys(&[1]), &id, 100).unwrap();
        let rotated = Ticketer::new(&keys(&[2, 1]), &id, 100).unwrap();
        let gone = Ticketer::new(&keys(&[3, 2]), &id, 100).unwrap();
        let ticket = old.seal_at(b"session", 1000).unwrap();
        assert_eq!(rotated.open_at(&ticket, 1000).unwrap(), b"session");
        assert_eq!(gone.open_at(&ticket, 1000), None);
        let fresh = rotated.seal_at(b"new", 1000).unwrap();
        assert_eq!(old.open_at(&fresh, 1000), None);
    }

    #[test]
    fn identity_and_time() {
        let t = Ticketer::new(&keys(&[1]), &[1; 32], 100).unwrap();
        let other = Ticketer::new(&keys(&[1]), &[2; 32], 100).unwrap();
        let ticket = t.seal_at(b"x", 1000).unwrap();
        assert_eq!(other.open_at(&ticket, 1000), None);
        assert_eq!(t.open_at(&ticket, 1099).unwrap(), b"x");
        assert_eq!(t.open_at(&ticket, 1100), None);
        assert_eq!(t.open_at(&ticket, 1000 - CLOCK_SKEW).unwrap(), b"x");
        assert_eq!(t.open_at(&ticket, 1000 - CLOCK_SKEW - 1), None);
    }

    #[test]
    fn sizes_and_lifetimes() {
        assert!(check_size(b"").is_err());
        assert!(check_size(&[0; KEY_LEN + 1]).is_err());
        assert!(check_size(&[0; 2 * KEY_LEN]).is_ok());
        let parse = |v: &str| parse_lifetime(Some(OsStr::new(v)));
        assert_eq!(parse_lifetime(None).unwrap(), DEFAULT_LIFETIME);
        assert_eq!(parse("").unwrap(), DEFAULT_LIFETIME);
        assert_eq!(parse("60").unwrap(), 60);
        for bad in ["0", "604801", "-1", "1h", " 60"] {
            assert_eq!(parse(bad).unwrap_err().code, 100, "{bad}");
        }
    }
}
