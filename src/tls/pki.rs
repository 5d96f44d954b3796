//! Reading certificate chains, private keys and trust anchors, PEM or DER,
//! from files or bytes. Every failure here is a configuration error (96),
//! found before the first byte of any handshake. Key bytes are wiped from
//! our buffers once the signing key has been built.

use crate::cli::error::{describe_io, Fatal};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// A path from the environment; an empty value counts as unset.
pub fn env_path(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The trust anchors named by `CADIR` (which wins) or `CAFILE`; neither
/// set is a usage error (100) saying `neither`.
pub fn env_anchors(neither: &str) -> Result<rustls::RootCertStore, Fatal> {
    let cadir = env_path("CADIR");
    let cafile = env_path("CAFILE");
    if cadir.is_none() && cafile.is_none() {
        return Err(Fatal::usage(neither));
    }
    load_anchors(
        cadir.as_deref().map(Path::new),
        cafile.as_deref().map(Path::new),
    )
}

/// Reads a whole file into a buffer that is wiped when dropped.
pub fn read_file(what: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, Fatal> {
    let bytes = std::fs::read(path).map_err(|e| {
        Fatal::config(format!(
            "unable to read {what} {}: {}",
            path.display(),
            describe_io(&e)
        ))
    })?;
    Ok(Zeroizing::new(bytes))
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn pem_sections(bytes: &[u8]) -> impl Iterator<Item = Result<(SectionKind, Vec<u8>), String>> + '_ {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes).map(|r| r.map_err(|e| e.to_string()))
}

/// Parses a certificate chain: every CERTIFICATE in a PEM file, leaf
/// first, or one DER certificate. Each must be a well-formed X.509
/// certificate.
pub fn parse_chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = if looks_like_pem(bytes) {
        let mut certs = Vec::new();
        for section in pem_sections(bytes) {
            if let (SectionKind::Certificate, der) = section? {
                certs.push(CertificateDer::from(der));
            }
        }
        certs
    } else if bytes.is_empty() {
        Vec::new()
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    for cert in &certs {
        crate::info::dn::check_certificate(cert)
            .map_err(|e| format!("invalid certificate: {e}"))?;
    }
    Ok(certs)
}

/// Parses a private key (PEM PKCS#8, PKCS#1 RSA or SEC1 EC, or DER of any
/// of these) into a signing key. RSA keys under 2048 bits are refused by
/// the crypto provider.
pub fn parse_key(bytes: &[u8]) -> Result<Arc<dyn rustls::sign::SigningKey>, String> {
    if looks_like_pem(bytes) {
        let (label, der) = pem_private_key(bytes)?;
        let key = match label {
            "PRIVATE KEY" => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(&der[..])),
            "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(&der[..])),
            _ => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(&der[..])),
        };
        return signing_key(&key);
    }
    if bytes.is_empty() {
        return Err("no private key found".into());
    }
    let key = PrivateKeyDer::try_from(bytes).map_err(|e| format!("invalid private key: {e}"))?;
    signing_key(&key)
}

const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// Finds the first private key block of a PEM file and decodes it into a
/// buffer that is wiped when dropped. We decode it ourselves because a
/// general PEM parser's intermediate buffers would leave the key's base64
/// text behind in freed memory.
fn pem_private_key(text: &[u8]) -> Result<(&'static str, Zeroizing<Vec<u8>>), String> {
    let mut lines = text.split(|&b| b == b'\n').map(|l| l.trim_ascii());
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix(b"-----BEGIN ")
            .and_then(|l| l.strip_suffix(b"-----"))
        else {
            continue;
        };
        if label.starts_with(b"ENCRYPTED") {
            return Err("encrypted private keys are not supported".into());
        }
        let Some(label) = KEY_LABELS.iter().find(|k| k.as_bytes() == label) else {
            continue;
        };
        let end = format!("-----END {label}-----");
        // Reserved once, so the decoded key is never moved by a reallocation.
        let mut der = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
        let mut decoder = Base64::default();
        for line in lines.by_ref() {
            if line == end.as_bytes() {
                decoder.finish()?;
                return Ok((label, der));
            }
            if line.contains(&b':') {
                if line.windows(9).any(|w| w == b"ENCRYPTED") {
                    return Err("encrypted private keys are not supported".into());
                }
                continue;
            }
            decoder.feed(line, &mut der)?;
        }
        return Err(format!("PEM block {label} has no END line"));
    }
    Err("no private key found".into())
}

/// A streaming base64 decoder that writes only into the caller's buffer.
#[derive(Default)]
struct Base64 {
    bits: u32,
    nbits: u32,
    padding: bool,
}

impl Base64 {
    fn feed(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        for &c in line {
            let value = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => {
                    self.padding = true;
                    continue;
                }
                b' ' | b'\t' | b'\r' => continue,
                _ => return Err("invalid base64 in PEM block".into()),
            };
            if self.padding {
                return Err("invalid base64 in PEM block: data after padding".into());
            }
            self.bits = (self.bits << 6) | u32::from(value);
            self.nbits += 6;
            if self.nbits >= 8 {
                self.nbits -= 8;
                out.push((self.bits >> self.nbits) as u8);
                self.bits &= (1 << self.nbits) - 1;
            }
        }
        Ok(())
    }

    /// Leftover bits must be the zero fill of a proper final quantum.
    fn finish(&self) -> Result<(), String> {
        if self.nbits >= 6 || self.bits != 0 {
            return Err("invalid base64 in PEM block: truncated".into());
        }
        Ok(())
    }
}

impl Drop for Base64 {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.bits);
    }
}

fn signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn rustls::sign::SigningKey>, String> {
    any_supported_type(key).map_err(|e| format!("unusable private key: {e}"))
}

/// Loads a certificate chain and its key, and checks that they belong
/// together. `label` names the pair in messages (`CERTFILE`, `CERTFILE:x`).
pub fn load_pair(
    cert_var: &str,
    cert_path: &Path,
    key_var: &str,
    key_path: &Path,
) -> Result<CertifiedKey, Fatal> {
    let chain = parse_chain(&read_file(cert_var, cert_path)?)
        .map_err(|e| Fatal::config(format!("{cert_var} {}: {e}", cert_path.display())))?;
    let key = parse_key(&read_file(key_var, key_path)?)
        .map_err(|e| Fatal::config(format!("{key_var} {}: {e}", key_path.display())))?;
    let pair = CertifiedKey::new(chain, key);
    match pair.keys_match() {
        Ok(()) => Ok(pair),
        Err(e) => Err(Fatal::config(format!(
            "{key_var} {} does not match {cert_var} {}: {e}",
            key_path.display(),
            cert_path.display()
        ))),
    }
}

/// Loads trust anchors: every regular file of `CADIR` (each PEM, possibly
/// with several certificates, or DER), or the PEM bundle `CAFILE`.
pub fn load_anchors(
    cadir: Option<&Path>,
    cafile: Option<&Path>,
) -> Result<rustls::RootCertStore, Fatal> {
    let mut store = rustls::RootCertStore::empty();
    let mut add = |origin: &Path, bytes: &[u8]| -> Result<(), Fatal> {
        let certs = parse_chain(bytes)
            .map_err(|e| Fatal::config(format!("trust anchor {}: {e}", origin.display())))?;
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| Fatal::config(format!("trust anchor {}: {e}", origin.display())))?;
        }
        Ok(())
    };
    if let Some(dir) = cadir {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Fatal::config(format!(
                "unable to read CADIR {}: {}",
                dir.display(),
                describe_io(&e)
            ))
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| {
                Fatal::config(format!(
                    "unable to read CADIR {}: {}",
                    dir.display(),
                    describe_io(&e)
                ))
            })?;
            let path = entry.path();
            if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            add(&path, &read_file("trust anchor", &path)?)?;
        }
        if store.is_empty() {
            return Err(Fatal::config(format!(
                "no trust anchor found in CADIR {}",
                dir.display()
            )));
        }
    } else if let Some(file) = cafile {
        add(file, &read_file("CAFILE", file)?)?;
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut d = Base64::default();
        d.feed(text.as_bytes(), &mut out)?;
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn base64() {
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(decode("Zg==").unwrap(), b"f");
        assert_eq!(decode("Zm8=").unwrap(), b"fo");
        assert_eq!(decode("Zm9v").unwrap(), b"foo");
        assert_eq!(decode("Zm9vYmFy").unwrap(), b"foobar");
        assert!(decode("Zm9vY").is_err());
        assert!(decode("Zh==").is_err());
        assert!(decode("Zg==Zg").is_err());
        assert!(decode("Zm9v!").is_err());
    }

    #[test]
    fn pem_blocks() {
        let text = "junk\n-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n\
                    -----BEGIN EC PRIVATE KEY-----\r\nZm9v\r\nYmFy\r\n-----END EC PRIVATE KEY-----\r\n";
        let (label, der) = pem_private_key(text.as_bytes()).unwrap();
        assert_eq!((label, &der[..]), ("EC PRIVATE KEY", &b"foobar"[..]));
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nZm9v\n-----END RSA PRIVATE KEY-----\n";
        assert!(pem_private_key(encrypted.as_bytes())
            .unwrap_err()
            .contains("encrypted"));
        let unterminated = "-----BEGIN PRIVATE KEY-----\nZm9v\n";
        assert!(pem_private_key(unterminated.as_bytes())
            .unwrap_err()
            .contains("no END"));
        assert!(
            pem_private_key(b"-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
