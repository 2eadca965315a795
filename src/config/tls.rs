//! The `tls` sections of listeners and routes: modes and versions parsed, certificates and
//! keys loaded and checked, rustls configurations built, all at load time (and so by
//! `ftpgate check`). Every error names the key whose file or value is at fault.

use super::raw::{RawListenerTls, RawRouteTls, Scalar};
use super::types::*;
use super::ConfigError;
use crate::tls::{Acceptor, BuildError, Connector, ConnectorSpec, LoadError, Material, TlsVersion};
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Result<T> = std::result::Result<T, ConfigError>;

/// `listeners[i].tls`; `None` for `mode: off`.
pub(super) fn listener(key: &str, t: &RawListenerTls) -> Result<Option<ListenerTls>> {
    let mode = match t.mode.as_deref().unwrap_or("off") {
        "off" => return Ok(None),
        "explicit" => ClientTlsMode::Explicit,
        "required" => ClientTlsMode::Required,
        "implicit" => ClientTlsMode::Implicit,
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.mode"),
                other,
                "expected off | explicit | required | implicit",
            ))
        }
    };
    let data = match t.data.as_deref().unwrap_or("optional") {
        "optional" => ClientDataTls::Optional,
        "required" => ClientDataTls::Required,
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.data"),
                other,
                "expected optional | required",
            ))
        }
    };
    let cert = required_path(key, "cert", t.cert.as_deref())?;
    let key_path = required_path(key, "key", t.key.as_deref())?;
    let (min, max) = versions(key, t.min_version.as_ref(), t.max_version.as_ref())?;
    let material = material(key, ("cert", &cert), ("key", &key_path))?;
    let acceptor = Acceptor::new(material, min, max).map_err(|e| build(key, "cert", &cert, e))?;
    Ok(Some(ListenerTls {
        mode,
        cert,
        key: key_path,
        data,
        require_reuse: t.require_reuse.unwrap_or(false),
        min_version: min,
        max_version: max,
        acceptor: Arc::new(acceptor),
    }))
}

/// `...route.tls`; `None` for `mode: off`.
pub(super) fn route(key: &str, t: &RawRouteTls) -> Result<Option<RouteTls>> {
    let mode = match t.mode.as_deref().unwrap_or("off") {
        "off" => return Ok(None),
        "explicit" => ServerTlsMode::Explicit,
        "implicit" => ServerTlsMode::Implicit,
        "match_client" => ServerTlsMode::MatchClient,
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.mode"),
                other,
                "expected off | explicit | implicit | match_client",
            ))
        }
    };
    let data = match t.data.as_deref().unwrap_or("private") {
        "private" => ServerDataTls::Private,
        "clear" => ServerDataTls::Clear,
        "match_client" => ServerDataTls::MatchClient,
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.data"),
                other,
                "expected private | clear | match_client",
            ))
        }
    };
    let verify = t.verify.unwrap_or(true);
    let ca = t.ca.as_deref().map(PathBuf::from);
    if !verify && ca.is_some() {
        return Err(ConfigError::invalid(
            format!("{key}.ca"),
            t.ca.as_deref().unwrap_or_default(),
            "a CA file has no use with verify: false; remove one of the two",
        ));
    }
    if let Some(name) = &t.server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(ConfigError::invalid(
                format!("{key}.server_name"),
                name,
                "expected a DNS name or an IP address",
            ));
        }
    }
    let client = match (t.client_cert.as_deref(), t.client_key.as_deref()) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (Some(c), None) => {
            return Err(ConfigError::invalid(
                format!("{key}.client_key"),
                "(missing)",
                format!("client_cert {c} needs its client_key"),
            ))
        }
        (None, Some(k)) => {
            return Err(ConfigError::invalid(
                format!("{key}.client_cert"),
                "(missing)",
                format!("client_key {k} needs its client_cert"),
            ))
        }
    };
    let (min, max) = versions(key, t.min_version.as_ref(), t.max_version.as_ref())?;
    let client_material = match &client {
        Some((c, k)) => Some(material(key, ("client_cert", c), ("client_key", k))?),
        None => None,
    };
    let spec = ConnectorSpec {
        verify,
        ca: ca.as_deref(),
        client: client_material,
        min,
        max,
    };
    let connector = Connector::new(spec).map_err(|e| match (&ca, e) {
        (_, BuildError::Load(LoadError::NoSystemStore)) => ConfigError::invalid(
            format!("{key}.ca"),
            "(system store)",
            LoadError::NoSystemStore.to_string(),
        ),
        (Some(path), e) => build(key, "ca", path, e),
        (None, e) => ConfigError::invalid(key.to_string(), "{..}", e.to_string()),
    })?;
    Ok(Some(RouteTls {
        mode,
        verify,
        ca,
        server_name: t.server_name.clone(),
        data,
        client_cert: client.map(|(c, _)| c),
        min_version: min,
        max_version: max,
        connector: Arc::new(connector),
    }))
}

fn required_path(key: &str, field: &str, value: Option<&str>) -> Result<PathBuf> {
    match value {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(ConfigError::invalid(
            format!("{key}.{field}"),
            "(missing)",
            "a PEM file is required when tls.mode is not off",
        )),
    }
}

fn versions(
    key: &str,
    min: Option<&Scalar>,
    max: Option<&Scalar>,
) -> Result<(TlsVersion, TlsVersion)> {
    let one = |field: &str, v: Option<&Scalar>, default: TlsVersion| -> Result<TlsVersion> {
        let Some(v) = v else { return Ok(default) };
        let text = v.to_string();
        TlsVersion::parse(&text).ok_or_else(|| {
            ConfigError::invalid(
                format!("{key}.{field}"),
                &text,
                "expected \"1.2\" or \"1.3\"",
            )
        })
    };
    let lo = one("min_version", min, TlsVersion::V1_2)?;
    let hi = one("max_version", max, TlsVersion::V1_3)?;
    if lo > hi {
        return Err(ConfigError::invalid(
            format!("{key}.min_version"),
            min.map(Scalar::to_string).unwrap_or_default(),
            "is above max_version",
        ));
    }
    Ok((lo, hi))
}

/// Loads a certificate/key pair, naming the field whose file is at fault.
fn material(key: &str, cert: (&str, &Path), private: (&str, &Path)) -> Result<Material> {
    Material::load(cert.1, private.1).map_err(|e| {
        let field = match &e {
            LoadError::Read { path, .. }
            | LoadError::Pem { path, .. }
            | LoadError::BadKey { path, .. }
                if path == private.1 =>
            {
                private.0
            }
            LoadError::NoKey { .. } | LoadError::Mismatch { .. } => private.0,
            _ => cert.0,
        };
        let value = if field == private.0 {
            private.1
        } else {
            cert.1
        };
        ConfigError::invalid(format!("{key}.{field}"), value.display(), e.to_string())
    })
}

fn build(key: &str, field: &str, path: &Path, e: BuildError) -> ConfigError {
    ConfigError::invalid(format!("{key}.{field}"), path.display(), e.to_string())
}
