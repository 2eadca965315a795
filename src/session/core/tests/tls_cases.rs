//! FTPS cases of the table (RFC 4217): the client's AUTH/PBSZ/PROT/CCC answered by
//! ftpgate, `required` and `data: required` listeners, ftpgate's own AUTH TLS towards a
//! TLS route before anything of the client's, and which transfers get TLS legs.

use super::*;
use std::path::PathBuf;
use std::sync::OnceLock;

/// A certificate and key for the listeners of these cases, made once per test run.
pub(super) fn test_cert() -> (&'static str, &'static str) {
    static PATHS: OnceLock<(String, String)> = OnceLock::new();
    let (c, k) = PATHS.get_or_init(|| {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("ftpgate-core-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .unwrap_or_else(|e| panic!("rcgen: {e}"));
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&key, certified.signing_key.serialize_pem())
            .unwrap_or_else(|e| panic!("{e}"));
        (cert.display().to_string(), key.display().to_string())
    });
    (c.as_str(), k.as_str())
}

const EXPLICIT: &str = "    tls: { mode: explicit, cert: CERT, key: KEY }";
const C234: &str = "c: 234 AUTH TLS successful; start the TLS handshake.";
const C421_NO_TLS: &str = "c: 421 Service not available: the FTP server does not offer TLS.";

/// AUTH TLS, the handshake, PBSZ 0 and PROT P on the client leg.
const SECURE_CLIENT: Steps = &[
    (C("AUTH TLS"), &[C234, "tls client"]),
    (ClientTls(true), &[]),
    (C("PBSZ 0"), &["c: 200 PBSZ=0"]),
    (C("PROT P"), &["c: 200 Protection level set to P."]),
];

/// ftpgate securing the server leg after the server's greeting, greeting held.
const SECURE_SERVER: Steps = &[
    (S("234 go ahead"), &["tls server"]),
    (ServerTls(true), &["s: PBSZ 0"]),
    (S("200 PBSZ=0"), &["s: PROT P"]),
    (S("200 PROT now Private"), &["c: 220 ready"]),
];

fn listener(extra: &'static str, c: Case) -> Case {
    // "route extra | top-level | listener extra"
    with(extra, c)
}

/// A case on an explicit TLS listener (no route TLS).
fn on_explicit(name: &'static str, parts: &[Steps]) -> Case {
    listener(leak(format!("||{EXPLICIT}")), case(name, parts))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A case whose route secures the server leg first.
fn server_tls(route: &'static str, name: &'static str, parts: &[Steps]) -> Case {
    Case {
        greeting: &["s: AUTH TLS"],
        login: false,
        ..with(leak(format!(", tls: {{ {route} }}|")), case(name, parts))
    }
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        // --- the client leg -------------------------------------------------------------
        on_explicit(
            "AUTH TLS, PBSZ, PROT P: answered by ftpgate; the next transfer's client leg is TLS",
            &[SECURE_CLIENT, &[
                (C("PASV"), &[P227, "s: PASV"]),
                (S(S227), &[]),
                (C("RETR f"), &["start 1 down accept(192.0.2.1:50000<-192.0.2.10) connect(198.51.100.10:30000) tls=client", "s: RETR f"]),
                (S("150 here"), &["go 1", "c: 150 here"]),
                (Done(1, 10), &[]),
                (S("226 ok"), &["c: 226 ok"]),
                (C("PROT C"), &["c: 200 Protection level set to C."]),
                (C("PASV"), &["c: 227 Entering Passive Mode (192,0,2,1,195,81).", "s: PASV"]),
                (S(S227), &[]),
                (C("STOR g"), &["start 2 up accept(192.0.2.1:50001<-192.0.2.10) connect(198.51.100.10:30000)", "s: STOR g"]),
            ]],
        ),
        logged_out(on_explicit(
            "AUTH SSL is AUTH TLS; AUTH before login, then login over TLS",
            &[&[
                (C("AUTH SSL"), &[C234, "tls client"]),
                (ClientTls(true), &[]),
                (C("USER a"), &["s: USER a"]),
                (S("331 pw"), &["c: 331 pw"]),
            ]],
        )),
        on_explicit(
            "RFC 4217 order: PBSZ/PROT before AUTH, PROT before PBSZ, unknown levels, a second AUTH",
            &[&[
                (C("PBSZ 0"), &["c: 503 PBSZ needs AUTH TLS first."]),
                (C("PROT P"), &["c: 503 PROT needs AUTH TLS first."]),
                (C("AUTH KERBEROS_V4"), &["c: 504 Unsupported security mechanism; use AUTH TLS."]),
                (C("AUTH TLS"), &[C234, "tls client"]),
                (ClientTls(true), &[]),
                (C("PROT P"), &["c: 503 PBSZ must come before PROT P."]),
                // Clear data needs no PBSZ (Python's ftplib sends PROT C alone).
                (C("PROT C"), &["c: 200 Protection level set to C."]),
                (C("PBSZ x"), &["c: 501 Syntax error in PBSZ argument: a decimal size."]),
                (C("PBSZ 0"), &["c: 200 PBSZ=0"]),
                (C("PROT S"), &["c: 536 Protection level not supported; use PROT C or PROT P."]),
                (C("PROT E"), &["c: 536 Protection level not supported; use PROT C or PROT P."]),
                (C("PROT Q"), &["c: 504 PROT takes C or P."]),
                (C("AUTH TLS"), &["c: 503 Already using TLS."]),
                (C("CCC"), &["c: 534 CCC refused: the control connection stays protected."]),
                (C("REIN"), &["c: 421 REIN is not available on a TLS session; closing control connection.", "close: client protocol error: REIN on a TLS session"]),
            ]],
        ),
        case(
            "a listener without TLS refuses AUTH; nothing reaches the server",
            &[&[(C("AUTH TLS"), &["c: 502 AUTH not available: this listener has no TLS."])]],
        ),
        on_explicit(
            "FEAT on a TLS listener: the server's AUTH/PBSZ/PROT replaced by ftpgate's own",
            &[&[
                (C("FEAT"), &["s: FEAT"]),
                (S("211-Features:"), &[]),
                (S(" AUTH TLS"), &[]),
                (S(" PBSZ"), &[]),
                (S(" MDTM"), &[]),
                (S("211 End"), &["c: 211-Features: |  MDTM |  AUTH TLS |  PBSZ |  PROT | 211 End"]),
                (C("FEAT"), &["s: FEAT"]),
                (S("211 no features"), &["c: 211-Features: |  AUTH TLS |  PBSZ |  PROT | 211 End"]),
            ]],
        ),
        logged_out(on_explicit(
            "bytes pipelined behind AUTH close the session before any handshake",
            &[&[(
                Pipelined("AUTH TLS"),
                &["c: 421 Commands pipelined after AUTH, closing control connection.", "close: client protocol error: bytes pipelined after AUTH"],
            )]],
        )),
        logged_out(on_explicit(
            "a failed client handshake closes the session",
            &[&[
                (C("AUTH TLS"), &[C234, "tls client"]),
                (ClientTls(false), &["close: TLS on the client control connection failed: TLS handshake timed out"]),
            ]],
        )),
        logged_out(case(
            "a TLS ClientHello on a plaintext control connection closes it at once",
            &[&[(
                Rejected(crate::proto::line::LineError::TlsRecord),
                &["close: client protocol error: TLS handshake on a plaintext control connection"],
            )]],
        )),
        logged_out(listener(
            "||    tls: { mode: required, cert: CERT, key: KEY }",
            case(
                "required: nothing but AUTH, FEAT, NOOP, QUIT before TLS, and nothing reaches the server",
                &[&[
                    (C("USER a"), &["c: 530 This listener requires TLS: send AUTH TLS before logging in."]),
                    (C("PASS b"), &["c: 530 This listener requires TLS: send AUTH TLS before logging in."]),
                    (C("SYST"), &["c: 534 Request denied: this listener requires AUTH TLS first."]),
                    (C("PASV"), &["c: 534 Request denied: this listener requires AUTH TLS first."]),
                    (C("NOOP"), &["c: 200 NOOP ok."]),
                    (C("FEAT"), &["c: 211-Features: |  AUTH TLS |  PBSZ |  PROT |  EPRT |  EPSV | 211 End"]),
                    (C("AUTH TLS"), &[C234, "tls client"]),
                    (ClientTls(true), &[]),
                    (C("USER a"), &["s: USER a"]),
                ]],
            ),
        )),
        logged_out(listener(
            "||    tls: { mode: required, cert: CERT, key: KEY }",
            case(
                "required: QUIT before TLS is answered by ftpgate",
                &[&[(C("QUIT"), &["c: 221 Goodbye.", "close: client quit"])]],
            ),
        )),
        listener(
            "||    tls: { mode: explicit, cert: CERT, key: KEY, data: required }",
            case(
                "data: required: data commands get 521 until PROT P",
                &[
                    &[
                        (C("PASV"), &["c: 521 Data connections must be protected: send PROT P first."]),
                        (C("PORT 192,0,2,10,19,136"), &["c: 521 Data connections must be protected: send PROT P first."]),
                        (C("LIST"), &["c: 521 Data connections must be protected: send PROT P first."]),
                    ],
                    SECURE_CLIENT,
                    &[(C("PASV"), &[P227, "s: PASV"])],
                ],
            ),
        ),
        Case {
            secured: Secured {
                client: crate::session::security::ClientSecurity::secured(),
                server: false,
            },
            ..listener(
                "||    tls: { mode: implicit, cert: CERT, key: KEY }",
                case(
                    "implicit: the session starts in TLS; PBSZ and PROT work at once",
                    &[&[
                        (C("AUTH TLS"), &["c: 503 Already using TLS."]),
                        (C("PBSZ 0"), &["c: 200 PBSZ=0"]),
                        (C("PROT P"), &["c: 200 Protection level set to P."]),
                    ]],
                ),
            )
        },
        // --- the server leg -------------------------------------------------------------
        server_tls(
            "mode: explicit, verify: false",
            "route tls explicit: AUTH TLS, PBSZ 0, PROT P before the greeting; plain client, TLS server data",
            &[SECURE_SERVER, LOGIN, &[
                (C("PASV"), &[P227, "s: PASV"]),
                (S(S227), &[]),
                (C("STOR f"), &["start 1 up accept(192.0.2.1:50000<-192.0.2.10) connect(198.51.100.10:30000) tls=server", "s: STOR f"]),
            ]],
        ),
        server_tls(
            "mode: explicit, verify: false",
            "a client line that comes while the server leg is being secured waits for it",
            &[&[
                (C("USER a"), &[]),
                (S("234 go ahead"), &["tls server"]),
                (ServerTls(true), &["s: PBSZ 0"]),
                (S("200 PBSZ=0"), &["s: PROT P"]),
                (S("200 PROT now Private"), &["c: 220 ready", "s: USER a"]),
            ]],
        ),
        Case {
            secured: Secured {
                client: crate::session::security::ClientSecurity::default(),
                server: true,
            },
            greeting: &["s: PBSZ 0"],
            login: false,
            ..with(
                ", tls: { mode: implicit, verify: false }|",
                case(
                    "route tls implicit: PBSZ 0 and PROT P before the greeting, then TLS server data",
                    &[&[
                        (S("200 PBSZ=0"), &["s: PROT P"]),
                        (S("200 PROT now Private"), &["c: 220 ready"]),
                        (C("USER a"), &["s: USER a"]),
                        (S("230 in"), &["c: 230 in"]),
                        (C("PASV"), &[P227, "s: PASV"]),
                        (S(S227), &[]),
                        (C("RETR f"), &["start 1 down accept(192.0.2.1:50000<-192.0.2.10) connect(198.51.100.10:30000) tls=server", "s: RETR f"]),
                    ]],
                ),
            )
        },
        server_tls(
            "mode: explicit, verify: false, data: clear",
            "route tls data: clear: no PROT P, plain server data",
            &[
                &[
                    (S("234 go ahead"), &["tls server"]),
                    (ServerTls(true), &["s: PBSZ 0"]),
                    (S("200 PBSZ=0"), &["c: 220 ready"]),
                ],
                LOGIN,
                &[
                    (C("PASV"), &[P227, "s: PASV"]),
                    (S(S227), &[]),
                    (C("RETR f"), &[START_RETR, "s: RETR f"]),
                ],
            ],
        ),
        server_tls(
            "mode: explicit, verify: false",
            "a server refusing AUTH TLS: 421 instead of the greeting, no credential sent",
            &[&[(S("500 AUTH not understood"), &[C421_NO_TLS, "close: TLS on the server control connection failed: the FTP server refused AUTH TLS (500)"])]],
        ),
        server_tls(
            "mode: explicit",
            "a server certificate that does not verify: 421 with the reason",
            &[&[
                (S("234 go ahead"), &["tls server"]),
                (ServerTls(false), &["c: 421 Service not available: the FTP server's certificate is not trusted.", "close: TLS on the server control connection failed: TLS handshake failed: invalid peer certificate: UnknownIssuer"]),
            ]],
        ),
        server_tls(
            "mode: explicit, verify: false",
            "a server refusing PROT P under data: private ends the session",
            &[&[
                (S("234 go ahead"), &["tls server"]),
                (ServerTls(true), &["s: PBSZ 0"]),
                (S("200 PBSZ=0"), &["s: PROT P"]),
                (S("536 no"), &["c: 421 Service not available: the FTP server refused protected data connections.", "close: TLS on the server control connection failed: the FTP server refused PROT P (536)"]),
            ]],
        ),
        logged_out(listener(
            leak(format!(", tls: {{ mode: match_client, verify: false, data: match_client }}||{EXPLICIT}")),
            case(
                "match_client: the client's AUTH secures the server first; PROT follows the client",
                &[&[
                    (C("AUTH TLS"), &["s: AUTH TLS"]),
                    (Reading(false), &[]),
                    (S("234 go ahead"), &["tls server"]),
                    (ServerTls(true), &["s: PBSZ 0"]),
                    (S("200 PBSZ=0"), &[C234, "tls client"]),
                    (ClientTls(true), &[]),
                    (C("PBSZ 0"), &["c: 200 PBSZ=0"]),
                    (C("PROT P"), &["s: PROT P"]),
                    (S("200 ok"), &["c: 200 Protection level set to P."]),
                    (C("USER a"), &["s: USER a"]),
                    (S("230 in"), &["c: 230 in"]),
                    (C("PASV"), &[P227, "s: PASV"]),
                    (S(S227), &[]),
                    (C("RETR f"), &["start 1 down accept(192.0.2.1:50000<-192.0.2.10) connect(198.51.100.10:30000) tls=both", "s: RETR f"]),
                ]],
            ),
        )),
        logged_out(listener(
            leak(format!(", tls: {{ mode: match_client, verify: false }}||{EXPLICIT}")),
            case(
                "match_client: a plain client gets a plain server leg",
                &[&[(C("USER a"), &["s: USER a"])]],
            ),
        )),
        logged_out(listener(
            leak(format!(", tls: {{ mode: match_client, verify: false }}||{EXPLICIT}")),
            case(
                "match_client: a server refusing AUTH ends the session before the client's 234",
                &[&[
                    (C("AUTH TLS"), &["s: AUTH TLS"]),
                    (S("502 no"), &[C421_NO_TLS, "close: TLS on the server control connection failed: the FTP server refused AUTH TLS (502)"]),
                ]],
            ),
        )),
    ]
}

/// Arbitrary sequences on a TLS listener in front of a TLS route, with the driver's part
/// played as the driver plays it: a handshake outcome right after each Secure action.
mod props {
    use super::*;
    use proptest::prelude::*;

    const CLIENT: &[&str] = &[
        "AUTH TLS",
        "AUTH SSL",
        "PBSZ 0",
        "PROT P",
        "PROT C",
        "PROT S",
        "CCC",
        "USER a",
        "PASS b",
        "PASV",
        "EPSV",
        "PORT 192,0,2,10,19,136",
        "RETR f",
        "STOR f",
        "REIN",
        "QUIT",
        "FEAT",
        "NOOP",
        "ABOR",
    ];
    const SERVER: &[&str] = &[
        "234 go",
        "200 ok",
        "230 ok",
        "331 pw",
        "150 go",
        "226 ok",
        "500 no",
        "421 bye",
        "227 Entering Passive Mode (198,51,100,10,117,48)",
        "229 Entering Extended Passive Mode (|||30000|)",
    ];

    #[derive(Debug, Clone)]
    enum In {
        Client(&'static str, bool),
        Server(&'static str),
        Data(u64, bool),
        Wait(u64),
    }

    fn input() -> impl Strategy<Value = In> {
        prop_oneof![
            6 => (proptest::sample::select(CLIENT), proptest::bool::weighted(0.05))
                .prop_map(|(l, p)| In::Client(l, p)),
            6 => proptest::sample::select(SERVER).prop_map(In::Server),
            1 => (1u64..4, any::<bool>()).prop_map(|(id, ok)| In::Data(id, ok)),
            1 => (0u64..40).prop_map(In::Wait),
        ]
    }

    #[derive(Default)]
    struct Seen {
        client_tls: bool,
        server_tls: bool,
        last_reply: Option<u16>,
        closed: bool,
    }

    /// Checks one action, then plays the driver's part for Secure actions.
    fn act(
        rig: &mut Rig,
        a: Action<FakeListener>,
        seen: &mut Seen,
        outcomes: &mut impl Iterator<Item = bool>,
    ) -> Result<(), String> {
        if seen.closed {
            return Err(format!("an action after Close: {a:?}"));
        }
        match a {
            Action::ToServer(l) => {
                let l = String::from_utf8_lossy(&l).into_owned();
                if !seen.server_tls && l != "AUTH TLS" {
                    return Err(format!("`{l}` went to the server before its leg was TLS"));
                }
            }
            Action::ToClient(r) => seen.last_reply = Some(r.code),
            Action::SecureClient => {
                if seen.last_reply != Some(234) {
                    return Err(format!(
                        "client handshake after {:?}, not 234",
                        seen.last_reply
                    ));
                }
                let ok = outcomes.next().unwrap_or(true);
                seen.client_tls = ok;
                rig.core.handle(
                    Input::ClientSecured(if ok { Ok(()) } else { Err(hello_timeout()) }),
                    rig.now,
                );
            }
            Action::SecureServer => {
                let ok = outcomes.next().unwrap_or(true);
                seen.server_tls = ok;
                let result = if ok { Ok(()) } else { Err(untrusted()) };
                rig.core.handle(Input::ServerSecured(result), rig.now);
            }
            Action::StartTransfer(p) => {
                if p.client_tls && !seen.client_tls {
                    return Err("a TLS client data leg without a TLS control connection".into());
                }
                if p.server_tls && !seen.server_tls {
                    return Err("a TLS server data leg without a TLS control connection".into());
                }
            }
            Action::Close(_) => seen.closed = true,
            _ => {}
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("SESSION_PROPS_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
        ))]
        #[test]
        fn tls_sequences_keep_the_tls_invariants(
            inputs in proptest::collection::vec(input(), 1..60),
            outcomes in proptest::collection::vec(proptest::bool::weighted(0.9), 8),
        ) {
            let config = leak(format!(", tls: {{ mode: explicit, verify: false, data: match_client }}||{EXPLICIT}"));
            let c = Case {
                greeting: &["s: AUTH TLS"],
                login: false,
                ..with(config, case("tls props", &[]))
            };
            let mut rig = Rig::new(&c);
            let mut seen = Seen::default();
            let mut outcomes = outcomes.into_iter();
            for i in inputs {
                let input = match i {
                    In::Client(l, pipelined) => Input::Client {
                        frame: Frame::Line(Bytes::from_static(l.as_bytes())),
                        more_buffered: pipelined,
                    },
                    In::Server(l) => Input::Server(Frame::Line(Bytes::from_static(l.as_bytes()))),
                    In::Data(id, ok) => Input::Data(DataEvent {
                        id,
                        bytes: 1,
                        result: if ok { Ok(()) } else { Err(DataFail::ClientIo.error()) },
                    }),
                    In::Wait(s) => {
                        rig.now += Duration::from_secs(s);
                        Input::Tick
                    }
                };
                rig.core.handle(input, rig.now);
                while let Some(a) = rig.core.poll_action() {
                    if let Err(e) = act(&mut rig, a, &mut seen, &mut outcomes) {
                        prop_assert!(false, "{e}");
                    }
                }
            }
        }
    }
}
