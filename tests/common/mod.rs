//! Harness for the integration tests: a libunftp server on a temp dir, an in-process
//! ftpgate in front of it, a raw line-oriented FTP client, and the checks every test ends
//! with (gauges back to zero, clean shutdown).
//!
//! Each test owns a multi-threaded tokio runtime that runs the servers, while the test
//! thread drives blocking clients (suppaftp or [`Ctrl`]/[`RawFtp`]). Every wait has a
//! deadline: sockets get read timeouts, polls are bounded, and a [`Watchdog`] aborts the
//! binary if a test still hangs, so a broken proxy fails a run instead of stalling it.
//!
//! Ports: control listeners bind port 0. Data port ranges (ftpgate's and libunftp's) come
//! from [`Ports::new`], which hands out disjoint 50-port blocks from 28000-32749, starting
//! at an offset derived from the process id so concurrent test binaries rarely overlap.
//! The three fixed ranges on this machine are disjoint and all below the kernel's
//! ephemeral range (32768-60999 by default, `/proc/sys/net/ipv4/ip_local_port_range`):
//!
//! | who | range | where set |
//! |---|---|---|
//! | benchmark (`benches/bench.sh`) | 12000-19999 | `BENCH_PORT_LO`/`BENCH_PORT_HI` |
//! | interop suite (`tests/interop/run.sh`) | 20000-27999 | `INTEROP_PORT_LO`/`INTEROP_PORT_HI` |
//! | these Rust tests | 28000-32749 | [`PORT_BASE`], [`BLOCK`] x [`BLOCKS`] |
//!
//! Preconditions: a test that cannot run here (no root for a privileged port, no IPv6
//! loopback, too low a fd limit) calls [`precondition`]: under `CI` (which runs as root
//! with all of these) that fails the test; elsewhere it prints `SKIPPED: <test>: <reason>`
//! and the test returns, so a skip is visible and never silent.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod tls;

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Read timeout of every client socket: long enough for a debug build moving a few MiB.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the gauges get to return to zero after a test's last session.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Ports

/// First data port of the Rust tests' range (see the table in the module docs).
pub const PORT_BASE: u16 = 28000;
/// Ports per [`Ports`] block.
pub const BLOCK: u16 = 50;
/// Blocks in the range: 28000..=32749.
pub const BLOCKS: u16 = 95;

static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);

/// One test's disjoint data port ranges, cut from a 50-port block.
#[derive(Debug, Clone)]
pub struct Ports {
    /// ftpgate `data.passive_ports` (16 ports).
    pub proxy_passive: RangeInclusive<u16>,
    /// ftpgate `data.server_active_ports` (16 ports).
    pub proxy_active: RangeInclusive<u16>,
    /// libunftp's passive range (18 ports).
    pub unftp: RangeInclusive<u16>,
}

impl Ports {
    pub fn new() -> Ports {
        let offset = (std::process::id() % u32::from(BLOCKS)) as u16;
        let n = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        let base = PORT_BASE + ((offset + n) % BLOCKS) * BLOCK;
        Ports {
            proxy_passive: base..=base + 15,
            proxy_active: base + 16..=base + 31,
            unftp: base + 32..=base + BLOCK - 1,
        }
    }

    /// The same block, with ftpgate's ranges cut down to `n` ports each.
    pub fn narrow(mut self, n: u16) -> Ports {
        let (p, a) = (*self.proxy_passive.start(), *self.proxy_active.start());
        self.proxy_passive = p..=p + n - 1;
        self.proxy_active = a..=a + n - 1;
        self
    }
}

impl Default for Ports {
    fn default() -> Self {
        Ports::new()
    }
}

fn range_text(r: &RangeInclusive<u16>) -> String {
    format!("{}-{}", r.start(), r.end())
}

/// A port on 127.0.0.1 that nobody listens on (bound, noted, released).
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind probe listener");
    l.local_addr().expect("probe addr").port()
}

// ---------------------------------------------------------------------------------------
// Preconditions

static SKIPPED: AtomicU16 = AtomicU16::new(0);

/// Whether `test` may run: true if `ok`. Otherwise, under `CI` the test fails (CI has root,
/// IPv6 loopback and a high fd limit, so a missing precondition there is a broken machine);
/// elsewhere it prints `SKIPPED: <test>: <reason>` with this binary's running count of
/// skips, and the caller returns.
pub fn precondition(test: &str, ok: bool, reason: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: precondition missing under CI: {reason}"
    );
    let n = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
    eprintln!("SKIPPED: {test}: {reason} (skip {n} in this test binary)");
    false
}

/// Skips in this test binary so far.
pub fn skipped() -> u16 {
    SKIPPED.load(Ordering::SeqCst)
}

/// Whether this machine has an IPv6 loopback.
pub fn have_ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

// ---------------------------------------------------------------------------------------
// Runtime, watchdog

/// The runtime the servers of one test run on.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Aborts the whole test binary if the test holding it runs longer than `limit`: the last
/// line of defence against a hang that no socket timeout catches. Dropping it (the test
/// ended) wakes the watchdog thread at once.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    pub fn new(name: &'static str, limit: Duration) -> Watchdog {
        let (done, ended) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Disconnected (the Watchdog was dropped) is the event; a timeout is the hang.
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = ended.recv_timeout(limit) {
                eprintln!("watchdog: test `{name}` still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog(Some(done))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

// ---------------------------------------------------------------------------------------
// Files

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `len` random bytes and their SHA-256.
pub fn random_file(len: usize) -> (Vec<u8>, String) {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    let sum = sha256_hex(&bytes);
    (bytes, sum)
}

/// Waits (bounded) until `path` holds exactly the bytes hashing to `sum`: the server may
/// answer 226 a moment before its file handle is flushed.
pub fn assert_disk_file(path: &Path, sum: &str, what: &str) {
    let got = || std::fs::read(path).map(|b| (b.len(), sha256_hex(&b)));
    let ok = poll_until(
        Duration::from_secs(3),
        || matches!(&got(), Ok((_, s)) if s == sum),
    );
    assert!(
        ok,
        "{what}: {} on the server's disk: {:?}, want sha256 {sum}",
        path.display(),
        got()
    );
}

// ---------------------------------------------------------------------------------------
// libunftp

/// A libunftp server; its accept loop stops when this is dropped (and every session with
/// the runtime).
pub struct Unftp {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Unftp {
    pub fn new(addr: SocketAddr, task: tokio::task::JoinHandle<()>) -> Unftp {
        Unftp { addr, task }
    }
}

impl Drop for Unftp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts libunftp on 127.0.0.1 (port 0: we accept and hand each connection to
/// `Server::service`), serving `root` to any user and password, passive ports from
/// `ports`, and active mode (PORT) enabled.
pub fn start_unftp(rt: &Runtime, root: &Path, ports: RangeInclusive<u16>) -> Unftp {
    start_unftp_with(rt, root, ports, None)
}

/// libunftp's FTPS settings: its certificate, key, and whether TLS is required on the
/// control and data connections.
#[derive(Debug, Clone)]
pub struct UnftpTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub required: bool,
    /// Mutual TLS: client certificates signed by this CA are required.
    pub client_ca: Option<std::path::PathBuf>,
}

/// [`start_unftp`], with FTPS when `tls` is given.
pub fn start_unftp_with(
    rt: &Runtime,
    root: &Path,
    ports: RangeInclusive<u16>,
    tls: Option<UnftpTls>,
) -> Unftp {
    let root = root.to_path_buf();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind libunftp control listener");
    let addr = listener.local_addr().expect("libunftp addr");
    let task = rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let root = root.clone();
            let server = libunftp::ServerBuilder::new(Box::new(move || {
                unftp_sbe_fs::Filesystem::new(root.clone()).expect("libunftp filesystem root")
            }))
            .passive_ports(ports.clone())
            .active_passive_mode(libunftp::options::ActivePassiveMode::ActiveAndPassive);
            let server = match &tls {
                None => server,
                Some(t) => {
                    let need = if t.required {
                        libunftp::options::FtpsRequired::All
                    } else {
                        libunftp::options::FtpsRequired::None
                    };
                    let server = server
                        .ftps(t.cert.clone(), t.key.clone())
                        .ftps_required(need, need);
                    match &t.client_ca {
                        None => server,
                        Some(ca) => server
                            .ftps_client_auth(libunftp::options::FtpsClientAuth::Require)
                            .ftps_trust_store(ca.clone()),
                    }
                }
            };
            let server = server.build().expect("libunftp server");
            tokio::spawn(server.service(stream));
        }
    });
    Unftp { addr, task }
}

/// A plain listener that accepts connections and never writes a byte (a server that
/// hangs before its banner). Sockets are held until the runtime ends.
pub fn start_silent_server(rt: &Runtime) -> SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind silent listener");
    let addr = listener.local_addr().expect("silent addr");
    rt.spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A scripted FTP server: sends `220`, then answers each command line with
/// `answer(line)` (full reply lines without the final CRLF), or closes the connection
/// when it returns `None`.
pub fn start_fake_server(rt: &Runtime, answer: fn(&str) -> Option<String>) -> SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind fake server");
    let addr = listener.local_addr().expect("fake addr");
    rt.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut lines = tokio::io::BufReader::new(rd).lines();
                if wr.write_all(b"220 fake\r\n").await.is_err() {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let Some(reply) = answer(line.trim_end()) else {
                        return;
                    };
                    if wr
                        .write_all(format!("{reply}\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------
// ftpgate

/// An in-process ftpgate.
pub struct Proxy {
    pub addr: SocketAddr,
    pub metrics: Arc<ftpgate::metrics::Metrics>,
    /// Reload, drain and readiness of this ftpgate.
    pub control: ftpgate::server::Control,
    pub token: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

/// The YAML for one listener in front of `upstream`, with `ports`, `server_mode`, short
/// timeouts, and `extra` appended as further top-level sections (`limits:`, or
/// `timeouts:`, which then replaces the default one).
pub fn proxy_yaml(upstream: SocketAddr, ports: &Ports, server_mode: &str, extra: &str) -> String {
    let timeouts = if extra.contains("timeouts:") {
        ""
    } else {
        "timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n"
    };
    format!(
        "listeners:\n  - name: t\n    bind: 127.0.0.1:0\n    route: {{ kind: fixed, upstreams: [\"{upstream}\"] }}\n\
         data: {{ passive_ports: {}, server_active_ports: {}, server_mode: {server_mode} }}\n{timeouts}{extra}",
        range_text(&ports.proxy_passive),
        range_text(&ports.proxy_active),
    )
}

/// Parses `yaml`, binds and serves an ftpgate on `rt`.
pub fn start_proxy_yaml(rt: &Runtime, yaml: &str) -> Proxy {
    let cfg =
        ftpgate::config::parse(yaml, "test").unwrap_or_else(|e| panic!("config: {e}\n{yaml}"));
    let metrics = Arc::new(ftpgate::metrics::Metrics::default());
    let bound = rt
        .block_on(ftpgate::server::bind(Arc::new(cfg), Arc::clone(&metrics)))
        .expect("ftpgate bind");
    let addr = bound.local_addrs()[0].1;
    let token = CancellationToken::new();
    let control = bound.control();
    let join = rt.spawn(bound.serve(token.clone()));
    Proxy {
        addr,
        metrics,
        control,
        token,
        join,
    }
}

/// [`proxy_yaml`] + [`start_proxy_yaml`].
pub fn start_proxy(
    rt: &Runtime,
    upstream: SocketAddr,
    ports: &Ports,
    server_mode: &str,
    extra: &str,
) -> Proxy {
    start_proxy_yaml(rt, &proxy_yaml(upstream, ports, server_mode, extra))
}

impl Proxy {
    /// Every test's ending: the gauges drain to zero, then ftpgate shuts down in time.
    pub fn stop(self, rt: &Runtime) {
        wait_for_zero(&self.metrics);
        self.token.cancel();
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), self.join).await })
            .expect("ftpgate serve() did not return within 10 s of cancel")
            .expect("ftpgate serve() task panicked");
    }
}

/// Waits up to [`DRAIN_TIMEOUT`] for sessions, transfers and port leases to be zero.
pub fn wait_for_zero(m: &ftpgate::metrics::Metrics) {
    let ok = poll_until(DRAIN_TIMEOUT, || gauges(m) == (0, 0, 0));
    assert!(
        ok,
        "gauges not back to zero after {DRAIN_TIMEOUT:?}: (sessions, transfers, port_leases) = {:?}",
        gauges(m)
    );
}

/// How often [`poll_until`] looks at its condition.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// The one polling primitive of the harness: checks `f()` every [`POLL_EVERY`] until it
/// holds (true) or `limit` has passed (false, after one last look). For conditions that
/// have no event to wait on (a gauge, a file, a kernel socket state).
pub fn poll_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return f();
        }
        std::thread::sleep(POLL_EVERY); // the poll interval, not a synchronisation guess
    }
}

/// Waits (bounded) until `f()` holds; fails naming `what` otherwise.
pub fn wait_until(what: &str, limit: Duration, f: impl FnMut() -> bool) {
    assert!(
        poll_until(limit, f),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// Polls `f()` until it returns `Some`, within `limit`; fails naming `what` otherwise.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let mut got = None;
    wait_until(what, limit, || {
        got = f();
        got.is_some()
    });
    got.expect("wait_until returned with a value")
}

// ---------------------------------------------------------------------------------------
// suppaftp

/// A suppaftp client through `addr`, logged in, binary type, with read timeouts on the
/// control connection and on passive data connections.
pub fn suppaftp_client(addr: SocketAddr, mode: suppaftp::Mode) -> suppaftp::FtpStream {
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to ftpgate");
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    tcp.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    let mut ftp = suppaftp::FtpStream::connect_with_stream(tcp)
        .expect("banner through ftpgate")
        .passive_stream_builder(|addr| {
            let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                .map_err(suppaftp::FtpError::ConnectionError)?;
            s.set_read_timeout(Some(IO_TIMEOUT))
                .map_err(suppaftp::FtpError::ConnectionError)?;
            Ok(s)
        });
    if mode == suppaftp::Mode::Active {
        ftp = ftp.active_mode(IO_TIMEOUT);
    } else {
        ftp.set_mode(mode);
    }
    ftp.login("anonymous", "test@example.com").expect("login");
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .expect("TYPE I");
    ftp
}

// ---------------------------------------------------------------------------------------
// Raw control connection

/// One reply: its code and its lines without CRLF (first `ddd-...`, last `ddd ...`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A raw control connection: lines in, replies out, every read with [`IO_TIMEOUT`].
pub struct Ctrl {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Ctrl {
    pub fn connect(addr: SocketAddr) -> Ctrl {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        Ctrl::from_stream(s)
    }

    /// Connects from a chosen local address (e.g. 127.0.0.2).
    pub fn connect_from(local: IpAddr, addr: SocketAddr) -> Ctrl {
        Ctrl::from_stream(connect_from(local, addr).expect("connect from"))
    }

    pub fn from_stream(s: TcpStream) -> Ctrl {
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
        s.set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        let writer = s.try_clone().expect("clone control stream");
        Ctrl {
            reader: BufReader::new(s),
            writer,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.writer.local_addr().expect("local addr")
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.writer.peer_addr().expect("peer addr")
    }

    /// Sends `line` + CRLF.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    pub fn send_bytes(&mut self, line: &[u8]) {
        let mut buf = line.to_vec();
        buf.extend_from_slice(b"\r\n");
        self.writer.write_all(&buf).expect("write control line");
    }

    /// Reads one line (without CRLF); `None` at EOF.
    fn read_line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .expect("read control line (timeout?)");
        if n == 0 {
            return None;
        }
        assert!(
            buf.ends_with(b"\r\n"),
            "reply line not CRLF-terminated: {buf:?}"
        );
        buf.truncate(buf.len() - 2);
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Reads one full reply, or `None` at EOF before its first line.
    pub fn try_reply(&mut self) -> Option<Reply> {
        let first = self.read_line()?;
        let code: u16 = first
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not a reply line: {first:?}"));
        let mut lines = vec![first.clone()];
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = format!("{code} ");
            loop {
                let line = self
                    .read_line()
                    .unwrap_or_else(|| panic!("EOF inside multi-line reply {lines:?}"));
                let done = line.starts_with(&end);
                lines.push(line);
                if done {
                    break;
                }
            }
        } else {
            assert_eq!(
                first.as_bytes().get(3),
                Some(&b' '),
                "bad reply line {first:?}"
            );
        }
        Some(Reply { code, lines })
    }

    pub fn reply(&mut self) -> Reply {
        self.try_reply().expect("reply, got EOF")
    }

    /// Sends `line` and reads its reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.reply()
    }

    /// Sends `line` and asserts the reply code.
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line} -> {r:?}");
        r
    }

    /// Asserts that the server closes the connection (EOF within the read timeout).
    pub fn expect_eof(&mut self) {
        if let Some(r) = self.try_reply() {
            panic!("expected EOF, got {r:?}");
        }
    }

    pub fn login(&mut self) {
        self.expect("USER anonymous", 331);
        self.expect("PASS test@example.com", 230);
        self.expect("TYPE I", 200);
    }
}

/// A TCP connection from `local` (port 0) to `addr`, with read timeout.
pub fn connect_from(local: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// Raw FTP client with all four data modes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMode {
    Pasv,
    Epsv,
    Port,
    Eprt,
}

/// A minimal FTP client over [`Ctrl`] that negotiates data connections itself, so tests
/// control exactly which command is sent (EPRT on IPv4, which suppaftp never sends).
pub struct RawFtp {
    pub ctrl: Ctrl,
    pub mode: DataMode,
}

/// Parses `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`.
pub fn parse_227(text: &str) -> SocketAddr {
    let inner = text
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("bad 227: {text}"));
    let n: Vec<u8> = inner
        .split(',')
        .map(|x| {
            x.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad 227: {text}"))
        })
        .collect();
    assert_eq!(n.len(), 6, "bad 227: {text}");
    SocketAddr::new(
        IpAddr::from([n[0], n[1], n[2], n[3]]),
        u16::from(n[4]) << 8 | u16::from(n[5]),
    )
}

/// Parses the port of `229 Entering Extended Passive Mode (|||port|)`.
pub fn parse_229(text: &str) -> u16 {
    let inner = text
        .split_once("(|||")
        .and_then(|(_, r)| r.split_once("|)"))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("bad 229: {text}"));
    inner.parse().unwrap_or_else(|_| panic!("bad 229: {text}"))
}

/// What [`RawFtp::prepare`] set up: where the client connects, or where it accepts.
pub enum Prepared {
    Connect(SocketAddr),
    Accept(TcpListener),
}

impl Prepared {
    /// The data connection, once the transfer command has been answered with 1xx.
    pub fn open(self) -> TcpStream {
        let s = match self {
            Prepared::Connect(addr) => {
                TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("data connect")
            }
            Prepared::Accept(l) => {
                accept_timeout(&l, IO_TIMEOUT).expect("no active data connection")
            }
        };
        s.set_read_timeout(Some(IO_TIMEOUT))
            .expect("data read timeout");
        s.set_write_timeout(Some(IO_TIMEOUT))
            .expect("data write timeout");
        s
    }
}

/// Accepts one connection within `limit`: a blocking accept(2) bounded by SO_RCVTIMEO
/// (which Linux applies to accept), so the test wakes on the connection, not on a poll.
pub fn accept_timeout(l: &TcpListener, limit: Duration) -> std::io::Result<TcpStream> {
    l.set_nonblocking(false)?;
    let sock = socket2::SockRef::from(l);
    sock.set_read_timeout(Some(limit.max(Duration::from_millis(1))))?;
    let got = l.accept();
    sock.set_read_timeout(None)?;
    let (s, _) = got.map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection within {limit:?}"),
        ),
        _ => e,
    })?;
    // The accepted socket is cloned from the listener, SO_RCVTIMEO included: undo that.
    s.set_read_timeout(None)?;
    Ok(s)
}

impl RawFtp {
    /// Connects through `addr`, reads the banner and logs in.
    pub fn login(addr: SocketAddr, mode: DataMode) -> RawFtp {
        let mut ctrl = Ctrl::connect(addr);
        let banner = ctrl.reply();
        assert_eq!(banner.code, 220, "banner {banner:?}");
        ctrl.login();
        RawFtp { ctrl, mode }
    }

    /// Sends PASV/EPSV/PORT/EPRT per `mode`.
    pub fn prepare(&mut self) -> Prepared {
        match self.mode {
            DataMode::Pasv => {
                let r = self.ctrl.expect("PASV", 227);
                Prepared::Connect(parse_227(&r.text()))
            }
            DataMode::Epsv => {
                let r = self.ctrl.expect("EPSV", 229);
                let port = parse_229(&r.text());
                Prepared::Connect(SocketAddr::new(self.ctrl.peer_addr().ip(), port))
            }
            DataMode::Port | DataMode::Eprt => {
                let l = TcpListener::bind(SocketAddr::new(self.ctrl.local_addr().ip(), 0))
                    .expect("active listener");
                let a = l.local_addr().expect("active addr");
                let line = match (self.mode, a) {
                    (DataMode::Port, SocketAddr::V4(v4)) => {
                        let ip = v4.ip().octets();
                        format!(
                            "PORT {},{},{},{},{},{}",
                            ip[0],
                            ip[1],
                            ip[2],
                            ip[3],
                            a.port() >> 8,
                            a.port() & 0xff
                        )
                    }
                    (_, a) => {
                        let af = if a.is_ipv4() { 1 } else { 2 };
                        format!("EPRT |{af}|{}|{}|", a.ip(), a.port())
                    }
                };
                self.ctrl.expect(&line, 200);
                Prepared::Accept(l)
            }
        }
    }

    /// Negotiates, sends `cmd`, expects a 1xx and returns the data connection. In passive
    /// modes the data connection is opened before the command, as most clients do.
    pub fn open(&mut self, cmd: &str) -> (Reply, TcpStream) {
        let prepared = self.prepare();
        match prepared {
            Prepared::Connect(_) => {
                let data = prepared.open();
                let r = self.ctrl.cmd(cmd);
                assert!(r.code / 100 == 1, "{cmd} -> {r:?}");
                (r, data)
            }
            Prepared::Accept(_) => {
                let r = self.ctrl.cmd(cmd);
                assert!(r.code / 100 == 1, "{cmd} -> {r:?}");
                (r, prepared.open())
            }
        }
    }

    /// Reads the transfer's final reply and asserts it is 226 or 250.
    pub fn finish(&mut self, cmd: &str) -> Reply {
        let r = self.ctrl.reply();
        assert!(r.code == 226 || r.code == 250, "{cmd} final reply {r:?}");
        r
    }

    pub fn download(&mut self, cmd: &str) -> Vec<u8> {
        let (_, mut data) = self.open(cmd);
        let mut out = Vec::new();
        data.read_to_end(&mut out).expect("read data connection");
        drop(data);
        self.finish(cmd);
        out
    }

    /// Uploads `bytes` with `cmd`; returns the preliminary reply (STOU names the file there).
    pub fn upload(&mut self, cmd: &str, bytes: &[u8]) -> Reply {
        let (r, mut data) = self.open(cmd);
        data.write_all(bytes).expect("write data connection");
        drop(data);
        self.finish(cmd);
        r
    }

    pub fn quit(mut self) {
        self.ctrl.expect("QUIT", 221);
        self.ctrl.expect_eof();
    }
}

// ---------------------------------------------------------------------------------------
// One interface over both clients, for the relay matrix

/// The operations the relay matrix runs, over either client.
pub trait FtpOps {
    fn retr(&mut self, name: &str) -> Vec<u8>;
    /// RETR from `offset` (REST first).
    fn retr_from(&mut self, name: &str, offset: usize) -> Vec<u8>;
    fn stor(&mut self, name: &str, bytes: &[u8]);
    fn appe(&mut self, name: &str, bytes: &[u8]);
    /// STOU; returns the 1xx reply text, where the server names the file.
    fn stou(&mut self, bytes: &[u8]) -> String;
    fn list(&mut self) -> String;
    fn nlst(&mut self) -> String;
    fn quit(self: Box<Self>);
}

impl<T: suppaftp::TlsStream> FtpOps for suppaftp::ImplFtpStream<T> {
    fn retr(&mut self, name: &str) -> Vec<u8> {
        self.retr_as_buffer(name).expect("RETR").into_inner()
    }
    fn retr_from(&mut self, name: &str, offset: usize) -> Vec<u8> {
        self.resume_transfer(offset).expect("REST");
        self.retr_as_buffer(name).expect("REST+RETR").into_inner()
    }
    fn stor(&mut self, name: &str, bytes: &[u8]) {
        let n = self
            .put_file(name, &mut std::io::Cursor::new(bytes))
            .expect("STOR");
        assert_eq!(n, bytes.len() as u64);
    }
    fn appe(&mut self, name: &str, bytes: &[u8]) {
        self.append_file(name, &mut std::io::Cursor::new(bytes))
            .expect("APPE");
    }
    fn stou(&mut self, bytes: &[u8]) -> String {
        use suppaftp::Status;
        let (r, mut data) = self
            .custom_data_command("STOU", &[Status::AboutToSend, Status::AlreadyOpen])
            .expect("STOU");
        data.write_all(bytes).expect("STOU data");
        data.finish().expect("STOU final reply");
        r.as_string().expect("STOU reply text")
    }
    fn list(&mut self) -> String {
        self.list(None).expect("LIST").join("\n")
    }
    fn nlst(&mut self) -> String {
        self.nlst(None).expect("NLST").join("\n")
    }
    fn quit(mut self: Box<Self>) {
        suppaftp::ImplFtpStream::quit(&mut *self).expect("QUIT");
    }
}

impl FtpOps for RawFtp {
    fn retr(&mut self, name: &str) -> Vec<u8> {
        self.download(&format!("RETR {name}"))
    }
    fn retr_from(&mut self, name: &str, offset: usize) -> Vec<u8> {
        // REST right before RETR (RFC 3659 5.3): negotiate the data connection first.
        let prepared = self.prepare();
        self.ctrl.expect(&format!("REST {offset}"), 350);
        let cmd = format!("RETR {name}");
        let mut data = match prepared {
            Prepared::Connect(_) => {
                let data = prepared.open();
                let r = self.ctrl.cmd(&cmd);
                assert!(r.code / 100 == 1, "{cmd} -> {r:?}");
                data
            }
            Prepared::Accept(_) => {
                let r = self.ctrl.cmd(&cmd);
                assert!(r.code / 100 == 1, "{cmd} -> {r:?}");
                prepared.open()
            }
        };
        let mut out = Vec::new();
        data.read_to_end(&mut out).expect("read data connection");
        drop(data);
        self.finish(&cmd);
        out
    }
    fn stor(&mut self, name: &str, bytes: &[u8]) {
        self.upload(&format!("STOR {name}"), bytes);
    }
    fn appe(&mut self, name: &str, bytes: &[u8]) {
        self.upload(&format!("APPE {name}"), bytes);
    }
    fn stou(&mut self, bytes: &[u8]) -> String {
        self.upload("STOU", bytes).text()
    }
    fn list(&mut self) -> String {
        String::from_utf8_lossy(&self.download("LIST")).into_owned()
    }
    fn nlst(&mut self) -> String {
        String::from_utf8_lossy(&self.download("NLST")).into_owned()
    }
    fn quit(self: Box<Self>) {
        RawFtp::quit(*self);
    }
}

// ---------------------------------------------------------------------------------------
// Routing helpers (multi-listener proxies, servers on chosen addresses)

/// [`start_proxy_yaml`], also returning every listener's (name, address) in config order.
pub fn start_proxy_yaml_all(rt: &Runtime, yaml: &str) -> (Proxy, Vec<(String, SocketAddr)>) {
    let cfg =
        ftpgate::config::parse(yaml, "test").unwrap_or_else(|e| panic!("config: {e}\n{yaml}"));
    let metrics = Arc::new(ftpgate::metrics::Metrics::default());
    let bound = rt
        .block_on(ftpgate::server::bind(Arc::new(cfg), Arc::clone(&metrics)))
        .expect("ftpgate bind");
    let addrs = bound.local_addrs();
    let token = CancellationToken::new();
    let control = bound.control();
    let join = rt.spawn(bound.serve(token.clone()));
    (
        Proxy {
            addr: addrs[0].1,
            metrics,
            control,
            token,
            join,
        },
        addrs,
    )
}

/// Like [`start_unftp`], but listening on `bind` (e.g. `127.0.0.2:0`, `[::1]:0`, or the
/// address of a server stopped earlier) and, when given, greeting with `220 {greeting}`.
pub fn start_unftp_at(
    rt: &Runtime,
    bind: SocketAddr,
    root: &Path,
    ports: RangeInclusive<u16>,
    greeting: Option<&'static str>,
) -> Unftp {
    let root = root.to_path_buf();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(bind))
        .unwrap_or_else(|e| panic!("bind libunftp control listener on {bind}: {e}"));
    let addr = listener.local_addr().expect("libunftp addr");
    let task = rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let root = root.clone();
            let mut builder = libunftp::ServerBuilder::new(Box::new(move || {
                unftp_sbe_fs::Filesystem::new(root.clone()).expect("libunftp filesystem root")
            }))
            .passive_ports(ports.clone())
            .active_passive_mode(libunftp::options::ActivePassiveMode::ActiveAndPassive);
            if let Some(g) = greeting {
                builder = builder.greeting(g);
            }
            let server = builder.build().expect("libunftp server");
            tokio::spawn(server.service(stream));
        }
    });
    Unftp { addr, task }
}

/// Stops a libunftp's accept loop (its listener closes; sessions already running go on)
/// and waits (bounded) until its port refuses connections.
pub fn stop_unftp(u: Unftp) {
    let addr = u.addr;
    drop(u);
    wait_until(
        &format!("{addr} to refuse connections"),
        Duration::from_secs(5),
        || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
    );
}

/// A scripted server on `bind` that counts the connections it accepts: greets with
/// `banner` (a full reply line without CRLF), then answers each command line with
/// `answer(line)`, closing when it returns `None`.
pub fn start_counting_server(
    rt: &Runtime,
    bind: SocketAddr,
    banner: &'static str,
    answer: fn(&str) -> Option<String>,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(bind))
        .unwrap_or_else(|e| panic!("bind counting server on {bind}: {e}"));
    let addr = listener.local_addr().expect("counting server addr");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    rt.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut lines = tokio::io::BufReader::new(rd).lines();
                if wr
                    .write_all(format!("{banner}\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let Some(reply) = answer(line.trim_end()) else {
                        return;
                    };
                    if wr
                        .write_all(format!("{reply}\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, count)
}

// ---------------------------------------------------------------------------------------
// Hostile peers, watched addresses and resource baselines (hostile.rs, resources.rs)

/// One step of a [`start_script_server`] answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes exactly (include the line ending).
    Send(Vec<u8>),
    /// Write these bytes one at a time, `gap` apart.
    Trickle(Vec<u8>, Duration),
    /// Write these bytes `n` times (a long stream without holding it in memory).
    Repeat(Vec<u8>, usize),
    /// Wait before the next step.
    Sleep(Duration),
    /// Close the control connection.
    Close,
}

/// `Step::Send` of `text` + CRLF.
pub fn say(text: &str) -> Step {
    Step::Send(format!("{text}\r\n").into_bytes())
}

/// How a scripted server answers one command line (received without its line ending).
/// An empty answer means silence: the server keeps reading.
pub type Answer = Arc<dyn Fn(&[u8]) -> Vec<Step> + Send + Sync>;

pub fn answer(f: impl Fn(&[u8]) -> Vec<Step> + Send + Sync + 'static) -> Answer {
    Arc::new(f)
}

/// The verb of a command line, upper-cased, and its argument.
pub fn split_command(line: &[u8]) -> (String, Vec<u8>) {
    let sp = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let verb = String::from_utf8_lossy(&line[..sp]).to_ascii_uppercase();
    let arg = line.get(sp + 1..).unwrap_or(&[]).to_vec();
    (verb, arg)
}

/// A well-behaved server's answers to the commands that need no data connection:
/// login, NOOP, PWD, SYST, CWD, REIN, ABOR, QUIT, and `SITE x`, which is echoed as
/// `200 SITE x` (bytes as received). Everything else gets 502.
pub fn basic_answer(line: &[u8]) -> Vec<Step> {
    let (verb, arg) = split_command(line);
    let text = match verb.as_str() {
        "USER" => "331 Password required",
        "PASS" => "230 Logged in",
        "TYPE" => "200 Type set",
        "NOOP" => "200 NOOP ok",
        "PWD" => "257 \"/\" is the current directory",
        "SYST" => "215 UNIX Type: L8",
        "CWD" => "250 Directory changed",
        "REIN" => "220 Ready for a new user",
        "ABOR" => "226 No transfer to abort",
        "QUIT" => return vec![say("221 Goodbye"), Step::Close],
        "SITE" => {
            let mut reply = b"200 SITE ".to_vec();
            reply.extend_from_slice(&arg);
            reply.extend_from_slice(b"\r\n");
            return vec![Step::Send(reply)];
        }
        _ => "502 Command not implemented",
    };
    vec![say(text)]
}

/// A scripted server (see [`start_script_server`]).
pub struct ScriptServer {
    pub addr: SocketAddr,
    /// Every command line received over all connections, without its line ending.
    seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptServer {
    pub fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The received lines as (lossy) text, for messages.
    pub fn seen_text(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    /// Control connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Asserts that no received line contains `needle`.
    pub fn assert_never_saw(&self, needle: &[u8]) {
        let seen = self.seen();
        assert!(
            !seen
                .iter()
                .any(|l| l.windows(needle.len()).any(|w| w == needle)),
            "the server received {:?}: {:?}",
            String::from_utf8_lossy(needle),
            self.seen_text()
        );
    }
}

/// A scripted FTP server on 127.0.0.1: runs `banner` on every connection, then answers each
/// line with `answer(line)`. Lines are read as raw bytes (no Telnet decoding), so a test
/// sees exactly what ftpgate put on the wire.
pub fn start_script_server(rt: &Runtime, banner: Vec<Step>, answer: Answer) -> ScriptServer {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind script server");
    let addr = listener.local_addr().expect("script server addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen2, accepted2) = (Arc::clone(&seen), Arc::clone(&accepted));
    let task = rt.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            accepted2.fetch_add(1, Ordering::SeqCst);
            let (banner, answer, seen) = (banner.clone(), Arc::clone(&answer), Arc::clone(&seen2));
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let (rd, mut wr) = s.into_split();
                let mut rd = tokio::io::BufReader::new(rd);
                if !run_steps(&mut wr, banner).await {
                    return;
                }
                loop {
                    let mut line = Vec::new();
                    match rd.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(line.clone());
                    if !run_steps(&mut wr, answer(&line)).await {
                        return;
                    }
                }
            });
        }
    });
    ScriptServer {
        addr,
        seen,
        accepted,
        task,
    }
}

/// Runs `steps`; false once the connection should end (closed, or a write failed).
async fn run_steps(wr: &mut tokio::net::tcp::OwnedWriteHalf, steps: Vec<Step>) -> bool {
    use tokio::io::AsyncWriteExt;
    for step in steps {
        let ok = match step {
            Step::Send(bytes) => wr.write_all(&bytes).await.is_ok(),
            Step::Trickle(bytes, gap) => {
                let mut ok = true;
                for b in bytes {
                    if wr.write_all(&[b]).await.is_err() {
                        ok = false;
                        break;
                    }
                    // behaviour under test: a peer that trickles one byte per `gap`
                    tokio::time::sleep(gap).await;
                }
                ok
            }
            Step::Repeat(bytes, n) => {
                let mut ok = true;
                for _ in 0..n {
                    if wr.write_all(&bytes).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                ok
            }
            Step::Sleep(d) => {
                // behaviour under test: a peer that stalls for `d`
                tokio::time::sleep(d).await;
                true
            }
            Step::Close => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A listener that must never be connected to: it accepts, counts and drops.
pub struct Watch {
    pub addr: SocketAddr,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    /// Local addresses of the test's own barrier connections (not hits).
    markers: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    /// Barrier connections accepted so far.
    marked: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches `bind` (port 0 for any); `None` if it cannot be bound (a privileged port
/// without root, or a port in use).
pub fn try_watch(rt: &Runtime, bind: SocketAddr) -> Option<Watch> {
    let listener = rt
        .block_on(async { tokio::net::TcpListener::bind(bind).await })
        .ok()?;
    let addr = listener.local_addr().ok()?;
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let markers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let marked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (counter, mine, seen_marks) =
        (Arc::clone(&hits), Arc::clone(&markers), Arc::clone(&marked));
    let task = rt.spawn(async move {
        while let Ok((s, peer)) = listener.accept().await {
            let is_marker = mine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&peer);
            if is_marker {
                seen_marks.fetch_add(1, Ordering::SeqCst);
            } else {
                eprintln!("watch {addr}: connection from {peer}");
                counter.fetch_add(1, Ordering::SeqCst);
            }
            drop(s);
        }
    });
    Some(Watch {
        addr,
        hits,
        markers,
        marked,
        task,
    })
}

/// [`try_watch`] that must succeed.
pub fn watch(rt: &Runtime, bind: SocketAddr) -> Watch {
    try_watch(rt, bind).unwrap_or_else(|| panic!("cannot bind a watch on {bind}"))
}

impl Watch {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Asserts that nobody connected. No grace sleep: the test connects a marker of its
    /// own and waits until the watch has accepted it. The kernel's accept queue is FIFO,
    /// and ftpgate decides (and would connect) before it answers the command the test
    /// already has the reply to, so any connection it made is accepted before the marker.
    pub fn assert_untouched(&self, what: &str) {
        let before = self.marked.load(Ordering::SeqCst);
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(self.addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("marker socket");
        let local = SocketAddr::new(self.addr.ip(), 0);
        sock.bind(&local.into()).expect("bind marker");
        let local = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("marker addr");
        self.markers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(local);
        sock.connect_timeout(&self.addr.into(), IO_TIMEOUT)
            .expect("marker connects to the watch");
        wait_until(
            &format!("the watch on {} to accept the marker", self.addr),
            IO_TIMEOUT,
            || self.marked.load(Ordering::SeqCst) > before,
        );
        assert_eq!(
            self.hits(),
            0,
            "{what}: something connected to {}",
            self.addr
        );
    }
}

/// [`proxy_yaml`] with extra keys inside `data:` (e.g. `server_pasv_address: check`).
pub fn proxy_yaml_data(
    upstream: SocketAddr,
    ports: &Ports,
    server_mode: &str,
    data_extra: &str,
    extra: &str,
) -> String {
    let timeouts = if extra.contains("timeouts:") {
        ""
    } else {
        "timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n"
    };
    let data_extra = if data_extra.is_empty() {
        String::new()
    } else {
        format!(", {data_extra}")
    };
    format!(
        "listeners:\n  - name: t\n    bind: 127.0.0.1:0\n    route: {{ kind: fixed, upstreams: [\"{upstream}\"] }}\n\
         data: {{ passive_ports: {}, server_active_ports: {}, server_mode: {server_mode}{data_extra} }}\n{timeouts}{extra}",
        range_text(&ports.proxy_passive),
        range_text(&ports.proxy_active),
    )
}

/// (sessions, transfers, port_leases) now.
pub fn gauges(m: &ftpgate::metrics::Metrics) -> (i64, i64, i64) {
    (m.sessions.get(), m.transfers.get(), m.port_leases.get())
}

impl Ctrl {
    /// Connects and reads a 220 banner.
    pub fn greeted(addr: SocketAddr) -> Ctrl {
        let mut c = Ctrl::connect(addr);
        let r = c.reply();
        assert_eq!(r.code, 220, "banner {r:?}");
        c
    }

    /// Writes `bytes` exactly as given (no CRLF added).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write raw bytes");
    }

    /// Writes `bytes` exactly, reporting failure (the peer may have closed).
    pub fn try_write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Writes `bytes` cut at `cuts` (sorted offsets), `gap` apart, with Nagle off so each
    /// piece leaves as its own segment.
    pub fn write_split(&mut self, bytes: &[u8], cuts: &[usize], gap: Duration) {
        self.writer.set_nodelay(true).expect("nodelay");
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(prev, bytes.len());
            if cut > prev {
                self.writer
                    .write_all(&bytes[prev..cut])
                    .expect("write piece");
                prev = cut;
                // behaviour under test: a gap between TCP segments
                std::thread::sleep(gap);
            }
        }
    }

    /// The control socket (for socket options, out-of-band data, shutdown).
    pub fn socket(&self) -> &TcpStream {
        &self.writer
    }

    pub fn set_read_timeout(&self, limit: Duration) {
        self.writer
            .set_read_timeout(Some(limit))
            .expect("read timeout");
    }

    /// Reads one raw line (bytes, CRLF stripped and required); `None` at EOF.
    pub fn raw_line(&mut self) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .expect("read control line (timeout?)");
        if n == 0 {
            return None;
        }
        assert!(buf.ends_with(b"\r\n"), "line not CRLF-terminated: {buf:?}");
        buf.truncate(buf.len() - 2);
        Some(buf)
    }

    /// Everything until EOF (a reset counts as EOF), or an error on a read timeout.
    pub fn read_to_eof(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self.reader.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(out),
            Err(e) => Err(e),
        }
    }

    /// Reads a reply, asserts its code, then asserts EOF.
    pub fn expect_close(&mut self, code: u16) -> Reply {
        let r = self.reply();
        assert_eq!(r.code, code, "{r:?}");
        self.expect_eof();
        r
    }

    /// Sends each line and asserts its reply code.
    pub fn expect_all(&mut self, lines: &[&[u8]], code: u16) {
        for line in lines {
            self.send_bytes(line);
            let r = self.reply();
            assert_eq!(r.code, code, "{:?} -> {r:?}", String::from_utf8_lossy(line));
        }
    }
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set size of this process, in KiB.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Tasks alive on `rt` (ftpgate's and the fakes' alike).
pub fn alive_tasks(rt: &Runtime) -> usize {
    rt.metrics().num_alive_tasks()
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns (soft, hard) afterwards.
/// The one place the tests need `unsafe`: std has no setrlimit.
#[allow(unsafe_code)]
pub fn raise_fd_limit() -> (nix::libc::rlim_t, nix::libc::rlim_t) {
    use nix::libc;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Raises the fd limit ([`raise_fd_limit`]) and checks, as a [`precondition`] of `test`,
/// that this process may then hold `need` descriptors.
pub fn fd_limit_allows(test: &str, need: usize) -> bool {
    let (soft, hard) = raise_fd_limit();
    precondition(
        test,
        soft >= need as nix::libc::rlim_t,
        &format!(
            "RLIMIT_NOFILE is {soft} (hard {hard}), need {need}; raise the hard limit (ulimit -Hn) to run it"
        ),
    )
}

/// Panics on tokio worker threads since the hook was installed (by the first call). The
/// runtime turns a panicking session task into a silently ended session; this makes it
/// visible.
pub fn worker_panics() -> usize {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let worker = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-runtime-worker"));
            if worker {
                COUNT.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    COUNT.load(Ordering::SeqCst)
}
