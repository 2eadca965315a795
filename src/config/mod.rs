//! Configuration: the YAML file parsed into typed values.
//!
//! `raw.rs` mirrors the file with serde (unknown keys rejected); `validate.rs` turns it
//! into [`Config`], whose fields are already the types the proxy uses (`SocketAddr`,
//! `IpNet`, `PortRange`, `Duration`), so nothing is parsed or unwrapped at run time.
//! Every error names the key path and the offending value.

mod admin;
mod raw;
mod tls;
mod types;
mod validate;

pub use types::*;

use std::path::Path;

/// A configuration error, naming the key and value where one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`: value `{value}`: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        key: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates config text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    validate::validate(raw)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
