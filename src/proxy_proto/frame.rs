//! How many bytes a PROXY protocol header (v1 or v2, haproxy's proxy-protocol.txt) at the
//! start of a connection still needs, and what it declares once whole. Pure: the reader
//! ([`super::read`]) asks for exactly the bytes this says are missing, so it never reads
//! a byte of what follows the header. Parsing itself is the `ppp` crate's.

use std::net::SocketAddr;

/// The v2 signature (12 bytes), then version/command, family/protocol, a 16-bit length.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;
/// v1's longest header: "PROXY TCP6 " + two full IPv6 addresses and ports + CRLF.
pub const V1_MAX: usize = 107;
/// A cap on v2 headers with their TLVs: addresses take at most 216 bytes; what a
/// balancer adds (AWS, Azure and GCP TLVs, SSL information) fits easily.
pub const V2_MAX: usize = 2048;

/// What the peer's header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// A proxied TCP connection from `source` to `destination`.
    Proxy {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The balancer's own connection (a health check): nothing to relay.
    Local,
    /// v1 `UNKNOWN` or v2 unspecified family: the spec says to use the connection's own
    /// addresses.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("PROXY protocol header longer than {0} bytes")]
    TooLong(usize),
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY protocol header for a transport other than TCP")]
    NotTcp,
    #[error("no complete PROXY protocol header before the deadline")]
    Timeout,
    #[error("connection closed inside the PROXY protocol header")]
    Truncated,
}

/// The state of a header read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Need {
    /// Read at least one byte and at most this many more.
    More(usize),
    /// `buf` holds the whole header, exactly.
    Done,
}

/// How many more bytes the header in `buf` (the connection's first bytes, and nothing
/// but header bytes) needs. An error as soon as the bytes cannot start a header.
pub fn need(buf: &[u8]) -> Result<Need, HeaderError> {
    let Some(&first) = buf.first() else {
        return Ok(Need::More(1));
    };
    match first {
        b'P' => {
            if !b"PROXY ".starts_with(&buf[..buf.len().min(6)]) {
                return Err(HeaderError::Missing);
            }
            if buf.ends_with(b"\r\n") {
                return Ok(Need::Done);
            }
            if buf.len() >= V1_MAX {
                return Err(HeaderError::TooLong(V1_MAX));
            }
            // v1 ends at CRLF: one byte at a time, so nothing after it is read.
            Ok(Need::More(1))
        }
        b'\r' => {
            let sig = buf.len().min(V2_SIGNATURE.len());
            if buf[..sig] != V2_SIGNATURE[..sig] {
                return Err(HeaderError::Missing);
            }
            if buf.len() < V2_FIXED {
                return Ok(Need::More(V2_FIXED - buf.len()));
            }
            let total = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            if total > V2_MAX {
                return Err(HeaderError::TooLong(V2_MAX));
            }
            match total.checked_sub(buf.len()) {
                Some(0) => Ok(Need::Done),
                Some(n) => Ok(Need::More(n)),
                None => Err(HeaderError::Malformed(
                    "longer than its length field".into(),
                )),
            }
        }
        _ => Err(HeaderError::Missing),
    }
}

/// What a whole header (as [`need`] delimited it) declares.
pub fn parse(header: &[u8]) -> Result<Declared, HeaderError> {
    if header.first() == Some(&b'P') {
        let text = std::str::from_utf8(header)
            .map_err(|_| HeaderError::Malformed("v1 header is not text".into()))?;
        let h = ppp::v1::Header::try_from(text)
            .map_err(|e| HeaderError::Malformed(format!("v1: {e}")))?;
        if h.header.len() != header.len() {
            return Err(HeaderError::Malformed("v1 header length".into()));
        }
        return Ok(match h.addresses {
            ppp::v1::Addresses::Unknown => Declared::Unknown,
            ppp::v1::Addresses::Tcp4(a) => Declared::Proxy {
                source: SocketAddr::from((a.source_address, a.source_port)),
                destination: SocketAddr::from((a.destination_address, a.destination_port)),
            },
            ppp::v1::Addresses::Tcp6(a) => Declared::Proxy {
                source: SocketAddr::from((a.source_address, a.source_port)),
                destination: SocketAddr::from((a.destination_address, a.destination_port)),
            },
        });
    }
    let h = ppp::v2::Header::try_from(header)
        .map_err(|e| HeaderError::Malformed(format!("v2: {e}")))?;
    if h.len() != header.len() {
        return Err(HeaderError::Malformed("v2 header length".into()));
    }
    // TLVs are ignored, but a malformed TLV area is a malformed header.
    if h.tlvs().any(|t| t.is_err()) {
        return Err(HeaderError::Malformed("v2 TLVs".into()));
    }
    if h.command == ppp::v2::Command::Local {
        return Ok(Declared::Local);
    }
    let stream = h.protocol == ppp::v2::Protocol::Stream;
    match h.addresses {
        ppp::v2::Addresses::IPv4(a) if stream => Ok(Declared::Proxy {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        ppp::v2::Addresses::IPv6(a) if stream => Ok(Declared::Proxy {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        ppp::v2::Addresses::Unspecified => Ok(Declared::Unknown),
        _ => Err(HeaderError::NotTcp),
    }
}

/// Feeds `input` as the reader does (exactly the bytes [`need`] asks for); returns the
/// outcome and how many bytes were taken. For tests and the fuzz checks.
pub fn tests_drive(input: &[u8]) -> (Result<Declared, HeaderError>, usize) {
    let mut buf = Vec::new();
    loop {
        match need(&buf) {
            Err(e) => return (Err(e), buf.len()),
            Ok(Need::Done) => return (parse(&buf), buf.len()),
            Ok(Need::More(n)) => {
                let take = n.max(1).min(input.len() - buf.len());
                if take == 0 {
                    return (Err(HeaderError::Truncated), buf.len());
                }
                buf.extend_from_slice(&input[buf.len()..buf.len() + take]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tests_drive as drive;

    fn v2(command: ppp::v2::Command, addrs: (SocketAddr, SocketAddr), tlv: bool) -> Vec<u8> {
        let mut b = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | command,
            ppp::v2::Protocol::Stream,
            addrs,
        );
        if tlv {
            b = b
                .write_tlv(ppp::v2::Type::Authority, b"ftp.example")
                .unwrap();
        }
        b.build().unwrap()
    }

    const SRC: &str = "192.0.2.7:40000";
    const DST: &str = "198.51.100.1:21";

    #[test]
    fn v1_and_v2_declare_the_client_and_stop_at_the_header() {
        let (src, dst) = (SRC.parse().unwrap(), DST.parse().unwrap());
        let want = Declared::Proxy {
            source: src,
            destination: dst,
        };
        let mut v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 21\r\n".to_vec();
        let len = v1.len();
        v1.extend_from_slice(b"USER x\r\n");
        assert_eq!(drive(&v1), (Ok(want), len));
        let mut h = v2(ppp::v2::Command::Proxy, (src, dst), true);
        let len = h.len();
        h.extend_from_slice(b"\x16\x03\x01 TLS after the header");
        assert_eq!(drive(&h), (Ok(want), len));
        let six: (SocketAddr, SocketAddr) = (
            "[2001:db8::7]:40000".parse().unwrap(),
            "[2001:db8::1]:21".parse().unwrap(),
        );
        let h = v2(ppp::v2::Command::Proxy, six, false);
        assert_eq!(
            drive(&h).0,
            Ok(Declared::Proxy {
                source: six.0,
                destination: six.1
            })
        );
        let v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 21\r\n";
        assert_eq!(drive(v1).0.unwrap(), drive(&h).0.unwrap());
    }

    #[test]
    fn local_unknown_and_refusals() {
        let (src, dst): (SocketAddr, SocketAddr) = (SRC.parse().unwrap(), DST.parse().unwrap());
        assert_eq!(
            drive(&v2(ppp::v2::Command::Local, (src, dst), false)).0,
            Ok(Declared::Local)
        );
        assert_eq!(drive(b"PROXY UNKNOWN\r\n").0, Ok(Declared::Unknown));
        // One byte tells: the connection is closed anyway.
        assert_eq!(drive(b"USER anonymous\r\n"), (Err(HeaderError::Missing), 1));
        assert_eq!(drive(b"PROXZ TCP4").0, Err(HeaderError::Missing));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert_eq!(
            drive(long.as_bytes()),
            (Err(HeaderError::TooLong(V1_MAX)), V1_MAX)
        );
        assert!(matches!(
            drive(b"PROXY TCP4 192.0.2.7 nonsense 1 2\r\n").0,
            Err(HeaderError::Malformed(_))
        ));
        assert_eq!(
            drive(b"PROXY TCP4 192.0.2.7").0,
            Err(HeaderError::Truncated)
        );
        // A v2 length beyond the cap is refused before its bytes are read.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(drive(&big), (Err(HeaderError::TooLong(V2_MAX)), 16));
    }
}
