//! The `tls` sections at load time: every unusable certificate, key or value is an
//! error naming its key, before any session could trip over it.

use super::*;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = Files { dir };
        let (cert, key) = f.pair("localhost", false);
        f.write("cert.pem", &cert);
        f.write("key.pem", &key);
        let (_, other_key) = f.pair("localhost", false);
        f.write("other-key.pem", &other_key);
        let (expired, expired_key) = f.pair("localhost", true);
        f.write("expired.pem", &expired);
        f.write("expired-key.pem", &expired_key);
        f.write("garbage.pem", "not a certificate\n");
        f
    }

    /// A self-signed certificate and its key; `expired`: valid in 2000 only.
    fn pair(&self, name: &str, expired: bool) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_string()]).unwrap_or_else(|e| panic!("{e}"));
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn config(listener_tls: &str, route_tls: &str) -> String {
    let rtls = if route_tls.is_empty() {
        String::new()
    } else {
        format!(", tls: {{ {route_tls} }}")
    };
    format!(
        "listeners:\n  - bind: 127.0.0.1:2121\n    route: {{ kind: fixed, upstreams: [127.0.0.1:21]{rtls} }}\n    tls: {{ {listener_tls} }}\n"
    )
}

fn err(text: &str) -> String {
    match parse(text, "test") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_good_listener_and_route_load() {
    let f = Files::new();
    let text = config(
        &format!(
            "mode: explicit, cert: {}, key: {}, require_reuse: true, min_version: \"1.3\"",
            f.path("cert.pem"),
            f.path("key.pem")
        ),
        &format!(
            "mode: explicit, ca: {}, server_name: ftp.example.net, data: match_client",
            f.path("cert.pem")
        ),
    );
    let cfg = parse(&text, "t").unwrap_or_else(|e| panic!("{e}"));
    let l = cfg.listeners[0]
        .tls
        .as_ref()
        .unwrap_or_else(|| panic!("listener tls"));
    assert_eq!(l.mode, ClientTlsMode::Explicit);
    assert!(l.require_reuse);
    assert_eq!(l.min_version, crate::tls::TlsVersion::V1_3);
    let r = cfg.listeners[0]
        .route
        .tls
        .as_ref()
        .unwrap_or_else(|| panic!("route tls"));
    assert_eq!(r.data, ServerDataTls::MatchClient);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    // `ftpgate check` prints the effective config: paths, never key material.
    let shown = serde_yaml::to_string(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert!(shown.contains("require_reuse: true"), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[test]
fn mode_off_needs_no_files() {
    let cfg = parse(&config("mode: off", "mode: off"), "t").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.listeners[0].tls.is_none());
    assert!(cfg.listeners[0].route.tls.is_none());
}

#[test]
fn verify_false_loads_with_a_loud_warning() {
    let cfg = parse(&config("mode: off", "mode: explicit, verify: false"), "t")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("route.tls.verify") && w.contains("NOT checked")),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn unusable_material_names_the_key() {
    let f = Files::new();
    let (cert, key) = (f.path("cert.pem"), f.path("key.pem"));
    let cases: Vec<(String, &str, &str)> = vec![
        (config("mode: explicit", ""), "listeners[0].tls.cert", "required"),
        (config(&format!("mode: explicit, cert: {cert}"), ""), "listeners[0].tls.key", "required"),
        (config(&format!("mode: explicit, cert: {}, key: {key}", f.path("missing.pem")), ""), "listeners[0].tls.cert", "cannot read"),
        (config(&format!("mode: explicit, cert: {cert}, key: {}", f.path("missing.pem")), ""), "listeners[0].tls.key", "cannot read"),
        (config(&format!("mode: explicit, cert: {}, key: {key}", f.path("garbage.pem")), ""), "listeners[0].tls.cert", "no PEM certificate"),
        (config(&format!("mode: explicit, cert: {cert}, key: {}", f.path("garbage.pem")), ""), "listeners[0].tls.key", "no PEM private key"),
        (config(&format!("mode: explicit, cert: {cert}, key: {}", f.path("other-key.pem")), ""), "listeners[0].tls.key", "does not match"),
        (config(&format!("mode: explicit, cert: {}, key: {}", f.path("expired.pem"), f.path("expired-key.pem")), ""), "listeners[0].tls.cert", "expired"),
        (config(&format!("mode: sometimes, cert: {cert}, key: {key}"), ""), "listeners[0].tls.mode", "expected off"),
        (config(&format!("mode: explicit, cert: {cert}, key: {key}, data: maybe"), ""), "listeners[0].tls.data", "optional | required"),
        (config(&format!("mode: explicit, cert: {cert}, key: {key}, min_version: \"1.1\""), ""), "listeners[0].tls.min_version", "1.2"),
        (config(&format!("mode: explicit, cert: {cert}, key: {key}, min_version: \"1.3\", max_version: \"1.2\""), ""), "listeners[0].tls.min_version", "above max_version"),
        (config("mode: off", "mode: sideways"), "listeners[0].route.tls.mode", "match_client"),
        (config("mode: off", "mode: explicit, data: secret"), "listeners[0].route.tls.data", "private | clear"),
        (config("mode: off", &format!("mode: explicit, ca: {}", f.path("missing.pem"))), "listeners[0].route.tls.ca", "cannot read"),
        (config("mode: off", &format!("mode: explicit, ca: {}", f.path("garbage.pem"))), "listeners[0].route.tls.ca", "no PEM certificate"),
        (config("mode: off", &format!("mode: explicit, verify: false, ca: {cert}")), "listeners[0].route.tls.ca", "verify: false"),
        (config("mode: off", "mode: explicit, server_name: 'not a name'"), "listeners[0].route.tls.server_name", "DNS name"),
        (config("mode: off", &format!("mode: explicit, client_cert: {cert}")), "listeners[0].route.tls.client_key", "needs its client_key"),
        (config("mode: off", &format!("mode: explicit, client_cert: {cert}, client_key: {}", f.path("other-key.pem"))), "listeners[0].route.tls.client_key", "does not match"),
        (config("mode: off", &format!("mode: explicit, client_cert: {}, client_key: {}", f.path("expired.pem"), f.path("expired-key.pem"))), "listeners[0].route.tls.client_cert", "expired"),
    ];
    for (text, key, why) in &cases {
        let e = err(text);
        assert!(
            e.contains(key) && e.contains(why),
            "want `{key}` and `{why}` in: {e}\n{text}"
        );
    }
}

#[test]
fn unknown_tls_keys_are_refused() {
    let e = err(&config("mode: off, certificate: x", ""));
    assert!(e.contains("certificate"), "{e}");
}
