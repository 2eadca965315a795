//! `ftpgate demo`: the relay at work with nothing else installed. An embedded FTP server
//! (libunftp, anonymous login, loopback only) serves a temporary directory of sample
//! files; ftpgate runs in front of it with the shipped configuration, changed only in
//! the listener's address and the upstream (the server's log lines at warn and above
//! only). The directory goes when the demo ends.

use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The shipped configuration, the demo's starting point.
const SHIPPED: &str = include_str!("../config/ftpgate.yaml");
/// The embedded server's own passive ports: outside the shipped `data.passive_ports`.
const SERVER_PASSIVE: std::ops::RangeInclusive<u16> = 51000..=51099;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: cannot prepare the sample directory: {0}")]
    Files(std::io::Error),
    #[error("demo: cannot start the embedded FTP server: {0}")]
    Server(std::io::Error),
    #[error("demo: the shipped configuration has no `{0}` line to adapt")]
    Shipped(&'static str),
}

/// A running embedded server and the files it serves.
pub struct Demo {
    dir: tempfile::TempDir,
    pub upstream: SocketAddr,
    /// (name, size, SHA-256) of each sample file.
    pub files: Vec<(String, usize, String)>,
}

impl Demo {
    /// Makes the sample directory and starts the embedded server on 127.0.0.1 (a port
    /// the kernel picks), on a thread of its own.
    pub fn start() -> Result<Demo, DemoError> {
        let dir = tempfile::Builder::new()
            .prefix("ftpgate-demo.")
            .tempdir()
            .map_err(DemoError::Files)?;
        // The served files in a folder of their own, the demo's config beside it.
        let root = dir.path().join("files");
        std::fs::create_dir(&root).map_err(DemoError::Files)?;
        let mut files = Vec::new();
        let mut sample = |name: &str, bytes: Vec<u8>| -> Result<(), DemoError> {
            std::fs::write(root.join(name), &bytes).map_err(DemoError::Files)?;
            files.push((name.to_string(), bytes.len(), hex(&Sha256::digest(&bytes))));
            Ok(())
        };
        sample(
            "README.txt",
            b"Served by the embedded demo server, relayed by ftpgate.\r\n".to_vec(),
        )?;
        // Deterministic "random" bytes: the checksum is the same on every machine.
        let mut x: u32 = 0x2545_f491;
        let blob: Vec<u8> = (0..1_048_576)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        sample("sample-1MiB.bin", blob)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(DemoError::Server)?;
        listener.set_nonblocking(true).map_err(DemoError::Server)?;
        let upstream = listener.local_addr().map_err(DemoError::Server)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DemoError::Server)?;
        std::thread::Builder::new()
            .name("demo-ftp-server".into())
            .spawn(move || runtime.block_on(serve(listener, root)))
            .map_err(DemoError::Server)?;
        Ok(Demo {
            dir,
            upstream,
            files,
        })
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The shipped configuration with the listener on `bind` and this server upstream.
    pub fn config(&self, bind: SocketAddr) -> Result<String, DemoError> {
        let listener = "bind: 127.0.0.1:2121";
        let upstream = "upstreams: [127.0.0.1:21]";
        for key in [listener, upstream] {
            if !SHIPPED.contains(key) {
                return Err(DemoError::Shipped(key));
            }
        }
        Ok(SHIPPED
            .replacen(listener, &format!("bind: {bind}"), 1)
            .replacen(upstream, &format!("upstreams: [{}]", self.upstream), 1))
    }

    /// Writes [`Self::config`] into the demo directory (so SIGHUP reloads it as usual).
    pub fn write_config(&self, bind: SocketAddr) -> Result<PathBuf, DemoError> {
        let path = self.dir.path().join("ftpgate-demo.yaml");
        std::fs::write(&path, self.config(bind)?).map_err(DemoError::Files)?;
        Ok(path)
    }

    /// What to try, printed once ftpgate is about to serve.
    pub fn instructions(&self, bind: SocketAddr) -> String {
        let url = format!("ftp://{bind}");
        let host = bind.ip();
        let port = bind.port();
        let mut out = format!(
            "\nftpgate demo: an FTP server (anonymous, {dir}/files) behind ftpgate on {bind}.\n\
             Try, from another terminal:\n\n\
             \x20 curl {url}/                                   # a listing (passive: EPSV/PASV)\n\
             \x20 curl -O {url}/sample-1MiB.bin                 # passive download\n\
             \x20 curl -P - -O {url}/sample-1MiB.bin            # active download (EPRT/PORT)\n\
             \x20 curl -T README.txt {url}/uploaded.txt         # an upload\n\
             \x20 lftp -p {port} -e 'ls; get sample-1MiB.bin; bye' {host}\n\
             \x20 lftp -p {port} -e 'set ftp:passive-mode off; get README.txt; bye' {host}\n\n\
             Files and their SHA-256:\n",
            dir = self.dir.path().display(),
        );
        for (name, size, sum) in &self.files {
            out.push_str(&format!("  {name:<18} {size:>8} bytes  {sum}\n"));
        }
        out.push_str("\nEach session is logged below. Ctrl-C stops both servers and removes the directory.\n");
        out
    }
}

async fn serve(listener: std::net::TcpListener, root: PathBuf) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let root = root.clone();
        // The directory lives as long as the demo (it is removed after ftpgate stopped);
        // were it gone, only this session's task would end, in libunftp's spawn.
        #[allow(clippy::expect_used)]
        let server = libunftp::ServerBuilder::new(Box::new(move || {
            unftp_sbe_fs::Filesystem::new(root.clone()).expect("the demo directory exists")
        }))
        .greeting("ftpgate demo server ready")
        .passive_ports(SERVER_PASSIVE)
        .active_passive_mode(libunftp::options::ActivePassiveMode::ActiveAndPassive)
        .build();
        if let Ok(server) = server {
            tokio::spawn(server.service(stream));
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
