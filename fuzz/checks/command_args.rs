//! Every validator of `proto/args.rs` on the same arbitrary bytes (one command argument).
//!
//! Invariants checked:
//! - no validator panics; every error renders as fixed, printable, single-line text that
//!   does not echo the argument;
//! - `parse_rest` agrees with a reference model: `Ok(n)` exactly when the argument is one or
//!   more ASCII digits whose value fits a `u64` (leading zeros allowed), with `n` that value;
//!   empty is `Missing`; otherwise the first rule broken, scanning left to right, decides
//!   between `RestNotDecimal` and `RestTooLarge`; `n.to_string()` parses back to `n`;
//! - `parse_type`, `parse_mode`, `parse_stru` agree with reference grammars written from
//!   RFC 959 section 5.3.2 (result and error kind), and each `Ok` value's canonical text
//!   parses back to the same value;
//! - `parse_host` never accepts a byte outside printable ASCII (`0x21..=0x7e`); an accepted
//!   IP literal is the input as written (IPv4 dotted quad, `[v6]` or bare v6, no zone id); an
//!   accepted name is the input unchanged, at most 253 bytes plus an optional trailing dot,
//!   made of 1-63-byte LDH labels without edge hyphens, that no IP parser and no
//!   `inet_aton`-style reader takes as an address; the argument with each IP literal's
//!   canonical text (`[v6]` for IPv6) parses back to the same value.

use ftpgate::proto::args::{
    parse_host, parse_mode, parse_rest, parse_stru, parse_type, ArgError, FormatControl, HostArg,
    Mode, Structure, TransferType,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn check_error(e: &ArgError, data: &[u8]) {
    let msg = e.to_string();
    assert!(
        msg.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "error text not printable: {msg:?}"
    );
    assert!(msg.len() < 200, "error text too long: {msg:?}");
    // Fixed text: an argument with a byte no message has (`@`, `|`, `%`, `#`, `/`, `\`, `"`,
    // control or non-ASCII) never shows up in one.
    let foreign = |b: &u8| b"@|%#/\\\"".contains(b) || !(0x20..0x7f).contains(b);
    if data.len() >= 4 && data.iter().any(foreign) {
        assert!(
            !msg.as_bytes().windows(data.len()).any(|w| w == data),
            "error echoes the argument: {msg:?}"
        );
    }
}

/// REST: scan left to right; the first non-digit or the first overflow decides.
fn reference_rest(data: &[u8]) -> Result<u64, ArgError> {
    if data.is_empty() {
        return Err(ArgError::Missing("REST"));
    }
    let mut value: u128 = 0;
    for &b in data {
        if !b.is_ascii_digit() {
            return Err(ArgError::RestNotDecimal);
        }
        value = value * 10 + u128::from(b - b'0');
        if value > u128::from(u64::MAX) {
            return Err(ArgError::RestTooLarge);
        }
    }
    Ok(u64::try_from(value).expect("checked above"))
}

fn reference_format_control(c: u8) -> Option<FormatControl> {
    match c {
        b'N' | b'n' => Some(FormatControl::NonPrint),
        b'T' | b't' => Some(FormatControl::Telnet),
        b'C' | b'c' => Some(FormatControl::Asa),
        _ => None,
    }
}

/// TYPE, from RFC 959 `<type-code>` with ftpgate's documented restrictions (one SP, `L`
/// needs a byte size of 1 to 3 digits, value 1..=255).
fn reference_type(data: &[u8]) -> Result<TransferType, ArgError> {
    let ascii_or_ebcdic = |fc: FormatControl, code: u8| match code {
        b'A' | b'a' => TransferType::Ascii(fc),
        _ => TransferType::Ebcdic(fc),
    };
    match data {
        [] => Err(ArgError::Missing("TYPE")),
        [c @ (b'A' | b'a' | b'E' | b'e')] => Ok(ascii_or_ebcdic(FormatControl::NonPrint, *c)),
        [c @ (b'A' | b'a' | b'E' | b'e'), b' ', f] => reference_format_control(*f)
            .map(|fc| ascii_or_ebcdic(fc, *c))
            .ok_or(ArgError::BadType),
        [b'I' | b'i'] => Ok(TransferType::Image),
        [b'L' | b'l', b' ', size @ ..] if !size.is_empty() => {
            let digits_ok = size.len() <= 3 && size.iter().all(u8::is_ascii_digit);
            let value: u32 = if digits_ok {
                std::str::from_utf8(size)
                    .expect("digits")
                    .parse()
                    .expect("1-3 digits")
            } else {
                0
            };
            u8::try_from(value)
                .ok()
                .and_then(std::num::NonZeroU8::new)
                .map(TransferType::Local)
                .ok_or(ArgError::BadByteSize)
        }
        _ => Err(ArgError::BadType),
    }
}

fn format_type(t: TransferType) -> String {
    let fc = |f: FormatControl| match f {
        FormatControl::NonPrint => 'N',
        FormatControl::Telnet => 'T',
        FormatControl::Asa => 'C',
    };
    match t {
        TransferType::Ascii(f) => format!("A {}", fc(f)),
        TransferType::Ebcdic(f) => format!("E {}", fc(f)),
        TransferType::Image => "I".to_string(),
        TransferType::Local(n) => format!("L {n}"),
    }
}

fn reference_mode(data: &[u8]) -> Result<Mode, ArgError> {
    match data {
        [] => Err(ArgError::Missing("MODE")),
        [b'S' | b's'] => Ok(Mode::Stream),
        [b'B' | b'b'] => Ok(Mode::Block),
        [b'C' | b'c'] => Ok(Mode::Compressed),
        _ => Err(ArgError::BadMode),
    }
}

fn reference_stru(data: &[u8]) -> Result<Structure, ArgError> {
    match data {
        [] => Err(ArgError::Missing("STRU")),
        [b'F' | b'f'] => Ok(Structure::File),
        [b'R' | b'r'] => Ok(Structure::Record),
        [b'P' | b'p'] => Ok(Structure::Page),
        _ => Err(ArgError::BadStructure),
    }
}

/// One part of an `inet_aton` address: decimal, `0`-prefixed octal or `0x`-prefixed hex
/// (an empty hex part, `0x`, counts as zero, as in glibc).
fn aton_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        (h, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Saturate: any value too large for its place is still "a number" for this check.
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}

/// Whether an `inet_aton`-style reader (1 to 4 numeric parts, optional trailing dot in
/// some resolvers) would see an address in `text`, whatever the range of the parts.
fn aton_like(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    let parts: Vec<&str> = text.split('.').collect();
    (1..=4).contains(&parts.len()) && parts.iter().all(|p| aton_part(p).is_some())
}

fn check_name(name: &str, data: &[u8]) {
    assert_eq!(name.as_bytes(), data, "name is not the input unchanged");
    let bare = name.strip_suffix('.').unwrap_or(name);
    assert!(
        !bare.is_empty() && bare.len() <= 253,
        "name length {}",
        bare.len()
    );
    for label in bare.split('.') {
        assert!((1..=63).contains(&label.len()), "label {label:?} length");
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "label {label:?} is not LDH"
        );
        assert!(
            !label.starts_with('-') && !label.ends_with('-'),
            "label {label:?} has an edge hyphen"
        );
    }
    assert!(name.parse::<IpAddr>().is_err(), "name {name:?} is an IP");
    assert!(
        bare.parse::<IpAddr>().is_err(),
        "name {name:?} is an IP with a dot"
    );
    assert!(
        !aton_like(name),
        "name {name:?} reads as an address to inet_aton"
    );
    // The last label is what decides "ends in a number" (URL Standard).
    let last = bare.rsplit('.').next().expect("split yields one");
    assert!(aton_part(last).is_none(), "last label {last:?} is numeric");
}

fn check_host(data: &[u8]) {
    let got = parse_host(data);
    if let Err(e) = &got {
        check_error(e, data);
        if data.is_empty() {
            assert_eq!(e, &ArgError::Missing("HOST"));
        } else {
            assert!(matches!(e, ArgError::BadHost(_)), "HOST error {e:?}");
        }
        // A dotted-quad literal as Rust reads it is always accepted.
        if let Ok(text) = std::str::from_utf8(data) {
            assert!(text.parse::<Ipv4Addr>().is_err(), "refused IPv4 {text:?}");
            assert!(text.parse::<Ipv6Addr>().is_err(), "refused IPv6 {text:?}");
            if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                assert!(inner.parse::<Ipv6Addr>().is_err(), "refused [v6] {text:?}");
            }
        }
        return;
    }
    let host = got.expect("Ok here");
    assert!(
        data.iter().all(|&b| (0x21..=0x7e).contains(&b)),
        "HOST accepted a byte outside printable ASCII: {data:?}"
    );
    let text = std::str::from_utf8(data).expect("printable ASCII is UTF-8");
    assert!(!text.contains(['@', '%', '/', ' ']), "accepted {text:?}");
    match &host {
        HostArg::Ip(IpAddr::V4(v4)) => {
            assert_eq!(text, v4.to_string(), "IPv4 literal not as written");
        }
        HostArg::Ip(IpAddr::V6(v6)) => {
            let inner = text
                .strip_prefix('[')
                .map(|t| t.strip_suffix(']').expect("bracket closed"))
                .unwrap_or(text);
            assert_eq!(inner.parse::<Ipv6Addr>().ok(), Some(*v6), "IPv6 {text:?}");
            let canonical = format!("[{v6}]");
            assert_eq!(parse_host(canonical.as_bytes()), Ok(host.clone()));
            assert_eq!(parse_host(v6.to_string().as_bytes()), Ok(host.clone()));
        }
        HostArg::Name(name) => check_name(name, data),
    }
    if let HostArg::Ip(IpAddr::V4(v4)) = &host {
        assert_eq!(parse_host(v4.to_string().as_bytes()), Ok(host.clone()));
    }
}

/// The target's whole check: panics when an invariant fails.
pub fn run(data: &[u8]) {
    let rest = parse_rest(data);
    assert_eq!(rest, reference_rest(data), "REST {data:?}");
    match rest {
        Ok(n) => assert_eq!(parse_rest(n.to_string().as_bytes()), Ok(n)),
        Err(e) => check_error(&e, data),
    }

    let ty = parse_type(data);
    assert_eq!(ty, reference_type(data), "TYPE {data:?}");
    match ty {
        Ok(t) => {
            let text = format_type(t);
            assert_eq!(parse_type(text.as_bytes()), Ok(t), "TYPE round trip {text}");
            assert_eq!(
                t.is_text(),
                matches!(t, TransferType::Ascii(_) | TransferType::Ebcdic(_))
            );
        }
        Err(e) => check_error(&e, data),
    }

    let mode = parse_mode(data);
    assert_eq!(mode, reference_mode(data), "MODE {data:?}");
    if let Err(e) = mode {
        check_error(&e, data);
    }

    let stru = parse_stru(data);
    assert_eq!(stru, reference_stru(data), "STRU {data:?}");
    if let Err(e) = stru {
        check_error(&e, data);
    }

    check_host(data);
}
