//! FTPS (RFC 4217): the TLS material ftpgate holds and the handshakes it performs.
//!
//! ftpgate terminates TLS on both legs, because it must read and rewrite PASV/PORT:
//! towards clients it is a TLS server ([`Acceptor`], per listener), towards servers a TLS
//! client ([`Connector`], per route). Both are built once, at config load, so a missing
//! file, a key that does not match its certificate or an expired certificate is a config
//! error naming the key, never a failed session.
//!
//! Session resumption is per control session. Strict servers (vsftpd
//! `require_ssl_reuse`, ProFTPD, FileZilla Server) accept a data connection only when its
//! handshake resumes the control connection's session, and `require_reuse` asks the same of
//! clients. Each session therefore gets its own ticket key and session cache
//! ([`Acceptor::session`]) and its own client session store ([`Connector::session`]): a
//! ticket is only ever good within the session that earned it, so client B can never
//! present client A's ticket, and ftpgate's data connections to a server resume exactly
//! the control session they belong to.
//!
//! Only the aws-lc-rs provider is used, and always passed explicitly: rustls panics at run
//! time if it has to guess between two compiled-in providers.

mod config;
mod error;
mod handshake;
mod load;
mod verify;

pub use config::{Acceptor, Connector, TlsVersion};
pub use config::{BuildError, ConnectorSpec};
pub use error::{SecurityCommand, TlsError};
pub use handshake::{describe, DataRole, HandshakeError, SessionAcceptor, SessionConnector};
pub use load::{LoadError, Material};

use std::sync::{Arc, OnceLock};

/// The one crypto provider of the process.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}
