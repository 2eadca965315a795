//! Raw serde values -> typed [`Config`], with key paths in every error.

use super::raw::{RawAcl, RawAdvertise, RawConfig, RawRoute, Scalar};
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

    let mut warnings = Vec::new();
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
        let route = route(&format!("{key}.route"), &l.route)?;
        let tls = match &l.tls {
            Some(t) => super::tls::listener(&format!("{key}.tls"), t)?,
            None => None,
        };
        if let Some(rt) = &route.tls {
            if !rt.verify {
                warnings.push(format!(
                    "{key}.route.tls.verify: false: the certificates of this route's FTP servers are NOT checked; anyone on the path can read and change its sessions"
                ));
            }
        }
        let advertise = match &l.advertise {
            Some(rules) => advertise_rules(&format!("{key}.advertise"), rules)?,
            None => Vec::new(),
        };
        let acl = acl(&key, &l.acl, &raw.acl)?;
        let servers_key = match &l.acl.servers {
            Some(_) => format!("{key}.acl.servers"),
            None => "acl.servers".to_string(),
        };
        if route.kind == RouteKind::Fixed {
            if l.acl.servers.is_some() {
                warnings.push(format!(
                    "{servers_key}: listener `{name}` has a fixed route, whose upstreams acl.servers does not restrict; the section has no effect"
                ));
            }
        } else {
            destinations_possible(&servers_key, &name, route.kind, &acl.servers)?;
        }
        let proxy_protocol = match &l.proxy_protocol {
            Some(p) => {
                let key = format!("{key}.proxy_protocol.trusted");
                if p.trusted.is_empty() {
                    return Err(ConfigError::invalid(
                        key,
                        "[]",
                        "name the balancers that send the header (an empty list trusts no one: leave proxy_protocol out)",
                    ));
                }
                Some(ProxyIn {
                    trusted: nets(&key, &p.trusted)?,
                })
            }
            None => None,
        };
        listeners.push(ListenerConfig {
            name,
            bind,
            route,
            advertise,
            acl,
            tls,
            proxy_protocol,
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
    let buffer_size = size("data.buffer_size", d.buffer_size.as_ref(), 1024 * 1024)?;
    if !(4096..=16 * 1024 * 1024).contains(&buffer_size) {
        return Err(ConfigError::invalid(
            "data.buffer_size",
            buffer_size,
            "must be between 4k and 16M",
        ));
    }

    let path = match d.path.as_deref() {
        None | Some("relay") => DataPath::Relay,
        Some("kernel") => DataPath::Kernel,
        Some(other) => {
            return Err(ConfigError::invalid(
                "data.path",
                other,
                "expected relay | kernel",
            ))
        }
    };

    let t = &raw.timeouts;
    let timeouts = Timeouts {
        connect: duration("timeouts.connect", t.connect.as_ref(), 10)?,
        banner: duration("timeouts.banner", t.banner.as_ref(), 30)?,
        idle: duration("timeouts.idle", t.idle.as_ref(), 900)?,
        data_accept: duration("timeouts.data_accept", t.data_accept.as_ref(), 30)?,
        data_stall: duration("timeouts.data_stall", t.data_stall.as_ref(), 300)?,
        login: duration("timeouts.login", t.login.as_ref(), 60)?,
        final_reply: duration("timeouts.final_reply", t.final_reply.as_ref(), 120)?,
        shutdown_grace: duration("timeouts.shutdown_grace", t.shutdown_grace.as_ref(), 30)?,
        tls_handshake: duration("timeouts.tls_handshake", t.tls_handshake.as_ref(), 10)?,
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
        max_line: count(
            "limits.max_line",
            lim.max_line.as_ref(),
            4096,
            *MAX_LINE.start(),
            *MAX_LINE.end(),
        )?,
        max_sessions_per_ip: count(
            "limits.max_sessions_per_ip",
            lim.max_sessions_per_ip.as_ref(),
            100,
            1,
            1_000_000,
        )?,
        max_reply_bytes: size_in(
            "limits.max_reply_bytes",
            lim.max_reply_bytes.as_ref(),
            1024 * 1024,
            MAX_REPLY_BYTES,
        )?,
        max_queued_commands: count(
            "limits.max_queued_commands",
            lim.max_queued_commands.as_ref(),
            8,
            1,
            1024,
        )?,
        rate_per_session: rate("limits.rate_per_session", lim.rate_per_session.as_ref())?,
        rate_total: rate("limits.rate_total", lim.rate_total.as_ref())?,
        max_reply_lines: count(
            "limits.max_reply_lines",
            lim.max_reply_lines.as_ref(),
            10_000,
            *MAX_REPLY_LINES.start(),
            *MAX_REPLY_LINES.end(),
        )?,
    };
    if limits.max_reply_bytes < limits.max_line {
        return Err(ConfigError::invalid(
            "limits.max_reply_bytes",
            limits.max_reply_bytes,
            format!(
                "must be at least limits.max_line ({}): a one-line reply must fit",
                limits.max_line
            ),
        ));
    }

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

    let data = DataConfig {
        passive_ports,
        advertise: default_advertise,
        server_mode,
        server_active_ports,
        server_pasv_address,
        server_source_port_20: d.server_source_port_20.unwrap_or(false),
        buffer_size,
        path,
    };
    let admin = super::admin::admin(raw.admin.as_ref(), &listeners, &data, &mut warnings)?;

    Ok(Config {
        listeners,
        data,
        timeouts,
        limits,
        log: LogConfig {
            level,
            format,
            xferlog: xferlog(raw.log.xferlog.as_deref())?,
        },
        admin,
        warnings,
    })
}

/// `log.xferlog`: a file path whose directory exists (the file is created at start).
fn xferlog(path: Option<&str>) -> Result<Option<std::path::PathBuf>> {
    let Some(text) = path else { return Ok(None) };
    let path = std::path::PathBuf::from(text);
    if text.is_empty() || text.ends_with('/') {
        return Err(ConfigError::invalid(
            "log.xferlog",
            text,
            "expected a file path",
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(ConfigError::invalid(
            "log.xferlog",
            text,
            format!("directory {} does not exist", dir.display()),
        ));
    }
    if path.is_dir() {
        return Err(ConfigError::invalid("log.xferlog", text, "is a directory"));
    }
    Ok(Some(path))
}

/// `limits.max_line`: RFC 959 lines are short; 512 leaves room for long paths, 64k is
/// far beyond any real client or server.
const MAX_LINE: std::ops::RangeInclusive<usize> = 512..=65536;
/// `limits.max_reply_lines`: a directory listing comes over a data connection, so even
/// a chatty server's multi-line replies (FEAT, HELP, STAT) stay well below this.
const MAX_REPLY_LINES: std::ops::RangeInclusive<usize> = 1..=100_000;
/// `limits.max_reply_bytes`: at least one short line; at most what a session may buffer.
const MAX_REPLY_BYTES: std::ops::RangeInclusive<usize> = 512..=1024 * 1024;

/// A user_at_host or transparent listener refuses every session unless some destination
/// rule allows something that no deny rule takes back.
fn destinations_possible(
    servers_key: &str,
    listener: &str,
    kind: RouteKind,
    policy: &ServerPolicy,
) -> Result<()> {
    let kind = match kind {
        RouteKind::Fixed => return Ok(()),
        RouteKind::UserAtHost => "user_at_host",
        RouteKind::Transparent => "transparent",
    };
    if policy.allow.is_empty() {
        return Err(ConfigError::invalid(
            format!("{servers_key}.allow"),
            "[]",
            format!("listener `{listener}` (route.kind {kind}) takes its destinations from clients and needs at least one allow rule; without one it refuses every session"),
        ));
    }
    if let Some(all) = policy
        .allow
        .iter()
        .map(|a| policy.deny.iter().find(|d| rule_covers(d, a)))
        .collect::<Option<Vec<_>>>()
    {
        let allow: Vec<String> = policy.allow.iter().map(|r| r.to_string()).collect();
        let deny: Vec<String> = all.iter().map(|r| r.to_string()).collect();
        return Err(ConfigError::invalid(
            format!("{servers_key}.deny"),
            deny.join(", "),
            format!("takes back every allow rule ({}) of listener `{listener}` (route.kind {kind}), which would refuse every session", allow.join(", ")),
        ));
    }
    Ok(())
}

/// Does `deny` refuse everything `allow` admits (network and ports)?
fn rule_covers(deny: &ServerRule, allow: &ServerRule) -> bool {
    let net = deny.net.contains(&allow.net);
    let ports = match (deny.ports, allow.ports) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((d0, d1)), Some((a0, a1))) => d0 <= a0 && a1 <= d1,
    };
    net && ports
}

fn route(key: &str, r: &RawRoute) -> Result<RouteConfig> {
    let kind = match r.kind.as_str() {
        "fixed" => RouteKind::Fixed,
        "user_at_host" => RouteKind::UserAtHost,
        "transparent" => RouteKind::Transparent,
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.kind"),
                other,
                "unknown route kind (expected fixed | user_at_host | transparent)",
            ))
        }
    };
    let upstreams = r
        .upstreams
        .iter()
        .enumerate()
        .map(|(j, u)| upstream(&format!("{key}.upstreams[{j}]"), u))
        .collect::<Result<Vec<_>>>()?;
    match kind {
        RouteKind::Fixed if upstreams.is_empty() => {
            return Err(ConfigError::invalid(
                format!("{key}.upstreams"),
                "[]",
                "a fixed route needs at least one upstream",
            ))
        }
        RouteKind::UserAtHost | RouteKind::Transparent if !upstreams.is_empty() => {
            return Err(ConfigError::invalid(
                format!("{key}.upstreams"),
                r.upstreams.join(", "),
                "only a fixed route has upstreams; this route's servers come from the client",
            ))
        }
        _ => {}
    }
    let balance = match r.balance.as_deref().unwrap_or("round_robin") {
        "round_robin" => Balance::RoundRobin,
        "least_conn" => Balance::LeastConn,
        "client_hash" => Balance::ClientHash,
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.balance"),
                other,
                "expected round_robin | least_conn | client_hash",
            ))
        }
    };
    let health = match &r.health {
        None => None,
        Some(_) if kind != RouteKind::Fixed => {
            return Err(ConfigError::invalid(
                format!("{key}.health"),
                "{..}",
                "health checks apply to a fixed route's upstreams only",
            ))
        }
        Some(h) => Some(HealthConfig {
            interval: duration(&format!("{key}.health.interval"), h.interval.as_ref(), 5)?,
            timeout: duration(&format!("{key}.health.timeout"), h.timeout.as_ref(), 2)?,
            fall: small(&format!("{key}.health.fall"), h.fall.as_ref(), 2)?,
            rise: small(&format!("{key}.health.rise"), h.rise.as_ref(), 2)?,
            login: h.login.as_ref().map(|l| HealthLogin {
                user: l.user.clone(),
                password: l.password.clone(),
            }),
        }),
    };
    let source = match &r.source {
        None => None,
        Some(text) => Some(text.parse::<IpAddr>().map_err(|_| {
            ConfigError::invalid(
                format!("{key}.source"),
                text,
                "expected an IP address of this host",
            )
        })?),
    };
    let tproxy = r.tproxy.unwrap_or(false);
    if tproxy && kind != RouteKind::Transparent {
        return Err(ConfigError::invalid(
            format!("{key}.tproxy"),
            "true",
            "tproxy applies to a transparent route only",
        ));
    }
    let host_command = match r.host_command.as_deref().unwrap_or("names") {
        "names" => HostCommand::Names,
        "forward" => HostCommand::Forward,
        "answer" => HostCommand::Answer,
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.host_command"),
                other,
                "expected names | forward | answer",
            ))
        }
    };
    let tls = match &r.tls {
        Some(t) => super::tls::route(&format!("{key}.tls"), t)?,
        None => None,
    };
    let proxy_protocol = match r.proxy_protocol.as_deref().unwrap_or("off") {
        "off" => None,
        "v1" => Some(ProxyVersion::V1),
        "v2" => Some(ProxyVersion::V2),
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.proxy_protocol"),
                other,
                "expected off | v1 | v2",
            ))
        }
    };
    Ok(RouteConfig {
        kind,
        upstreams,
        balance,
        health,
        source,
        tproxy,
        host_command,
        tls,
        proxy_protocol,
    })
}

fn small(key: &str, v: Option<&Scalar>, default: u32) -> Result<u32> {
    let n = count(key, v, default as usize, 1, 100)?;
    Ok(u32::try_from(n).unwrap_or(100))
}

/// The effective policy of a listener: each section of its own `acl` replaces the
/// top-level one.
fn acl(listener_key: &str, own: &RawAcl, global: &RawAcl) -> Result<AclConfig> {
    fn pick<'a, T>(
        listener_key: &str,
        section: &str,
        own: &'a Option<T>,
        global: &'a Option<T>,
    ) -> (String, Option<&'a T>) {
        match own {
            Some(c) => (format!("{listener_key}.acl.{section}"), Some(c)),
            None => (format!("acl.{section}"), global.as_ref()),
        }
    }
    let (clients_key, clients) = pick(listener_key, "clients", &own.clients, &global.clients);
    let (servers_key, servers) = pick(listener_key, "servers", &own.servers, &global.servers);
    let (commands_key, commands) = pick(listener_key, "commands", &own.commands, &global.commands);
    let clients = match clients {
        None => NetPolicy::default(),
        Some(c) => NetPolicy {
            allow: c
                .allow
                .as_ref()
                .map(|a| nets(&format!("{clients_key}.allow"), a))
                .transpose()?,
            deny: nets(&format!("{clients_key}.deny"), &c.deny)?,
        },
    };
    let servers = match servers {
        None => ServerPolicy::default(),
        Some(c) => ServerPolicy {
            allow: server_rules(
                &format!("{servers_key}.allow"),
                c.allow.as_deref().unwrap_or(&[]),
            )?,
            deny: server_rules(&format!("{servers_key}.deny"), &c.deny)?,
        },
    };
    let commands_deny = match commands {
        None => Vec::new(),
        Some(c) => c
            .deny
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if (3..=4).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Ok(v.to_ascii_uppercase())
                } else {
                    Err(ConfigError::invalid(
                        format!("{commands_key}.deny[{i}]"),
                        v,
                        "expected an FTP verb of 3 or 4 letters, e.g. SITE",
                    ))
                }
            })
            .collect::<Result<Vec<_>>>()?,
    };
    Ok(AclConfig {
        clients,
        servers,
        commands_deny,
    })
}

fn nets(key: &str, list: &[String]) -> Result<Vec<IpNet>> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            parse_net(t).ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}[{i}]"),
                    t,
                    "expected an IP network such as 192.0.2.0/24",
                )
            })
        })
        .collect()
}

fn server_rules(key: &str, list: &[String]) -> Result<Vec<ServerRule>> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            server_rule(t).ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}[{i}]"),
                    t,
                    "expected NET, NET:PORT or NET:FIRST-LAST, e.g. 203.0.113.0/24:2100-2199 or [2001:db8::/32]:21",
                )
            })
        })
        .collect()
}

/// `NET`, `NET:PORT`, `NET:FIRST-LAST`; IPv6 with a port as `[NET]:PORT`.
fn server_rule(text: &str) -> Option<ServerRule> {
    let text = text.trim();
    if let Some(net) = parse_net(text) {
        return Some(ServerRule { net, ports: None });
    }
    let (net_text, ports_text) = match text.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?,
        None => text.rsplit_once(':')?,
    };
    let net = parse_net(net_text)?;
    let ports = match ports_text.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let p: u16 = ports_text.parse().ok()?;
            (p, p)
        }
    };
    if ports.0 == 0 || ports.1 < ports.0 {
        return None;
    }
    Some(ServerRule {
        net,
        ports: Some(ports),
    })
}

/// A rate in bytes/s with optional k/M/G suffix; absent means unlimited.
fn rate(key: &str, v: Option<&Scalar>) -> Result<Option<u64>> {
    let Some(v) = v else { return Ok(None) };
    let n = size(key, Some(v), 0)? as u64;
    if n < 1024 {
        return Err(ConfigError::invalid(
            key,
            v,
            "a rate below 1k bytes/s would stall transfers",
        ));
    }
    Ok(Some(n))
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

/// A byte size (as [`size`]) that must lie in `range`.
fn size_in(
    key: &str,
    v: Option<&Scalar>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize> {
    let n = size(key, v, default)?;
    if !range.contains(&n) {
        return Err(ConfigError::invalid(
            key,
            v.map(|v| v.to_string()).unwrap_or_else(|| n.to_string()),
            format!(
                "must be between {} and {} bytes",
                range.start(),
                range.end()
            ),
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
