//! Data-connection address encodings.
//!
//! - RFC 959 section 4.1.2: `PORT h1,h2,h3,h4,p1,p2` and the `227` reply to `PASV`; RFC 1123
//!   section 4.1.2.6 says a client must find the numbers in a 227 by scanning for the first
//!   digit, since servers word the text differently.
//! - RFC 2428: `EPRT <d>af<d>addr<d>port<d>`, `EPSV [af|ALL]` and the `229` reply
//!   `(<d><d><d>port<d>)`.
//!
//! The parsers are strict on purpose: these fields decide where the proxy opens a socket, so a
//! lenient parser is how `256` becomes port 0 or `0256` becomes 256 (the FTP bounce family,
//! SECURITY.md). No signs, no empty fields, no blanks inside fields, at most three digits per
//! PORT field and five per port, no trailing fields. The parsers only decode; whether an
//! address is acceptable (equal to the control peer, not loopback, port >= 1024) is policy,
//! decided by the session.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// Why an address argument or reply was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The text does not have the required shape.
    #[error("malformed address syntax")]
    Syntax,
    /// A number is well-formed but out of range (a PORT field > 255, a port > 65535).
    #[error("address field out of range")]
    FieldRange,
    /// An RFC 2428 address family other than 1 (IPv4) or 2 (IPv6).
    #[error("unsupported network protocol {0}")]
    UnsupportedFamily(u8),
    /// The address text does not parse as an address of the stated family.
    #[error("bad network address")]
    BadAddress,
    /// Port 0.
    #[error("port 0")]
    ZeroPort,
}

/// The argument of `EPSV` (RFC 2428 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: any family the server likes.
    Any,
    /// `EPSV <af>`: 1 = IPv4, 2 = IPv6.
    Family(u8),
    /// `EPSV ALL`: from now on only EPSV may set up data connections.
    All,
}

/// Reads a run of 1..=`max_digits` ASCII digits at the start of `s`; returns the value and
/// the rest. A longer run is a syntax error, not a bigger number (strictness, see module docs).
fn take_number(s: &[u8], max_digits: usize) -> Result<(u32, &[u8]), AddrError> {
    let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > max_digits {
        return Err(AddrError::Syntax);
    }
    let (digits, rest) = s.split_at(len);
    let value = digits
        .iter()
        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    Ok((value, rest))
}

/// Parses `h1,h2,h3,h4,p1,p2` at the start of `s`; returns the address and the rest.
fn take_six(s: &[u8]) -> Result<(SocketAddrV4, &[u8]), AddrError> {
    let mut fields = [0u8; 6];
    let mut rest = s;
    for (i, field) in fields.iter_mut().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(b",").ok_or(AddrError::Syntax)?;
        }
        let (value, r) = take_number(rest, 3)?;
        *field = u8::try_from(value).map_err(|_| AddrError::FieldRange)?;
        rest = r;
    }
    let [h1, h2, h3, h4, p1, p2] = fields;
    let port = u16::from_be_bytes([p1, p2]);
    if port == 0 {
        return Err(AddrError::ZeroPort);
    }
    Ok((SocketAddrV4::new(Ipv4Addr::new(h1, h2, h3, h4), port), rest))
}

/// Parses a `PORT` argument `h1,h2,h3,h4,p1,p2` (RFC 959 section 4.1.2).
///
/// Spaces around the whole argument are tolerated (some clients send them); nothing else is.
pub fn parse_port_arg(arg: &[u8]) -> Result<SocketAddrV4, AddrError> {
    let arg = trim_spaces(arg);
    let (addr, rest) = take_six(arg)?;
    if !rest.is_empty() {
        return Err(AddrError::Syntax);
    }
    Ok(addr)
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let Some(r) = s.strip_prefix(b" ") {
        s = r;
    }
    while let Some(r) = s.strip_suffix(b" ") {
        s = r;
    }
    s
}

fn six_fields(addr: SocketAddrV4) -> String {
    let [h1, h2, h3, h4] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("{h1},{h2},{h3},{h4},{p1},{p2}")
}

/// Formats a `PORT` argument, e.g. `"192,0,2,1,195,80"`.
pub fn format_port_arg(addr: SocketAddrV4) -> String {
    six_fields(addr)
}

/// Parses a decimal port of 1..=5 digits in 1..=65535.
fn parse_port_number(s: &[u8]) -> Result<u16, AddrError> {
    let (value, rest) = take_number(s, 5)?;
    if !rest.is_empty() {
        return Err(AddrError::Syntax);
    }
    match u16::try_from(value) {
        Ok(0) => Err(AddrError::ZeroPort),
        Ok(port) => Ok(port),
        Err(_) => Err(AddrError::FieldRange),
    }
}

/// Parses an RFC 2428 address family number (digits only); 1..=3 digits, at most 255.
fn parse_family(s: &[u8]) -> Result<u8, AddrError> {
    let (value, rest) = take_number(s, 3)?;
    if !rest.is_empty() {
        return Err(AddrError::Syntax);
    }
    u8::try_from(value).map_err(|_| AddrError::Syntax)
}

/// Parses an `EPRT` argument `<d>af<d>addr<d>port<d>` (RFC 2428 section 2).
///
/// `d` is any byte in 33..=126 and must be the same four times. The address must parse for
/// its family: `|2|192.0.2.1|...` is [`AddrError::BadAddress`], zone ids are refused. An
/// IPv4-mapped IPv6 address under family 2 is returned as IPv6; use [`canonical_ip`] before
/// comparing it with a control address. No surrounding spaces are tolerated.
pub fn parse_eprt_arg(arg: &[u8]) -> Result<SocketAddr, AddrError> {
    let (&d, body) = arg.split_first().ok_or(AddrError::Syntax)?;
    if !(33..=126).contains(&d) {
        return Err(AddrError::Syntax);
    }
    let mut parts = body.split(|&b| b == d);
    let (Some(af), Some(addr), Some(port), Some(b""), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(AddrError::Syntax);
    };
    let family = parse_family(af)?;
    let addr = std::str::from_utf8(addr).map_err(|_| AddrError::BadAddress)?;
    let ip = match family {
        1 => IpAddr::V4(
            addr.parse::<Ipv4Addr>()
                .map_err(|_| AddrError::BadAddress)?,
        ),
        2 => IpAddr::V6(
            addr.parse::<Ipv6Addr>()
                .map_err(|_| AddrError::BadAddress)?,
        ),
        other => return Err(AddrError::UnsupportedFamily(other)),
    };
    let port = parse_port_number(port)?;
    Ok(SocketAddr::new(ip, port))
}

/// Formats an `EPRT` argument, e.g. `"|1|192.0.2.1|5000|"` or `"|2|2001:db8::1|5000|"`.
///
/// The IPv6 scope id, if any, is not sent: it means nothing to the peer.
pub fn format_eprt_arg(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("|1|{}|{}|", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("|2|{}|{}|", a.ip(), a.port()),
    }
}

/// Parses an `EPSV` argument (RFC 2428 section 3): empty, a family number, or `ALL`.
pub fn parse_epsv_arg(arg: &[u8]) -> Result<EpsvArg, AddrError> {
    if arg.is_empty() {
        return Ok(EpsvArg::Any);
    }
    if arg.eq_ignore_ascii_case(b"ALL") {
        return Ok(EpsvArg::All);
    }
    match parse_family(arg)? {
        f @ (1 | 2) => Ok(EpsvArg::Family(f)),
        other => Err(AddrError::UnsupportedFamily(other)),
    }
}

/// Parses the text of a `227` reply (after `"227 "`).
///
/// Per RFC 1123 section 4.1.2.6 the numbers start at the first digit, wherever it is, so
/// `Entering Passive Mode (h1,...,p2).`, `=h1,...,p2` and bare `h1,...,p2` all work. After the
/// sixth field anything but another digit or comma may follow (`).`, text); a seventh field is
/// refused rather than ignored.
pub fn parse_227(text: &[u8]) -> Result<SocketAddrV4, AddrError> {
    let start = text
        .iter()
        .position(u8::is_ascii_digit)
        .ok_or(AddrError::Syntax)?;
    let (addr, rest) = take_six(text.get(start..).unwrap_or(&[]))?;
    match rest.first() {
        Some(b) if b.is_ascii_digit() || *b == b',' => Err(AddrError::Syntax),
        _ => Ok(addr),
    }
}

/// Formats a full 227 reply line (no `CRLF`):
/// `"227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)."`.
pub fn format_227(addr: SocketAddrV4) -> String {
    format!("227 Entering Passive Mode ({}).", six_fields(addr))
}

/// Parses the text of a `229` reply (after `"229 "`): the port in `(<d><d><d>port<d>)`.
///
/// The first `(` starts the field; text around it is free. The delimiter must be the same all
/// four times and may not be a digit (a digit would make the port's end ambiguous).
pub fn parse_229(text: &[u8]) -> Result<u16, AddrError> {
    let open = text
        .iter()
        .position(|&b| b == b'(')
        .ok_or(AddrError::Syntax)?;
    let field = text.get(open + 1..).unwrap_or(&[]);
    let [d, d2, d3, port @ ..] = field else {
        return Err(AddrError::Syntax);
    };
    let d = *d;
    if !(33..=126).contains(&d) || d.is_ascii_digit() || *d2 != d || *d3 != d {
        return Err(AddrError::Syntax);
    }
    let (value, rest) = take_number(port, 5)?;
    if rest.first() != Some(&d) || rest.get(1) != Some(&b')') {
        return Err(AddrError::Syntax);
    }
    match u16::try_from(value) {
        Ok(0) => Err(AddrError::ZeroPort),
        Ok(port) => Ok(port),
        Err(_) => Err(AddrError::FieldRange),
    }
}

/// Formats a full 229 reply line (no `CRLF`):
/// `"229 Entering Extended Passive Mode (|||port|)"`.
pub fn format_229(port: u16) -> String {
    format!("229 Entering Extended Passive Mode (|||{port}|)")
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4; anything else is unchanged.
///
/// A dual-stack listener reports IPv4 peers as mapped addresses, so comparisons between a
/// control peer and a PORT/EPRT target must canonicalise both sides first. IPv4-compatible
/// addresses (`::a.b.c.d`, deprecated) are deliberately left as IPv6.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port)
    }

    #[test]
    fn port_arg_ok() {
        assert_eq!(
            parse_port_arg(b"192,0,2,10,4,1"),
            Ok(v4(192, 0, 2, 10, 1025))
        );
        assert_eq!(
            parse_port_arg(b"  192,0,2,10,4,1 "),
            Ok(v4(192, 0, 2, 10, 1025))
        );
        assert_eq!(parse_port_arg(b"001,0,2,10,0,1"), Ok(v4(1, 0, 2, 10, 1)));
        assert_eq!(format_port_arg(v4(192, 0, 2, 1, 50000)), "192,0,2,1,195,80");
    }

    #[test]
    fn port_arg_hostile() {
        use AddrError::*;
        for (arg, err) in [
            (&b"192,0,2,10,256,22"[..], FieldRange),
            (b"192,0,2,10,0,256", FieldRange),
            (b"999,0,2,10,4,1", FieldRange),
            (b"192,0,2,10,0256,22", Syntax),
            (b"000000001,0,2,10,4,1", Syntax),
            (b"192,0,2,10,4", Syntax),
            (b"192,0,2,10,4,1,7", Syntax),
            (b"192,0,2,10,4,1x", Syntax),
            (b"192,0,2,10,4,1\t", Syntax),
            (b"192,0,2,10,4,", Syntax),
            (b"192,,2,10,4,1", Syntax),
            (b"+192,0,2,10,4,1", Syntax),
            (b"192,-0,2,10,4,1", Syntax),
            (b"192, 0,2,10,4,1", Syntax),
            (b"192 ,0,2,10,4,1", Syntax),
            (b"(192,0,2,10,4,1)", Syntax),
            (b"", Syntax),
            (b"192,0,2,10,0,0", ZeroPort),
        ] {
            assert_eq!(parse_port_arg(arg), Err(err), "{arg:?}");
        }
    }

    #[test]
    fn eprt_ok() {
        assert_eq!(
            parse_eprt_arg(b"|1|192.0.2.1|5000|"),
            Ok("192.0.2.1:5000".parse().unwrap())
        );
        assert_eq!(
            parse_eprt_arg(b"|2|2001:db8::1|5000|"),
            Ok("[2001:db8::1]:5000".parse().unwrap())
        );
        assert_eq!(
            parse_eprt_arg(b"!1!192.0.2.1!65535!"),
            Ok("192.0.2.1:65535".parse().unwrap())
        );
        assert_eq!(
            parse_eprt_arg(b"|2|::ffff:192.0.2.1|5000|"),
            Ok("[::ffff:192.0.2.1]:5000".parse().unwrap())
        );
        assert_eq!(
            format_eprt_arg("192.0.2.1:5000".parse().unwrap()),
            "|1|192.0.2.1|5000|"
        );
        assert_eq!(
            format_eprt_arg("[2001:db8::1]:5000".parse().unwrap()),
            "|2|2001:db8::1|5000|"
        );
    }

    #[test]
    fn eprt_hostile() {
        use AddrError::*;
        for (arg, err) in [
            (&b"|2|192.0.2.1|5000|"[..], BadAddress),
            (b"|1|2001:db8::1|5000|", BadAddress),
            (b"|1|192.0.2.01|5000|", BadAddress),
            (b"|1|192.0.2.1 |5000|", BadAddress),
            (b"|2|fe80::1%eth0|5000|", BadAddress),
            (b"|1|\xff|5000|", BadAddress),
            (b"|3|192.0.2.1|5000|", UnsupportedFamily(3)),
            (b"|0|192.0.2.1|5000|", UnsupportedFamily(0)),
            (b"|1|192.0.2.1|0|", ZeroPort),
            (b"|1|192.0.2.1|65536|", FieldRange),
            (b"|1|192.0.2.1|000001|", Syntax),
            (b"|1|192.0.2.1|+500|", Syntax),
            (b"|1|192.0.2.1||", Syntax),
            (b"|1|192.0.2.1|5000", Syntax),
            (b"|1|192.0.2.1|5000|x", Syntax),
            (b"|1|192.0.2.1|5000||", Syntax),
            (b"|1|192.0.2.1!5000|", Syntax),
            (b" |1|192.0.2.1|5000|", Syntax),
            (b"|x|192.0.2.1|5000|", Syntax),
            (b"||192.0.2.1|5000|", Syntax),
            (b"|1000|192.0.2.1|5000|", Syntax),
            (b"", Syntax),
        ] {
            assert_eq!(parse_eprt_arg(arg), Err(err), "{arg:?}");
        }
    }

    #[test]
    fn epsv_args() {
        assert_eq!(parse_epsv_arg(b""), Ok(EpsvArg::Any));
        assert_eq!(parse_epsv_arg(b"1"), Ok(EpsvArg::Family(1)));
        assert_eq!(parse_epsv_arg(b"2"), Ok(EpsvArg::Family(2)));
        assert_eq!(parse_epsv_arg(b"all"), Ok(EpsvArg::All));
        assert_eq!(parse_epsv_arg(b"ALL"), Ok(EpsvArg::All));
        assert_eq!(parse_epsv_arg(b"3"), Err(AddrError::UnsupportedFamily(3)));
        for bad in [&b"ALLX"[..], b" 1", b"1 ", b"-1", b"x", b"1000"] {
            assert_eq!(parse_epsv_arg(bad), Err(AddrError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn reply_227() {
        let want = Ok(v4(10, 0, 0, 5, 1025));
        assert_eq!(parse_227(b"Entering Passive Mode (10,0,0,5,4,1)."), want);
        assert_eq!(parse_227(b"Entering Passive Mode (10,0,0,5,4,1)"), want);
        assert_eq!(parse_227(b"=10,0,0,5,4,1"), want);
        assert_eq!(parse_227(b"10,0,0,5,4,1"), want);
        assert_eq!(
            format_227(v4(192, 0, 2, 1, 50000)),
            "227 Entering Passive Mode (192,0,2,1,195,80)."
        );
        use AddrError::*;
        for (text, err) in [
            (&b"Entering Passive Mode"[..], Syntax),
            (b"(10,0,0,5,4,1,7)", Syntax),
            (b"(10,0,0,5,4,1000)", Syntax),
            (b"(10,0,0,5,4)", Syntax),
            (b"(10,0,0,5, 4,1)", Syntax),
            (b"(10,0,0,5,256,22)", FieldRange),
            (b"(10,0,0,5,0,0)", ZeroPort),
            (b"", Syntax),
        ] {
            assert_eq!(parse_227(text), Err(err), "{text:?}");
        }
    }

    #[test]
    fn reply_229() {
        assert_eq!(
            parse_229(b"Entering Extended Passive Mode (|||6446|)"),
            Ok(6446)
        );
        assert_eq!(
            parse_229(b"Entering Extended Passive Mode (!!!6446!)."),
            Ok(6446)
        );
        assert_eq!(
            format_229(6446),
            "229 Entering Extended Passive Mode (|||6446|)"
        );
        use AddrError::*;
        for (text, err) in [
            (&b"Entering Extended Passive Mode |||6446|"[..], Syntax),
            (b"(||6446|)", Syntax),
            (b"(|!|6446|)", Syntax),
            (b"(|||6446!)", Syntax),
            (b"(|||6446|", Syntax),
            (b"(|||6446)", Syntax),
            (b"(||||)", Syntax),
            (b"(|||+6446|)", Syntax),
            (b"(|||000006446|)", Syntax),
            (b"(111644461)", Syntax),
            (b"(|||65536|)", FieldRange),
            (b"(|||0|)", ZeroPort),
            (b"(", Syntax),
        ] {
            assert_eq!(parse_229(text), Err(err), "{text:?}");
        }
    }

    #[test]
    fn canonical() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
        for s in ["2001:db8::1", "::1", "::192.0.2.1", "192.0.2.1"] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(canonical_ip(ip), ip, "{s}");
        }
    }

    proptest! {
        #[test]
        fn port_round_trip(ip in any::<[u8; 4]>(), port in 1u16..) {
            let a = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            prop_assert_eq!(parse_port_arg(format_port_arg(a).as_bytes()), Ok(a));
        }

        #[test]
        fn pasv_227_round_trip(ip in any::<[u8; 4]>(), port in 1u16..) {
            let a = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            let line = format_227(a);
            let text = line.strip_prefix("227 ").unwrap();
            prop_assert_eq!(parse_227(text.as_bytes()), Ok(a));
        }

        #[test]
        fn eprt_v4_round_trip(ip in any::<[u8; 4]>(), port in 1u16..) {
            let a = SocketAddr::new(IpAddr::from(ip), port);
            prop_assert_eq!(parse_eprt_arg(format_eprt_arg(a).as_bytes()), Ok(a));
        }

        #[test]
        fn eprt_v6_round_trip(ip in any::<[u8; 16]>(), port in 1u16..) {
            let a = SocketAddr::new(IpAddr::from(ip), port);
            prop_assert_eq!(parse_eprt_arg(format_eprt_arg(a).as_bytes()), Ok(a));
        }

        #[test]
        fn epsv_229_round_trip(port in 1u16..) {
            let line = format_229(port);
            let text = line.strip_prefix("229 ").unwrap();
            prop_assert_eq!(parse_229(text.as_bytes()), Ok(port));
        }

        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_port_arg(&data);
            let _ = parse_eprt_arg(&data);
            let _ = parse_epsv_arg(&data);
            let _ = parse_227(&data);
            let _ = parse_229(&data);
        }

        #[test]
        fn parsers_never_panic_on_near_misses(
            data in proptest::collection::vec(
                prop_oneof![
                    Just(b'|'), Just(b','), Just(b'('), Just(b')'), Just(b'.'), Just(b':'),
                    (b'0'..=b'9'), Just(b' '), any::<u8>(),
                ],
                0..40,
            )
        ) {
            let _ = parse_port_arg(&data);
            let _ = parse_eprt_arg(&data);
            let _ = parse_epsv_arg(&data);
            let _ = parse_227(&data);
            let _ = parse_229(&data);
        }
    }
}
