use super::*;

const MINIMAL: &str = "listeners:\n  - name: a\n    bind: 127.0.0.1:2121\n    route: { kind: fixed, upstreams: [127.0.0.1:21] }\n";

fn err(text: &str) -> String {
    match parse(text, "test") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shipped_default_config_is_valid() {
    let text = include_str!("../../config/ftpgate.yaml");
    let cfg = parse(text, "config/ftpgate.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.listeners[0].bind,
        "127.0.0.1:2121".parse().unwrap_or_else(|_| unreachable!())
    );
    assert_eq!(
        cfg.data.passive_ports,
        PortRange {
            first: 50000,
            last: 50999
        }
    );
    assert_eq!(cfg.data.server_mode, ServerMode::Passive);
    assert_eq!(cfg.timeouts.connect, std::time::Duration::from_secs(10));
    assert_eq!(cfg.timeouts.idle, std::time::Duration::from_secs(900));
    assert_eq!(cfg.limits.max_sessions, 1000);
}

#[test]
fn minimal_config_gets_defaults() {
    let cfg = parse(MINIMAL, "t").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.data.server_pasv_address, ServerPasvAddress::UseControl);
    assert_eq!(cfg.data.advertise.len(), 1);
    assert_eq!(cfg.data.advertise[0].address, AdvertiseAddr::Auto);
    assert_eq!(cfg.log.format, LogFormat::Text);
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let e = err(&format!("{MINIMAL}data: {{ pasive_ports: 1-2 }}\n"));
    assert!(e.contains("pasive_ports"), "{e}");
    let e = err(&format!("{MINIMAL}surprise: 1\n"));
    assert!(e.contains("surprise"), "{e}");
}

#[test]
fn bad_values_name_key_and_value() {
    let cases = [
        (
            "data: { passive_ports: 60000-50000 }",
            "data.passive_ports",
            "60000-50000",
        ),
        (
            "data: { passive_ports: 21-30 }",
            "data.passive_ports",
            "21-30",
        ),
        ("data: { passive_ports: abc }", "data.passive_ports", "abc"),
        (
            "data: { server_mode: sideways }",
            "data.server_mode",
            "sideways",
        ),
        (
            "data: { server_pasv_address: maybe }",
            "data.server_pasv_address",
            "maybe",
        ),
        (
            "data: { advertise: [ { clients: 300.0.0.0/8, address: auto } ] }",
            "data.advertise[0].clients",
            "300.0.0.0/8",
        ),
        (
            "data: { advertise: [ { clients: 0.0.0.0/0, address: nowhere } ] }",
            "data.advertise[0].address",
            "nowhere",
        ),
        (
            "timeouts: { connect: 10 parsecs }",
            "timeouts.connect",
            "10 parsecs",
        ),
        ("timeouts: { idle: 0s }", "timeouts.idle", "0s"),
        ("limits: { max_sessions: 0 }", "limits.max_sessions", "0"),
        ("log: { format: xml }", "log.format", "xml"),
        ("log: { level: \"[[\" }", "log.level", "[["),
    ];
    for (extra, key, value) in cases {
        let e = err(&format!("{MINIMAL}{extra}\n"));
        assert!(e.contains(key) && e.contains(value), "{extra}: {e}");
    }
}

#[test]
fn listener_errors_name_the_listener() {
    let e = err(
        "listeners:\n  - bind: 127.0.0.1:99999\n    route: { kind: fixed, upstreams: [a:21] }\n",
    );
    assert!(
        e.contains("listeners[0].bind") && e.contains("99999"),
        "{e}"
    );
    let e = err("listeners:\n  - bind: 127.0.0.1:1\n    route: { kind: teleport }\n");
    assert!(
        e.contains("listeners[0].route.kind") && e.contains("teleport"),
        "{e}"
    );
    let e = err("listeners:\n  - bind: 127.0.0.1:1\n    route: { kind: fixed, upstreams: [] }\n");
    assert!(e.contains("listeners[0].route.upstreams"), "{e}");
    let e = err(
        "listeners:\n  - bind: 127.0.0.1:1\n    route: { kind: fixed, upstreams: [\"host:0\"] }\n",
    );
    assert!(e.contains("listeners[0].route.upstreams[0]"), "{e}");
    let e = err(
        "listeners:\n  - bind: 127.0.0.1:1\n    route: { kind: fixed, upstreams: [\"noport\"] }\n",
    );
    assert!(
        e.contains("listeners[0].route.upstreams[0]") && e.contains("noport"),
        "{e}"
    );
}

#[test]
fn upstream_forms() {
    let text = "listeners:\n  - bind: 127.0.0.1:1\n    route: { kind: fixed, upstreams: [\"[2001:db8::1]:21\", \"ftp.example:2121\", \"192.0.2.1:21\"] }\n";
    let cfg = parse(text, "t").unwrap_or_else(|e| panic!("{e}"));
    let shown: Vec<String> = cfg.listeners[0]
        .route
        .upstreams
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert_eq!(
        shown,
        ["[2001:db8::1]:21", "ftp.example:2121", "192.0.2.1:21"]
    );
}

#[test]
fn durations_and_sizes_accept_numbers_and_suffixes() {
    let cfg = parse(
        &format!("{MINIMAL}timeouts: {{ connect: 3, idle: 2m, data_accept: 500ms }}\ndata: {{ buffer_size: 1M }}\n"),
        "t",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.timeouts.connect.as_secs(), 3);
    assert_eq!(cfg.timeouts.idle.as_secs(), 120);
    assert_eq!(cfg.timeouts.data_accept.as_millis(), 500);
    assert_eq!(cfg.data.buffer_size, 1024 * 1024);
}

#[test]
fn routes_and_acls() {
    let text = r#"
listeners:
  - name: fwd
    bind: 127.0.0.1:2121
    route: { kind: user_at_host }
  - name: rev
    bind: 127.0.0.1:2122
    route:
      kind: fixed
      upstreams: [192.0.2.10:21, 192.0.2.11:21]
      balance: client_hash
      health: { interval: 2s, timeout: 1s, login: { user: probe, password: s3cret } }
      source: 192.0.2.1
    acl:
      clients: { allow: [192.0.2.0/24], deny: [192.0.2.66] }
      commands: { deny: [site, DELE] }
acl:
  servers:
    allow: [198.51.100.0/24, "203.0.113.5/32:21", "203.0.113.0/24:2100-2199", "[2001:db8::/32]:21"]
    deny: [198.51.100.66/32]
"#;
    let cfg = parse(text, "t").unwrap_or_else(|e| panic!("{e}"));
    let fwd = &cfg.listeners[0];
    assert_eq!(fwd.route.kind, RouteKind::UserAtHost);
    assert_eq!(fwd.acl.servers.allow.len(), 4);
    assert_eq!(fwd.acl.servers.allow[2].ports, Some((2100, 2199)));
    assert_eq!(fwd.acl.servers.allow[3].to_string(), "2001:db8::/32:21");
    assert!(fwd.acl.clients.allow.is_none());
    let rev = &cfg.listeners[1];
    assert_eq!(rev.route.balance, Balance::ClientHash);
    assert_eq!(rev.acl.commands_deny, ["SITE", "DELE"]);
    assert_eq!(rev.acl.clients.deny.len(), 1);
    // The listener's own acl replaced clients/commands, not servers.
    assert_eq!(rev.acl.servers.deny.len(), 1);
    let shown = serde_yaml::to_string(&cfg).unwrap_or_default();
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn route_errors() {
    let cases = [
        ("route: { kind: user_at_host, upstreams: [192.0.2.1:21] }", "listeners[0].route.upstreams"),
        ("route: { kind: fixed, upstreams: [192.0.2.1:21], balance: random }", "listeners[0].route.balance"),
        ("route: { kind: fixed, upstreams: [192.0.2.1:21], source: here }", "listeners[0].route.source"),
        ("route: { kind: fixed, upstreams: [192.0.2.1:21], tproxy: true }", "listeners[0].route.tproxy"),
        ("route: { kind: transparent, health: { interval: 1s } }", "listeners[0].route.health"),
        ("route: { kind: fixed, upstreams: [192.0.2.1:21] }\n    acl: { servers: { allow: [\"198.51.100.0/24:0\"] } }", "listeners[0].acl.servers.allow[0]"),
        ("route: { kind: fixed, upstreams: [192.0.2.1:21] }\n    acl: { commands: { deny: [\"RM -RF\"] } }", "listeners[0].acl.commands.deny[0]"),
        ("route: { kind: fixed, upstreams: [192.0.2.1:21] }\n    acl: { clients: { allow: [lan] } }", "listeners[0].acl.clients.allow[0]"),
    ];
    for (route, key) in cases {
        let e = err(&format!("listeners:\n  - bind: 127.0.0.1:1\n    {route}\n"));
        assert!(e.contains(key), "{route}: {e}");
    }
    let e = err(&format!("{MINIMAL}limits: {{ rate_total: 10 }}\n"));
    assert!(e.contains("limits.rate_total"), "{e}");
}

fn listener(route: &str, acl: &str) -> String {
    format!("listeners:\n  - name: l\n    bind: 127.0.0.1:1\n    route: {route}\n{acl}")
}

#[test]
fn a_route_no_destination_rule_allows_is_an_error() {
    for (text, key) in [
        // No acl.servers at all.
        (listener("{ kind: user_at_host }", ""), "`acl.servers.allow`"),
        (listener("{ kind: transparent }", ""), "`acl.servers.allow`"),
        // An empty allow list, top-level or the listener's own.
        (
            listener("{ kind: user_at_host }", "acl: { servers: { allow: [] } }\n"),
            "`acl.servers.allow`",
        ),
        (
            listener(
                "{ kind: transparent }",
                "    acl: { servers: { deny: [192.0.2.0/24] } }\nacl: { servers: { allow: [0.0.0.0/0] } }\n",
            ),
            "`listeners[0].acl.servers.allow`",
        ),
        // Every allow rule taken back by a deny rule.
        (
            listener(
                "{ kind: user_at_host }",
                "acl: { servers: { allow: [\"198.51.100.0/25:21\", \"198.51.100.128/25\"], deny: [198.51.100.0/24] } }\n",
            ),
            "`acl.servers.deny`",
        ),
    ] {
        let e = err(&text);
        assert!(e.contains(key), "{text}\n-> {e}");
        assert!(e.contains("listener `l`"), "{e}");
    }
}

#[test]
fn destination_rules_that_leave_something_open_are_fine() {
    for acl in [
        // The deny rule covers only part of the allowed network...
        "acl: { servers: { allow: [198.51.100.0/24], deny: [198.51.100.0/25] } }\n",
        // ... or only some of its ports ...
        "acl: { servers: { allow: [198.51.100.0/24], deny: [\"198.51.100.0/24:21\"] } }\n",
        // ... or another address family.
        "acl: { servers: { allow: [\"::/0\"], deny: [0.0.0.0/0] } }\n",
    ] {
        let text = listener("{ kind: user_at_host }", acl);
        let cfg = parse(&text, "t").unwrap_or_else(|e| panic!("{text}\n-> {e}"));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }
}

#[test]
fn acl_servers_on_a_fixed_route_is_a_warning_not_an_error() {
    // acl.servers does not restrict a fixed route's upstreams (the operator chose them).
    let text = listener(
        "{ kind: fixed, upstreams: [192.0.2.1:21] }",
        "    acl: { servers: { allow: [] } }\n",
    );
    let cfg = parse(&text, "t").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].contains("listeners[0].acl.servers") && cfg.warnings[0].contains("`l`"),
        "{:?}",
        cfg.warnings
    );
    // The top-level section is for the other listeners: no warning.
    let text = format!("{MINIMAL}acl: {{ servers: {{ allow: [0.0.0.0/0] }} }}\n");
    let cfg = parse(&text, "t").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    // Warnings are not part of the effective configuration `check` prints.
    let shown = serde_yaml::to_string(&cfg).unwrap_or_default();
    assert!(!shown.contains("warnings"), "{shown}");
}

#[test]
fn reply_and_line_limits_are_range_checked() {
    for (limits, key) in [
        ("max_reply_bytes: 511", "limits.max_reply_bytes"),
        ("max_reply_bytes: 2M", "limits.max_reply_bytes"),
        ("max_reply_bytes: 0", "limits.max_reply_bytes"),
        // A one-line reply of max_line bytes must fit.
        (
            "{ max_line: 8192, max_reply_bytes: 4k }",
            "limits.max_reply_bytes",
        ),
        ("max_reply_lines: 0", "limits.max_reply_lines"),
        ("max_reply_lines: 100001", "limits.max_reply_lines"),
        ("max_line: 511", "limits.max_line"),
        ("max_line: 65537", "limits.max_line"),
    ] {
        let limits = if limits.starts_with('{') {
            limits.to_string()
        } else {
            format!("{{ {limits} }}")
        };
        let e = err(&format!("{MINIMAL}limits: {limits}\n"));
        assert!(e.contains(&format!("`{key}`")), "{limits}: {e}");
    }
    for limits in [
        "{ max_line: 512, max_reply_bytes: 512, max_reply_lines: 1 }",
        "{ max_line: 65536, max_reply_bytes: 1M, max_reply_lines: 100000 }",
    ] {
        let cfg = parse(&format!("{MINIMAL}limits: {limits}\n"), "t")
            .unwrap_or_else(|e| panic!("{limits}: {e}"));
        assert!(cfg.limits.max_reply_bytes >= cfg.limits.max_line);
    }
}

#[test]
fn admin_is_off_unless_configured() {
    let cfg = parse(MINIMAL, "t").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.admin, None);
    let cfg = parse(
        &format!("{MINIMAL}admin: {{ bind: 127.0.0.1:9121 }}\n"),
        "t",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.admin,
        Some(AdminConfig {
            bind: "127.0.0.1:9121".parse().unwrap_or_else(|_| unreachable!())
        })
    );
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn shipped_admin_example_is_valid_once_uncommented() {
    let text = include_str!("../../config/ftpgate.yaml");
    let example: String = text
        .lines()
        .skip_while(|l| !l.starts_with("# admin:"))
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(example.starts_with("admin:\n"), "{example}");
    let cfg = parse(&format!("{text}{example}"), "t").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.admin.is_some_and(|a| a.bind.ip().is_loopback()));
}

#[test]
fn admin_errors_name_the_key() {
    for (admin, needle) in [
        ("{ bind: localhost }", "`admin.bind`"),
        ("{ bind: 127.0.0.1 }", "`admin.bind`"),
        ("{ bind: 127.0.0.1:2121 }", "listener `a`"),
        ("{ bind: 0.0.0.0:2121 }", "listener `a`"),
        ("{ bind: 127.0.0.1:50010 }", "data.passive_ports"),
        ("{ bind: 127.0.0.1:40000 }", "data.server_active_ports"),
        ("{ bind: 127.0.0.1:9121, path: /x }", "path"),
        ("{}", "bind"),
    ] {
        let e = err(&format!("{MINIMAL}admin: {admin}\n"));
        assert!(e.contains(needle), "{admin}: {e}");
    }
}

#[test]
fn admin_off_loopback_is_a_warning() {
    let cfg = parse(&format!("{MINIMAL}admin: {{ bind: 0.0.0.0:9121 }}\n"), "t")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.admin.is_some());
    assert!(
        cfg.warnings.iter().any(|w| w.starts_with("admin.bind: ")),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn data_path_is_relay_by_default_and_names_its_key_when_wrong() {
    let cfg = parse(MINIMAL, "test").unwrap();
    assert_eq!(cfg.data.path, DataPath::Relay);
    let cfg = parse(&format!("{MINIMAL}data: {{ path: kernel }}\n"), "test").unwrap();
    assert_eq!(cfg.data.path, DataPath::Kernel);
    let e = err(&format!("{MINIMAL}data: {{ path: ebpf }}\n"));
    assert!(
        e.contains("data.path") && e.contains("relay | kernel"),
        "{e}"
    );
}
