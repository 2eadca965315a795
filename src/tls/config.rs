//! The rustls configurations, built once per listener ([`Acceptor`]) and per route
//! ([`Connector`]), from material already checked by `load.rs`.

use super::load::{roots, LoadError, Material};
use super::provider;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// A TLS protocol version ftpgate can be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

impl TlsVersion {
    pub fn parse(text: &str) -> Option<TlsVersion> {
        match text {
            "1.2" => Some(TlsVersion::V1_2),
            "1.3" => Some(TlsVersion::V1_3),
            _ => None,
        }
    }
}

fn versions(min: TlsVersion, max: TlsVersion) -> Vec<&'static SupportedProtocolVersion> {
    [
        (TlsVersion::V1_2, &rustls::version::TLS12),
        (TlsVersion::V1_3, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, s)| s)
    .collect()
}

/// Why a configuration could not be built from loaded material.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// ftpgate as the TLS server of a listener's clients.
#[derive(Debug)]
pub struct Acceptor {
    base: ServerConfig,
}

impl Acceptor {
    pub fn new(
        material: Material,
        min: TlsVersion,
        max: TlsVersion,
    ) -> Result<Acceptor, BuildError> {
        let base = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions(min, max))?
            .with_no_client_auth()
            .with_single_cert(material.chain, material.key)?;
        Ok(Acceptor { base })
    }

    /// The configurations of one control session: a ticket key and a session cache of its
    /// own, shared by its control and data connections only.
    pub fn session(&self) -> Result<super::SessionAcceptor, rustls::Error> {
        let mut control = self.base.clone();
        control.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        control.session_storage = rustls::server::ServerSessionMemoryCache::new(64);
        // Tickets are stateless and may be presented again (OpenSSL and GnuTLS clients
        // reuse the control session for every data connection); rustls clients use each
        // TLS 1.3 ticket once, so downloads hand out a fresh one. Uploads hand out none: a
        // client that sends a file and closes without reading a ticket turns its close
        // into a reset, and its kernel drops whatever of the file it had not sent yet.
        control.send_tls13_tickets = 4;
        let mut download = control.clone();
        download.send_tls13_tickets = 1;
        let mut upload = control.clone();
        upload.send_tls13_tickets = 0;
        Ok(super::SessionAcceptor::new(control, download, upload))
    }
}

/// ftpgate as the TLS client of a route's servers.
#[derive(Debug)]
pub struct Connector {
    base: ClientConfig,
}

/// What the route's `tls` section says about the server's identity and ours.
pub struct ConnectorSpec<'a> {
    pub verify: bool,
    pub ca: Option<&'a Path>,
    pub client: Option<Material>,
    pub min: TlsVersion,
    pub max: TlsVersion,
}

impl Connector {
    pub fn new(spec: ConnectorSpec<'_>) -> Result<Connector, BuildError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions(spec.min, spec.max))?;
        let builder = if spec.verify {
            builder.with_root_certificates(roots(spec.ca)?)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(super::verify::NoVerify::new()))
        };
        let base = match spec.client {
            Some(m) => builder.with_client_auth_cert(m.chain, m.key)?,
            None => builder.with_no_client_auth(),
        };
        Ok(Connector { base })
    }

    /// The configuration of one control session to a server: a session store of its own,
    /// so its data connections resume this control connection's session and no other.
    pub fn session(&self) -> super::SessionConnector {
        let mut config = self.base.clone();
        config.resumption = rustls::client::Resumption::in_memory_sessions(16);
        super::SessionConnector::new(config)
    }
}
