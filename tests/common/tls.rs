//! FTPS test material and peers: a throw-away PKI made with rcgen at test time (a CA, a
//! server certificate for `localhost`/127.0.0.1 signed by it, and an unrelated CA), a
//! libunftp server with FTPS, and suppaftp clients over rustls.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::net::{SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::runtime::Runtime;

/// Files of one test's PKI, in a temp dir that lives as long as this value.
pub struct Pki {
    _dir: tempfile::TempDir,
    /// The CA that signed `cert`.
    pub ca: PathBuf,
    /// A certificate for localhost and 127.0.0.1, and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A CA that signed nothing here: trusting only it, `cert` does not verify.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("CA key");
    let pem = params.self_signed(&key).expect("CA cert").pem();
    (params, key, pem)
}

impl Pki {
    pub fn new() -> Pki {
        install_provider();
        let dir = tempfile::tempdir().expect("pki dir");
        let (ca_params, ca_key, ca_pem) = ca("ftpgate test CA");
        let (_, _, other_pem) = ca("unrelated CA");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::new(ca_params, ca_key);
        let cert = params.signed_by(&key, &issuer).expect("cert");
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write pem");
            p
        };
        Pki {
            ca: write("ca.pem", ca_pem),
            cert: write("cert.pem", cert.pem()),
            key: write("key.pem", key.serialize_pem()),
            other_ca: write("other-ca.pem", other_pem),
            _dir: dir,
        }
    }

    /// A `cert:`/`key:` pair for a listener's `tls` section.
    pub fn files(&self) -> String {
        format!("cert: {}, key: {}", self.cert.display(), self.key.display())
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// libunftp (and anything else in the test binary) builds rustls configurations with
/// `builder()`; with two providers compiled into one test binary that needs a default.
/// ftpgate itself always names its provider.
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A rustls client configuration trusting `ca`, limited to `versions` (TLS 1.2, 1.3).
pub fn client_config(
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(c.expect("ca pem")).expect("ca cert");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Starts libunftp with FTPS (explicit; AUTH TLS required on control and data when
/// `required`), serving `root`, as [`super::start_unftp`] does.
pub fn start_unftp_tls(
    rt: &Runtime,
    root: &Path,
    ports: RangeInclusive<u16>,
    pki: &Pki,
    required: bool,
) -> super::Unftp {
    let tls = super::UnftpTls {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
        required,
        client_ca: None,
    };
    let mut unftp = super::start_unftp_with(rt, root, ports, Some(tls));
    unftp.addr = auth_shim(rt, unftp.addr);
    unftp
}

/// A relay in front of libunftp's control port that holds the client's bytes after a
/// `234` for 100 ms. libunftp switches to TLS in a task it spawns after sending the 234,
/// and reads on meanwhile: a ClientHello that comes first (a prompt client on a loaded
/// machine) is read as a command and answered in plaintext, and the handshake fails.
/// Real servers switch before reading again; this keeps libunftp's race out of tests.
pub fn auth_shim(rt: &Runtime, upstream: SocketAddr) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind shim");
    let addr = listener.local_addr().expect("shim addr");
    rt.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let auth_ok = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let seen = Arc::clone(&auth_ok);
                let down = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        // Noted before the 234 is passed on, so the ClientHello it
                        // prompts always finds the hold in place.
                        if buf[..n].starts_with(b"234 ") {
                            seen.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = cw.shutdown().await;
                };
                let up = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if auth_ok.swap(false, std::sync::atomic::Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                tokio::join!(down, up);
            });
        }
    });
    addr
}

/// A suppaftp client over TLS through `addr`: AUTH TLS, PBSZ 0, PROT P (then PROT C
/// when `!private`), logged in, binary type.
pub fn tls_client(
    addr: SocketAddr,
    mode: suppaftp::Mode,
    config: Arc<rustls::ClientConfig>,
    private: bool,
) -> suppaftp::RustlsFtpStream {
    let tcp = TcpStream::connect_timeout(&addr, super::IO_TIMEOUT).expect("connect to ftpgate");
    tcp.set_read_timeout(Some(super::IO_TIMEOUT))
        .expect("read timeout");
    let ftp = suppaftp::RustlsFtpStream::connect_with_stream(tcp)
        .expect("banner through ftpgate")
        .passive_stream_builder(|addr| {
            let s = TcpStream::connect_timeout(&addr, super::IO_TIMEOUT)
                .map_err(suppaftp::FtpError::ConnectionError)?;
            s.set_read_timeout(Some(super::IO_TIMEOUT))
                .map_err(suppaftp::FtpError::ConnectionError)?;
            Ok(s)
        });
    let ftp = ftp
        .into_secure(suppaftp::RustlsConnector::from(config), "localhost")
        .expect("AUTH TLS through ftpgate");
    finish_client(ftp, mode, private)
}

/// A suppaftp client over implicit TLS through `addr`.
pub fn implicit_client(
    addr: SocketAddr,
    mode: suppaftp::Mode,
    config: Arc<rustls::ClientConfig>,
) -> suppaftp::RustlsFtpStream {
    let ftp = suppaftp::RustlsFtpStream::connect_secure_implicit(
        addr,
        suppaftp::RustlsConnector::from(config),
        "localhost",
    )
    .expect("implicit TLS through ftpgate");
    let mut ftp = ftp;
    ftp.custom_command("PBSZ 0", &[suppaftp::Status::CommandOk])
        .expect("PBSZ");
    ftp.custom_command("PROT P", &[suppaftp::Status::CommandOk])
        .expect("PROT P");
    finish_client(ftp, mode, true)
}

fn finish_client(
    mut ftp: suppaftp::RustlsFtpStream,
    mode: suppaftp::Mode,
    private: bool,
) -> suppaftp::RustlsFtpStream {
    if !private {
        ftp.custom_command("PROT C", &[suppaftp::Status::CommandOk])
            .expect("PROT C");
    }
    if mode == suppaftp::Mode::Active {
        ftp = ftp.active_mode(super::IO_TIMEOUT);
    } else {
        ftp.set_mode(mode);
    }
    ftp.login("anonymous", "test@example.com").expect("login");
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .expect("TYPE I");
    ftp
}

/// A raw FTPS control connection (explicit: `AUTH TLS`, then `PBSZ 0` and `PROT P`), for
/// tests that need to do what suppaftp will not: open a TLS data connection by hand and
/// end it without close_notify.
pub struct TlsCtrl {
    s: std::io::BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    config: Arc<rustls::ClientConfig>,
    /// PROT P (data over TLS) or PROT C.
    private: bool,
    /// Data connections by PORT (the client listens) rather than PASV.
    pub active: bool,
}

/// Reads one (possibly multi-line) reply: its code and its text.
pub fn read_reply(r: &mut impl std::io::BufRead) -> (u16, String) {
    let mut text = String::new();
    let mut code: Option<u16> = None;
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read reply");
        assert!(n > 0, "connection closed while a reply was due: {text:?}");
        text.push_str(&line);
        let c = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let sep = line.as_bytes().get(3).copied();
        match (code, c, sep) {
            (None, Some(c), Some(b'-')) => code = Some(c),
            (None, Some(c), _) => return (c, text),
            (Some(open), Some(c), Some(b' ')) if c == open => return (c, text),
            _ => {}
        }
    }
}

impl TlsCtrl {
    pub fn explicit(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsCtrl {
        use std::io::Write;
        let tcp = TcpStream::connect_timeout(&addr, super::IO_TIMEOUT).expect("connect");
        tcp.set_read_timeout(Some(super::IO_TIMEOUT))
            .expect("timeout");
        let mut plain = std::io::BufReader::new(tcp);
        assert_eq!(read_reply(&mut plain).0, 220, "greeting");
        plain.get_mut().write_all(b"AUTH TLS\r\n").expect("AUTH");
        assert_eq!(read_reply(&mut plain).0, 234, "AUTH TLS");
        let tcp = plain.into_inner();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(Arc::clone(&config), name).expect("client");
        let mut c = TlsCtrl {
            s: std::io::BufReader::new(rustls::StreamOwned::new(conn, tcp)),
            config,
            private: true,
            active: false,
        };
        assert_eq!(c.cmd("PBSZ 0").0, 200, "PBSZ");
        assert_eq!(c.cmd("PROT P").0, 200, "PROT P");
        c
    }

    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let s = self.s.get_mut();
        s.write_all(format!("{line}\r\n").as_bytes()).expect("send");
        s.flush().expect("flush");
    }

    pub fn reply(&mut self) -> (u16, String) {
        read_reply(&mut self.s)
    }

    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(line);
        self.reply()
    }

    /// PROT C: data connections in the clear from now on.
    pub fn clear_data(&mut self) {
        assert_eq!(self.cmd("PROT C").0, 200, "PROT C");
        self.private = false;
    }

    /// Runs a transfer command over a fresh data connection (PASV or PORT, TLS per PROT),
    /// `io` moving the bytes; returns the final reply.
    fn transfer(&mut self, cmd: &str, io: &mut dyn FnMut(&mut dyn ReadWrite)) -> (u16, String) {
        let listener = self.active.then(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind active");
            let p = l.local_addr().expect("addr").port();
            let (code, text) = self.cmd(&format!("PORT 127,0,0,1,{},{}", p >> 8, p & 0xff));
            assert_eq!(code, 200, "PORT: {text}");
            l
        });
        let early = if self.active { None } else { Some(self.pasv()) };
        let (code, text) = self.cmd(cmd);
        assert!(code == 150 || code == 125, "{cmd}: {text}");
        let tcp = match (early, listener) {
            (Some(s), _) => s,
            (None, Some(l)) => super::accept_timeout(&l, super::IO_TIMEOUT).expect("active data"),
            (None, None) => unreachable!("passive or active"),
        };
        tcp.set_read_timeout(Some(super::IO_TIMEOUT))
            .expect("timeout");
        if self.private {
            let mut tls = self.secure_data(tcp);
            io(&mut tls);
            tls.conn.send_close_notify();
            let _ = std::io::Write::flush(&mut tls);
        } else {
            let mut tcp = tcp;
            io(&mut tcp);
        }
        self.reply()
    }

    /// USER/PASS and TYPE I.
    pub fn login(&mut self) {
        assert_eq!(self.cmd("USER anonymous").0, 331, "USER");
        assert_eq!(self.cmd("PASS x@example.com").0, 230, "PASS");
        assert_eq!(self.cmd("TYPE I").0, 200, "TYPE I");
    }

    /// PASV, and a TCP connection to the address it names (TLS not started yet).
    pub fn pasv(&mut self) -> TcpStream {
        let (code, text) = self.cmd("PASV");
        assert_eq!(code, 227, "PASV: {text}");
        let addr = super::parse_227(&text);
        let s = TcpStream::connect_timeout(&addr, super::IO_TIMEOUT).expect("data connect");
        s.set_read_timeout(Some(super::IO_TIMEOUT))
            .expect("timeout");
        s
    }

    /// TLS over a data connection with this session's configuration (so it resumes).
    pub fn secure_data(
        &self,
        tcp: TcpStream,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(Arc::clone(&self.config), name).expect("client");
        rustls::StreamOwned::new(conn, tcp)
    }
}

/// What a data connection is to [`TlsCtrl`]: TCP or TLS over it.
pub trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

impl super::FtpOps for TlsCtrl {
    fn retr(&mut self, name: &str) -> Vec<u8> {
        let mut got = Vec::new();
        let (code, text) = self.transfer(&format!("RETR {name}"), &mut |d| {
            d.read_to_end(&mut got).expect("RETR data");
        });
        assert_eq!(code, 226, "RETR: {text}");
        got
    }
    fn retr_from(&mut self, name: &str, offset: usize) -> Vec<u8> {
        assert_eq!(self.cmd(&format!("REST {offset}")).0, 350, "REST");
        self.retr(name)
    }
    fn stor(&mut self, name: &str, bytes: &[u8]) {
        let (code, text) = self.transfer(&format!("STOR {name}"), &mut |d| {
            d.write_all(bytes).expect("STOR data");
        });
        assert_eq!(code, 226, "STOR: {text}");
    }
    fn appe(&mut self, name: &str, bytes: &[u8]) {
        let (code, text) = self.transfer(&format!("APPE {name}"), &mut |d| {
            d.write_all(bytes).expect("APPE data");
        });
        assert_eq!(code, 226, "APPE: {text}");
    }
    fn stou(&mut self, _bytes: &[u8]) -> String {
        unimplemented!("STOU over TlsCtrl")
    }
    fn list(&mut self) -> String {
        let mut got = Vec::new();
        let (code, text) = self.transfer("LIST", &mut |d| {
            d.read_to_end(&mut got).expect("LIST data");
        });
        assert_eq!(code, 226, "LIST: {text}");
        String::from_utf8_lossy(&got).into_owned()
    }
    fn nlst(&mut self) -> String {
        unimplemented!("NLST over TlsCtrl")
    }
    fn quit(mut self: Box<Self>) {
        assert_eq!(self.cmd("QUIT").0, 221, "QUIT");
    }
}
