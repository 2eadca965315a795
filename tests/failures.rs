//! What ftpgate does when things go wrong: unreachable or silent upstreams, hostile or
//! malformed data-channel commands, commands before login, third parties racing for a
//! passive port, clients vanishing mid-transfer, overlong lines and the session limit.
//! Every test ends with ftpgate's gauges back at zero and a clean shutdown.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

const LOCALHOST_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A libunftp behind an ftpgate, with the runtime and temp dir they live on.
struct Setup {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    _unftp: Unftp,
    proxy: Proxy,
    _dog: Watchdog,
}

fn setup(name: &'static str, server_mode: &str, extra: &str) -> Setup {
    let dog = Watchdog::new(name, Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let proxy = start_proxy(&rt, unftp.addr, &ports, server_mode, extra);
    Setup {
        rt,
        dir,
        _unftp: unftp,
        proxy,
        _dog: dog,
    }
}

impl Setup {
    fn stop(self) {
        self.proxy.stop(&self.rt);
    }
}

#[test]
fn upstream_down_gives_421_without_internal_detail_then_eof() {
    let _dog = Watchdog::new("upstream_down", Duration::from_secs(30));
    let rt = runtime();
    let upstream = SocketAddr::from(([127, 0, 0, 1], dead_port()));
    let proxy = start_proxy(&rt, upstream, &Ports::new(), "passive", "");
    let mut c = Ctrl::connect(proxy.addr);
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    let reason = r.text();
    assert!(
        reason.contains("the FTP server cannot be reached"),
        "421 should say what failed: {reason}"
    );
    // Which upstream and the OS error are for the log only (SECURITY.md 12).
    assert!(
        !reason.contains(&upstream.ip().to_string())
            && !reason.contains(&upstream.port().to_string())
            && !reason.to_lowercase().contains("os error")
            && !reason.to_lowercase().contains("refused"),
        "421 names internal detail: {reason}"
    );
    c.expect_eof();
    assert_eq!(proxy.metrics.sessions_total.get(), 1);
    proxy.stop(&rt);
}

#[test]
fn upstream_without_banner_gives_421() {
    let _dog = Watchdog::new("upstream_without_banner", Duration::from_secs(30));
    let rt = runtime();
    let upstream = start_silent_server(&rt);
    let extra = "timeouts: { connect: 2s, banner: 500ms, data_accept: 5s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n";
    let proxy = start_proxy(&rt, upstream, &Ports::new(), "passive", extra);
    let started = std::time::Instant::now();
    let mut c = Ctrl::connect(proxy.addr);
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    assert!(
        r.text().contains("the FTP server sent no valid greeting"),
        "{r:?}"
    );
    assert!(
        !r.text().contains(&upstream.port().to_string()),
        "421 names the upstream: {r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "421 took {:?}",
        started.elapsed()
    );
    c.expect_eof();
    proxy.stop(&rt);
}

#[test]
fn port_and_eprt_targets_are_checked_before_any_connection() {
    let s = setup("port_checks", "passive", "");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Port).ctrl;

    // A foreign address (TEST-NET-2), and the FTP bounce to a privileged port.
    let r = c.expect("PORT 198,51,100,66,0,25", 501);
    assert!(r.text().contains("198.51.100.66"), "{r:?}");
    let r = c.expect("PORT 127,0,0,1,0,25", 501);
    assert!(r.text().contains("25"), "{r:?}");
    // Not a byte.
    c.expect("PORT 127,0,0,1,256,22", 501);
    // Address family other than the session's.
    let r = c.expect("EPRT |2|::1|5000|", 522);
    assert!(r.text().contains("(1)"), "{r:?}");
    // EPRT to a foreign IPv4 address.
    c.expect("EPRT |1|198.51.100.66|5000|", 501);

    // A foreign address we can watch: 127.0.0.2 is not the client (127.0.0.1). After the
    // refusal there is no plan, so the RETR gets 425, and nobody ever connects.
    let watch = TcpListener::bind((LOCALHOST_2, 0)).expect("bind 127.0.0.2");
    let p = watch.local_addr().expect("watch addr").port();
    c.expect(&format!("PORT 127,0,0,2,{},{}", p >> 8, p & 0xff), 501);
    c.expect(&format!("EPRT |1|127.0.0.2|{p}|"), 501);
    std::fs::write(s.dir.path().join("x.bin"), b"secret").expect("write x.bin");
    c.expect("RETR x.bin", 425);
    assert!(
        accept_timeout(&watch, Duration::from_millis(500)).is_err(),
        "ftpgate connected to a refused PORT target"
    );

    // The session goes on.
    c.expect("NOOP", 200);
    c.expect("QUIT", 221);
    c.expect_eof();
    assert_eq!(s.proxy.metrics.transfers_total.get(), 0);
    s.stop();
}

#[test]
fn data_commands_before_login_get_530() {
    let s = setup("before_login", "passive", "");
    let mut c = Ctrl::connect(s.proxy.addr);
    assert_eq!(c.reply().code, 220);
    for cmd in [
        "PASV",
        "EPSV",
        "PORT 127,0,0,1,200,10",
        "EPRT |1|127.0.0.1|5000|",
        "REST 10",
        "RETR x",
        "STOR x",
        "LIST",
        "NLST",
    ] {
        c.expect(cmd, 530);
    }
    assert_eq!(
        s.proxy.metrics.port_leases.get(),
        0,
        "PASV before login leased a port"
    );
    c.login();
    c.expect("PASV", 227);
    c.expect("QUIT", 221);
    c.expect_eof();
    s.stop();
}

/// A third party (127.0.0.2) connects to the passive port before the real client: ftpgate
/// closes it without a byte, and the client's RETR still gets every byte.
fn third_party_on_passive_port(name: &'static str, mode: DataMode) {
    let s = setup(name, "passive", "");
    let (bytes, sum) = random_file(512 * 1024 + 1);
    std::fs::write(s.dir.path().join("f.bin"), &bytes).expect("write f.bin");
    let mut c = RawFtp::login(s.proxy.addr, mode);
    let Prepared::Connect(target) = c.prepare() else {
        panic!("passive mode expected");
    };
    let mut intruder = connect_from(LOCALHOST_2, target).expect("third party connects");
    let data = Prepared::Connect(target).open();
    let r = c.ctrl.cmd("RETR f.bin");
    assert_eq!(r.code / 100, 1, "{r:?}");
    let mut got = Vec::new();
    let mut data = data;
    data.read_to_end(&mut got).expect("read data");
    drop(data);
    c.finish("RETR f.bin");
    assert_eq!(sha256_hex(&got), sum, "client's RETR");

    let mut stolen = Vec::new();
    let read = intruder.read_to_end(&mut stolen);
    assert!(stolen.is_empty(), "third party got {} bytes", stolen.len());
    // A clean close or a reset both mean "closed"; a timeout would mean it was kept open.
    if let Err(e) = read {
        assert_ne!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "third party left open"
        );
        assert_ne!(
            e.kind(),
            std::io::ErrorKind::TimedOut,
            "third party left open"
        );
    }
    c.quit();
    s.stop();
}

#[test]
fn third_party_on_pasv_port_is_closed_and_client_wins() {
    third_party_on_passive_port("third_party_pasv", DataMode::Pasv);
}

#[test]
fn third_party_on_epsv_port_is_closed_and_client_wins() {
    third_party_on_passive_port("third_party_epsv", DataMode::Epsv);
}

/// The client drops both connections in the middle of a large RETR: the session and its
/// transfer end, every gauge returns to zero, and the next session works.
fn client_vanishes(name: &'static str, mode: DataMode, server_mode: &str) {
    let s = setup(name, server_mode, "");
    let (big, _) = random_file(16 * 1024 * 1024);
    std::fs::write(s.dir.path().join("big.bin"), &big).expect("write big.bin");
    let mut c = RawFtp::login(s.proxy.addr, mode);
    let (_, mut data) = c.open("RETR big.bin");
    let mut first = vec![0u8; 64 * 1024];
    data.read_exact(&mut first).expect("first 64 KiB");
    assert_eq!(first, big[..first.len()], "first bytes of big.bin");
    wait_until("the transfer to be running", Duration::from_secs(5), || {
        s.proxy.metrics.transfers.get() == 1
    });
    drop(data);
    drop(c);
    wait_for_zero(&s.proxy.metrics);

    // A new session through the same ftpgate and server works.
    let mut c = RawFtp::login(s.proxy.addr, mode);
    let (small, sum) = random_file(10_000);
    std::fs::write(s.dir.path().join("small.bin"), &small).expect("write small.bin");
    assert_eq!(sha256_hex(&c.retr("small.bin")), sum);
    c.quit();
    assert_eq!(s.proxy.metrics.sessions_total.get(), 2);
    s.stop();
}

#[test]
fn client_vanishes_mid_retr_pasv_server_passive() {
    client_vanishes("vanish_pasv", DataMode::Pasv, "passive");
}

#[test]
fn client_vanishes_mid_retr_port_server_active() {
    client_vanishes("vanish_port", DataMode::Port, "active");
}

#[test]
fn overlong_command_line_gets_500_and_session_goes_on() {
    let s = setup("overlong", "passive", "");
    let mut c = Ctrl::connect(s.proxy.addr);
    assert_eq!(c.reply().code, 220);
    c.login();
    let long = vec![b'A'; 10_000];
    c.send_bytes(&long);
    let r = c.reply();
    assert_eq!(r.code, 500, "{r:?}");
    c.expect("NOOP", 200);
    // Also as a long argument of a real verb.
    let mut long = b"RETR ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 10_000));
    c.send_bytes(&long);
    assert_eq!(c.reply().code, 500);
    c.expect("NOOP", 200);
    c.expect("QUIT", 221);
    c.expect_eof();
    s.stop();
}

#[test]
fn max_sessions_refuses_the_third_client_with_421() {
    let s = setup("max_sessions", "passive", "limits: { max_sessions: 2 }\n");
    let mut a = Ctrl::connect(s.proxy.addr);
    assert_eq!(a.reply().code, 220);
    let mut b = Ctrl::connect(s.proxy.addr);
    assert_eq!(b.reply().code, 220);
    let mut c = Ctrl::connect(s.proxy.addr);
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    c.expect_eof();
    assert_eq!(s.proxy.metrics.sessions_refused.get(), 1);

    // A slot frees up when a session ends.
    a.expect("QUIT", 221);
    a.expect_eof();
    wait_until("a session slot to free up", Duration::from_secs(5), || {
        s.proxy.metrics.sessions.get() == 1
    });
    let mut d = Ctrl::connect(s.proxy.addr);
    assert_eq!(d.reply().code, 220);
    d.expect("QUIT", 221);
    b.expect("QUIT", 221);
    drop((b, d));
    s.stop();
}

#[test]
fn passive_data_connection_never_made_times_out_with_425() {
    let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 1s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n";
    let s = setup("no_data_connection", "passive", extra);
    std::fs::write(s.dir.path().join("f.bin"), b"hello").expect("write f.bin");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Pasv);
    c.prepare();
    c.ctrl.send("RETR f.bin");
    // Possibly a 150 first (the server's), then 425 from ftpgate, never 226.
    let mut r = c.ctrl.reply();
    if r.code / 100 == 1 {
        r = c.ctrl.reply();
    }
    assert_eq!(r.code, 425, "{r:?}");
    c.ctrl.expect("NOOP", 200);
    c.quit();
    assert_eq!(s.proxy.metrics.transfers_failed.get(), 1);
    s.stop();
}

#[test]
fn upload_cut_short_is_not_reported_as_success() {
    // The client sends part of a STOR then resets the data connection: whatever the
    // server says, the client must not see 226 for bytes that never arrived... unless the
    // server really got them all, which a reset mid-stream rules out.
    let s = setup("upload_cut", "passive", "");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Pasv);
    let (_, data) = c.open("STOR cut.bin");
    let sock = socket2::Socket::from(data);
    let mut w = std::net::TcpStream::from(sock.try_clone().expect("clone"));
    w.write_all(&[7u8; 100_000]).expect("partial upload");
    sock.set_linger(Some(Duration::ZERO)).expect("linger 0");
    drop(w);
    drop(sock);
    let r = c.ctrl.reply();
    assert_ne!(r.code, 226, "a reset upload was reported complete: {r:?}");
    c.ctrl.expect("NOOP", 200);
    c.quit();
    s.stop();
}

#[test]
fn port_to_a_closed_client_port_gives_425() {
    let s = setup("port_closed", "passive", "");
    std::fs::write(s.dir.path().join("f.bin"), b"hello").expect("write f.bin");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Port).ctrl;
    let p = dead_port();
    c.expect(&format!("PORT 127,0,0,1,{},{}", p >> 8, p & 0xff), 200);
    c.send("RETR f.bin");
    let mut r = c.reply();
    if r.code / 100 == 1 {
        r = c.reply();
    }
    assert_eq!(r.code, 425, "{r:?}");
    c.expect("NOOP", 200);
    c.expect("QUIT", 221);
    c.expect_eof();
    s.stop();
}

#[test]
fn repeated_pasv_holds_one_port() {
    // Three passive ports: twenty PASVs in a row only work if each drops the last.
    let dog = Watchdog::new("repeated_pasv", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new().narrow(3);
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let proxy = start_proxy(&rt, unftp.addr, &ports, "passive", "");
    let mut c = RawFtp::login(proxy.addr, DataMode::Pasv).ctrl;
    for i in 0..20 {
        let cmd = if i % 2 == 0 { "PASV" } else { "EPSV" };
        let r = c.cmd(cmd);
        assert!(r.code == 227 || r.code == 229, "{cmd} #{i}: {r:?}");
        assert_eq!(proxy.metrics.port_leases.get(), 1, "after {cmd} #{i}");
    }
    c.expect("QUIT", 221);
    c.expect_eof();
    drop((c, unftp));
    proxy.stop(&rt);
    drop(dog);
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let s = setup("pipelined", "passive", "");
    let mut c = Ctrl::connect(s.proxy.addr);
    assert_eq!(c.reply().code, 220);
    c.send_bytes(b"USER anonymous\r\nPASS x\r\nNOOP\r\nPWD\r\nPASV\r\nNOOP");
    let codes: Vec<u16> = (0..6).map(|_| c.reply().code).collect();
    assert_eq!(codes, [331, 230, 200, 257, 227, 200]);
    c.expect("QUIT", 221);
    c.expect_eof();
    s.stop();
}

#[test]
fn command_during_a_transfer_is_answered_after_it() {
    let s = setup("stash", "passive", "");
    let (bytes, sum) = random_file(4 * 1024 * 1024);
    std::fs::write(s.dir.path().join("f.bin"), &bytes).expect("write f.bin");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Pasv);
    let (_, mut data) = c.open("RETR f.bin");
    c.ctrl.send("NOOP");
    let mut got = Vec::new();
    data.read_to_end(&mut got).expect("read data");
    drop(data);
    assert_eq!(sha256_hex(&got), sum);
    assert_eq!(c.ctrl.reply().code, 226, "transfer reply first");
    assert_eq!(c.ctrl.reply().code, 200, "then the NOOP's");
    c.quit();
    s.stop();
}

#[test]
fn shutdown_closes_idle_sessions_with_421() {
    let s = setup("shutdown", "passive", "");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Pasv).ctrl;
    s.proxy.token.cancel();
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().contains("shutting down"), "{r:?}");
    c.expect_eof();
    // No new sessions once shutdown began.
    let refused =
        std::net::TcpStream::connect_timeout(&s.proxy.addr, Duration::from_secs(2)).map(|mut t| {
            t.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            t.read(&mut buf).unwrap_or(0)
        });
    assert!(
        matches!(refused, Err(_) | Ok(0)),
        "a session was served after shutdown: {refused:?}"
    );
    s.stop();
}

/// The fake server's answers: a login, then a hostile 227 naming a privileged port.
fn hostile_pasv(line: &str) -> Option<String> {
    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
    Some(
        match verb.as_str() {
            "USER" => "331 pw",
            "PASS" => "230 in",
            "TYPE" => "200 ok",
            "PASV" => "227 Entering Passive Mode (127,0,0,1,0,22)",
            "EPSV" => "229 Entering Extended Passive Mode (|||22|)",
            "QUIT" => "221 bye",
            _ => "502 no",
        }
        .to_string(),
    )
}

#[test]
fn server_passive_reply_to_a_privileged_port_is_refused() {
    let _dog = Watchdog::new("hostile_227", Duration::from_secs(30));
    let rt = runtime();
    let upstream = start_fake_server(&rt, hostile_pasv);
    let proxy = start_proxy(&rt, upstream, &Ports::new(), "passive", "");
    let mut c = RawFtp::login(proxy.addr, DataMode::Pasv);
    c.prepare();
    let r = c.ctrl.cmd("RETR f.bin");
    assert_eq!(r.code, 425, "{r:?}");
    // The client learns that the server's reply was refused, not what it said.
    assert!(r.text().contains("passive reply was refused"), "{r:?}");
    assert!(!r.text().contains("127"), "{r:?}");
    assert_eq!(
        proxy.metrics.transfers_total.get(),
        0,
        "a data task was started"
    );
    c.quit();
    proxy.stop(&rt);
}

/// A server that closes the control connection after login.
fn closes_after_login(line: &str) -> Option<String> {
    match line
        .split(' ')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
        .as_str()
    {
        "USER" => Some("331 pw".into()),
        "PASS" => Some("230 in".into()),
        "TYPE" => Some("200 ok".into()),
        _ => None,
    }
}

#[test]
fn server_closing_the_control_connection_gives_421() {
    let _dog = Watchdog::new("server_closes", Duration::from_secs(30));
    let rt = runtime();
    let upstream = start_fake_server(&rt, closes_after_login);
    let proxy = start_proxy(&rt, upstream, &Ports::new(), "passive", "");
    let mut c = RawFtp::login(proxy.addr, DataMode::Pasv).ctrl;
    c.send("NOOP");
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    c.expect_eof();
    proxy.stop(&rt);
}

#[test]
fn epsv_all_locks_out_pasv_port_and_eprt() {
    let s = setup("epsv_all", "passive", "");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Epsv).ctrl;
    c.expect("EPSV ALL", 200);
    c.expect("PASV", 501);
    c.expect("PORT 127,0,0,1,200,10", 501);
    c.expect("EPRT |1|127.0.0.1|51210|", 501);
    c.expect("EPSV", 229);
    c.expect("QUIT", 221);
    c.expect_eof();
    s.stop();
}

/// RETR of a file the server does not have: the client sees the server's 550 (after
/// any 1xx), never a 226, in every client mode and server mode, and the session goes on.
fn missing_file(name: &'static str, mode: DataMode, server_mode: &str) {
    let s = setup(name, server_mode, "");
    let mut c = RawFtp::login(s.proxy.addr, mode);
    let prepared = c.prepare();
    let data = match prepared {
        Prepared::Connect(a) => Some(Prepared::Connect(a).open()),
        Prepared::Accept(_) => None,
    };
    c.ctrl.send("RETR nope.bin");
    let mut r = c.ctrl.reply();
    if r.code / 100 == 1 {
        r = c.ctrl.reply();
    }
    assert_eq!(r.code, 550, "{r:?}");
    drop(data);
    c.ctrl.expect("NOOP", 200);
    let (bytes, sum) = random_file(20_000);
    std::fs::write(s.dir.path().join("yes.bin"), &bytes).expect("write yes.bin");
    assert_eq!(sha256_hex(&c.retr("yes.bin")), sum);
    c.quit();
    s.stop();
}

#[test]
fn missing_file_pasv_server_passive() {
    missing_file("missing_pasv_passive", DataMode::Pasv, "passive");
}

#[test]
fn missing_file_pasv_server_active() {
    missing_file("missing_pasv_active", DataMode::Pasv, "active");
}

#[test]
fn missing_file_port_server_passive() {
    missing_file("missing_port_passive", DataMode::Port, "passive");
}

#[test]
fn missing_file_port_server_active() {
    missing_file("missing_port_active", DataMode::Port, "active");
}

/// ABOR in the middle of a large RETR: the aborted transfer is never reported as 226,
/// the ABOR is answered, and the session and gauges recover.
fn abort_mid_retr(name: &'static str, mode: DataMode, server_mode: &str) {
    let s = setup(name, server_mode, "");
    let (big, _) = random_file(16 * 1024 * 1024);
    std::fs::write(s.dir.path().join("big.bin"), &big).expect("write big.bin");
    let mut c = RawFtp::login(s.proxy.addr, mode);
    let (_, mut data) = c.open("RETR big.bin");
    let mut first = vec![0u8; 64 * 1024];
    data.read_exact(&mut first).expect("first 64 KiB");
    c.ctrl.send("ABOR");
    let mut rest = Vec::new();
    let _ = data.read_to_end(&mut rest);
    assert!(
        first.len() + rest.len() < big.len(),
        "the whole file arrived despite ABOR"
    );
    drop(data);
    // RFC 959 4.1.3 has the server answer the transfer (426) and then ABOR (226).
    // libunftp answers ABOR with 226 at once and the transfer with 426 later; ftpgate pairs
    // replies in order, so the client sees ftpgate's 426 for the (cancelled) transfer and
    // libunftp's late 426 as the ABOR's answer. Either way: no 226 for the transfer.
    let transfer = c.ctrl.reply();
    assert_eq!(transfer.code, 426, "transfer reply {transfer:?}");
    let abor = c.ctrl.reply();
    assert!(
        abor.code / 100 == 2 || abor.code == 426,
        "ABOR reply {abor:?}"
    );
    c.ctrl.expect("NOOP", 200);
    let (small, sum) = random_file(30_000);
    std::fs::write(s.dir.path().join("small.bin"), &small).expect("write small.bin");
    assert_eq!(sha256_hex(&c.retr("small.bin")), sum);
    c.quit();
    s.stop();
}

#[test]
fn abort_mid_retr_pasv_server_passive() {
    abort_mid_retr("abort_pasv_passive", DataMode::Pasv, "passive");
}

#[test]
fn abort_mid_retr_port_server_active() {
    abort_mid_retr("abort_port_active", DataMode::Port, "active");
}

/// A server whose reply line is longer than `limits.max_line`.
fn overlong_reply(line: &str) -> Option<String> {
    match line
        .split(' ')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
        .as_str()
    {
        "USER" => Some("331 pw".into()),
        "PASS" => Some("230 in".into()),
        "TYPE" => Some("200 ok".into()),
        _ => Some(format!("200 {}", "z".repeat(10_000))),
    }
}

#[test]
fn overlong_server_reply_ends_the_session_with_421() {
    let _dog = Watchdog::new("overlong_reply", Duration::from_secs(30));
    let rt = runtime();
    let upstream = start_fake_server(&rt, overlong_reply);
    let proxy = start_proxy(&rt, upstream, &Ports::new(), "passive", "");
    let mut c = RawFtp::login(proxy.addr, DataMode::Pasv).ctrl;
    let r = c.cmd("NOOP");
    assert_eq!(r.code, 421, "{r:?}");
    assert!(
        r.lines.iter().all(|l| l.len() < 4096),
        "the overlong line reached the client"
    );
    c.expect_eof();
    proxy.stop(&rt);
}

#[test]
fn idle_session_gets_421_and_is_closed() {
    let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 1s, data_stall: 10s, shutdown_grace: 2s }\n";
    let s = setup("idle", "passive", extra);
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Pasv).ctrl;
    let started = std::time::Instant::now();
    let r = c.reply();
    assert_eq!(r.code, 421, "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle 421 after {:?}",
        started.elapsed()
    );
    c.expect_eof();
    s.stop();
}

#[test]
fn client_that_stops_reading_data_gets_426() {
    let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 1s, shutdown_grace: 2s }\n";
    let s = setup("stall", "passive", extra);
    let (big, _) = random_file(16 * 1024 * 1024);
    std::fs::write(s.dir.path().join("big.bin"), &big).expect("write big.bin");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Pasv);
    let (_, data) = c.open("RETR big.bin");
    // Never read: socket buffers fill, ftpgate's write to us stalls past data_stall.
    let r = c.ctrl.reply();
    assert_eq!(r.code, 426, "{r:?}");
    drop(data);
    c.ctrl.expect("NOOP", 200);
    c.quit();
    assert_eq!(s.proxy.metrics.transfers_failed.get(), 1);
    s.stop();
}

#[test]
fn shutdown_lets_a_running_transfer_finish_then_closes_with_421() {
    let s = setup("shutdown_drain", "passive", "");
    let (big, sum) = random_file(8 * 1024 * 1024);
    std::fs::write(s.dir.path().join("big.bin"), &big).expect("write big.bin");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Pasv);
    let (_, mut data) = c.open("RETR big.bin");
    let mut got = vec![0u8; 64 * 1024];
    data.read_exact(&mut got).expect("first 64 KiB");
    s.proxy.token.cancel();
    data.read_to_end(&mut got).expect("rest of the file");
    drop(data);
    assert_eq!(sha256_hex(&got), sum, "transfer cut by shutdown");
    c.finish("RETR big.bin");
    let r = c.ctrl.reply();
    assert_eq!(r.code, 421, "{r:?}");
    c.ctrl.expect_eof();
    s.stop();
}

#[test]
fn unused_passive_listener_closes_after_data_accept() {
    // A PASV port is held for `timeouts.data_accept`, not for the rest of the session.
    let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 1s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n";
    let s = setup("pasv_expiry", "passive", extra);
    std::fs::write(s.dir.path().join("f.bin"), b"hello").expect("write f.bin");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Pasv);
    let r = c.ctrl.expect("PASV", 227);
    let port = parse_227(&r.lines[0]);
    assert_eq!(s.proxy.metrics.port_leases.get(), 1);
    wait_until(
        "the passive port to be released",
        Duration::from_secs(5),
        || s.proxy.metrics.port_leases.get() == 0,
    );
    assert!(
        std::net::TcpStream::connect_timeout(&port, Duration::from_secs(1)).is_err(),
        "the expired passive port still accepts"
    );
    c.ctrl.expect("RETR f.bin", 425);
    c.ctrl.expect("NOOP", 200);
    c.quit();
    s.stop();
}

#[test]
fn server_source_port_20_connects_to_active_clients_from_port_20() {
    // RFC 959 servers connect from port 20; some client-side firewalls insist on it.
    if !precondition(
        "server_source_port_20_connects_to_active_clients_from_port_20",
        TcpListener::bind("127.0.0.1:20").is_ok(),
        "binding port 20 needs root or CAP_NET_BIND_SERVICE",
    ) {
        return;
    }
    let _dog = Watchdog::new("port_20", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, sum) = random_file(200_000);
    std::fs::write(dir.path().join("f.bin"), &file).expect("write");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let yaml = proxy_yaml_data(
        unftp.addr,
        &ports,
        "passive",
        "server_source_port_20: true",
        "",
    );
    let proxy = start_proxy_yaml(&rt, &yaml);
    let mut c = RawFtp::login(proxy.addr, DataMode::Port);
    let l = TcpListener::bind("127.0.0.1:0").expect("client data listener");
    let p = l.local_addr().expect("addr").port();
    c.ctrl
        .expect(&format!("PORT 127,0,0,1,{},{}", p >> 8, p & 0xff), 200);
    assert_eq!(c.ctrl.cmd("RETR f.bin").code / 100, 1);
    let mut data = accept_timeout(&l, Duration::from_secs(10)).expect("ftpgate connects");
    assert_eq!(
        data.peer_addr().expect("peer").port(),
        20,
        "source port of the data connection"
    );
    let mut got = Vec::new();
    data.read_to_end(&mut got).expect("read");
    drop(data);
    c.finish("RETR f.bin");
    assert_eq!(sha256_hex(&got), sum);
    c.quit();
    proxy.stop(&rt);
}

#[test]
fn prepared_server_listener_is_released_but_port_plan_stays() {
    // server_mode active: a client's PORT makes ftpgate open a listener for the server
    // at once. Unused for `data_accept`, that listener goes; the PORT itself still holds,
    // and a later RETR sets up the server side afresh.
    let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 1s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n";
    let s = setup("prep_expiry", "active", extra);
    let (file, sum) = random_file(100_000);
    std::fs::write(s.dir.path().join("f.bin"), &file).expect("write f.bin");
    let mut c = RawFtp::login(s.proxy.addr, DataMode::Port);
    let l = TcpListener::bind("127.0.0.1:0").expect("client data listener");
    let p = l.local_addr().expect("addr").port();
    c.ctrl
        .expect(&format!("PORT 127,0,0,1,{},{}", p >> 8, p & 0xff), 200);
    c.ctrl.expect("NOOP", 200);
    assert_eq!(
        s.proxy.metrics.port_leases.get(),
        1,
        "the prepared server listener"
    );
    wait_until(
        "the prepared listener to be released",
        Duration::from_secs(5),
        || s.proxy.metrics.port_leases.get() == 0,
    );
    assert_eq!(c.ctrl.cmd("RETR f.bin").code / 100, 1);
    let mut data = accept_timeout(&l, Duration::from_secs(10)).expect("ftpgate connects");
    let mut got = Vec::new();
    data.read_to_end(&mut got).expect("read");
    drop(data);
    c.finish("RETR f.bin");
    assert_eq!(sha256_hex(&got), sum);
    c.quit();
    s.stop();
}
