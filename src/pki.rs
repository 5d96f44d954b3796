//! Reading certificate chains, private keys and trust anchors, PEM or DER,
//! from files or bytes. Every failure here is a configuration error (96),
//! found before the first byte of any handshake. Key bytes are wiped from
//! our buffers once the signing key has been built.

use crate::error::{describe_io, Fatal};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

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
        crate::dn::check_certificate(cert).map_err(|e| format!("invalid certificate: {e}"))?;
    }
    Ok(certs)
}

/// Parses a private key (PEM PKCS#8, PKCS#1 RSA or SEC1 EC, or DER of any
/// of these) into a signing key. RSA keys under 2048 bits are refused by
/// the crypto provider.
pub fn parse_key(bytes: &[u8]) -> Result<Arc<dyn rustls::sign::SigningKey>, String> {
    if looks_like_pem(bytes) {
        if bytes.windows(9).any(|w| w == b"ENCRYPTED") {
            return Err("encrypted private keys are not supported".into());
        }
        for section in pem_sections(bytes) {
            let (kind, der) = section?;
            let der = Zeroizing::new(der);
            let key = match kind {
                SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(&der[..])),
                SectionKind::RsaPrivateKey => {
                    PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(&der[..]))
                }
                SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(&der[..])),
                _ => continue,
            };
            return signing_key(&key);
        }
        return Err("no private key found".into());
    }
    if bytes.is_empty() {
        return Err("no private key found".into());
    }
    let key = PrivateKeyDer::try_from(bytes).map_err(|e| format!("invalid private key: {e}"))?;
    signing_key(&key)
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
