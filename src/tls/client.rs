//! The TLS client configuration, built from the environment (`CADIR` or
//! `CAFILE`; with `-y`, `CERTFILE` and `KEYFILE`) and the options: the
//! anchors the server's chain must verify against, the name sent and
//! checked (`-k`), the client certificate, no session resumption.

use crate::cli::error::{Fatal, EXIT_SETUP};
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::info;
use crate::tls::errors;
use crate::tls::pki::{self, env_path};
use crate::tunnel::{Connection, Peer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    verify_server_cert_signed_by_trust_anchor, verify_server_name, ResolvesClientCert, Resumption,
};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, CommonState, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

/// What the client engine needs to open its connection, and what the
/// information string says about it.
pub struct Client {
    pub config: Arc<ClientConfig>,
    /// The name handed to rustls: the `-k` name, or a placeholder that
    /// nothing checks when there is none.
    pub server_name: ServerName<'static>,
    /// The name sent as SNI (a `-k` DNS name; never an IP literal).
    pub sni: Option<String>,
    /// The server's certificate was verified, so the information string
    /// may describe it.
    pub verified: bool,
}

/// How much of the server's certificate is checked.
#[derive(Debug)]
enum Check {
    /// Chain to the anchors, and the name given with `-k`.
    ChainAndName(Arc<RootCertStore>),
    /// Chain to the anchors only: no `-k`.
    Chain(Arc<RootCertStore>),
    /// `--no-verify-cert`.
    Nothing,
}

/// The server certificate verifier. The handshake signatures are always
/// checked, so that even an unverified server proves it holds the key
/// of the certificate it sent.
#[derive(Debug)]
struct Verifier {
    check: Check,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let roots = match &self.check {
            Check::ChainAndName(roots) | Check::Chain(roots) => roots,
            Check::Nothing => return Ok(ServerCertVerified::assertion()),
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if let Check::ChainAndName(_) = self.check {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The one certificate `-y` presents, whatever the server asks for: a
/// server that cannot use it says so in its alert.
#[derive(Debug)]
struct Identity(Arc<CertifiedKey>);

impl ResolvesClientCert for Identity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Loads the anchors (and with `-y` the client's pair) and returns the
/// finished configuration. Says at -v1 what is not verified.
pub fn client_config(opts: &Options, log: &Log) -> Result<Client, Fatal> {
    let roots = pki::env_anchors("neither CADIR nor CAFILE is set")?;
    let identity = if opts.present_cert {
        let cert =
            env_path("CERTFILE").ok_or_else(|| Fatal::usage("-y given but CERTFILE not set"))?;
        let key =
            env_path("KEYFILE").ok_or_else(|| Fatal::usage("-y given but KEYFILE not set"))?;
        Some(Arc::new(pki::load_pair(
            "CERTFILE",
            Path::new(&cert),
            "KEYFILE",
            Path::new(&key),
            log,
        )?))
    } else {
        None
    };
    let (server_name, sni) = match &opts.server_name {
        Some(name) => {
            let parsed = ServerName::try_from(name.clone()).map_err(|_| {
                Fatal::usage(format!(
                    "invalid servername {name:?}: neither a DNS name nor an IP address"
                ))
            })?;
            let sni = matches!(parsed, ServerName::DnsName(_)).then(|| name.clone());
            (parsed, sni)
        }
        None => (
            ServerName::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED).into()),
            None,
        ),
    };
    let roots = Arc::new(roots);
    let check = if !opts.verify_cert {
        log.warn("--no-verify-cert: the server's certificate is not verified");
        Check::Nothing
    } else if opts.server_name.is_none() {
        log.warn("no -k servername: the server's name is not verified");
        Check::Chain(roots)
    } else {
        Check::ChainAndName(roots)
    };
    let verified = !matches!(check, Check::Nothing);

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(Verifier {
        check,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| {
            Fatal::new(
                EXIT_SETUP,
                format!("unable to set up TLS: {}", errors::describe(&e)),
            )
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(pair) => builder.with_client_cert_resolver(Arc::new(Identity(pair))),
        None => builder.with_no_client_auth(),
    };
    // One connection per process: a stored session could never be used.
    config.resumption = Resumption::disabled();
    config.enable_sni = sni.is_some();
    Ok(Client {
        config: Arc::new(config),
        server_name,
        sni,
        verified,
    })
}

/// The client's connection for the engine: the configuration loaded
/// (warnings at -v1 said), the `ClientConnection` for the `-k` name, and
/// entries that describe the server's certificate when it was verified.
pub fn connect(opts: &Options, log: &Log) -> Result<(Connection, Peer), Fatal> {
    let client = client_config(opts, log)?;
    let conn = rustls::client::UnbufferedClientConnection::new(client.config, client.server_name)
        .map_err(|e| {
        Fatal::new(
            EXIT_SETUP,
            format!("unable to create TLS connection: {}", errors::describe(&e)),
        )
    })?;
    let (sni, verified) = (client.sni, client.verified);
    let peer = Peer {
        called: "server",
        entries: Box::new(move |conn: &CommonState| {
            info::client_entries(conn, sni.as_deref(), verified)
        }),
    };
    Ok((conn.into(), peer))
}
