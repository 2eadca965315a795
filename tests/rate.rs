//! Bandwidth limits: `limits.rate_per_session` paces one session's transfers and
//! `limits.rate_total` is shared by all sessions, with every byte still delivered intact.

mod common;

use common::*;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

#[test]
fn rate_per_session_paces_a_download_byte_exact() {
    let _dog = Watchdog::new("rate_per_session", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let proxy = start_proxy(
        &rt,
        unftp.addr,
        &ports,
        "passive",
        "limits: { rate_per_session: 1M }\n",
    );
    let (file, sum) = random_file(2 * MIB + 777);
    std::fs::write(dir.path().join("f.bin"), &file).expect("write");
    let mut c = suppaftp_client(proxy.addr, suppaftp::Mode::Passive);
    let start = Instant::now();
    let got = c.retr_as_buffer("f.bin").expect("RETR").into_inner();
    let took = start.elapsed();
    assert_eq!(sha256_hex(&got), sum, "RETR through a rate limit");
    // 2 MiB at 1 MiB/s with a 100 KiB burst: close to 2 s, never much faster.
    assert!(
        took >= Duration::from_millis(1700),
        "too fast for 1 MiB/s: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "too slow: {took:?}");
    let _ = c.quit();
    proxy.stop(&rt);
}

#[test]
fn rate_total_is_shared_by_sessions() {
    let _dog = Watchdog::new("rate_total", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let proxy = start_proxy(
        &rt,
        unftp.addr,
        &ports,
        "passive",
        "limits: { rate_total: 2M }\n",
    );
    let (file, sum) = random_file(2 * MIB);
    std::fs::write(dir.path().join("f.bin"), &file).expect("write");
    let start = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let mut c = suppaftp_client(addr, suppaftp::Mode::Passive);
                let got = c.retr_as_buffer("f.bin").expect("RETR").into_inner();
                let _ = c.quit();
                sha256_hex(&got)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("client thread"), sum);
    }
    let took = start.elapsed();
    // 4 MiB in total at 2 MiB/s.
    assert!(
        took >= Duration::from_millis(1700),
        "rate_total not enforced: {took:?}"
    );
    proxy.stop(&rt);
}
