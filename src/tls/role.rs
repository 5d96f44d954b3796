//! What differs between the two roles before the tunnel starts: which
//! configuration is loaded from the environment, which connection is
//! opened with it, and what the information string says about the peer.

use crate::cli::error::{Fatal, EXIT_SETUP};
use crate::cli::log::Log;
use crate::cli::opts::Options;
use crate::info;
use crate::tls::{client, config};
use crate::tunnel::Peer;
use rustls::{Connection, ServerConfig};
use std::sync::Arc;

/// Which end of the TLS connection a program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    /// The engine program of the role, the name its messages carry.
    pub fn engine_name(self) -> &'static str {
        match self {
            Role::Server => "s6-tlsd-io",
            Role::Client => "s6-tlsc-io",
        }
    }

    /// Loads every key, certificate and trust anchor the role and the
    /// options call for (a bad one: 96 now, never at the handshake).
    pub fn load(self, opts: &Options, log: &Log) -> Result<Loaded, Fatal> {
        Ok(match self {
            Role::Server => Loaded::Server(config::server_config(opts)?),
            Role::Client => Loaded::Client(client::client_config(opts, log)?),
        })
    }
}

/// A role's configuration, ready for its one connection.
pub enum Loaded {
    Server(Arc<ServerConfig>),
    Client(client::Client),
}

impl Loaded {
    /// The connection, and how the information string describes its peer.
    pub fn open(self) -> Result<(Connection, Peer), Fatal> {
        let setup = |e: rustls::Error| {
            Fatal::new(EXIT_SETUP, format!("unable to create TLS connection: {e}"))
        };
        Ok(match self {
            Loaded::Server(config) => (
                rustls::ServerConnection::new(config).map_err(setup)?.into(),
                Peer {
                    called: "client",
                    entries: Box::new(info::server_entries),
                },
            ),
            Loaded::Client(client) => {
                let conn = rustls::ClientConnection::new(client.config, client.server_name)
                    .map_err(setup)?;
                let (sni, verified) = (client.sni, client.verified);
                let entries =
                    move |conn: &Connection| info::client_entries(conn, sni.as_deref(), verified);
                (
                    conn.into(),
                    Peer {
                        called: "server",
                        entries: Box::new(entries),
                    },
                )
            }
        })
    }
}
