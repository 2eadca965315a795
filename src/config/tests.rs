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
    let Route::Fixed { upstreams } = &cfg.listeners[0].route;
    let shown: Vec<String> = upstreams.iter().map(|u| u.to_string()).collect();
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
