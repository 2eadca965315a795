//! End-to-end relaying through ftpgate to a real FTP server (libunftp on a temp dir).
//!
//! The matrix: every client data mode (PASV, EPSV, PORT via suppaftp; EPRT via the raw
//! client, since suppaftp sends EPRT only on IPv6) against every `data.server_mode`
//! (passive, active, client). Each cell runs RETR and STOR of ~3 MiB random files, LIST,
//! NLST, empty-file RETR and STOR, APPE, REST+RETR and STOU, comparing SHA-256 end to
//! end (uploads as found on the server's disk), then checks that ftpgate's sessions,
//! transfers and port leases all return to zero and that it shuts down on cancel.

mod common;

use common::*;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Client {
    Suppa(suppaftp::Mode),
    Raw(DataMode),
}

fn connect(client: Client, addr: std::net::SocketAddr) -> Box<dyn FtpOps> {
    match client {
        Client::Suppa(mode) => Box::new(suppaftp_client(addr, mode)),
        Client::Raw(mode) => Box::new(RawFtp::login(addr, mode)),
    }
}

/// One cell of the matrix.
fn matrix(name: &'static str, client: Client, server_mode: &str) {
    let _dog = Watchdog::new(name, Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let proxy = start_proxy(&rt, unftp.addr, &ports, server_mode, "");
    let mut c = connect(client, proxy.addr);

    // RETR ~3 MiB (not a multiple of any buffer size).
    let (down, down_sum) = random_file(3 * 1024 * 1024 + 4321);
    std::fs::write(dir.path().join("down.bin"), &down).expect("write down.bin");
    let got = c.retr("down.bin");
    assert_eq!(got.len(), down.len(), "RETR length");
    assert_eq!(sha256_hex(&got), down_sum, "RETR sha256");

    // STOR ~3 MiB, checked on the server's disk.
    let (up, up_sum) = random_file(3 * 1024 * 1024 + 999);
    c.stor("up.bin", &up);
    assert_disk_file(&dir.path().join("up.bin"), &up_sum, "STOR");

    // LIST and NLST name both files.
    let list = c.list();
    for f in ["down.bin", "up.bin"] {
        assert!(list.contains(f), "LIST lacks {f}: {list}");
    }
    let nlst = c.nlst();
    for f in ["down.bin", "up.bin"] {
        assert!(
            nlst.lines().any(|l| l.trim().trim_start_matches('/') == f),
            "NLST lacks {f}: {nlst}"
        );
    }

    // Empty files both ways.
    std::fs::write(dir.path().join("empty.bin"), b"").expect("write empty.bin");
    assert!(
        c.retr("empty.bin").is_empty(),
        "RETR of an empty file returned bytes"
    );
    c.stor("empty-up.bin", b"");
    assert_disk_file(
        &dir.path().join("empty-up.bin"),
        &sha256_hex(b""),
        "STOR of an empty file",
    );

    // APPE adds to the uploaded file.
    let (tail, _) = random_file(100_003);
    c.appe("up.bin", &tail);
    let mut whole = up.clone();
    whole.extend_from_slice(&tail);
    assert_disk_file(&dir.path().join("up.bin"), &sha256_hex(&whole), "APPE");

    // REST + RETR: the tail from an offset.
    let offset = 1_000_003;
    let got = c.retr_from("down.bin", offset);
    assert_eq!(got.len(), down.len() - offset, "REST+RETR length");
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(&down[offset..]),
        "REST+RETR sha256"
    );

    // STOU: libunftp names the new file (a UUID) in its 150 reply; find the word of the
    // reply that is a file now on disk.
    let (unique, unique_sum) = random_file(65_537);
    let text = c.stou(&unique);
    let stored = text
        .split_whitespace()
        .filter_map(|w| w.rsplit('/').next())
        .find(|w| dir.path().join(w).is_file() && w.len() > 8)
        .unwrap_or_else(|| panic!("STOU reply names no new file: {text}"));
    assert_disk_file(&dir.path().join(stored), &unique_sum, "STOU");

    c.quit();
    // RETR, STOR, LIST, NLST, 2 x empty, APPE, REST+RETR, STOU: one data task each.
    assert_eq!(
        proxy.metrics.transfers_total.get(),
        9,
        "data transfers started"
    );
    assert_eq!(
        proxy.metrics.transfers_failed.get(),
        0,
        "data transfers failed"
    );
    proxy.stop(&rt);
}

macro_rules! cell {
    ($name:ident, $client:expr, $mode:literal) => {
        #[test]
        fn $name() {
            matrix(stringify!($name), $client, $mode);
        }
    };
}

use suppaftp::Mode as M;
cell!(pasv_to_server_passive, Client::Suppa(M::Passive), "passive");
cell!(pasv_to_server_active, Client::Suppa(M::Passive), "active");
cell!(pasv_to_server_client, Client::Suppa(M::Passive), "client");
cell!(
    epsv_to_server_passive,
    Client::Suppa(M::ExtendedPassive),
    "passive"
);
cell!(
    epsv_to_server_active,
    Client::Suppa(M::ExtendedPassive),
    "active"
);
cell!(
    epsv_to_server_client,
    Client::Suppa(M::ExtendedPassive),
    "client"
);
cell!(port_to_server_passive, Client::Suppa(M::Active), "passive");
cell!(port_to_server_active, Client::Suppa(M::Active), "active");
cell!(port_to_server_client, Client::Suppa(M::Active), "client");
cell!(
    eprt_to_server_passive,
    Client::Raw(DataMode::Eprt),
    "passive"
);
cell!(eprt_to_server_active, Client::Raw(DataMode::Eprt), "active");
cell!(eprt_to_server_client, Client::Raw(DataMode::Eprt), "client");

/// 50 RETRs in one session through port ranges of 3 ports each: only possible if every
/// transfer returns its lease, and the lease gauge never exceeds what one transfer holds.
fn many_transfers(name: &'static str, client: DataMode, server_mode: &str) {
    let _dog = Watchdog::new(name, Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new().narrow(3);
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let proxy = start_proxy(&rt, unftp.addr, &ports, server_mode, "");
    let mut c = RawFtp::login(proxy.addr, client);
    for i in 0..50 {
        let (bytes, sum) = random_file(1000 + i * 37);
        let name = format!("f{i}.bin");
        std::fs::write(dir.path().join(&name), &bytes).expect("write file");
        let got = c.retr(&name);
        assert_eq!(sha256_hex(&got), sum, "RETR #{i}");
        let leases = proxy.metrics.port_leases.get();
        assert!(
            leases <= 1,
            "after RETR #{i}: {leases} port leases still held"
        );
    }
    c.quit();
    assert_eq!(proxy.metrics.transfers_total.get(), 50);
    assert_eq!(proxy.metrics.transfers_failed.get(), 0);
    proxy.stop(&rt);
}

#[test]
fn many_retrs_one_session_pasv_server_passive() {
    many_transfers(
        "many_retrs_one_session_pasv_server_passive",
        DataMode::Pasv,
        "passive",
    );
}

#[test]
fn many_retrs_one_session_port_server_active() {
    many_transfers(
        "many_retrs_one_session_port_server_active",
        DataMode::Port,
        "active",
    );
}

/// An IPv6 client (::1) through ftpgate to an IPv4 server: EPSV and EPRT carry the
/// transfers, PASV (which cannot name an IPv6 address) is refused, and EPRT with the
/// wrong family gets 522 naming the session's family (2).
#[test]
fn ipv6_client_to_ipv4_server() {
    let _dog = Watchdog::new("ipv6_client_to_ipv4_server", Duration::from_secs(60));
    if !precondition(
        "ipv6_client_to_ipv4_server",
        have_ipv6_loopback(),
        "no IPv6 loopback (::1) on this machine",
    ) {
        return;
    }
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    let (bytes, sum) = random_file(1024 * 1024 + 3);
    std::fs::write(dir.path().join("f.bin"), &bytes).expect("write f.bin");
    for server_mode in ["passive", "active"] {
        let yaml = proxy_yaml(unftp.addr, &ports, server_mode, "")
            .replace("bind: 127.0.0.1:0", "bind: \"[::1]:0\"");
        let proxy = start_proxy_yaml(&rt, &yaml);
        assert!(proxy.addr.is_ipv6());
        for mode in [DataMode::Epsv, DataMode::Eprt] {
            let mut c = RawFtp::login(proxy.addr, mode);
            assert_eq!(
                sha256_hex(&c.retr("f.bin")),
                sum,
                "{mode:?} RETR via {server_mode}"
            );
            let name = format!("up-{server_mode}-{mode:?}.bin");
            c.stor(&name, &bytes);
            assert_disk_file(&dir.path().join(&name), &sum, "STOR over IPv6");
            c.ctrl.expect("PASV", 425);
            let r = c.ctrl.expect("EPRT |1|127.0.0.1|5000|", 522);
            assert!(r.text().contains("(2)"), "{r:?}");
            c.quit();
        }
        proxy.stop(&rt);
    }
}

/// ftpgate asks the server for the next data connection as soon as the client sends
/// PASV/PORT; commands in between either keep that (SIZE, TYPE, REST...) or make
/// ftpgate set up a fresh one (CWD), and the transfer is byte-exact either way.
#[test]
fn transfers_after_commands_between_pasv_and_retr() {
    let _dog = Watchdog::new("between_pasv_and_retr", Duration::from_secs(60));
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let (file, sum) = random_file(300_000);
    std::fs::write(dir.path().join("sub/f.bin"), &file).expect("write");
    let ports = Ports::new();
    let unftp = start_unftp(&rt, dir.path(), ports.unftp.clone());
    for (server_mode, mode) in [
        ("passive", DataMode::Pasv),
        ("active", DataMode::Pasv),
        ("passive", DataMode::Port),
        ("active", DataMode::Eprt),
    ] {
        let proxy = start_proxy(&rt, unftp.addr, &ports, server_mode, "");
        let mut c = RawFtp::login(proxy.addr, mode);
        // Kept: SIZE and TYPE between PASV and RETR.
        c.ctrl.expect("CWD sub", 250);
        let prepared = c.prepare();
        c.ctrl.expect("SIZE f.bin", 213);
        c.ctrl.expect("TYPE I", 200);
        let got = retr_prepared(&mut c, prepared, "RETR f.bin");
        assert_eq!(
            sha256_hex(&got),
            sum,
            "{server_mode} {mode:?} with SIZE/TYPE"
        );
        // Replaced: a CWD between PASV and RETR.
        c.ctrl.expect("CWD /", 250);
        let prepared = c.prepare();
        c.ctrl.expect("CWD sub", 250);
        let got = retr_prepared(&mut c, prepared, "RETR f.bin");
        assert_eq!(sha256_hex(&got), sum, "{server_mode} {mode:?} with CWD");
        c.quit();
        proxy.stop(&rt);
    }
}

/// Runs `cmd` on a data connection prepared earlier and returns what it carried.
fn retr_prepared(c: &mut RawFtp, prepared: Prepared, cmd: &str) -> Vec<u8> {
    use std::io::Read;
    let mut data = match prepared {
        Prepared::Connect(_) => {
            let data = prepared.open();
            assert_eq!(c.ctrl.cmd(cmd).code / 100, 1, "{cmd}");
            data
        }
        Prepared::Accept(_) => {
            assert_eq!(c.ctrl.cmd(cmd).code / 100, 1, "{cmd}");
            prepared.open()
        }
    };
    let mut out = Vec::new();
    data.read_to_end(&mut out).expect("read data connection");
    drop(data);
    c.finish(cmd);
    out
}
