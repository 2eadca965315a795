//! The admin endpoint over real loopback sockets: its routes, its bounds against slow,
//! idle, too many and garbage clients, and its `/metrics` body as `promtool` reads it.
//! Also checks the shipped alert rules with `promtool` and the Grafana dashboard as JSON.

use ftpgate::admin::{self, Bounds, Readiness};
use ftpgate::metrics::families::*;
use ftpgate::metrics::Metrics;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

/// A readiness the test flips: `None` is ready.
#[derive(Default)]
struct Flag(Mutex<Option<admin::NotReady>>);

impl Readiness for Flag {
    fn ready(&self) -> Result<(), admin::NotReady> {
        match self.0.lock().unwrap().clone() {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

struct Admin {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(metrics: &Metrics, ready: Arc<Flag>, bounds: Bounds) -> Admin {
    let listener = admin::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(admin::serve_with(
        listener,
        Arc::new(metrics.registry()),
        ready,
        shutdown.clone(),
        bounds,
    ));
    Admin {
        addr,
        shutdown,
        task,
    }
}

fn quick() -> Bounds {
    Bounds {
        max_connections: 2,
        header_timeout: Duration::from_millis(500),
        connection_deadline: Duration::from_secs(1),
    }
}

/// Writes `raw` and reads until the server closes; panics if it never does.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    read_to_close(&mut s, Duration::from_secs(5)).await
}

async fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let read = timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "server kept the connection open: {out:?}");
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    split(&exchange(addr, raw.as_bytes()).await)
}

/// (status, head, body) of one response.
fn split(response: &str) -> (u16, String, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn routes_statuses_and_head() {
    let m = Metrics::default();
    m.families.transfers.set(4);
    let a = start(&m, Arc::default(), Bounds::default()).await;

    let (status, _, body) = get(a.addr, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, head, body) = get(a.addr, "GET", "/metrics?x=1").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(body.contains("ftpgate_transfers 4\n"), "{body}");

    let (status, head, body) = get(a.addr, "HEAD", "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-length: "), "{head}");
    assert_eq!(body, "", "HEAD carries no body");

    assert_eq!(get(a.addr, "GET", "/").await.0, 404);
    assert_eq!(get(a.addr, "GET", "/metrics/x").await.0, 404);
    let (status, head, _) = get(a.addr, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"), "{head}");
    assert_eq!(get(a.addr, "DELETE", "/readyz").await.0, 405);

    a.shutdown.cancel();
    timeout(Duration::from_secs(3), a.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn readyz_follows_the_readiness() {
    let flag = Arc::new(Flag::default());
    let a = start(&Metrics::default(), Arc::clone(&flag), Bounds::default()).await;
    let (status, _, body) = get(a.addr, "GET", "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    *flag.0.lock().unwrap() = Some(admin::NotReady::NoHealthyUpstream {
        listener: "public".into(),
    });
    let (status, _, body) = get(a.addr, "GET", "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "listener `public`: no healthy upstream\n")
    );
    // Liveness is not readiness.
    assert_eq!(get(a.addr, "GET", "/healthz").await.0, 200);
    *flag.0.lock().unwrap() = None;
    assert_eq!(get(a.addr, "GET", "/readyz").await.0, 200);
    a.shutdown.cancel();
}

#[tokio::test]
async fn keep_alive_is_bounded_by_the_connection_deadline() {
    let a = start(&Metrics::default(), Arc::default(), quick()).await;
    let mut s = TcpStream::connect(a.addr).await.unwrap();
    let started = Instant::now();
    // A request every 200 ms keeps the connection busy (each is within the header
    // timeout); only the deadline (1 s) ends it.
    let mut answered = 0;
    let mut buf = vec![0u8; 1024];
    loop {
        if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .is_err()
        {
            break;
        }
        match timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                answered += 1;
            }
            Err(_) => panic!("no answer and no close"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered >= 2, "keep-alive served {answered} requests");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    a.shutdown.cancel();
}

#[tokio::test]
async fn a_request_body_is_refused_unread() {
    let a = start(&Metrics::default(), Arc::default(), Bounds::default()).await;
    let r = exchange(
        a.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(split(&r).0, 413, "{r}");
    let r = exchange(
        a.addr,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(split(&r).0, 413, "{r}");
    a.shutdown.cancel();
}

#[tokio::test]
async fn a_slowloris_request_is_cut() {
    let a = start(&Metrics::default(), Arc::default(), quick()).await;
    let s = TcpStream::connect(a.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // One byte every 50 ms, never finishing the headers.
    let trickle = tokio::spawn(async move {
        let line = b"GET /healthz HTTP/1.1\r\nX-Slow: ";
        for b in line.iter().chain(std::iter::repeat(&b'a')) {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let ended = timeout(Duration::from_secs(4), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a trickled request held the connection");
    // The header timeout (0.5 s) or at the latest the deadline (1 s) cut it.
    assert!(started.elapsed() < Duration::from_secs(3));
    trickle.abort();
    // And the endpoint still serves.
    assert_eq!(get(a.addr, "GET", "/healthz").await.0, 200);
    a.shutdown.cancel();
}

#[tokio::test]
async fn idle_connections_beyond_the_cap_do_not_lock_the_endpoint_out() {
    let a = start(&Metrics::default(), Arc::default(), quick()).await;
    // Fill the cap (2) with connections that send nothing.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(a.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // One more is refused cleanly: closed without an answer, not left hanging.
    let mut extra = TcpStream::connect(a.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let r = read_to_close(&mut extra, Duration::from_secs(2)).await;
    assert_eq!(r, "", "over the cap a connection is closed unanswered");
    // The idle ones are cut by the deadline (1 s), without the test closing them, and a
    // new /healthz is served.
    let started = Instant::now();
    loop {
        let (status, _, _) = get(a.addr, "GET", "/healthz").await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "idle connections kept the endpoint full"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for mut s in idle {
        read_to_close(&mut s, Duration::from_secs(1)).await;
    }
    a.shutdown.cancel();
}

#[tokio::test]
async fn garbage_gets_400_or_a_close_never_a_hang() {
    let a = start(&Metrics::default(), Arc::default(), quick()).await;
    let long_header = format!("GET /healthz HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\n{}\r\n",
        (0..100)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect::<String>()
    );
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\xff\xfe garbage\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/9.9\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(), // a TLS ClientHello
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        (0..=255u8).cycle().take(50_000).collect(),
    ];
    // Too large a head is 431, not a cut: a client sees why.
    for input in [long_header.clone(), many_headers.clone()] {
        let r = exchange(a.addr, input.as_bytes()).await;
        assert_eq!(split(&r).0, 431, "{r}");
    }
    let inputs: Vec<Vec<u8>> = inputs
        .into_iter()
        .chain([long_header.into_bytes(), many_headers.into_bytes()])
        .collect();
    for input in inputs {
        let r = exchange(a.addr, &input).await;
        let status = split(&r).0;
        assert!(
            r.is_empty() || (400..500).contains(&status),
            "{:?} -> {r:?}",
            String::from_utf8_lossy(&input[..input.len().min(40)])
        );
    }
    assert_eq!(get(a.addr, "GET", "/healthz").await.0, 200);
    a.shutdown.cancel();
}

#[tokio::test]
async fn shutdown_ends_serve_and_its_connections() {
    let a = start(&Metrics::default(), Arc::default(), Bounds::default()).await;
    let mut idle = TcpStream::connect(a.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.shutdown.cancel();
    timeout(Duration::from_secs(3), a.task)
        .await
        .expect("serve ended")
        .unwrap();
    read_to_close(&mut idle, Duration::from_secs(1)).await;
    assert!(TcpStream::connect(a.addr).await.is_err(), "still accepting");
}

#[test]
fn binding_a_taken_port_names_the_key() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = admin::bind(taken.local_addr().unwrap()).unwrap_err();
        assert!(e.to_string().starts_with("admin.bind: "), "{e}");
    });
}

/// `promtool`, or `None` with a notice; in CI (CI=true) a missing promtool fails.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("promtool");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "promtool not found (Debian package `prometheus`); .ci/run installs it"
    );
    eprintln!("SKIPPED: promtool not found (apt-get install prometheus)");
    None
}

/// Every family with at least one sample, so each one's HELP, TYPE and samples show.
fn filled() -> Metrics {
    let m = Metrics::default();
    let f = &m.families;
    let listener = "public".to_string();
    let l = ListenerLabel {
        listener: listener.clone(),
    };
    f.sessions.get_or_create(&l).set(3);
    f.sessions_total.get_or_create(&l).inc_by(10);
    for reason in [
        SessionRefusal::acl,
        SessionRefusal::limit,
        SessionRefusal::upstream,
        SessionRefusal::shutdown,
    ] {
        f.sessions_refused
            .get_or_create(&RefusedLabels {
                listener: listener.clone(),
                reason,
            })
            .inc();
    }
    f.transfers.set(1);
    for (direction, result) in [
        (TransferDirection::download, TransferResult::ok),
        (TransferDirection::upload, TransferResult::failed),
        (TransferDirection::listing, TransferResult::aborted),
    ] {
        f.transfers_total
            .get_or_create(&TransferLabels {
                listener: listener.clone(),
                direction,
                result,
            })
            .inc();
        f.transfer_bytes
            .get_or_create(&BytesLabels {
                listener: listener.clone(),
                direction,
            })
            .inc_by(4096);
    }
    f.transfer_seconds.observe(0.25);
    f.transfer_seconds.observe(42.0);
    f.upstream_up
        .get_or_create(&UpstreamLabels {
            listener: listener.clone(),
            upstream: "ftp1".into(),
        })
        .set(1);
    f.passive_ports_in_use.set(2);
    f.passive_ports.set(1000);
    f.active_ports_in_use.set(1);
    f.active_ports.set(1000);
    f.session_setup_seconds.observe(0.004);
    for result in [ReloadResult::ok, ReloadResult::failed] {
        f.config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }
    for reason in [
        Refusal::bounce,
        Refusal::data_peer,
        Refusal::pasv_address,
        Refusal::command,
        Refusal::tls_policy,
    ] {
        f.refusals.get_or_create(&RefusalLabels { reason }).inc();
    }
    f.tls_handshake_failures
        .get_or_create(&TlsLabels {
            leg: Leg::client,
            channel: Channel::data,
        })
        .inc();
    f.xferlog_dropped.inc();
    f.draining.set(0);
    m
}

/// Runs promtool with `args`, `stdin` piped in; (success, stdout + stderr).
fn run_promtool(tool: &str, args: &[&str], stdin: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn promtool_finds_nothing_to_complain_about_in_metrics() {
    let Some(tool) = promtool() else { return };
    let a = start(&filled(), Arc::default(), Bounds::default()).await;
    let (status, _, body) = get(a.addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    a.shutdown.cancel();
    let (ok, out) = run_promtool(tool, &["check", "metrics"], body.as_bytes());
    assert!(ok, "promtool check metrics failed:\n{out}\n---\n{body}");
    assert!(out.trim().is_empty(), "promtool lint:\n{out}\n---\n{body}");
}

fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_tests() {
    let Some(tool) = promtool() else { return };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        ["check", "rules", "ftpgate-alerts.yml"],
        ["test", "rules", "ftpgate-alerts.test.yml"],
    ] {
        let out = Command::new(tool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The family names of a registry, as `/metrics` exposes them.
fn family_names(m: &Metrics) -> Vec<String> {
    let text = ftpgate::metrics::text::encode(&m.registry()).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn dashboard_is_json_and_shows_every_family() {
    let text = repo_file("deploy/grafana/ftpgate-dashboard.json");
    match Command::new("python3")
        .args(["-m", "json.tool"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "not JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "python3: {e}");
            eprintln!("SKIPPED: JSON check, python3 not found");
        }
    }
    let names = family_names(&filled());
    assert!(names.len() >= 18, "{names:?}");
    for name in names {
        assert!(text.contains(&name), "dashboard has no panel for {name}");
    }
}

#[test]
fn docs_and_alerts_name_only_real_families() {
    let names = family_names(&filled());
    for (file, text) in [
        ("README.md", repo_file("README.md")),
        (
            "deploy/prometheus/ftpgate-alerts.yml",
            repo_file("deploy/prometheus/ftpgate-alerts.yml"),
        ),
    ] {
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let base = word
                .strip_suffix("_bucket")
                .or_else(|| word.strip_suffix("_sum"))
                .or_else(|| word.strip_suffix("_count"))
                .unwrap_or(word);
            if word.starts_with("ftpgate_") {
                assert!(
                    names.iter().any(|n| n == base),
                    "{file} names {word}, which ftpgate does not export"
                );
            }
        }
    }
    let docs = repo_file("README.md");
    for name in &names {
        assert!(docs.contains(name.as_str()), "README.md lacks {name}");
    }
}
