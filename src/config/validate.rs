//! Raw serde values -> typed [`Config`], with key paths in every error.

use super::raw::{RawAdvertise, RawConfig, Scalar};
use super::types::*;
use super::ConfigError;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn validate(raw: RawConfig) -> Result<Config> {
    if raw.listeners.is_empty() {
        return Err(ConfigError::invalid(
            "listeners",
            "[]",
            "at least one listener is required",
        ));
    }
    let default_advertise = match &raw.data.advertise {
        Some(rules) => advertise_rules("data.advertise", rules)?,
        None => vec![AdvertiseRule {
            clients: IpNet::V4(ipnet::Ipv4Net::default()),
            address: AdvertiseAddr::Auto,
        }],
    };

    let mut listeners = Vec::with_capacity(raw.listeners.len());
    for (i, l) in raw.listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        let name = l.name.clone().unwrap_or_else(|| format!("listener{i}"));
        if listeners.iter().any(|x: &ListenerConfig| x.name == name) {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                &name,
                "duplicate listener name",
            ));
        }
        let bind: SocketAddr = l.bind.parse().map_err(|_| {
            ConfigError::invalid(
                format!("{key}.bind"),
                &l.bind,
                "expected IP:port, e.g. 127.0.0.1:2121 or [::1]:2121",
            )
        })?;
        let route = match l.route.kind.as_str() {
            "fixed" => {
                if l.route.upstreams.is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{key}.route.upstreams"),
                        "[]",
                        "a fixed route needs at least one upstream",
                    ));
                }
                let upstreams = l
                    .route
                    .upstreams
                    .iter()
                    .enumerate()
                    .map(|(j, u)| upstream(&format!("{key}.route.upstreams[{j}]"), u))
                    .collect::<Result<Vec<_>>>()?;
                Route::Fixed { upstreams }
            }
            other => {
                return Err(ConfigError::invalid(
                    format!("{key}.route.kind"),
                    other,
                    "unknown route kind (supported: fixed)",
                ))
            }
        };
        let advertise = match &l.advertise {
            Some(rules) => advertise_rules(&format!("{key}.advertise"), rules)?,
            None => Vec::new(),
        };
        listeners.push(ListenerConfig {
            name,
            bind,
            route,
            advertise,
        });
    }
    for (i, a) in listeners.iter().enumerate() {
        if let Some(b) = listeners[..i]
            .iter()
            .find(|b| b.bind == a.bind && a.bind.port() != 0)
        {
            return Err(ConfigError::invalid(
                format!("listeners[{i}].bind"),
                a.bind,
                format!("same address as listener `{}`", b.name),
            ));
        }
    }

    let d = &raw.data;
    let passive_ports = port_range(
        "data.passive_ports",
        d.passive_ports.as_ref(),
        (50000, 50999),
    )?;
    let server_active_ports = port_range(
        "data.server_active_ports",
        d.server_active_ports.as_ref(),
        (40000, 40999),
    )?;
    let server_mode = match d.server_mode.as_deref().unwrap_or("passive") {
        "passive" => ServerMode::Passive,
        "active" => ServerMode::Active,
        "client" => ServerMode::Client,
        other => {
            return Err(ConfigError::invalid(
                "data.server_mode",
                other,
                "expected passive | active | client",
            ))
        }
    };
    let server_pasv_address = match d.server_pasv_address.as_deref().unwrap_or("use_control") {
        "use_control" => ServerPasvAddress::UseControl,
        "check" => ServerPasvAddress::Check,
        "trust" => ServerPasvAddress::Trust,
        other => {
            return Err(ConfigError::invalid(
                "data.server_pasv_address",
                other,
                "expected use_control | check | trust",
            ))
        }
    };
    let buffer_size = size("data.buffer_size", d.buffer_size.as_ref(), 256 * 1024)?;
    if !(4096..=16 * 1024 * 1024).contains(&buffer_size) {
        return Err(ConfigError::invalid(
            "data.buffer_size",
            buffer_size,
            "must be between 4k and 16M",
        ));
    }

    let t = &raw.timeouts;
    let timeouts = Timeouts {
        connect: duration("timeouts.connect", t.connect.as_ref(), 10)?,
        banner: duration("timeouts.banner", t.banner.as_ref(), 30)?,
        idle: duration("timeouts.idle", t.idle.as_ref(), 900)?,
        data_accept: duration("timeouts.data_accept", t.data_accept.as_ref(), 30)?,
        data_stall: duration("timeouts.data_stall", t.data_stall.as_ref(), 300)?,
        shutdown_grace: duration("timeouts.shutdown_grace", t.shutdown_grace.as_ref(), 30)?,
    };

    let lim = &raw.limits;
    let limits = Limits {
        max_sessions: count(
            "limits.max_sessions",
            lim.max_sessions.as_ref(),
            1000,
            1,
            1_000_000,
        )?,
        max_line: count("limits.max_line", lim.max_line.as_ref(), 4096, 512, 65536)?,
        max_reply_lines: count(
            "limits.max_reply_lines",
            lim.max_reply_lines.as_ref(),
            10_000,
            1,
            1_000_000,
        )?,
    };

    let level = raw.log.level.clone().unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(ConfigError::invalid(
            "log.level",
            &level,
            "expected error | warn | info | debug | trace or a tracing filter directive",
        ));
    }
    let format = match raw.log.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::invalid(
                "log.format",
                other,
                "expected text | json",
            ))
        }
    };

    Ok(Config {
        listeners,
        data: DataConfig {
            passive_ports,
            advertise: default_advertise,
            server_mode,
            server_active_ports,
            server_pasv_address,
            buffer_size,
        },
        timeouts,
        limits,
        log: LogConfig { level, format },
    })
}

fn upstream(key: &str, text: &str) -> Result<Upstream> {
    let bad = || {
        ConfigError::invalid(
            key,
            text,
            "expected host:port, e.g. 192.0.2.10:21 or [2001:db8::1]:21",
        )
    };
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok(Upstream {
            host: sa.ip().to_string(),
            port: nonzero_port(key, text, sa.port())?,
        });
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(':') || host.contains('[') {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(Upstream {
        host: host.to_string(),
        port: nonzero_port(key, text, port)?,
    })
}

fn nonzero_port(key: &str, text: &str, port: u16) -> Result<u16> {
    if port == 0 {
        return Err(ConfigError::invalid(
            key,
            text,
            "port 0 is not a valid upstream port",
        ));
    }
    Ok(port)
}

fn advertise_rules(key: &str, rules: &[RawAdvertise]) -> Result<Vec<AdvertiseRule>> {
    if rules.is_empty() {
        return Err(ConfigError::invalid(
            key,
            "[]",
            "needs at least one rule (or omit the key)",
        ));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let clients = parse_net(&r.clients).ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}[{i}].clients"),
                    &r.clients,
                    "expected an IP network such as 0.0.0.0/0 or 192.0.2.0/24",
                )
            })?;
            let address = if r.address == "auto" {
                AdvertiseAddr::Auto
            } else {
                let ip: IpAddr = r.address.parse().map_err(|_| {
                    ConfigError::invalid(
                        format!("{key}[{i}].address"),
                        &r.address,
                        "expected `auto` or an IP address",
                    )
                })?;
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(ConfigError::invalid(
                        format!("{key}[{i}].address"),
                        &r.address,
                        "cannot advertise an unspecified or multicast address",
                    ));
                }
                AdvertiseAddr::Ip(ip)
            };
            Ok(AdvertiseRule { clients, address })
        })
        .collect()
}

/// Accepts `192.0.2.0/24` or a bare address (as a host route).
fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn port_range(key: &str, v: Option<&Scalar>, default: (u16, u16)) -> Result<PortRange> {
    let Some(v) = v else {
        return Ok(PortRange {
            first: default.0,
            last: default.1,
        });
    };
    let text = v.to_string();
    let bad = |why: &str| ConfigError::invalid(key, &text, why.to_string());
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text.trim(), text.trim()),
    };
    let first: u16 = a
        .parse()
        .map_err(|_| bad("expected FIRST-LAST, e.g. 50000-50999"))?;
    let last: u16 = b
        .parse()
        .map_err(|_| bad("expected FIRST-LAST, e.g. 50000-50999"))?;
    if first < 1024 {
        return Err(bad("ports below 1024 are not allowed for data connections"));
    }
    if last < first {
        return Err(bad("the last port is below the first"));
    }
    Ok(PortRange { first, last })
}

fn duration(key: &str, v: Option<&Scalar>, default_secs: u64) -> Result<Duration> {
    let d = match v {
        None => Duration::from_secs(default_secs),
        Some(Scalar::Int(n)) => Duration::from_secs(*n),
        Some(Scalar::Str(s)) => humantime::parse_duration(s.trim()).map_err(|_| {
            ConfigError::invalid(key, s, "expected a duration such as 10s, 500ms, 15m")
        })?,
    };
    if d.is_zero() {
        return Err(ConfigError::invalid(
            key,
            v.map(|v| v.to_string()).unwrap_or_default(),
            "must be greater than zero",
        ));
    }
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err(ConfigError::invalid(
            key,
            v.map(|v| v.to_string()).unwrap_or_default(),
            "must be at most 7 days",
        ));
    }
    Ok(d)
}

fn count(key: &str, v: Option<&Scalar>, default: usize, min: usize, max: usize) -> Result<usize> {
    let n = match v {
        None => return Ok(default),
        Some(Scalar::Int(n)) => usize::try_from(*n).unwrap_or(usize::MAX),
        Some(Scalar::Str(s)) => s
            .trim()
            .parse()
            .map_err(|_| ConfigError::invalid(key, s, "expected a whole number"))?,
    };
    if !(min..=max).contains(&n) {
        return Err(ConfigError::invalid(
            key,
            n,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(n)
}

/// A byte size with optional k/M/G suffix (powers of 1024).
fn size(key: &str, v: Option<&Scalar>, default: usize) -> Result<usize> {
    let text = match v {
        None => return Ok(default),
        Some(Scalar::Int(n)) => {
            return usize::try_from(*n).map_err(|_| ConfigError::invalid(key, n, "too large"))
        }
        Some(Scalar::Str(s)) => s.trim(),
    };
    let (num, mult) = match text.chars().last() {
        Some('k' | 'K') => (&text[..text.len() - 1], 1024),
        Some('m' | 'M') => (&text[..text.len() - 1], 1024 * 1024),
        Some('g' | 'G') => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid(key, text, "expected a size such as 256k or 1M"))?;
    n.checked_mul(mult)
        .ok_or_else(|| ConfigError::invalid(key, text, "too large"))
}
