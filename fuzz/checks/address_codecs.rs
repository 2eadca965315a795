//! Every address parser of `proto/hostport.rs`, and `parse_user_at_host`, on the same
//! arbitrary bytes.
//!
//! Invariants checked, for every `Ok` value:
//! - round trip: `parse(format(v)) == Ok(v)`, for PORT, 227 (both the full `format_227` text
//!   and a bare PORT-style field list), EPRT, EPSV (formatted here as ``/`1`/`2`/`ALL`) and 229;
//! - the formatted text is canonical: formatting the re-parsed value gives the same text;
//! - formatted text is printable ASCII, so it can never split or smuggle a control line;
//! - no parser returns port 0; EPRT returns no IPv6 scope id or flow label; EPSV families are
//!   only 1 or 2;
//! - `parse_user_at_host`: never panics; `Ok` has a non-empty user that is the input up to
//!   its last `@`, a non-empty host without `@`, `[`, `]`, a non-zero port, and
//!   `user@host:port` (host bracketed if it has a `:`) parses back to the same value.

use ftpgate::proto::hostport::{
    canonical_ip, format_227, format_229, format_eprt_arg, format_port_arg, parse_227, parse_229,
    parse_eprt_arg, parse_epsv_arg, parse_port_arg, EpsvArg,
};
use ftpgate::route::parse_user_at_host;
use std::net::SocketAddr;

fn assert_printable(s: &str) {
    assert!(
        s.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "formatted text is not printable ASCII: {s:?}"
    );
}

fn format_epsv(e: EpsvArg) -> String {
    match e {
        EpsvArg::Any => String::new(),
        EpsvArg::Family(f) => f.to_string(),
        EpsvArg::All => "ALL".to_string(),
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The target's whole check: panics when an invariant fails.
pub fn run(data: &[u8]) {
    if let Ok(a) = parse_port_arg(data) {
        assert_ne!(a.port(), 0);
        let text = format_port_arg(a);
        assert_printable(&text);
        assert_eq!(
            parse_port_arg(text.as_bytes()),
            Ok(a),
            "PORT round trip of {text}"
        );
        assert_eq!(parse_227(text.as_bytes()), Ok(a), "PORT text as 227 text");
    }

    if let Ok(a) = parse_227(data) {
        assert_ne!(a.port(), 0);
        let line = format_227(a);
        assert_printable(&line);
        let text = line
            .strip_prefix("227 ")
            .expect("format_227 starts with the code");
        assert_eq!(
            parse_227(text.as_bytes()),
            Ok(a),
            "227 round trip of {line}"
        );
        assert_eq!(format_227(parse_227(text.as_bytes()).unwrap()), line);
        let port_text = format_port_arg(a);
        assert_eq!(parse_port_arg(port_text.as_bytes()), Ok(a));
    }

    if let Ok(sa) = parse_eprt_arg(data) {
        assert_ne!(sa.port(), 0);
        if let SocketAddr::V6(v6) = sa {
            assert_eq!(v6.scope_id(), 0, "scope id leaked through EPRT");
            assert_eq!(v6.flowinfo(), 0);
        }
        let text = format_eprt_arg(sa);
        assert_printable(&text);
        let back = parse_eprt_arg(text.as_bytes());
        assert_eq!(back, Ok(sa), "EPRT round trip of {text}");
        assert_eq!(format_eprt_arg(sa), text);
        // The family is kept: a mapped address under |2| stays IPv6.
        assert_eq!(sa.is_ipv4(), text.starts_with("|1|"));
        let _ = canonical_ip(sa.ip());
    }

    if let Ok(e) = parse_epsv_arg(data) {
        if let EpsvArg::Family(f) = e {
            assert!(f == 1 || f == 2, "EPSV family {f}");
        }
        let text = format_epsv(e);
        assert_eq!(
            parse_epsv_arg(text.as_bytes()),
            Ok(e),
            "EPSV round trip of {text:?}"
        );
    }

    if let Ok(port) = parse_229(data) {
        assert_ne!(port, 0);
        let line = format_229(port);
        assert_printable(&line);
        let text = line
            .strip_prefix("229 ")
            .expect("format_229 starts with the code");
        assert_eq!(
            parse_229(text.as_bytes()),
            Ok(port),
            "229 round trip of {line}"
        );
    }

    if let Ok(u) = parse_user_at_host(data) {
        let at = data
            .iter()
            .rposition(|&b| b == b'@')
            .expect("Ok needs an @");
        assert!(!u.user.is_empty());
        assert_eq!(
            &u.user[..],
            &data[..at],
            "user is not the input up to the last @"
        );
        assert!(!u.host.is_empty(), "empty host from {data:?}");
        assert!(
            !u.host.contains(['@', '[', ']']),
            "host {:?} has @ or brackets",
            u.host
        );
        assert!(u.host.is_ascii(), "non-ASCII host {:?}", u.host);
        assert_ne!(u.port, 0);

        let mut again = u.user.clone();
        again.extend_from_slice(format!("@{}:{}", bracketed(&u.host), u.port).as_bytes());
        assert_eq!(
            parse_user_at_host(&again),
            Ok(u.clone()),
            "user@host round trip via {:?}",
            String::from_utf8_lossy(&again)
        );
    }
}
