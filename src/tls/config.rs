//! The TLS server configuration, built from the environment (`CERTFILE`,
//! `KEYFILE`, the SNI pairs, `CADIR`/`CAFILE`) and the options: protocol
//! versions, client certificate policy, no session resumption.

use crate::cli::error::Fatal;
use crate::cli::opts::{ClientCert, Options};
use crate::tls::pki;
use crate::tls::pki::env_path;
use crate::tls::sni::{self, Selector};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// Loads every key, certificate and trust anchor the options call for and
/// returns the finished configuration.
pub fn server_config(opts: &Options) -> Result<Arc<ServerConfig>, Fatal> {
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
        sni::scan_env(std::env::vars_os())?
    } else {
        Vec::new()
    };
    if plain.is_none() && named.is_empty() {
        return Err(Fatal::usage(
            "no certificate configured: set CERTFILE and KEYFILE, or KEYFILE:name and CERTFILE:name",
        ));
    }
    let default = match plain {
        Some((cert, key)) => Some(Arc::new(pki::load_pair(
            "CERTFILE",
            Path::new(&cert),
            "KEYFILE",
            Path::new(&key),
        )?)),
        None => None,
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
        )?;
        loaded.push((pair.name, Arc::new(key)));
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| {
            Fatal::new(
                crate::cli::error::EXIT_SETUP,
                format!("unable to set up TLS: {e}"),
            )
        })?;
    let builder = match opts.client_cert {
        ClientCert::None => builder.with_no_client_auth(),
        policy => {
            let roots = pki::env_anchors(
                "client certificates requested but neither CADIR nor CAFILE is set",
            )?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if policy == ClientCert::Optional {
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
    let mut config = builder.with_cert_resolver(Arc::new(Selector::new(loaded, default)));
    config.ignore_client_order = true;
    // One process per connection: nothing could ever resume a session.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}
