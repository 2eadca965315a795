//! Hitless reload, in process (`Control::reload_from`, what SIGHUP runs): transfers
//! running across reloads stay byte-exact, a bad file or a restart-only change leaves
//! the running configuration serving, listeners are added and removed, and a resized
//! passive range never hands out a port a running session holds.

mod common;

use common::*;
use ftpgate::metrics::families::{ReloadLabels, ReloadResult};
use ftpgate::server::ReloadError;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

fn reloads(proxy: &Proxy, result: ReloadResult) -> u64 {
    proxy
        .metrics
        .families
        .config_reloads
        .get_or_create(&ReloadLabels { result })
        .get()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

fn listener_addr(proxy: &Proxy, name: &str) -> Option<SocketAddr> {
    proxy
        .control
        .local_addrs()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| a)
}

/// One more listener, `name` on 127.0.0.1:0, in front of `upstream`.
fn extra_listener(name: &str, upstream: SocketAddr) -> String {
    format!(
        "  - name: {name}\n    bind: 127.0.0.1:0\n    route: {{ kind: fixed, upstreams: [\"{upstream}\"] }}\n"
    )
}

/// `proxy_yaml` with more listeners spliced into its `listeners:` list.
fn with_listeners(base: &str, more: &str) -> String {
    let (head, tail) = base.split_once("data:").expect("data section");
    format!("{head}{more}data:{tail}")
}

/// libunftp (on a runtime) serving a temporary root that holds `f.bin`, `len` random
/// bytes whose SHA-256 is `sum`.
struct Served {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    ports: Ports,
    unftp: Unftp,
    sum: String,
}

fn served(len: usize) -> Served {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let (file, sum) = random_file(len);
    std::fs::write(dir.path().join("f.bin"), &file).expect("write");
    Served {
        rt,
        dir,
        ports,
        unftp,
        sum,
    }
}

#[test]
fn transfers_across_reloads_stay_byte_exact_and_an_added_listener_serves() {
    let _dog = Watchdog::new("reload_under_load", Duration::from_secs(90));
    let Served {
        rt,
        dir,
        ports,
        unftp,
        sum,
    } = served(3 * MIB + 13);
    let base = proxy_yaml(
        unftp.addr,
        &ports,
        "passive",
        "limits: { rate_per_session: 2M }\n",
    );
    let proxy = start_proxy_yaml(&rt, &base);
    let first = proxy.addr;
    let cfg = dir.path().join("gate.yaml");
    // Four sessions mid-transfer (about 1.5 s each at 2 MiB/s).
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = suppaftp_client(first, suppaftp::Mode::Passive);
                let got = c.retr_as_buffer("f.bin").expect("RETR").into_inner();
                let _ = c.quit();
                sha256_hex(&got)
            })
        })
        .collect();
    wait_until("4 transfers running", Duration::from_secs(10), || {
        proxy.metrics.transfers.get() == 4
    });
    // 1: a narrower passive range; 2: a second listener; 3: another rate limit.
    let p0 = *ports.proxy_passive.start();
    let narrower = base.replace(
        &format!("passive_ports: {}-", p0),
        &format!("passive_ports: {}-", p0 + 8),
    );
    assert_ne!(narrower, base, "the passive range was rewritten");
    let two = with_listeners(&narrower, &extra_listener("second", unftp.addr));
    let three = two.replace("rate_per_session: 2M", "rate_per_session: 50M");
    for (i, text) in [&narrower, &two, &three].into_iter().enumerate() {
        write(&cfg, text);
        let report = rt
            .block_on(proxy.control.reload_from(&cfg))
            .unwrap_or_else(|e| panic!("reload {i}: {e}"));
        assert!(report.kept.contains(&"t".to_string()), "{report:?}");
        assert_eq!(listener_addr(&proxy, "t"), Some(first), "kept socket");
    }
    assert_eq!(
        proxy.metrics.transfers.get(),
        4,
        "the reloads ran while every transfer was in flight"
    );
    for c in clients {
        assert_eq!(c.join().expect("client"), sum, "RETR across reloads");
    }
    assert_eq!(reloads(&proxy, ReloadResult::ok), 3);
    // The listener added by reload accepts and relays, from the new passive range.
    let second = listener_addr(&proxy, "second").expect("second listener");
    assert_ne!(second, first);
    let mut raw = RawFtp::login(second, DataMode::Pasv);
    let r = raw.ctrl.expect("PASV", 227);
    let port = parse_227(&r.text()).port();
    assert!(
        (p0 + 8..=*ports.proxy_passive.end()).contains(&port),
        "new sessions use the new range: {port}"
    );
    let got = raw.download("RETR f.bin");
    assert_eq!(sha256_hex(&got), sum, "RETR through the added listener");
    raw.quit();
    proxy.stop(&rt);
}

#[test]
fn a_bad_reload_leaves_the_running_configuration_serving() {
    let _dog = Watchdog::new("bad_reload", Duration::from_secs(60));
    let Served {
        rt,
        dir,
        ports,
        unftp,
        sum,
    } = served(64 * 1024);
    let base = proxy_yaml(unftp.addr, &ports, "passive", "");
    let proxy = start_proxy_yaml(&rt, &base);
    let cfg = dir.path().join("gate.yaml");
    let reload = |text: &str| {
        write(&cfg, text);
        rt.block_on(proxy.control.reload_from(&cfg))
    };
    // A syntax error, a bad value, a restart-only key, an address already in use.
    let e = reload("listeners: [").expect_err("syntax error");
    assert!(matches!(e, ReloadError::Config(_)), "{e}");
    let e = reload(&base.replace("data_accept: 5s", "data_accept: soon")).expect_err("bad value");
    assert!(e.to_string().contains("data_accept"), "names the key: {e}");
    let e = reload(&format!("{base}log: {{ level: debug }}\n")).expect_err("restart-only");
    assert!(
        matches!(&e, ReloadError::NeedsRestart { key } if key == "log"),
        "{e}"
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("busy port");
    let busy_addr = busy.local_addr().expect("addr");
    let clash = with_listeners(
        &base,
        &format!(
            "  - name: clash\n    bind: {busy_addr}\n    route: {{ kind: fixed, upstreams: [\"{}\"] }}\n",
            unftp.addr
        ),
    );
    let e = reload(&clash).expect_err("address in use");
    assert!(
        matches!(&e, ReloadError::Bind { name, .. } if name == "clash"),
        "{e}"
    );
    assert_eq!(reloads(&proxy, ReloadResult::failed), 4);
    assert_eq!(reloads(&proxy, ReloadResult::ok), 0);
    assert_eq!(proxy.control.local_addrs().len(), 1, "nothing was swapped");
    // The old configuration still serves.
    let mut c = suppaftp_client(proxy.addr, suppaftp::Mode::Passive);
    let got = c.retr_as_buffer("f.bin").expect("RETR").into_inner();
    assert_eq!(sha256_hex(&got), sum);
    let _ = c.quit();
    drop(busy);
    proxy.stop(&rt);
}

#[test]
fn a_removed_listener_refuses_new_clients_while_its_sessions_finish() {
    let _dog = Watchdog::new("removed_listener", Duration::from_secs(60));
    let Served {
        rt,
        dir,
        ports,
        unftp,
        sum,
    } = served(256 * 1024);
    let base = proxy_yaml(unftp.addr, &ports, "passive", "");
    let two = with_listeners(&base, &extra_listener("old", unftp.addr));
    let (proxy, addrs) = start_proxy_yaml_all(&rt, &two);
    let old = addrs[1].1;
    let mut c = suppaftp_client(old, suppaftp::Mode::Passive);
    let cfg = dir.path().join("gate.yaml");
    write(&cfg, &base);
    let report = rt
        .block_on(proxy.control.reload_from(&cfg))
        .expect("reload");
    assert_eq!(report.removed, vec!["old".to_string()]);
    wait_until(
        "the removed listener's socket to close",
        Duration::from_secs(5),
        || std::net::TcpStream::connect_timeout(&old, Duration::from_secs(1)).is_err(),
    );
    // The session that came in through it runs on, transfers included.
    let got = c.retr_as_buffer("f.bin").expect("RETR").into_inner();
    assert_eq!(sha256_hex(&got), sum);
    let _ = c.quit();
    proxy.stop(&rt);
}

#[test]
fn a_resized_passive_range_never_hands_out_a_held_port() {
    let _dog = Watchdog::new("resized_range", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new().narrow(2);
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    std::fs::write(dir.path().join("f.bin"), b"held").expect("write");
    let base = proxy_yaml(unftp.addr, &ports, "passive", "");
    let proxy = start_proxy_yaml(&rt, &base);
    let mut one = RawFtp::login(proxy.addr, DataMode::Pasv);
    let held = parse_227(&one.ctrl.expect("PASV", 227).text());
    // The new range is exactly the port session one holds.
    let (a, b) = (ports.proxy_passive.start(), ports.proxy_passive.end());
    let only = base.replace(
        &format!("passive_ports: {a}-{b}"),
        &format!("passive_ports: {p}-{p}", p = held.port()),
    );
    assert_ne!(only, base);
    let cfg = dir.path().join("gate.yaml");
    write(&cfg, &only);
    rt.block_on(proxy.control.reload_from(&cfg))
        .expect("reload");
    let mut two = RawFtp::login(proxy.addr, DataMode::Pasv);
    let r = two.ctrl.cmd("PASV");
    assert_eq!(r.code, 425, "the held port is not handed out twice: {r:?}");
    // Session one uses and releases it; then session two gets it.
    let mut data = Prepared::Connect(held).open();
    let r = one.ctrl.cmd("RETR f.bin");
    assert_eq!(r.code / 100, 1, "{r:?}");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut data, &mut got).expect("read");
    drop(data);
    one.finish("RETR");
    assert_eq!(got, b"held");
    wait_until("the lease to return", Duration::from_secs(5), || {
        proxy.metrics.port_leases.get() == 0
    });
    let r = two.ctrl.expect("PASV", 227);
    assert_eq!(parse_227(&r.text()).port(), held.port());
    one.quit();
    two.quit();
    proxy.stop(&rt);
}

/// AUTH TLS and a handshake trusting only `ca`: whether ftpgate's certificate verified.
fn handshake_verifies(addr: SocketAddr, ca: &Path) -> bool {
    use std::io::Write;
    let config = common::tls::client_config(ca, rustls::DEFAULT_VERSIONS);
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut plain = std::io::BufReader::new(tcp);
    assert_eq!(common::tls::read_reply(&mut plain).0, 220);
    plain.get_mut().write_all(b"AUTH TLS\r\n").expect("AUTH");
    assert_eq!(common::tls::read_reply(&mut plain).0, 234);
    let mut tcp = plain.into_inner();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client");
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

#[test]
fn a_reload_reads_the_listener_certificate_again() {
    let _dog = Watchdog::new("reload_tls", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let (old, new) = (common::tls::Pki::new(), common::tls::Pki::new());
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let install = |pki: &common::tls::Pki| {
        std::fs::copy(&pki.cert, &cert).expect("cert");
        std::fs::copy(&pki.key, &key).expect("key");
    };
    install(&old);
    let yaml = proxy_yaml(unftp.addr, &ports, "passive", "").replace(
        "    route:",
        &format!(
            "    tls: {{ mode: explicit, cert: {}, key: {} }}\n    route:",
            cert.display(),
            key.display()
        ),
    );
    let proxy = start_proxy_yaml(&rt, &yaml);
    assert!(handshake_verifies(proxy.addr, &old.ca));
    assert!(!handshake_verifies(proxy.addr, &new.ca));
    // A session secured with the old certificate lives through the reload.
    let mut running = common::tls::TlsCtrl::explicit(
        proxy.addr,
        common::tls::client_config(&old.ca, rustls::DEFAULT_VERSIONS),
    );
    install(&new);
    let cfg = dir.path().join("gate.yaml");
    write(&cfg, &yaml);
    rt.block_on(proxy.control.reload_from(&cfg))
        .expect("reload");
    assert!(
        handshake_verifies(proxy.addr, &new.ca),
        "the new certificate"
    );
    assert!(!handshake_verifies(proxy.addr, &old.ca));
    running.login();
    assert_eq!(running.cmd("NOOP").0, 200);
    assert_eq!(running.cmd("QUIT").0, 221);
    proxy.stop(&rt);
}

#[test]
fn a_reload_keeps_an_ejected_upstream_ejected() {
    let _dog = Watchdog::new("reload_health", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let dead: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().unwrap();
    // A slow interval: after the reload, no probe runs before the check below.
    let yaml = proxy_yaml(unftp.addr, &ports, "passive", "").replace(
        &format!("upstreams: [\"{}\"]", unftp.addr),
        &format!(
            "upstreams: [\"{dead}\", \"{}\"], health: {{ interval: 300ms, timeout: 200ms, fall: 2, rise: 5 }}",
            unftp.addr
        ),
    );
    assert!(yaml.contains("health:"), "{yaml}");
    let proxy = start_proxy_yaml(&rt, &yaml);
    let up = |addr: SocketAddr| {
        proxy
            .metrics
            .families
            .upstream_up
            .get_or_create(&ftpgate::metrics::families::UpstreamLabels {
                listener: "t".into(),
                upstream: addr.to_string(),
            })
            .get()
    };
    wait_until("the dead upstream ejected", Duration::from_secs(10), || {
        up(dead) == 0
    });
    let cfg = dir.path().join("gate.yaml");
    write(&cfg, &yaml);
    rt.block_on(proxy.control.reload_from(&cfg))
        .expect("reload");
    assert_eq!(up(dead), 0, "still ejected right after the reload");
    assert_eq!(up(unftp.addr), 1);
    // Every new session goes to the live upstream at once: none waits on the dead one.
    for _ in 0..4 {
        let mut c = Ctrl::connect(proxy.addr);
        assert_eq!(c.reply().code, 220);
        c.expect("QUIT", 221);
    }
    proxy.stop(&rt);
}
