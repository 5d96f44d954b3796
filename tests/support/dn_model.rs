//! An independent model of the subject format of doc/s6-tlsd-io.md, shared by
//! tests/properties.rs and the `dn` fuzz target: reading an escaped value
//! back, and splitting a formatted subject into its parts.
#![allow(dead_code)]

/// The characters the format escapes with a backslash anywhere in a value.
pub const SPECIAL: &[char] = &[',', '=', '+', '<', '>', '#', '\\', '\n'];
/// The attributes a subject shows, in the order it shows them.
pub const ORDER: [&str; 6] = ["C", "ST", "L", "O", "OU", "CN"];

/// Reads one escaped value back: a backslash takes the next character
/// literally. `None` if a special character, or a space at either end,
/// is not escaped, or a backslash ends the text.
pub fn unescape(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(*chars.get(i + 1)?);
            i += 2;
            continue;
        }
        if SPECIAL.contains(&c) || (c == ' ' && (i == 0 || i + 1 == chars.len())) {
            return None;
        }
        out.push(c);
        i += 1;
    }
    Some(out)
}

/// Splits a formatted subject at its unescaped `, `; `None` if a comma is
/// not followed by a space or a part has no `=`.
pub fn subject_parts(subject: &str) -> Option<Vec<(&str, &str)>> {
    let bytes = subject.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' if bytes.get(i + 1) == Some(&b' ') => {
                out.push(&subject[start..i]);
                i += 2;
                start = i;
            }
            b',' => return None,
            _ => i += 1,
        }
    }
    out.push(subject.get(start..)?);
    out.into_iter().map(|p| p.split_once('=')).collect()
}
