//! OCSP stapling: the responses named by `OCSPFILE` (the default pair)
//! and `OCSPFILE:name` (the SNI pair `CERTFILE:name`), read at start and
//! checked before they are attached to their certificate.
//!
//! A response is stapled only if it parses, says `successful`, holds a
//! status for this very certificate (serial number, and the hashes of
//! its issuer's name and key as the chain shows them), and its
//! `nextUpdate` has not passed: stapling a stale response makes
//! must-staple clients fail. Anything else is not stapled, with one
//! warning, and the handshake goes on without a staple. The response's
//! signature is the client's to check, as it is for any staple.

use crate::cli::error::{describe_io, Fatal};
use crate::cli::log::Log;
use crate::tls::sni;
use aws_lc_rs::digest;
use der::oid::ObjectIdentifier;
use der::{Decode, Encode};
use rustls::pki_types::CertificateDer;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_cert::Certificate;
use x509_ocsp::{BasicOcspResponse, CertId, OcspResponse, OcspResponseStatus};

const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");

/// The CertID hash algorithms a responder may use (RFC 6960 and common
/// practice: SHA-1 by far the most frequent).
const HASHES: [(ObjectIdentifier, &digest::Algorithm); 4] = [
    (
        ObjectIdentifier::new_unwrap("1.3.14.3.2.26"),
        &digest::SHA1_FOR_LEGACY_USE_ONLY,
    ),
    (
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
        &digest::SHA256,
    ),
    (
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2"),
        &digest::SHA384,
    ),
    (
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3"),
        &digest::SHA512,
    ),
];

/// One `OCSPFILE:name` variable: the name as written, normalised, and the
/// file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedResponse {
    pub var: String,
    pub name: Option<String>,
    pub path: OsString,
}

/// Finds every non-empty `OCSPFILE:name` variable.
pub fn scan_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<NamedResponse> {
    vars.into_iter()
        .filter(|(_, path)| !path.is_empty())
        .filter_map(|(var, path)| {
            let name = var.as_bytes().strip_prefix(b"OCSPFILE:")?;
            Some(NamedResponse {
                var: var.to_string_lossy().into_owned(),
                name: std::str::from_utf8(name).ok().and_then(sni::normalize),
                path,
            })
        })
        .collect()
}

/// Reads the response in `path` (named by `var` in messages) for `chain`:
/// the bytes to staple, or `None`, after one warning, when it must not be
/// stapled. A file that cannot be read, or is not a regular file, is a
/// configuration error (96).
pub fn load(
    var: &str,
    path: &Path,
    chain: &[CertificateDer<'_>],
    log: &Log,
) -> Result<Option<Vec<u8>>, Fatal> {
    let failed = |e: std::io::Error| {
        Fatal::config(format!(
            "unable to read {var} {}: {}",
            path.display(),
            describe_io(&e)
        ))
    };
    let mut file = std::fs::File::open(path).map_err(failed)?;
    // A device or a pipe could be endless: only a file has an end.
    if !file.metadata().map_err(failed)?.is_file() {
        return Err(Fatal::config(format!(
            "{var} {}: not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(failed)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match check(&bytes, chain, now) {
        Ok(()) => Ok(Some(bytes)),
        Err(why) => {
            log.warn(&format!("{var} {}: not stapled: {why}", path.display()));
            Ok(None)
        }
    }
}

/// Why `response` must not be stapled with `chain` (leaf first) at `now`
/// (seconds since the epoch), if it must not.
pub fn check(response: &[u8], chain: &[CertificateDer<'_>], now: u64) -> Result<(), String> {
    let response =
        OcspResponse::from_der(response).map_err(|e| format!("not an OCSP response: {e}"))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!(
            "response status is {}, not successful",
            status_name(response.response_status)
        ));
    }
    let bytes = response
        .response_bytes
        .ok_or("a successful response without a body")?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        ));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("not a basic OCSP response: {e}"))?;
    let parse = |der: &CertificateDer<'_>| {
        Certificate::from_der(der).map_err(|e| format!("certificate: {e}"))
    };
    let leaf = parse(chain.first().ok_or("no certificate")?)?;
    let issuer = chain.get(1).map(parse).transpose()?;
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| names(&r.cert_id, &leaf, issuer.as_ref()))
        .ok_or("the response is for another certificate")?;
    if let Some(next) = single.next_update {
        if next.0.to_unix_duration().as_secs() <= now {
            return Err(format!(
                "stale: its nextUpdate {} has passed",
                next.0.to_date_time()
            ));
        }
    }
    Ok(())
}

/// Does `id` name `leaf`? Without the issuer in the chain, the serial and
/// the issuer's name hash are all there is to compare.
fn names(id: &CertId, leaf: &Certificate, issuer: Option<&Certificate>) -> bool {
    let Some((_, alg)) = HASHES.iter().find(|(oid, _)| *oid == id.hash_algorithm.oid) else {
        return false;
    };
    let hash = |bytes: &[u8]| digest::digest(alg, bytes);
    let tbs = &leaf.tbs_certificate;
    let Ok(issuer_name) = tbs.issuer.to_der() else {
        return false;
    };
    let key_matches = issuer.map_or(true, |ca| {
        let key = ca
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        hash(key).as_ref() == id.issuer_key_hash.as_bytes()
    });
    id.serial_number == tbs.serial_number
        && hash(&issuer_name).as_ref() == id.issuer_name_hash.as_bytes()
        && key_matches
}

/// RFC 6960's names of the response statuses.
fn status_name(status: OcspResponseStatus) -> &'static str {
    match status {
        OcspResponseStatus::Successful => "successful",
        OcspResponseStatus::MalformedRequest => "malformedRequest",
        OcspResponseStatus::InternalError => "internalError",
        OcspResponseStatus::TryLater => "tryLater",
        OcspResponseStatus::SigRequired => "sigRequired",
        OcspResponseStatus::Unauthorized => "unauthorized",
    }
}
