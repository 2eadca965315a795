//! Hostile input on both legs, grouped as in SECURITY.md: framing, Telnet, PORT/EPRT
//! validation, hostile server passive replies, data-connection hijack, reply robustness,
//! exhaustion, and the first line / login / policy gates; then property tests over TCP
//! segmentation and arbitrary client bytes.
//!
//! Most attacks are rows of a table ([`Case`]): a config, a scripted server, watched
//! addresses, and client steps ([`Do`]) that send bytes and check replies. One runner
//! ([`run_table`]) plays each row on its own [`Rig`] and ends it the same way every
//! time: exactly the expected control connections reached the server, no data transfer
//! was started, every watched listener stayed untouched, and ftpgate's sessions,
//! transfers and port leases returned to zero before a clean shutdown. A failing row
//! names itself, its step and the step's text in the panic message; `HOSTILE_CASE=<part
//! of a name>` runs only the matching rows.
//!
//! Attacks whose shape does not fit a row (real data connections through [`Mini`], many
//! concurrent sessions, a reply read in a loop) are their own `#[test]`s on the same rig.
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

fn sa(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(lo(last), port)
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

/// `limits:` with `max_line` and `timeouts:` with these `idle` and `login` deadlines.
fn short_timeouts(idle: &str, login: &str) -> String {
    format!(
        "limits: {{ max_line: {MAX_LINE} }}\ntimeouts: {{ connect: 2s, banner: 5s, data_accept: 5s, idle: {idle}, data_stall: 10s, login: {login}, shutdown_grace: 2s }}\n"
    )
}

/// Words of ftpgate's own refusal texts that the cases check, in one place: the codes
/// are the contract, these texts may be reworded with the session code.
mod refusal {
    pub const TOO_LONG: &str = "too long";
    pub const INVALID_REPLY: &str = "invalid reply";
    pub const GREETING: &str = "greeting";
    pub const TIMEOUT: &str = "Timeout";
    pub const FINAL_REPLY: &str = "final reply";
    pub const NO_FREE_PORT: &str = "no free port";
    pub const PER_IP: &str = "from your address";
    pub const TOO_MANY: &str = "Too many sessions";
    pub const LOGIN_TIMEOUT: &str = "Login timeout";
    pub const AFTER_AUTH: &str = "pipelined after AUTH";
    pub const NOT_HTTP: &str = "not an HTTP proxy";
}

// ---------------------------------------------------------------------------------------
// The rig: ftpgate in front of a scripted server or a Mini

enum Upstream {
    Script(ScriptServer),
    Mini(Mini),
}

/// One attack's world: the runtime, the upstream, ftpgate, the watched listeners.
struct Rig {
    rt: Runtime,
    up: Upstream,
    proxy: Proxy,
    ports: Ports,
    watches: Vec<Watch>,
    _dog: Watchdog,
}

/// How a [`Rig`] is configured: `data:` keys, and top-level sections (`limits:`,
/// `timeouts:`, `acl:`); without a `limits:` section it gets `max_line: MAX_LINE`.
#[derive(Clone, Default)]
struct Cfg {
    server_mode: &'static str,
    data_extra: String,
    extra: String,
    narrow: Option<u16>,
}

impl Cfg {
    fn yaml(&self, upstream: SocketAddr, ports: &Ports) -> String {
        let limits = if self.extra.contains("limits:") {
            String::new()
        } else {
            format!("limits: {{ max_line: {MAX_LINE} }}\n")
        };
        let mode = if self.server_mode.is_empty() {
            "passive"
        } else {
            self.server_mode
        };
        proxy_yaml_data(
            upstream,
            ports,
            mode,
            &self.data_extra,
            &format!("{limits}{}", self.extra),
        )
    }
}

fn start_rig(name: &str, cfg: &Cfg, up: Upstream, watches: Vec<Watch>, rt: Runtime) -> Rig {
    let dog = Watchdog::new(leak(name), Duration::from_secs(45));
    let mut ports = Ports::new();
    if let Some(n) = cfg.narrow {
        ports = ports.narrow(n);
    }
    let addr = match &up {
        Upstream::Script(s) => s.addr,
        Upstream::Mini(m) => m.addr,
    };
    let proxy = start_proxy_yaml(&rt, &cfg.yaml(addr, &ports));
    Rig {
        rt,
        up,
        proxy,
        ports,
        watches,
        _dog: dog,
    }
}

/// Watchdog names are `&'static str`; a rig's name lives as long as the test binary.
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_string().into_boxed_str())
}

/// A rig in front of a scripted server answering with `answer` after `220 script ready`.
fn rig(name: &'static str, answer: Answer) -> Rig {
    rig_with(name, vec![say("220 script ready")], answer, Cfg::default())
}

fn rig_with(name: &str, banner: Vec<Step>, answer: Answer, cfg: Cfg) -> Rig {
    let rt = runtime();
    let server = start_script_server(&rt, banner, answer);
    start_rig(name, &cfg, Upstream::Script(server), Vec::new(), rt)
}

/// A rig in front of a [`Mini`].
fn mini_rig(name: &'static str, opts: MiniOpts, server_mode: &'static str, extra: &str) -> Rig {
    let rt = runtime();
    let mini = start_mini(&rt, opts);
    let cfg = Cfg {
        server_mode,
        extra: extra.to_string(),
        ..Cfg::default()
    };
    start_rig(name, &cfg, Upstream::Mini(mini), Vec::new(), rt)
}

fn basic() -> Answer {
    answer(basic_answer)
}

impl Rig {
    fn server(&self) -> &ScriptServer {
        match &self.up {
            Upstream::Script(s) => s,
            Upstream::Mini(_) => panic!("this rig's upstream is a Mini"),
        }
    }

    fn mini(&self) -> &Mini {
        match &self.up {
            Upstream::Mini(m) => m,
            Upstream::Script(_) => panic!("this rig's upstream is a script server"),
        }
    }

    fn server_addr(&self) -> SocketAddr {
        match &self.up {
            Upstream::Script(s) => s.addr,
            Upstream::Mini(m) => m.addr,
        }
    }

    fn accepted(&self) -> usize {
        match &self.up {
            Upstream::Script(s) => s.accepted(),
            Upstream::Mini(m) => m.log.accepted.load(Ordering::SeqCst),
        }
    }

    fn leases(&self) -> i64 {
        self.proxy.metrics.port_leases.get()
    }

    fn client(&self) -> Ctrl {
        Ctrl::greeted(self.proxy.addr)
    }

    /// Logged in (USER/PASS; a Mini also gets TYPE I).
    fn logged_in(&self) -> Ctrl {
        let mut c = self.client();
        login(&mut c);
        if matches!(self.up, Upstream::Mini(_)) {
            c.expect("TYPE I", 200);
        }
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

    /// The common ending: exactly `sessions` control connections reached the server (the
    /// proxy opened nothing else there), `transfers` data transfers were started, every
    /// watch is untouched, and every gauge is back to zero before a clean shutdown.
    fn finish_with(self, sessions: usize, transfers: u64) {
        for w in &self.watches {
            w.assert_untouched("a watched address");
        }
        assert_eq!(
            self.accepted(),
            sessions,
            "control connections reaching the server"
        );
        assert_eq!(
            self.proxy.metrics.transfers_total.get(),
            transfers,
            "data transfers started"
        );
        self.proxy.stop(&self.rt);
    }

    fn finish(self, sessions: usize) {
        self.finish_with(sessions, 0);
    }
}

fn login(c: &mut Ctrl) {
    c.expect("USER anonymous", 331);
    c.expect("PASS x", 230);
}

fn quit(mut c: Ctrl) {
    c.expect("QUIT", 221);
    c.expect_eof();
}

// ---------------------------------------------------------------------------------------
// The table: cases, client steps, one runner

/// What a row's template text can name, filled in once the rig is up: `{w0}` the port of
/// watch 0 (`{w1}`, ... likewise), `{w0:6}` its `h1,..,p2` form, `{server}` the scripted
/// server's port, `{proxy}` ftpgate's control port; `{x:hi}` and `{x:lo}` a port's two
/// PORT fields (`port >> 8`, `port & 0xff`).
#[derive(Clone, Default)]
struct Subst {
    watches: Vec<SocketAddr>,
    server: u16,
    proxy: u16,
}

impl Subst {
    fn fill(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (i, w) in self.watches.iter().enumerate() {
            let ip = match w.ip() {
                IpAddr::V4(v4) => v4.octets(),
                IpAddr::V6(_) => [0; 4],
            };
            t = t.replace(&format!("{{w{i}:6}}"), &six(ip, w.port()));
            t = fill_port(&t, &format!("w{i}"), w.port());
        }
        let t = fill_port(&t, "server", self.server);
        fill_port(&t, "proxy", self.proxy)
    }
}

/// `{key}`, `{key:hi}`, `{key:lo}` in `t` replaced by `port` and its PORT fields.
fn fill_port(t: &str, key: &str, port: u16) -> String {
    t.replace(&format!("{{{key}:hi}}"), &(port >> 8).to_string())
        .replace(&format!("{{{key}:lo}}"), &(port & 0xff).to_string())
        .replace(&format!("{{{key}}}"), &port.to_string())
}

type ReplyCheck = Box<dyn Fn(&Reply) -> bool>;
type RigCheck = Box<dyn Fn(&Rig) -> bool>;
type MakeAnswer = Box<dyn FnOnce(&Subst) -> Answer>;

/// One client step of a [`Case`]. Text is a [`Subst`] template.
enum Do {
    /// Connect a new client (now the current one) and read its 220 banner.
    Connect,
    /// The same from 127.0.0.n.
    ConnectFrom(u8),
    /// Connect without reading the banner.
    ConnectQuiet,
    /// Switch to the i-th client connected in this case.
    Use(usize),
    /// USER anonymous (331), PASS x (230).
    Login,
    /// Send a line + CRLF; a later step reads the reply.
    Send(String),
    /// Send a line, read its reply, expect the code.
    Expect(String, u16),
    /// Write bytes exactly.
    Write(Vec<u8>),
    /// behaviour under test: the bytes cut at these offsets, each piece its own segment,
    /// the gap apart.
    Split(Vec<u8>, Vec<usize>, Duration),
    /// Send bytes as TCP urgent data.
    Urgent(Vec<u8>),
    NoDelay,
    ReadTimeout(Duration),
    ShutdownWrite,
    /// behaviour under test: the client stays silent this long (a deadline must pass).
    Pause(Duration),
    /// Read a reply, expect the code.
    Reply(u16),
    /// Read a reply, whatever its code.
    AnyReply,
    /// Read a reply, expect exactly these lines.
    Lines(Vec<String>),
    /// Read one raw line, expect these bytes.
    RawLine(Vec<u8>),
    /// The last reply's text contains this (template).
    Has(String),
    /// The last reply's text does not contain this (template).
    HasNot(String),
    /// The last reply passes this named check.
    Check(&'static str, ReplyCheck),
    /// Read replies while they are 150, at most `n` of them; the next is the last reply.
    Skip150(usize),
    /// Read a reply with this code, then EOF.
    Close(u16),
    Eof,
    /// QUIT (221), then EOF.
    Quit,
    /// The server never received a line containing these bytes.
    NeverSaw(Vec<u8>),
    /// The server's last received line.
    SawLast(Vec<u8>),
    /// How many lines the server received.
    SawCount(usize),
    /// Exactly the lines the server received.
    Saw(Vec<&'static str>),
    /// The port-lease gauge now.
    Leases(i64),
    /// Every watch untouched now.
    Untouched,
    /// A named check over the rig.
    Holds(&'static str, RigCheck),
    /// Wait (bounded, [`DRAIN_TIMEOUT`]) until a named condition over the rig holds.
    WaitFor(&'static str, RigCheck),
    /// Start the stopwatch.
    Mark,
    /// The stopwatch reads within [lo, hi).
    Took(Duration, Duration),
}

impl std::fmt::Debug for Do {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        match self {
            Do::Connect => write!(f, "Connect"),
            Do::ConnectFrom(n) => write!(f, "ConnectFrom(127.0.0.{n})"),
            Do::ConnectQuiet => write!(f, "ConnectQuiet"),
            Do::Use(i) => write!(f, "Use({i})"),
            Do::Login => write!(f, "Login"),
            Do::Send(t) => write!(f, "Send({t:?})"),
            Do::Expect(t, c) => write!(f, "Expect({t:?}, {c})"),
            Do::Write(v) => write!(f, "Write({:?})", b(v)),
            Do::Split(v, cuts, g) => write!(f, "Split({:?}, {} cuts, {g:?})", b(v), cuts.len()),
            Do::Urgent(v) => write!(f, "Urgent({:?})", b(v)),
            Do::NoDelay => write!(f, "NoDelay"),
            Do::ReadTimeout(d) => write!(f, "ReadTimeout({d:?})"),
            Do::ShutdownWrite => write!(f, "ShutdownWrite"),
            Do::Pause(d) => write!(f, "Pause({d:?})"),
            Do::Reply(c) => write!(f, "Reply({c})"),
            Do::AnyReply => write!(f, "AnyReply"),
            Do::Lines(l) => write!(f, "Lines({l:?})"),
            Do::RawLine(v) => write!(f, "RawLine({:?})", b(v)),
            Do::Has(t) => write!(f, "Has({t:?})"),
            Do::HasNot(t) => write!(f, "HasNot({t:?})"),
            Do::Check(n, _) => write!(f, "Check({n})"),
            Do::Skip150(n) => write!(f, "Skip150(at most {n})"),
            Do::Close(c) => write!(f, "Close({c})"),
            Do::Eof => write!(f, "Eof"),
            Do::Quit => write!(f, "Quit"),
            Do::NeverSaw(v) => write!(f, "NeverSaw({:?})", b(v)),
            Do::SawLast(v) => write!(f, "SawLast({:?})", b(v)),
            Do::SawCount(n) => write!(f, "SawCount({n})"),
            Do::Saw(l) => write!(f, "Saw({l:?})"),
            Do::Leases(n) => write!(f, "Leases({n})"),
            Do::Untouched => write!(f, "Untouched"),
            Do::Holds(n, _) => write!(f, "Holds({n})"),
            Do::WaitFor(n, _) => write!(f, "WaitFor({n})"),
            Do::Mark => write!(f, "Mark"),
            Do::Took(lo, hi) => write!(f, "Took({lo:?}..{hi:?})"),
        }
    }
}

fn send(t: impl Into<String>) -> Do {
    Do::Send(t.into())
}
fn expect(t: impl Into<String>, code: u16) -> Do {
    Do::Expect(t.into(), code)
}
fn write(b: impl AsRef<[u8]>) -> Do {
    Do::Write(b.as_ref().to_vec())
}
fn has(t: impl Into<String>) -> Do {
    Do::Has(t.into())
}
fn has_not(t: impl Into<String>) -> Do {
    Do::HasNot(t.into())
}
fn never_saw(b: impl AsRef<[u8]>) -> Do {
    Do::NeverSaw(b.as_ref().to_vec())
}
fn saw_last(b: impl AsRef<[u8]>) -> Do {
    Do::SawLast(b.as_ref().to_vec())
}
fn raw_line(b: impl AsRef<[u8]>) -> Do {
    Do::RawLine(b.as_ref().to_vec())
}
fn lines(l: &[&str]) -> Do {
    Do::Lines(l.iter().map(|s| s.to_string()).collect())
}
fn check(name: &'static str, f: impl Fn(&Reply) -> bool + 'static) -> Do {
    Do::Check(name, Box::new(f))
}
fn holds(name: &'static str, f: impl Fn(&Rig) -> bool + 'static) -> Do {
    Do::Holds(name, Box::new(f))
}
fn wait_for(name: &'static str, f: impl Fn(&Rig) -> bool + 'static) -> Do {
    Do::WaitFor(name, Box::new(f))
}
/// Each line, written raw with CRLF, gets `code`.
fn each(lines: &[&[u8]], code: u16) -> Vec<Do> {
    lines
        .iter()
        .flat_map(|l| [write([*l, b"\r\n"].concat()), Do::Reply(code)])
        .collect()
}
/// Each command (template) gets `code`.
fn each_cmd<S: AsRef<str>>(cmds: &[S], code: u16) -> Vec<Do> {
    cmds.iter().map(|c| expect(c.as_ref(), code)).collect()
}

/// One row: a config, the scripted server, watched listeners, the client's steps, and
/// how many control connections must reach the server.
struct Case {
    name: &'static str,
    cfg: Cfg,
    banner: Vec<Step>,
    answer: MakeAnswer,
    /// Listeners nothing may connect to; port 0 picks one (see [`Subst`]).
    watches: Vec<SocketAddr>,
    steps: Vec<Do>,
    sessions: usize,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        cfg: Cfg::default(),
        banner: vec![say("220 script ready")],
        answer: Box::new(|_| basic()),
        watches: Vec::new(),
        steps: Vec::new(),
        sessions: 1,
    }
}

impl Case {
    /// Top-level config sections (`limits:`, `timeouts:`, `acl:`).
    fn extra(mut self, extra: impl Into<String>) -> Case {
        self.cfg.extra = extra.into();
        self
    }
    /// Keys inside `data:`.
    fn data(mut self, keys: &str) -> Case {
        self.cfg.data_extra = keys.to_string();
        self
    }
    fn banner(mut self, banner: Vec<Step>) -> Case {
        self.banner = banner;
        self
    }
    fn answer(mut self, a: Answer) -> Case {
        self.answer = Box::new(move |_| a);
        self
    }
    /// An answer that needs the watched addresses.
    fn answer_with(mut self, f: impl FnOnce(&Subst) -> Answer + 'static) -> Case {
        self.answer = Box::new(f);
        self
    }
    fn watch(mut self, addr: SocketAddr) -> Case {
        self.watches.push(addr);
        self
    }
    fn steps(mut self, steps: Vec<Do>) -> Case {
        self.steps.extend(steps);
        self
    }
    fn sessions(mut self, n: usize) -> Case {
        self.sessions = n;
        self
    }
}

/// Binds the case's watches: a port-0 watch must bind; a fixed (privileged) port needs
/// root, which is a [`precondition`] of that watch only.
fn bind_watches(rt: &Runtime, name: &str, want: &[SocketAddr]) -> Vec<Watch> {
    let mut got = Vec::new();
    for &addr in want {
        if addr.port() == 0 {
            got.push(watch(rt, addr));
        } else if let Some(w) = try_watch(rt, addr) {
            got.push(w);
        } else {
            precondition(
                name,
                false,
                &format!(
                    "cannot watch {addr} (privileged ports need root); the rest of the case runs"
                ),
            );
        }
    }
    got
}

/// The current client.
fn cur(clients: &mut [Ctrl], i: usize) -> &mut Ctrl {
    clients
        .get_mut(i)
        .unwrap_or_else(|| panic!("no client {i}: Connect first"))
}

/// Plays one row on a fresh rig and ends it with [`Rig::finish`].
fn run_case(c: Case, step_at: &std::cell::Cell<usize>) {
    let rt = runtime();
    let watches = bind_watches(&rt, c.name, &c.watches);
    let mut subst = Subst {
        watches: watches.iter().map(|w| w.addr).collect(),
        ..Subst::default()
    };
    let server = start_script_server(&rt, c.banner, (c.answer)(&subst));
    let rig = start_rig(c.name, &c.cfg, Upstream::Script(server), watches, rt);
    subst.server = rig.server_addr().port();
    subst.proxy = rig.proxy.addr.port();
    let mut clients: Vec<Ctrl> = Vec::new();
    let mut at = 0usize;
    let mut last: Option<Reply> = None;
    let mut mark = Instant::now();
    let last_reply = |l: &Option<Reply>| l.clone().expect("no reply read yet");
    for (n, step) in c.steps.iter().enumerate() {
        step_at.set(n);
        match step {
            Do::Connect => {
                clients.push(rig.client());
                at = clients.len() - 1;
            }
            Do::ConnectFrom(k) => {
                let mut cl = Ctrl::connect_from(lo(*k), rig.proxy.addr);
                let r = cl.reply();
                assert_eq!(r.code, 220, "banner {r:?}");
                clients.push(cl);
                at = clients.len() - 1;
            }
            Do::ConnectQuiet => {
                clients.push(Ctrl::connect(rig.proxy.addr));
                at = clients.len() - 1;
            }
            Do::Use(i) => at = *i,
            Do::Login => login(cur(&mut clients, at)),
            Do::Send(t) => cur(&mut clients, at).send(&subst.fill(t)),
            Do::Expect(t, code) => last = Some(cur(&mut clients, at).expect(&subst.fill(t), *code)),
            Do::Write(b) => cur(&mut clients, at).write_raw(b),
            Do::Split(b, cuts, gap) => cur(&mut clients, at).write_split(b, cuts, *gap),
            Do::Urgent(b) => {
                socket2::SockRef::from(cur(&mut clients, at).socket())
                    .send_out_of_band(b)
                    .expect("urgent data");
            }
            Do::NoDelay => cur(&mut clients, at)
                .socket()
                .set_nodelay(true)
                .expect("nodelay"),
            Do::ReadTimeout(d) => cur(&mut clients, at).set_read_timeout(*d),
            Do::ShutdownWrite => cur(&mut clients, at)
                .socket()
                .shutdown(std::net::Shutdown::Write)
                .expect("shutdown"),
            // behaviour under test: time passes (see the step's doc)
            Do::Pause(d) => std::thread::sleep(*d),
            Do::Reply(code) => {
                let r = cur(&mut clients, at).reply();
                assert_eq!(r.code, *code, "{r:?}");
                last = Some(r);
            }
            Do::AnyReply => last = Some(cur(&mut clients, at).reply()),
            Do::Lines(want) => {
                let r = cur(&mut clients, at).reply();
                assert_eq!(&r.lines, want, "{r:?}");
                last = Some(r);
            }
            Do::RawLine(want) => {
                let got = cur(&mut clients, at).raw_line().expect("a reply line");
                assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
                assert_eq!(&got, want);
            }
            Do::Has(t) => {
                let r = last_reply(&last);
                assert!(r.text().contains(&subst.fill(t)), "{r:?}");
            }
            Do::HasNot(t) => {
                let r = last_reply(&last);
                assert!(!r.text().contains(&subst.fill(t)), "{r:?}");
            }
            Do::Check(what, f) => {
                let r = last_reply(&last);
                assert!(f(&r), "{what}: {r:?}");
            }
            Do::Skip150(max) => {
                let cl = cur(&mut clients, at);
                let mut n = 0;
                let r = loop {
                    let r = cl.reply();
                    if r.code != 150 {
                        break r;
                    }
                    n += 1;
                };
                assert!(n <= *max, "{n} preliminary replies relayed (at most {max})");
                last = Some(r);
            }
            Do::Close(code) => last = Some(cur(&mut clients, at).expect_close(*code)),
            Do::Eof => cur(&mut clients, at).expect_eof(),
            Do::Quit => {
                let cl = cur(&mut clients, at);
                cl.expect("QUIT", 221);
                cl.expect_eof();
            }
            Do::NeverSaw(b) => rig.server().assert_never_saw(b),
            Do::SawLast(b) => assert_eq!(
                rig.server().seen().last().map(Vec::as_slice),
                Some(b.as_slice()),
                "{:?}",
                rig.server().seen_text()
            ),
            Do::SawCount(n) => assert_eq!(
                rig.server().seen().len(),
                *n,
                "{:?}",
                rig.server().seen_text()
            ),
            Do::Saw(want) => assert_eq!(&rig.server().seen_text(), want),
            Do::Leases(n) => assert_eq!(rig.leases(), *n, "port leases"),
            Do::Untouched => {
                for w in &rig.watches {
                    w.assert_untouched("a watched address");
                }
            }
            Do::Holds(what, f) => assert!(f(&rig), "{what}"),
            Do::WaitFor(what, f) => wait_until(what, DRAIN_TIMEOUT, || f(&rig)),
            Do::Mark => mark = Instant::now(),
            Do::Took(lo, hi) => {
                let took = mark.elapsed();
                assert!(
                    took >= *lo && took < *hi,
                    "took {took:?}, want {lo:?}..{hi:?}"
                );
            }
        }
    }
    step_at.set(c.steps.len());
    drop(clients);
    rig.finish(c.sessions);
}

/// Plays every row (or those whose name contains `$HOSTILE_CASE`), each on its own rig.
/// A failing row does not stop the others; the test then fails naming every failed row
/// with its step.
fn run_table(group: &str, cases: Vec<Case>) {
    let filter = std::env::var("HOSTILE_CASE").unwrap_or_default();
    let mut names = std::collections::HashSet::new();
    let mut failed = Vec::new();
    let mut ran = 0;
    for c in cases {
        assert!(names.insert(c.name), "{group}: case name {} twice", c.name);
        if !c.name.contains(filter.as_str()) {
            continue;
        }
        ran += 1;
        let name = c.name;
        let steps: Vec<String> = c.steps.iter().map(|s| format!("{s:?}")).collect();
        let at = std::cell::Cell::new(0usize);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(c, &at)));
        if let Err(e) = outcome {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let step = steps
                .get(at.get())
                .map_or("the ending (Rig::finish)".to_string(), |s| {
                    format!("step {} {s}", at.get())
                });
            eprintln!("FAILED: {group}/{name} at {step}: {msg}");
            failed.push(format!("{name} at {step}: {msg}"));
        } else {
            eprintln!("ok: {group}/{name} ({:?})", started.elapsed());
        }
    }
    assert!(
        failed.is_empty(),
        "{group}: {} of {ran} cases failed:\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
    if ran == 0 {
        eprintln!("SKIPPED: {group}: no case matches HOSTILE_CASE={filter}");
    } else {
        eprintln!("{group}: {ran} cases passed");
    }
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
    /// Control connections Mini accepted.
    accepted: AtomicUsize,
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
            log2.accepted.fetch_add(1, Ordering::SeqCst);
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
                            // behaviour under test: a slow server, one chunk per gap
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

    fn padded(prefix: &[u8], len: usize, fill: u8) -> Vec<u8> {
        let mut line = prefix.to_vec();
        line.resize(len, fill);
        line
    }

    fn cases() -> Vec<Case> {
        // HELP: the script answers 502 without echoing, so the reply stays short.
        let exact = padded(b"HELP ", MAX_LINE, b'x');
        let over = padded(b"SITE ", MAX_LINE + 1, b'x');
        let mut noop_then_a = b"NOOP\r\n".to_vec();
        noop_then_a.extend(std::iter::repeat_n(b'A', 10_000));
        noop_then_a.extend_from_slice(b"\r\nNOOP\r\n");
        let fifty: Vec<u8> = (0..50)
            .flat_map(|i| format!("SITE n{i}\r\n").into_bytes())
            .collect();
        let byte_by_byte = b"SITE one-byte-at-a-time\r\n".to_vec();
        let cuts: Vec<usize> = (1..byte_by_byte.len()).collect();
        vec![
            case("line_of_exactly_max_line_is_one_command").steps(vec![
                Do::Connect,
                Do::Login,
                write([&exact[..], b"\r\n"].concat()),
                Do::Reply(502),
                saw_last(&exact),
                Do::Quit,
            ]),
            case("line_one_byte_over_max_line_is_refused_whole").steps(vec![
                Do::Connect,
                Do::Login,
                write([&over[..], b"\r\n"].concat()),
                Do::Reply(500),
                has(refusal::TOO_LONG),
                never_saw("SITE"),
                expect("NOOP", 200),
                Do::Quit,
            ]),
            // The classic split: the cap falls right before "DELE"; a framer that cuts
            // there would hand the server a second, unchecked command.
            case("overlong_line_never_becomes_a_second_command").steps(
                [Do::Connect, Do::Login]
                    .into_iter()
                    .chain(
                        [MAX_LINE, MAX_LINE + 1, MAX_LINE - 3, 4 * MAX_LINE]
                            .into_iter()
                            .flat_map(|pad| {
                                let mut b = vec![b'X'; pad];
                                b.extend_from_slice(b"DELE secret\r\n");
                                [Do::Write(b), Do::Reply(500)]
                            }),
                    )
                    .chain([
                        expect("NOOP", 200),
                        never_saw("DELE"),
                        never_saw("XXX"),
                        Do::Quit,
                    ])
                    .collect(),
            ),
            case("overlong_tail_arriving_later_is_still_discarded").steps(vec![
                Do::Connect,
                Do::Login,
                // behaviour under test: the overlong line's tail arrives in later
                // segments, 50 ms apart
                Do::Split(
                    [&vec![b'X'; 2 * MAX_LINE][..], b"DELE secret\r\nNOOP\r\n"].concat(),
                    vec![2 * MAX_LINE, 2 * MAX_LINE + 11],
                    Duration::from_millis(50),
                ),
                Do::Reply(500),
                Do::Reply(200),
                never_saw("DELE"),
                Do::Quit,
            ]),
            case("bare_cr_rejects_the_whole_line").steps(vec![
                Do::Connect,
                Do::Login,
                write(b"SITE a\rDELE secret\r\n"),
                Do::Reply(500),
                write(b"NOOP\r\r\n"),
                Do::Reply(500),
                write(b"\rNOOP\r\n"),
                Do::Reply(500),
                expect("NOOP", 200),
                never_saw("DELE"),
                Do::SawCount(3),
                Do::Quit,
            ]),
            case("nul_rejects_the_whole_line").steps(
                [Do::Connect, Do::Login]
                    .into_iter()
                    .chain(each(&[b"SITE a\0DELE secret", b"\0NOOP", b"NOOP\0"], 500))
                    .chain([
                        expect("NOOP", 200),
                        never_saw("DELE"),
                        never_saw("\0"),
                        Do::Quit,
                    ])
                    .collect(),
            ),
            // Towards the server every line ends in CRLF.
            case("lf_alone_ends_a_line_and_mixes_with_crlf").steps(vec![
                Do::Connect,
                write(b"USER a\nPASS b\r\nNOOP\n"),
                Do::Reply(331),
                Do::Reply(230),
                Do::Reply(200),
                Do::Saw(vec!["USER a", "PASS b", "NOOP"]),
                Do::Quit,
            ]),
            case("empty_lines_get_500_and_never_reach_the_server").steps(vec![
                Do::Connect,
                Do::Login,
                write(b"\r\n\n \r\n"),
                Do::Reply(500),
                Do::Reply(500),
                Do::Reply(500),
                expect("NOOP", 200),
                // USER, PASS, NOOP only.
                Do::SawCount(3),
                Do::Quit,
            ]),
            case("command_split_into_one_byte_segments").steps(vec![
                Do::Connect,
                Do::Login,
                Do::Split(byte_by_byte, cuts, Duration::from_millis(5)),
                lines(&["200 SITE one-byte-at-a-time"]),
                // CR and LF in separate segments, far apart.
                Do::Split(b"NOOP\r\n".to_vec(), vec![5], Duration::from_millis(200)),
                Do::Reply(200),
                Do::Quit,
            ]),
            case("ten_thousand_a_after_noop_in_one_write").steps(vec![
                Do::Connect,
                Do::Login,
                Do::Write(noop_then_a),
                Do::Reply(200),
                Do::Reply(500),
                Do::Reply(200),
                never_saw("AAAA"),
                Do::Quit,
            ]),
            case("pipelined_refusals_keep_reply_order").steps(
                [
                    Do::Connect,
                    Do::Login,
                    write(
                        b"NOOP\r\nSITE x\0y\r\nPWD\r\n\r\nSYST\r\nPASV\r\nEPSV 2\r\nSITE end\r\n",
                    ),
                ]
                .into_iter()
                .chain([200, 500, 257, 500, 215, 227, 522, 200].map(Do::Reply))
                .chain([Do::Quit])
                .collect(),
            ),
            case("fifty_pipelined_commands_are_each_answered_once_in_order").steps(
                [Do::Connect, Do::Login, Do::Write(fifty)]
                    .into_iter()
                    .chain((0..50).map(|i| Do::Lines(vec![format!("200 SITE n{i}")])))
                    .chain([
                        holds("the server saw 50 SITE lines", |rig| {
                            rig.server()
                                .seen_text()
                                .iter()
                                .filter(|l| l.starts_with("SITE"))
                                .count()
                                == 50
                        }),
                        Do::Quit,
                    ])
                    .collect(),
            ),
            case("malformed_verbs_get_500_and_are_not_relayed").steps(
                [Do::Connect, Do::Login]
                    .into_iter()
                    .chain(each(
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
                    ))
                    .chain([expect("noop", 200), Do::SawCount(3), Do::Quit])
                    .collect(),
            ),
            case("partial_line_at_eof_is_never_relayed").steps(vec![
                Do::Connect,
                Do::Login,
                write(b"NOOP\r\nDELE secret"),
                Do::ShutdownWrite,
                Do::Reply(200),
                Do::Eof,
                never_saw("DELE"),
            ]),
        ]
    }

    #[test]
    fn table() {
        run_table("framing", cases());
    }
}

// ---------------------------------------------------------------------------------------
// (2) Telnet: IAC IAC is 0xFF, IP/DM are consumed, anything else is refused

mod telnet {
    use super::*;

    /// Logged in with a short read timeout: a stuck ABOR should fail in seconds, not
    /// after IO_TIMEOUT.
    fn abor_start() -> Vec<Do> {
        vec![
            Do::Connect,
            Do::Login,
            Do::ReadTimeout(Duration::from_secs(3)),
        ]
    }

    fn cases() -> Vec<Case> {
        let negotiation: [&[u8]; 8] = [
            b"\xff\xfb\x01",             // WILL ECHO
            b"\xff\xfc\x01",             // WONT
            b"\xff\xfd\x03",             // DO SUPPRESS-GO-AHEAD
            b"\xff\xfe\x18",             // DONT
            b"\xff\xfa\x18\x01\xff\xf0", // SB TERMINAL-TYPE SEND SE
            b"\xff\xf6",                 // AYT
            b"\xff\xf3",                 // BRK
            b"\xff\xf8",                 // EL
        ];
        // 5 + 2 * 254 = 513 bytes on the wire (259 after decoding): too long.
        let mut iac_long = b"HELP ".to_vec();
        iac_long.extend(std::iter::repeat_n([0xffu8, 0xff], 254).flatten());
        // 5 + 2 * 253 = 511 bytes on the wire.
        let iac_fits = iac_long[..MAX_LINE - 1].to_vec();
        vec![
            // The server got IAC IAC on the wire (one 0xFF byte, escaped), and its echo
            // came back to the client escaped the same way.
            case("iac_iac_is_the_byte_ff_in_paths_both_ways").steps(vec![
                Do::Connect,
                Do::Login,
                write(b"SITE caf\xe9\xff\xff.txt\r\n"),
                raw_line(b"200 SITE caf\xe9\xff\xff.txt"),
                saw_last(b"SITE caf\xe9\xff\xff.txt"),
                Do::Quit,
            ]),
            // lftp and netkit ftp: IAC IP IAC in band, DM as TCP urgent data, then ABOR.
            case("ip_and_dm_before_abor_are_consumed_lftp_style").steps(
                abor_start()
                    .into_iter()
                    .chain([
                        Do::NoDelay,
                        write(b"\xff\xf4\xff"),
                        Do::Urgent(b"\xf2".to_vec()),
                        write(b"ABOR\r\n"),
                        Do::Reply(226),
                        saw_last("ABOR"),
                        expect("NOOP", 200),
                        Do::Quit,
                    ])
                    .collect(),
            ),
            // ftplib.FTP.abort(): sock.sendall(b'ABOR\r\n', MSG_OOB).
            case("abor_sent_as_urgent_data_python_ftplib_style").steps(
                abor_start()
                    .into_iter()
                    .chain([
                        Do::Urgent(b"ABOR\r\n".to_vec()),
                        Do::Reply(226),
                        saw_last("ABOR"),
                        Do::Quit,
                    ])
                    .collect(),
            ),
            case("ip_dm_abor_in_band_and_iac_nop_are_consumed").steps(
                abor_start()
                    .into_iter()
                    .chain([
                        write(b"\xff\xf4\xff\xf2ABOR\r\n"),
                        Do::Reply(226),
                        write(b"NO\xff\xf1OP\r\n"),
                        Do::Reply(200),
                        holds("the server saw ABOR then NOOP", |rig| {
                            let seen = rig.server().seen();
                            seen.len() >= 2
                                && seen[seen.len() - 2..] == [b"ABOR".to_vec(), b"NOOP".to_vec()]
                        }),
                        Do::Quit,
                    ])
                    .collect(),
            ),
            case("telnet_option_negotiation_gets_500").steps(
                [Do::Connect, Do::Login]
                    .into_iter()
                    .chain(negotiation.iter().flat_map(|seq| {
                        // At the start of a line and in the middle of one.
                        [
                            Do::Write([*seq, b"SITE x\r\n"].concat()),
                            Do::Reply(500),
                            Do::Write([b"SITE x", *seq, b"y\r\n"].concat()),
                            Do::Reply(500),
                        ]
                    }))
                    .chain([expect("NOOP", 200), never_saw("SITE"), Do::Quit])
                    .collect(),
            ),
            case("lone_iac_gets_500").steps(
                [Do::Connect, Do::Login]
                    .into_iter()
                    .chain(
                        [
                            &b"NOOP\xff\r\n"[..],
                            b"\xff\r\n",
                            b"\xffNOOP\r\n",
                            b"SITE \xffA\r\n",
                            b"NOOP\xff\n",
                        ]
                        .iter()
                        .flat_map(|b| [write(b), Do::Reply(500)]),
                    )
                    .chain([expect("NOOP", 200), Do::SawCount(3), Do::Quit])
                    .collect(),
            ),
            case("iac_iac_counts_twice_against_max_line").steps(vec![
                Do::Connect,
                Do::Login,
                write([&iac_long[..], b"\r\n"].concat()),
                Do::Reply(500),
                never_saw("HELP"),
                write([&iac_fits[..], b"\r\n"].concat()),
                Do::Reply(502),
                // Relayed with IAC IAC.
                saw_last(&iac_fits),
                Do::Quit,
            ]),
            case("server_telnet_negotiation_ends_the_session_with_421")
                .answer(answer(|l| match split_command(l).0.as_str() {
                    "SITE" => vec![Step::Send(b"200 ok\xff\xfb\x01\r\n".to_vec())],
                    _ => basic_answer(l),
                }))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    send("SITE x"),
                    Do::Close(421),
                    has(refusal::INVALID_REPLY),
                ]),
        ]
    }

    #[test]
    fn table() {
        run_table("telnet", cases());
    }
}

// ---------------------------------------------------------------------------------------
// (3) PORT/EPRT from the client: checked before any packet is sent

mod active {
    use super::*;

    /// Each command gets `code`. Then a RETR finds no data plan (425), nothing reached
    /// the watches, and the server never saw PORT, EPRT or RETR; then QUIT.
    fn refuse_all<S: AsRef<str>>(cmds: &[S], code: u16) -> Vec<Do> {
        let mut steps = each_cmd(cmds, code);
        steps.extend([
            expect("RETR x", 425),
            Do::Untouched,
            never_saw("PORT"),
            never_saw("EPRT"),
            never_saw("RETR"),
            Do::Quit,
        ]);
        steps
    }

    fn logged_in() -> Vec<Do> {
        vec![Do::Connect, Do::Login]
    }

    /// Logged in from 127.0.0.n, the address every PORT/EPRT must then name.
    fn logged_in_from(n: u8) -> Vec<Do> {
        vec![Do::ConnectFrom(n), Do::Login]
    }

    fn then(mut a: Vec<Do>, b: Vec<Do>) -> Vec<Do> {
        a.extend(b);
        a
    }

    fn cases() -> Vec<Case> {
        let mut privileged = logged_in_from(7);
        // 1024 is the first acceptable port; a later refusal drops that plan again.
        privileged.push(expect(format!("PORT {}", six([127, 0, 0, 7], 1024)), 200));
        privileged.push(expect("EPRT |1|127.0.0.7|1024|", 200));
        for p in [1023u16, 25, 22, 21, 1] {
            privileged.push(expect(format!("PORT {}", six([127, 0, 0, 7], p)), 501));
            privileged.push(has(p.to_string()));
        }
        let mut eprt_522 = logged_in();
        for arg in [
            "|2|2001:db8::1|5000|",
            "|2|::1|5000|",
            "|2|::127.0.0.1|5000|", // IPv4-compatible is IPv6, unlike IPv4-mapped
            "|3|127.0.0.1|5000|",
            "|0|127.0.0.1|5000|",
            "|9|127.0.0.1|5000|",
            "|255|127.0.0.1|5000|",
        ] {
            eprt_522.push(expect(format!("EPRT {arg}"), 522));
            eprt_522.push(has("(1)"));
        }
        let mut epsv_families = logged_in();
        for arg in ["2", "3", "0"] {
            epsv_families.push(expect(format!("EPSV {arg}"), 522));
            epsv_families.push(has("(1)"));
        }
        epsv_families.extend(each_cmd(
            &[
                "EPSV x",
                "EPSV 1 ",
                "EPSV  1",
                "EPSV -1",
                "EPSV ALLX",
                "EPSV 1000",
            ],
            501,
        ));
        vec![
            case("port_and_eprt_to_a_foreign_host_are_refused")
                .watch(sa(2, 0))
                .steps(then(
                    then(
                        logged_in(),
                        vec![expect("PORT {w0:6}", 501), has("127.0.0.2")],
                    ),
                    refuse_all(
                        &[
                            "EPRT |1|127.0.0.2|{w0}|".to_string(),
                            "EPRT |2|::ffff:127.0.0.2|{w0}|".to_string(),
                            format!("PORT {}", six([198, 51, 100, 66], 5000)),
                        ],
                        501,
                    ),
                )),
            // The client (127.0.0.3) names the FTP server's own control port (127.0.0.1).
            // Still exactly one connection to the server: the session's control one.
            case("port_bouncing_to_the_servers_control_port_is_refused").steps(then(
                logged_in_from(3),
                refuse_all(
                    &[
                        "PORT 127,0,0,1,{server:hi},{server:lo}",
                        "EPRT |1|127.0.0.1|{server}|",
                        "PORT 127,0,0,1,{proxy:hi},{proxy:lo}",
                    ],
                    501,
                ),
            )),
            case("ports_below_1024_on_the_clients_own_address_are_refused")
                .watch(sa(7, 21))
                .watch(sa(7, 22))
                .watch(sa(7, 25))
                .watch(sa(7, 1023))
                .steps(then(
                    privileged,
                    refuse_all(
                        &[
                            "EPRT |1|127.0.0.7|1023|",
                            "EPRT |1|127.0.0.7|25|",
                            "EPRT |1|127.0.0.7|22|",
                        ],
                        501,
                    ),
                )),
            case("port_fields_over_255_are_refused_not_wrapped")
                .watch(sa(7, 22))
                .watch(sa(7, 1025))
                .steps(then(
                    logged_in_from(7),
                    refuse_all(
                        &[
                            "PORT 127,0,0,7,256,22", // 256*256+22 wraps to 22
                            "PORT 127,0,0,7,4,257",  // 4*256+257 = 1281, or 1025+256
                            "PORT 383,0,0,7,4,1",    // 383 = 127+256
                            "PORT 127,0,0,263,4,1",  // 263 = 7+256
                            "PORT 127,0,0,7,1000,22",
                            "PORT 127,0,0,7,4,999",
                        ],
                        501,
                    ),
                )),
            case("port_with_too_few_or_too_many_fields_is_refused").steps(then(
                logged_in(),
                refuse_all(
                    &[
                        "PORT",
                        "PORT 127,0,0,1",
                        "PORT 127,0,0,1,4",
                        "PORT 127,0,0,1,4,1,7",
                        "PORT 127,0,0,1,4,1,",
                        "PORT ,127,0,0,1,4,1",
                        "PORT 127,,0,0,1,4,1",
                        "PORT 127.0.0.1,4,1",
                        "PORT (127,0,0,1,4,1)",
                    ],
                    501,
                ),
            )),
            case("port_with_signs_is_refused").steps(then(
                logged_in(),
                refuse_all(
                    &[
                        "PORT +127,0,0,1,4,1",
                        "PORT 127,0,0,1,-4,1",
                        "PORT 127,0,0,1,4,+1",
                        "PORT 127,0,0,-1,4,1",
                        "PORT 127,0,0,1,4,-0",
                    ],
                    501,
                ),
            )),
            case("port_with_blanks_inside_is_refused").steps(then(
                logged_in(),
                refuse_all(
                    &[
                        "PORT 127, 0,0,1,4,1",
                        "PORT 127,0,0,1,4 ,1",
                        "PORT 127,0,0,1,4,1 x",
                        "PORT 127\t,0,0,1,4,1",
                        "PORT 127,0,0,1,4,\t1",
                        "PORT 127,0,0,1,4,1\t",
                    ],
                    501,
                ),
            )),
            // Up to three digits a field is plain decimal (RFC 959), so "001" is 1.
            case("port_with_overlong_leading_zeros_is_refused").steps(then(
                then(
                    logged_in(),
                    vec![expect("PORT 127,000,000,001,004,001", 200)],
                ),
                refuse_all(
                    &[
                        "PORT 0127,0,0,1,4,1",
                        "PORT 127,0,0,1,0004,1",
                        "PORT 127,0,0,1,4,0001",
                        "PORT 127,0,0,0001,4,1",
                    ],
                    501,
                ),
            )),
            case("port_to_unspecified_broadcast_and_multicast_is_refused").steps(then(
                logged_in(),
                refuse_all(
                    &[
                        "PORT 0,0,0,0,4,1",
                        "PORT 255,255,255,255,4,1",
                        "PORT 224,0,0,1,4,1",
                        "PORT 239,255,255,250,7,108",
                        "PORT 127,255,255,255,4,1",
                        "EPRT |1|0.0.0.0|1025|",
                        "EPRT |1|255.255.255.255|1025|",
                        "EPRT |1|224.0.0.1|1025|",
                    ],
                    501,
                ),
            )),
            case("eprt_family_mismatch_gives_522_with_the_supported_family").steps(then(
                eprt_522,
                refuse_all(
                    &[
                        "EPRT |256|127.0.0.1|5000|",
                        "EPRT |x|127.0.0.1|5000|",
                        "EPRT |1000|127.0.0.1|5000|",
                    ],
                    501,
                ),
            )),
            // RFC 2428: any printable delimiter other than a digit works if used four times.
            case("eprt_with_other_delimiters")
                .watch(sa(2, 0))
                .steps(then(
                    then(
                        logged_in(),
                        vec![
                            expect("EPRT !1!127.0.0.1!5000!", 200),
                            expect("EPRT #1#127.0.0.1#5000#", 200),
                        ],
                    ),
                    refuse_all(
                        &[
                            "EPRT !1!127.0.0.2!{w0}!",
                            "EPRT |1!127.0.0.1!{w0}|",
                            "EPRT  1 127.0.0.1 {w0} ",
                            "EPRT \x7f1\x7f127.0.0.1\x7f{w0}\x7f",
                            "EPRT 111127.0.0.11{w0}1",
                        ],
                        501,
                    ),
                )),
            case("eprt_with_empty_or_missing_fields_is_refused").steps(then(
                logged_in(),
                refuse_all(
                    &[
                        "EPRT",
                        "EPRT |",
                        "EPRT ||||",
                        "EPRT |||5000|",
                        "EPRT |1||5000|",
                        "EPRT |1|127.0.0.1||",
                        "EPRT ||127.0.0.1|5000|",
                        "EPRT |1|127.0.0.1|5000",
                        "EPRT |1|127.0.0.1|5000||",
                    ],
                    501,
                ),
            )),
            case("eprt_addresses_that_inet_aton_would_accept_are_refused").steps(then(
                logged_in(),
                refuse_all(
                    &[
                        "EPRT |1|127.1|5000|",
                        "EPRT |1|0x7f.0.0.1|5000|",
                        "EPRT |1|2130706433|5000|",
                        "EPRT |1|127.0.0.01|5000|",
                        "EPRT |1|0177.0.0.1|5000|",
                        "EPRT |1|localhost|5000|",
                        "EPRT |1|127.0.0.1 |5000|",
                        "EPRT |1| 127.0.0.1|5000|",
                        "EPRT |2|::ffff:127.0.0.1%lo|5000|",
                    ],
                    501,
                ),
            )),
            case("eprt_ports_out_of_range_are_refused").steps(then(
                logged_in(),
                refuse_all(
                    &[
                        "EPRT |1|127.0.0.1|0|",
                        "EPRT |1|127.0.0.1|65536|",
                        "EPRT |1|127.0.0.1|99999|",
                        "EPRT |1|127.0.0.1|1023|",
                        "EPRT |1|127.0.0.1|-1|",
                        "EPRT |1|127.0.0.1|1e4|",
                        "EPRT |1|127.0.0.1|0x1f90|",
                        "EPRT |1|127.0.0.1|000005000|",
                    ],
                    501,
                ),
            )),
            // A refused EPSV leases no port.
            case("epsv_family_arguments").steps(then(
                epsv_families,
                vec![
                    Do::Leases(0),
                    expect("EPSV 1", 229),
                    Do::Leases(1),
                    never_saw("EPSV"),
                    Do::Quit,
                ],
            )),
            // The client's EPSV ALL/EPSV are never relayed; the PASV the server sees is
            // ftpgate's own, sent ahead for the next transfer.
            case("epsv_all_refuses_every_other_way_to_set_up_data")
                .watch(sa(1, 0))
                .steps(then(
                    then(logged_in(), vec![expect("epsv all", 200)]),
                    then(
                        each_cmd(
                            &["PASV", "pasv", "Port {w0:6}", "EPRT |1|127.0.0.1|{w0}|"],
                            501,
                        ),
                        vec![
                            expect("LPSV", 502),
                            expect("LPRT 4,4,127,0,0,1,2,4,1", 502),
                            expect("RETR x", 425),
                            Do::Untouched,
                            expect("EPSV 1", 229),
                            expect("EPSV", 229),
                            Do::Leases(1),
                            never_saw("EPSV"),
                            Do::Quit,
                        ],
                    ),
                )),
            case("lprt_lpsv_and_spsv_get_502_and_are_not_relayed")
                .watch(sa(2, 0))
                .steps(then(
                    then(
                        logged_in(),
                        each_cmd(
                            &[
                                "LPRT 4,4,127,0,0,2,2,{w0:hi},{w0:lo}",
                                "LPRT 6,16,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2,4,1",
                                "LPSV",
                                "SPSV",
                                "lpsv",
                            ],
                            502,
                        ),
                    ),
                    vec![
                        expect("RETR x", 425),
                        Do::Untouched,
                        never_saw("LPRT"),
                        never_saw("LPSV"),
                        never_saw("SPSV"),
                        never_saw("lpsv"),
                        Do::Leases(0),
                        Do::Quit,
                    ],
                )),
            // A PASV listener is released by a refused PORT too.
            case("a_refused_port_drops_the_earlier_data_plan")
                .watch(sa(1, 0))
                .steps(then(
                    logged_in(),
                    vec![
                        expect("PORT {w0:6}", 200),
                        expect("PORT 127,0,0,2,4,1", 501),
                        expect("RETR x", 425),
                        expect("PASV", 227),
                        Do::Leases(1),
                        expect("EPRT |1|127.0.0.1|80|", 501),
                        Do::Leases(0),
                        expect("LIST", 425),
                        Do::Untouched,
                        Do::Quit,
                    ],
                )),
        ]
    }

    #[test]
    fn table() {
        run_table("active", cases());
    }

    /// An active-mode RETR of Mini's payload: the client listens on 127.0.0.1, sends
    /// `cmd(port)` (200), RETR (150), takes the proxy's data connection and checks the
    /// bytes and the 226. Returns the client's data port.
    fn active_retr(c: &mut Ctrl, cmd: impl Fn(u16) -> String) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("client data listener");
        let p = l.local_addr().expect("addr").port();
        c.expect(&cmd(p), 200);
        c.expect("RETR f", 150);
        let mut data = accept_timeout(&l, IO_TIMEOUT).expect("data connection from the proxy");
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("read data");
        assert_eq!(c.reply().code, 226);
        assert_eq!(got, *MiniOpts::default().payload);
        p
    }

    #[test]
    fn eprt_ipv4_mapped_client_address_is_canonicalised_and_works() {
        let rig = mini_rig("eprt_mapped_ok", MiniOpts::default(), "passive", "");
        let mut c = rig.logged_in();
        active_retr(&mut c, |p| format!("EPRT |2|::ffff:127.0.0.1|{p}|"));
        assert!(
            !rig.mini().seen().iter().any(|l| l.starts_with("EPRT")),
            "{:?}",
            rig.mini().seen()
        );
        quit(c);
        rig.finish_with(1, 1);
    }

    #[test]
    fn the_server_only_ever_sees_the_proxys_own_port_command() {
        let rig = mini_rig("port_rewritten", MiniOpts::default(), "active", "");
        let mut c = rig.logged_in();
        let p = active_retr(&mut c, |p| format!("PORT {}", six([127, 0, 0, 1], p)));
        let ports: Vec<String> = rig
            .mini()
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
        rig.finish_with(1, 1);
    }
}

// ---------------------------------------------------------------------------------------
// (4) Hostile server PASV/EPSV replies

mod server_passive {
    use super::*;

    /// A script server that answers each PASV/EPSV with the next of `replies` (cycling)
    /// and everything else like [`basic_answer`].
    fn cycling(replies: &[&str]) -> Answer {
        let replies: Vec<String> = replies.iter().map(|s| s.to_string()).collect();
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
    /// PASV to the server gets the hostile reply and the client gets 425 without the
    /// server's address text. The session goes on, no data task is started, and the
    /// client's passive listener is released.
    fn each_gives_425(name: &'static str, replies: &[&str], data_extra: &str) -> Case {
        let mut steps = vec![Do::Connect, Do::Login];
        for _ in replies {
            steps.extend([
                expect("PASV", 227),
                expect("RETR x", 425),
                has_not("127,0,0,2"),
                has_not("(|||"),
                Do::Leases(0),
            ]);
        }
        steps.extend([
            expect("NOOP", 200),
            Do::Untouched,
            never_saw("RETR"),
            Do::Quit,
        ]);
        case(name)
            .data(data_extra)
            .answer(cycling(replies))
            .steps(steps)
    }

    /// A server answering `verbs` with `text` (a [`Subst`] template naming watch 0;
    /// `{line}` is the received line), everything else like [`basic_answer`].
    fn watched_script(
        name: &'static str,
        verbs: &'static [&'static str],
        text: &'static [u8],
    ) -> Case {
        case(name).watch(sa(2, 0)).answer_with(move |subst| {
            let text = subst.fill(&String::from_utf8_lossy(text));
            answer(move |l| {
                let (verb, _) = split_command(l);
                if !verbs.contains(&verb.as_str()) {
                    return basic_answer(l);
                }
                let t = text.replace("{line}", &String::from_utf8_lossy(l));
                vec![Step::Send(t.into_bytes())]
            })
        })
    }

    fn cases() -> Vec<Case> {
        vec![
            each_gives_425(
                "trust_policy_still_refuses_unspecified_broadcast_and_multicast",
                &[
                    "227 Entering Passive Mode (0,0,0,0,195,80)",
                    "227 Entering Passive Mode (255,255,255,255,195,80)",
                    "227 Entering Passive Mode (224,0,0,1,195,80)",
                ],
                "server_pasv_address: trust",
            ),
            each_gives_425(
                "pasv_replies_to_privileged_ports_are_refused",
                &[
                    "227 Entering Passive Mode (127,0,0,1,3,255)", // 1023
                    "227 Entering Passive Mode (127,0,0,1,0,22)",
                    "227 Entering Passive Mode (127,0,0,2,0,25)",
                    "227 Entering Passive Mode (127,0,0,1,0,0)",
                    "229 Entering Extended Passive Mode (|||1023|)",
                    "229 Entering Extended Passive Mode (|||21|)",
                ],
                "",
            ),
            // As root, watch the very port the reply names (under use_control: 127.0.0.1).
            case("pasv_reply_to_port_1023_is_never_connected")
                .answer(cycling(&["227 Entering Passive Mode (127,0,0,1,3,255)"]))
                .watch(sa(1, 1023))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    expect("PASV", 227),
                    expect("RETR x", 425),
                    // The client learns the reply was refused, not what it named.
                    has_not("1023"),
                    Do::Untouched,
                    Do::Quit,
                ]),
            each_gives_425(
                "garbage_227_replies_are_refused",
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
            ),
            each_gives_425(
                "malformed_229_replies_are_refused",
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
            ),
            each_gives_425(
                "server_refusing_passive_mode_gives_425",
                &[
                    "502 PASV not implemented",
                    "530 not logged in",
                    "500 what?",
                    "228 long passive",
                ],
                "",
            ),
            watched_script(
                "passive_reply_in_a_multi_line_reply_is_text",
                &["STAT"],
                b"211-Status of the server:\r\n\
                  227 Entering Passive Mode ({w0:6})\r\n\
                  229 Entering Extended Passive Mode (|||{w0}|)\r\n\
                  PORT {w0:6}\r\n\
                  211 End of status\r\n",
            )
            .steps(vec![
                Do::Connect,
                Do::Login,
                expect("STAT", 211),
                // Padded with one SP (SECURITY.md 12): never read as a final reply.
                check("five lines, the 227 among them as padded text", |r| {
                    r.lines.len() == 5
                        && r.lines[1].starts_with(" 227 Entering Passive Mode (127,0,0,2,")
                }),
                expect("RETR x", 425),
                Do::Untouched,
                Do::Leases(0),
                Do::Quit,
            ]),
            // Never acted on, and its address text never reaches the client (SECURITY.md
            // 3): the reply is withheld and replaced.
            watched_script(
                "a_227_answering_another_command_is_never_acted_on",
                &["SITE", "HELP"],
                b"227 Entering Passive Mode ({w0:6})\r\n",
            )
            .steps(vec![
                Do::Connect,
                Do::Login,
                expect("SITE x", 502),
                check("no address text crossed the proxy", |r| {
                    !r.lines.concat().contains('(')
                }),
                send("HELP"),
                Do::AnyReply,
                expect("RETR x", 425),
                Do::Untouched,
                Do::Leases(0),
                Do::Quit,
            ]),
            watched_script(
                "a_229_answering_another_command_is_never_acted_on",
                &["SITE"],
                b"229 Entering Extended Passive Mode (|||{w0}|)\r\n",
            )
            .steps(vec![
                Do::Connect,
                Do::Login,
                expect("SITE x", 502),
                expect("LIST", 425),
                Do::Untouched,
                Do::Quit,
            ]),
            watched_script(
                "a_227_inside_an_error_echo_is_relayed_as_text",
                &["XYZW"],
                b"500 '{line}': command not understood\r\n",
            )
            .steps(vec![
                Do::Connect,
                Do::Login,
                expect("XYZW 227 Entering Passive Mode ({w0:6})", 500),
                has("{w0:6}"),
                expect("RETR x", 425),
                Do::Untouched,
                Do::Quit,
            ]),
            // One write: an extra reply arriving after the client's next command would be
            // indistinguishable from that command's reply.
            watched_script(
                "an_unsolicited_227_after_a_reply_is_dropped",
                &["SITE"],
                b"200 ok\r\n227 Entering Passive Mode ({w0:6})\r\n",
            )
            .steps(vec![
                Do::Connect,
                Do::Login,
                expect("SITE x", 200),
                send("NOOP"),
                lines(&["200 NOOP ok"]),
                expect("RETR x", 425),
                Do::Untouched,
                Do::Quit,
            ]),
        ]
    }

    #[test]
    fn table() {
        run_table("server_passive", cases());
    }

    #[test]
    fn pasv_reply_naming_another_host_is_replaced_by_the_control_address() {
        let opts = MiniOpts {
            announce: [127, 0, 0, 2],
            ..MiniOpts::default()
        };
        let rig = mini_rig("pasv_other_host", opts, "passive", "");
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
            rig.mini().log.foreign_hits.load(Ordering::SeqCst),
            0,
            "connected to 127.0.0.2"
        );
        assert_eq!(rig.mini().log.data_accepts.load(Ordering::SeqCst), 1);
        quit(c);
        rig.finish_with(1, 1);
    }

    #[test]
    fn check_policy_refuses_a_pasv_reply_naming_another_host() {
        let opts = MiniOpts {
            announce: [127, 0, 0, 2],
            ..MiniOpts::default()
        };
        let rt = runtime();
        let mini = start_mini(&rt, opts);
        let cfg = Cfg {
            data_extra: "server_pasv_address: check".into(),
            ..Cfg::default()
        };
        let rig = start_rig("pasv_check", &cfg, Upstream::Mini(mini), Vec::new(), rt);
        let mut c = rig.logged_in();
        rig.pasv(&mut c);
        let r = c.cmd("RETR f");
        assert_eq!(r.code, 425, "{r:?}");
        // The client learns the reply was refused, never the address it named.
        assert!(!r.text().contains("127.0.0.2"), "{r:?}");
        c.expect("NOOP", 200);
        assert_eq!(rig.mini().log.foreign_hits.load(Ordering::SeqCst), 0);
        assert_eq!(rig.mini().log.data_accepts.load(Ordering::SeqCst), 0);
        assert!(
            !rig.mini().seen().iter().any(|l| l.starts_with("RETR")),
            "RETR relayed after a refused 227"
        );
        quit(c);
        rig.finish_with(1, 0);
    }
}
// ---------------------------------------------------------------------------------------
// (5) Data-connection hijack: one accept, from the expected peer

mod hijack {
    use super::*;

    #[test]
    fn intruders_on_the_passive_port_cannot_inject_an_upload() {
        let rig = mini_rig("hijack_upload", MiniOpts::default(), "passive", "");
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
            rig.mini().uploads(),
            vec![upload],
            "the server received other bytes"
        );
        for s in intruders {
            assert_intruder_closed(intruder_outcome(s), "passive-port intruder");
        }
        quit(c);
        rig.finish_with(1, 1);
    }

    #[test]
    fn intruder_on_the_server_side_active_listener_cannot_inject_a_download() {
        let opts = MiniOpts {
            intrude_active: true,
            ..MiniOpts::default()
        };
        let rig = mini_rig("hijack_active_listener", opts, "active", "");
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
            !rig.mini().intruders().is_empty()
        });
        let outcomes = rig.mini().intruders();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].0, 0, "the intruder read bytes: {outcomes:?}");
        assert_ne!(outcomes[0].1, "still open after 5 s", "{outcomes:?}");
        quit(c);
        rig.finish_with(1, 1);
    }

    #[test]
    fn connection_to_the_passive_port_after_the_transfer_started() {
        let opts = MiniOpts {
            payload: Arc::new(vec![7u8; 400_000]),
            chunk_gap: Some(Duration::from_millis(2)),
            ..MiniOpts::default()
        };
        let rig = mini_rig("hijack_late", opts, "passive", "");
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
        rig.finish_with(1, 1);
    }

    #[test]
    fn passive_port_is_closed_once_its_accept_deadline_passed() {
        let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 1s, idle: 30s, data_stall: 10s, shutdown_grace: 2s }\n";
        let rig = mini_rig(
            "hijack_after_deadline",
            MiniOpts::default(),
            "passive",
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
        rig.finish_with(1, 1);
    }
}

// ---------------------------------------------------------------------------------------
// (6) Reply robustness: strict pairing, strict syntax, bounded size

mod replies {
    use super::*;

    /// A server that answers `SITE <n>` with `bodies[n]` (raw bytes), then does whatever
    /// `after` says (e.g. close).
    fn numbered(bodies: Vec<Vec<u8>>, after: Vec<Step>) -> Answer {
        answer(move |l| {
            let (verb, arg) = split_command(l);
            if verb != "SITE" {
                return basic_answer(l);
            }
            let n: usize = String::from_utf8_lossy(&arg).parse().unwrap_or(0);
            let mut steps = vec![Step::Send(bodies[n].clone())];
            steps.extend(after.iter().cloned());
            steps
        })
    }

    /// A server that answers `verb` with these raw bytes.
    fn on(verb: &'static str, bytes: &'static [u8]) -> Answer {
        answer(move |l| {
            if split_command(l).0 == verb {
                vec![Step::Send(bytes.to_vec())]
            } else {
                basic_answer(l)
            }
        })
    }

    pub(super) fn multi_line(lines: usize) -> Vec<u8> {
        let mut v = b"211-start\r\n".to_vec();
        for i in 0..lines - 2 {
            v.extend_from_slice(format!(" line {i}\r\n").as_bytes());
        }
        v.extend_from_slice(b"211 end\r\n");
        v
    }

    /// A multi-line reply whose lines (without CRLF) add up to exactly `total` bytes.
    pub(super) fn reply_of_bytes(total: usize) -> Vec<u8> {
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

    /// A banner ftpgate must refuse: the client gets 421 naming the greeting, then EOF.
    fn banner_refused(name: &'static str, banner: Vec<Step>) -> Case {
        case(name)
            .banner(banner)
            .extra(format!(
                "limits: {{ max_line: {MAX_LINE}, max_reply_lines: 20 }}\n"
            ))
            .steps(vec![
                Do::ConnectQuiet,
                Do::Close(421),
                has(refusal::GREETING),
            ])
    }

    fn cases() -> Vec<Case> {
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
        let bad_bodies: Vec<Vec<u8>> = bad.iter().map(|b| [*b, b"\r\n"].concat()).collect();
        // One session per malformed reply: each ends the session that got it.
        let malformed_steps: Vec<Do> = (0..bad.len())
            .flat_map(|i| {
                [
                    Do::Connect,
                    Do::Login,
                    send(format!("SITE {i}")),
                    Do::Close(421),
                    has(refusal::INVALID_REPLY),
                ]
            })
            .collect();
        let exact = format!("200 {}\r\n", "z".repeat(MAX_LINE - 4)).into_bytes();
        let over = format!("200 {}\r\n", "z".repeat(MAX_LINE - 3)).into_bytes();
        let codes_inside: [&[u8]; 6] = [b"211-a", b"212 b", b"211-c", b"2110 d", b" 211 e", b"211"];
        // What the client sees: inner lines that could read as a final reply get one SP
        // (SECURITY.md 12); `ddd-` lines and the two ends are untouched.
        let codes_seen: [&[u8]; 6] = [b"211-a", b" 212 b", b"211-c", b" 2110 d", b" 211 e", b"211"];
        let codes_body: Vec<u8> = codes_inside
            .iter()
            .flat_map(|l| [*l, b"\r\n"].concat())
            .collect();
        let mut long_banner = b"220-hello\r\n".to_vec();
        long_banner.extend(b" more\r\n".repeat(50));
        long_banner.extend_from_slice(b"220 ready\r\n");
        let silent = short_timeouts("1s", "30s");
        vec![
            // After the banner and after a reply, each in the same write as what precedes it.
            case("unsolicited_replies_are_dropped")
                .banner(vec![Step::Send(
                    b"220 hi\r\n200 spurious after the banner\r\n".to_vec(),
                )])
                .answer(on(
                    "SITE",
                    b"200 SITE ok\r\n250 spurious\r\n150 spurious\r\n",
                ))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    expect("SITE x", 200),
                    send("NOOP"),
                    lines(&["200 NOOP ok"]),
                    send("SYST"),
                    lines(&["215 UNIX Type: L8"]),
                    Do::Quit,
                ]),
            case("unsolicited_421_is_relayed_and_closes_the_session")
                .answer(on("SITE", b"200 SITE ok\r\n421 Server going down\r\n"))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    expect("SITE x", 200),
                    Do::Close(421),
                    check("the server's own 421", |r| {
                        r.lines == ["421 Server going down"]
                    }),
                ]),
            case("ten_thousand_150s_to_a_relayed_command_get_421_after_a_small_cap")
                .answer(answer(|l| match split_command(l).0.as_str() {
                    "SITE" => vec![Step::Send(b"150 still working\r\n".repeat(10_000))],
                    _ => basic_answer(l),
                }))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    send("SITE x"),
                    Do::Skip150(16),
                    check("421", |r| r.code == 421),
                    Do::Eof,
                ]),
            // A 1xx to ftpgate's own PASV never reaches the client.
            case("ten_thousand_150s_to_the_proxys_own_pasv_get_421")
                .answer(answer(|l| match split_command(l).0.as_str() {
                    "PASV" => vec![Step::Send(b"150 thinking\r\n".repeat(10_000))],
                    _ => basic_answer(l),
                }))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    expect("PASV", 227),
                    send("RETR x"),
                    Do::Skip150(0),
                    check("421", |r| r.code == 421),
                    Do::Eof,
                ]),
            case("malformed_reply_codes_close_with_421_and_are_never_relayed")
                .answer(numbered(bad_bodies, vec![]))
                .steps(malformed_steps)
                .sessions(bad.len()),
            case("reply_line_at_max_line_is_relayed_one_byte_over_closes")
                .answer(numbered(vec![exact, over], vec![]))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    expect("SITE 0", 200),
                    check("MAX_LINE bytes", |r| r.lines[0].len() == MAX_LINE),
                    send("SITE 1"),
                    Do::Close(421),
                    check("a short 421 of ftpgate's own", |r| r.lines[0].len() < 100),
                ]),
            case("multi_line_reply_at_max_reply_lines_is_relayed_one_over_closes")
                .answer(numbered(vec![multi_line(20), multi_line(21)], vec![]))
                .extra(format!(
                    "limits: {{ max_line: {MAX_LINE}, max_reply_lines: 20 }}\n"
                ))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    expect("SITE 0", 211),
                    check("20 lines", |r| r.lines.len() == 20),
                    send("SITE 1"),
                    Do::Close(421),
                    check("no part of the long reply relayed", |r| r.lines.len() == 1),
                ]),
            case("multi_line_reply_at_max_reply_bytes_is_relayed_one_over_closes")
                .answer(numbered(
                    vec![reply_of_bytes(2000), reply_of_bytes(2001)],
                    vec![],
                ))
                .extra(format!(
                    "limits: {{ max_line: {MAX_LINE}, max_reply_bytes: 2000 }}\n"
                ))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    expect("SITE 0", 211),
                    check("2000 bytes", |r| {
                        r.lines.iter().map(String::len).sum::<usize>() == 2000
                    }),
                    send("SITE 1"),
                    Do::Close(421),
                    check("one line", |r| r.lines.len() == 1),
                ]),
            case("server_closing_mid_multi_line_reply_gives_421_without_the_fragment")
                .answer(numbered(
                    vec![b"211-start\r\n more\r\n".to_vec()],
                    vec![Step::Close],
                ))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    send("SITE 0"),
                    Do::Close(421),
                    check("one line", |r| r.lines.len() == 1),
                    has_not("211"),
                ]),
            case("server_closing_mid_line_gives_421")
                .answer(numbered(vec![b"200 partial".to_vec()], vec![Step::Close]))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    send("SITE 0"),
                    Do::Close(421),
                    has_not("partial"),
                ]),
            // Read raw: the harness's reader only knows "211 " as an end line, not a bare
            // "211". Then pairing after the multi-line reply.
            case("other_codes_inside_a_multi_line_reply_are_text")
                .answer(numbered(vec![codes_body], vec![]))
                .steps(
                    [Do::Connect, Do::Login, send("SITE 0")]
                        .into_iter()
                        .chain(codes_seen.iter().map(raw_line))
                        .chain([send("NOOP"), lines(&["200 NOOP ok"]), Do::Quit])
                        .collect(),
                ),
            // Ctrl asserts that every line it reads ends in CRLF.
            case("lf_only_replies_are_relayed_with_crlf")
                .answer(numbered(
                    vec![b"211-a\n b\n211 end\n".to_vec(), b"200 ok\n".to_vec()],
                    vec![],
                ))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    expect("SITE 0", 211),
                    check("3 lines", |r| r.lines.len() == 3),
                    expect("SITE 1", 200),
                    Do::Quit,
                ]),
            banner_refused("ssh_banner_is_refused", vec![say("SSH-2.0-OpenSSH_9.6")]),
            banner_refused("non_220_banner_is_refused", vec![say("500 go away")]),
            banner_refused(
                "endless_120_banner_is_refused",
                vec![Step::Send(b"120 wait\r\n".repeat(50))],
            ),
            banner_refused(
                "oversized_multi_line_banner_is_refused",
                vec![Step::Send(long_banner)],
            ),
            banner_refused(
                "banner_with_nul_is_refused",
                vec![Step::Send(b"220 hi\0there\r\n".to_vec())],
            ),
            banner_refused(
                "banner_with_telnet_negotiation_is_refused",
                vec![Step::Send(b"\xff\xfd\x18220 hi\r\n".to_vec())],
            ),
            // Two sessions: a relayed command and ftpgate's own PASV both go unanswered.
            case("server_that_never_answers_is_cut_at_idle")
                .banner(vec![say("220 hi")])
                .answer(answer(|l| match split_command(l).0.as_str() {
                    "SITE" | "PASV" => vec![],
                    _ => basic_answer(l),
                }))
                .extra(silent)
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    Do::Mark,
                    send("SITE x"),
                    Do::Close(421),
                    has(refusal::TIMEOUT),
                    Do::Took(Duration::ZERO, Duration::from_secs(3)),
                    Do::Connect,
                    Do::Login,
                    expect("PASV", 227),
                    Do::Mark,
                    send("RETR x"),
                    Do::Close(421),
                    has(refusal::TIMEOUT),
                    Do::Took(Duration::ZERO, Duration::from_secs(3)),
                ])
                .sessions(2),
        ]
    }

    #[test]
    fn table() {
        run_table("replies", cases());
    }

    #[test]
    fn server_that_never_sends_the_final_reply_is_cut_at_final_reply() {
        let opts = MiniOpts {
            final_reply: false,
            ..MiniOpts::default()
        };
        let extra = "timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, final_reply: 1s, shutdown_grace: 2s }\n";
        let rig = mini_rig("no_final_reply", opts, "passive", extra);
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        let mut data = data_stream(a);
        assert_eq!(c.cmd("RETR f").code, 150);
        let mut got = Vec::new();
        data.read_to_end(&mut got).expect("read data");
        assert_eq!(got, *MiniOpts::default().payload);
        let started = Instant::now();
        let r = c.expect_close(421);
        assert!(r.text().contains(refusal::FINAL_REPLY), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        rig.finish_with(1, 1);
    }
}

// ---------------------------------------------------------------------------------------
// (7) Exhaustion, deadlines and mis-pairing

mod exhaustion {
    use super::*;

    fn cases() -> Vec<Case> {
        let login_deadline = short_timeouts("30s", "1s");
        // STARTTLS injection (CVE-2011-1575, CVE-2021-22947): whatever was pipelined
        // behind AUTH was written in plaintext, so the session ends right there.
        let auth_then_port: Vec<Do> = ["AUTH TLS", "AUTH SSL", "auth tls"]
            .iter()
            .flat_map(|first| {
                [
                    Do::Connect,
                    Do::Login,
                    write(format!("{first}\r\nPORT {{w0:6}}\r\nRETR x\r\n")),
                    Do::Close(421),
                    has(refusal::AFTER_AUTH),
                ]
            })
            .collect();
        vec![
            case("max_sessions_per_ip_refuses_with_421_and_spares_other_addresses")
                .banner(vec![say("220 hi")])
                .extra(format!("limits: {{ max_line: {MAX_LINE}, max_sessions_per_ip: 2 }}\n"))
                .steps(vec![
                    Do::Connect,      // 0
                    Do::Connect,      // 1
                    Do::ConnectQuiet, // 2: one too many from 127.0.0.1
                    Do::Close(421),
                    has(refusal::PER_IP),
                    Do::ConnectFrom(2), // 3
                    holds("one session refused", |rig| {
                        rig.proxy.metrics.sessions_refused.get() == 1
                    }),
                    Do::Use(0),
                    Do::Quit,
                    wait_for("a per-IP slot to free up", |rig| {
                        rig.proxy.metrics.sessions.get() == 2
                    }),
                    Do::Connect, // 4
                    Do::Use(1),
                    Do::Quit,
                    Do::Use(4),
                    Do::Quit,
                    Do::Use(3),
                    Do::Quit,
                ])
                // The refused session never reached the server.
                .sessions(4),
            case("max_sessions_refusals_cost_no_upstream_connection")
                .banner(vec![say("220 hi")])
                .extra(format!("limits: {{ max_line: {MAX_LINE}, max_sessions: 2 }}\n"))
                .steps(
                    [Do::Connect, Do::Connect]
                        .into_iter()
                        .chain((0..5).flat_map(|_| {
                            [Do::ConnectQuiet, Do::Close(421), has(refusal::TOO_MANY)]
                        }))
                        .chain([
                            holds("five sessions refused", |rig| {
                                rig.proxy.metrics.sessions_refused.get() == 5
                            }),
                            Do::Use(0),
                            Do::Quit,
                            Do::Use(1),
                            Do::Quit,
                        ])
                        .collect(),
                )
                .sessions(2),
            case("client_that_never_sends_is_cut_at_login_timeout")
                .banner(vec![say("220 hi")])
                .extra(login_deadline.clone())
                .steps(vec![
                    Do::Mark,
                    Do::Connect,
                    Do::Close(421),
                    has(refusal::LOGIN_TIMEOUT),
                    Do::Took(Duration::from_millis(900), Duration::from_secs(3)),
                ]),
            // REIN logs the user out; the login deadline must start again, not fire at
            // once because the session is older than timeouts.login.
            case("rein_after_the_login_deadline_does_not_close_the_session")
                .banner(vec![say("220 hi")])
                .extra(login_deadline)
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    // behaviour under test: the session outlives timeouts.login (1 s)
                    Do::Pause(Duration::from_millis(1300)),
                    expect("REIN", 220),
                    expect("PASV", 530),
                    expect("USER b", 331),
                    expect("PASS b", 230),
                    expect("PASV", 227),
                    Do::Quit,
                ]),
            // The PORT target is a watch: nothing may connect there.
            case("auth_tls_then_port_in_one_write_closes_and_port_is_never_processed")
                .watch(sa(1, 0))
                .steps(
                    auth_then_port
                        .into_iter()
                        .chain([
                            Do::Untouched,
                            never_saw("AUTH"),
                            never_saw("auth"),
                            never_saw("PORT"),
                            never_saw("RETR"),
                        ])
                        .collect(),
                )
                .sessions(3),
            // AUTH and PORT in separate segments: two ordinary commands, paired in order.
            // (This listener has no TLS: AUTH is 502, PBSZ/PROT without it 503, CCC 534.)
            case("auth_without_listener_tls_and_the_rest_of_rfc_4217_are_refused").steps(
                [Do::Connect, Do::Login]
                    .into_iter()
                    .chain(each_cmd(&["AUTH TLS", "AUTH SSL"], 502))
                    .chain(each_cmd(&["PBSZ 0", "PROT P"], 503))
                    .chain(each_cmd(&["CCC"], 534))
                    .chain([
                        Do::NoDelay,
                        write(b"AUTH TLS\r\n"),
                        Do::Reply(502),
                        write(b"PORT 127,0,0,2,4,1\r\n"),
                        Do::Reply(501),
                        expect("RETR x", 425),
                        never_saw("AUTH"),
                        never_saw("PBSZ"),
                        never_saw("PROT"),
                        never_saw("CCC"),
                        never_saw("PORT"),
                        Do::Quit,
                    ])
                    .collect(),
            ),
            case("feat_hides_what_the_proxy_refuses")
                .answer(answer(|l| match split_command(l).0.as_str() {
                    "FEAT" => vec![Step::Send(
                        b"211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPSV\r\n EPRT\r\n LPSV\r\n MDTM\r\n ccc\r\n211 End\r\n"
                            .to_vec(),
                    )],
                    _ => basic_answer(l),
                }))
                .steps(vec![
                    Do::Connect,
                    Do::Login,
                    send("FEAT"),
                    lines(&["211-Features:", " EPSV", " EPRT", " MDTM", "211 End"]),
                    Do::Quit,
                ]),
        ]
    }

    #[test]
    fn table() {
        run_table("exhaustion", cases());
    }

    #[test]
    fn passive_ports_exhausted_by_several_sessions_give_425_then_recover() {
        let cfg = Cfg {
            narrow: Some(3),
            ..Cfg::default()
        };
        let rig = rig_with("pasv_exhaustion", vec![say("220 hi")], basic(), cfg);
        let login = || {
            let mut c = rig.client();
            c.expect("USER a", 331);
            c.expect("PASS a", 230);
            c
        };
        let mut holders: Vec<Ctrl> = (0..3).map(|_| login()).collect();
        for (i, c) in holders.iter_mut().enumerate() {
            let cmd = if i % 2 == 0 { "PASV" } else { "EPSV" };
            c.cmd(cmd);
        }
        assert_eq!(rig.leases(), 3);
        let mut late = login();
        let r = late.expect("PASV", 425);
        assert!(r.text().contains(refusal::NO_FREE_PORT), "{r:?}");
        late.expect("EPSV", 425);
        late.expect("NOOP", 200);
        // Released by a session ending: once the gauge shows it, the next PASV works,
        // inside the range.
        let first = holders.remove(0);
        quit(first);
        let started = Instant::now();
        wait_until(
            "a passive port to be released",
            Duration::from_secs(5),
            || rig.leases() < 3,
        );
        let r = late.expect("PASV", 227);
        let port = parse_227(&r.text()).port();
        assert!(
            rig.ports.proxy_passive.contains(&port),
            "port {port} outside {:?}",
            rig.ports.proxy_passive
        );
        eprintln!(
            "passive port recovered {:?} after its session quit",
            started.elapsed()
        );
        for c in holders.into_iter().chain([late]) {
            quit(c);
        }
        rig.finish(4);
    }

    #[test]
    fn client_that_keeps_talking_but_never_logs_in_is_still_cut() {
        let rig = rig_with(
            "login_timeout_busy",
            vec![say("220 hi")],
            basic(),
            Cfg {
                extra: short_timeouts("30s", "1s"),
                ..Cfg::default()
            },
        );
        let started = Instant::now();
        let mut c = rig.client();
        c.expect("USER a", 331);
        let r = loop {
            let r = c.cmd("NOOP");
            if r.code != 200 {
                break r;
            }
            assert!(started.elapsed() < Duration::from_secs(3), "never cut");
            // behaviour under test: a client that keeps talking, a NOOP every 100 ms
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(r.code, 421, "{r:?}");
        c.expect_eof();
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
        let rig = mini_rig("abor_behind_stash", opts, "passive", "");
        let mut c = rig.logged_in();
        let a = rig.pasv(&mut c);
        let mut data = data_stream(a);
        assert_eq!(c.cmd("RETR f").code, 150);
        let mut first = vec![0u8; 64 * 1024];
        data.read_exact(&mut first).expect("first bytes");
        // NOOP and ABOR in one write: framing hands ftpgate the NOOP first, so it is
        // certainly waiting its turn when the ABOR is read (no sleep to let it settle).
        let abor = Instant::now();
        c.write_raw(b"NOOP\r\nABOR\r\n");
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
        rig.finish_with(1, 1);
    }
}

// ---------------------------------------------------------------------------------------
// (8) First line, login gate, command policy

mod gates {
    use super::*;

    fn cases() -> Vec<Case> {
        let http = [
            "GET / HTTP/1.1",
            "CONNECT ftp.example.com:443 HTTP/1.1",
            "POST /upload HTTP/1.0",
            "PRI * HTTP/2.0",
            "get /index.html http/1.1",
            "OPTIONS * HTTP/1.1",
        ];
        // What a browser sends: the request line and headers in one write.
        let http_steps: Vec<Do> = http
            .iter()
            .flat_map(|line| {
                [
                    Do::Connect,
                    write(format!("{line}\r\nHost: x\r\nUser-Agent: test\r\n\r\n")),
                    Do::Close(421),
                    has(refusal::NOT_HTTP),
                ]
            })
            .chain([Do::SawCount(0)])
            .collect();
        let before_login: [&[u8]; 12] = [
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
        let mut gate = vec![Do::Connect];
        gate.extend(each(&before_login, 530));
        gate.push(expect("USER a", 331));
        gate.extend(each(&before_login, 530));
        gate.push(expect("PASS wrong", 530));
        gate.extend(each(&before_login, 530));
        gate.extend([
            Do::Leases(0),
            Do::Saw(vec!["USER a", "PASS wrong"]),
            expect("PASS x", 230),
            expect("EPSV ALL", 200),
            Do::Quit,
        ]);
        let denied: [&[u8]; 5] = [b"SITE CHMOD 777 x", b"dele x", b"RnFr x", b"SITE", b"DELE"];
        let mut acl = vec![Do::Connect];
        acl.extend(each(&denied, 534));
        acl.extend([expect("USER a", 331), expect("PASS a", 230)]);
        acl.extend(each(&denied, 534));
        acl.extend([
            expect("NOOP", 200),
            never_saw("SITE"),
            never_saw("dele"),
            never_saw("DELE"),
            never_saw("RnFr"),
            Do::Quit,
        ]);
        vec![
            case("http_shaped_first_lines_close_with_421")
                .steps(http_steps)
                .sessions(http.len()),
            case("http_shaped_line_after_the_first_is_an_ordinary_command").steps(vec![
                Do::Connect,
                Do::Login,
                expect("GET / HTTP/1.1", 502),
                Do::Quit,
            ]),
            case("data_commands_before_login_get_530_and_never_reach_the_server")
                .answer(answer(|l| match split_command(l) {
                    (v, a) if v == "PASS" && a == b"wrong" => vec![say("530 Login incorrect")],
                    _ => basic_answer(l),
                }))
                .steps(gate),
            // EPSV ALL was reset with the login.
            case("rein_logs_out_and_closes_the_data_gate_again").steps(vec![
                Do::Connect,
                Do::Login,
                expect("EPSV ALL", 200),
                expect("PASV", 501),
                expect("REIN", 220),
                expect("PASV", 530),
                expect("PORT 127,0,0,1,4,1", 530),
                expect("USER a", 331),
                expect("PASS a", 230),
                expect("PASV", 227),
                Do::Quit,
            ]),
            case("acl_commands_deny_gives_534_before_and_after_login")
                .banner(vec![say("220 hi")])
                .extra(format!(
                    "limits: {{ max_line: {MAX_LINE} }}\nacl: {{ commands: {{ deny: [SITE, DELE, RNFR] }} }}\n"
                ))
                .steps(acl),
        ]
    }

    #[test]
    fn table() {
        run_table("gates", cases());
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
