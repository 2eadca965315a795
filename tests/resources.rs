//! Resource bounds under load and abuse: thousands of idle sessions, passive-port
//! exhaustion and its recovery, slowloris peers on both legs. Each test checks that fds,
//! tasks, sessions, transfers and port leases return to their baseline afterwards, and
//! prints its figures with `eprintln!` (run with `--nocapture` to see them).
//!
//! The tests run one at a time ([`serial`]): fds are counted for the whole process.
//!
//! Method for the idle-session figures: the test process runs only ftpgate (and its
//! tokio runtime); the fake server and the 5,000 clients run in a child process, the
//! same test binary re-executed as the ignored test `fleet_child`, driven over its
//! stdin/stdout. VmRSS of this process before and after the sessions are up, divided by
//! their number, is then ftpgate's memory per idle session, with no client-side cost to
//! subtract. A warm-up round of 100 sessions runs first so that one-time allocations
//! (runtime, allocator arenas) are not charged to the sessions.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

static SERIAL: Mutex<()> = Mutex::new(());

/// One resource test at a time: fd counts are per process.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open fds and live tasks before a test's sessions.
struct Baseline {
    fds: usize,
    tasks: usize,
}

impl Baseline {
    /// Taken once the counts have settled: `serve()` spawns its accept loops a moment
    /// after `start_proxy_yaml` returns, and there is no event for "all spawned". A
    /// bounded poll: settled = the same counts on three looks in a row (at most 2 s).
    fn take(rt: &Runtime) -> Baseline {
        let mut last = (open_fds(), alive_tasks(rt));
        let mut stable = 0;
        poll_until(Duration::from_secs(2), || {
            let now = (open_fds(), alive_tasks(rt));
            stable = if now == last { stable + 1 } else { 0 };
            last = now;
            stable >= 3
        });
        Baseline {
            fds: last.0,
            tasks: last.1,
        }
    }

    /// Gauges back to zero, then fds and tasks back to (at most) the baseline.
    fn assert_back(&self, rt: &Runtime, proxy: &Proxy, what: &str) {
        wait_for_zero(&proxy.metrics);
        let back = poll_until(Duration::from_secs(5), || {
            open_fds() <= self.fds && alive_tasks(rt) <= self.tasks
        });
        let (fds, tasks) = (open_fds(), alive_tasks(rt));
        assert!(
            back,
            "{what}: not back to baseline after 5 s: {fds} fds (baseline {}), {tasks} tasks (baseline {})",
            self.fds,
            self.tasks
        );
        eprintln!(
            "{what}: back to baseline: {fds} fds (baseline {}), {tasks} tasks (baseline {}), gauges {:?}",
            self.fds,
            self.tasks,
            gauges(&proxy.metrics)
        );
    }
}

fn timeouts(login: &str, idle: &str, banner: &str) -> String {
    format!(
        "timeouts: {{ connect: 2s, banner: {banner}, login: {login}, idle: {idle}, data_accept: 5s, data_stall: 10s, shutdown_grace: 2s }}\n"
    )
}

// ---------------------------------------------------------------------------------------
// 5,000 idle sessions

const FLEET: usize = 5000;
const CHILD_ENV: &str = "FTPGATE_FLEET_CHILD";

/// The child side of [`five_thousand_idle_sessions`]: a fake FTP server and a fleet of
/// clients, driven by lines on stdin (`OPEN addr n`, `NOOP`, `CLOSE`), answering on stdout
/// with lines starting `@@ `. Does nothing unless started by the parent.
#[test]
#[ignore = "helper process for five_thousand_idle_sessions"]
fn fleet_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        // Run by hand with --ignored: not a pass, just nothing to do.
        eprintln!(
            "SKIPPED: fleet_child: a helper process, only started by five_thousand_idle_sessions"
        );
        return;
    }
    raise_fd_limit();
    runtime().block_on(fleet_main());
}

async fn fleet_main() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinSet;

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fleet server");
    let addr = listener.local_addr().expect("fleet server addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut lines = tokio::io::BufReader::new(rd).lines();
                if wr.write_all(b"220 fleet\r\n").await.is_err() {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = match line.trim_end().to_ascii_uppercase().as_str() {
                        "NOOP" => b"200 ok\r\n",
                        "QUIT" => b"221 bye\r\n",
                        _ => b"502 no\r\n",
                    };
                    if wr.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    println!("@@ FAKE {addr}");

    type Conn = tokio::io::BufReader<TcpStream>;
    async fn read_line(c: &mut Conn) -> Option<String> {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(30), c.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => Some(line),
            _ => None,
        }
    }

    let mut conns: Vec<Conn> = Vec::new();
    // Commands arrive on stdin, read on a plain thread (tokio's io-std is not enabled).
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    while let Some(cmd) = commands.recv().await {
        let started = Instant::now();
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["OPEN", proxy, n] => {
                let proxy: SocketAddr = proxy.parse().expect("proxy addr");
                let n: usize = n.parse().expect("count");
                let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
                let mut set = JoinSet::new();
                for _ in 0..n {
                    let gate = std::sync::Arc::clone(&gate);
                    set.spawn(async move {
                        let _permit = gate.acquire_owned().await.ok()?;
                        let s = tokio::time::timeout(
                            Duration::from_secs(30),
                            TcpStream::connect(proxy),
                        )
                        .await
                        .ok()?
                        .ok()?;
                        let mut c = tokio::io::BufReader::new(s);
                        let banner = read_line(&mut c).await?;
                        banner.starts_with("220 ").then_some(c)
                    });
                }
                while let Some(r) = set.join_next().await {
                    if let Ok(Some(c)) = r {
                        conns.push(c);
                    }
                }
                println!(
                    "@@ GREETED {} {}",
                    conns.len(),
                    started.elapsed().as_millis()
                );
            }
            ["NOOP"] => {
                let mut set = JoinSet::new();
                for mut c in conns.drain(..) {
                    set.spawn(async move {
                        c.get_mut().write_all(b"NOOP\r\n").await.ok()?;
                        let r = read_line(&mut c).await?;
                        r.starts_with("200 ").then_some(c)
                    });
                }
                while let Some(r) = set.join_next().await {
                    if let Ok(Some(c)) = r {
                        conns.push(c);
                    }
                }
                println!(
                    "@@ NOOPED {} {}",
                    conns.len(),
                    started.elapsed().as_millis()
                );
            }
            ["CLOSE"] => {
                conns.clear();
                println!("@@ CLOSED");
            }
            _ => println!("@@ ERROR unknown command {cmd:?}"),
        }
    }
}

/// The parent's handle on the child.
struct Fleet {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Fleet {
    fn start() -> Fleet {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                "fleet_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the fleet child");
        let stdout = child.stdout.take().expect("child stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test fleet_child ... " on the same line.
                if let Some((_, msg)) = line.split_once("@@ ") {
                    if tx.send(msg.to_string()).is_err() {
                        return;
                    }
                }
            }
        });
        Fleet {
            child,
            stdin,
            lines,
        }
    }

    /// Sends a command; returns the child's answer split into words.
    fn ask(&mut self, cmd: &str, limit: Duration) -> Vec<String> {
        let stdin = self.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "{cmd}").expect("write to the child");
        stdin.flush().expect("flush to the child");
        self.next(limit)
    }

    fn next(&self, limit: Duration) -> Vec<String> {
        let line = self
            .lines
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("no answer from the fleet child within {limit:?}: {e}"));
        line.split_whitespace().map(str::to_string).collect()
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait for the child");
        assert!(status.success(), "fleet child: {status}");
    }
}

/// `GREETED n ms` / `NOOPED n ms` -> (n, ms).
fn count_and_ms(words: &[String], what: &str) -> (usize, u64) {
    assert_eq!(words.first().map(String::as_str), Some(what), "{words:?}");
    (
        words[1].parse().expect("count"),
        words[2].parse().expect("ms"),
    )
}

#[test]
fn five_thousand_idle_sessions() {
    let _serial = serial();
    let _dog = Watchdog::new("five_thousand_idle_sessions", Duration::from_secs(120));
    // This process holds two sockets per session (client and server legs), the child two
    // (client and fake server).
    if !fd_limit_allows("five_thousand_idle_sessions", 2 * FLEET + 1024) {
        return;
    }
    let mut fleet = Fleet::start();
    let fake: SocketAddr = fleet.next(Duration::from_secs(30))[1]
        .parse()
        .expect("fake server address");
    let rt = runtime();
    let limits = format!(
        "limits: {{ max_sessions: {}, max_sessions_per_ip: {} }}\n",
        FLEET + 100,
        FLEET + 100
    );
    let yaml = proxy_yaml(
        fake,
        &Ports::new(),
        "passive",
        &format!("{limits}{}", timeouts("300s", "300s", "10s")),
    );
    let proxy = start_proxy_yaml(&rt, &yaml);

    // Warm-up, so that one-time allocations are not charged to the measured sessions.
    let open = format!("OPEN {} ", proxy.addr);
    assert_eq!(
        count_and_ms(
            &fleet.ask(&format!("{open}100"), Duration::from_secs(30)),
            "GREETED"
        )
        .0,
        100
    );
    assert_eq!(
        count_and_ms(&fleet.ask("NOOP", Duration::from_secs(30)), "NOOPED").0,
        100
    );
    assert_eq!(fleet.ask("CLOSE", Duration::from_secs(30)), ["CLOSED"]);
    wait_for_zero(&proxy.metrics);

    let base = Baseline::take(&rt);
    let rss_before = vm_rss_kib();
    let (greeted, greet_ms) = count_and_ms(
        &fleet.ask(&format!("{open}{FLEET}"), Duration::from_secs(60)),
        "GREETED",
    );
    assert_eq!(greeted, FLEET, "sessions greeted");
    wait_until(
        "every session to be counted",
        Duration::from_secs(10),
        || proxy.metrics.sessions.get() == FLEET as i64,
    );
    let rss_up = vm_rss_kib();
    let fds_up = open_fds();
    let tasks_up = alive_tasks(&rt);
    let (nooped, noop_ms) = count_and_ms(&fleet.ask("NOOP", Duration::from_secs(60)), "NOOPED");
    assert_eq!(nooped, FLEET, "sessions answering NOOP");
    let rss_after_noop = vm_rss_kib();
    assert_eq!(proxy.metrics.sessions.get(), FLEET as i64);
    assert_eq!(proxy.metrics.sessions_refused.get(), 0);

    let closing = Instant::now();
    assert_eq!(fleet.ask("CLOSE", Duration::from_secs(30)), ["CLOSED"]);
    fleet.finish();
    base.assert_back(&rt, &proxy, "5,000 idle sessions");
    let drained_ms = closing.elapsed().as_millis();
    let rss_end = vm_rss_kib();

    let per = |kib: u64| kib as f64 * 1024.0 / FLEET as f64;
    eprintln!("== {FLEET} concurrent idle control sessions (debug build, 2 worker threads)");
    eprintln!("   all greeted in {greet_ms} ms; all answered NOOP in {noop_ms} ms; drained to 0 in {drained_ms} ms after close");
    eprintln!(
        "   fds held by ftpgate: {} ({:.2} per session); tasks: {} ({:.2} per session)",
        fds_up - base.fds,
        (fds_up - base.fds) as f64 / FLEET as f64,
        tasks_up - base.tasks,
        (tasks_up - base.tasks) as f64 / FLEET as f64
    );
    eprintln!(
        "   VmRSS: {rss_before} KiB before, {rss_up} KiB with all sessions up ({:.0} bytes per idle session), \
         {rss_after_noop} KiB after one NOOP each ({:.0} bytes per session), {rss_end} KiB after close",
        per(rss_up.saturating_sub(rss_before)),
        per(rss_after_noop.saturating_sub(rss_before)),
    );
    assert!(
        fds_up - base.fds >= 2 * FLEET,
        "fewer fds than two legs per session"
    );
    proxy.stop(&rt);
}

// ---------------------------------------------------------------------------------------
// Passive-port exhaustion

#[test]
fn passive_port_exhaustion_gives_425_and_recovers() {
    let _serial = serial();
    let _dog = Watchdog::new("passive_port_exhaustion", Duration::from_secs(45));
    let rt = runtime();
    let server = start_script_server(&rt, vec![say("220 hi")], answer(basic_answer));
    let ports = Ports::new().narrow(8);
    let idle = Duration::from_secs(2);
    let yaml = proxy_yaml(server.addr, &ports, "passive", &timeouts("30s", "2s", "5s"));
    let proxy = start_proxy_yaml(&rt, &yaml);
    let base = Baseline::take(&rt);
    let login = || {
        let mut c = Ctrl::greeted(proxy.addr);
        c.expect("USER a", 331);
        c.expect("PASS a", 230);
        c
    };
    let mut holders: Vec<Ctrl> = (0..8).map(|_| login()).collect();
    for c in &mut holders {
        c.expect("PASV", 227);
    }
    assert_eq!(proxy.metrics.port_leases.get(), 8);

    // Refused at once, not after a wait.
    let mut late = login();
    let asked = Instant::now();
    let r = late.expect("PASV", 425);
    let refuse_ms = asked.elapsed().as_secs_f64() * 1000.0;
    assert!(r.text().contains("no free port"), "{r:?}");

    // Released by a session ending.
    let mut first = holders.remove(0);
    first.expect("QUIT", 221);
    first.expect_eof();
    let released = Instant::now();
    pasv_when_free(&mut late, &proxy, 8, Duration::from_secs(5));
    let after_quit_ms = released.elapsed().as_secs_f64() * 1000.0;

    // Released by the idle timeout of the holders (the only deadline on a passive
    // listener before the transfer command). The newcomer keeps talking (NOOP on every
    // look at the gauge) so that its own idle deadline never comes near the holders'.
    let mut newcomer = login();
    newcomer.expect("PASV", 425);
    let exhausted = Instant::now();
    wait_until(
        "the idle holders' passive ports to be released",
        idle + Duration::from_secs(3),
        || {
            newcomer.expect("NOOP", 200);
            proxy.metrics.port_leases.get() < 8
        },
    );
    let r = newcomer.expect("PASV", 227);
    let after_idle = exhausted.elapsed();
    assert!(
        ports.proxy_passive.contains(&parse_227(&r.text()).port()),
        "{r:?}"
    );
    eprintln!(
        "== passive-port exhaustion with 8 ports: 9th PASV refused with 425 in {refuse_ms:.1} ms"
    );
    eprintln!("   recovered {after_quit_ms:.1} ms after a holder quit; {:.0} ms after exhaustion when the holders idled out (timeouts.idle = {idle:?})", after_idle.as_secs_f64() * 1000.0);
    assert!(after_idle < idle + Duration::from_secs(2), "{after_idle:?}");
    for mut c in holders.into_iter().chain([late]) {
        // Cut by the idle timeout meanwhile.
        let r = c.expect_close(421);
        assert!(r.text().contains("Timeout"), "{r:?}");
    }
    newcomer.expect("QUIT", 221);
    newcomer.expect_eof();
    drop((first, newcomer));
    base.assert_back(&rt, &proxy, "passive-port exhaustion");
    assert_eq!(proxy.metrics.transfers_total.get(), 0);
    proxy.stop(&rt);
}

/// Waits (bounded by `limit`) until fewer than `pool` passive ports are leased, then
/// sends one PASV, which must get 227: a freed port is usable at once.
fn pasv_when_free(c: &mut Ctrl, proxy: &Proxy, pool: i64, limit: Duration) -> Reply {
    wait_until("a passive port to be released", limit, || {
        proxy.metrics.port_leases.get() < pool
    });
    c.expect("PASV", 227)
}

// ---------------------------------------------------------------------------------------
// Slowloris

/// Writes `bytes` one per `gap` until something arrives; returns what arrived (up to and
/// including the first CRLF line) and when, measured from `since`.
fn trickle_until_reply(
    s: &mut TcpStream,
    bytes: &[u8],
    gap: Duration,
    since: Instant,
) -> (String, Duration) {
    s.set_read_timeout(Some(gap)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    for b in bytes.iter().cycle() {
        // The proxy may already have closed: keep reading either way.
        let _ = s.write_all(&[*b]);
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"\r\n") {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "no reply to a slowloris client"
        );
    }
    (String::from_utf8_lossy(&got).into_owned(), since.elapsed())
}

fn assert_eof(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "more after the 421: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn slowloris_client_before_login_is_cut_at_the_login_timeout() {
    let _serial = serial();
    let _dog = Watchdog::new("slowloris_login", Duration::from_secs(45));
    let rt = runtime();
    let server = start_script_server(&rt, vec![say("220 hi")], answer(basic_answer));
    let proxy = start_proxy(
        &rt,
        server.addr,
        &Ports::new(),
        "passive",
        &timeouts("2s", "30s", "5s"),
    );
    let base = Baseline::take(&rt);
    let connected = Instant::now();
    let c = Ctrl::greeted(proxy.addr);
    let mut s = c.socket().try_clone().expect("clone");
    let (got, at) = trickle_until_reply(
        &mut s,
        b"USER anonymous\r\n",
        Duration::from_secs(1),
        connected,
    );
    assert!(got.starts_with("421 Login timeout"), "{got:?}");
    assert!(
        at < Duration::from_millis(3500),
        "421 only after {at:?} (login timeout 2 s)"
    );
    eprintln!(
        "== slowloris client at 1 byte/s before login: 421 after {at:?} (timeouts.login = 2s)"
    );
    assert_eof(&mut s);
    drop((c, s));
    base.assert_back(&rt, &proxy, "slowloris before login");
    proxy.stop(&rt);
}

#[test]
fn slowloris_client_after_login_is_cut_at_the_idle_timeout() {
    let _serial = serial();
    let _dog = Watchdog::new("slowloris_idle", Duration::from_secs(45));
    let rt = runtime();
    let server = start_script_server(&rt, vec![say("220 hi")], answer(basic_answer));
    let proxy = start_proxy(
        &rt,
        server.addr,
        &Ports::new(),
        "passive",
        &timeouts("30s", "2s", "5s"),
    );
    let base = Baseline::take(&rt);
    let mut c = Ctrl::greeted(proxy.addr);
    c.expect("USER a", 331);
    c.expect("PASS a", 230);
    let last_command = Instant::now();
    let mut s = c.socket().try_clone().expect("clone");
    // A partial line is not activity: only complete commands reset the idle timer.
    let (got, at) = trickle_until_reply(&mut s, b"NOOP\r\n", Duration::from_secs(1), last_command);
    assert!(got.starts_with("421 Timeout"), "{got:?}");
    assert!(
        at < Duration::from_millis(3500),
        "421 only after {at:?} (idle timeout 2 s)"
    );
    eprintln!("== slowloris client at 1 byte/s after login: 421 after {at:?} (timeouts.idle = 2s)");
    assert_eof(&mut s);
    drop((c, s));
    base.assert_back(&rt, &proxy, "slowloris after login");
    proxy.stop(&rt);
}

#[test]
fn slowloris_server_banner_is_cut_at_the_banner_timeout() {
    let _serial = serial();
    let _dog = Watchdog::new("slowloris_banner", Duration::from_secs(45));
    let rt = runtime();
    let banner = format!("220 {}\r\n", "s".repeat(60)).into_bytes();
    let server = start_script_server(
        &rt,
        vec![Step::Trickle(banner, Duration::from_millis(200))],
        answer(basic_answer),
    );
    let proxy = start_proxy(
        &rt,
        server.addr,
        &Ports::new(),
        "passive",
        &timeouts("30s", "30s", "1s"),
    );
    let base = Baseline::take(&rt);
    let started = Instant::now();
    let mut c = Ctrl::connect(proxy.addr);
    let r = c.expect_close(421);
    let at = started.elapsed();
    assert!(r.text().contains("greeting"), "{r:?}");
    assert!(
        at < Duration::from_millis(2500),
        "421 after {at:?} (banner timeout 1 s)"
    );
    eprintln!("== server trickling its banner at 5 bytes/s: client got 421 after {at:?} (timeouts.banner = 1s)");
    drop(c);
    base.assert_back(&rt, &proxy, "slowloris banner");
    proxy.stop(&rt);
}

/// A rig whose server trickles its answer to SITE as `steps`.
fn slow_reply(name: &'static str, steps: Vec<Step>) {
    let _serial = serial();
    let _dog = Watchdog::new(name, Duration::from_secs(45));
    let rt = runtime();
    let server = start_script_server(
        &rt,
        vec![say("220 hi")],
        answer(move |l| match split_command(l).0.as_str() {
            "SITE" => steps.clone(),
            _ => basic_answer(l),
        }),
    );
    let proxy = start_proxy(
        &rt,
        server.addr,
        &Ports::new(),
        "passive",
        &timeouts("30s", "2s", "5s"),
    );
    let base = Baseline::take(&rt);
    let mut c = Ctrl::greeted(proxy.addr);
    c.expect("USER a", 331);
    c.expect("PASS a", 230);
    let asked = Instant::now();
    c.send("SITE x");
    let r = c.reply();
    let at = asked.elapsed();
    eprintln!(
        "== {name}: client got {} after {at:?} (timeouts.idle = 2s)",
        r.code
    );
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().contains("Timeout"), "{r:?}");
    assert!(at < Duration::from_millis(3500), "421 only after {at:?}");
    c.expect_eof();
    drop(c);
    base.assert_back(&rt, &proxy, name);
    proxy.stop(&rt);
}

#[test]
fn slowloris_server_reply_line_is_cut_at_the_idle_timeout() {
    slow_reply(
        "slowloris_reply_bytes",
        vec![Step::Trickle(
            format!("200 {}\r\n", "t".repeat(40)).into_bytes(),
            Duration::from_millis(500),
        )],
    );
}

#[test]
fn slowloris_server_multi_line_reply_is_cut_at_the_idle_timeout() {
    // One complete line every 400 ms, forever (well, 60 s): each line is a frame, but a
    // reply that never ends is no activity.
    let mut steps = vec![say("211-status follows")];
    for i in 0..150 {
        steps.push(Step::Sleep(Duration::from_millis(400)));
        steps.push(say(&format!(" line {i}")));
    }
    steps.push(say("211 end"));
    slow_reply("slowloris_reply_lines", steps);
}

// ---------------------------------------------------------------------------------------
// Memory stays bounded under endless input

/// A logged-in client through a proxy in front of `server`.
fn login(proxy: &Proxy) -> Ctrl {
    let mut c = Ctrl::greeted(proxy.addr);
    c.expect("USER a", 331);
    c.expect("PASS a", 230);
    c
}

const MIB: usize = 1024 * 1024;

#[test]
fn endless_client_line_is_discarded_in_bounded_memory() {
    let _serial = serial();
    let _dog = Watchdog::new("endless_client_line", Duration::from_secs(60));
    let rt = runtime();
    let server = start_script_server(&rt, vec![say("220 hi")], answer(basic_answer));
    let proxy = start_proxy(&rt, server.addr, &Ports::new(), "passive", "");
    let base = Baseline::take(&rt);
    let mut c = login(&proxy);
    let mut w = c.socket().try_clone().expect("clone");
    let rss_before = vm_rss_kib();
    let started = Instant::now();
    let total = 64 * MIB;
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'A'; 64 * 1024];
        for _ in 0..total / chunk.len() {
            w.write_all(&chunk).expect("stream the line");
        }
        w.write_all(b"\r\nNOOP\r\n").expect("end of line");
    });
    let r = c.reply();
    assert_eq!(r.code, 500, "{r:?}");
    // The NOOP the writer sent right after the line.
    assert_eq!(c.reply().code, 200);
    writer.join().expect("writer");
    let took = started.elapsed();
    let grew = vm_rss_kib().saturating_sub(rss_before);
    eprintln!(
        "== a 64 MiB command line without LF: 500 after {took:?}, VmRSS grew by {grew} KiB (limits.max_line = 4096)"
    );
    assert!(grew < 16 * 1024, "VmRSS grew by {grew} KiB");
    c.expect("QUIT", 221);
    c.expect_eof();
    drop(c);
    assert!(
        !server.seen().iter().any(|l| l.starts_with(b"AAAA")),
        "part of the long line reached the server"
    );
    base.assert_back(&rt, &proxy, "endless client line");
    proxy.stop(&rt);
}

#[test]
fn endless_server_line_is_cut_in_bounded_memory() {
    let _serial = serial();
    let _dog = Watchdog::new("endless_server_line", Duration::from_secs(60));
    let rt = runtime();
    let server = start_script_server(
        &rt,
        vec![say("220 hi")],
        answer(|l| match split_command(l).0.as_str() {
            "SITE" => vec![Step::Repeat(vec![b'z'; 64 * 1024], 1024)],
            _ => basic_answer(l),
        }),
    );
    let proxy = start_proxy(
        &rt,
        server.addr,
        &Ports::new(),
        "passive",
        &timeouts("30s", "2s", "5s"),
    );
    let base = Baseline::take(&rt);
    let mut c = login(&proxy);
    let rss_before = vm_rss_kib();
    let started = Instant::now();
    c.send("SITE x");
    let r = c.expect_close(421);
    let took = started.elapsed();
    let grew = vm_rss_kib().saturating_sub(rss_before);
    eprintln!(
        "== a server reply of 64 MiB without LF: client got {} after {took:?}, VmRSS grew by {grew} KiB",
        r.code
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(grew < 16 * 1024, "VmRSS grew by {grew} KiB");
    drop(c);
    base.assert_back(&rt, &proxy, "endless server line");
    proxy.stop(&rt);
}

#[test]
fn pipelined_flood_is_answered_in_order_in_bounded_memory() {
    let _serial = serial();
    let _dog = Watchdog::new("pipelined_flood", Duration::from_secs(60));
    let rt = runtime();
    let server = start_script_server(&rt, vec![say("220 hi")], answer(basic_answer));
    let proxy = start_proxy(&rt, server.addr, &Ports::new(), "passive", "");
    let base = Baseline::take(&rt);
    let mut c = login(&proxy);
    let n = 20_000;
    let mut w = c.socket().try_clone().expect("clone");
    let rss_before = vm_rss_kib();
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        // Written as fast as the kernel takes it; ftpgate reads one command at a time.
        let flood: Vec<u8> = (0..n)
            .flat_map(|i| format!("SITE {i}\r\n").into_bytes())
            .collect();
        w.write_all(&flood).expect("flood");
    });
    for i in 0..n {
        let r = c.reply();
        assert_eq!(r.lines, [format!("200 SITE {i}")], "reply {i}");
    }
    writer.join().expect("writer");
    let took = started.elapsed();
    let grew = vm_rss_kib().saturating_sub(rss_before);
    eprintln!(
        "== {n} pipelined commands in one write: all answered in order in {took:?} ({:.0}/s), VmRSS grew by {grew} KiB",
        n as f64 / took.as_secs_f64()
    );
    assert!(grew < 16 * 1024, "VmRSS grew by {grew} KiB");
    c.expect("QUIT", 221);
    c.expect_eof();
    drop(c);
    base.assert_back(&rt, &proxy, "pipelined flood");
    proxy.stop(&rt);
}

// ---------------------------------------------------------------------------------------
// Memory budget under hostile servers: 1,000 sessions, each facing a maximal reply

/// Sessions in the memory-budget tests.
const BUDGET_SESSIONS: usize = 1000;
/// `limits.max_reply_bytes` in the memory-budget tests (the default is 1 MiB; a smaller
/// cap keeps 1,000 sessions at a size this shared machine can hold, and the ceiling
/// scales with it).
const BUDGET_REPLY_BYTES: usize = 64 * 1024;
/// What an idle session costs ftpgate (measured by `five_thousand_idle_sessions`:
/// about 16-20 KiB), rounded up.
const IDLE_SESSION_BYTES: usize = 20 * 1024;
/// Slack per session for allocator rounding.
const BUDGET_SLACK_BYTES: usize = 16 * 1024;
/// How many times its own size a held reply may cost. Each assembled line is its own
/// `Bytes` and keeps part of the line codec's read chunks alive, so a held reply of
/// max_reply_bytes costs more than max_reply_bytes: measured about 1.5-1.8x here (about
/// 113 KiB per session at 64 KiB written in one burst, 120 KiB written line by line).
const HELD_REPLY_FACTOR: usize = 2;

/// The ceiling of ftpgate's RSS growth per session while its server holds a reply of up
/// to `max_reply_bytes` open: the held reply (times [`HELD_REPLY_FACTOR`]), an idle
/// session, slack. The peers (scripted servers and clients) run in this process too,
/// with small fixed buffers, so the figure is an upper bound on ftpgate's own share.
fn budget_per_session(max_reply_bytes: usize) -> usize {
    HELD_REPLY_FACTOR * max_reply_bytes + IDLE_SESSION_BYTES + BUDGET_SLACK_BYTES
}

/// A reply body whose lines (without CRLF) add up to `total - 100` bytes: just under
/// `limits.max_reply_bytes = total`, with room for the end line. Lines are 99 bytes.
fn near_max_reply_body(total: usize) -> Vec<u8> {
    let mut v = b"211-start\r\n".to_vec();
    let mut counted = "211-start".len();
    let line = format!(" {}\r\n", "y".repeat(98));
    while counted + 99 + 100 < total {
        v.extend_from_slice(line.as_bytes());
        counted += 99;
    }
    v
}

/// Scripted servers for the budget: banner, login, and on STAT the near-maximal body,
/// then the end line at once if `finish`; otherwise the reply is held open until
/// `release` fires (ftpgate holds the partial reply all that time). Counts bodies
/// written in full.
fn start_budget_server(
    rt: &Runtime,
    finish: bool,
    bodies: Arc<std::sync::atomic::AtomicUsize>,
    release: tokio::sync::watch::Receiver<bool>,
) -> SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind budget server");
    let addr = listener.local_addr().expect("budget server addr");
    let body: Arc<[u8]> = near_max_reply_body(BUDGET_REPLY_BYTES).into();
    rt.spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (body, bodies) = (Arc::clone(&body), Arc::clone(&bodies));
            let mut release = release.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = s.into_split();
                let mut rd = tokio::io::BufReader::with_capacity(256, rd);
                if wr.write_all(b"220 budget\r\n").await.is_err() {
                    return;
                }
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match rd.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let reply: &[u8] = match line.get(..4) {
                        Some(b"USER") => b"331 pw\r\n",
                        Some(b"PASS") => b"230 in\r\n",
                        Some(b"STAT") => {
                            if wr.write_all(&body).await.is_err() {
                                return;
                            }
                            bodies.fetch_add(1, Ordering::SeqCst);
                            if !finish {
                                // behaviour under test: the reply is held open
                                let _ = release.wait_for(|go| *go).await;
                            }
                            b"211 end\r\n"
                        }
                        _ => b"502 no\r\n",
                    };
                    if wr.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads one line and checks that it starts with `code`.
async fn expect_line(
    rd: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: &[u8],
) -> Result<(), String> {
    use tokio::io::AsyncBufReadExt;
    let mut line = Vec::new();
    rd.read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if line.starts_with(code) {
        Ok(())
    } else {
        Err(format!(
            "want {}, got {:?}",
            String::from_utf8_lossy(code),
            String::from_utf8_lossy(&line)
        ))
    }
}

/// Reads a multi-line reply to its `211 ` end line; returns its size in bytes.
async fn read_reply(
    rd: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Result<usize, String> {
    use tokio::io::AsyncBufReadExt;
    let (mut got, mut l) = (0, Vec::new());
    loop {
        l.clear();
        let n = rd
            .read_until(b'\n', &mut l)
            .await
            .map_err(|e| format!("read reply: {e}"))?;
        if n == 0 {
            return Err(format!("EOF after {got} bytes of the reply"));
        }
        got += n;
        if l.starts_with(b"211 ") {
            return Ok(got);
        }
    }
}

/// One budget client: banner, login, STAT (then it gives back its `permit`: the number
/// of logins in flight is bounded). If `finish`, it reads the whole reply before it counts
/// itself in `done`; otherwise it counts itself once STAT is sent and stays idle, and no
/// byte may arrive until `leave` fires (then the server finishes the reply and the client
/// reads it). Either way it holds the session until `leave`, then QUITs. Returns the
/// reply's size.
async fn budget_client(
    proxy: SocketAddr,
    finish: bool,
    done: Arc<std::sync::atomic::AtomicUsize>,
    mut leave: tokio::sync::watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<usize, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let s = tokio::net::TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (rd, mut wr) = s.into_split();
    let mut rd = tokio::io::BufReader::with_capacity(512, rd);
    expect_line(&mut rd, b"220 ").await?;
    wr.write_all(b"USER a\r\n")
        .await
        .map_err(|e| e.to_string())?;
    expect_line(&mut rd, b"331 ").await?;
    wr.write_all(b"PASS a\r\n")
        .await
        .map_err(|e| e.to_string())?;
    expect_line(&mut rd, b"230 ").await?;
    wr.write_all(b"STAT\r\n").await.map_err(|e| e.to_string())?;
    drop(permit);
    let got = if finish {
        let got = read_reply(&mut rd).await?;
        done.fetch_add(1, Ordering::SeqCst);
        let _ = leave.wait_for(|go| *go).await;
        got
    } else {
        done.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            biased;
            _ = leave.wait_for(|go| *go) => {}
            r = rd.fill_buf() => {
                let n = r.map(|b| b.len()).unwrap_or(0);
                return Err(format!("{n} bytes of a held-open reply reached the client"));
            }
        }
        read_reply(&mut rd).await?
    };
    wr.write_all(b"QUIT\r\n").await.map_err(|e| e.to_string())?;
    Ok(got)
}

/// 1,000 concurrent sessions whose servers each send a near-maximal multi-line reply
/// (held open, or finished and read by the client): ftpgate's RSS growth stays under
/// [`budget_per_session`] per session, and everything drains afterwards.
fn memory_budget(name: &'static str, finish: bool) {
    let _serial = serial();
    let _dog = Watchdog::new(name, Duration::from_secs(120));
    // Four sockets per session in this process: client, both ftpgate legs, server.
    if !fd_limit_allows(name, 4 * BUDGET_SESSIONS + 1024) {
        return;
    }
    let rt = runtime();
    let bodies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (release, released) = tokio::sync::watch::channel(false);
    let server = start_budget_server(&rt, finish, Arc::clone(&bodies), released);
    let limits = format!(
        "limits: {{ max_sessions: {n}, max_sessions_per_ip: {n}, max_reply_bytes: {BUDGET_REPLY_BYTES} }}\n",
        n = BUDGET_SESSIONS + 100
    );
    let yaml = proxy_yaml(
        server,
        &Ports::new(),
        "passive",
        &format!("{limits}{}", timeouts("300s", "300s", "10s")),
    );
    let proxy = start_proxy_yaml(&rt, &yaml);

    let run = |n: usize| {
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (leave, rx) = tokio::sync::watch::channel(false);
        let gate = Arc::new(tokio::sync::Semaphore::new(100));
        let clients: Vec<_> = (0..n)
            .map(|_| {
                let (done, rx, gate) = (Arc::clone(&done), rx.clone(), Arc::clone(&gate));
                let addr = proxy.addr;
                rt.spawn(async move {
                    // At most 100 logins in flight: no SYN-queue overflow on loopback.
                    let permit = gate.acquire_owned().await.expect("gate");
                    budget_client(addr, finish, done, rx, permit).await
                })
            })
            .collect();
        (clients, done, leave)
    };
    let settle = |what: &str| {
        let mut last = vm_rss_kib();
        let mut stable = 0;
        // Bounded poll: no event says "ftpgate has read every byte its servers wrote".
        poll_until(Duration::from_secs(5), || {
            let now = vm_rss_kib();
            stable = if now.abs_diff(last) <= 256 {
                stable + 1
            } else {
                0
            };
            last = now;
            stable >= 10
        });
        eprintln!("{what}: RSS settled at {last} KiB");
        last
    };
    // Held replies are finished and every client reads its reply and QUITs.
    let end = |clients: Vec<tokio::task::JoinHandle<Result<usize, String>>>,
               leave: tokio::sync::watch::Sender<bool>| {
        // Clients first: a client that sees reply bytes before `leave` fails.
        leave.send_replace(true);
        release.send_replace(true);
        rt.block_on(async {
            let mut bytes = 0;
            for c in clients {
                bytes += c.await.expect("client task").expect("client");
            }
            bytes
        })
    };

    // Warm-up, so that one-time allocations are not charged to the measured sessions.
    let (warm, warm_done, warm_leave) = run(20);
    wait_until("the warm-up sessions", Duration::from_secs(30), || {
        warm_done.load(Ordering::SeqCst) == 20
    });
    end(warm, warm_leave);
    wait_for_zero(&proxy.metrics);
    bodies.store(0, Ordering::SeqCst);
    release.send_replace(false);
    let base = Baseline::take(&rt);

    let rss_before = settle("baseline");
    let started = Instant::now();
    let (clients, done, leave) = run(BUDGET_SESSIONS);
    wait_until(
        "every client to be logged in and asking (and, finishing, to have read its reply)",
        Duration::from_secs(60),
        || done.load(Ordering::SeqCst) == BUDGET_SESSIONS,
    );
    wait_until(
        "every server to have written its near-maximal reply",
        Duration::from_secs(30),
        || bodies.load(Ordering::SeqCst) == BUDGET_SESSIONS,
    );
    assert_eq!(proxy.metrics.sessions.get(), BUDGET_SESSIONS as i64);
    let rss_up = settle("all sessions up");
    let up_ms = started.elapsed().as_millis();
    let growth = rss_up.saturating_sub(rss_before);
    let per = growth as f64 * 1024.0 / BUDGET_SESSIONS as f64;
    let ceiling = budget_per_session(BUDGET_REPLY_BYTES);
    let variant = if finish {
        "finished and read"
    } else {
        "held open"
    };
    eprintln!(
        "== {BUDGET_SESSIONS} sessions, near-maximal reply {variant} (limits.max_reply_bytes = {} KiB)",
        BUDGET_REPLY_BYTES / 1024
    );
    eprintln!(
        "   VmRSS {rss_before} KiB -> {rss_up} KiB: {growth} KiB growth, {:.1} KiB per session \
         (ceiling {:.1} KiB = {HELD_REPLY_FACTOR} x max_reply_bytes + {} KiB idle + {} KiB slack; {} KiB total); up in {up_ms} ms",
        per / 1024.0,
        ceiling as f64 / 1024.0,
        IDLE_SESSION_BYTES / 1024,
        BUDGET_SLACK_BYTES / 1024,
        ceiling * BUDGET_SESSIONS / 1024,
    );
    assert!(
        per <= ceiling as f64,
        "{name}: {per:.0} bytes of RSS per session, ceiling {ceiling}"
    );
    // Every reply arrived whole (a held one only once its server finished it).
    let read = end(clients, leave);
    let body = near_max_reply_body(BUDGET_REPLY_BYTES).len() + b"211 end\r\n".len();
    assert_eq!(read, body * BUDGET_SESSIONS, "reply bytes the clients read");
    // Gauges at zero, fds and tasks (ftpgate's, the servers', the clients') at baseline.
    base.assert_back(&rt, &proxy, name);
    assert_eq!(proxy.metrics.sessions_refused.get(), 0);
    eprintln!(
        "   drained to baseline after the clients left; RSS now {} KiB",
        vm_rss_kib()
    );
    proxy.stop(&rt);
}

#[test]
fn memory_budget_held_open_maximal_replies() {
    memory_budget("memory_budget_held_open_maximal_replies", false);
}

#[test]
fn memory_budget_finished_maximal_replies() {
    memory_budget("memory_budget_finished_maximal_replies", true);
}
