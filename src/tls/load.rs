//! Reading certificates and keys from PEM files, with the checks an operator needs at
//! start-up rather than at the first handshake: the file exists and holds what it should,
//! the key belongs to the certificate, and the certificate is valid now.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Why TLS material could not be used. The config layer adds the key that named the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("{path}: invalid PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("the certificate in {path} cannot be parsed: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the certificate in {path} expired on {when}")]
    Expired { path: PathBuf, when: String },
    #[error("the certificate in {path} is not valid before {when}")]
    NotYetValid { path: PathBuf, when: String },
    #[error("the key in {key} does not match the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("the key in {path} cannot be used: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("no usable CA certificate in {path}")]
    NoCa { path: PathBuf },
    #[error("the system trust store holds no usable certificate; set a CA file")]
    NoSystemStore,
}

/// A certificate chain with its private key, checked against each other.
#[derive(Debug)]
pub struct Material {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, in order.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(LoadError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

impl Material {
    /// Loads `cert` (the chain, leaf first) and `key`, and checks that the leaf is valid
    /// now and that the key is the leaf's.
    pub fn load(cert: &Path, key: &Path) -> Result<Material, LoadError> {
        let chain = certificates(cert)?;
        check_validity(cert, &chain[0])?;
        let key_bytes = read(key)?;
        let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => LoadError::NoKey {
                path: key.to_path_buf(),
            },
            e => LoadError::Pem {
                path: key.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        let provider = super::provider();
        let signing = provider
            .key_provider
            .load_private_key(private.clone_key())
            .map_err(|e| LoadError::BadKey {
                path: key.to_path_buf(),
                reason: e.to_string(),
            })?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(LoadError::Mismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(LoadError::BadCertificate {
                    path: cert.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        }
        Ok(Material {
            chain,
            key: private,
        })
    }
}

fn check_validity(path: &Path, leaf: &CertificateDer<'_>) -> Result<(), LoadError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        LoadError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if validity.not_after < now {
        return Err(LoadError::Expired {
            path: path.to_path_buf(),
            when: validity.not_after.to_string(),
        });
    }
    if validity.not_before > now {
        return Err(LoadError::NotYetValid {
            path: path.to_path_buf(),
            when: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// Trust anchors: every certificate of `ca`, or the system store.
pub fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore, LoadError> {
    let mut store = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let (added, _) = store.add_parsable_certificates(certificates(path)?);
            if added == 0 {
                return Err(LoadError::NoCa {
                    path: path.to_path_buf(),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(LoadError::NoSystemStore);
            }
        }
    }
    Ok(store)
}
