//! Signals an operator sends to the real binary: SIGHUP (what logrotate and reflex send)
//! leaves ftpgate and its sessions running; SIGTERM ends it with exit status 0.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn sighup_keeps_sessions_and_sigterm_stops_cleanly() {
    let _dog = Watchdog::new("signals", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    // Port 0: the child logs the address it bound.
    let cfg = dir.path().join("gate.yaml");
    std::fs::write(&cfg, proxy_yaml(unftp.addr, &ports, "passive", "")).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftpgate"))
        .args(["run", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ftpgate");
    // The child's log, line by line, read as it comes (and so never blocking it).
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&log);
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("log").push(line);
        }
    });
    let count = |what: &str| {
        log.lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    let addr: std::net::SocketAddr =
        wait_for("the listening line", Duration::from_secs(10), || {
            log.lock().expect("log").iter().find_map(|l| {
                let (_, rest) = l.split_once("listener.addr=")?;
                rest.split_whitespace().next()?.parse().ok()
            })
        });
    let mut c = Ctrl::connect(addr);
    assert_eq!(c.reply().code, 220);
    c.login();
    let pid = child.id().to_string();
    let send = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    };
    for n in 1..=3 {
        send("-HUP");
        wait_until("SIGHUP logged", Duration::from_secs(10), || {
            count("SIGHUP received") >= n
        });
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "SIGHUP ended ftpgate"
    );
    let r = c.cmd("NOOP");
    assert_eq!(r.code, 200, "the session outlives SIGHUP: {r:?}");
    c.expect("QUIT", 221);
    send("-TERM");
    let status = wait_for("ftpgate to exit", Duration::from_secs(15), || {
        child.try_wait().expect("try_wait")
    });
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}
