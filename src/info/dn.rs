//! The subject of an X.509 certificate, as `SSL_PEER_CERT_SUBJECT` shows
//! it: a small DER reader that walks to the subject Name, and the
//! formatter with the attribute order and escaping rules of
//! doc/s6-tlsd-io.md ("The connection information").

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = input.split_first().ok_or("truncated DER")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte DER tag");
    }
    let (&first, rest) = rest.split_first().ok_or("truncated DER")?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad DER length");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated DER");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), &'static str> {
    match element(input)? {
        (tag, body, rest) if tag == want => Ok((body, rest)),
        _ => Err("unexpected DER element"),
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// Walks a certificate to its subject Name (the contents of the
/// SEQUENCE). Fails if the certificate is not well-formed that far.
pub fn subject_name(cert: &[u8]) -> Result<&[u8], &'static str> {
    let (certificate, trailing) = expect(cert, SEQUENCE)?;
    if !trailing.is_empty() {
        return Err("data after the certificate");
    }
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    let (_serial, rest) = expect(rest, 0x02)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (_validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, rest) = expect(rest, SEQUENCE)?;
    expect(rest, SEQUENCE)?;
    Ok(subject)
}

/// Checks that `cert` is a certificate as far as its public key.
pub fn check_certificate(cert: &[u8]) -> Result<(), &'static str> {
    subject_name(cert).map(|_| ())
}

/// The attributes the subject shows, in the order it shows them.
const SHOWN: [(&str, &[u8]); 6] = [
    ("C", &[0x55, 0x04, 0x06]),
    ("ST", &[0x55, 0x04, 0x08]),
    ("L", &[0x55, 0x04, 0x07]),
    ("O", &[0x55, 0x04, 0x0a]),
    ("OU", &[0x55, 0x04, 0x0b]),
    ("CN", &[0x55, 0x04, 0x03]),
];

/// Decodes one directory string to UTF-8. A NUL character cannot be
/// shown: the subject travels in a NUL-separated information string and
/// then in an environment variable, so a value holding one is undecodable
/// (and the subject `<invalid>`), never cut short or split into entries.
fn decode_string(tag: u8, body: &[u8]) -> Result<String, &'static str> {
    let text = decode_any(tag, body)?;
    if text.contains('\0') {
        return Err("NUL character in a subject attribute");
    }
    Ok(text)
}

fn decode_any(tag: u8, body: &[u8]) -> Result<String, &'static str> {
    let bad = "undecodable string";
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8(body.to_vec()).map_err(|_| bad),
        // TeletexString: in practice Latin-1
        0x14 => Ok(body.iter().map(|&b| b as char).collect()),
        // BMPString: UCS-2 big-endian
        0x1e => {
            if body.len() % 2 != 0 {
                return Err(bad);
            }
            let units = body.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| bad)
        }
        // UniversalString: UCS-4 big-endian
        0x1c => {
            if body.len() % 4 != 0 {
                return Err(bad);
            }
            body.chunks(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).ok_or(bad))
                .collect()
        }
        _ => Err(bad),
    }
}

/// The shown attributes of a Name's contents, in certificate order.
fn attributes(name: &[u8]) -> Result<Vec<(usize, String)>, &'static str> {
    let mut found = Vec::new();
    let mut rdns = name;
    while !rdns.is_empty() {
        let (mut set, rest) = expect(rdns, SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (atv, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(atv, OID)?;
            let (tag, body, _) = element(value)?;
            if let Some(index) = SHOWN.iter().position(|(_, o)| *o == oid) {
                found.push((index, decode_string(tag, body)?));
            }
        }
    }
    Ok(found)
}

/// Escapes one attribute value: `, = + < > # \` and newline get a
/// backslash, and so do a leading and a trailing space.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if edge_space || matches!(c, ',' | '=' | '+' | '<' | '>' | '#' | '\\' | '\n') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The subject of `cert` in the documented format: `None` when it has none of
/// the shown attributes (a bare name), `<invalid>` when it cannot be read.
pub fn format_subject(cert: &[u8]) -> Option<String> {
    let Ok(mut attrs) = subject_name(cert).and_then(attributes) else {
        return Some("<invalid>".into());
    };
    if attrs.is_empty() {
        return None;
    }
    attrs.sort_by_key(|(index, _)| *index);
    let parts: Vec<String> = attrs
        .iter()
        .map(|(index, value)| format!("{}={}", SHOWN[*index].0, escape_value(value)))
        .collect();
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_spec_examples() {
        assert_eq!(
            escape_value("a,b=c+d<e>f#g\\h;i"),
            "a\\,b\\=c\\+d\\<e\\>f\\#g\\\\h;i"
        );
        assert_eq!(escape_value(" lead trail "), "\\ lead trail\\ ");
        assert_eq!(escape_value("line1\nline2"), "line1\\\nline2");
        assert_eq!(escape_value(" "), "\\ ");
        assert_eq!(escape_value(""), "");
        assert_eq!(escape_value("Île-de-France"), "Île-de-France");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(check_certificate(b"").is_err());
        assert!(check_certificate(&[0x30, 0x03, 0x30, 0x01]).is_err());
        assert_eq!(
            format_subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).as_deref(),
            Some("<invalid>")
        );
    }
}
