//! Certificate selection by the client's SNI: the `KEYFILE:name` /
//! `CERTFILE:name` pairs found in the environment, name normalisation, and
//! the matching order of doc/s6-tlsd-io.md (exact name, then a one-label
//! `*.parent` wildcard, then the plain pair, else no certificate); and
//! the name the client sent, as the selection saw it.

use crate::cli::error::Fatal;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, PoisonError};

/// Lowercases a DNS name and drops one trailing dot; `None` if nothing is left.
pub fn normalize(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

/// One `KEYFILE:name` / `CERTFILE:name` pair from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPair {
    pub name: String,
    pub cert: OsString,
    pub key: OsString,
}

/// What the environment holds: the usable pairs, sorted by name, and the
/// variable names (`KEYFILE:*.tld`) of the pairs skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub pairs: Vec<NamedPair>,
    pub skipped: Vec<String>,
}

/// Finds every `KEYFILE:name` / `CERTFILE:name` pair. A name with only one
/// half of its pair, a name that is no DNS name, or two names that are the
/// same once normalised are an error (96). A wildcard over a top-level
/// domain (`*.test`) is skipped: s6-networking never matches one, so an
/// existing configuration holding one must keep serving.
pub fn scan_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Scan, Fatal> {
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    for (var, value) in vars {
        let bytes = var.as_bytes();
        if let Some(name) = bytes.strip_prefix(b"KEYFILE:") {
            keys.push((name.to_vec(), value));
        } else if let Some(name) = bytes.strip_prefix(b"CERTFILE:") {
            certs.push((name.to_vec(), value));
        }
    }
    let shown = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
    let mut pairs = Vec::new();
    let mut skipped = Vec::new();
    for (name, key) in keys {
        let Some(pos) = certs.iter().position(|(n, _)| *n == name) else {
            return Err(Fatal::config(format!(
                "KEYFILE:{} is set but CERTFILE:{} is not",
                shown(&name),
                shown(&name)
            )));
        };
        let (_, cert) = certs.swap_remove(pos);
        let normal = std::str::from_utf8(&name).ok().and_then(normalize);
        if normal.as_deref().is_some_and(is_tld_wildcard) {
            skipped.push(format!("KEYFILE:{}", shown(&name)));
            continue;
        }
        let Some(normal) = normal.filter(|n| valid_pattern(n)) else {
            return Err(Fatal::config(format!(
                "KEYFILE:{}: not a usable server name",
                shown(&name)
            )));
        };
        pairs.push((
            shown(&name),
            NamedPair {
                name: normal,
                cert,
                key,
            },
        ));
    }
    if let Some((name, _)) = certs.first() {
        return Err(Fatal::config(format!(
            "CERTFILE:{} is set but KEYFILE:{} is not",
            shown(name),
            shown(name)
        )));
    }
    pairs.sort_by(|(_, a), (_, b)| a.name.cmp(&b.name));
    // Names equal once normalised (`A.org`, `a.org.`) would leave the
    // choice of certificate to the order of the environment.
    if let Some(w) = pairs.windows(2).find(|w| w[0].1.name == w[1].1.name) {
        return Err(Fatal::config(format!(
            "KEYFILE:{} and KEYFILE:{} name the same server {}",
            w[0].0, w[1].0, w[0].1.name
        )));
    }
    skipped.sort();
    Ok(Scan {
        pairs: pairs.into_iter().map(|(_, pair)| pair).collect(),
        skipped,
    })
}

fn plain_name(n: &str) -> bool {
    !n.is_empty() && n.split('.').all(|l| !l.is_empty() && !l.contains('*'))
}

/// `*.` and one label: a wildcard over a top-level domain.
fn is_tld_wildcard(name: &str) -> bool {
    name.strip_prefix("*.")
        .is_some_and(|parent| plain_name(parent) && !parent.contains('.'))
}

/// A name from the environment is a DNS name, or `*.` followed by a name
/// of at least two labels (never `*.tld`).
fn valid_pattern(name: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(parent) => plain_name(parent) && parent.contains('.'),
        None => plain_name(name),
    }
}

/// Does `pattern` (normalised, from the environment) match `host`
/// (normalised, from the client)? Wildcards cover exactly one label.
pub fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == host,
    }
}

/// The certificates a server may present, and the rule to choose one.
#[derive(Debug, Default)]
pub struct Selector {
    named: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
    sent: SentName,
}

/// The name the client sent (its SNI), once a certificate was chosen for
/// it. rustls's unbuffered server connection does not tell it, but hands
/// it to the selection at every handshake, resumed or not, just as it
/// keeps it. One process serves one connection: the configuration's
/// selector sees only that connection's.
#[derive(Debug, Default, Clone)]
pub struct SentName(Arc<Mutex<Option<String>>>);

impl SentName {
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, name: Option<&str>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = name.map(str::to_owned);
    }
}

impl Selector {
    pub fn new(
        named: Vec<(String, Arc<CertifiedKey>)>,
        default: Option<Arc<CertifiedKey>>,
    ) -> Self {
        Selector {
            named,
            default,
            sent: SentName::default(),
        }
    }

    /// Where the name the client sent will be.
    pub fn sent_name(&self) -> SentName {
        self.sent.clone()
    }

    pub fn select(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(host) = sni.and_then(normalize) {
            let exact = self
                .named
                .iter()
                .find(|(p, _)| !p.starts_with("*.") && *p == host);
            let wild = || {
                self.named
                    .iter()
                    .find(|(p, _)| p.starts_with("*.") && matches(p, &host))
            };
            if let Some((_, key)) = exact.or_else(wild) {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for Selector {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.sent.set(hello.server_name());
        self.select(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_one_label() {
        assert!(matches("*.example.org", "mail.example.org"));
        assert!(!matches("*.example.org", "example.org"));
        assert!(!matches("*.example.org", "a.b.example.org"));
        assert!(!matches("*.example.org", ".example.org"));
        assert!(matches("mail.example.org", "mail.example.org"));
    }

    #[test]
    fn patterns() {
        assert!(valid_pattern("*.example.org"));
        assert!(!valid_pattern("*.org"));
        assert!(!valid_pattern("*"));
        assert!(!valid_pattern("a.*.org"));
        assert!(!valid_pattern("a..org"));
        assert_eq!(
            normalize("Mail.Example.ORG.").as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(normalize("."), None);
    }

    #[test]
    fn env_pairs() {
        let v = |a: &str, b: &str| (OsString::from(a), OsString::from(b));
        let scan = scan_env([
            v("KEYFILE:A.org", "k"),
            v("CERTFILE:A.org", "c"),
            v("PATH", "/bin"),
            v("KEYFILE:*.Org.", "k"),
            v("CERTFILE:*.Org.", "c"),
        ])
        .unwrap();
        assert_eq!(
            scan.pairs,
            vec![NamedPair {
                name: "a.org".into(),
                cert: "c".into(),
                key: "k".into()
            }]
        );
        assert_eq!(scan.skipped, ["KEYFILE:*.Org."]);
        assert_eq!(scan_env([v("KEYFILE:x.org", "k")]).unwrap_err().code, 96);
        assert_eq!(scan_env([v("CERTFILE:x.org", "c")]).unwrap_err().code, 96);
        assert_eq!(scan_env([v("KEYFILE:*.org", "k")]).unwrap_err().code, 96);
        assert_eq!(
            scan_env([v("KEYFILE:a.*", "k"), v("CERTFILE:a.*", "c")])
                .unwrap_err()
                .code,
            96
        );
    }
}
