//! The PROXY protocol, in process: a trusted balancer's header (v1, v2 with TLVs, IPv6,
//! split across segments) makes the declared client the session's client for the ACL,
//! data-peer checks and the transfer metrics; its passive data connections must carry
//! a header naming that client; LOCAL health checks are answered; a trusted peer without
//! a valid header, and an untrusted peer with one, are closed. Outbound, route.
//! proxy_protocol v1/v2 names the real client to libunftp in its PROXY mode.

mod common;

use common::*;
use ftpgate::config::ProxyVersion;
use ftpgate::proxy_proto::encode;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The declared client: a documentation address, never a real peer here.
const CLIENT: &str = "192.0.2.7:40000";

/// ftpgate with `proxy_protocol.trusted: [trusted]` in front of `upstream`.
fn gate(
    rt: &tokio::runtime::Runtime,
    upstream: SocketAddr,
    ports: &Ports,
    trusted: &str,
    extra: &str,
) -> Proxy {
    let yaml = proxy_yaml(upstream, ports, "passive", extra).replace(
        "    route:",
        &format!("    proxy_protocol: {{ trusted: [{trusted}] }}\n    route:"),
    );
    start_proxy_yaml(rt, &yaml)
}

/// A connection that begins with `header`, written in pieces of `chunk` bytes.
fn balancer(addr: SocketAddr, header: &[u8], chunk: usize) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    for piece in header.chunks(chunk.max(1)) {
        s.write_all(piece).expect("header");
        if chunk < header.len() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn v1(client: SocketAddr, to: SocketAddr) -> Vec<u8> {
    encode(ProxyVersion::V1, client, to)
}

fn v2_with_tlvs(client: SocketAddr, to: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (client, to),
    )
    .write_tlv(ppp::v2::Type::Authority, b"ftp.example")
    .expect("tlv")
    .write_tlv(ppp::v2::Type::NoOp, &[0; 9])
    .expect("tlv")
    .build()
    .expect("v2 header")
}

/// What the server side of a closed connection looks like: EOF (or a reset) with at
/// most the greeting before it.
fn closed_without_service(mut s: TcpStream) -> bool {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    !String::from_utf8_lossy(&buf).contains("230")
}

/// A login and a checksummed passive RETR whose data connection also comes through the
/// "balancer" (127.0.0.1) with a header naming `client`.
fn retr_through_balancer(ctrl: TcpStream, client: SocketAddr, sum: &str) {
    let mut c = Ctrl::from_stream(ctrl);
    assert_eq!(c.reply().code, 220);
    c.login();
    let r = c.expect("PASV", 227);
    let data_addr = parse_227(&r.text());
    // First in the queue, a data connection through the balancer for another client:
    // closed, and the real one is taken after it.
    let other: SocketAddr = "198.51.100.99:1".parse().unwrap();
    let mut wrong = balancer(data_addr, &v1(other, data_addr), 1024);
    let mut data = balancer(
        data_addr,
        &encode(ProxyVersion::V2, client, data_addr),
        1024,
    );
    let r = c.cmd("RETR f.bin");
    assert_eq!(r.code / 100, 1, "{r:?}");
    let mut buf = [0u8; 1];
    assert_eq!(
        wrong.read(&mut buf).unwrap_or(0),
        0,
        "a foreign client's data connection is closed"
    );
    let mut got = Vec::new();
    data.read_to_end(&mut got).expect("data");
    drop(data);
    let r = c.reply();
    assert_eq!(r.code, 226, "{r:?}");
    assert_eq!(sha256_hex(&got), sum, "RETR through the balancer");
    c.expect("QUIT", 221);
}

#[test]
fn a_trusted_balancer_names_the_client_for_control_and_data() {
    let _dog = Watchdog::new("proxy_in", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let (file, sum) = random_file(300_000);
    std::fs::write(dir.path().join("f.bin"), &file).expect("write");
    let proxy = gate(&rt, unftp.addr, &ports, "127.0.0.1/32", "");
    let client: SocketAddr = CLIENT.parse().unwrap();
    // v1 in one segment, v2 with TLVs split byte by byte, v2 for an IPv6 client.
    retr_through_balancer(
        balancer(proxy.addr, &v1(client, proxy.addr), 1024),
        client,
        &sum,
    );
    retr_through_balancer(
        balancer(proxy.addr, &v2_with_tlvs(client, proxy.addr), 1),
        client,
        &sum,
    );
    let six: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    let header = encode(ProxyVersion::V2, six, "[2001:db8::1]:21".parse().unwrap());
    retr_through_balancer(balancer(proxy.addr, &header, 7), six, &sum);
    // Per-listener metrics count the transfers; nothing leaks.
    proxy.stop(&rt);
}

#[test]
fn the_declared_client_is_the_one_the_acl_sees() {
    let _dog = Watchdog::new("proxy_acl", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let proxy = gate(
        &rt,
        unftp.addr,
        &ports,
        "127.0.0.1/32",
        "acl: { clients: { allow: [198.51.100.0/24] } }\n",
    );
    let denied: SocketAddr = CLIENT.parse().unwrap();
    let mut c = Ctrl::from_stream(balancer(proxy.addr, &v1(denied, proxy.addr), 1024));
    assert_eq!(c.reply().code, 421, "192.0.2.7 is not in acl.clients");
    let allowed: SocketAddr = "198.51.100.20:5000".parse().unwrap();
    let mut c = Ctrl::from_stream(balancer(proxy.addr, &v1(allowed, proxy.addr), 1024));
    assert_eq!(c.reply().code, 220, "198.51.100.20 is");
    c.expect("QUIT", 221);
    proxy.stop(&rt);
}

#[test]
fn local_is_answered_and_bad_headers_are_closed() {
    let _dog = Watchdog::new("proxy_bad", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let extra = "timeouts: { connect: 2s, banner: 2s, data_accept: 5s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n";
    let proxy = gate(&rt, unftp.addr, &ports, "127.0.0.1/32", extra);
    // LOCAL: the balancer's health check, answered from the readiness and closed.
    let mut s = balancer(
        proxy.addr,
        &ftpgate::proxy_proto::local(ProxyVersion::V2),
        1024,
    );
    let mut text = String::new();
    s.read_to_string(&mut text).expect("answer");
    assert!(text.starts_with("220 "), "{text:?}");
    let mut s = balancer(proxy.addr, b"PROXY UNKNOWN\r\n", 1024);
    let mut line = [0u8; 4];
    s.read_exact(&mut line).expect("greeting");
    assert_eq!(&line, b"220 ", "UNKNOWN: the connection's own addresses");
    drop(s);
    // No header, a malformed one, an oversized one, a truncated one, a UDP one.
    let client: SocketAddr = CLIENT.parse().unwrap();
    let mut datagram = encode(ProxyVersion::V2, client, proxy.addr);
    datagram[13] = 0x12; // AF_INET, DGRAM
    let mut huge = ftpgate::proxy_proto::frame::V2_SIGNATURE.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0x40, 0x00]);
    for (what, bytes) in [
        ("an FTP command", b"USER anonymous\r\n".to_vec()),
        ("a malformed v1", b"PROXY TCP4 192.0.2.7 x 1 2\r\n".to_vec()),
        (
            "a v1 without its end",
            format!("PROXY TCP4 {}", "9".repeat(120)).into_bytes(),
        ),
        ("a v2 beyond the cap", huge),
        ("a datagram header", datagram),
    ] {
        assert!(
            closed_without_service(balancer(proxy.addr, &bytes, 1024)),
            "{what}"
        );
    }
    // Nothing at all: closed at the banner deadline.
    let started = std::time::Instant::now();
    assert!(closed_without_service(balancer(proxy.addr, b"", 1024)));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        proxy.metrics.sessions_refused.get() >= 6,
        "{}",
        proxy.metrics.sessions_refused.get()
    );
    proxy.stop(&rt);
}

#[test]
fn an_untrusted_peer_sending_a_header_is_closed() {
    let _dog = Watchdog::new("proxy_untrusted", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    // Only 127.0.0.2 is a balancer; clients from 127.0.0.1 speak FTP directly.
    let proxy = gate(&rt, unftp.addr, &ports, "127.0.0.2/32", "");
    let client: SocketAddr = CLIENT.parse().unwrap();
    for header in [
        v1(client, proxy.addr),
        encode(ProxyVersion::V2, client, proxy.addr),
    ] {
        let mut c = Ctrl::connect(proxy.addr);
        assert_eq!(c.reply().code, 220);
        c.send_bytes(&header);
        c.expect_eof();
    }
    // Without a header, a direct client is served as usual.
    let mut c = Ctrl::connect(proxy.addr);
    assert_eq!(c.reply().code, 220);
    c.login();
    c.expect("QUIT", 221);
    // And the balancer's address must send one.
    let s = common::connect_from(IpAddr::from([127, 0, 0, 2]), proxy.addr).expect("from .2");
    let mut c = Ctrl::from_stream(s);
    c.send("USER anonymous");
    c.expect_eof();
    proxy.stop(&rt);
}

/// A server that reads one PROXY header the way ftpgate's reader does, records what it
/// declares, then greets and refuses the login.
fn recording_server(
    rt: &tokio::runtime::Runtime,
) -> (SocketAddr, Arc<Mutex<Vec<ftpgate::proxy_proto::Declared>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let sink = Arc::clone(&sink);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                if let Ok(d) = ftpgate::proxy_proto::read(&mut s, deadline).await {
                    sink.lock().expect("seen").push(d);
                }
                let _ = s.write_all(b"220 recording\r\n").await;
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"421 bye\r\n").await;
            });
        }
    });
    (addr, seen)
}

#[test]
fn route_proxy_protocol_names_the_real_client_and_the_listener() {
    let _dog = Watchdog::new("proxy_out", Duration::from_secs(60));
    let rt = runtime();
    let ports = Ports::new();
    for version in ["v1", "v2"] {
        let (upstream, seen) = recording_server(&rt);
        let yaml = proxy_yaml(upstream, &ports, "passive", "").replace(
            "kind: fixed,",
            &format!("kind: fixed, proxy_protocol: {version},"),
        );
        let proxy = start_proxy_yaml(&rt, &yaml);
        let s = common::connect_from(IpAddr::from([127, 0, 0, 5]), proxy.addr).expect("connect");
        let local = s.local_addr().expect("local");
        let mut c = Ctrl::from_stream(s);
        assert_eq!(c.reply().code, 220, "{version}");
        c.send("USER x");
        let _ = c.reply();
        let seen = seen.lock().expect("seen").clone();
        assert_eq!(
            seen,
            vec![ftpgate::proxy_proto::Declared::Proxy {
                source: local,
                destination: proxy.addr
            }],
            "{version}: the header names the real client and the listener"
        );
        drop(c);
        proxy.stop(&rt);
    }
}

#[test]
fn route_proxy_protocol_against_libunftp_in_its_proxy_mode() {
    let _dog = Watchdog::new("proxy_unftp", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    // libunftp in PROXY mode serves a control connection only behind a header whose
    // destination port is its "external control port": here ftpgate's listener port,
    // fixed from this test's range. Without the header it never greets. libunftp 0.24
    // reads v1 only (up to the first LF); v2 is checked by the recording server above.
    for (version, gate_port, unftp_port) in [
        (Some("v1"), ports.unftp.end() - 3, ports.unftp.end() - 2),
        (None, ports.unftp.end() - 1, *ports.unftp.end()),
    ] {
        let root = dir.path().to_path_buf();
        let server = libunftp::ServerBuilder::new(Box::new(move || {
            unftp_sbe_fs::Filesystem::new(root.clone()).expect("root")
        }))
        .proxy_protocol_mode(gate_port)
        .passive_ports(*ports.unftp.start()..=ports.unftp.end() - 4)
        .build()
        .expect("libunftp");
        rt.spawn(server.listen(format!("127.0.0.1:{unftp_port}")));
        let upstream: SocketAddr = format!("127.0.0.1:{unftp_port}").parse().unwrap();
        wait_until("libunftp listening", Duration::from_secs(5), || {
            TcpStream::connect(upstream).is_ok()
        });
        let mut yaml = proxy_yaml(upstream, &ports, "passive", "")
            .replace("bind: 127.0.0.1:0", &format!("bind: 127.0.0.1:{gate_port}"))
            .replace("banner: 5s", "banner: 2s");
        if let Some(v) = version {
            yaml = yaml.replace(
                "kind: fixed,",
                &format!("kind: fixed, proxy_protocol: {v},"),
            );
        }
        let proxy = start_proxy_yaml(&rt, &yaml);
        let mut c = Ctrl::connect(proxy.addr);
        let greeting = c.reply();
        match version {
            Some(v) => {
                assert_eq!(greeting.code, 220, "{v}: {greeting:?}");
                c.login();
                assert_eq!(c.cmd("PWD").code, 257, "{v}");
                c.expect("QUIT", 221);
            }
            // The negative control: no header, no service.
            None => assert_eq!(greeting.code, 421, "{greeting:?}"),
        }
        drop(c);
        proxy.stop(&rt);
    }
}
