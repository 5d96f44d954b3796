//! Plain words for the TLS errors users meet. rustls and webpki describe
//! their errors with Rust debug names (`Other(OtherError(CaUsedAsEndEntity))`,
//! `KeyMismatch`, `unexpected error: no server certificate chain
//! resolved`); every message that reports one goes through [`describe`]
//! so that a supervision log says what is wrong in words, for the server
//! programs and the client programs alike.

use pem_rfc7468::Error as PemError;
use rustls::pki_types::UnixTime;
use rustls::{
    AlertDescription, CertificateError, Error, ExtendedKeyPurpose, InconsistentKeys,
    InvalidMessage, OtherError, PeerIncompatible,
};
use std::time::Duration;

/// What `err` means, in words, on one line.
pub fn describe(err: &Error) -> String {
    match err {
        Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            "the peer sent a message that does not belong at this point of the protocol".into()
        }
        Error::InvalidMessage(m) => invalid_message(m),
        Error::NoCertificatesPresented => "the peer presented no certificate".into(),
        Error::UnsupportedNameType => "the peer sent a server name of an unsupported type".into(),
        Error::DecryptError => "a record failed to decrypt: corrupted or forged data".into(),
        Error::EncryptError => "unable to encrypt a record".into(),
        Error::PeerIncompatible(p) => incompatible(p),
        Error::PeerMisbehaved(p) => format!(
            "the peer broke the TLS protocol ({})",
            words(&format!("{p:?}"), ' ')
        ),
        Error::AlertReceived(alert) => received_alert(*alert),
        Error::InvalidCertificate(c) => format!("invalid peer certificate: {}", certificate(c)),
        Error::InvalidCertRevocationList(_) => "invalid certificate revocation list".into(),
        Error::General(text) if text == "no server certificate chain resolved" => {
            "no certificate for the server name the client asked for".into()
        }
        Error::General(text) => text.clone(),
        Error::FailedToGetCurrentTime => "unable to read the clock".into(),
        Error::FailedToGetRandomBytes => "unable to get random bytes".into(),
        Error::PeerSentOversizedRecord => "the peer sent a record larger than TLS allows".into(),
        Error::NoApplicationProtocol => "no application protocol (ALPN) in common".into(),
        Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "the private key is not the key of the certificate".into()
        }
        Error::InconsistentKeys(_) => {
            "unable to check that the private key belongs to the certificate".into()
        }
        Error::Other(other) => other_error(other),
        other => words(&other.to_string(), ' '),
    }
}

/// What is wrong with a PEM block, for the reader who opens the file in
/// an editor (pem-rfc7468 names the RFC 7468 grammar's parts).
pub fn pem(err: &PemError) -> String {
    match err {
        PemError::Base64(_) => "invalid base64: every line but the last must be as long as \
                                the first, with no spaces, blank lines or headers"
            .into(),
        PemError::Length => "its base64 is empty, truncated or in lines shorter than 4".into(),
        PemError::HeaderDisallowed => "PEM headers are not supported".into(),
        PemError::Label => "bad BEGIN line: its label, or text after its dashes".into(),
        PemError::PreEncapsulationBoundary => "bad BEGIN line".into(),
        PemError::PostEncapsulationBoundary => "its END line does not match its BEGIN line".into(),
        PemError::UnexpectedTypeLabel { expected } => format!("not a {expected} block"),
        _ => "not a well-formed PEM block".into(),
    }
}

/// What is wrong with a certificate: the words after
/// `invalid peer certificate: `.
pub fn certificate(err: &CertificateError) -> String {
    match err {
        CertificateError::BadEncoding => "it is not a well-formed certificate".into(),
        CertificateError::Expired => "it has expired".into(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("it expired on {}", date(not_after))
        }
        CertificateError::NotValidYet => "it is not valid yet".into(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("it is not valid before {}", date(not_before))
        }
        CertificateError::Revoked => "it has been revoked".into(),
        CertificateError::UnhandledCriticalExtension => {
            "it has a critical extension this program does not know".into()
        }
        CertificateError::UnknownIssuer => {
            "it is not issued by a trusted certificate authority (unknown issuer)".into()
        }
        CertificateError::UnknownRevocationStatus => "its revocation status is unknown".into(),
        CertificateError::ExpiredRevocationList
        | CertificateError::ExpiredRevocationListContext { .. } => {
            "the certificate revocation list has expired".into()
        }
        CertificateError::BadSignature => "its signature does not verify".into(),
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "its signature algorithm is not supported".into()
        }
        CertificateError::NotValidForName => "it is not valid for the expected name".into(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names = if presented.is_empty() {
                "none".to_owned()
            } else {
                presented
                    .iter()
                    .map(|n| presented_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "it is not valid for the name {} (it names: {names})",
                expected.to_str()
            )
        }
        CertificateError::InvalidPurpose => "its extended key usage does not allow this use".into(),
        CertificateError::InvalidPurposeContext { required, .. } => match required {
            ExtendedKeyPurpose::ClientAuth => {
                "its extended key usage does not allow TLS client authentication".into()
            }
            ExtendedKeyPurpose::ServerAuth => {
                "its extended key usage does not allow TLS server authentication".into()
            }
            _ => "its extended key usage does not allow this use".into(),
        },
        CertificateError::InvalidOcspResponse => "its OCSP response is invalid".into(),
        CertificateError::ApplicationVerificationFailure => "the application refused it".into(),
        CertificateError::Other(other) => other_error(other),
        other => words(&format!("{other:?}"), ' '),
    }
}

/// A subject alternative name as webpki reports it (`DnsName("a.test")`,
/// `IpAddress([127, 0, 0, 1])`), as a user writes it.
fn presented_name(debug: &str) -> String {
    if let Some(name) = debug
        .strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
    {
        return name.to_owned();
    }
    if let Some(bytes) = debug
        .strip_prefix("IpAddress([")
        .and_then(|n| n.strip_suffix("])"))
    {
        let octets: Vec<&str> = bytes.split(", ").collect();
        if octets.len() == 4 {
            return octets.join(".");
        }
        return "an IPv6 address".into();
    }
    match debug.split_once('(') {
        Some((kind, _)) => format!("a name of type {}", words(kind, ' ')),
        None => debug.to_owned(),
    }
}

/// webpki's errors travel inside rustls as `OtherError`.
fn other_error(other: &OtherError) -> String {
    let Some(pki) = other.0.downcast_ref::<webpki::Error>() else {
        return words(&other.to_string(), ' ');
    };
    match pki {
        webpki::Error::CaUsedAsEndEntity => {
            "it is a CA certificate, used as an end-entity certificate".into()
        }
        webpki::Error::EndEntityUsedAsCa => {
            "an end-entity certificate is used as a CA certificate".into()
        }
        webpki::Error::UnsupportedCertVersion => {
            "it is an X.509 v1 or v2 certificate; only v3 is accepted".into()
        }
        webpki::Error::CertDistrusted => "its issuer is distrusted".into(),
        webpki::Error::PathLenConstraintViolated => {
            "the chain is longer than a CA's path length constraint allows".into()
        }
        webpki::Error::NameConstraintViolation => "it breaks a CA's name constraints".into(),
        webpki::Error::MaximumPathDepthExceeded => "the certificate chain is too long".into(),
        other => words(&format!("{other:?}"), ' '),
    }
}

fn invalid_message(m: &InvalidMessage) -> String {
    match m {
        InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion => {
            "the peer does not speak TLS (not a TLS record)".into()
        }
        InvalidMessage::MessageTooLarge
        | InvalidMessage::HandshakePayloadTooLarge
        | InvalidMessage::CertificatePayloadTooLarge => "the peer sent a message too large".into(),
        other => format!(
            "the peer sent a malformed message ({})",
            words(&format!("{other:?}"), ' ')
        ),
    }
}

fn incompatible(p: &PeerIncompatible) -> String {
    match p {
        PeerIncompatible::NoCipherSuitesInCommon => "no cipher suite in common with the peer",
        PeerIncompatible::NoKxGroupsInCommon => "no key exchange group in common with the peer",
        PeerIncompatible::NoSignatureSchemesInCommon
        | PeerIncompatible::NoCertificateRequestSignatureSchemesInCommon => {
            "no signature scheme in common with the peer"
        }
        PeerIncompatible::SignatureAlgorithmsExtensionRequired => {
            "the peer sent no signature_algorithms extension, as TLS 1.0 and 1.1 clients do"
        }
        PeerIncompatible::SupportedVersionsExtensionRequired
        | PeerIncompatible::ServerDoesNotSupportTls12Or13
        | PeerIncompatible::Tls12NotOffered
        | PeerIncompatible::Tls12NotOfferedOrEnabled => {
            "the peer offers neither TLS 1.3 nor TLS 1.2"
        }
        other => {
            return format!(
                "the peer is not compatible ({})",
                words(&format!("{other:?}"), ' ')
            )
        }
    }
    .into()
}

/// An alert by its name in the TLS RFCs (`decode_error`), with what it
/// usually means when that is not obvious.
fn received_alert(alert: AlertDescription) -> String {
    let name = match alert {
        AlertDescription::Unknown(n) => return format!("the peer sent the unknown alert {n}"),
        AlertDescription::UnrecognisedName => "unrecognized_name".to_owned(),
        other => words(&format!("{other:?}"), '_'),
    };
    let hint = match alert {
        AlertDescription::UnknownCA => ": it does not trust the issuer of our certificate",
        AlertDescription::BadCertificate | AlertDescription::CertificateUnknown => {
            ": it refused our certificate"
        }
        AlertDescription::CertificateExpired => ": it says our certificate has expired",
        AlertDescription::HandshakeFailure => ": it found no acceptable parameters",
        AlertDescription::ProtocolVersion => ": no TLS version in common",
        _ => "",
    };
    format!("the peer sent the alert {name}{hint}")
}

/// A UTC date and time, `2025-01-31T12:00:00Z`.
fn date(t: &UnixTime) -> String {
    match x509_cert::der::DateTime::from_unix_duration(Duration::from_secs(t.as_secs())) {
        Ok(d) => d.to_string(),
        Err(_) => format!("{} seconds after 1970", t.as_secs()),
    }
}

/// A Rust identifier in lowercase words: `CaUsedAsEndEntity` becomes
/// `ca used as end entity`, `UnknownCA` `unknown ca`. Anything that is not
/// one identifier is returned as it is.
fn words(ident: &str, sep: char) -> String {
    if ident.is_empty() || !ident.chars().all(|c| c.is_ascii_alphanumeric()) {
        return ident.to_owned();
    }
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::with_capacity(ident.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let starts_word = i > 0
            && c.is_ascii_uppercase()
            && (chars[i - 1].is_ascii_lowercase()
                || chars.get(i + 1).is_some_and(char::is_ascii_lowercase)
                    && chars[i - 1].is_ascii_uppercase());
        if starts_word {
            out.push(sep);
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pki(e: webpki::Error) -> Error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }

    #[test]
    fn identifiers_become_words() {
        assert_eq!(words("CaUsedAsEndEntity", ' '), "ca used as end entity");
        assert_eq!(words("UnknownCA", '_'), "unknown_ca");
        assert_eq!(words("UnknownPSKIdentity", '_'), "unknown_psk_identity");
        assert_eq!(words("DecodeError", '_'), "decode_error");
        assert_eq!(words("not one word", ' '), "not one word");
    }

    #[test]
    fn webpki_errors_inside_rustls() {
        assert_eq!(
            describe(&pki(webpki::Error::CaUsedAsEndEntity)),
            "invalid peer certificate: it is a CA certificate, used as an end-entity certificate"
        );
        assert_eq!(
            describe(&pki(webpki::Error::UnsupportedCertVersion)),
            "invalid peer certificate: it is an X.509 v1 or v2 certificate; only v3 is accepted"
        );
        assert_eq!(
            describe(&pki(webpki::Error::MaximumSignatureChecksExceeded)),
            "invalid peer certificate: maximum signature checks exceeded"
        );
    }

    #[test]
    fn certificate_errors() {
        let cert = |c| describe(&Error::InvalidCertificate(c));
        assert_eq!(
            cert(CertificateError::UnknownIssuer),
            "invalid peer certificate: it is not issued by a trusted certificate authority (unknown issuer)"
        );
        assert_eq!(
            cert(CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
            }),
            "invalid peer certificate: it expired on 2023-11-14T22:13:20Z"
        );
        assert_eq!(
            cert(CertificateError::NotValidForNameContext {
                expected: rustls::pki_types::ServerName::try_from("a.test").unwrap(),
                presented: vec!["DnsName(\"b.test\")".into(), "IpAddress([127, 0, 0, 1])".into()],
            }),
            "invalid peer certificate: it is not valid for the name a.test (it names: b.test, 127.0.0.1)"
        );
        assert_eq!(
            cert(CertificateError::BadSignature),
            "invalid peer certificate: its signature does not verify"
        );
    }

    #[test]
    fn handshake_errors() {
        assert_eq!(
            describe(&Error::General(
                "no server certificate chain resolved".into()
            )),
            "no certificate for the server name the client asked for"
        );
        assert_eq!(
            describe(&Error::PeerIncompatible(
                PeerIncompatible::NoCipherSuitesInCommon
            )),
            "no cipher suite in common with the peer"
        );
        assert_eq!(
            describe(&Error::AlertReceived(AlertDescription::DecodeError)),
            "the peer sent the alert decode_error"
        );
        assert_eq!(
            describe(&Error::AlertReceived(AlertDescription::UnknownCA)),
            "the peer sent the alert unknown_ca: it does not trust the issuer of our certificate"
        );
        assert_eq!(
            describe(&Error::InvalidMessage(InvalidMessage::InvalidContentType)),
            "the peer does not speak TLS (not a TLS record)"
        );
        assert_eq!(
            describe(&Error::InconsistentKeys(InconsistentKeys::KeyMismatch)),
            "the private key is not the key of the certificate"
        );
    }

    /// Every alert number gives a lowercase RFC-style name (or its
    /// number), never a Rust name.
    #[test]
    fn every_alert_in_words() {
        for n in 0..=255u8 {
            let text = received_alert(AlertDescription::from(n));
            let name = text
                .strip_prefix("the peer sent the ")
                .and_then(|t| t.split(':').next())
                .unwrap();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'_'
                    || b == b' '),
                "{n}: {text}"
            );
        }
        assert_eq!(
            received_alert(AlertDescription::from(0x70)),
            "the peer sent the alert unrecognized_name"
        );
        assert_eq!(
            received_alert(AlertDescription::from(200)),
            "the peer sent the unknown alert 200"
        );
    }

    #[test]
    fn pem_errors() {
        assert_eq!(
            pem(&PemError::PostEncapsulationBoundary),
            "its END line does not match its BEGIN line"
        );
        assert_eq!(
            pem(&PemError::Label),
            "bad BEGIN line: its label, or text after its dashes"
        );
    }

    /// No message carries a Rust debug form: no `(`...`)` wrapping of
    /// variant names, no CamelCase identifiers.
    #[test]
    fn no_debug_names() {
        let samples = [
            Error::PeerMisbehaved(rustls::PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
            Error::InvalidMessage(InvalidMessage::MissingKeyExchange),
            Error::PeerIncompatible(PeerIncompatible::NullCompressionRequired),
            Error::AlertReceived(AlertDescription::UnknownPSKIdentity),
            pki(webpki::Error::CertDistrusted),
            Error::InvalidCertificate(CertificateError::Revoked),
        ];
        for e in samples {
            let text = describe(&e);
            let camel = text.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
                w.as_bytes()
                    .windows(2)
                    .any(|p| p[0].is_ascii_lowercase() && p[1].is_ascii_uppercase())
            });
            assert!(!camel, "{text}");
            assert!(!text.contains("Other"), "{text}");
        }
    }
}
