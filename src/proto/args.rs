//! Validators for the command arguments ftpgate reads before it forwards a command.
//!
//! The proxy relays most arguments verbatim (STYLE.md pattern 4), but a few change how it
//! handles the session or the data connection, so they are parsed strictly first and a bad
//! one is answered with 501 instead of being passed on:
//!
//! - `REST` (RFC 3659 section 5): in stream mode, the only mode ftpgate relays, the restart
//!   marker is a decimal byte offset, `1*DIGIT`. Signs, spaces and values beyond `u64` are
//!   refused; an overflow is an error, never a wrap.
//! - `TYPE`, `MODE`, `STRU` (RFC 959 sections 4.1.2 and 5.3.2):
//!   `A [SP N|T|C]`, `E [SP N|T|C]`, `I`, `L SP <byte size>`; `S|B|C`; `F|R|P`. Codes are
//!   case-insensitive and separated by exactly one `SP`. The BSD ftpd grammar also accepts
//!   `L8` (no `SP`) and a bare `L`, for the historic BBN client; no current client sends
//!   either (curl, lftp, FileZilla, WinSCP and Python's `ftplib` send only `A` and `I`), so
//!   both are refused here.
//! - `HOST` (RFC 7151 section 3): a DNS name, an IPv4 literal, or an IPv6 literal in square
//!   brackets (section 3.1). A bare IPv6 literal is accepted too, leniently, since it cannot
//!   be mistaken for anything else. Ports, `user@`, spaces and control bytes are refused.
//!
//! Error messages are fixed text and never echo the argument, so a 501 built from one cannot
//! carry a peer's bytes back (SECURITY.md invariant 12).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU8;

/// Why a command argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// The command needs an argument and got none.
    #[error("{0} needs an argument")]
    Missing(&'static str),
    /// The `REST` marker is not a run of ASCII decimal digits.
    #[error("REST marker must be decimal digits only")]
    RestNotDecimal,
    /// The `REST` marker does not fit in 64 bits.
    #[error("REST marker is too large")]
    RestTooLarge,
    /// The `TYPE` argument is not one of `A`, `E` (each with optional `N`, `T` or `C`), `I`
    /// or `L <byte size>`.
    #[error("TYPE must be A, E (optionally followed by N, T or C), I, or L with a byte size")]
    BadType,
    /// The byte size of `TYPE L` is not a decimal number from 1 to 255.
    #[error("TYPE L byte size must be a number from 1 to 255")]
    BadByteSize,
    /// The `MODE` argument is not `S`, `B` or `C`.
    #[error("MODE must be S, B or C")]
    BadMode,
    /// The `STRU` argument is not `F`, `R` or `P`.
    #[error("STRU must be F, R or P")]
    BadStructure,
    /// The `HOST` argument is neither an IP literal nor a valid DNS name; the reason says
    /// which rule it broke.
    #[error("HOST must be a DNS name or an IP address: {0}")]
    BadHost(&'static str),
}

/// Format control for `TYPE A` and `TYPE E` (RFC 959 section 3.1.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatControl {
    /// `N`, the default when none is given.
    NonPrint,
    /// `T`: Telnet format effectors.
    Telnet,
    /// `C`: ASA (Fortran) carriage control.
    Asa,
}

/// A `TYPE` argument (RFC 959 section 3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `A [N|T|C]`: ASCII, with its format control.
    Ascii(FormatControl),
    /// `E [N|T|C]`: EBCDIC, with its format control.
    Ebcdic(FormatControl),
    /// `I`: image (binary).
    Image,
    /// `L <byte size>`: local byte size, 1..=255.
    Local(NonZeroU8),
}

impl TransferType {
    /// Whether the server may rewrite line endings or characters in transit (`A` and `E`);
    /// `I` and `L` move bytes unchanged.
    pub fn is_text(self) -> bool {
        matches!(self, TransferType::Ascii(_) | TransferType::Ebcdic(_))
    }
}

/// A `MODE` argument (RFC 959 section 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `S`
    Stream,
    /// `B`
    Block,
    /// `C`
    Compressed,
}

/// A `STRU` argument (RFC 959 section 3.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Structure {
    /// `F`
    File,
    /// `R`
    Record,
    /// `P`
    Page,
}

/// A `HOST` argument (RFC 7151 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostArg {
    /// An IPv4 literal, or an IPv6 literal with or without brackets, as written (an
    /// IPv4-mapped IPv6 address is not canonicalised here).
    Ip(IpAddr),
    /// A DNS name, case preserved, with its trailing dot if it had one.
    Name(String),
}

/// The longest DNS name, without the optional trailing dot (RFC 1035 section 2.3.4).
const MAX_NAME: usize = 253;
/// The longest DNS label (RFC 1035 section 2.3.4).
const MAX_LABEL: usize = 63;

/// Parses a `REST` marker: one or more ASCII digits, the value a `u64`.
///
/// Leading zeros are allowed (`007` is 7).
pub fn parse_rest(arg: &[u8]) -> Result<u64, ArgError> {
    if arg.is_empty() {
        return Err(ArgError::Missing("REST"));
    }
    arg.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(ArgError::RestNotDecimal);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(ArgError::RestTooLarge)
    })
}

/// Parses a `TYPE` argument (RFC 959 section 5.3.2 `<type-code>`).
pub fn parse_type(arg: &[u8]) -> Result<TransferType, ArgError> {
    let (&code, rest) = arg.split_first().ok_or(ArgError::Missing("TYPE"))?;
    let param = match rest {
        [] => None,
        [b' ', param @ ..] if !param.is_empty() => Some(param),
        _ => return Err(ArgError::BadType),
    };
    match (code.to_ascii_uppercase(), param) {
        (b'A', p) => Ok(TransferType::Ascii(format_control(p)?)),
        (b'E', p) => Ok(TransferType::Ebcdic(format_control(p)?)),
        (b'I', None) => Ok(TransferType::Image),
        (b'L', Some(size)) => byte_size(size).map(TransferType::Local),
        _ => Err(ArgError::BadType),
    }
}

fn format_control(param: Option<&[u8]>) -> Result<FormatControl, ArgError> {
    match param {
        None => Ok(FormatControl::NonPrint),
        Some([c]) => match c.to_ascii_uppercase() {
            b'N' => Ok(FormatControl::NonPrint),
            b'T' => Ok(FormatControl::Telnet),
            b'C' => Ok(FormatControl::Asa),
            _ => Err(ArgError::BadType),
        },
        Some(_) => Err(ArgError::BadType),
    }
}

/// RFC 959 `<byte size>`: a decimal number 1..=255, here 1 to 3 digits (so `008` is 8).
fn byte_size(digits: &[u8]) -> Result<NonZeroU8, ArgError> {
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ArgError::BadByteSize);
    }
    let value = digits
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    u8::try_from(value)
        .ok()
        .and_then(NonZeroU8::new)
        .ok_or(ArgError::BadByteSize)
}

/// Parses a `MODE` argument: exactly one of `S`, `B`, `C`, any case.
pub fn parse_mode(arg: &[u8]) -> Result<Mode, ArgError> {
    match arg {
        [] => Err(ArgError::Missing("MODE")),
        [c] => match c.to_ascii_uppercase() {
            b'S' => Ok(Mode::Stream),
            b'B' => Ok(Mode::Block),
            b'C' => Ok(Mode::Compressed),
            _ => Err(ArgError::BadMode),
        },
        _ => Err(ArgError::BadMode),
    }
}

/// Parses a `STRU` argument: exactly one of `F`, `R`, `P`, any case.
pub fn parse_stru(arg: &[u8]) -> Result<Structure, ArgError> {
    match arg {
        [] => Err(ArgError::Missing("STRU")),
        [c] => match c.to_ascii_uppercase() {
            b'F' => Ok(Structure::File),
            b'R' => Ok(Structure::Record),
            b'P' => Ok(Structure::Page),
            _ => Err(ArgError::BadStructure),
        },
        _ => Err(ArgError::BadStructure),
    }
}

/// Parses a `HOST` argument (RFC 7151 section 3).
///
/// Accepted, in this order: an IPv4 literal (`192.0.2.1`; Rust's parser refuses leading
/// zeros, so `010.0.0.1` is not read as octal); a bracketed IPv6 literal (`[2001:db8::1]`);
/// a bare IPv6 literal (`2001:db8::1`); a DNS name whose labels are 1-63 letters, digits and
/// hyphens, not starting or ending with a hyphen, at most 253 bytes without the optional
/// trailing dot.
///
/// A name whose last label is all digits, or `0x` followed by zero or more hex digits, is refused even
/// though its labels are well-formed: no top-level domain looks like that (RFC 1123 section
/// 2.1), and resolvers built on `inet_aton` read `127.1` or `0x7f000001` as IPv4 addresses,
/// so such a "name" would be an address that escaped the literal checks. This is the URL
/// Standard's "ends in a number" rule.
pub fn parse_host(arg: &[u8]) -> Result<HostArg, ArgError> {
    if arg.is_empty() {
        return Err(ArgError::Missing("HOST"));
    }
    // Everything accepted below is ASCII; checking first keeps `from_utf8` from accepting
    // non-ASCII text that some later rule might miss.
    if !arg.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ArgError::BadHost("spaces, control or non-ASCII bytes"));
    }
    let text = std::str::from_utf8(arg).map_err(|_| ArgError::BadHost("not ASCII"))?;
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Ok(HostArg::Ip(IpAddr::V4(v4)));
    }
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or(ArgError::BadHost("unclosed '['"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|v6| HostArg::Ip(IpAddr::V6(v6)))
            .map_err(|_| ArgError::BadHost("not an IPv6 address inside brackets"));
    }
    if text.contains(':') {
        // A bare IPv6 literal, or a name with a port (`host:21`), which HOST does not take.
        return text
            .parse::<Ipv6Addr>()
            .map(|v6| HostArg::Ip(IpAddr::V6(v6)))
            .map_err(|_| ArgError::BadHost("a port or a malformed IPv6 address"));
    }
    check_name(text)?;
    Ok(HostArg::Name(text.to_owned()))
}

fn check_name(text: &str) -> Result<(), ArgError> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err(ArgError::BadHost("empty name"));
    }
    if name.len() > MAX_NAME {
        return Err(ArgError::BadHost("name longer than 253 bytes"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(ArgError::BadHost("empty label"));
        }
        if label.len() > MAX_LABEL {
            return Err(ArgError::BadHost("label longer than 63 bytes"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ArgError::BadHost(
                "names may hold only letters, digits, hyphens and dots",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ArgError::BadHost("label starts or ends with a hyphen"));
        }
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if ends_in_number(last) {
        return Err(ArgError::BadHost("looks like a malformed IPv4 address"));
    }
    Ok(())
}

/// Whether a label is all digits, or `0x`/`0X` and hex digits (URL Standard, "ends in a
/// number").
fn ends_in_number(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(h) => h.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
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

    fn nz(n: u8) -> NonZeroU8 {
        NonZeroU8::new(n).unwrap()
    }

    #[test]
    fn rest_valid_and_boundaries() {
        assert_eq!(parse_rest(b"0"), Ok(0));
        assert_eq!(parse_rest(b"007"), Ok(7));
        assert_eq!(parse_rest(b"1048576"), Ok(1_048_576));
        assert_eq!(parse_rest(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_rest(b"0000000000000000000000018446744073709551615"),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn rest_invalid() {
        assert_eq!(parse_rest(b""), Err(ArgError::Missing("REST")));
        assert_eq!(
            parse_rest(b"18446744073709551616"),
            Err(ArgError::RestTooLarge)
        );
        assert_eq!(
            parse_rest(b"99999999999999999999"),
            Err(ArgError::RestTooLarge)
        );
        for a in [
            &b"+1"[..],
            b"-1",
            b" 1",
            b"1 ",
            b"1 2",
            b"0x10",
            b"1e3",
            b"1.5",
            b"\xd9\xa1", // ARABIC-INDIC DIGIT ONE
            b"12\0",
        ] {
            assert_eq!(parse_rest(a), Err(ArgError::RestNotDecimal), "{a:?}");
        }
    }

    #[test]
    fn type_valid() {
        use FormatControl::*;
        use TransferType::*;
        for (a, want) in [
            (&b"A"[..], Ascii(NonPrint)),
            (b"a", Ascii(NonPrint)),
            (b"A N", Ascii(NonPrint)),
            (b"A T", Ascii(Telnet)),
            (b"a c", Ascii(Asa)),
            (b"E", Ebcdic(NonPrint)),
            (b"e t", Ebcdic(Telnet)),
            (b"E C", Ebcdic(Asa)),
            (b"I", Image),
            (b"i", Image),
            (b"L 8", Local(nz(8))),
            (b"l 1", Local(nz(1))),
            (b"L 255", Local(nz(255))),
            (b"L 036", Local(nz(36))),
        ] {
            assert_eq!(parse_type(a), Ok(want), "{a:?}");
        }
        assert!(parse_type(b"A").unwrap().is_text());
        assert!(parse_type(b"E C").unwrap().is_text());
        assert!(!parse_type(b"I").unwrap().is_text());
        assert!(!parse_type(b"L 8").unwrap().is_text());
    }

    #[test]
    fn type_invalid() {
        assert_eq!(parse_type(b""), Err(ArgError::Missing("TYPE")));
        for a in [
            &b" "[..],
            b" A",
            b"A ",
            b"A  N",
            b"AN",
            b"A X",
            b"A NT",
            b"A\tN",
            b"I ",
            b"I N",
            b"X",
            b"B",
            b"L",
            b"L8",
            b"L ",
            b"AI",
            b"\xc1",
        ] {
            assert_eq!(parse_type(a), Err(ArgError::BadType), "{a:?}");
        }
        for a in [
            &b"L 0"[..],
            b"L 256",
            b"L 1000",
            b"L -8",
            b"L 8 ",
            b"L x",
            b"L 0008",
        ] {
            assert_eq!(parse_type(a), Err(ArgError::BadByteSize), "{a:?}");
        }
    }

    #[test]
    fn mode_and_stru() {
        assert_eq!(parse_mode(b"S"), Ok(Mode::Stream));
        assert_eq!(parse_mode(b"s"), Ok(Mode::Stream));
        assert_eq!(parse_mode(b"B"), Ok(Mode::Block));
        assert_eq!(parse_mode(b"c"), Ok(Mode::Compressed));
        assert_eq!(parse_mode(b""), Err(ArgError::Missing("MODE")));
        for a in [&b"Z"[..], b"SS", b"S ", b" S", b"F", b"\0"] {
            assert_eq!(parse_mode(a), Err(ArgError::BadMode), "{a:?}");
        }
        assert_eq!(parse_stru(b"F"), Ok(Structure::File));
        assert_eq!(parse_stru(b"r"), Ok(Structure::Record));
        assert_eq!(parse_stru(b"P"), Ok(Structure::Page));
        assert_eq!(parse_stru(b""), Err(ArgError::Missing("STRU")));
        for a in [&b"S"[..], b"FF", b"F ", b" F", b"O"] {
            assert_eq!(parse_stru(a), Err(ArgError::BadStructure), "{a:?}");
        }
    }

    #[test]
    fn host_ip_literals() {
        let ip = |s: &str| HostArg::Ip(s.parse().unwrap());
        assert_eq!(parse_host(b"192.0.2.1"), Ok(ip("192.0.2.1")));
        assert_eq!(parse_host(b"[2001:db8::1]"), Ok(ip("2001:db8::1")));
        assert_eq!(parse_host(b"2001:db8::1"), Ok(ip("2001:db8::1")));
        assert_eq!(
            parse_host(b"[::ffff:192.0.2.1]"),
            Ok(ip("::ffff:192.0.2.1"))
        );
        assert_eq!(parse_host(b"::1"), Ok(ip("::1")));
    }

    #[test]
    fn host_names() {
        let name = |s: &str| HostArg::Name(s.to_owned());
        for s in [
            "ftp.example.com",
            "FTP.Example.COM",
            "ftp.example.com.",
            "localhost",
            "a",
            "x-1.example",
            "1ftp.example",
            "xn--bcher-kva.example",
            "example.com1",
        ] {
            assert_eq!(parse_host(s.as_bytes()), Ok(name(s)), "{s}");
        }
        let label63 = "a".repeat(63);
        assert_eq!(parse_host(label63.as_bytes()), Ok(name(&label63)));
        // 4 labels of 63 and dots: 4 * 63 + 3 = 255; trim to exactly 253.
        let long = format!("{l}.{l}.{l}.{}", &label63[..61], l = label63);
        assert_eq!(long.len(), 253);
        assert_eq!(parse_host(long.as_bytes()), Ok(name(&long)));
        let dotted = format!("{long}.");
        assert_eq!(parse_host(dotted.as_bytes()), Ok(name(&dotted)));
    }

    #[test]
    fn host_invalid() {
        assert_eq!(parse_host(b""), Err(ArgError::Missing("HOST")));
        let label64 = "a".repeat(64);
        let label63 = "a".repeat(63);
        let too_long = format!("{l}.{l}.{l}.{}", &label63[..62], l = label63);
        assert_eq!(too_long.len(), 254);
        for s in [
            " ",
            "ftp example.com",
            " ftp.example.com",
            "ftp.example.com ",
            "ftp.example.com\t",
            "ftp.example.com\r",
            "ftp.example.com\0",
            "user@ftp.example.com",
            "ftp.example.com:21",
            "192.0.2.1:21",
            "[2001:db8::1]:21",
            "[2001:db8::1",
            "2001:db8::1]",
            "[192.0.2.1]",
            "[ftp.example.com]",
            "[]",
            "[fe80::1%eth0]",
            "fe80::1%eth0",
            ".",
            "..",
            ".example.com",
            "ftp..example.com",
            "ftp.example.com..",
            "-ftp.example.com",
            "ftp-.example.com",
            "ftp.-example.com",
            "ftp_1.example.com",
            "ftp.exa*mple.com",
            "ftp/example",
            "b\u{fc}cher.example",
            &label64,
            &format!("{label64}.example"),
            &too_long,
            // Shapes that inet_aton would read as IPv4.
            "127.1",
            "010.0.0.1",
            "192.0.2.1.",
            "192.0.2.256",
            "1.2.3.4.5",
            "2130706433",
            "0x7f000001",
            "0x7f.0.0.1",
            "ftp.example.0x1F",
            "host.0x",
            "ftp.123",
        ] {
            assert!(
                matches!(parse_host(s.as_bytes()), Err(ArgError::BadHost(_))),
                "{s:?} -> {:?}",
                parse_host(s.as_bytes())
            );
        }
    }

    #[test]
    fn errors_never_echo_the_argument() {
        let e = parse_host(b"evil\r\n227 (10,0,0,5,0,22)").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("227") && !msg.contains('\r'), "{msg}");
    }

    proptest! {
        #[test]
        fn never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_rest(&data);
            let _ = parse_type(&data);
            let _ = parse_mode(&data);
            let _ = parse_stru(&data);
            if let Ok(HostArg::Name(n)) = parse_host(&data) {
                prop_assert_eq!(n.as_bytes(), &data[..]);
                prop_assert!(n.len() <= MAX_NAME + 1);
            }
        }

        #[test]
        fn host_shaped_inputs_never_panic(s in "[a-zA-Z0-9.:\\[\\]@%-]{0,80}") {
            if let Ok(HostArg::Name(n)) = parse_host(s.as_bytes()) {
                prop_assert_eq!(n, s);
            }
        }

        #[test]
        fn rest_round_trips(n in any::<u64>()) {
            prop_assert_eq!(parse_rest(n.to_string().as_bytes()), Ok(n));
        }

        #[test]
        fn rest_beyond_u64_is_an_error(extra in 1u128..=u128::from(u64::MAX)) {
            let over = u128::from(u64::MAX) + extra;
            prop_assert_eq!(
                parse_rest(over.to_string().as_bytes()),
                Err(ArgError::RestTooLarge)
            );
        }

        #[test]
        fn rest_longer_digit_strings_are_errors(
            first in 1u8..=9,
            rest in proptest::collection::vec(0u8..=9, 20..60),
        ) {
            let digits: Vec<u8> =
                std::iter::once(first).chain(rest).map(|d| b'0' + d).collect();
            prop_assert_eq!(parse_rest(&digits), Err(ArgError::RestTooLarge));
        }

        #[test]
        fn rest_is_digits_only(data in proptest::collection::vec(any::<u8>(), 1..30)) {
            if parse_rest(&data).is_ok() {
                prop_assert!(data.iter().all(u8::is_ascii_digit));
            }
        }
    }
}
