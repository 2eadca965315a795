//! FTPS through ftpgate (RFC 4217), against libunftp with FTPS and suppaftp over rustls.
//!
//! The matrix: every combination of plain and TLS on the two legs (plain client to an
//! FTPS server, the legacy-client case; an FTPS client to a plain server; FTPS on both;
//! PROT P on one leg and clear on the other) x client passive/active x `server_mode`
//! passive/active, each cell running RETR, STOR and LIST with SHA-256 end to end (uploads
//! as found on the server's disk). TLS client legs run with `require_reuse: true`, so
//! every cell also proves that the client's data connections resumed its control session.
//!
//! Then the rules that keep TLS from being abused: `required` and `data: required`
//! listeners, `require_reuse` refusing a data connection that did not resume, server
//! certificates that do not verify, bytes injected after AUTH from either side, and TLS
//! data streams that end without close_notify (a scripted TLS server and a hand-made TLS
//! data connection: real peers do not truncate on purpose).

mod common;

use common::tls::*;
use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    Plain,
    /// TLS, PROT P.
    Private,
    /// TLS control, PROT C data.
    Clear,
}

fn range(r: &std::ops::RangeInclusive<u16>) -> String {
    format!("{}-{}", r.start(), r.end())
}

/// An ftpgate in front of `upstream` with the given `listeners[0].tls` and `route.tls`
/// flow maps (empty: off).
fn yaml(
    upstream: SocketAddr,
    ports: &Ports,
    server_mode: &str,
    listener_tls: &str,
    route_tls: &str,
) -> String {
    let ltls = if listener_tls.is_empty() {
        String::new()
    } else {
        format!("    tls: {{ {listener_tls} }}\n")
    };
    let rtls = if route_tls.is_empty() {
        String::new()
    } else {
        format!(", tls: {{ {route_tls} }}")
    };
    format!(
        "listeners:\n  - name: t\n    bind: 127.0.0.1:0\n    route: {{ kind: fixed, upstreams: [\"{upstream}\"]{rtls} }}\n{ltls}\
         data: {{ passive_ports: {}, server_active_ports: {}, server_mode: {server_mode} }}\n\
         timeouts: {{ connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, shutdown_grace: 2s, tls_handshake: 3s }}\n",
        range(&ports.proxy_passive),
        range(&ports.proxy_active),
    )
}

/// What every test here starts with: a watchdog, a runtime, a PKI, a server root and
/// data ports of its own.
struct Rig {
    _dog: Watchdog,
    rt: tokio::runtime::Runtime,
    pki: Pki,
    dir: tempfile::TempDir,
    ports: Ports,
}

impl Rig {
    /// libunftp without TLS on this rig's root.
    fn plain_server(&self) -> Unftp {
        start_unftp(&self.rt, self.dir.path(), self.ports.unftp.clone())
    }

    /// libunftp with FTPS (`required`: on control and data) on this rig's root.
    fn ftps_server(&self, required: bool) -> Unftp {
        start_unftp_tls(
            &self.rt,
            self.dir.path(),
            self.ports.unftp.clone(),
            &self.pki,
            required,
        )
    }

    /// ftpgate (server_mode passive) in front of `upstream` with these `tls` sections.
    fn proxy(&self, upstream: SocketAddr, listener_tls: &str, route_tls: &str) -> Proxy {
        start_proxy_yaml(
            &self.rt,
            &yaml(upstream, &self.ports, "passive", listener_tls, route_tls),
        )
    }

    fn new(name: &'static str, secs: u64) -> Rig {
        Rig {
            _dog: Watchdog::new(name, Duration::from_secs(secs)),
            rt: runtime(),
            pki: Pki::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            ports: Ports::new(),
        }
    }
}

fn versions(v12_only: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    if v12_only {
        &TLS12_ONLY
    } else {
        rustls::DEFAULT_VERSIONS
    }
}

/// One cell of the matrix.
fn cell(
    name: &'static str,
    client: Leg,
    server: Leg,
    mode: suppaftp::Mode,
    server_mode: &str,
    v12_only: bool,
) {
    let rig = Rig::new(name, 60);
    let Rig {
        rt,
        pki,
        dir,
        ports,
        ..
    } = &rig;
    let unftp = match server {
        Leg::Plain => start_unftp(rt, dir.path(), ports.unftp.clone()),
        Leg::Private => rig.ftps_server(true),
        Leg::Clear => rig.ftps_server(false),
    };
    let max = if v12_only {
        ", max_version: \"1.2\""
    } else {
        ""
    };
    let listener_tls = match client {
        Leg::Plain => String::new(),
        _ => format!("mode: explicit, {}, require_reuse: true{max}", pki.files()),
    };
    let route_tls = match server {
        Leg::Plain => String::new(),
        Leg::Private => format!(
            "mode: explicit, ca: {}, data: private{max}",
            pki.ca.display()
        ),
        Leg::Clear => format!("mode: explicit, ca: {}, data: clear{max}", pki.ca.display()),
    };
    let proxy = start_proxy_yaml(
        rt,
        &yaml(unftp.addr, ports, server_mode, &listener_tls, &route_tls),
    );
    let config = client_config(&pki.ca, versions(v12_only));
    let mut c: Box<dyn FtpOps> = match client {
        Leg::Plain => Box::new(suppaftp_client(proxy.addr, mode)),
        Leg::Private => Box::new(tls_client(proxy.addr, mode, config, true)),
        // suppaftp wraps every data connection in TLS once the control is: PROT C
        // needs the raw client.
        Leg::Clear => {
            let mut c = TlsCtrl::explicit(proxy.addr, config);
            c.clear_data();
            c.active = mode == suppaftp::Mode::Active;
            c.login();
            Box::new(c)
        }
    };

    let (down, down_sum) = random_file(2 * 1024 * 1024 + 4321);
    std::fs::write(dir.path().join("down.bin"), &down).expect("write down.bin");
    let got = c.retr("down.bin");
    assert_eq!(got.len(), down.len(), "{name}: RETR length");
    assert_eq!(sha256_hex(&got), down_sum, "{name}: RETR sha256");

    let (up, up_sum) = random_file(2 * 1024 * 1024 + 999);
    c.stor("up.bin", &up);
    assert_disk_file(&dir.path().join("up.bin"), &up_sum, "STOR");

    let list = c.list();
    for f in ["down.bin", "up.bin"] {
        assert!(list.contains(f), "{name}: LIST lacks {f}: {list}");
    }
    c.stor("empty.bin", b"");
    assert_disk_file(
        &dir.path().join("empty.bin"),
        &sha256_hex(b""),
        "empty STOR",
    );
    c.quit();
    assert_eq!(
        proxy.metrics.transfers_total.get(),
        4,
        "{name}: data transfers"
    );
    assert_eq!(
        proxy.metrics.transfers_failed.get(),
        0,
        "{name}: failed transfers"
    );
    proxy.stop(rt);
}

macro_rules! cells {
    ($($name:ident: $client:ident -> $server:ident, $mode:ident, $server_mode:literal;)*) => {
        $(
            #[test]
            fn $name() {
                cell(stringify!($name), Leg::$client, Leg::$server, suppaftp::Mode::$mode, $server_mode, false);
            }
        )*
    };
}

cells! {
    plain_to_ftps_pasv_spasv: Plain -> Private, Passive, "passive";
    plain_to_ftps_pasv_sactive: Plain -> Private, Passive, "active";
    plain_to_ftps_port_spasv: Plain -> Private, Active, "passive";
    plain_to_ftps_port_sactive: Plain -> Private, Active, "active";
    ftps_to_plain_pasv_spasv: Private -> Plain, Passive, "passive";
    ftps_to_plain_pasv_sactive: Private -> Plain, Passive, "active";
    ftps_to_plain_port_spasv: Private -> Plain, Active, "passive";
    ftps_to_plain_port_sactive: Private -> Plain, Active, "active";
    ftps_to_ftps_pasv_spasv: Private -> Private, Passive, "passive";
    ftps_to_ftps_pasv_sactive: Private -> Private, Passive, "active";
    ftps_to_ftps_port_spasv: Private -> Private, Active, "passive";
    ftps_to_ftps_port_sactive: Private -> Private, Active, "active";
    prot_c_client_to_prot_p_server_pasv_spasv: Clear -> Private, Passive, "passive";
    prot_c_client_to_prot_p_server_port_sactive: Clear -> Private, Active, "active";
    prot_p_client_to_prot_c_server_pasv_spasv: Private -> Clear, Passive, "passive";
    prot_p_client_to_prot_c_server_port_sactive: Private -> Clear, Active, "active";
    ftps_epsv_to_ftps_spasv: Private -> Private, ExtendedPassive, "passive";
}

#[test]
fn ftps_to_ftps_tls12_only() {
    cell(
        "ftps_to_ftps_tls12_only",
        Leg::Private,
        Leg::Private,
        suppaftp::Mode::Passive,
        "passive",
        true,
    );
}

#[test]
fn implicit_listener_to_ftps_server() {
    let rig = Rig::new("implicit", 60);
    let Rig { rt, pki, dir, .. } = &rig;
    let unftp = rig.ftps_server(true);
    let proxy = rig.proxy(
        unftp.addr,
        &format!("mode: implicit, {}, require_reuse: true", pki.files()),
        &format!("mode: explicit, ca: {}", pki.ca.display()),
    );
    let mut c = implicit_client(
        proxy.addr,
        suppaftp::Mode::Passive,
        client_config(&pki.ca, versions(false)),
    );
    let (down, sum) = random_file(1024 * 1024 + 7);
    std::fs::write(dir.path().join("f.bin"), &down).expect("write");
    assert_eq!(
        sha256_hex(&FtpOps::retr(&mut c, "f.bin")),
        sum,
        "implicit RETR"
    );
    FtpOps::stor(&mut c, "g.bin", &down);
    assert_disk_file(&dir.path().join("g.bin"), &sum, "implicit STOR");
    Box::new(c).quit();
    proxy.stop(rt);
}

// ---------------------------------------------------------------------------------------
// Policy on the client leg

/// Lines a scripted server received, for "nothing reached the server".
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn recording_answer(line: &str) -> Option<String> {
    SEEN.lock().expect("seen").push(line.to_string());
    Some(match line.split(' ').next().unwrap_or("") {
        "USER" => "331 pw".into(),
        "PASS" => "230 in".into(),
        "QUIT" => "221 bye".into(),
        _ => "200 ok".into(),
    })
}

#[test]
fn required_listener_lets_nothing_through_before_auth() {
    let rig = Rig::new("required", 30);
    let Rig { rt, pki, .. } = &rig;
    let fake = start_fake_server(rt, recording_answer);
    let proxy = rig.proxy(fake, &format!("mode: required, {}", pki.files()), "");
    let mut c = Ctrl::connect(proxy.addr);
    assert_eq!(c.reply().code, 220);
    let r = c.cmd("USER secret-user");
    assert_eq!(r.code, 530, "USER before AUTH: {r:?}");
    assert!(r.text().contains("TLS"), "the reason names TLS: {r:?}");
    assert_eq!(c.cmd("PASS secret-password").code, 530);
    assert_eq!(c.cmd("SYST").code, 534);
    assert_eq!(c.cmd("PBSZ 0").code, 503, "PBSZ before AUTH");
    let feat = c.cmd("FEAT");
    assert_eq!(feat.code, 211);
    assert!(
        feat.text().contains(" AUTH TLS"),
        "FEAT offers AUTH TLS: {feat:?}"
    );
    c.expect("QUIT", 221);
    drop(c);
    let seen = SEEN.lock().expect("seen").clone();
    assert!(
        seen.is_empty(),
        "the server received {seen:?} before any AUTH"
    );
    proxy.stop(rt);
}

#[test]
fn data_required_refuses_data_commands_until_prot_p() {
    let rig = Rig::new("data required", 30);
    let Rig { rt, pki, dir, .. } = &rig;
    let unftp = rig.plain_server();
    let proxy = rig.proxy(
        unftp.addr,
        &format!("mode: explicit, {}, data: required", pki.files()),
        "",
    );
    let mut c = tls_client(
        proxy.addr,
        suppaftp::Mode::Passive,
        client_config(&pki.ca, versions(false)),
        false,
    );
    match c.custom_command("PASV", &[suppaftp::Status::PassiveMode]) {
        Err(suppaftp::FtpError::UnexpectedResponse(r)) => {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            assert!(body.starts_with("521"), "PASV under PROT C: {body}")
        }
        other => panic!("PASV under PROT C on a data: required listener: {other:?}"),
    }
    c.custom_command("PROT P", &[suppaftp::Status::CommandOk])
        .expect("PROT P");
    std::fs::write(dir.path().join("f.bin"), b"protected").expect("write");
    assert_eq!(FtpOps::retr(&mut c, "f.bin"), b"protected");
    Box::new(c).quit();
    proxy.stop(rt);
}

#[test]
fn require_reuse_refuses_a_data_connection_that_did_not_resume() {
    let rig = Rig::new("require_reuse", 30);
    let Rig { rt, pki, dir, .. } = &rig;
    let unftp = rig.plain_server();
    let proxy = rig.proxy(
        unftp.addr,
        &format!("mode: explicit, {}, require_reuse: true", pki.files()),
        "",
    );
    std::fs::write(dir.path().join("f.bin"), b"data").expect("write");
    // A client that never resumes: every data connection is a full handshake.
    let mut config = (*client_config(&pki.ca, versions(false))).clone();
    config.resumption = rustls::client::Resumption::disabled();
    let mut c = tls_client(proxy.addr, suppaftp::Mode::Passive, Arc::new(config), true);
    let err = c
        .retr_as_buffer("f.bin")
        .expect_err("RETR without resumption");
    let text = format!("{err:?}");
    assert!(
        text.contains("425") || text.contains("Connection"),
        "refused, not relayed: {text}"
    );
    // The session itself goes on.
    c.noop().expect("NOOP after the refused transfer");
    drop(c);
    // A client that resumes is served (the matrix cells do this for every transfer).
    let mut c = tls_client(
        proxy.addr,
        suppaftp::Mode::Passive,
        client_config(&pki.ca, versions(false)),
        true,
    );
    assert_eq!(FtpOps::retr(&mut c, "f.bin"), b"data");
    Box::new(c).quit();
    wait_until("one failed transfer", Duration::from_secs(5), || {
        proxy.metrics.transfers_failed.get() == 1
    });
    proxy.stop(rt);
}

#[test]
fn bytes_pipelined_after_auth_close_the_session() {
    let rig = Rig::new("pipelined AUTH", 30);
    let Rig { rt, pki, .. } = &rig;
    let fake = start_fake_server(rt, |_| Some("200 ok".into()));
    let proxy = rig.proxy(fake, &format!("mode: explicit, {}", pki.files()), "");
    let mut c = Ctrl::connect(proxy.addr);
    assert_eq!(c.reply().code, 220);
    c.send_bytes(b"AUTH TLS\r\nUSER injected\r\n");
    assert_eq!(c.reply().code, 421);
    c.expect_eof();
    proxy.stop(rt);
}

// ---------------------------------------------------------------------------------------
// The server leg

fn greeting_of(proxy: &Proxy) -> Reply {
    let mut c = Ctrl::connect(proxy.addr);
    c.reply()
}

#[test]
fn a_server_certificate_that_does_not_verify_gets_421_before_any_login() {
    let rig = Rig::new("verify", 30);
    let Rig { rt, pki, .. } = &rig;
    let unftp = rig.ftps_server(true);
    // Signed by a CA ftpgate does not trust.
    let proxy = rig.proxy(
        unftp.addr,
        "",
        &format!("mode: explicit, ca: {}", pki.other_ca.display()),
    );
    let r = greeting_of(&proxy);
    assert_eq!(r.code, 421, "untrusted server: {r:?}");
    assert!(r.text().contains("not trusted"), "{r:?}");
    proxy.stop(rt);
    // Trusted, but not for the name ftpgate checks.
    let proxy = rig.proxy(
        unftp.addr,
        "",
        &format!(
            "mode: explicit, ca: {}, server_name: ftp.example.net",
            pki.ca.display()
        ),
    );
    let r = greeting_of(&proxy);
    assert_eq!(r.code, 421, "wrong name: {r:?}");
    assert!(r.text().contains("does not match its name"), "{r:?}");
    proxy.stop(rt);
}

#[test]
fn a_server_refusing_auth_gets_the_client_421_and_no_credentials_are_sent() {
    let rig = Rig::new("AUTH refused", 30);
    let Rig { rt, .. } = &rig;
    let fake = start_fake_server(rt, |l| {
        if l.starts_with("AUTH") {
            Some("502 no TLS here".into())
        } else {
            panic!("the server received {l:?} after refusing AUTH")
        }
    });
    let proxy = rig.proxy(fake, "", "mode: explicit, verify: false");
    let r = greeting_of(&proxy);
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().contains("does not offer TLS"), "{r:?}");
    proxy.stop(rt);
}

#[test]
fn bytes_after_the_servers_234_close_the_session() {
    let rig = Rig::new("server injection", 30);
    let Rig { rt, .. } = &rig;
    // "234" and an injected reply in one write, before any handshake.
    let fake = start_fake_server(rt, |l| {
        l.starts_with("AUTH")
            .then(|| "234 go\r\n230 injected".into())
    });
    let proxy = rig.proxy(fake, "", "mode: explicit, verify: false");
    let r = greeting_of(&proxy);
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().contains("before the TLS handshake"), "{r:?}");
    proxy.stop(rt);
}

// ---------------------------------------------------------------------------------------
// Truncation: a TLS data stream without close_notify is never a complete file

/// A scripted explicit-FTPS server whose RETR sends `len` bytes over TLS and then closes
/// the TCP connection without close_notify, and still says 226.
fn start_truncating_server(rt: &tokio::runtime::Runtime, pki: &Pki, len: usize) -> SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio_rustls::TlsAcceptor;
    let config = {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(&pki.cert)
            .expect("cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("cert pem");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&pki.key).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config")
    };
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        let Ok((mut tcp, _)) = listener.accept().await else {
            return;
        };
        let _ = tcp.write_all(b"220 truncating\r\n").await;
        let mut rd = BufReader::new(tcp);
        let mut line = String::new();
        let _ = rd.read_line(&mut line).await; // AUTH TLS
        let _ = rd.get_mut().write_all(b"234 go\r\n").await;
        let Ok(tls) = acceptor.accept(rd.into_inner()).await else {
            return;
        };
        let mut ctl = BufReader::new(tls);
        let mut data_listener: Option<tokio::net::TcpListener> = None;
        loop {
            line.clear();
            if ctl.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let reply: String = match verb.as_str() {
                "USER" => "331 pw".into(),
                "PASS" => "230 in".into(),
                "PASV" => {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("data bind");
                    let p = l.local_addr().expect("data addr").port();
                    data_listener = Some(l);
                    format!(
                        "227 Entering Passive Mode (127,0,0,1,{},{})",
                        p >> 8,
                        p & 0xff
                    )
                }
                "RETR" => {
                    let _ = ctl.get_mut().write_all(b"150 here\r\n").await;
                    let Some(l) = data_listener.take() else {
                        return;
                    };
                    let Ok((d, _)) = l.accept().await else { return };
                    let Ok(mut d) = acceptor.accept(d).await else {
                        return;
                    };
                    let _ = d.write_all(&vec![7u8; len]).await;
                    let _ = d.flush().await;
                    // Close the TCP connection under TLS: FIN, no close_notify.
                    let (tcp, _) = d.into_inner();
                    drop(tcp);
                    "226 done (but the data was cut)".into()
                }
                "QUIT" => "221 bye".into(),
                _ => "200 ok".into(),
            };
            if ctl
                .get_mut()
                .write_all(format!("{reply}\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    addr
}

#[test]
fn a_server_tls_stream_without_close_notify_is_426_never_226() {
    let rig = Rig::new("server truncation", 30);
    let Rig { rt, pki, .. } = &rig;
    let server = start_truncating_server(rt, pki, 300_000);
    let proxy = rig.proxy(
        server,
        "",
        &format!("mode: explicit, ca: {}", pki.ca.display()),
    );
    let mut c = RawFtp::login(proxy.addr, DataMode::Pasv);
    let (r, mut data) = c.open("RETR f");
    assert_eq!(r.code, 150);
    let mut got = Vec::new();
    let _ = data.read_to_end(&mut got);
    let fin = c.ctrl.reply();
    assert_eq!(
        fin.code, 426,
        "a TLS stream cut without close_notify: {fin:?}"
    );
    assert!(fin.text().contains("close_notify"), "{fin:?}");
    c.quit();
    proxy.stop(rt);
}

#[test]
fn a_client_tls_upload_without_close_notify_is_not_stored_as_complete() {
    let rig = Rig::new("client truncation", 30);
    let Rig { rt, pki, .. } = &rig;
    let unftp = rig.plain_server();
    let proxy = rig.proxy(unftp.addr, &format!("mode: explicit, {}", pki.files()), "");
    let mut c = TlsCtrl::explicit(proxy.addr, client_config(&pki.ca, versions(false)));
    c.login();
    let tcp = c.pasv();
    c.send("STOR cut.bin");
    let mut data = c.secure_data(tcp);
    data.write_all(&vec![9u8; 200_000]).expect("upload bytes");
    data.flush().expect("flush");
    // End the TCP connection under TLS: FIN without close_notify.
    data.sock
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut codes = vec![c.reply().0];
    if codes[0] < 200 {
        codes.push(c.reply().0);
    }
    let last = *codes.last().expect("a reply");
    assert!(
        matches!(last, 426 | 451),
        "a cut TLS upload must fail: replies {codes:?}"
    );
    drop(data);
    assert_eq!(c.cmd("NOOP").0, 200, "the session goes on");
    drop(c);
    proxy.stop(rt);
}

// ---------------------------------------------------------------------------------------
// Handshakes are bounded

#[test]
fn plaintext_on_an_implicit_listener_and_tls_on_a_plain_one_are_closed_in_time() {
    let rig = Rig::new("handshake bounds", 30);
    let Rig { rt, pki, .. } = &rig;
    let unftp = rig.plain_server();
    // A plaintext client on an implicit listener waits for a greeting that never comes;
    // ftpgate gives up after tls_handshake (3 s here).
    let proxy = rig.proxy(unftp.addr, &format!("mode: implicit, {}", pki.files()), "");
    let started = std::time::Instant::now();
    let mut s = std::net::TcpStream::connect(proxy.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "a plaintext client on an implicit listener gets nothing"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "closed within the handshake deadline"
    );
    proxy.stop(rt);
    // An implicit client (TLS first) on a plaintext listener: closed at once.
    let proxy = rig.proxy(unftp.addr, "", "");
    let config = client_config(&pki.ca, versions(false));
    let tcp = std::net::TcpStream::connect(proxy.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(config, name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let started = std::time::Instant::now();
    let r = tls.read(&mut buf);
    assert!(
        r.is_err() || r.is_ok_and(|n| n == 0),
        "no TLS on a plaintext listener"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed at once, not at a timeout"
    );
    proxy.stop(rt);
}

// ---------------------------------------------------------------------------------------
// RFC 4217 over a real session

#[test]
fn rfc_4217_order_and_refusals_on_a_real_session() {
    let rig = Rig::new("rfc 4217", 30);
    let Rig { pki, .. } = &rig;
    let unftp = rig.plain_server();
    let proxy = rig.proxy(unftp.addr, &format!("mode: explicit, {}", pki.files()), "");
    // Before AUTH: PBSZ and PROT are out of order.
    let mut c = Ctrl::connect(proxy.addr);
    assert_eq!(c.reply().code, 220);
    assert_eq!(c.cmd("PBSZ 0").code, 503, "PBSZ before AUTH");
    assert_eq!(c.cmd("PROT P").code, 503, "PROT before AUTH");
    assert_eq!(c.cmd("AUTH GSSAPI").code, 504, "an unknown mechanism");
    // curl's first try: AUTH SSL, accepted as TLS.
    assert_eq!(c.cmd("AUTH SSL").code, 234, "AUTH SSL");
    drop(c);
    // Over TLS (TlsCtrl sends AUTH TLS, PBSZ 0, PROT P and checks their 234/200/200).
    let mut c = TlsCtrl::explicit(proxy.addr, client_config(&pki.ca, versions(false)));
    assert_eq!(c.cmd("AUTH TLS").0, 503, "a second AUTH");
    assert_eq!(c.cmd("PROT S").0, 536, "PROT S");
    assert_eq!(c.cmd("PROT E").0, 536, "PROT E");
    assert_eq!(c.cmd("PROT X").0, 504, "an unknown level");
    assert_eq!(c.cmd("CCC").0, 534, "CCC");
    let (code, text) = c.cmd("FEAT");
    assert_eq!(code, 211);
    for f in [" AUTH TLS", " PBSZ", " PROT"] {
        assert!(text.contains(f), "FEAT lacks {f}: {text}");
    }
    c.login();
    let (code, _) = c.cmd("REIN");
    assert_eq!(code, 421, "REIN on a TLS session closes it");
    drop(c);
    // FEAT on a listener without TLS offers none of it.
    let proxy2 = rig.proxy(unftp.addr, "", "");
    let mut c = Ctrl::connect(proxy2.addr);
    assert_eq!(c.reply().code, 220);
    let feat = c.cmd("FEAT");
    assert!(!feat.text().contains("AUTH"), "{feat:?}");
    assert_eq!(c.cmd("AUTH TLS").code, 502);
    drop(c);
    proxy.stop(&rig.rt);
    proxy2.stop(&rig.rt);
}

#[test]
fn route_tls_implicit_sends_pbsz_and_prot_and_protects_the_data() {
    // The implicit FTPS server here is a second ftpgate (libunftp has no implicit mode)
    // whose listener refuses clear data (data: required): if the route did not send
    // PROT P, every transfer would be refused there.
    let rig = Rig::new("route implicit", 30);
    let Rig { pki, dir, .. } = &rig;
    let unftp = rig.plain_server();
    let implicit = rig.proxy(
        unftp.addr,
        &format!(
            "mode: implicit, {}, data: required, require_reuse: true",
            pki.files()
        ),
        "",
    );
    let front = start_proxy_yaml(
        &rig.rt,
        &yaml(
            implicit.addr,
            &Ports::new(),
            "passive",
            "",
            &format!("mode: implicit, ca: {}, data: private", pki.ca.display()),
        ),
    );
    let mut c = suppaftp_client(front.addr, suppaftp::Mode::Passive);
    let (bytes, sum) = random_file(1024 * 1024 + 3);
    std::fs::write(dir.path().join("f.bin"), &bytes).expect("write");
    assert_eq!(sha256_hex(&FtpOps::retr(&mut c, "f.bin")), sum, "RETR");
    FtpOps::stor(&mut c, "g.bin", &bytes);
    assert_disk_file(&dir.path().join("g.bin"), &sum, "STOR");
    Box::new(c).quit();
    assert_eq!(
        implicit.metrics.transfers_failed.get(),
        0,
        "refused clear data"
    );
    front.stop(&rig.rt);
    implicit.stop(&rig.rt);
}

// ---------------------------------------------------------------------------------------
// Mutual TLS and the forward proxy

#[test]
fn mutual_tls_to_the_server_uses_the_routes_client_certificate() {
    let rig = Rig::new("mtls", 30);
    let Rig {
        rt,
        pki,
        dir,
        ports,
        ..
    } = &rig;
    let tls = UnftpTls {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
        required: true,
        client_ca: Some(pki.ca.clone()),
    };
    let mut unftp = start_unftp_with(rt, dir.path(), ports.unftp.clone(), Some(tls));
    unftp.addr = auth_shim(rt, unftp.addr);
    // Without a client certificate the server ends the handshake: 421, nothing sent.
    let bare = rig.proxy(
        unftp.addr,
        "",
        &format!("mode: explicit, ca: {}", pki.ca.display()),
    );
    let r = greeting_of(&bare);
    assert_eq!(r.code, 421, "no client certificate: {r:?}");
    bare.stop(rt);
    let proxy = rig.proxy(
        unftp.addr,
        "",
        &format!(
            "mode: explicit, ca: {}, client_cert: {}, client_key: {}",
            pki.ca.display(),
            pki.cert.display(),
            pki.key.display()
        ),
    );
    // The server knows ftpgate by its certificate: USER is answered 232 (RFC 2228),
    // which suppaftp does not take, so the raw client logs in.
    let mut ctrl = Ctrl::connect(proxy.addr);
    assert_eq!(ctrl.reply().code, 220);
    let r = ctrl.cmd("USER anonymous");
    assert!(matches!(r.code, 232 | 331), "USER over mutual TLS: {r:?}");
    if r.code == 331 {
        ctrl.expect("PASS x@example.com", 230);
    }
    ctrl.expect("TYPE I", 200);
    let mut c = RawFtp {
        ctrl,
        mode: DataMode::Pasv,
    };
    let (bytes, sum) = random_file(512 * 1024 + 1);
    std::fs::write(dir.path().join("f.bin"), &bytes).expect("write");
    assert_eq!(
        sha256_hex(&FtpOps::retr(&mut c, "f.bin")),
        sum,
        "RETR over mutual TLS"
    );
    FtpOps::stor(&mut c, "g.bin", &bytes);
    assert_disk_file(&dir.path().join("g.bin"), &sum, "STOR over mutual TLS");
    c.quit();
    proxy.stop(rt);
}

#[test]
fn forward_proxy_match_client_secures_the_server_exactly_for_tls_clients() {
    let rig = Rig::new("forward match_client", 30);
    let Rig {
        rt,
        pki,
        dir,
        ports,
        ..
    } = &rig;
    let unftp = rig.ftps_server(true);
    let yaml = format!(
        "listeners:\n  - name: fwd\n    bind: 127.0.0.1:0\n    tls: {{ mode: explicit, {}, require_reuse: true }}\n    route: {{ kind: user_at_host, tls: {{ mode: match_client, ca: {} }} }}\n    acl:\n      servers: {{ allow: [\"127.0.0.0/8\"] }}\ndata: {{ passive_ports: {}, server_active_ports: {} }}\ntimeouts: {{ connect: 2s, banner: 5s, data_accept: 5s, tls_handshake: 3s }}\n",
        pki.files(),
        pki.ca.display(),
        range(&ports.proxy_passive),
        range(&ports.proxy_active),
    );
    let proxy = start_proxy_yaml(rt, &yaml);
    let user = format!("USER anonymous@127.0.0.1:{}", unftp.addr.port());
    // A TLS client: AUTH on ftpgate's own greeting, then the server leg follows suit.
    let mut c = TlsCtrl::explicit(proxy.addr, client_config(&pki.ca, versions(false)));
    let (code, text) = c.cmd(&user);
    assert_eq!(code, 331, "USER through a TLS server leg: {text}");
    assert_eq!(c.cmd("PASS x@example.com").0, 230, "PASS");
    assert_eq!(c.cmd("TYPE I").0, 200);
    let (bytes, sum) = random_file(300_001);
    std::fs::write(dir.path().join("f.bin"), &bytes).expect("write");
    assert_eq!(sha256_hex(&FtpOps::retr(&mut c, "f.bin")), sum, "RETR");
    FtpOps::stor(&mut c, "g.bin", &bytes);
    assert_disk_file(&dir.path().join("g.bin"), &sum, "STOR");
    Box::new(c).quit();
    // A plain client gets a plain server leg, which this FTPS-only server refuses.
    let mut p = Ctrl::connect(proxy.addr);
    assert_eq!(p.reply().code, 220);
    let r = p.cmd(&user);
    assert!(
        r.code >= 500,
        "a plain client must not get TLS added upstream: {r:?}"
    );
    drop(p);
    proxy.stop(rt);
}
