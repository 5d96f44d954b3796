//! Reading certificate chains, private keys and trust anchors, PEM or DER,
//! from files or bytes. Every failure here is a configuration error (96),
//! found before the first byte of any handshake. Key bytes are wiped from
//! our buffers once the signing key has been built.
//!
//! PEM is read with pem-rfc7468 (RustCrypto, the family of x509-cert):
//! its decoder writes into a buffer we supply, so a private key is
//! decoded straight into a wiped buffer with no copy of its base64 or
//! DER left behind, its base64 is constant-time, and its `decode_label`
//! reads a block's label without decoding it, so that the chain parser
//! never decodes the key block of a combined CERTFILE. rustls-pki-types'
//! own PEM reader gathers each block's base64 in an internal buffer and
//! decodes every block, so it is not used here. The crate is stricter
//! than OpenSSL about layout; doc/s6-tlsd-io.md says where.

use crate::cli::error::{describe_io, Fatal};
use crate::cli::log::Log;
use crate::tls::errors::{self, describe};
use pkcs8::der::oid::ObjectIdentifier;
use pkcs8::PrivateKeyInfo;
use rustls::crypto::aws_lc_rs::sign::{any_ecdsa_type, any_supported_type};
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

/// Where the first line of `text` that starts with `prefix` starts.
fn line_starting(text: &[u8], prefix: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        if text[at..].starts_with(prefix) {
            return Some(at);
        }
        at += text[at..].iter().position(|&b| b == b'\n')? + 1;
    }
}

/// One PEM block of a file, its BEGIN line through its END line's
/// closing dashes, with the label pem-rfc7468 read from its boundaries.
struct PemBlock<'a> {
    label: &'a str,
    text: &'a [u8],
}

/// The PEM blocks of `text`, in order; text outside blocks is ignored.
/// pem-rfc7468 reads one block and rejects anything after its END line,
/// so the file is cut at each BEGIN line and just after the next END
/// line's closing dashes (as x509-cert's `load_pem_chain` cuts); the
/// crate checks every block's boundaries and labels. Finding a block
/// decodes and copies nothing out of `text` (a file's wiped buffer), so a
/// block the caller does not want, such as a private key in a combined
/// CERTFILE, never leaves it.
fn pem_blocks(text: &[u8]) -> impl Iterator<Item = Result<PemBlock<'_>, String>> + '_ {
    let mut rest = text;
    std::iter::from_fn(move || {
        let from = &rest[line_starting(rest, b"-----BEGIN ")?..];
        let line = |at: usize| from[at..].split(|&b| b == b'\n').next().unwrap_or_default();
        // For messages only: the crate has not read this label yet.
        let named = || {
            let begin = line(0).trim_ascii();
            let label = begin.strip_prefix(b"-----BEGIN ").unwrap_or(begin);
            let label = label.strip_suffix(b"-----").unwrap_or(label);
            format!("PEM block {}", String::from_utf8_lossy(label))
        };
        let Some(end) = line_starting(from, b"-----END ") else {
            rest = &[];
            return Some(Err(format!("{} has no END line", named())));
        };
        let text = &from[..end + line(end).trim_ascii_end().len()];
        rest = &from[end + line(end).len()..];
        Some(
            pem_rfc7468::decode_label(text)
                .map(|label| PemBlock { label, text })
                .map_err(|e| format!("{}: {}", named(), errors::pem(&e))),
        )
    })
}

/// Decodes a block into a buffer that is wiped when dropped, allocated
/// once at its exact size so that it is never moved. pem-rfc7468 decodes
/// from the block's text straight into it: constant-time base64, and no
/// buffer of its own but one base64 quantum (3 bytes) inside the decoder,
/// on the stack. Its lines must all be as long as the first one, but for
/// a shorter last line, which is how every tool wraps (64 columns for
/// OpenSSL, 76 for MIME encoders, one line for some).
fn decode(block: &PemBlock<'_>) -> Result<Zeroizing<Vec<u8>>, String> {
    let failed = |e| format!("PEM block {}: {}", block.label, errors::pem(&e));
    // The crate decodes lines of one given width: the first line's.
    let body = block
        .text
        .splitn(2, |&b| b == b'\n')
        .nth(1)
        .unwrap_or_default();
    let width = body
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(body.len());
    let mut decoder = pem_rfc7468::Decoder::new_wrapped(block.text, width).map_err(failed)?;
    let mut der = Zeroizing::new(vec![0; decoder.remaining_len()]);
    decoder.decode(&mut der).map_err(failed)?;
    if !decoder.is_finished() {
        return Err(failed(pem_rfc7468::Error::Length));
    }
    Ok(der)
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
            if block.label == "CERTIFICATE" {
                certs.push(CertificateDer::from(std::mem::take(&mut *decode(&block)?)));
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

/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// Finds the first private key block of a PEM file and decodes it.
fn pem_private_key(text: &[u8]) -> Result<(&'static str, Zeroizing<Vec<u8>>), String> {
    for block in pem_blocks(text) {
        let block = block?;
        // An OpenSSL legacy encrypted key says so in a `Proc-Type` header.
        if block.label.starts_with("ENCRYPTED")
            || block.text.windows(10).any(|w| w == b",ENCRYPTED")
        {
            return Err("encrypted private keys are not supported".into());
        }
        if let Some(label) = KEY_LABELS.into_iter().find(|&k| k == block.label) {
            return Ok((label, decode(&block)?));
        }
    }
    Err("no private key found".into())
}

/// An EC key goes straight to the ECDSA loader: the provider's
/// `any_supported_type` tries RSA first, and aws-lc parses and checks an
/// EC key in full before it finds it is not RSA, which doubled the cost
/// of loading an ECDSA key, the largest part of an engine's start after
/// the handshake itself (BENCHMARKS.md). RSA is the first it tries.
fn signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn rustls::sign::SigningKey>, String> {
    let ec = match key {
        PrivateKeyDer::Sec1(_) => true,
        PrivateKeyDer::Pkcs8(der) => PrivateKeyInfo::try_from(der.secret_pkcs8_der())
            .is_ok_and(|info| info.algorithm.oid == EC_PUBLIC_KEY),
        _ => false,
    };
    let typed = if ec {
        any_ecdsa_type(key)
    } else {
        any_supported_type(key)
    };
    // The provider's only complaint is that it found no key it can use.
    typed.map_err(|_| {
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

    fn key(body: &str) -> Result<Vec<u8>, String> {
        let text = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        pem_private_key(text.as_bytes()).map(|(_, der)| der.to_vec())
    }

    /// Any line width from 4 up, as long as every line but the last has
    /// it; what else the crate refuses.
    #[test]
    fn layouts() {
        let one_line = "Zm9vYmFyYmF6cXV1eDAxMjM0NTY3ODk=";
        let expected = b"foobarbazquux0123456789";
        for width in [4, 5, 7, 8, 16, 31, 32] {
            let lines: Vec<&str> = one_line
                .as_bytes()
                .chunks(width)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            assert_eq!(key(&lines.join("\n")).unwrap(), expected, "{width}");
            assert_eq!(key(&lines.join("\r\n")).unwrap(), expected, "{width}");
        }
        for refused in [
            "Zm9vYmFyYmF6cXV1\neDAx\nMjM0NTY3ODk=",
            "Zm9vYmFy\n\nYmF6cXV1eDAxMjM0NTY3ODk=",
            "Zm9vYmFy YmF6cXV1eDAxMjM0NTY3ODk=",
            "Zm9vYmFy \nYmF6cXV1\neDAxMjM0\nNTY3ODk=",
            "Zm9\nvYm\nFyY\nmF6\ncXV\n1eD\nAxM\njM0\nNTY\n3OD\nk=",
            "Zm9vYmFy=YmF6cXV1eDAxMjM0NTY3ODk=",
            "Zm9vYmFyYmF6cXV1eDAxMjM0NTY3OD",
        ] {
            assert!(
                key(refused)
                    .unwrap_err()
                    .contains("PEM block PRIVATE KEY: "),
                "{refused:?}"
            );
        }
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
        let text = "junk\n-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----  \n\
                    between\n-----BEGIN EC PRIVATE KEY-----\r\nZm9v\r\nYmFy\r\n-----END EC PRIVATE KEY-----\r\n";
        let (label, der) = pem_private_key(text.as_bytes()).unwrap();
        assert_eq!((label, &der[..]), ("EC PRIVATE KEY", &b"foobar"[..]));
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nZm9v\n-----END RSA PRIVATE KEY-----\n";
        assert!(pem_private_key(encrypted.as_bytes())
            .unwrap_err()
            .contains("encrypted"));
        let pkcs8 =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nZm9v\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(pem_private_key(pkcs8.as_bytes())
            .unwrap_err()
            .contains("encrypted"));
        let unterminated = "-----BEGIN PRIVATE KEY-----\nZm9v\n";
        assert_eq!(
            pem_private_key(unterminated.as_bytes()).unwrap_err(),
            "PEM block PRIVATE KEY has no END line"
        );
        let mismatch = "-----BEGIN PRIVATE KEY-----\nZm9v\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            pem_private_key(mismatch.as_bytes()).unwrap_err(),
            "PEM block PRIVATE KEY: its END line does not match its BEGIN line"
        );
        assert_eq!(
            pem_private_key(b"-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n")
                .unwrap_err(),
            "no private key found"
        );
    }
}
