//! Hostile input on both legs, one attack per test, grouped as in SECURITY.md: framing,
//! Telnet, PORT/EPRT validation, hostile server passive replies, data-connection hijack,
//! reply robustness, exhaustion, and the first line / login / policy gates; then property
//! tests over TCP segmentation and arbitrary client bytes.
//!
//! Every test asserts the exact reply codes a peer sees and that nothing was connected or
//! leaked: watched listeners at every address an attack names stay untouched, the scripted
//! server sees only the control connections and lines it should, no data transfer was
//! started where none should be, and ftpgate's sessions, transfers and port leases return
//! to zero before a clean shutdown ([`Rig::finish`]).
//!
//! Peers: a scripted server ([`start_script_server`]) for hostile replies, [`Mini`] (a
//! small FTP server with real data connections) for attacks on the data channel, and raw
//! TCP clients ([`Ctrl`]) for hostile client bytes.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// `limits.max_line` in every rig (the smallest the config allows).
const MAX_LINE: usize = 512;

fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// `h1,h2,h3,h4,p1,p2` for a PORT command or a 227 reply.
fn six(ip: [u8; 4], port: u16) -> String {
    format!(
        "{},{},{},{},{},{}",
        ip[0],
        ip[1],
        ip[2],
        ip[3],
        port >> 8,
        port & 0xff
    )
}

// ---------------------------------------------------------------------------------------
// The rig: ftpgate in front of a scripted server

struct Rig {
    rt: Runtime,
    server: ScriptServer,
    proxy: Proxy,
    _dog: Watchdog,
}

fn rig(name: &'static str, answer: Answer) -> Rig {
    rig_with(name, vec![say("220 script ready")], answer, "", "")
}

/// A rig with `limits`/`timeouts`/`acl` sections in `extra`, `data:` keys in `data_extra`.
fn rig_with(
    name: &'static str,
    banner: Vec<Step>,
    answer: Answer,
    data_extra: &str,
    extra: &str,
) -> Rig {
    let dog = Watchdog::new(name, Duration::from_secs(45));
    let rt = runtime();
    let server = start_script_server(&rt, banner, answer);
    let ports = Ports::new();
    let limits = if extra.contains("limits:") {
        String::new()
    } else {
        format!("limits: {{ max_line: {MAX_LINE} }}\n")
    };
    let yaml = proxy_yaml_data(
        server.addr,
        &ports,
        "passive",
        data_extra,
        &format!("{limits}{extra}"),
    );
    let proxy = start_proxy_yaml(&rt, &yaml);
    Rig {
        rt,
        server,
        proxy,
        _dog: dog,
    }
}

fn basic() -> Answer {
    answer(basic_answer)
}

impl Rig {
    fn client(&self) -> Ctrl {
        Ctrl::greeted(self.proxy.addr)
    }

    fn logged_in(&self) -> Ctrl {
        let mut c = self.client();
        c.expect("USER anonymous", 331);
        c.expect("PASS x", 230);
        c
    }

    fn transfers_started(&self) -> u64 {
        self.proxy.metrics.transfers_total.get()
    }

    /// The common ending: exactly `sessions` control connections reached the server (the
    /// proxy opened nothing else there), no data transfer was started, and every gauge is
    /// back to zero before a clean shutdown.
    fn finish(self, sessions: usize) {
        self.finish_with(sessions, 0);
    }

    fn finish_with(self, sessions: usize, transfers: u64) {
        assert_eq!(
            self.server.accepted(),
            sessions,
            "control connections reaching the server"
        );
        assert_eq!(
            self.transfers_started(),
            transfers,
            "data transfers started"
        );
        self.proxy.stop(&self.rt);
    }
}

fn quit(mut c: Ctrl) {
    c.expect("QUIT", 221);
    c.expect_eof();
}

// ---------------------------------------------------------------------------------------
// Mini: a small FTP server with real data connections and configurable misbehaviour

#[derive(Clone)]
struct MiniOpts {
    /// The address put in 227 replies (the data listener is always on 127.0.0.1).
    announce: [u8; 4],
    /// What RETR sends.
    payload: Arc<Vec<u8>>,
    /// Before its own data connection to a PORT/EPRT target, a third party (127.0.0.2)
    /// connects there first and writes `EVIL`.
    intrude_active: bool,
    /// Send the final 226 after a transfer.
    final_reply: bool,
    /// Pause between 4 KiB chunks of the payload.
    chunk_gap: Option<Duration>,
}

impl Default for MiniOpts {
    fn default() -> Self {
        MiniOpts {
            announce: [127, 0, 0, 1],
            payload: Arc::new(b"the real file\n".repeat(1000)),
            intrude_active: false,
            final_reply: true,
            chunk_gap: None,
        }
    }
}

#[derive(Default)]
struct MiniLog {
    seen: Mutex<Vec<String>>,
    uploads: Mutex<Vec<Vec<u8>>>,
    /// Connections that reached a watch on the announced (foreign) address.
    foreign_hits: AtomicUsize,
    /// What each intruder experienced: (bytes it read, how its read ended).
    intruders: Mutex<Vec<(usize, String)>>,
    /// Data connections Mini accepted on its passive listeners.
    data_accepts: AtomicUsize,
}

struct Mini {
    addr: SocketAddr,
    log: Arc<MiniLog>,
}

impl Mini {
    fn seen(&self) -> Vec<String> {
        self.log.seen.lock().expect("seen").clone()
    }
    fn uploads(&self) -> Vec<Vec<u8>> {
        self.log.uploads.lock().expect("uploads").clone()
    }
    fn intruders(&self) -> Vec<(usize, String)> {
        self.log.intruders.lock().expect("intruders").clone()
    }
}

fn start_mini(rt: &Runtime, opts: MiniOpts) -> Mini {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind mini");
    let addr = listener.local_addr().expect("mini addr");
    let log = Arc::new(MiniLog::default());
    let log2 = Arc::clone(&log);
    rt.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(mini_session(s, opts.clone(), Arc::clone(&log2)));
        }
    });
    Mini { addr, log }
}

enum MiniData {
    None,
    Listen(tokio::net::TcpListener),
    Connect(SocketAddr),
}

async fn mini_session(s: tokio::net::TcpStream, opts: MiniOpts, log: Arc<MiniLog>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let (rd, mut wr) = s.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    let mut data = MiniData::None;
    if wr.write_all(b"220 mini ready\r\n").await.is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match rd.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        log.seen.lock().expect("seen").push(line.clone());
        let (verb, arg) = split_command(line.as_bytes());
        let arg = String::from_utf8_lossy(&arg).into_owned();
        let reply: String = match verb.as_str() {
            "USER" => "331 pw".into(),
            "PASS" => "230 in".into(),
            "TYPE" | "NOOP" => "200 ok".into(),
            "QUIT" => {
                let _ = wr.write_all(b"221 bye\r\n").await;
                return;
            }
            "PASV" | "EPSV" => {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("mini data listener");
                let port = l.local_addr().expect("mini data addr").port();
                if opts.announce != [127, 0, 0, 1] {
                    let foreign = SocketAddr::from((opts.announce, port));
                    if let Ok(w) = tokio::net::TcpListener::bind(foreign).await {
                        let log = Arc::clone(&log);
                        tokio::spawn(async move {
                            while w.accept().await.is_ok() {
                                log.foreign_hits.fetch_add(1, Ordering::SeqCst);
                            }
                        });
                    }
                }
                data = MiniData::Listen(l);
                if verb == "PASV" {
                    format!("227 Entering Passive Mode ({})", six(opts.announce, port))
                } else {
                    format!("229 Entering Extended Passive Mode (|||{port}|)")
                }
            }
            "PORT" | "EPRT" => {
                let target = if verb == "PORT" {
                    let n: Vec<u16> = arg.split(',').filter_map(|x| x.parse().ok()).collect();
                    (n.len() == 6).then(|| {
                        SocketAddr::from((
                            [n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8],
                            n[4] << 8 | n[5],
                        ))
                    })
                } else {
                    let f: Vec<&str> = arg.split('|').collect();
                    (f.len() == 5)
                        .then(|| format!("{}:{}", f[2], f[3]).parse().ok())
                        .flatten()
                };
                match target {
                    Some(t) => {
                        data = MiniData::Connect(t);
                        "200 PORT ok".into()
                    }
                    None => "501 bad PORT".into(),
                }
            }
            "RETR" | "STOR" | "LIST" => {
                if wr
                    .write_all(b"150 opening data connection\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let stream = match std::mem::replace(&mut data, MiniData::None) {
                    MiniData::None => {
                        let _ = wr.write_all(b"425 use PASV or PORT first\r\n").await;
                        continue;
                    }
                    MiniData::Listen(l) => {
                        match tokio::time::timeout(Duration::from_secs(10), l.accept()).await {
                            Ok(Ok((s, _))) => {
                                log.data_accepts.fetch_add(1, Ordering::SeqCst);
                                Some(s)
                            }
                            _ => None,
                        }
                    }
                    MiniData::Connect(t) => {
                        if opts.intrude_active {
                            intrude(t, &log).await;
                        }
                        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
                        let _ = sock.bind(SocketAddr::from(([127, 0, 0, 1], 0)));
                        sock.connect(t).await.ok()
                    }
                };
                let Some(mut stream) = stream else {
                    let _ = wr.write_all(b"425 no data connection\r\n").await;
                    continue;
                };
                if verb == "STOR" {
                    let mut got = Vec::new();
                    let _ = stream.read_to_end(&mut got).await;
                    log.uploads.lock().expect("uploads").push(got);
                } else {
                    for chunk in opts.payload.chunks(4096) {
                        if stream.write_all(chunk).await.is_err() {
                            break;
                        }
                        if let Some(gap) = opts.chunk_gap {
                            tokio::time::sleep(gap).await;
                        }
                    }
                    let _ = stream.shutdown().await;
                }
                drop(stream);
                if !opts.final_reply {
                    continue;
                }
                "226 transfer complete".into()
            }
            _ => "502 not implemented".into(),
        };
        if wr
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A third party (127.0.0.2) connects to `target` before the real peer, writes `EVIL`, and
/// records what it then reads. Returns once it has connected and written.
async fn intrude(target: SocketAddr, log: &Arc<MiniLog>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from(([127, 0, 0, 2], 0)))
        .expect("bind 127.0.0.2");
    let Ok(mut s) = sock.connect(target).await else {
        log.intruders
            .lock()
            .expect("intruders")
            .push((0, "refused".into()));
        return;
    };
    let _ = s.write_all(b"EVIL").await;
    let log = Arc::clone(log);
    tokio::spawn(async move {
        let mut got = Vec::new();
        let how = match tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await
        {
            Ok(Ok(_)) => "eof".to_string(),
            Ok(Err(e)) => format!("error {:?}", e.kind()),
            Err(_) => "still open after 5 s".to_string(),
        };
        log.intruders
            .lock()
            .expect("intruders")
            .push((got.len(), how));
    });
}

/// A proxy in front of a [`Mini`].
struct MiniRig {
    rt: Runtime,
    mini: Mini,
    proxy: Proxy,
    ports: Ports,
    _dog: Watchdog,
}

fn mini_rig(
    name: &'static str,
    opts: MiniOpts,
    server_mode: &str,
    data_extra: &str,
    extra: &str,
) -> MiniRig {
    let dog = Watchdog::new(name, Duration::from_secs(45));
    let rt = runtime();
    let mini = start_mini(&rt, opts);
    let ports = Ports::new();
    let yaml = proxy_yaml_data(mini.addr, &ports, server_mode, data_extra, extra);
    let proxy = start_proxy_yaml(&rt, &yaml);
    MiniRig {
        rt,
        mini,
        proxy,
        ports,
        _dog: dog,
    }
}

impl MiniRig {
    fn logged_in(&self) -> Ctrl {
        let mut c = Ctrl::greeted(self.proxy.addr);
        c.expect("USER anonymous", 331);
        c.expect("PASS x", 230);
        c.expect("TYPE I", 200);
        c
    }

    /// PASV through the proxy: the data address it announced, checked to be its own.
    fn pasv(&self, c: &mut Ctrl) -> SocketAddr {
        let r = c.expect("PASV", 227);
        let a = parse_227(&r.text());
        assert_eq!(a.ip(), lo(1), "227 names the proxy's address: {r:?}");
        assert!(
            self.ports.proxy_passive.contains(&a.port()),
            "227 port {} outside data.passive_ports {:?}",
            a.port(),
            self.ports.proxy_passive
        );
        a
    }

    fn stop(self, transfers: u64) {
        assert_eq!(
            self.proxy.metrics.transfers_total.get(),
            transfers,
            "data transfers started"
        );
        self.proxy.stop(&self.rt);
    }
}

fn data_stream(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("data connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// Connects from `from` to `to`, then reads: (bytes read, how it ended).
fn intruder_outcome(mut s: TcpStream) -> (usize, std::io::ErrorKind) {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => (got.len(), std::io::ErrorKind::UnexpectedEof),
        Err(e) => (got.len(), e.kind()),
    }
}

fn assert_intruder_closed(outcome: (usize, std::io::ErrorKind), what: &str) {
    assert_eq!(
        outcome.0, 0,
        "{what}: the third party read {} bytes",
        outcome.0
    );
    assert!(
        !matches!(
            outcome.1,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{what}: the third party's connection was left open"
    );
}

// ---------------------------------------------------------------------------------------
// (1) Framing: strict, bounded, never split

mod framing {
    use super::*;

    #[test]
    fn line_of_exactly_max_line_is_one_command() {
        let rig = rig("max_line_exact", basic());
        let mut c = rig.logged_in();
        // HELP: the script answers 502 without echoing, so the reply stays short.
        let mut line = b"HELP ".to_vec();
        line.resize(MAX_LINE, b'x');
        c.send_bytes(&line);
        let r = c.reply();
        assert_eq!(r.code, 502, "{r:?}");
        assert_eq!(rig.server.seen().last(), Some(&line), "relayed whole");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn line_one_byte_over_max_line_is_refused_whole() {
        let rig = rig("max_line_plus_one", basic());
        let mut c = rig.logged_in();
        let mut line = b"SITE ".to_vec();
        line.resize(MAX_LINE + 1, b'x');
        c.send_bytes(&line);
        let r = c.reply();
        assert_eq!(r.code, 500, "{r:?}");
        assert!(r.text().contains("too long"), "{r:?}");
        rig.server.assert_never_saw(b"SITE");
        c.expect("NOOP", 200);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn overlong_line_never_becomes_a_second_command() {
        // The classic split: the cap falls right before "DELE"; a framer that cuts there
        // would hand the server a second, unchecked command.
        let rig = rig("overlong_split", basic());
        let mut c = rig.logged_in();
        for pad in [MAX_LINE, MAX_LINE + 1, MAX_LINE - 3, 4 * MAX_LINE] {
            let mut bytes = vec![b'X'; pad];
            bytes.extend_from_slice(b"DELE secret\r\n");
            c.write_raw(&bytes);
            assert_eq!(c.reply().code, 500, "pad {pad}");
        }
        c.expect("NOOP", 200);
        rig.server.assert_never_saw(b"DELE");
        rig.server.assert_never_saw(b"XXX");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn overlong_tail_arriving_later_is_still_discarded() {
        let rig = rig("overlong_tail", basic());
        let mut c = rig.logged_in();
        c.socket().set_nodelay(true).expect("nodelay");
        c.write_raw(&vec![b'X'; 2 * MAX_LINE]);
        std::thread::sleep(Duration::from_millis(50));
        c.write_raw(b"DELE secret");
        std::thread::sleep(Duration::from_millis(50));
        c.write_raw(b"\r\nNOOP\r\n");
        assert_eq!(c.reply().code, 500);
        assert_eq!(c.reply().code, 200);
        rig.server.assert_never_saw(b"DELE");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn bare_cr_rejects_the_whole_line() {
        let rig = rig("bare_cr", basic());
        let mut c = rig.logged_in();
        c.write_raw(b"SITE a\rDELE secret\r\n");
        assert_eq!(c.reply().code, 500);
        c.write_raw(b"NOOP\r\r\n");
        assert_eq!(c.reply().code, 500);
        c.write_raw(b"\rNOOP\r\n");
        assert_eq!(c.reply().code, 500);
        c.expect("NOOP", 200);
        rig.server.assert_never_saw(b"DELE");
        assert_eq!(rig.server.seen().len(), 3, "{:?}", rig.server.seen_text());
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn nul_rejects_the_whole_line() {
        let rig = rig("nul", basic());
        let mut c = rig.logged_in();
        for bytes in [
            &b"SITE a\0DELE secret\r\n"[..],
            b"\0NOOP\r\n",
            b"NOOP\0\r\n",
        ] {
            c.write_raw(bytes);
            assert_eq!(c.reply().code, 500, "{bytes:?}");
        }
        c.expect("NOOP", 200);
        rig.server.assert_never_saw(b"DELE");
        rig.server.assert_never_saw(b"\0");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn lf_alone_ends_a_line_and_mixes_with_crlf() {
        let rig = rig("lf_only", basic());
        let mut c = rig.client();
        c.write_raw(b"USER a\nPASS b\r\nNOOP\n");
        assert_eq!(c.reply().code, 331);
        assert_eq!(c.reply().code, 230);
        assert_eq!(c.reply().code, 200);
        // Towards the server every line ends in CRLF.
        assert_eq!(
            rig.server.seen()[..3],
            [b"USER a".to_vec(), b"PASS b".to_vec(), b"NOOP".to_vec()]
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn empty_lines_get_500_and_never_reach_the_server() {
        let rig = rig("empty_lines", basic());
        let mut c = rig.logged_in();
        c.write_raw(b"\r\n\n \r\n");
        for _ in 0..3 {
            assert_eq!(c.reply().code, 500);
        }
        c.expect("NOOP", 200);
        assert_eq!(
            rig.server.seen().len(),
            3,
            "USER, PASS, NOOP only: {:?}",
            rig.server.seen_text()
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn command_split_into_one_byte_segments() {
        let rig = rig("byte_segments", basic());
        let mut c = rig.logged_in();
        let bytes = b"SITE one-byte-at-a-time\r\n";
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        c.write_split(bytes, &cuts, Duration::from_millis(5));
        let r = c.reply();
        assert_eq!(r.code, 200, "{r:?}");
        assert_eq!(r.lines[0], "200 SITE one-byte-at-a-time");
        // CR and LF in separate segments, far apart.
        c.write_split(b"NOOP\r\n", &[5], Duration::from_millis(200));
        assert_eq!(c.reply().code, 200);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn ten_thousand_a_after_noop_in_one_write() {
        let rig = rig("noop_then_a", basic());
        let mut c = rig.logged_in();
        let mut bytes = b"NOOP\r\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'A', 10_000));
        bytes.extend_from_slice(b"\r\nNOOP\r\n");
        c.write_raw(&bytes);
        assert_eq!(c.reply().code, 200);
        assert_eq!(c.reply().code, 500);
        assert_eq!(c.reply().code, 200);
        rig.server.assert_never_saw(b"AAAA");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn pipelined_refusals_keep_reply_order() {
        let rig = rig("pipelined_refusals", basic());
        let mut c = rig.logged_in();
        c.write_raw(b"NOOP\r\nSITE x\0y\r\nPWD\r\n\r\nSYST\r\nPASV\r\nEPSV 2\r\nSITE end\r\n");
        let codes: Vec<u16> = (0..8).map(|_| c.reply().code).collect();
        assert_eq!(codes, [200, 500, 257, 500, 215, 227, 522, 200]);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn fifty_pipelined_commands_are_each_answered_once_in_order() {
        let rig = rig("pipelined_50", basic());
        let mut c = rig.logged_in();
        let bytes: Vec<u8> = (0..50)
            .flat_map(|i| format!("SITE n{i}\r\n").into_bytes())
            .collect();
        c.write_raw(&bytes);
        for i in 0..50 {
            let r = c.reply();
            assert_eq!(r.lines, [format!("200 SITE n{i}")]);
        }
        let sites: Vec<String> = rig
            .server
            .seen_text()
            .into_iter()
            .filter(|l| l.starts_with("SITE"))
            .collect();
        assert_eq!(sites.len(), 50);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn malformed_verbs_get_500_and_are_not_relayed() {
        let rig = rig("bad_verbs", basic());
        let mut c = rig.logged_in();
        c.expect_all(
            &[
                b" NOOP",
                b"NOOP\t",
                b"NO",
                b"NOOPS",
                b"N0OP",
                b"\xc9TRE x",
                b"SITE\tx",
                b"227 Entering Passive Mode (127,0,0,2,4,1)",
            ],
            500,
        );
        c.expect("noop", 200);
        assert_eq!(rig.server.seen().len(), 3, "{:?}", rig.server.seen_text());
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn partial_line_at_eof_is_never_relayed() {
        let rig = rig("partial_at_eof", basic());
        let mut c = rig.logged_in();
        c.write_raw(b"NOOP\r\nDELE secret");
        c.socket()
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        assert_eq!(c.reply().code, 200);
        c.expect_eof();
        rig.server.assert_never_saw(b"DELE");
        rig.finish(1);
    }
}

// ---------------------------------------------------------------------------------------
// (2) Telnet: IAC IAC is 0xFF, IP/DM are consumed, anything else is refused

mod telnet {
    use super::*;

    #[test]
    fn iac_iac_is_the_byte_ff_in_paths_both_ways() {
        let rig = rig("iac_iac", basic());
        let mut c = rig.logged_in();
        c.write_raw(b"SITE caf\xe9\xff\xff.txt\r\n");
        let line = c.raw_line().expect("reply");
        // The server got IAC IAC on the wire (one 0xFF byte, escaped), and its echo came
        // back to the client escaped the same way.
        assert_eq!(
            rig.server.seen().last().map(Vec::as_slice),
            Some(&b"SITE caf\xe9\xff\xff.txt"[..])
        );
        assert_eq!(line, b"200 SITE caf\xe9\xff\xff.txt");
        quit(c);
        rig.finish(1);
    }

    fn abor_rig(name: &'static str) -> (Rig, Ctrl) {
        let rig = rig(name, basic());
        let c = rig.logged_in();
        // A stuck ABOR should fail in seconds, not after IO_TIMEOUT.
        c.set_read_timeout(Duration::from_secs(3));
        (rig, c)
    }

    #[test]
    fn ip_and_dm_before_abor_are_consumed_lftp_style() {
        // lftp and netkit ftp: IAC IP IAC in band, DM as TCP urgent data, then ABOR.
        let (rig, mut c) = abor_rig("abor_lftp");
        c.socket().set_nodelay(true).expect("nodelay");
        c.write_raw(b"\xff\xf4\xff");
        socket2::SockRef::from(c.socket())
            .send_out_of_band(b"\xf2")
            .expect("urgent DM");
        c.write_raw(b"ABOR\r\n");
        let r = c.reply();
        assert_eq!(r.code, 226, "{r:?}");
        assert_eq!(
            rig.server.seen().last().map(Vec::as_slice),
            Some(&b"ABOR"[..])
        );
        c.expect("NOOP", 200);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn abor_sent_as_urgent_data_python_ftplib_style() {
        // ftplib.FTP.abort(): sock.sendall(b'ABOR\r\n', MSG_OOB).
        let (rig, mut c) = abor_rig("abor_ftplib");
        socket2::SockRef::from(c.socket())
            .send_out_of_band(b"ABOR\r\n")
            .expect("urgent ABOR");
        assert_eq!(c.reply().code, 226);
        assert_eq!(
            rig.server.seen().last().map(Vec::as_slice),
            Some(&b"ABOR"[..])
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn ip_dm_abor_in_band_and_iac_nop_are_consumed() {
        let (rig, mut c) = abor_rig("abor_in_band");
        c.write_raw(b"\xff\xf4\xff\xf2ABOR\r\n");
        assert_eq!(c.reply().code, 226);
        c.write_raw(b"NO\xff\xf1OP\r\n");
        assert_eq!(c.reply().code, 200);
        let seen = rig.server.seen();
        assert_eq!(seen[seen.len() - 2..], [b"ABOR".to_vec(), b"NOOP".to_vec()]);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn telnet_option_negotiation_gets_500() {
        let rig = rig("iac_negotiation", basic());
        let mut c = rig.logged_in();
        for seq in [
            &b"\xff\xfb\x01"[..],        // WILL ECHO
            b"\xff\xfc\x01",             // WONT
            b"\xff\xfd\x03",             // DO SUPPRESS-GO-AHEAD
            b"\xff\xfe\x18",             // DONT
            b"\xff\xfa\x18\x01\xff\xf0", // SB TERMINAL-TYPE SEND SE
            b"\xff\xf6",                 // AYT
            b"\xff\xf3",                 // BRK
            b"\xff\xf8",                 // EL
        ] {
            let mut line = seq.to_vec();
            line.extend_from_slice(b"SITE x\r\n");
            c.write_raw(&line);
            let r = c.reply();
            assert_eq!(r.code, 500, "{seq:?}: {r:?}");
            // Also in the middle of a line.
            let mut line = b"SITE x".to_vec();
            line.extend_from_slice(seq);
            line.extend_from_slice(b"y\r\n");
            c.write_raw(&line);
            assert_eq!(c.reply().code, 500, "{seq:?} mid-line");
        }
        c.expect("NOOP", 200);
        rig.server.assert_never_saw(b"SITE");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn lone_iac_gets_500() {
        let rig = rig("lone_iac", basic());
        let mut c = rig.logged_in();
        for bytes in [
            &b"NOOP\xff\r\n"[..],
            b"\xff\r\n",
            b"\xffNOOP\r\n",
            b"SITE \xffA\r\n",
            b"NOOP\xff\n",
        ] {
            c.write_raw(bytes);
            assert_eq!(c.reply().code, 500, "{bytes:?}");
        }
        c.expect("NOOP", 200);
        assert_eq!(rig.server.seen().len(), 3, "{:?}", rig.server.seen_text());
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn iac_iac_counts_twice_against_max_line() {
        let rig = rig("iac_length", basic());
        let mut c = rig.logged_in();
        // 5 + 2 * 254 = 513 bytes on the wire (259 after decoding): too long.
        let mut line = b"HELP ".to_vec();
        line.extend(std::iter::repeat_n([0xffu8, 0xff], 254).flatten());
        c.send_bytes(&line);
        assert_eq!(c.reply().code, 500);
        rig.server.assert_never_saw(b"HELP");
        line.truncate(MAX_LINE - 1); // 5 + 2 * 253 = 511 bytes on the wire
        c.send_bytes(&line);
        assert_eq!(c.reply().code, 502);
        assert_eq!(
            rig.server.seen().last(),
            Some(&line),
            "relayed with IAC IAC"
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn server_telnet_negotiation_ends_the_session_with_421() {
        let rig = rig(
            "server_iac",
            answer(|l| match split_command(l).0.as_str() {
                "SITE" => vec![Step::Send(b"200 ok\xff\xfb\x01\r\n".to_vec())],
                _ => basic_answer(l),
            }),
        );
        let mut c = rig.logged_in();
        c.send("SITE x");
        let r = c.expect_close(421);
        assert!(r.text().contains("invalid reply"), "{r:?}");
        rig.finish(1);
    }
}

// ---------------------------------------------------------------------------------------
// (3) PORT/EPRT from the client: checked before any packet is sent

mod active {
    use super::*;

    /// Logged in from `from`, the address every PORT/EPRT must name.
    fn login_from(rig: &Rig, from: IpAddr) -> Ctrl {
        let mut c = Ctrl::connect_from(from, rig.proxy.addr);
        assert_eq!(c.reply().code, 220);
        c.expect("USER anonymous", 331);
        c.expect("PASS x", 230);
        c
    }

    /// Each command gets `code`. Then a RETR finds no data plan (425), nothing reached
    /// the watches, and the server never saw PORT, EPRT or RETR.
    fn refuse_all(rig: &Rig, c: &mut Ctrl, cmds: &[String], code: u16, watches: &[&Watch]) {
        for cmd in cmds {
            let r = c.cmd(cmd);
            assert_eq!(r.code, code, "{cmd:?} -> {r:?}");
        }
        c.expect("RETR x", 425);
        for w in watches {
            w.assert_untouched("a refused active-mode target");
        }
        rig.server.assert_never_saw(b"PORT");
        rig.server.assert_never_saw(b"EPRT");
        rig.server.assert_never_saw(b"RETR");
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Watches on `ip` at each port that can be bound here (privileged ones need root).
    fn watches(rig: &Rig, ip: IpAddr, ports: &[u16]) -> Vec<Watch> {
        let w: Vec<Watch> = ports
            .iter()
            .filter_map(|&p| try_watch(&rig.rt, SocketAddr::new(ip, p)))
            .collect();
        if w.len() < ports.len() {
            eprintln!("note: only {} of {} watches on {ip} {ports:?} could be bound (privileged ports need root)", w.len(), ports.len());
        }
        w
    }

    #[test]
    fn port_and_eprt_to_a_foreign_host_are_refused() {
        let rig = rig("port_foreign", basic());
        let w = watch(&rig.rt, SocketAddr::new(lo(2), 0));
        let p = w.addr.port();
        let mut c = rig.logged_in();
        let r = c.expect(&format!("PORT {}", six([127, 0, 0, 2], p)), 501);
        assert!(r.text().contains("127.0.0.2"), "{r:?}");
        refuse_all(
            &rig,
            &mut c,
            &[
                format!("EPRT |1|127.0.0.2|{p}|"),
                format!("EPRT |2|::ffff:127.0.0.2|{p}|"),
                format!("PORT {}", six([198, 51, 100, 66], 5000)),
            ],
            501,
            &[&w],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn port_bouncing_to_the_servers_control_port_is_refused() {
        // The client (127.0.0.3) names the FTP server's own control port (127.0.0.1).
        let rig = rig("port_bounce_server", basic());
        let mut c = login_from(&rig, lo(3));
        let sp = rig.server.addr.port();
        refuse_all(
            &rig,
            &mut c,
            &[
                format!("PORT {}", six([127, 0, 0, 1], sp)),
                format!("EPRT |1|127.0.0.1|{sp}|"),
                format!("PORT {}", six([127, 0, 0, 1], rig.proxy.addr.port())),
            ],
            501,
            &[],
        );
        quit(c);
        // Still exactly one connection to the server: the session's control connection.
        rig.finish(1);
    }

    #[test]
    fn ports_below_1024_on_the_clients_own_address_are_refused() {
        let rig = rig("port_privileged", basic());
        let ws = watches(&rig, lo(7), &[21, 22, 25, 1023]);
        let mut c = login_from(&rig, lo(7));
        // 1024 is the first acceptable port; a later refusal drops that plan again.
        c.expect(&format!("PORT {}", six([127, 0, 0, 7], 1024)), 200);
        c.expect("EPRT |1|127.0.0.7|1024|", 200);
        for p in [1023u16, 25, 22, 21, 1] {
            let r = c.expect(&format!("PORT {}", six([127, 0, 0, 7], p)), 501);
            assert!(r.text().contains(&p.to_string()), "{r:?}");
        }
        let refs: Vec<&Watch> = ws.iter().collect();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "EPRT |1|127.0.0.7|1023|",
                "EPRT |1|127.0.0.7|25|",
                "EPRT |1|127.0.0.7|22|",
            ]),
            501,
            &refs,
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn port_fields_over_255_are_refused_not_wrapped() {
        let rig = rig("port_fields_255", basic());
        let ws = watches(&rig, lo(7), &[22, 1025]);
        let mut c = login_from(&rig, lo(7));
        let refs: Vec<&Watch> = ws.iter().collect();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "PORT 127,0,0,7,256,22", // 256*256+22 wraps to 22
                "PORT 127,0,0,7,4,257",  // 4*256+257 = 1281, or 1025+256
                "PORT 383,0,0,7,4,1",    // 383 = 127+256
                "PORT 127,0,0,263,4,1",  // 263 = 7+256
                "PORT 127,0,0,7,1000,22",
                "PORT 127,0,0,7,4,999",
            ]),
            501,
            &refs,
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn port_with_too_few_or_too_many_fields_is_refused() {
        let rig = rig("port_field_count", basic());
        let mut c = rig.logged_in();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "PORT",
                "PORT 127,0,0,1",
                "PORT 127,0,0,1,4",
                "PORT 127,0,0,1,4,1,7",
                "PORT 127,0,0,1,4,1,",
                "PORT ,127,0,0,1,4,1",
                "PORT 127,,0,0,1,4,1",
                "PORT 127.0.0.1,4,1",
                "PORT (127,0,0,1,4,1)",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn port_with_signs_is_refused() {
        let rig = rig("port_signs", basic());
        let mut c = rig.logged_in();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "PORT +127,0,0,1,4,1",
                "PORT 127,0,0,1,-4,1",
                "PORT 127,0,0,1,4,+1",
                "PORT 127,0,0,-1,4,1",
                "PORT 127,0,0,1,4,-0",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn port_with_blanks_inside_is_refused() {
        let rig = rig("port_blanks", basic());
        let mut c = rig.logged_in();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "PORT 127, 0,0,1,4,1",
                "PORT 127,0,0,1,4 ,1",
                "PORT 127,0,0,1,4,1 x",
                "PORT 127\t,0,0,1,4,1",
                "PORT 127,0,0,1,4,\t1",
                "PORT 127,0,0,1,4,1\t",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn port_with_overlong_leading_zeros_is_refused() {
        let rig = rig("port_zeros", basic());
        let mut c = rig.logged_in();
        // Up to three digits a field is plain decimal (RFC 959), so "001" is 1.
        c.expect("PORT 127,000,000,001,004,001", 200);
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "PORT 0127,0,0,1,4,1",
                "PORT 127,0,0,1,0004,1",
                "PORT 127,0,0,1,4,0001",
                "PORT 127,0,0,0001,4,1",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn port_to_unspecified_broadcast_and_multicast_is_refused() {
        let rig = rig("port_special", basic());
        let mut c = rig.logged_in();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "PORT 0,0,0,0,4,1",
                "PORT 255,255,255,255,4,1",
                "PORT 224,0,0,1,4,1",
                "PORT 239,255,255,250,7,108",
                "PORT 127,255,255,255,4,1",
                "EPRT |1|0.0.0.0|1025|",
                "EPRT |1|255.255.255.255|1025|",
                "EPRT |1|224.0.0.1|1025|",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn eprt_family_mismatch_gives_522_with_the_supported_family() {
        let rig = rig("eprt_522", basic());
        let mut c = rig.logged_in();
        for arg in [
            "|2|2001:db8::1|5000|",
            "|2|::1|5000|",
            "|2|::127.0.0.1|5000|", // IPv4-compatible is IPv6, unlike IPv4-mapped
            "|3|127.0.0.1|5000|",
            "|0|127.0.0.1|5000|",
            "|9|127.0.0.1|5000|",
            "|255|127.0.0.1|5000|",
        ] {
            let r = c.expect(&format!("EPRT {arg}"), 522);
            assert!(r.text().contains("(1)"), "{arg}: {r:?}");
        }
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "EPRT |256|127.0.0.1|5000|",
                "EPRT |x|127.0.0.1|5000|",
                "EPRT |1000|127.0.0.1|5000|",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn eprt_with_other_delimiters() {
        let rig = rig("eprt_delims", basic());
        let w = watch(&rig.rt, SocketAddr::new(lo(2), 0));
        let p = w.addr.port();
        let mut c = rig.logged_in();
        // RFC 2428: any printable delimiter other than a digit works if used four times.
        c.expect("EPRT !1!127.0.0.1!5000!", 200);
        c.expect("EPRT #1#127.0.0.1#5000#", 200);
        refuse_all(
            &rig,
            &mut c,
            &[
                format!("EPRT !1!127.0.0.2!{p}!"),
                format!("EPRT |1!127.0.0.1!{p}|"),
                format!("EPRT  1 127.0.0.1 {p} "),
                format!("EPRT \x7f1\x7f127.0.0.1\x7f{p}\x7f"),
                format!("EPRT 111127.0.0.11{p}1"),
            ],
            501,
            &[&w],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn eprt_with_empty_or_missing_fields_is_refused() {
        let rig = rig("eprt_empty", basic());
        let mut c = rig.logged_in();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "EPRT",
                "EPRT |",
                "EPRT ||||",
                "EPRT |||5000|",
                "EPRT |1||5000|",
                "EPRT |1|127.0.0.1||",
                "EPRT ||127.0.0.1|5000|",
                "EPRT |1|127.0.0.1|5000",
                "EPRT |1|127.0.0.1|5000||",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn eprt_addresses_that_inet_aton_would_accept_are_refused() {
        let rig = rig("eprt_aton", basic());
        let mut c = rig.logged_in();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "EPRT |1|127.1|5000|",
                "EPRT |1|0x7f.0.0.1|5000|",
                "EPRT |1|2130706433|5000|",
                "EPRT |1|127.0.0.01|5000|",
                "EPRT |1|0177.0.0.1|5000|",
                "EPRT |1|localhost|5000|",
                "EPRT |1|127.0.0.1 |5000|",
                "EPRT |1| 127.0.0.1|5000|",
                "EPRT |2|::ffff:127.0.0.1%lo|5000|",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn eprt_ports_out_of_range_are_refused() {
        let rig = rig("eprt_ports", basic());
        let mut c = rig.logged_in();
        refuse_all(
            &rig,
            &mut c,
            &strings(&[
                "EPRT |1|127.0.0.1|0|",
                "EPRT |1|127.0.0.1|65536|",
                "EPRT |1|127.0.0.1|99999|",
                "EPRT |1|127.0.0.1|1023|",
                "EPRT |1|127.0.0.1|-1|",
                "EPRT |1|127.0.0.1|1e4|",
                "EPRT |1|127.0.0.1|0x1f90|",
                "EPRT |1|127.0.0.1|000005000|",
            ]),
            501,
            &[],
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn epsv_family_arguments() {
        let rig = rig("epsv_families", basic());
        let mut c = rig.logged_in();
        for arg in ["2", "3", "0"] {
            let r = c.expect(&format!("EPSV {arg}"), 522);
            assert!(r.text().contains("(1)"), "{r:?}");
        }
        for arg in ["x", "1 ", " 1", "-1", "ALLX", "1000"] {
            c.expect(&format!("EPSV {arg}"), 501);
        }
        assert_eq!(
            rig.proxy.metrics.port_leases.get(),
            0,
            "a refused EPSV leased a port"
        );
        c.expect("EPSV 1", 229);
        assert_eq!(rig.proxy.metrics.port_leases.get(), 1);
        rig.server.assert_never_saw(b"EPSV");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn epsv_all_refuses_every_other_way_to_set_up_data() {
        let rig = rig("epsv_all", basic());
        let w = watch(&rig.rt, SocketAddr::new(lo(1), 0));
        let p = w.addr.port();
        let mut c = rig.logged_in();
        c.expect("epsv all", 200);
        for cmd in [
            "PASV".to_string(),
            "pasv".to_string(),
            format!("Port {}", six([127, 0, 0, 1], p)),
            format!("EPRT |1|127.0.0.1|{p}|"),
        ] {
            c.expect(&cmd, 501);
        }
        c.expect("LPSV", 502);
        c.expect("LPRT 4,4,127,0,0,1,2,4,1", 502);
        c.expect("RETR x", 425);
        w.assert_untouched("PORT after EPSV ALL");
        c.expect("EPSV 1", 229);
        c.expect("EPSV", 229);
        assert_eq!(rig.proxy.metrics.port_leases.get(), 1);
        // The client's EPSV ALL/EPSV are never relayed; the PASV the server sees is
        // ftpgate's own, sent ahead for the next transfer.
        rig.server.assert_never_saw(b"EPSV");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn lprt_lpsv_and_spsv_get_502_and_are_not_relayed() {
        let rig = rig("lprt_502", basic());
        let w = watch(&rig.rt, SocketAddr::new(lo(2), 0));
        let p = w.addr.port();
        let mut c = rig.logged_in();
        for cmd in [
            format!("LPRT 4,4,127,0,0,2,2,{},{}", p >> 8, p & 0xff),
            "LPRT 6,16,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2,4,1".to_string(),
            "LPSV".to_string(),
            "SPSV".to_string(),
            "lpsv".to_string(),
        ] {
            c.expect(&cmd, 502);
        }
        c.expect("RETR x", 425);
        w.assert_untouched("LPRT target");
        for verb in [&b"LPRT"[..], b"LPSV", b"SPSV", b"lpsv"] {
            rig.server.assert_never_saw(verb);
        }
        assert_eq!(rig.proxy.metrics.port_leases.get(), 0);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn a_refused_port_drops_the_earlier_data_plan() {
        let rig = rig("port_drops_plan", basic());
        let w = watch(&rig.rt, SocketAddr::new(lo(1), 0));
        let p = w.addr.port();
        let mut c = rig.logged_in();
        c.expect(&format!("PORT {}", six([127, 0, 0, 1], p)), 200);
        c.expect("PORT 127,0,0,2,4,1", 501);
        c.expect("RETR x", 425);
        // A PASV listener is released by a refused PORT too.
        c.expect("PASV", 227);
        assert_eq!(rig.proxy.metrics.port_leases.get(), 1);
        c.expect("EPRT |1|127.0.0.1|80|", 501);
        assert_eq!(rig.proxy.metrics.port_leases.get(), 0, "PASV listener kept");
        c.expect("LIST", 425);
        w.assert_untouched("the first PORT's target after a refused PORT");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn eprt_ipv4_mapped_client_address_is_canonicalised_and_works() {
        let rig = mini_rig("eprt_mapped_ok", MiniOpts::default(), "passive", "", "");
        let mut c = rig.logged_in();
        let l = TcpListener::bind("127.0.0.1:0").expect("client data listener");
        let p = l.local_addr().expect("addr").port();
        c.expect(&format!("EPRT |2|::ffff:127.0.0.1|{p}|"), 200);
        c.send("RETR f");
        assert_eq!(c.reply().code, 150);
        let mut data = accept_timeout(&l, IO_TIMEOUT).expect("data connection from the proxy");
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("read data");
        assert_eq!(c.reply().code, 226);
        assert_eq!(got, *MiniOpts::default().payload);
        assert!(
            !rig.mini.seen().iter().any(|l| l.starts_with("EPRT")),
            "{:?}",
            rig.mini.seen()
        );
        quit(c);
        rig.stop(1);
    }

    #[test]
    fn the_server_only_ever_sees_the_proxys_own_port_command() {
        let rig = mini_rig("port_rewritten", MiniOpts::default(), "active", "", "");
        let mut c = rig.logged_in();
        let l = TcpListener::bind("127.0.0.1:0").expect("client data listener");
        let p = l.local_addr().expect("addr").port();
        c.expect(&format!("PORT {}", six([127, 0, 0, 1], p)), 200);
        c.send("RETR f");
        assert_eq!(c.reply().code, 150);
        let mut data = accept_timeout(&l, IO_TIMEOUT).expect("data connection from the proxy");
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("read data");
        assert_eq!(c.reply().code, 226);
        assert_eq!(got, *MiniOpts::default().payload);
        let ports: Vec<String> = rig
            .mini
            .seen()
            .into_iter()
            .filter(|l| l.starts_with("PORT"))
            .collect();
        assert_eq!(ports.len(), 1, "{ports:?}");
        let n: Vec<u16> = ports[0][5..]
            .split(',')
            .map(|x| x.parse().expect("PORT field"))
            .collect();
        assert_eq!(n[..4], [127, 0, 0, 1]);
        let server_port = n[4] << 8 | n[5];
        assert!(
            rig.ports.proxy_active.contains(&server_port),
            "PORT {server_port} outside data.server_active_ports"
        );
        assert_ne!(server_port, p, "the client's port reached the server");
        quit(c);
        rig.stop(1);
    }
}

// ---------------------------------------------------------------------------------------
// (4) Hostile server PASV/EPSV replies

mod server_passive {
    use super::*;

    /// A script server that answers each PASV/EPSV with the next of `replies` (cycling)
    /// and everything else like [`basic_answer`].
    fn cycling(replies: Vec<String>) -> Answer {
        let next = AtomicUsize::new(0);
        answer(move |l| match split_command(l).0.as_str() {
            "PASV" | "EPSV" => {
                let i = next.fetch_add(1, Ordering::SeqCst) % replies.len();
                vec![say(&replies[i])]
            }
            "RETR" | "LIST" => vec![say("150 here it comes"), say("226 done")],
            _ => basic_answer(l),
        })
    }

    /// For each reply: client PASV (answered by the proxy), then RETR; the proxy's own
    /// PASV to the server gets the hostile reply and the client gets 425. The session
    /// goes on, no data task is started, and the client's passive listener is released.
    fn each_gives_425(name: &'static str, replies: &[&str], data_extra: &str, watches: &[&Watch]) {
        let rig = rig_with(
            name,
            vec![say("220 script ready")],
            cycling(replies.iter().map(|s| s.to_string()).collect()),
            data_extra,
            "",
        );
        let mut c = rig.logged_in();
        for reply in replies {
            c.expect("PASV", 227);
            let r = c.cmd("RETR x");
            assert_eq!(r.code, 425, "server said {reply:?}; client got {r:?}");
            assert!(
                !r.text().contains("127,0,0,2") && !r.text().contains("(|||"),
                "the server's address text reached the client: {r:?}"
            );
            assert_eq!(rig.proxy.metrics.port_leases.get(), 0, "after {reply:?}");
        }
        c.expect("NOOP", 200);
        for w in watches {
            w.assert_untouched("an address from a hostile passive reply");
        }
        rig.server.assert_never_saw(b"RETR");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn pasv_reply_naming_another_host_is_replaced_by_the_control_address() {
        let opts = MiniOpts {
            announce: [127, 0, 0, 2],
            ..MiniOpts::default()
        };
        let rig = mini_rig("pasv_other_host", opts, "passive", "", "");
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        let mut data = data_stream(a);
        let r = c.cmd("RETR f");
        assert_eq!(r.code, 150, "{r:?}");
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("read data");
        assert_eq!(c.reply().code, 226);
        assert_eq!(got, *MiniOpts::default().payload);
        assert_eq!(
            rig.mini.log.foreign_hits.load(Ordering::SeqCst),
            0,
            "connected to 127.0.0.2"
        );
        assert_eq!(rig.mini.log.data_accepts.load(Ordering::SeqCst), 1);
        quit(c);
        rig.stop(1);
    }

    #[test]
    fn check_policy_refuses_a_pasv_reply_naming_another_host() {
        let opts = MiniOpts {
            announce: [127, 0, 0, 2],
            ..MiniOpts::default()
        };
        let rig = mini_rig(
            "pasv_check",
            opts,
            "passive",
            "server_pasv_address: check",
            "",
        );
        let mut c = rig.logged_in();
        rig.pasv(&mut c);
        let r = c.cmd("RETR f");
        assert_eq!(r.code, 425, "{r:?}");
        // The client is told the reply was refused, never the address it named.
        assert!(!r.text().contains("127.0.0.2"), "{r:?}");
        c.expect("NOOP", 200);
        assert_eq!(rig.mini.log.foreign_hits.load(Ordering::SeqCst), 0);
        assert_eq!(rig.mini.log.data_accepts.load(Ordering::SeqCst), 0);
        assert!(
            !rig.mini.seen().iter().any(|l| l.starts_with("RETR")),
            "RETR relayed after a refused 227"
        );
        quit(c);
        rig.stop(0);
    }

    #[test]
    fn trust_policy_still_refuses_unspecified_broadcast_and_multicast() {
        each_gives_425(
            "pasv_trust_special",
            &[
                "227 Entering Passive Mode (0,0,0,0,195,80)",
                "227 Entering Passive Mode (255,255,255,255,195,80)",
                "227 Entering Passive Mode (224,0,0,1,195,80)",
            ],
            "server_pasv_address: trust",
            &[],
        );
    }

    #[test]
    fn pasv_replies_to_privileged_ports_are_refused() {
        each_gives_425(
            "pasv_privileged",
            &[
                "227 Entering Passive Mode (127,0,0,1,3,255)", // 1023
                "227 Entering Passive Mode (127,0,0,1,0,22)",
                "227 Entering Passive Mode (127,0,0,2,0,25)",
                "227 Entering Passive Mode (127,0,0,1,0,0)",
                "229 Entering Extended Passive Mode (|||1023|)",
                "229 Entering Extended Passive Mode (|||21|)",
            ],
            "",
            &[],
        );
    }

    #[test]
    fn pasv_reply_to_port_1023_is_never_connected() {
        // As root, watch the very port the reply names (under use_control: 127.0.0.1).
        let rig = rig_with(
            "pasv_1023_watched",
            vec![say("220 script ready")],
            cycling(vec!["227 Entering Passive Mode (127,0,0,1,3,255)".into()]),
            "",
            "",
        );
        let w = try_watch(&rig.rt, "127.0.0.1:1023".parse().expect("addr"));
        let mut c = rig.logged_in();
        c.expect("PASV", 227);
        let r = c.expect("RETR x", 425);
        assert!(!r.text().contains("1023"), "{r:?}");
        match &w {
            Some(w) => w.assert_untouched("127.0.0.1:1023"),
            None => eprintln!("note: 127.0.0.1:1023 not bindable here; only the 425 is checked"),
        }
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn garbage_227_replies_are_refused() {
        each_gives_425(
            "pasv_garbage",
            &[
                "227 Entering Passive Mode",
                "227 Entering Passive Mode (127,0,0,1,300,1)",
                "227 Entering Passive Mode (127,0,0,1,4)",
                "227 Entering Passive Mode (127,0,0,1,4,1,7)",
                "227 Entering Passive Mode (127,0,0,1,-4,1)",
                "227 Entering Passive Mode (127,0,0,1,0004,1)",
                "227 Entering Passive Mode (127, 0,0,1,4,1)",
                "227 =127,0,0,1,4,1,,",
                "227 Entering Passive Mode (127.0.0.1:1025)",
                "227",
                "227 (,,,,,)",
                "227 Entering Passive Mode (999999999999,0,0,1,4,1)",
            ],
            "",
            &[],
        );
    }

    #[test]
    fn malformed_229_replies_are_refused() {
        each_gives_425(
            "epsv_garbage",
            &[
                "229 Entering Extended Passive Mode (|||0|)",
                "229 Entering Extended Passive Mode (|||70000|)",
                "229 Entering Extended Passive Mode (||||)",
                "229 Entering Extended Passive Mode |||5000|",
                "229 Entering Extended Passive Mode (|||5000)",
                "229 Entering Extended Passive Mode (!|!5000!)",
                "229 Entering Extended Passive Mode (|1|127.0.0.2|5000|)",
                "229 Entering Extended Passive Mode (|||-5000|)",
                "229 Entering Extended Passive Mode (1115000)",
                "229",
            ],
            "",
            &[],
        );
    }

    #[test]
    fn server_refusing_passive_mode_gives_425() {
        each_gives_425(
            "pasv_refused",
            &[
                "502 PASV not implemented",
                "530 not logged in",
                "500 what?",
                "228 long passive",
            ],
            "",
            &[],
        );
    }

    /// A watch on 127.0.0.2 and the script server's text naming it: `{6}` becomes
    /// `127,0,0,2,p1,p2`, `{p}` the port.
    fn watched_script(
        name: &'static str,
        verbs: &'static [&'static str],
        text: &'static [u8],
    ) -> (Rig, Watch) {
        let port = Arc::new(std::sync::atomic::AtomicU16::new(0));
        let p2 = Arc::clone(&port);
        let rig = rig(
            name,
            answer(move |l| {
                let (verb, _) = split_command(l);
                if !verbs.contains(&verb.as_str()) {
                    return basic_answer(l);
                }
                let p = p2.load(Ordering::SeqCst);
                let t = String::from_utf8_lossy(text)
                    .replace("{6}", &six([127, 0, 0, 2], p))
                    .replace("{p}", &p.to_string())
                    .replace("{line}", &String::from_utf8_lossy(l));
                vec![Step::Send(t.into_bytes())]
            }),
        );
        let w = watch(&rig.rt, SocketAddr::new(lo(2), 0));
        port.store(w.addr.port(), Ordering::SeqCst);
        (rig, w)
    }

    #[test]
    fn passive_reply_in_a_multi_line_reply_is_text() {
        let (rig, w) = watched_script(
            "embedded_227",
            &["STAT"],
            b"211-Status of the server:\r\n\
              227 Entering Passive Mode ({6})\r\n\
              229 Entering Extended Passive Mode (|||{p}|)\r\n\
              PORT {6}\r\n\
              211 End of status\r\n",
        );
        let mut c = rig.logged_in();
        let r = c.expect("STAT", 211);
        assert_eq!(r.lines.len(), 5, "{r:?}");
        assert!(
            // Padded (SECURITY.md 12): an inner line never reads as a final reply.
            r.lines[1].starts_with(" 227 Entering Passive Mode (127,0,0,2,"),
            "{r:?}"
        );
        c.expect("RETR x", 425);
        w.assert_untouched("an address inside a multi-line reply");
        assert_eq!(rig.proxy.metrics.port_leases.get(), 0);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn a_227_answering_another_command_is_never_acted_on() {
        let (rig, w) = watched_script(
            "227_to_site",
            &["SITE", "HELP"],
            b"227 Entering Passive Mode ({6})\r\n",
        );
        let mut c = rig.logged_in();
        // Never acted on, and its address text never reaches the client (SECURITY.md 3):
        // the reply is withheld and replaced.
        let r = c.cmd("SITE x");
        assert_eq!(r.code, 502, "{r:?}");
        assert!(
            !r.lines.concat().contains('('),
            "address text crossed the proxy: {r:?}"
        );
        c.cmd("HELP");
        c.expect("RETR x", 425);
        w.assert_untouched("an address in a reply to a non-PASV command");
        assert_eq!(rig.proxy.metrics.port_leases.get(), 0);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn a_229_answering_another_command_is_never_acted_on() {
        let (rig, w) = watched_script(
            "229_to_site",
            &["SITE"],
            b"229 Entering Extended Passive Mode (|||{p}|)\r\n",
        );
        let mut c = rig.logged_in();
        assert_eq!(c.cmd("SITE x").code, 502);
        c.expect("LIST", 425);
        w.assert_untouched("a port in a 229 to a non-EPSV command");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn a_227_inside_an_error_echo_is_relayed_as_text() {
        let (rig, w) = watched_script(
            "227_echo",
            &["XYZW"],
            b"500 '{line}': command not understood\r\n",
        );
        let mut c = rig.logged_in();
        let p = w.addr.port();
        let cmd = format!(
            "XYZW 227 Entering Passive Mode ({})",
            six([127, 0, 0, 2], p)
        );
        let r = c.expect(&cmd, 500);
        assert!(r.text().contains(&six([127, 0, 0, 2], p)), "{r:?}");
        c.expect("RETR x", 425);
        w.assert_untouched("an address in an echoed command");
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn an_unsolicited_227_after_a_reply_is_dropped() {
        // One write: an extra reply arriving after the client's next command would be
        // indistinguishable from that command's reply (see the report).
        let (rig, w) = watched_script(
            "227_unsolicited",
            &["SITE"],
            b"200 ok\r\n227 Entering Passive Mode ({6})\r\n",
        );
        let mut c = rig.logged_in();
        c.expect("SITE x", 200);
        let r = c.expect("NOOP", 200);
        assert_eq!(r.lines, ["200 NOOP ok"], "the unsolicited 227 was relayed");
        c.expect("RETR x", 425);
        w.assert_untouched("an unsolicited 227");
        quit(c);
        rig.finish(1);
    }
}

// ---------------------------------------------------------------------------------------
// (5) Data-connection hijack: one accept, from the expected peer

mod hijack {
    use super::*;

    #[test]
    fn intruders_on_the_passive_port_cannot_inject_an_upload() {
        let rig = mini_rig("hijack_upload", MiniOpts::default(), "passive", "", "");
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        // Three third parties get there first and write junk meant for the server.
        let intruders: Vec<TcpStream> = [2u8, 3, 4]
            .iter()
            .map(|&n| {
                let mut s = connect_from(lo(n), a).expect("third party connects");
                let _ = s.write_all(b"INJECTED BY A THIRD PARTY");
                s
            })
            .collect();
        let mut data = data_stream(a);
        let (upload, _) = random_file(300_000);
        let r = c.cmd("STOR f");
        assert_eq!(r.code, 150, "{r:?}");
        data.write_all(&upload).expect("upload");
        drop(data);
        assert_eq!(c.reply().code, 226);
        assert_eq!(
            rig.mini.uploads(),
            vec![upload],
            "the server received other bytes"
        );
        for s in intruders {
            assert_intruder_closed(intruder_outcome(s), "passive-port intruder");
        }
        quit(c);
        rig.stop(1);
    }

    #[test]
    fn intruder_on_the_server_side_active_listener_cannot_inject_a_download() {
        let opts = MiniOpts {
            intrude_active: true,
            ..MiniOpts::default()
        };
        let rig = mini_rig("hijack_active_listener", opts, "active", "", "");
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        let mut data = data_stream(a);
        let r = c.cmd("RETR f");
        assert_eq!(r.code, 150, "{r:?}");
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("read data");
        assert_eq!(c.reply().code, 226);
        assert_eq!(
            got,
            *MiniOpts::default().payload,
            "the client got other bytes"
        );
        wait_until("the intruder's outcome", Duration::from_secs(6), || {
            !rig.mini.intruders().is_empty()
        });
        let outcomes = rig.mini.intruders();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].0, 0, "the intruder read bytes: {outcomes:?}");
        assert_ne!(outcomes[0].1, "still open after 5 s", "{outcomes:?}");
        quit(c);
        rig.stop(1);
    }

    #[test]
    fn connection_to_the_passive_port_after_the_transfer_started() {
        let opts = MiniOpts {
            payload: Arc::new(vec![7u8; 400_000]),
            chunk_gap: Some(Duration::from_millis(2)),
            ..MiniOpts::default()
        };
        let rig = mini_rig("hijack_late", opts, "passive", "", "");
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        let mut data = data_stream(a);
        let r = c.cmd("RETR f");
        assert_eq!(r.code, 150, "{r:?}");
        let mut first = vec![0u8; 8192];
        data.read_exact(&mut first).expect("first bytes");
        // Mid-transfer: the passive listener is gone or never accepts another peer.
        let late = connect_from(lo(2), a);
        let late_same_ip = TcpStream::connect_timeout(&a, Duration::from_secs(2));
        let mut rest = Vec::new();
        data.read_to_end(&mut rest).expect("rest of the data");
        assert_eq!(first.len() + rest.len(), 400_000);
        assert!(first.iter().chain(&rest).all(|&b| b == 7));
        assert_eq!(c.reply().code, 226);
        for (who, s) in [("127.0.0.2", late), ("the client's address", late_same_ip)] {
            match s {
                Err(e) => assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused,
                    "{who}: {e}"
                ),
                Ok(s) => assert_intruder_closed(intruder_outcome(s), who),
            }
        }
        quit(c);
        rig.stop(1);
    }

    #[test]
    fn passive_port_is_closed_once_its_accept_deadline_passed() {
        let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 1s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n";
        let rig = mini_rig(
            "hijack_after_deadline",
            MiniOpts::default(),
            "passive",
            "",
            extra,
        );
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        c.send("RETR f");
        let mut r = c.reply();
        if r.code / 100 == 1 {
            r = c.reply();
        }
        assert_eq!(r.code, 425, "{r:?}");
        wait_until(
            "the passive lease to be released",
            Duration::from_secs(3),
            || rig.proxy.metrics.port_leases.get() == 0,
        );
        match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
            Ok(s) => assert_intruder_closed(intruder_outcome(s), "late client"),
        }
        c.expect("NOOP", 200);
        quit(c);
        rig.stop(1);
    }
}

// ---------------------------------------------------------------------------------------
// (6) Reply robustness: strict pairing, strict syntax, bounded size

mod replies {
    use super::*;

    /// A rig whose server answers `SITE <n>` with `bodies[n]` (raw bytes) and then does
    /// whatever `after` says (e.g. close).
    fn numbered(name: &'static str, bodies: Vec<Vec<u8>>, after: Vec<Step>, extra: &str) -> Rig {
        rig_with(
            name,
            vec![say("220 script ready")],
            answer(move |l| {
                let (verb, arg) = split_command(l);
                if verb != "SITE" {
                    return basic_answer(l);
                }
                let n: usize = String::from_utf8_lossy(&arg).parse().unwrap_or(0);
                let mut steps = vec![Step::Send(bodies[n].clone())];
                steps.extend(after.iter().cloned());
                steps
            }),
            "",
            extra,
        )
    }

    #[test]
    fn unsolicited_replies_are_dropped() {
        // After the banner and after a reply, each in the same write as what precedes it.
        let rig = rig_with(
            "unsolicited",
            vec![Step::Send(
                b"220 hi\r\n200 spurious after the banner\r\n".to_vec(),
            )],
            answer(|l| match split_command(l).0.as_str() {
                "SITE" => vec![Step::Send(
                    b"200 SITE ok\r\n250 spurious\r\n150 spurious\r\n".to_vec(),
                )],
                _ => basic_answer(l),
            }),
            "",
            "",
        );
        let mut c = rig.logged_in();
        c.expect("SITE x", 200);
        let r = c.expect("NOOP", 200);
        assert_eq!(r.lines, ["200 NOOP ok"]);
        let r = c.expect("SYST", 215);
        assert_eq!(r.lines, ["215 UNIX Type: L8"]);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn unsolicited_421_is_relayed_and_closes_the_session() {
        let rig = rig(
            "unsolicited_421",
            answer(|l| match split_command(l).0.as_str() {
                "SITE" => vec![Step::Send(
                    b"200 SITE ok\r\n421 Server going down\r\n".to_vec(),
                )],
                _ => basic_answer(l),
            }),
        );
        let mut c = rig.logged_in();
        c.expect("SITE x", 200);
        let r = c.expect_close(421);
        assert_eq!(r.lines, ["421 Server going down"]);
        rig.finish(1);
    }

    fn count_150_then(c: &mut Ctrl) -> (usize, Reply) {
        let mut n = 0;
        loop {
            let r = c.reply();
            if r.code == 150 {
                n += 1;
            } else {
                return (n, r);
            }
        }
    }

    #[test]
    fn ten_thousand_150s_to_a_relayed_command_get_421_after_a_small_cap() {
        let rig = rig(
            "flood_150",
            answer(|l| match split_command(l).0.as_str() {
                "SITE" => vec![Step::Send(b"150 still working\r\n".repeat(10_000))],
                _ => basic_answer(l),
            }),
        );
        let mut c = rig.logged_in();
        c.send("SITE x");
        let (n, r) = count_150_then(&mut c);
        assert!(n <= 16, "{n} preliminary replies relayed");
        assert_eq!(r.code, 421, "{r:?}");
        c.expect_eof();
        rig.finish(1);
    }

    #[test]
    fn ten_thousand_150s_to_the_proxys_own_pasv_get_421() {
        let rig = rig(
            "flood_150_pasv",
            answer(|l| match split_command(l).0.as_str() {
                "PASV" => vec![Step::Send(b"150 thinking\r\n".repeat(10_000))],
                _ => basic_answer(l),
            }),
        );
        let mut c = rig.logged_in();
        c.expect("PASV", 227);
        c.send("RETR x");
        let (n, r) = count_150_then(&mut c);
        assert_eq!(n, 0, "a 1xx to ftpgate's own PASV reached the client");
        assert_eq!(r.code, 421, "{r:?}");
        c.expect_eof();
        rig.finish(1);
    }

    #[test]
    fn malformed_reply_codes_close_with_421_and_are_never_relayed() {
        let bad: Vec<&[u8]> = vec![
            b"2200 x",
            b"22 x",
            b"abc",
            b"200\0x",
            b"600 x",
            b"099 x",
            b" 200 x",
            b"200x",
            b"200\tx",
            b"",
            b"2a0 x",
            b"200\rx",
            b"\xff\xfb\x01200 x",
            b"+OK POP3 ready",
        ];
        let bodies: Vec<Vec<u8>> = bad
            .iter()
            .map(|b| {
                let mut v = b.to_vec();
                v.extend_from_slice(b"\r\n");
                v
            })
            .collect();
        let n = bodies.len();
        let rig = numbered("malformed_codes", bodies, vec![], "");
        for (i, b) in bad.iter().enumerate() {
            let mut c = rig.logged_in();
            c.send(&format!("SITE {i}"));
            let r = c.reply();
            assert_eq!(r.code, 421, "server said {b:?}; client got {r:?}");
            assert!(r.text().contains("invalid reply"), "{r:?}");
            c.expect_eof();
        }
        rig.finish(n);
    }

    #[test]
    fn reply_line_at_max_line_is_relayed_one_byte_over_closes() {
        let exact = format!("200 {}\r\n", "z".repeat(MAX_LINE - 4)).into_bytes();
        let over = format!("200 {}\r\n", "z".repeat(MAX_LINE - 3)).into_bytes();
        let rig = numbered("reply_max_line", vec![exact, over], vec![], "");
        let mut c = rig.logged_in();
        let r = c.expect("SITE 0", 200);
        assert_eq!(r.lines[0].len(), MAX_LINE);
        let r = c.cmd("SITE 1");
        assert_eq!(r.code, 421, "{r:?}");
        assert!(r.lines[0].len() < 100, "{r:?}");
        c.expect_eof();
        rig.finish(1);
    }

    fn multi_line(lines: usize) -> Vec<u8> {
        let mut v = b"211-start\r\n".to_vec();
        for i in 0..lines - 2 {
            v.extend_from_slice(format!(" line {i}\r\n").as_bytes());
        }
        v.extend_from_slice(b"211 end\r\n");
        v
    }

    #[test]
    fn multi_line_reply_at_max_reply_lines_is_relayed_one_over_closes() {
        let rig = numbered(
            "max_reply_lines",
            vec![multi_line(20), multi_line(21)],
            vec![],
            &format!("limits: {{ max_line: {MAX_LINE}, max_reply_lines: 20 }}\n"),
        );
        let mut c = rig.logged_in();
        let r = c.expect("SITE 0", 211);
        assert_eq!(r.lines.len(), 20);
        c.send("SITE 1");
        let r = c.expect_close(421);
        assert_eq!(
            r.lines.len(),
            1,
            "part of the long reply was relayed: {r:?}"
        );
        rig.finish(1);
    }

    /// A multi-line reply whose lines (without CRLF) add up to exactly `total` bytes.
    fn reply_of_bytes(total: usize) -> Vec<u8> {
        let (first, last) = ("211-start", "211 end");
        let mut left = total - first.len() - last.len();
        let mut v = format!("{first}\r\n").into_bytes();
        while left > 0 {
            let n = left.clamp(2, 100);
            let n = if left - n == 1 { n - 1 } else { n };
            v.extend_from_slice(format!(" {}\r\n", "y".repeat(n - 1)).as_bytes());
            left -= n;
        }
        v.extend_from_slice(format!("{last}\r\n").as_bytes());
        v
    }

    #[test]
    fn multi_line_reply_at_max_reply_bytes_is_relayed_one_over_closes() {
        let rig = numbered(
            "max_reply_bytes",
            vec![reply_of_bytes(2000), reply_of_bytes(2001)],
            vec![],
            &format!("limits: {{ max_line: {MAX_LINE}, max_reply_bytes: 2000 }}\n"),
        );
        let mut c = rig.logged_in();
        let r = c.expect("SITE 0", 211);
        assert_eq!(r.lines.iter().map(String::len).sum::<usize>(), 2000);
        c.send("SITE 1");
        let r = c.expect_close(421);
        assert_eq!(r.lines.len(), 1, "{r:?}");
        rig.finish(1);
    }

    #[test]
    fn server_closing_mid_multi_line_reply_gives_421_without_the_fragment() {
        let rig = numbered(
            "close_mid_reply",
            vec![b"211-start\r\n more\r\n".to_vec()],
            vec![Step::Close],
            "",
        );
        let mut c = rig.logged_in();
        c.send("SITE 0");
        let r = c.expect_close(421);
        assert_eq!(r.lines.len(), 1, "{r:?}");
        assert!(!r.text().contains("211"), "{r:?}");
        rig.finish(1);
    }

    #[test]
    fn server_closing_mid_line_gives_421() {
        let rig = numbered(
            "close_mid_line",
            vec![b"200 partial".to_vec()],
            vec![Step::Close],
            "",
        );
        let mut c = rig.logged_in();
        c.send("SITE 0");
        let r = c.expect_close(421);
        assert!(!r.text().contains("partial"), "{r:?}");
        rig.finish(1);
    }

    #[test]
    fn other_codes_inside_a_multi_line_reply_are_text() {
        let lines: [&[u8]; 6] = [b"211-a", b"212 b", b"211-c", b"2110 d", b" 211 e", b"211"];
        let body: Vec<u8> = lines.iter().flat_map(|l| [*l, b"\r\n"].concat()).collect();
        // What the client sees: inner lines that could read as a final reply are padded
        // with one SP (SECURITY.md 12); `ddd-` lines and the ends are untouched.
        let seen: [&[u8]; 6] = [b"211-a", b" 212 b", b"211-c", b" 2110 d", b" 211 e", b"211"];
        let rig = numbered("multi_line_codes", vec![body], vec![], "");
        let mut c = rig.logged_in();
        c.send("SITE 0");
        // Read raw: the harness's reader only knows "211 " as an end line, not a bare "211".
        for want in seen {
            assert_eq!(c.raw_line().expect("reply line"), want);
        }
        let r = c.expect("NOOP", 200);
        assert_eq!(
            r.lines,
            ["200 NOOP ok"],
            "pairing after the multi-line reply"
        );
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn lf_only_replies_are_relayed_with_crlf() {
        let rig = numbered(
            "lf_replies",
            vec![b"211-a\n b\n211 end\n".to_vec(), b"200 ok\n".to_vec()],
            vec![],
            "",
        );
        let mut c = rig.logged_in();
        // Ctrl asserts that every line it reads ends in CRLF.
        assert_eq!(c.expect("SITE 0", 211).lines.len(), 3);
        c.expect("SITE 1", 200);
        quit(c);
        rig.finish(1);
    }

    fn banner_refused(name: &'static str, banner: Vec<Step>) {
        let rig = rig_with(
            name,
            banner,
            basic(),
            "",
            "limits: { max_line: 512, max_reply_lines: 20 }\n",
        );
        let mut c = Ctrl::connect(rig.proxy.addr);
        let r = c.expect_close(421);
        assert!(r.text().contains("greeting"), "{r:?}");
        rig.finish(1);
    }

    #[test]
    fn ssh_banner_is_refused() {
        banner_refused("banner_ssh", vec![say("SSH-2.0-OpenSSH_9.6")]);
    }

    #[test]
    fn non_220_banner_is_refused() {
        banner_refused("banner_500", vec![say("500 go away")]);
    }

    #[test]
    fn endless_120_banner_is_refused() {
        banner_refused("banner_120", vec![Step::Send(b"120 wait\r\n".repeat(50))]);
    }

    #[test]
    fn oversized_multi_line_banner_is_refused() {
        let mut b = b"220-hello\r\n".to_vec();
        b.extend(b" more\r\n".repeat(50));
        b.extend_from_slice(b"220 ready\r\n");
        banner_refused("banner_long", vec![Step::Send(b)]);
    }

    #[test]
    fn banner_with_nul_or_telnet_negotiation_is_refused() {
        banner_refused(
            "banner_nul",
            vec![Step::Send(b"220 hi\0there\r\n".to_vec())],
        );
        banner_refused(
            "banner_iac",
            vec![Step::Send(b"\xff\xfd\x18220 hi\r\n".to_vec())],
        );
    }

    #[test]
    fn server_that_never_answers_is_cut_at_idle() {
        let extra = format!("limits: {{ max_line: {MAX_LINE} }}\ntimeouts: {{ connect: 2s, banner: 5s, data_accept: 5s, idle: 1s, data_stall: 10s, login: 30s, shutdown_grace: 2s }}\n");
        let rig = rig_with(
            "silent_server",
            vec![say("220 hi")],
            answer(|l| match split_command(l).0.as_str() {
                "SITE" | "PASV" => vec![],
                _ => basic_answer(l),
            }),
            "",
            &extra,
        );
        for cmd in ["SITE x", "RETR x"] {
            let mut c = rig.logged_in();
            if cmd == "RETR x" {
                c.expect("PASV", 227);
            }
            let started = Instant::now();
            c.send(cmd);
            let r = c.expect_close(421);
            assert!(r.text().contains("Timeout"), "{r:?}");
            let took = started.elapsed();
            assert!(took < Duration::from_secs(3), "{cmd}: 421 after {took:?}");
        }
        rig.finish(2);
    }

    #[test]
    fn server_that_never_sends_the_final_reply_is_cut_at_final_reply() {
        let opts = MiniOpts {
            final_reply: false,
            ..MiniOpts::default()
        };
        let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, final_reply: 1s, shutdown_grace: 2s }\n";
        let rig = mini_rig("no_final_reply", opts, "passive", "", extra);
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        let mut data = data_stream(a);
        assert_eq!(c.cmd("RETR f").code, 150);
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("read data");
        assert_eq!(got, *MiniOpts::default().payload);
        let started = Instant::now();
        let r = c.expect_close(421);
        assert!(r.text().contains("final reply"), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        rig.stop(1);
    }
}

// ---------------------------------------------------------------------------------------
// (7) Exhaustion, deadlines and mis-pairing

mod exhaustion {
    use super::*;

    #[test]
    fn passive_ports_exhausted_by_several_sessions_give_425_then_recover() {
        let _dog = Watchdog::new("pasv_exhaustion", Duration::from_secs(45));
        let rt = runtime();
        let server = start_script_server(&rt, vec![say("220 hi")], basic());
        let ports = Ports::new().narrow(3);
        let proxy = start_proxy_yaml(
            &rt,
            &proxy_yaml_data(server.addr, &ports, "passive", "", ""),
        );
        let login = || {
            let mut c = Ctrl::greeted(proxy.addr);
            c.expect("USER a", 331);
            c.expect("PASS a", 230);
            c
        };
        let mut holders: Vec<Ctrl> = (0..3).map(|_| login()).collect();
        for (i, c) in holders.iter_mut().enumerate() {
            let cmd = if i % 2 == 0 { "PASV" } else { "EPSV" };
            c.cmd(cmd);
        }
        assert_eq!(proxy.metrics.port_leases.get(), 3);
        let mut late = login();
        let r = late.expect("PASV", 425);
        assert!(r.text().contains("no free port"), "{r:?}");
        late.expect("EPSV", 425);
        late.expect("NOOP", 200);
        // Released by a session ending: the next PASV works, inside the range.
        let first = holders.remove(0);
        quit(first);
        let started = Instant::now();
        let r = loop {
            let r = late.cmd("PASV");
            if r.code == 227 || started.elapsed() > Duration::from_secs(5) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(r.code, 227, "{r:?}");
        let port = parse_227(&r.text()).port();
        assert!(
            ports.proxy_passive.contains(&port),
            "port {port} outside {:?}",
            ports.proxy_passive
        );
        eprintln!(
            "passive port recovered {:?} after its session quit",
            started.elapsed()
        );
        for c in holders.into_iter().chain([late]) {
            quit(c);
        }
        assert_eq!(proxy.metrics.transfers_total.get(), 0);
        proxy.stop(&rt);
    }

    #[test]
    fn max_sessions_per_ip_refuses_with_421_and_spares_other_addresses() {
        let rig = rig_with(
            "per_ip",
            vec![say("220 hi")],
            basic(),
            "",
            "limits: { max_line: 512, max_sessions_per_ip: 2 }\n",
        );
        let a = rig.client();
        let b = rig.client();
        let mut c = Ctrl::connect(rig.proxy.addr);
        let r = c.expect_close(421);
        assert!(r.text().contains("from your address"), "{r:?}");
        let mut other = Ctrl::connect_from(lo(2), rig.proxy.addr);
        assert_eq!(other.reply().code, 220);
        assert_eq!(rig.proxy.metrics.sessions_refused.get(), 1);
        quit(a);
        wait_until("a per-IP slot to free up", Duration::from_secs(5), || {
            rig.proxy.metrics.sessions.get() == 2
        });
        let d = rig.client();
        quit(b);
        quit(d);
        quit(other);
        // The refused session never reached the server.
        rig.finish(4);
    }

    #[test]
    fn max_sessions_refusals_cost_no_upstream_connection() {
        let rig = rig_with(
            "max_sessions_upstream",
            vec![say("220 hi")],
            basic(),
            "",
            "limits: { max_line: 512, max_sessions: 2 }\n",
        );
        let a = rig.client();
        let b = rig.client();
        for _ in 0..5 {
            let mut c = Ctrl::connect(rig.proxy.addr);
            let r = c.expect_close(421);
            assert!(r.text().contains("Too many sessions"), "{r:?}");
        }
        assert_eq!(rig.proxy.metrics.sessions_refused.get(), 5);
        quit(a);
        quit(b);
        rig.finish(2);
    }

    fn login_timeout_rig(name: &'static str) -> Rig {
        rig_with(
            name,
            vec![say("220 hi")],
            basic(),
            "",
            "limits: { max_line: 512 }\ntimeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, login: 1s, shutdown_grace: 2s }\n",
        )
    }

    #[test]
    fn client_that_never_sends_is_cut_at_login_timeout() {
        let rig = login_timeout_rig("login_timeout_silent");
        let started = Instant::now();
        let mut c = rig.client();
        let r = c.expect_close(421);
        assert!(r.text().contains("Login timeout"), "{r:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{took:?}"
        );
        rig.finish(1);
    }

    #[test]
    fn client_that_keeps_talking_but_never_logs_in_is_still_cut() {
        let rig = login_timeout_rig("login_timeout_busy");
        let started = Instant::now();
        let mut c = rig.client();
        c.expect("USER a", 331);
        let r = loop {
            let r = c.cmd("NOOP");
            if r.code != 200 {
                break r;
            }
            assert!(started.elapsed() < Duration::from_secs(3), "never cut");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(r.code, 421, "{r:?}");
        c.expect_eof();
        rig.finish(1);
    }

    #[test]
    fn rein_after_the_login_deadline_does_not_close_the_session() {
        // REIN logs the user out; the login deadline must start again, not fire at once
        // because the session is older than timeouts.login.
        let rig = login_timeout_rig("rein_login_deadline");
        let mut c = rig.logged_in();
        std::thread::sleep(Duration::from_millis(1300));
        c.expect("REIN", 220);
        c.expect("PASV", 530);
        c.expect("USER b", 331);
        c.expect("PASS b", 230);
        c.expect("PASV", 227);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn auth_tls_then_port_in_one_write_closes_and_port_is_never_processed() {
        // STARTTLS injection (CVE-2011-1575, CVE-2021-22947): whatever was pipelined
        // behind AUTH was written in plaintext, so the session ends right there.
        let rig = rig("auth_then_port", basic());
        let l = TcpListener::bind("127.0.0.1:0").expect("client listener");
        let p = l.local_addr().expect("addr").port();
        for first in ["AUTH TLS", "AUTH SSL", "auth tls"] {
            let mut c = rig.logged_in();
            c.write_raw(
                format!("{first}\r\nPORT {}\r\nRETR x\r\n", six([127, 0, 0, 1], p)).as_bytes(),
            );
            let r = c.expect_close(421);
            assert!(r.text().contains("pipelined after AUTH"), "{r:?}");
        }
        assert!(
            accept_timeout(&l, Duration::from_millis(200)).is_err(),
            "connected to the PORT target"
        );
        for verb in [&b"AUTH"[..], b"auth", b"PORT", b"RETR"] {
            rig.server.assert_never_saw(verb);
        }
        rig.finish(3);
    }

    #[test]
    fn auth_alone_and_the_rest_of_rfc_4217_are_refused_with_502() {
        let rig = rig("auth_alone", basic());
        let mut c = rig.logged_in();
        for cmd in ["AUTH TLS", "AUTH SSL", "PBSZ 0", "PROT P", "CCC"] {
            c.expect(cmd, 502);
        }
        // AUTH and PORT in separate segments: two ordinary commands, paired in order.
        c.socket().set_nodelay(true).expect("nodelay");
        c.write_raw(b"AUTH TLS\r\n");
        assert_eq!(c.reply().code, 502);
        c.write_raw(b"PORT 127,0,0,2,4,1\r\n");
        assert_eq!(c.reply().code, 501);
        c.expect("RETR x", 425);
        for verb in [&b"AUTH"[..], b"PBSZ", b"PROT", b"CCC", b"PORT"] {
            rig.server.assert_never_saw(verb);
        }
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn abor_behind_a_queued_command_still_aborts_at_once() {
        // The session docs: while a transfer runs, ABOR is acted on at once and any other
        // command waits its turn. A command already waiting must not hold the ABOR back.
        let opts = MiniOpts {
            payload: Arc::new(vec![9u8; 4 * 1024 * 1024]),
            chunk_gap: Some(Duration::from_millis(1)),
            ..MiniOpts::default()
        };
        let rig = mini_rig("abor_behind_stash", opts, "passive", "", "");
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        let mut data = data_stream(a);
        assert_eq!(c.cmd("RETR f").code, 150);
        let mut first = vec![0u8; 64 * 1024];
        data.read_exact(&mut first).expect("first bytes");
        c.send("NOOP");
        std::thread::sleep(Duration::from_millis(100));
        let abor = Instant::now();
        c.send("ABOR");
        let mut rest = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = data.read(&mut buf) {
            if n == 0 {
                break;
            }
            rest += n;
        }
        let ended = abor.elapsed();
        let replies: Vec<u16> = (0..3).map(|_| c.reply().code).collect();
        assert!(
            ended < Duration::from_millis(500) && first.len() + rest < 4 * 1024 * 1024,
            "the data went on for {ended:?} after ABOR ({} more bytes, replies {replies:?})",
            rest
        );
        assert_eq!(replies[0], 426, "the aborted transfer's reply: {replies:?}");
        quit(c);
        rig.stop(1);
    }

    #[test]
    fn feat_hides_what_the_proxy_refuses() {
        let rig = rig(
            "feat_filter",
            answer(|l| {
                match split_command(l).0.as_str() {
                "FEAT" => vec![Step::Send(
                    b"211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPSV\r\n EPRT\r\n LPSV\r\n MDTM\r\n ccc\r\n211 End\r\n".to_vec(),
                )],
                _ => basic_answer(l),
            }
            }),
        );
        let mut c = rig.logged_in();
        let r = c.expect("FEAT", 211);
        assert_eq!(
            r.lines,
            ["211-Features:", " EPSV", " EPRT", " MDTM", "211 End"]
        );
        quit(c);
        rig.finish(1);
    }
}

// ---------------------------------------------------------------------------------------
// (8) First line, login gate, command policy

mod gates {
    use super::*;

    #[test]
    fn http_shaped_first_lines_close_with_421() {
        let lines = [
            "GET / HTTP/1.1",
            "CONNECT ftp.example.com:443 HTTP/1.1",
            "POST /upload HTTP/1.0",
            "PRI * HTTP/2.0",
            "get /index.html http/1.1",
            "OPTIONS * HTTP/1.1",
        ];
        let rig = rig("http_first_line", basic());
        for line in lines {
            let mut c = rig.client();
            // What a browser sends: the request line and headers in one write.
            c.write_raw(format!("{line}\r\nHost: x\r\nUser-Agent: test\r\n\r\n").as_bytes());
            let r = c.expect_close(421);
            assert!(r.text().contains("not an HTTP proxy"), "{line}: {r:?}");
        }
        assert!(rig.server.seen().is_empty(), "{:?}", rig.server.seen_text());
        rig.finish(lines.len());
    }

    #[test]
    fn http_shaped_line_after_the_first_is_an_ordinary_command() {
        let rig = rig("http_later_line", basic());
        let mut c = rig.logged_in();
        c.expect("GET / HTTP/1.1", 502);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn data_commands_before_login_get_530_and_never_reach_the_server() {
        let rig = rig(
            "before_login",
            answer(|l| match split_command(l) {
                (v, a) if v == "PASS" && a == b"wrong" => vec![say("530 Login incorrect")],
                _ => basic_answer(l),
            }),
        );
        let cmds: [&[u8]; 12] = [
            b"MLSD",
            b"STOU",
            b"APPE x",
            b"LPRT 4,4,127,0,0,1,2,4,1",
            b"LPSV",
            b"SPSV",
            b"pasv",
            b"Port 127,0,0,1,4,1",
            b"eprt |1|127.0.0.1|5000|",
            b"epsv all",
            b"rest 0",
            b"Retr x",
        ];
        let mut c = rig.client();
        c.expect_all(&cmds, 530);
        c.expect("USER a", 331);
        c.expect_all(&cmds, 530);
        c.expect("PASS wrong", 530);
        c.expect_all(&cmds, 530);
        assert_eq!(rig.proxy.metrics.port_leases.get(), 0);
        let seen = rig.server.seen_text();
        assert_eq!(seen, ["USER a", "PASS wrong"], "{seen:?}");
        c.expect("PASS x", 230);
        c.expect("EPSV ALL", 200);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn rein_logs_out_and_closes_the_data_gate_again() {
        let rig = rig("rein_gate", basic());
        let mut c = rig.logged_in();
        c.expect("EPSV ALL", 200);
        c.expect("PASV", 501);
        c.expect("REIN", 220);
        c.expect("PASV", 530);
        c.expect("PORT 127,0,0,1,4,1", 530);
        c.expect("USER a", 331);
        c.expect("PASS a", 230);
        // EPSV ALL was reset with the login.
        c.expect("PASV", 227);
        quit(c);
        rig.finish(1);
    }

    #[test]
    fn acl_commands_deny_gives_534_before_and_after_login() {
        let rig = rig_with(
            "acl_deny",
            vec![say("220 hi")],
            basic(),
            "",
            "limits: { max_line: 512 }\nacl: { commands: { deny: [SITE, DELE, RNFR] } }\n",
        );
        let denied: [&[u8]; 5] = [b"SITE CHMOD 777 x", b"dele x", b"RnFr x", b"SITE", b"DELE"];
        let mut c = rig.client();
        c.expect_all(&denied, 534);
        c.expect("USER a", 331);
        c.expect("PASS a", 230);
        c.expect_all(&denied, 534);
        c.expect("NOOP", 200);
        for verb in [&b"SITE"[..], b"dele", b"DELE", b"RnFr"] {
            rig.server.assert_never_saw(verb);
        }
        quit(c);
        rig.finish(1);
    }
}

// ---------------------------------------------------------------------------------------
// Property tests over real sockets

mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    fn runner() -> TestRunner {
        TestRunner::new(Config {
            cases: 32,
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// A client stream that touches every framing path: CRLF and LF endings, IAC IAC,
    /// IP/DM before ABOR, Telnet negotiation, bare CR, NUL, an empty line, an overlong
    /// line, refused PORT/EPSV, all pipelined, ending in QUIT. (No PASV: its port is
    /// random; no AUTH: what follows it in the same segment closes the session by design.)
    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"USER anonymous\r\nPASS x\r\nNOOP\nSITE a\xff\xffb\r\n\r\n");
        s.extend_from_slice(b"SITE x\0y\r\nSITE bare\rcr\r\n\xff\xfb\x01NOOP\r\n");
        s.extend_from_slice(b"SITE ");
        s.extend(std::iter::repeat_n(b'L', 2 * MAX_LINE));
        s.extend_from_slice(b"\r\nEPSV 2\r\nPORT 127,0,0,2,4,1\r\n\xff\xf4\xff\xf2ABOR\r\n");
        s.extend_from_slice(b"SYST\r\nPWD\nSITE done\r\nQUIT\r\n");
        s
    }

    #[test]
    fn any_segmentation_of_a_command_stream_gives_the_same_transcript() {
        let rig = rig("prop_segments", basic());
        let stream = stream();
        let sessions = AtomicUsize::new(0);
        let transcript = |cuts: &[usize], gap: Duration| -> Vec<u8> {
            sessions.fetch_add(1, Ordering::SeqCst);
            let mut c = Ctrl::connect(rig.proxy.addr);
            c.write_split(&stream, cuts, gap);
            c.read_to_eof().expect("transcript")
        };
        let reference = transcript(&[], Duration::ZERO);
        let text = String::from_utf8_lossy(&reference).into_owned();
        let codes: Vec<&str> = text.lines().map(|l| &l[..3]).collect();
        assert_eq!(
            codes,
            [
                "220", "331", "230", "200", "200", "500", "500", "500", "500", "500", "522", "501",
                "226", "215", "257", "200", "221"
            ],
            "{text}"
        );
        runner()
            .run(&(vec(any::<Index>(), 0..24), 0u64..3), |(cuts, gap)| {
                let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
                cuts.sort_unstable();
                cuts.dedup();
                let got = transcript(&cuts, Duration::from_millis(gap));
                prop_assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&reference),
                    "cut at {:?}",
                    cuts
                );
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let n = sessions.load(Ordering::SeqCst);
        eprintln!("{n} sessions through ftpgate");
        rig.finish(n);
    }

    /// Pieces a hostile client stream is made of: real commands (some of which open
    /// passive listeners or start transfer setups), framing and Telnet hazards, and noise.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"USER a\r\n".to_vec()),
            Just(b"PASS b\r\n".to_vec()),
            Just(b"PASV\r\n".to_vec()),
            Just(b"EPSV\r\n".to_vec()),
            Just(b"EPSV ALL\r\n".to_vec()),
            Just(b"PORT 127,0,0,1,4,1\r\n".to_vec()),
            Just(b"EPRT |1|127.0.0.1|1025|\r\n".to_vec()),
            Just(b"RETR x\r\n".to_vec()),
            Just(b"STOR x\r\n".to_vec()),
            Just(b"ABOR\r\n".to_vec()),
            Just(b"REIN\r\n".to_vec()),
            Just(b"AUTH TLS\r\n".to_vec()),
            Just(b"GET / HTTP/1.1\r\n".to_vec()),
            Just(b"\xff\xf4\xff\xf2".to_vec()),
            Just(b"\xff".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\0".to_vec()),
            Just(vec![b'A'; MAX_LINE + 7]),
            vec(any::<u8>(), 0..40),
        ]
    }

    /// Every line ftpgate sends is a CRLF-terminated reply line (`ddd ` or `ddd-`; the
    /// script server sends no multi-line replies), and the first is the banner.
    fn check_replies(out: &[u8]) -> Result<(), TestCaseError> {
        prop_assert!(
            out.starts_with(b"220 "),
            "no banner first: {:?}",
            String::from_utf8_lossy(out)
        );
        prop_assert!(
            out.ends_with(b"\r\n"),
            "unterminated: {:?}",
            String::from_utf8_lossy(out)
        );
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let ok = line.len() >= 5
                && line[0].is_ascii_digit()
                && (b'1'..=b'5').contains(&line[0])
                && line[1].is_ascii_digit()
                && line[2].is_ascii_digit()
                && line[3] == b' '
                && line.ends_with(b"\r")
                && !line[..line.len() - 1].contains(&b'\r')
                && !line.contains(&0);
            prop_assert!(ok, "bad reply line {:?}", String::from_utf8_lossy(line));
        }
        Ok(())
    }

    #[test]
    fn arbitrary_client_bytes_never_break_the_proxy() {
        let panics_before = worker_panics();
        let rig = rig("prop_bytes", basic());
        let sessions = AtomicUsize::new(0);
        runner()
            .run(&vec(piece(), 0..40), |pieces| {
                let bytes = pieces.concat();
                sessions.fetch_add(2, Ordering::SeqCst);
                let mut c = Ctrl::connect(rig.proxy.addr);
                c.set_read_timeout(Duration::from_secs(10));
                let _ = c.try_write_raw(&bytes);
                let _ = c.socket().shutdown(std::net::Shutdown::Write);
                let out = c
                    .read_to_eof()
                    .map_err(|e| TestCaseError::fail(format!("no EOF after the input: {e}")))?;
                check_replies(&out)?;
                // The proxy goes on serving a fresh session.
                let mut fresh = Ctrl::greeted(rig.proxy.addr);
                fresh.expect("NOOP", 200);
                quit(fresh);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(worker_panics(), panics_before, "a session task panicked");
        let n = sessions.load(Ordering::SeqCst);
        eprintln!("{n} sessions through ftpgate");
        rig.finish(n);
    }
}
