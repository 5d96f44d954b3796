//! The connection information string sent after the handshake (`Y`, and
//! s6-tlsd's notification pipe): `NAME=value\0` or bare `NAME\0` entries,
//! terminated by one more `\0`. Encoder, decoder, and the entries built
//! from a finished handshake: the five of doc/s6-tlsd-io.md ("The
//! connection information"), then, on the server side,
//! `SSL_SESSION_RESUMED`.

pub mod dn;

use rustls::{CipherSuite, ProtocolVersion};

/// One entry: a value, or `None` for "this variable is unset".
pub type Entry = (String, Option<String>);

/// Encodes entries. Names must be non-empty without `\0` or `=`, values
/// without `\0`; the encoding can carry nothing else. An entry that breaks
/// these rules is not allowed to change the meaning of the others: a bad
/// name is left out, a value holding `\0` is sent as a bare name (unset).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let usable = |name: &String| !name.is_empty() && !name.contains(['\0', '=']);
    let mut any = false;
    for (name, value) in entries.iter().filter(|(name, _)| usable(name)) {
        any = true;
        out.extend_from_slice(name.as_bytes());
        if let Some(v) = value.as_ref().filter(|v| !v.contains('\0')) {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(0);
    }
    if !any {
        out.push(0);
    }
    out.push(0);
    out
}

/// Where the terminator of an encoded string ends, if `bytes` holds a
/// complete one: the length to consume.
pub fn complete_len(bytes: &[u8]) -> Option<usize> {
    if bytes.starts_with(b"\0\0") {
        return Some(2);
    }
    bytes.windows(2).position(|w| w == b"\0\0").map(|i| i + 2)
}

/// Decodes a complete information string (as found by [`complete_len`]).
pub fn decode(bytes: &[u8]) -> Result<Vec<Entry>, &'static str> {
    let body = match bytes {
        b"\0\0" => return Ok(Vec::new()),
        [body @ .., 0, 0] => body,
        _ => return Err("information string is not terminated by two NUL bytes"),
    };
    body.split(|&b| b == 0)
        .map(|entry| {
            let text = std::str::from_utf8(entry).map_err(|_| "information entry is not UTF-8")?;
            let (name, value) = match text.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (text, None),
            };
            if name.is_empty() {
                return Err("information entry with an empty name");
            }
            Ok((name.to_owned(), value))
        })
        .collect()
}

pub fn protocol_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    }
}

/// OpenSSL's name of a cipher suite, as mod_ssl and s6-networking print it.
pub fn cipher_name(suite: CipherSuite) -> String {
    let known = match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => return format!("{other:?}"),
    };
    known.to_owned()
}

/// The five entries, in their order, for a finished handshake of either
/// role: `sni` is the server name the role knows (the one the client sent,
/// on the server side), and the peer entries describe the peer's verified
/// end-entity certificate.
pub fn entries(conn: &rustls::CommonState, sni: Option<&str>) -> Vec<Entry> {
    let protocol = conn
        .protocol_version()
        .map(protocol_name)
        .map(str::to_owned);
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| cipher_name(s.suite()));
    let leaf = conn.peer_certificates().and_then(|c| c.first());
    let hash = leaf.map(|cert| {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("SHA256:{hex}")
    });
    let subject = leaf.and_then(|cert| crate::info::dn::format_subject(cert));
    vec![
        ("SSL_PROTOCOL".into(), protocol),
        ("SSL_CIPHER".into(), cipher),
        ("SSL_TLS_SNI_SERVERNAME".into(), sni.map(str::to_owned)),
        ("SSL_PEER_CERT_HASH".into(), hash),
        ("SSL_PEER_CERT_SUBJECT".into(), subject),
    ]
}

/// The server's entries: the SNI is the name the client sent, and after
/// the five comes whether a ticket resumed the session (as mod_ssl names
/// it). A resumed session's PEER entries are the client certificate the
/// original handshake verified: rustls restores it from the ticket.
pub fn server_entries(conn: &rustls::CommonState, sni: Option<&str>) -> Vec<Entry> {
    let resumed = match conn.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => "Resumed",
        _ => "Initial",
    };
    let mut entries = entries(conn, sni);
    entries.push(("SSL_SESSION_RESUMED".into(), Some(resumed.into())));
    entries
}

/// The client's entries: the SNI is the name it sent, and the PEER
/// entries describe the server's certificate only when it was verified
/// (an unverified certificate never reads as if it identified the server).
pub fn client_entries(conn: &rustls::CommonState, sni: Option<&str>, verified: bool) -> Vec<Entry> {
    let mut entries = entries(conn, sni);
    if !verified {
        for (name, value) in &mut entries {
            if name.starts_with("SSL_PEER_") {
                *value = None;
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let entries: Vec<Entry> = vec![
            ("A".into(), Some("1".into())),
            ("B".into(), None),
            ("C".into(), Some(String::new())),
            ("D".into(), Some("x=y\nz".into())),
        ];
        let bytes = encode(&entries);
        assert_eq!(bytes, b"A=1\0B\0C=\0D=x=y\nz\0\0");
        assert_eq!(complete_len(&bytes), Some(bytes.len()));
        assert_eq!(decode(&bytes).unwrap(), entries);
    }

    #[test]
    fn empty_set() {
        assert_eq!(encode(&[]), b"\0\0");
        assert_eq!(complete_len(b"\0\0trailing"), Some(2));
        assert!(decode(b"\0\0").unwrap().is_empty());
    }

    #[test]
    fn incomplete_or_bad() {
        assert_eq!(complete_len(b"A=1\0"), None);
        assert!(decode(b"A=1\0").is_err());
        assert!(decode(b"=1\0\0").is_err());
        assert!(decode(b"\xff\0\0").is_err());
    }
}
