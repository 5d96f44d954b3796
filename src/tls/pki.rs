//! Reading certificate chains, private keys and trust anchors, PEM or DER,
//! from files or bytes. Every failure here is a configuration error (96),
//! found before the first byte of any handshake. Key bytes are wiped from
//! our buffers once the signing key has been built.

use crate::cli::error::{describe_io, Fatal};
use crate::cli::log::Log;
use crate::tls::errors::{self, describe};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use x509_cert::certificate::Version;
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;
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

/// One `-----BEGIN LABEL-----` ... `-----END LABEL-----` block of a PEM
/// file, found without decoding anything.
struct PemBlock<'a> {
    label: &'a [u8],
    /// The block's text, its BEGIN and END lines included.
    text: &'a [u8],
    /// The lines between BEGIN and END, trimmed.
    body: Vec<&'a [u8]>,
}

/// The PEM blocks of `text`, in order; text outside blocks is ignored.
/// Finding a block copies nothing out of `text` (a file's wiped buffer),
/// so a block the caller does not want, such as a private key in a
/// combined CERTFILE, is never decoded or copied anywhere.
fn pem_blocks(text: &[u8]) -> impl Iterator<Item = Result<PemBlock<'_>, String>> + '_ {
    let mut lines = text
        .split_inclusive(|&b| b == b'\n')
        .scan(0, |offset, line| {
            let start = *offset;
            *offset += line.len();
            Some((start, *offset, line.trim_ascii()))
        });
    std::iter::from_fn(move || {
        let (start, label) = lines.by_ref().find_map(|(start, _, line)| {
            let label = line
                .strip_prefix(b"-----BEGIN ")
                .and_then(|l| l.strip_suffix(b"-----"))?;
            Some((start, label))
        })?;
        let end = [b"-----END ", label, b"-----"].concat();
        let mut body = Vec::new();
        for (_, stop, line) in lines.by_ref() {
            if line == end.as_slice() {
                return Some(Ok(PemBlock {
                    label,
                    text: &text[start..stop],
                    body,
                }));
            }
            body.push(line);
        }
        Some(Err(format!(
            "PEM block {} has no END line",
            String::from_utf8_lossy(label)
        )))
    })
}

/// Parses a certificate chain: every CERTIFICATE in a PEM file, leaf
/// first, or one DER certificate. Each must be a well-formed X.509
/// certificate. Other PEM blocks (a private key, when CERTFILE and
/// KEYFILE are one file) are skipped undecoded.
pub fn parse_chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = if looks_like_pem(bytes) {
        let mut certs = Vec::new();
        for block in pem_blocks(bytes) {
            let block = block?;
            if block.label == b"CERTIFICATE" {
                let cert =
                    CertificateDer::from_pem_slice(block.text).map_err(|e| errors::pem(&e))?;
                certs.push(cert);
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
    for block in pem_blocks(text) {
        let block = block?;
        if block.label.starts_with(b"ENCRYPTED") {
            return Err("encrypted private keys are not supported".into());
        }
        let Some(label) = KEY_LABELS.iter().find(|k| k.as_bytes() == block.label) else {
            continue;
        };
        // Reserved once, so the decoded key is never moved by a reallocation.
        let mut der = Zeroizing::new(Vec::with_capacity(block.text.len() / 4 * 3 + 3));
        let mut decoder = Base64::default();
        for line in block.body {
            if line.contains(&b':') {
                if line.windows(9).any(|w| w == b"ENCRYPTED") {
                    return Err("encrypted private keys are not supported".into());
                }
                continue;
            }
            decoder.feed(line, &mut der)?;
        }
        decoder.finish()?;
        return Ok((label, der));
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
    // The provider's only complaint is that it found no key it can use.
    any_supported_type(key).map_err(|_| {
        "unusable private key: not an RSA key of 2048 bits or more, nor an ECDSA \
         P-256, P-384 or P-521 key, nor an Ed25519 key"
            .to_owned()
    })
}

/// Loads a certificate chain and its key, and checks that they belong
/// together. `cert_var` and `key_var` name the pair in messages
/// (`CERTFILE`, `CERTFILE:x`). A certificate that clients may refuse (v1,
/// expired, not valid yet) is still served, with a warning: it is ours,
/// not a peer's, and s6-networking serves it too.
pub fn load_pair(
    cert_var: &str,
    cert_path: &Path,
    key_var: &str,
    key_path: &Path,
    log: &Log,
) -> Result<CertifiedKey, Fatal> {
    let cert_file = || format!("{cert_var} {}", cert_path.display());
    let chain = parse_chain(&read_file(cert_var, cert_path)?)
        .map_err(|e| Fatal::config(format!("{}: {e}", cert_file())))?;
    let key = parse_key(&read_file(key_var, key_path)?)
        .map_err(|e| Fatal::config(format!("{key_var} {}: {e}", key_path.display())))?;
    let leaf = Certificate::from_der(&chain[0])
        .map_err(|e| Fatal::config(format!("{}: invalid certificate: {e}", cert_file())))?;
    let mismatch = |why: String| {
        Fatal::config(format!(
            "{key_var} {} does not match {}: {why}",
            key_path.display(),
            cert_file()
        ))
    };
    let Some(public) = key.public_key() else {
        return Err(mismatch(describe(&rustls::Error::InconsistentKeys(
            rustls::InconsistentKeys::Unknown,
        ))));
    };
    if !same_key(&leaf, public.as_ref()) {
        let later = chain[1..].iter().position(|cert| {
            Certificate::from_der(cert).is_ok_and(|c| same_key(&c, public.as_ref()))
        });
        return Err(match later {
            Some(i) => mismatch(format!(
                "the first certificate in {cert_var} must be the one for {key_var} \
                 (leaf first); the key is the one of certificate {}",
                i + 2
            )),
            None => mismatch(describe(&rustls::Error::InconsistentKeys(
                rustls::InconsistentKeys::KeyMismatch,
            ))),
        });
    }
    for warning in served_anyway(&leaf) {
        log.warn(&format!("{}: {warning}", cert_file()));
    }
    Ok(CertifiedKey::new(chain, key))
}

/// Compares the key of `cert` with a DER SubjectPublicKeyInfo. Nothing of
/// a peer verifier runs here: a v1 or an expired certificate still has
/// the key it has.
fn same_key(cert: &Certificate, spki: &[u8]) -> bool {
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .is_ok_and(|der| der == spki)
}

/// Why clients may refuse our own certificate, though we serve it.
fn served_anyway(cert: &Certificate) -> Vec<String> {
    let tbs = &cert.tbs_certificate;
    let mut warnings = Vec::new();
    if tbs.version != Version::V3 {
        warnings.push(
            "an X.509 v1 or v2 certificate: many clients refuse certificates older than v3"
                .to_owned(),
        );
    }
    let now = SystemTime::now();
    let not_after = tbs.validity.not_after;
    let not_before = tbs.validity.not_before;
    if not_after.to_system_time() < now {
        warnings.push(format!(
            "the certificate expired on {}: clients will refuse it",
            not_after.to_date_time()
        ));
    } else if not_before.to_system_time() > now {
        warnings.push(format!(
            "the certificate is not valid before {}: clients will refuse it until then",
            not_before.to_date_time()
        ));
    }
    warnings
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
            store.add(cert).map_err(|e| {
                Fatal::config(format!(
                    "trust anchor {}: {}",
                    origin.display(),
                    describe(&e)
                ))
            })?;
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

    /// A key block in a chain file is never decoded: not even base64 that
    /// would not decode stops the chain from loading.
    #[test]
    fn chain_skips_other_blocks_undecoded() {
        let cert = rcgen::generate_simple_self_signed(vec!["a.example".into()])
            .unwrap()
            .cert;
        let key = "-----BEGIN PRIVATE KEY-----\n!not base64!\n-----END PRIVATE KEY-----\n";
        for text in [
            format!("{key}{}", cert.pem()),
            format!("{}{key}", cert.pem()),
        ] {
            let chain = parse_chain(text.as_bytes()).unwrap();
            assert_eq!(chain, [cert.der().clone()]);
        }
        let unterminated = format!("{}-----BEGIN PRIVATE KEY-----\nZm9v\n", cert.pem());
        assert!(parse_chain(unterminated.as_bytes())
            .unwrap_err()
            .contains("no END"));
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
