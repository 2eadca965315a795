//! Table tests of the session core: no sockets, no runtime, a fake clock and fake ports.
//!
//! A case is a config fragment and a list of steps; each step is one input and the exact
//! actions it must produce, rendered as text:
//! `c: <reply line>` to the client, `s: <line>` to the server, `start N <dir> <client leg>
//! <server leg>`, `go N`, `cancel N`, `close: <why>`. Every case starts logged out, right
//! after the server's greeting was relayed. `all_cases` runs the whole table and prints how
//! many phases and (phase, input, phase) transitions it covered.

use super::*;
use crate::data::Side as Leg;
use std::collections::BTreeSet;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// The rig

/// A listener's address, and the kernel mapping asked of it (data.path kernel).
#[derive(Debug)]
struct FakeListener(SocketAddr, Option<super::Premap>);

impl Listening for FakeListener {
    fn addr(&self) -> SocketAddr {
        self.0
    }

    fn premap(&mut self, p: super::Premap) {
        self.1 = Some(p);
    }
}

/// Hands out 50000, 50001, ... (passive) and 40000, ... (active); `free` ports per pool.
#[derive(Debug)]
struct FakePorts {
    next_passive: u16,
    next_active: u16,
    free: usize,
}

impl Ports for FakePorts {
    type Listener = FakeListener;
    fn listen(&mut self, pool: Pool, ip: IpAddr) -> Result<FakeListener, PortError> {
        if self.free == 0 {
            return Err(PortError::Exhausted {
                range: crate::config::PortRange {
                    first: 1024,
                    last: 1024,
                },
                ip,
            });
        }
        self.free -= 1;
        let next = match pool {
            Pool::Passive => &mut self.next_passive,
            Pool::Active => &mut self.next_active,
        };
        *next += 1;
        Ok(FakeListener(SocketAddr::new(ip, *next - 1), None))
    }
}

const CLIENT: &str = "192.0.2.10:40000";
const LOCAL: &str = "192.0.2.1:21";
const SERVER: &str = "198.51.100.10:21";
const SERVER_LOCAL: &str = "198.51.100.1:45000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

const BASE: &str = "\
listeners:
  - name: t
    bind: 192.0.2.1:21
    route: { kind: fixed, upstreams: ['198.51.100.10:21'] HOST }
LISTENER
timeouts: { login: 30s, idle: 60s, data_accept: 10s, final_reply: 20s }
limits: { max_queued_commands: 4 }
";

struct Rig {
    core: Core<FakePorts>,
    t0: Instant,
    now: Instant,
}

impl Rig {
    fn new(case: &Case) -> Rig {
        let mut parts = case.config.splitn(3, '|');
        let (route_extra, rest, listener_extra) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), c) => (a, b, c.unwrap_or("")),
            (Some(a), None, _) => ("", a, ""),
            _ => ("", "", ""),
        };
        let (cert, key) = tls_cases::test_cert();
        let yaml = (BASE
            .replace("HOST", route_extra)
            .replace("LISTENER", listener_extra)
            + rest)
            .replace("CERT", cert)
            .replace("KEY", key);
        let config = crate::config::parse(&yaml, "table")
            .unwrap_or_else(|e| panic!("{}: config: {e}\n{yaml}", case.name));
        let listener = Arc::new(config.listeners[0].clone());
        let t0 = Instant::now();
        let addrs = Addrs {
            client_peer: addr(case.client.unwrap_or(CLIENT)),
            client_local: addr(LOCAL),
            server_peer: addr(SERVER),
            server_local: addr(SERVER_LOCAL),
        };
        let ports = FakePorts {
            next_passive: 50000,
            next_active: 40000,
            free: case.free_ports.unwrap_or(8),
        };
        let login = t0 + config.timeouts.login;
        let banner = Start::Banner(vec![Reply::new(220, "ready")]);
        let mut core = Core::new(
            Arc::new(config),
            listener,
            addrs,
            ports,
            banner,
            case.secured,
            login,
            t0,
        );
        let greeting = drain(&mut core);
        assert_eq!(greeting, case.greeting, "{}: greeting", case.name);
        Rig { core, t0, now: t0 }
    }

    fn step(&mut self, step: &Step) -> Vec<String> {
        let input = match step {
            Step::C(line) => Input::Client {
                frame: Frame::Line(Bytes::copy_from_slice(line.as_bytes())),
                more_buffered: false,
            },
            Step::Pipelined(line) => Input::Client {
                frame: Frame::Line(Bytes::copy_from_slice(line.as_bytes())),
                more_buffered: true,
            },
            Step::Rejected(e) => Input::Client {
                frame: Frame::Rejected(*e),
                more_buffered: false,
            },
            Step::S(line) => Input::Server(Frame::Line(Bytes::copy_from_slice(line.as_bytes()))),
            Step::Done(id, bytes) => Input::Data(DataEvent {
                id: *id,
                bytes: *bytes,
                result: Ok(()),
            }),
            Step::Failed(id, e) => Input::Data(DataEvent {
                id: *id,
                bytes: 0,
                result: Err(e.error()),
            }),
            Step::Wait(secs) => {
                self.now += Duration::from_secs(*secs);
                Input::Tick
            }
            Step::Reading(want) => {
                assert_eq!(self.core.wants_client(), *want, "wants_client");
                return Vec::new();
            }
            Step::ClientEof => Input::ClientClosed,
            Step::ServerEof => Input::ServerClosed,
            Step::Shutdown => Input::Shutdown,
            Step::ClientTls(ok) => {
                Input::ClientSecured(if *ok { Ok(()) } else { Err(hello_timeout()) })
            }
            Step::ServerTls(ok) => {
                Input::ServerSecured(if *ok { Ok(()) } else { Err(untrusted()) })
            }
        };
        self.core.handle(input, self.now);
        drain(&mut self.core)
    }
}

/// A client that never finished its handshake.
fn hello_timeout() -> crate::tls::TlsError {
    crate::tls::HandshakeError::Timeout.into()
}

/// A server certificate from an unknown issuer, as rustls reports it.
fn untrusted() -> crate::tls::TlsError {
    let e = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    crate::tls::HandshakeError::Failed(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        .into()
}

fn drain(core: &mut Core<FakePorts>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(a) = core.poll_action() {
        out.push(render(a));
    }
    out
}

fn render(a: Action<FakeListener>) -> String {
    match a {
        Action::ToClient(r) => {
            let lines: Vec<String> = r
                .lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            format!("c: {}", lines.join(" | "))
        }
        Action::ToServer(l) => format!("s: {}", String::from_utf8_lossy(&l)),
        Action::StartTransfer(p) => {
            let client = match p.client {
                ClientLeg::Accept { listener, expect } => match listener.1 {
                    Some(p) => format!(
                        "accept({}<-{expect} mapped=>{} from {})",
                        listener.0, p.target, p.source
                    ),
                    None => format!("accept({}<-{expect})", listener.0),
                },
                ClientLeg::Connect { target, .. } => format!("connect({target})"),
            };
            let server = match p.server {
                ServerLeg::Accept { listener, expect } => {
                    format!("accept({}<-{expect})", listener.0)
                }
                ServerLeg::Connect { target, .. } => format!("connect({target})"),
            };
            let dir = match p.direction {
                Direction::Download => "down",
                Direction::Upload => "up",
            };
            let tls = match (p.client_tls, p.server_tls) {
                (false, false) => "",
                (true, false) => " tls=client",
                (false, true) => " tls=server",
                (true, true) => " tls=both",
            };
            format!("start {} {dir} {client} {server}{tls}", p.id)
        }
        Action::SecureClient => "tls client".into(),
        Action::SecureServer => "tls server".into(),
        Action::GoTransfer(id) => format!("go {id}"),
        Action::CancelTransfer(id) => format!("cancel {id}"),
        Action::Close(end) => format!("close: {end}"),
    }
}

fn phase_name<P: Ports>(core: &Core<P>) -> &'static str {
    match core.phase {
        Phase::Login { .. } => "login",
        Phase::Ready => "ready",
        Phase::Transfer { outcome: None, .. } => "transfer",
        Phase::Transfer {
            outcome: Some(_), ..
        } => "transfer-reported",
        Phase::Closing => "closing",
        Phase::Closed => "closed",
    }
}

#[derive(Debug, Clone, Copy)]
enum DataFail {
    AcceptClient,
    StallServer,
    ClientIo,
    Cancelled,
}

impl DataFail {
    fn error(self) -> DataError {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        match self {
            DataFail::AcceptClient => DataError::AcceptTimeout { side: Leg::Client },
            DataFail::StallServer => DataError::Stall { side: Leg::Server },
            DataFail::ClientIo => DataError::Io {
                side: Leg::Client,
                source: io(),
            },
            DataFail::Cancelled => DataError::Cancelled,
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A client line.
    C(&'static str),
    /// A client line with more bytes buffered behind it.
    Pipelined(&'static str),
    /// A client line refused by framing.
    Rejected(crate::proto::line::LineError),
    /// A server line.
    S(&'static str),
    /// Transfer N's data task finished with this many bytes.
    Done(u64, u64),
    Failed(u64, DataFail),
    /// The clock advances this many seconds, then ticks.
    Wait(u64),
    ClientEof,
    ServerEof,
    Shutdown,
    /// The client's (server's) TLS handshake ended, well or not.
    ClientTls(bool),
    ServerTls(bool),
    /// Not an input: asserts whether the core wants the next client line now.
    Reading(bool),
}

use Step::*;

struct Case {
    name: &'static str,
    /// Extra route keys, a `|`, then extra top-level YAML (either may be empty).
    config: &'static str,
    client: Option<&'static str>,
    free_ports: Option<usize>,
    /// Log in (USER a / 331 / PASS b / 230) before the steps.
    login: bool,
    /// TLS already up at the start (implicit).
    secured: Secured,
    /// What the core does at its start (the greeting relayed, unless the server leg
    /// is secured first).
    greeting: &'static [&'static str],
    steps: Vec<(Step, &'static [&'static str])>,
}

type Steps = &'static [(Step, &'static [&'static str])];

/// A logged-in case whose steps are the fragments in order.
fn case(name: &'static str, parts: &[Steps]) -> Case {
    Case {
        name,
        config: "",
        client: None,
        free_ports: None,
        login: true,
        secured: Secured::default(),
        greeting: &["c: 220 ready"],
        steps: parts.iter().flat_map(|p| p.iter().cloned()).collect(),
    }
}

const LOGIN: Steps = &[
    (C("USER a"), &["s: USER a"]),
    (S("331 pw"), &["c: 331 pw"]),
    (C("PASS b"), &["s: PASS b"]),
    (S("230 in"), &["c: 230 in"]),
];

/// PASV from the client, answered by ftpgate, and ftpgate's own PASV to the server.
const PASV: Steps = &[
    (
        C("PASV"),
        &[
            "c: 227 Entering Passive Mode (192,0,2,1,195,80).",
            "s: PASV",
        ],
    ),
    (S("227 Entering Passive Mode (198,51,100,10,117,48)"), &[]),
];

const START_RETR: &str =
    "start 1 down accept(192.0.2.1:50000<-192.0.2.10) connect(198.51.100.10:30000)";

/// PASV, RETR, the server's 150: a download in flight as transfer 1.
const RETR: Steps = &[
    (
        C("PASV"),
        &[
            "c: 227 Entering Passive Mode (192,0,2,1,195,80).",
            "s: PASV",
        ],
    ),
    (S("227 Entering Passive Mode (198,51,100,10,117,48)"), &[]),
    (C("RETR f"), &[START_RETR, "s: RETR f"]),
    (S("150 here"), &["go 1", "c: 150 here"]),
];

fn run_case(case: &Case, seen: &mut BTreeSet<(String, String, String)>) {
    let mut rig = Rig::new(case);
    let prelude: Steps = if case.login { LOGIN } else { &[] };
    for (i, (step, want)) in prelude.iter().chain(case.steps.iter()).enumerate() {
        let from = phase_name(&rig.core);
        let got = rig.step(step);
        let to = phase_name(&rig.core);
        if !matches!(step, Reading(_)) {
            seen.insert((from.into(), kind(step).into(), to.into()));
        }
        assert_eq!(
            got,
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "case `{}`, step {i} ({step:?}) at t+{}s",
            case.name,
            (rig.now - rig.t0).as_secs()
        );
    }
}

fn kind(step: &Step) -> &'static str {
    match step {
        C(_) | Pipelined(_) | Rejected(_) => "client",
        S(_) => "server",
        Done(..) => "data-ok",
        Failed(..) => "data-failed",
        Wait(_) => "tick",
        ClientEof => "client-eof",
        ServerEof => "server-eof",
        Shutdown => "shutdown",
        ClientTls(_) => "client-tls",
        ServerTls(_) => "server-tls",
        Reading(_) => "check",
    }
}

// ---------------------------------------------------------------------------------------
// The table

const P227: &str = "c: 227 Entering Passive Mode (192,0,2,1,195,80).";
const S227: &str = "227 Entering Passive Mode (198,51,100,10,117,48)";
const C530: &str = "c: 530 Please login with USER and PASS.";
const IDLE: [&str; 2] = [
    "c: 421 Timeout: no activity, closing control connection.",
    "close: idle timeout",
];
const LOGIN_TIMEOUT: [&str; 2] = [
    "c: 421 Login timeout, closing control connection.",
    "close: client protocol error: no login in time",
];
const SHUTDOWN: [&str; 2] = [
    "c: 421 Service shutting down, closing control connection.",
    "close: shutting down",
];

fn logged_out(mut c: Case) -> Case {
    c.login = false;
    c
}

fn with(config: &'static str, mut c: Case) -> Case {
    c.config = config;
    c
}

fn cases() -> Vec<Case> {
    let mut all = table();
    all.extend(tls_cases::cases());
    all
}

mod tls_cases;

fn table() -> Vec<Case> {
    vec![
        // --- login and its state --------------------------------------------------------
        logged_out(case(
            "data commands before login get 530 and never reach the server",
            &[&[
                (C("PASV"), &[C530]),
                (C("EPRT |1|192.0.2.10|5000|"), &[C530]),
                (C("PORT 192,0,2,10,19,136"), &[C530]),
                (C("RETR f"), &[C530]),
                (C("REST 10"), &[C530]),
                (C("NOOP"), &["s: NOOP"]),
            ]],
        )),
        case(
            "a new USER after login clears logged-in until the next 230",
            &[&[
                (C("USER other"), &["s: USER other"]),
                (S("331 pw"), &["c: 331 pw"]),
                (C("PASV"), &[C530]),
                (C("PASS x"), &["s: PASS x"]),
                (S("530 no"), &["c: 530 no"]),
                (C("STOR f"), &[C530]),
                (C("USER a"), &["s: USER a"]),
                (S("230 in"), &["c: 230 in"]),
                (C("PASV"), &[P227, "s: PASV"]),
            ]],
        ),
        logged_out(case(
            "login deadline: 421, then close",
            &[&[
                (C("USER a"), &["s: USER a"]),
                (S("331 pw"), &["c: 331 pw"]),
                (Wait(29), &[]),
                (Wait(1), &LOGIN_TIMEOUT),
            ]],
        )),
        case(
            "REIN logs out, restarts the login deadline and ends EPSV ALL",
            &[&[
                (C("EPSV ALL"), &["c: 200 EPSV ALL ok."]),
                (C("PASV"), &["c: 501 PASV not allowed after EPSV ALL."]),
                (C("PORT 192,0,2,10,19,136"), &["c: 501 PORT not allowed after EPSV ALL."]),
                (Wait(25), &[]),
                (C("REIN"), &["s: REIN"]),
                (S("220 again"), &["c: 220 again"]),
                (C("PASV"), &[C530]),
                (Wait(29), &[]),
                (Wait(1), &LOGIN_TIMEOUT),
            ]],
        ),
        logged_out(case(
            "an HTTP request as the first line closes the session",
            &[&[(
                C("GET / HTTP/1.1"),
                &[
                    "c: 421 This is an FTP proxy, not an HTTP proxy.",
                    "close: client protocol error: HTTP request on the control port",
                ],
            )]],
        )),
        // --- RFC 7151 HOST --------------------------------------------------------------
        logged_out(case(
            "HOST: an IP literal is answered here, a name goes to the server",
            &[&[
                (C("HOST 192.0.2.1"), &["c: 220 Host accepted."]),
                (C("HOST [2001:db8::1]"), &["c: 220 Host accepted."]),
                (C("HOST ftp.example.net"), &["s: HOST ftp.example.net"]),
                (S("220 vhost ready"), &["c: 220 vhost ready"]),
                (C("HOST a b"), &["c: 501 Syntax error in HOST argument."]),
                (C("USER a"), &["s: USER a"]),
                (S("331 pw"), &["c: 331 pw"]),
                (C("HOST 192.0.2.1"), &["c: 503 HOST must come before USER."]),
            ]],
        )),
        // --- data.path kernel: the mapping before the client learns the port ----------
        with(
            "|data: { path: kernel }\n",
            case(
                "data.path kernel: a passive client's 227 waits for the server's, its port mapped",
                &[&[
                    (C("PASV"), &["s: PASV"]),
                    (S(S227), &[P227]),
                    (
                        C("RETR f"),
                        &[
                            "start 1 down accept(192.0.2.1:50000<-192.0.2.10 mapped=>198.51.100.10:30000 from 198.51.100.1) connect(198.51.100.10:30000)",
                            "s: RETR f",
                        ],
                    ),
                ]],
            ),
        ),
        with(
            "|data: { path: kernel }\n",
            case(
                "data.path kernel: a server that refuses PASV releases the client's 227 unmapped",
                &[&[
                    (C("PASV"), &["s: PASV"]),
                    (S("502 no passive"), &[P227]),
                    (C("RETR f"), &["c: 425 Can't open data connection: the FTP server refused passive mode."]),
                ]],
            ),
        ),
        with(
            "|data: { path: kernel }\n",
            case(
                "data.path kernel: an active client is answered at once",
                &[&[(C("PORT 192,0,2,10,19,136"), &["c: 200 PORT command successful.", "s: PASV"])]],
            ),
        ),
        with(
            ", host_command: forward|",
            logged_out(case(
                "HOST with host_command forward: IP literals go to the server too",
                &[&[(C("HOST 192.0.2.1"), &["s: HOST 192.0.2.1"])]],
            )),
        ),
        with(
            ", host_command: answer|",
            logged_out(case(
                "HOST with host_command answer: nothing goes to the server",
                &[&[(C("HOST ftp.example.net"), &["c: 220 Host accepted."])]],
            )),
        ),
        // --- arguments validated before the server sees them ----------------------------
        case(
            "REST, TYPE, MODE and STRU arguments are validated",
            &[&[
                (
                    C("REST 12a"),
                    &["c: 501 Syntax error in REST argument: a byte offset in decimal digits."],
                ),
                (
                    C("REST 18446744073709551616"),
                    &["c: 501 Syntax error in REST argument: a byte offset in decimal digits."],
                ),
                (C("REST -1"), &["c: 501 Syntax error in REST argument: a byte offset in decimal digits."]),
                (C("REST 18446744073709551615"), &["s: REST 18446744073709551615"]),
                (S("350 ok"), &["c: 350 ok"]),
                (C("TYPE X"), &["c: 501 Syntax error in TYPE argument."]),
                (C("TYPE"), &["c: 501 Syntax error in TYPE argument."]),
                (C("TYPE I"), &["s: TYPE I"]),
                (S("200 ok"), &["c: 200 ok"]),
                (C("TYPE A N"), &["s: TYPE A N"]),
                (S("200 ok"), &["c: 200 ok"]),
                (C("MODE B"), &["c: 504 Only MODE S is supported through this proxy."]),
                (C("MODE Z"), &["c: 501 Syntax error in MODE argument."]),
                (C("MODE s"), &["s: MODE s"]),
                (S("200 ok"), &["c: 200 ok"]),
                (C("STRU Q"), &["c: 501 Syntax error in STRU argument."]),
                (C("STRU F"), &["s: STRU F"]),
                (S("200 ok"), &["c: 200 ok"]),
            ]],
        ),
        case(
            "PORT and EPRT targets are checked before anything is sent",
            &[&[
                (
                    C("PORT 198,51,100,66,0,25"),
                    &["c: 501 PORT refused: address 198.51.100.66 is not the address of the control connection."],
                ),
                (C("PORT 192,0,2,10,0,25"), &["c: 501 PORT refused: port 25 is below 1024."]),
                (C("PORT 192,0,2,10,256,22"), &["c: 501 Syntax error in PORT argument."]),
                (
                    C("EPRT |2|2001:db8::1|5000|"),
                    &["c: 522 Network protocol not supported, use (1)."],
                ),
                (C("EPRT |3|x|5000|"), &["c: 522 Network protocol not supported, use (1)."]),
                (C("EPSV 2"), &["c: 522 Network protocol not supported, use (1)."]),
                (C("LPRT 4,4,192,0,2,10,2,19,136"), &["c: 502 Command not implemented; use EPRT or EPSV."]),
                (C("RETR f"), &["c: 425 Use PORT or PASV first."]),
            ]],
        ),
        Case {
            client: Some("[2001:db8::10]:40000"),
            ..case(
                "PORT on an IPv6 session is 522 with the usable family",
                &[&[
                    (C("PORT 192,0,2,10,19,136"), &["c: 522 Network protocol not supported, use (2)."]),
                    (C("EPRT |1|192.0.2.10|5000|"), &["c: 522 Network protocol not supported, use (2)."]),
                ]],
            )
        },
        // --- idle -----------------------------------------------------------------------
        case(
            "idle deadline: 421 and close; client lines restart it",
            &[&[
                (Wait(59), &[]),
                (C("NOOP"), &["s: NOOP"]),
                (S("200 ok"), &["c: 200 ok"]),
                (Wait(59), &[]),
                (Wait(1), &IDLE),
            ]],
        ),
        case(
            "an endless multi-line reply is not activity",
            &[&[
                (C("STAT"), &["s: STAT"]),
                (S("211-start"), &[]),
                (Wait(30), &[]),
                (S(" more"), &[]),
                (Wait(30), &IDLE),
            ]],
        ),
        case(
            "no idle timeout while a transfer runs",
            &[
                RETR,
                &[
                    (Wait(61), &[]),
                    (Done(1, 7), &[]),
                    (S("226 ok"), &["c: 226 ok"]),
                    (Wait(59), &[]),
                    (Wait(1), &IDLE),
                ],
            ],
        ),
        // --- data_accept ----------------------------------------------------------------
        case(
            "an unused passive setup is released after data_accept",
            &[
                PASV,
                &[(Wait(10), &[]), (C("RETR f"), &["c: 425 Use PORT or PASV first."])],
            ],
        ),
        case(
            "a PORT plan outlives data_accept, its server setup does not",
            &[&[
                (C("PORT 192,0,2,10,19,136"), &["c: 200 PORT command successful.", "s: PASV"]),
                (S(S227), &[]),
                (Wait(10), &[]),
                (C("RETR f"), &["s: PASV"]),
                (
                    S("227 Entering Passive Mode (198,51,100,10,117,49)"),
                    &[
                        "start 1 down connect(192.0.2.10:5000) connect(198.51.100.10:30001)",
                        "s: RETR f",
                    ],
                ),
            ]],
        ),
        case(
            "commands that keep the server's data connection keep the prepared setup",
            &[
                PASV,
                &[
                    (C("TYPE I"), &["s: TYPE I"]),
                    (S("200 ok"), &["c: 200 ok"]),
                    (C("SIZE f"), &["s: SIZE f"]),
                    (S("213 5"), &["c: 213 5"]),
                    (C("RETR f"), &[START_RETR, "s: RETR f"]),
                ],
            ],
        ),
        case(
            "other commands drop the prepared setup; the transfer asks afresh",
            &[
                PASV,
                &[
                    (C("CWD d"), &["s: CWD d"]),
                    (S("250 ok"), &["c: 250 ok"]),
                    (C("RETR f"), &["s: PASV"]),
                    (S(S227), &[START_RETR, "s: RETR f"]),
                ],
            ],
        ),
        // --- transfers, replies in and out of order -------------------------------------
        case(
            "download: data first, then the final reply",
            &[
                RETR,
                &[
                    (Reading(true), &[]),
                    (Done(1, 100), &[]),
                    (Reading(false), &[]),
                    (S("226 done"), &["c: 226 done"]),
                    (Reading(true), &[]),
                ],
            ],
        ),
        case(
            "download: the final reply first is held until the data task reports",
            &[
                RETR,
                &[
                    (S("226 done"), &["go 1"]),
                    (Done(1, 100), &["c: 226 done"]),
                    (C("NOOP"), &["s: NOOP"]),
                ],
            ],
        ),
        case(
            "a server's 226 after a failed relay becomes 426",
            &[
                RETR,
                &[
                    (S("226 done"), &["go 1"]),
                    (
                        Failed(1, DataFail::ClientIo),
                        &["c: 426 Connection closed; transfer aborted: the client's data connection failed."],
                    ),
                ],
            ],
        ),
        case(
            "a relay failure is told at once; the server's late replies are swallowed",
            &[
                RETR,
                &[
                    (
                        Failed(1, DataFail::StallServer),
                        &[
                            "s: ABOR",
                            "c: 426 Connection closed; transfer aborted: the FTP server's data connection stalled.",
                        ],
                    ),
                    (Reading(true), &[]),
                    (C("NOOP"), &[]),
                    (S("426 broken"), &[]),
                    (S("226 abor ok"), &["s: NOOP"]),
                    (S("200 ok"), &["c: 200 ok"]),
                ],
            ],
        ),
        case(
            "a client that never connects gets 425 (data_accept in the data task)",
            &[
                RETR,
                &[(
                    Failed(1, DataFail::AcceptClient),
                    &[
                        "s: ABOR",
                        "c: 425 Can't open data connection: no data connection from the client in time.",
                    ],
                )],
            ],
        ),
        case(
            "QUIT while only swallowed replies are due is answered at once",
            &[
                RETR,
                &[
                    (
                        Failed(1, DataFail::ClientIo),
                        &[
                            "s: ABOR",
                            "c: 426 Connection closed; transfer aborted: the client's data connection failed.",
                        ],
                    ),
                    (C("QUIT"), &["c: 221 Goodbye.", "close: client quit"]),
                ],
            ],
        ),
        case(
            "final_reply deadline after the data task reported",
            &[
                RETR,
                &[
                    (Done(1, 5), &[]),
                    (Wait(19), &[]),
                    (
                        Wait(1),
                        &[
                            "c: 421 No final reply from the FTP server after the transfer.",
                            "close: server protocol error: final reply timeout",
                        ],
                    ),
                ],
            ],
        ),
        case(
            "a report from a superseded transfer is ignored",
            &[RETR, &[(Done(7, 5), &[]), (Reading(true), &[])]],
        ),
        case(
            "upload with the client in active mode and the server passive",
            &[&[
                (C("EPRT |1|192.0.2.10|5000|"), &["c: 200 EPRT command successful.", "s: PASV"]),
                (S(S227), &[]),
                (
                    C("STOR up"),
                    &[
                        "start 1 up connect(192.0.2.10:5000) connect(198.51.100.10:30000)",
                        "s: STOR up",
                    ],
                ),
                (S("150 go"), &["go 1", "c: 150 go"]),
                (S("226 ok"), &["go 1"]),
                (Done(1, 3), &["c: 226 ok"]),
            ]],
        ),
        with(
            "|data: { server_mode: active }",
            case(
                "server_mode active: ftpgate's PORT, the server connects to ftpgate",
                &[&[
                    (C("PASV"), &[P227, "s: PORT 198,51,100,1,156,64"]),
                    (S("200 ok"), &[]),
                    (
                        C("RETR f"),
                        &[
                            "start 1 down accept(192.0.2.1:50000<-192.0.2.10) accept(198.51.100.1:40000<-198.51.100.10)",
                            "s: RETR f",
                        ],
                    ),
                ]],
            ),
        ),
        with(
            "|data: { server_mode: active }",
            case(
                "server_mode active: a server refusing PORT gives 425 at the transfer",
                &[&[
                    (C("PASV"), &[P227, "s: PORT 198,51,100,1,156,64"]),
                    (S("500 no"), &[]),
                    (C("RETR f"), &["c: 425 Can't open data connection: the FTP server refused active mode."]),
                ]],
            ),
        ),
        Case {
            free_ports: Some(1),
            ..with(
                "|data: { server_mode: active }",
                case(
                    "no port for the server side: 425 at the transfer",
                    &[&[
                        (C("PASV"), &[P227]),
                        (
                            C("RETR f"),
                            &["c: 425 Can't open data connection: no free port for the FTP server's data connection."],
                        ),
                    ]],
                ),
            )
        },
        Case {
            free_ports: Some(0),
            ..case(
                "no passive port: 425 at once",
                &[&[(C("PASV"), &["c: 425 Can't open passive data connection: no free port."])]],
            )
        },
        case(
            "a server refusing PASV gives 425 at the transfer",
            &[&[
                (C("PASV"), &[P227, "s: PASV"]),
                (S("502 no"), &[]),
                (C("RETR f"), &["c: 425 Can't open data connection: the FTP server refused passive mode."]),
            ]],
        ),
        case(
            "a server's 227 to a privileged port is refused without naming it",
            &[&[
                (C("EPSV"), &["c: 229 Entering Extended Passive Mode (|||50000|)", "s: PASV"]),
                (S("227 Entering Passive Mode (10,0,0,5,0,22)"), &[]),
                (C("RETR f"), &["c: 425 Can't open data connection: the FTP server's passive reply was refused."]),
            ]],
        ),
        // --- ABOR in each phase ---------------------------------------------------------
        logged_out(case(
            "ABOR before login is relayed",
            &[&[(C("ABOR"), &["s: ABOR"]), (S("225 nothing"), &["c: 225 nothing"])]],
        )),
        case(
            "ABOR with no transfer is relayed",
            &[&[(C("ABOR"), &["s: ABOR"]), (S("226 nothing"), &["c: 226 nothing"])]],
        ),
        case(
            "ABOR during a transfer stops it at once; replies stay in order",
            &[
                RETR,
                &[
                    (C("ABOR"), &["cancel 1", "s: ABOR"]),
                    (S("426 aborted"), &["cancel 1"]),
                    (S("226 abor ok"), &[]),
                    (Failed(1, DataFail::Cancelled), &["c: 426 aborted", "c: 226 abor ok"]),
                ],
            ],
        ),
        case(
            "ABOR behind a stashed command stops the data now and is answered in turn",
            &[
                RETR,
                &[
                    (C("NOOP"), &[]),
                    (C("ABOR"), &["cancel 1"]),
                    (
                        Failed(1, DataFail::Cancelled),
                        &["s: ABOR", "c: 426 Connection closed; transfer aborted: transfer aborted."],
                    ),
                    (S("426 x"), &[]),
                    (S("226 y"), &["s: NOOP"]),
                    (S("200 ok"), &["c: 200 ok", "s: ABOR"]),
                    (S("225 none"), &["c: 225 none"]),
                ],
            ],
        ),
        case(
            "ABOR after a failed transfer waits for the swallowed replies",
            &[
                RETR,
                &[
                    (
                        Failed(1, DataFail::ClientIo),
                        &[
                            "s: ABOR",
                            "c: 426 Connection closed; transfer aborted: the client's data connection failed.",
                        ],
                    ),
                    (C("ABOR"), &[]),
                    (S("426 x"), &[]),
                    (S("226 y"), &["s: ABOR"]),
                    (S("225 none"), &["c: 225 none"]),
                ],
            ],
        ),
        // --- pipelining and limits ------------------------------------------------------
        case(
            "commands during a transfer are answered after it, in order",
            &[
                RETR,
                &[
                    (C("PWD"), &[]),
                    (C("SYST"), &[]),
                    (Done(1, 1), &[]),
                    (S("226 ok"), &["c: 226 ok", "s: PWD"]),
                    (S("257 /"), &["c: 257 /", "s: SYST"]),
                    (S("215 UNIX"), &["c: 215 UNIX"]),
                ],
            ],
        ),
        case(
            "the stash is bounded by max_queued_commands",
            &[
                RETR,
                &[
                    (C("NOOP"), &[]),
                    (C("NOOP"), &[]),
                    (C("NOOP"), &[]),
                    (Reading(true), &[]),
                    (C("NOOP"), &[]),
                    (Reading(false), &[]),
                ],
            ],
        ),
        case(
            "lockstep: no client line is read while a reply is due",
            &[&[
                (C("NOOP"), &["s: NOOP"]),
                (Reading(false), &[]),
                (S("200 ok"), &["c: 200 ok"]),
                (Reading(true), &[]),
            ]],
        ),
        case(
            "AUTH with bytes pipelined behind it closes the session",
            &[&[(
                Pipelined("AUTH TLS"),
                &[
                    "c: 421 Commands pipelined after AUTH, closing control connection.",
                    "close: client protocol error: bytes pipelined after AUTH",
                ],
            )]],
        ),
        case(
            "without listener TLS: AUTH gets 502, PBSZ/PROT 503, CCC 534, none relayed",
            &[&[
                (C("AUTH TLS"), &["c: 502 AUTH not available: this listener has no TLS."]),
                (C("PBSZ 0"), &["c: 503 PBSZ needs AUTH TLS first."]),
                (C("PROT P"), &["c: 503 PROT needs AUTH TLS first."]),
                (C("CCC"), &["c: 534 CCC refused: the control connection stays protected."]),
            ]],
        ),
        case(
            "lines refused by framing or parsing get 500 and the session goes on",
            &[&[
                (
                    Rejected(crate::proto::line::LineError::TooLong),
                    &["c: 500 Command line rejected: line too long."],
                ),
                (C("12345"), &["c: 500 Syntax error, command unrecognized."]),
                (C("NOOP"), &["s: NOOP"]),
            ]],
        ),
        with(
            "|acl: { commands: { deny: [SITE] } }",
            case(
                "acl.commands.deny answers 534 and sends nothing",
                &[&[(C("site chmod 777 f"), &["c: 534 SITE is denied by policy."])]],
            ),
        ),
        // --- server replies -------------------------------------------------------------
        case(
            "a reply with no command is dropped; an unsolicited 421 closes",
            &[&[
                (S("200 stray"), &[]),
                (S("421 going down"), &["c: 421 going down", "close: server closed the connection"]),
            ]],
        ),
        case(
            "a malformed reply ends the session with 421",
            &[&[
                (C("NOOP"), &["s: NOOP"]),
                (
                    S("hello"),
                    &[
                        "c: 421 Service not available: invalid reply from the FTP server.",
                        "close: server protocol error: invalid reply: malformed reply line",
                    ],
                ),
            ]],
        ),
        case(
            "a server's 227 to another command never reaches the client",
            &[&[
                (C("STAT"), &["s: STAT"]),
                (
                    S("227 Entering Passive Mode (10,0,0,5,0,22)"),
                    &["c: 502 Unexpected reply 227 from the FTP server withheld by the proxy."],
                ),
            ]],
        ),
        case(
            "inner lines of a multi-line reply never read as a final reply",
            &[&[
                (C("STAT"), &["s: STAT"]),
                (S("211-status"), &[]),
                (S("226 Transfer complete"), &[]),
                (S("227 Entering Passive Mode (10,0,0,5,0,22)"), &[]),
                (S("211-more"), &[]),
                (
                    S("211 end"),
                    &["c: 211-status |  226 Transfer complete |  227 Entering Passive Mode (10,0,0,5,0,22) | 211-more | 211 end"],
                ),
            ]],
        ),
        case(
            "FEAT hides the extensions ftpgate refuses",
            &[&[
                (C("FEAT"), &["s: FEAT"]),
                (S("211-Features:"), &[]),
                (S(" AUTH TLS"), &[]),
                (S(" EPSV"), &[]),
                (S(" PBSZ"), &[]),
                (S("211 End"), &["c: 211-Features: |  EPSV | 211 End"]),
            ]],
        ),
        case(
            "QUIT: the server's 221 is relayed, then the session ends",
            &[&[(C("QUIT"), &["s: QUIT"]), (S("221 bye"), &["c: 221 bye", "close: client quit"])]],
        ),
        case(
            "the server closing after QUIT is an orderly end",
            &[&[(C("QUIT"), &["s: QUIT"]), (ServerEof, &["close: client quit"])]],
        ),
        case(
            "the server closing otherwise gives 421",
            &[&[(
                ServerEof,
                &[
                    "c: 421 Service not available, the FTP server closed the connection.",
                    "close: server closed the connection",
                ],
            )]],
        ),
        case(
            "the client closing during a transfer cancels it",
            &[RETR, &[(ClientEof, &["cancel 1", "close: client closed the connection"])]],
        ),
        // --- shutdown -------------------------------------------------------------------
        case("shutdown when quiet: 421 and close", &[&[(Shutdown, &SHUTDOWN)]]),
        case(
            "shutdown lets a running transfer finish first",
            &[
                RETR,
                &[
                    (Shutdown, &[]),
                    (Done(1, 5), &[]),
                    (S("226 ok"), &["c: 226 ok", SHUTDOWN[0], SHUTDOWN[1]]),
                ],
            ],
        ),
    ]
}

#[test]
fn all_cases() {
    let cases = cases();
    let mut seen = BTreeSet::new();
    for case in &cases {
        run_case(case, &mut seen);
    }
    let phases: BTreeSet<&String> = seen.iter().flat_map(|(a, _, b)| [a, b]).collect();
    eprintln!(
        "session core tables: {} cases, {} phases, {} distinct (phase, input, phase) transitions",
        cases.len(),
        phases.len(),
        seen.len()
    );
    for (a, i, b) in &seen {
        eprintln!("  {a} --{i}--> {b}");
    }
    // `closing` lasts only within the input that brings the server's 221 (the queued
    // replies are flushed and the close is queued at once), so it is never seen between
    // steps; the QUIT cases cover it.
    assert_eq!(phases.len(), 5, "every phase is reached: {phases:?}");
}

#[test]
fn too_many_preliminary_replies_end_the_session() {
    let c = case("1xx flood", &[&[(C("STAT"), &["s: STAT"])]]);
    let mut seen = BTreeSet::new();
    run_case(&c, &mut seen);
    let mut rig = Rig::new(&c);
    for s in LOGIN.iter().chain(c.steps.iter()) {
        rig.step(&s.0);
    }
    for _ in 0..MAX_PRELIMINARY {
        assert_eq!(rig.step(&S("150 wait")), ["c: 150 wait"]);
    }
    assert_eq!(
        rig.step(&S("150 wait")),
        [
            "c: 421 Service not available: too many preliminary replies from the FTP server.",
            "close: server protocol error: too many 1xx replies"
        ]
    );
    assert!(rig.core.next_deadline().is_none(), "closed: no deadline");
    assert!(
        rig.step(&C("NOOP")).is_empty(),
        "closed: inputs are ignored"
    );
}

#[test]
fn deadlines_are_what_the_driver_sleeps_until() {
    let c = case("deadlines", &[]);
    let mut rig = Rig::new(&c);
    // Logged out: the login deadline (30 s) comes before idle (60 s).
    assert_eq!(
        rig.core.next_deadline(),
        Some(rig.t0 + Duration::from_secs(30))
    );
    for s in LOGIN {
        rig.step(&s.0);
    }
    assert_eq!(
        rig.core.next_deadline(),
        Some(rig.t0 + Duration::from_secs(60))
    );
    for s in PASV {
        rig.step(&s.0);
    }
    // data_accept (10 s) for the unused passive setup.
    assert_eq!(
        rig.core.next_deadline(),
        Some(rig.t0 + Duration::from_secs(10))
    );
}

// ---------------------------------------------------------------------------------------
// Properties: any sequence of inputs keeps the gateway's invariants

mod props {
    use super::*;
    use proptest::prelude::*;

    const CLIENT_LINES: &[&str] = &[
        "USER a",
        "PASS b",
        "PASV",
        "EPSV",
        "EPSV ALL",
        "PORT 192,0,2,10,19,136",
        "PORT 10,0,0,5,0,22",
        "PORT 192,0,2,10,0,21",
        "EPRT |1|192.0.2.10|5000|",
        "EPRT |2|2001:db8::1|5000|",
        "RETR f",
        "STOR f",
        "LIST",
        "ABOR",
        "REIN",
        "QUIT",
        "NOOP",
        "REST 5",
        "TYPE I",
        "HOST 192.0.2.1",
        "AUTH TLS",
        "FEAT",
    ];
    const SERVER_LINES: &[&str] = &[
        "230 ok",
        "331 pw",
        "150 go",
        "226 ok",
        "200 ok",
        "425 no",
        "227 Entering Passive Mode (10,0,0,5,0,22)",
        "227 Entering Passive Mode (198,51,100,10,117,48)",
        "229 Entering Extended Passive Mode (|||30000|)",
        "229 Entering Extended Passive Mode (|||21|)",
        "421 bye",
        "211-x",
        "227 Entering Passive Mode (10,0,0,5,4,1)",
        "211 end",
        "hello",
    ];

    #[derive(Debug, Clone)]
    enum In {
        Client(String, bool),
        Server(String),
        Data(u64, bool),
        Wait(u64),
        Shutdown,
        ClientEof,
        ServerEof,
    }

    fn line(vocab: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(vocab).prop_map(str::to_string),
            1 => "[ -~]{0,40}",
        ]
    }

    fn input() -> impl Strategy<Value = In> {
        prop_oneof![
            8 => (line(CLIENT_LINES), proptest::bool::weighted(0.1)).prop_map(|(l, p)| In::Client(l, p)),
            8 => line(SERVER_LINES).prop_map(In::Server),
            2 => (1u64..4, any::<bool>()).prop_map(|(id, ok)| In::Data(id, ok)),
            2 => (0u64..40).prop_map(In::Wait),
            1 => Just(In::Shutdown),
            1 => Just(In::ClientEof),
            1 => Just(In::ServerEof),
        ]
    }

    /// Checks one action against what the gateway may ever do.
    fn check(a: &Action<FakeListener>) -> Result<(), String> {
        match a {
            Action::ToServer(l) => {
                let l = String::from_utf8_lossy(l);
                if (l.starts_with("PORT ") || l.starts_with("EPRT "))
                    && !(l.contains("198,51,100,1,") || l.contains("|198.51.100.1|"))
                {
                    return Err(format!("server told to connect elsewhere: {l}"));
                }
            }
            Action::ToClient(r) => {
                for l in &r.lines {
                    let l = String::from_utf8_lossy(l);
                    if l.contains("10,0,0,5") && !l.starts_with(' ') {
                        return Err(format!("server address text reached the client: {l}"));
                    }
                    if l.starts_with("227 ") && !l.contains("(192,0,2,1,") {
                        return Err(format!("a 227 not of ftpgate's own: {l}"));
                    }
                }
            }
            Action::StartTransfer(p) => {
                if let ClientLeg::Connect { target, .. } = &p.client {
                    if target.ip() != addr(CLIENT).ip() || target.port() < 1024 {
                        return Err(format!("client leg to {target}"));
                    }
                }
                if let ServerLeg::Connect { target, .. } = &p.server {
                    if target.ip() != addr(SERVER).ip() || target.port() < 1024 {
                        return Err(format!("server leg to {target}"));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("SESSION_PROPS_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
        ))]
        #[test]
        fn any_input_sequence_keeps_the_invariants(inputs in proptest::collection::vec(input(), 1..60)) {
            let c = case("props", &[]);
            let mut rig = Rig::new(&c);
            let mut closed = false;
            for i in inputs {
                let input = match i {
                    In::Client(l, pipelined) => Input::Client {
                        frame: Frame::Line(Bytes::from(l.into_bytes())),
                        more_buffered: pipelined,
                    },
                    In::Server(l) => Input::Server(Frame::Line(Bytes::from(l.into_bytes()))),
                    In::Data(id, ok) => Input::Data(DataEvent {
                        id,
                        bytes: 1,
                        result: if ok { Ok(()) } else { Err(DataFail::ClientIo.error()) },
                    }),
                    In::Wait(s) => {
                        rig.now += Duration::from_secs(s);
                        Input::Tick
                    }
                    In::Shutdown => Input::Shutdown,
                    In::ClientEof => Input::ClientClosed,
                    In::ServerEof => Input::ServerClosed,
                };
                rig.core.handle(input, rig.now);
                while let Some(a) = rig.core.poll_action() {
                    prop_assert!(!closed, "an action after Close: {a:?}");
                    if let Err(e) = check(&a) {
                        prop_assert!(false, "{e}");
                    }
                    if matches!(a, Action::Close(_)) {
                        closed = true;
                    }
                }
                if closed {
                    prop_assert!(rig.core.next_deadline().is_none());
                } else if let Some(d) = rig.core.next_deadline() {
                    // A deadline in the past fires at once; it must then move or close,
                    // never spin.
                    if d <= rig.now {
                        rig.core.handle(Input::Tick, rig.now);
                        let again = rig.core.next_deadline();
                        let acted = {
                            let mut n = 0;
                            while let Some(a) = rig.core.poll_action() {
                                if matches!(a, Action::Close(_)) { closed = true; }
                                n += 1;
                            }
                            n
                        };
                        prop_assert!(acted > 0 || again.is_none_or(|x| x > rig.now), "deadline spins");
                    }
                }
            }
        }
    }
}

#[test]
fn refusals_are_reported_for_the_metrics() {
    use crate::metrics::families::Refusal;
    let c = case("refusals", &[]);
    let mut rig = Rig::new(&c);
    for s in LOGIN.iter() {
        rig.step(&s.0);
    }
    assert!(
        rig.core.take_refusals().is_empty(),
        "a login refuses nothing"
    );
    // A PORT naming a third host (bounce), then an unparseable line (command).
    rig.step(&C("PORT 203,0,113,9,200,1"));
    rig.step(&Rejected(crate::proto::line::LineError::TooLong));
    assert_eq!(
        rig.core.take_refusals(),
        [Refusal::bounce, Refusal::command]
    );
    assert!(rig.core.take_refusals().is_empty(), "taken once");
}

/// Runs LOGIN then `steps` on a fresh rig (outputs unchecked) and returns the records.
fn records_after(steps: &[Step]) -> Vec<super::TransferRecord> {
    let c = case("records", &[]);
    let mut rig = Rig::new(&c);
    for s in LOGIN.iter() {
        rig.step(&s.0);
    }
    assert!(rig.core.take_records().is_empty());
    for s in steps {
        rig.step(s);
    }
    rig.core.take_records()
}

fn pasv_steps(cmd: &'static str) -> Vec<Step> {
    vec![
        C("PASV"),
        S("227 Entering Passive Mode (198,51,100,10,117,48)"),
        C(cmd),
        S("150 here"),
    ]
}

#[test]
fn a_retr_is_recorded_with_its_path_bytes_user_and_result() {
    use crate::metrics::families::{TransferDirection, TransferResult};
    let mut steps = pasv_steps("RETR dir/my file.bin");
    steps.extend([Wait(3), Done(1, 4096), S("226 done")]);
    let r = records_after(&steps);
    assert_eq!(r.len(), 1, "{r:?}");
    let r = &r[0];
    assert_eq!(r.command, "RETR");
    assert_eq!(r.path, b"dir/my file.bin");
    assert_eq!(r.direction, TransferDirection::download);
    assert_eq!(r.bytes, 4096);
    assert_eq!(r.user.as_deref(), Some(&b"a"[..]));
    assert!(!r.ascii);
    assert_eq!(r.result, TransferResult::ok);
    assert_eq!(r.code, 226);
    assert!(r.accepted);
    assert_eq!(r.ended - r.started, Duration::from_secs(3));
}

#[test]
fn type_a_stor_list_and_abor_are_recorded_as_such() {
    use crate::metrics::families::{TransferDirection, TransferResult};
    // TYPE A accepted by the server, then a STOR.
    let mut steps = vec![C("TYPE A"), S("200 ascii")];
    steps.extend(pasv_steps("STOR up.txt"));
    steps.extend([S("226 stored"), Done(1, 10)]);
    let r = records_after(&steps);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].direction, TransferDirection::upload);
    assert!(r[0].ascii, "TYPE A in force");
    assert_eq!((r[0].result, r[0].bytes), (TransferResult::ok, 10));
    // A refused TYPE changes nothing.
    let mut steps = vec![C("TYPE A"), S("504 no")];
    steps.extend(pasv_steps("LIST"));
    steps.extend([Done(1, 99), S("226 listed")]);
    let r = records_after(&steps);
    assert_eq!(r[0].direction, TransferDirection::listing);
    assert!(!r[0].ascii);
    assert_eq!(
        (r[0].command.as_str(), r[0].path.as_slice()),
        ("LIST", &b""[..])
    );
    // ABOR mid-transfer.
    let mut steps = pasv_steps("RETR big");
    steps.extend([
        C("ABOR"),
        Failed(1, DataFail::Cancelled),
        S("426 aborted"),
        S("226 abor ok"),
    ]);
    let r = records_after(&steps);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].result, TransferResult::aborted, "{r:?}");
    // The same with the server's replies before the data task's report.
    let mut steps = pasv_steps("RETR big");
    steps.extend([
        C("ABOR"),
        S("426 aborted"),
        S("226 abor ok"),
        Failed(1, DataFail::Cancelled),
    ]);
    let r = records_after(&steps);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].result, TransferResult::aborted, "{r:?}");
    // The server refuses the file: recorded as failed, not accepted (no xferlog line).
    let mut steps = pasv_steps("RETR missing");
    steps.pop();
    steps.extend([S("550 no such file"), Failed(1, DataFail::Cancelled)]);
    let r = records_after(&steps);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0].result, r[0].code, r[0].accepted),
        (TransferResult::failed, 550, false)
    );
}
