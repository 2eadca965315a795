//! Signals an operator sends to the real binary, and what systemd hears: SIGHUP reloads
//! the file with sessions untouched (a bad file changes nothing), the first SIGTERM
//! drains (a running transfer completes, new clients are refused, idle sessions get 421,
//! exit status 0), a second one cuts at once; `NOTIFY_SOCKET` receives READY, RELOADING
//! with MONOTONIC_USEC, READY and STOPPING in that order.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// The ftpgate binary on a config file, its log read line by line as it comes.
struct Gate {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread reading the child's stderr; joined once the child has exited, so that
    /// its last lines are in `log` before a test counts them.
    reader: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl Gate {
    fn start(cfg: &Path, notify: Option<&Path>) -> Gate {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ftpgate"));
        cmd.args(["run", "-c"])
            .arg(cfg)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stderr(Stdio::piped());
        if let Some(path) = notify {
            cmd.env("NOTIFY_SOCKET", path);
        }
        let mut child = cmd.spawn().expect("start ftpgate");
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        // Port 0: the child logs the address it bound.
        let addr = wait_for("the listening line", Duration::from_secs(10), || {
            log.lock().expect("log").iter().find_map(|l| {
                let (_, rest) = l.split_once("listener.addr=")?;
                rest.split_whitespace().next()?.parse().ok()
            })
        });
        Gate {
            child,
            log,
            reader: Some(reader),
            addr,
        }
    }

    fn count(&self, what: &str) -> usize {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }

    fn wait_log(&self, what: &str, n: usize) {
        wait_until(what, Duration::from_secs(10), || self.count(what) >= n);
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the child to exit, then for its log to be read to the end.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let status = wait_for("ftpgate to exit", limit, || {
            self.child.try_wait().expect("try_wait")
        });
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader");
        }
        status
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn refused(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

#[test]
fn sighup_reloads_and_sessions_survive_a_good_and_a_bad_file() {
    let _dog = Watchdog::new("sighup", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let cfg = dir.path().join("gate.yaml");
    let base = proxy_yaml(unftp.addr, &ports, "passive", "");
    std::fs::write(&cfg, &base).expect("write config");
    let mut gate = Gate::start(&cfg, None);
    let mut c = Ctrl::connect(gate.addr);
    assert_eq!(c.reply().code, 220);
    c.login();
    for n in 1..=3 {
        gate.signal("-HUP");
        gate.wait_log("configuration reloaded", n);
    }
    // A file that does not validate: logged, the running configuration stays.
    std::fs::write(&cfg, "listeners: [").expect("write config");
    gate.signal("-HUP");
    gate.wait_log("reload failed, the running configuration stays", 1);
    assert!(gate.running(), "SIGHUP ended ftpgate");
    let r = c.cmd("NOOP");
    assert_eq!(r.code, 200, "the session outlives SIGHUP: {r:?}");
    let mut d = Ctrl::connect(gate.addr);
    assert_eq!(d.reply().code, 220, "the listener still accepts");
    d.expect("QUIT", 221);
    c.expect("QUIT", 221);
    gate.signal("-TERM");
    let status = gate.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

/// Reads datagrams until one contains every part of `want`; returns it. Lines of
/// periodic `STATUS=` datagrams are skipped.
fn next_state(sock: &UnixDatagram, want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no notification with {want:?}");
        sock.set_read_timeout(Some(left)).expect("timeout");
        let n = sock.recv(&mut buf).expect("notification");
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.lines().all(|l| l.starts_with("STATUS=")) {
            continue;
        }
        assert!(
            want.iter().all(|w| msg.lines().any(|l| l.starts_with(w))),
            "expected {want:?}, got {msg:?}"
        );
        return msg;
    }
}

#[test]
fn notify_socket_hears_ready_reloading_ready_stopping_in_order() {
    let _dog = Watchdog::new("notify", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let cfg = dir.path().join("gate.yaml");
    std::fs::write(&cfg, proxy_yaml(unftp.addr, &ports, "passive", "")).expect("write");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    let mut gate = Gate::start(&cfg, Some(&path));
    let ready = next_state(&sock, &["READY=1", "STATUS="]);
    assert!(ready.contains("0 sessions"), "{ready:?}");
    // READY=1 comes once the listener is bound: a client is served now.
    let mut c = Ctrl::connect(gate.addr);
    assert_eq!(c.reply().code, 220);
    gate.signal("-HUP");
    let reloading = next_state(&sock, &["RELOADING=1", "MONOTONIC_USEC="]);
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC value");
    assert!(usec > 0);
    let ready = next_state(&sock, &["READY=1"]);
    assert!(
        ready.contains("1 sessions"),
        "status counts sessions: {ready:?}"
    );
    gate.signal("-TERM");
    next_state(&sock, &["STOPPING=1"]);
    // The idle session is told 421 at the drain.
    assert_eq!(c.reply().code, 421);
    let status = gate.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_drains_a_running_transfer_and_refuses_new_clients() {
    let _dog = Watchdog::new("drain", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let (file, sum) = random_file(4 * MIB + 3);
    std::fs::write(dir.path().join("f.bin"), &file).expect("write");
    let cfg = dir.path().join("gate.yaml");
    let extra = "limits: { rate_per_session: 2M }\n\
                 timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, shutdown_grace: 20s }\n";
    std::fs::write(&cfg, proxy_yaml(unftp.addr, &ports, "passive", extra)).expect("write");
    let mut gate = Gate::start(&cfg, None);
    let mut idle = Ctrl::connect(gate.addr);
    assert_eq!(idle.reply().code, 220);
    idle.login();
    let mut raw = RawFtp::login(gate.addr, DataMode::Pasv);
    let (_, mut data) = raw.open("RETR f.bin");
    let mut got = vec![0u8; 64 * 1024];
    data.read_exact(&mut got).expect("first bytes");
    let signalled = Instant::now();
    gate.signal("-TERM");
    // "draining" is logged as the signal is taken; the listener closes just after.
    gate.wait_log("listener closed", 1);
    assert!(refused(gate.addr), "a new client is refused while draining");
    assert_eq!(idle.reply().code, 421, "the idle session is told");
    data.read_to_end(&mut got).expect("rest of the transfer");
    drop(data);
    raw.finish("RETR");
    assert_eq!(sha256_hex(&got), sum, "the transfer completes intact");
    assert_eq!(raw.ctrl.reply().code, 421, "then its session is closed");
    let status = gate.wait_exit(Duration::from_secs(25));
    assert!(status.success(), "exit status after the drain: {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "within the grace"
    );
    assert_eq!(gate.count("cutting the remaining sessions"), 0);
}

#[test]
fn a_second_sigterm_cuts_at_once() {
    let _dog = Watchdog::new("second_signal", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let (file, _) = random_file(8 * MIB);
    std::fs::write(dir.path().join("f.bin"), &file).expect("write");
    let cfg = dir.path().join("gate.yaml");
    let extra = "limits: { rate_per_session: 256K }\n\
                 timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, shutdown_grace: 60s }\n";
    std::fs::write(&cfg, proxy_yaml(unftp.addr, &ports, "passive", extra)).expect("write");
    let mut gate = Gate::start(&cfg, None);
    let mut raw = RawFtp::login(gate.addr, DataMode::Pasv);
    let (_, mut data) = raw.open("RETR f.bin");
    let mut got = vec![0u8; 16 * 1024];
    data.read_exact(&mut got).expect("first bytes");
    gate.signal("-TERM");
    gate.wait_log("draining", 1);
    assert!(gate.running(), "the first signal drains");
    let cut = Instant::now();
    gate.signal("-INT");
    let status = gate.wait_exit(Duration::from_secs(10));
    assert!(
        cut.elapsed() < Duration::from_secs(6),
        "{:?}",
        cut.elapsed()
    );
    assert!(status.success(), "{status:?}");
    assert_eq!(
        gate.count("second signal: cutting the remaining sessions"),
        1,
        "{}",
        gate.log.lock().expect("log").join("\n")
    );
    let mut rest = Vec::new();
    let _ = data.read_to_end(&mut rest);
    assert!(
        16 * 1024 + rest.len() < 8 * MIB,
        "the transfer was cut, not finished"
    );
}

/// One HTTP/1.1 exchange with the admin endpoint: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("admin");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// The value of the sample of `family` whose labels include every `labels` pair.
fn sample(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(family)?;
        let (labelset, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| labelset.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

#[test]
fn metrics_count_checksummed_transfers_and_readyz_follows_the_drain() {
    let _dog = Watchdog::new("metrics_e2e", Duration::from_secs(90));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let (down, down_sum) = random_file(3 * MIB + 5);
    let (up, up_sum) = random_file(MIB + 77);
    std::fs::write(dir.path().join("down.bin"), &down).expect("write");
    std::fs::write(dir.path().join("slow.bin"), &down).expect("write");
    let cfg = dir.path().join("gate.yaml");
    let extra = "admin: { bind: 127.0.0.1:0 }\nlimits: { rate_per_session: 4M }\n\
                 timeouts: { connect: 2s, banner: 5s, data_accept: 5s, idle: 30s, data_stall: 10s, shutdown_grace: 20s }\n";
    std::fs::write(&cfg, proxy_yaml(unftp.addr, &ports, "passive", extra)).expect("write");
    let mut gate = Gate::start(&cfg, None);
    let admin: SocketAddr = wait_for("the admin line", Duration::from_secs(10), || {
        gate.log.lock().expect("log").iter().find_map(|l| {
            let (_, rest) = l.split_once("admin.addr=")?;
            rest.split_whitespace().next()?.parse().ok()
        })
    });
    assert_eq!(http_get(admin, "/healthz").0, 200);
    assert_eq!(http_get(admin, "/readyz"), (200, "ready\n".to_string()));
    let mut c = suppaftp_client(gate.addr, suppaftp::Mode::Passive);
    let got = c.retr_as_buffer("down.bin").expect("RETR").into_inner();
    assert_eq!(sha256_hex(&got), down_sum);
    c.put_file("up.bin", &mut std::io::Cursor::new(up.clone()))
        .expect("STOR");
    assert_eq!(
        sha256_hex(&std::fs::read(dir.path().join("up.bin")).expect("stored")),
        up_sum
    );
    let _ = c.quit();
    wait_until("the session to end", Duration::from_secs(10), || {
        let (_, text) = http_get(admin, "/metrics");
        sample(&text, "ftpgate_sessions", &[("listener", "t")]) == Some(0.0)
    });
    let (status, text) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    let t = [("listener", "t")];
    let bytes = |dir: &str| {
        sample(
            &text,
            "ftpgate_transfer_bytes_total",
            &[("listener", "t"), ("direction", dir)],
        )
    };
    assert_eq!(bytes("download"), Some(down.len() as f64), "{text}");
    assert_eq!(bytes("upload"), Some(up.len() as f64), "{text}");
    assert_eq!(
        sample(
            &text,
            "ftpgate_transfers_total",
            &[
                ("listener", "t"),
                ("direction", "download"),
                ("result", "ok")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "ftpgate_sessions_total", &t), Some(1.0));
    assert_eq!(sample(&text, "ftpgate_transfers", &[]), Some(0.0));
    assert_eq!(
        sample(&text, "ftpgate_passive_ports_in_use", &[]),
        Some(0.0)
    );
    assert_eq!(sample(&text, "ftpgate_passive_ports", &[]), Some(16.0));
    assert_eq!(
        sample(&text, "ftpgate_upstream_up", &[("listener", "t")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "ftpgate_session_setup_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "ftpgate_transfer_seconds_count", &[]),
        Some(2.0)
    );
    if let Some(out) = promtool_check(&text) {
        assert!(
            out.is_empty(),
            "promtool check metrics:\n{out}\n---\n{text}"
        );
    }
    // A running transfer through the drain: /readyz says 503 until the process ends.
    let mut raw = RawFtp::login(gate.addr, DataMode::Pasv);
    raw.ctrl.expect("TYPE I", 200);
    let (_, mut data) = raw.open("RETR slow.bin");
    let mut head = vec![0u8; 1024];
    data.read_exact(&mut head).expect("first bytes");
    gate.signal("-TERM");
    gate.wait_log("draining", 1);
    assert_eq!(http_get(admin, "/readyz"), (503, "draining\n".to_string()));
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).expect("rest");
    head.extend_from_slice(&rest);
    assert_eq!(sha256_hex(&head), down_sum);
    let status = gate.wait_exit(Duration::from_secs(25));
    assert!(status.success(), "{status:?}");
}

/// `promtool check metrics` on `text`: its complaints, or `None` without promtool
/// (which fails under CI=true: .ci/run installs the Debian package `prometheus`).
fn promtool_check(text: &str) -> Option<String> {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool not found; .ci/run installs the Debian package `prometheus`"
        );
        eprintln!("SKIPPED promtool check: promtool not found");
        return None;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let mut said = String::from_utf8_lossy(&out.stdout).to_string();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "promtool failed:\n{said}\n---\n{text}"
    );
    Some(said.trim().to_string())
}
