//! Signals an operator sends to the real binary: SIGHUP (what logrotate and reflex send)
//! leaves ftpgate and its sessions running; SIGTERM ends it with exit status 0.

mod common;

use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sighup_keeps_sessions_and_sigterm_stops_cleanly() {
    let _dog = Watchdog::new("signals", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    // A fixed control port for the child: ask the kernel for a free one first.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        l.local_addr().expect("addr").port()
    };
    let yaml = proxy_yaml(unftp.addr, &ports, "passive", "")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let cfg = dir.path().join("gate.yaml");
    std::fs::write(&cfg, yaml).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftpgate"))
        .args(["run", "-c"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ftpgate");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_until("ftpgate listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
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
    for _ in 0..3 {
        send("-HUP");
    }
    std::thread::sleep(Duration::from_millis(300));
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
    let mut log = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log);
    assert!(log.contains("SIGHUP received"), "SIGHUP is logged: {log}");
}
