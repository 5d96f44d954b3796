//! The TLS server configuration, built from the environment (`CERTFILE`,
//! `KEYFILE`, the SNI pairs, `CADIR`/`CAFILE`, the OCSP responses to
//! staple, the ticket key file) and the options: protocol versions,
//! client certificate policy, and session tickets when `TICKETKEYFILE`
//! names a key file (no resumption at all otherwise).

use crate::cli::error::Fatal;
use crate::cli::log::Log;
use crate::cli::opts::{ClientCert, Options};
use crate::tls::errors::describe;
use crate::tls::pki::env_path;
use crate::tls::sni::{self, Selector, SentName};
use crate::tls::{ocsp, pki, tickets};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

/// Attaches the OCSP response `var` names, if it names one that is fit to
/// staple.
fn staple(
    mut pair: CertifiedKey,
    var: &str,
    path: Option<&OsString>,
    log: &Log,
) -> Result<CertifiedKey, Fatal> {
    if let Some(path) = path {
        pair.ocsp = ocsp::load(var, Path::new(path), &pair.cert, log)?;
    }
    Ok(pair)
}

/// Loads every key, certificate, trust anchor and OCSP response the
/// options call for and returns the finished configuration, with where
/// the name the client sends will be; warnings (responses not stapled) go
/// to `log`.
pub fn server_config(opts: &Options, log: &Log) -> Result<(Arc<ServerConfig>, SentName), Fatal> {
    let plain = if opts.sni_level >= 2 {
        None
    } else {
        match (env_path("CERTFILE"), env_path("KEYFILE")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            // With -k 1 the plain pair (the default) is optional; half of
            // one is a mistake, as it is for the named pairs.
            (None, None) if opts.sni_level == 1 => None,
            (None, _) => return Err(Fatal::usage("CERTFILE not set")),
            (_, None) => return Err(Fatal::usage("KEYFILE not set")),
        }
    };
    let named = if opts.sni_level >= 1 {
        let scan = sni::scan_env(std::env::vars_os())?;
        for var in &scan.skipped {
            log.warn(&format!(
                "{var}: a wildcard over a top-level domain never matches: pair skipped"
            ));
        }
        scan.pairs
    } else {
        Vec::new()
    };
    if plain.is_none() && named.is_empty() {
        return Err(Fatal::usage(
            "no certificate configured: set CERTFILE and KEYFILE, or KEYFILE:name and CERTFILE:name",
        ));
    }
    let default = match plain {
        Some((cert, key)) => {
            let pair = pki::load_pair(
                "CERTFILE",
                Path::new(&cert),
                "KEYFILE",
                Path::new(&key),
                log,
            )?;
            Some(Arc::new(staple(
                pair,
                "OCSPFILE",
                env_path("OCSPFILE").as_ref(),
                log,
            )?))
        }
        None => None,
    };
    let mut responses = if opts.sni_level >= 1 {
        ocsp::scan_env(std::env::vars_os())
    } else {
        Vec::new()
    };
    let mut loaded = Vec::with_capacity(named.len());
    for pair in named {
        let cert_var = format!("CERTFILE:{}", pair.name);
        let key_var = format!("KEYFILE:{}", pair.name);
        let key = pki::load_pair(
            &cert_var,
            Path::new(&pair.cert),
            &key_var,
            Path::new(&pair.key),
            log,
        )?;
        let response = responses
            .iter()
            .position(|r| r.name.as_deref() == Some(pair.name.as_str()))
            .map(|i| responses.swap_remove(i));
        let key = match response {
            Some(r) => staple(key, &r.var, Some(&r.path), log)?,
            None => key,
        };
        loaded.push((pair.name, Arc::new(key)));
    }
    if let Some(r) = responses.first() {
        return Err(Fatal::config(format!(
            "{} is set but names no certificate pair",
            r.var
        )));
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| {
            Fatal::new(
                crate::cli::error::EXIT_SETUP,
                format!("unable to set up TLS: {}", describe(&e)),
            )
        })?;
    let anchors = match opts.client_cert {
        ClientCert::None => None,
        _ => Some(pki::env_anchors(
            "client certificates requested but neither CADIR nor CAFILE is set",
        )?),
    };
    // The identity digest hashes every chain and anchor: only a service
    // that issues tickets pays for it.
    let ticketer = tickets::from_env(|| {
        tickets::service_identity(
            default.iter().map(|pair| (None, &**pair)).chain(
                loaded
                    .iter()
                    .map(|(name, pair)| (Some(name.as_str()), &**pair)),
            ),
            opts.client_cert,
            anchors.as_ref(),
        )
    })?;
    let builder = match anchors {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if opts.client_cert == ClientCert::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| Fatal::config(format!("unusable trust anchors: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let selector = Selector::new(loaded, default);
    let sent = selector.sent_name();
    let mut config = builder.with_cert_resolver(Arc::new(selector));
    config.ignore_client_order = true;
    // One process per connection: a server-side session cache would die
    // with it, so sessions resume only from tickets sealed with the key
    // file's keys. rustls never accepts 0-RTT data by default.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    match ticketer {
        Some(ticketer) => {
            config.ticketer = Arc::new(ticketer);
            config.send_tls13_tickets = 2;
        }
        None => config.send_tls13_tickets = 0,
    }
    Ok((Arc::new(config), sent))
}
