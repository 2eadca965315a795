//! Bounded line framing with Telnet handling, used for both legs of the control connection.
//!
//! RFC 959 section 4 says the control connection speaks the Telnet protocol (RFC 854) and that
//! commands and replies end with `CRLF`. RFC 1123 section 4.1.2.12 asks us to tolerate peers
//! that send bare `LF`, so `LF` ends a line and a single `CR` right before it is stripped.
//!
//! The framing is deliberately strict because it sits in front of untrusted peers on both
//! sides (see SECURITY.md invariants 2 and 7):
//!
//! - a `CR` left inside a line, or a `NUL`, rejects that line: they are the raw material of
//!   command smuggling and of truncation tricks in downstream C parsers;
//! - Telnet: `IAC IAC` is the data byte `0xFF`; `IAC IP`, `IAC DM` and `IAC NOP` are dropped,
//!   because clients send `IAC IP IAC DM ABOR` (RFC 959 section 4.1.3) and we want the `ABOR`;
//!   any other `IAC` sequence (option negotiation, a lone `IAC`) rejects the line: an FTP
//!   proxy has no Telnet options to negotiate, and passing them on would let a peer speak to
//!   the other side in a language we do not police;
//! - a line longer than the cap is never split into two lines (that is how an overlong line
//!   turns into a second, unchecked command). It is discarded up to its `LF`, with memory
//!   bounded by the cap rather than by the line, and reported once as [`LineError::TooLong`].
//!
//! Partial lines live only in the caller's `BytesMut` (the codec keeps nothing but a scan
//! offset and a flag), so a `select!` that drops a pending read loses no bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Telnet "interpret as command" (RFC 854).
const IAC: u8 = 0xFF;
/// Telnet Interrupt Process.
const IP: u8 = 0xF4;
/// Telnet Data Mark (the tail of the Synch sequence).
const DM: u8 = 0xF2;
/// Telnet No Operation.
const NOP: u8 = 0xF1;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// The start of a PROXY v1 header.
const PROXY_V1_START: &[u8] = b"PROXY ";
/// The first five bytes of the v2 signature: two empty lines and a NUL, which no FTP
/// client sends first.
const PROXY_V2_START: &[u8] = crate::proxy_proto::frame::V2_SIGNATURE
    .as_slice()
    .split_at(5)
    .0;

/// One framed line, or the reason it was refused.
///
/// A refused line is a value, not a decoder error: the session answers it (500) and carries
/// on, and the stream stays in sync because the refused line was consumed up to its `LF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Line content without `CR`/`LF`, Telnet already decoded.
    Line(Bytes),
    /// The line was consumed and dropped for this reason.
    Rejected(LineError),
}

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line (before Telnet decoding, without its `CRLF`) exceeded the cap.
    #[error("line too long")]
    TooLong,
    /// A `CR` not directly followed by the line's `LF`.
    #[error("bare CR in line")]
    BareCr,
    /// A `NUL` byte in the line.
    #[error("NUL in line")]
    Nul,
    /// A Telnet sequence other than `IAC IAC`, `IAC IP`, `IAC DM`, `IAC NOP`.
    #[error("unsupported Telnet sequence")]
    Telnet,
    /// The stream began with a TLS handshake record: a peer speaking implicit FTPS to a
    /// plaintext control connection. Everything after it is dropped.
    #[error("TLS handshake on a plaintext control connection")]
    TlsRecord,
    /// The stream began with a PROXY protocol header (v1 `PROXY ` or the v2 signature)
    /// from a peer that is not a trusted balancer. Everything after it is dropped.
    #[error("PROXY protocol header from an untrusted peer")]
    ProxyHeader,
}

/// Decoder for LF-terminated lines with a hard length cap.
///
/// The length counted against `max_len` is the raw line without its `LF` and without the one
/// `CR` right before it, before Telnet decoding (so `IAC IAC` counts as two bytes).
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_len: usize,
    /// How far into the buffer we already know there is no `LF`, so a slowly arriving line
    /// is scanned once rather than once per read.
    next_index: usize,
    /// We are inside an overlong line and drop everything up to its `LF`.
    discarding: bool,
    /// Some byte was seen: the TLS check applies to the first byte only.
    started: bool,
    /// The stream began with TLS or a PROXY header: nothing more is framed.
    tls_seen: bool,
}

impl LineCodec {
    /// A codec that refuses lines longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        LineCodec {
            max_len,
            next_index: 0,
            discarding: false,
            started: false,
            tls_seen: false,
        }
    }

    /// The configured cap.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Checks the start of the stream, once. `Some` is what `decode` returns now: a refusal,
    /// or `None` while the bytes so far could still become a PROXY header (so how the
    /// stream is split into reads never changes the outcome). `None` means frame lines.
    fn first_bytes(&mut self, src: &mut BytesMut, eof: bool) -> Option<Option<Frame>> {
        // 0x16 (SYN) starts no FTP line; a TLS ClientHello (or ServerHello) carries no
        // LF to end a line, so waiting for one would hang until a timeout.
        if src.first() == Some(&TLS_HANDSHAKE) {
            return Some(Some(self.refuse_stream(src, LineError::TlsRecord)));
        }
        // A client speaks only after the greeting; a PROXY header is a balancer's, and
        // an untrusted one must not name the client (SECURITY.md: no spoofed source).
        let signatures: [&[u8]; 2] = [PROXY_V1_START, PROXY_V2_START];
        if signatures.iter().any(|sig| src.starts_with(sig)) {
            return Some(Some(self.refuse_stream(src, LineError::ProxyHeader)));
        }
        if !eof && signatures.iter().any(|sig| sig.starts_with(src)) {
            return Some(None);
        }
        self.started = true;
        None
    }

    fn refuse_stream(&mut self, src: &mut BytesMut, why: LineError) -> Frame {
        src.clear();
        self.started = true;
        self.tls_seen = true;
        Frame::Rejected(why)
    }

    fn reset(&mut self) {
        self.next_index = 0;
        self.discarding = false;
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if self.tls_seen {
            src.clear();
            return Ok(None);
        }
        if !self.started && !src.is_empty() {
            if let Some(frame) = self.first_bytes(src, false) {
                return Ok(frame);
            }
        }
        if self.discarding {
            return Ok(match find_lf(src, 0) {
                Some(pos) => {
                    src.advance(pos + 1);
                    self.reset();
                    Some(Frame::Rejected(LineError::TooLong))
                }
                None => {
                    // Nothing of an overlong line is worth keeping.
                    src.clear();
                    None
                }
            });
        }

        let Some(pos) = find_lf(src, self.next_index) else {
            // max_len content bytes plus the CR that may precede the LF still to come; one byte
            // more and the line is too long whatever follows, so stop buffering it.
            if src.len() > self.max_len.saturating_add(1) {
                src.clear();
                self.next_index = 0;
                self.discarding = true;
            } else {
                self.next_index = src.len();
            }
            return Ok(None);
        };

        self.next_index = 0;
        let mut raw = src.split_to(pos + 1);
        raw.truncate(pos);
        if raw.last() == Some(&b'\r') {
            raw.truncate(raw.len() - 1);
        }
        if raw.len() > self.max_len {
            return Ok(Some(Frame::Rejected(LineError::TooLong)));
        }
        Ok(Some(decode_content(raw)))
    }

    /// A peer that closes mid-line has not sent a command or reply; the partial line is
    /// dropped without an error so the session sees a clean EOF.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if !self.started && !src.is_empty() {
            if let Some(frame) = self.first_bytes(src, true) {
                return Ok(frame);
            }
        }
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                src.clear();
                self.reset();
                Ok(None)
            }
        }
    }
}

fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    buf.get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|off| from + off)
}

/// Checks and Telnet-decodes one line whose `CRLF` is already stripped.
///
/// Scans left to right; the first offending byte decides the error. The common case (no
/// `IAC`) returns the original buffer without copying.
fn decode_content(raw: BytesMut) -> Frame {
    let mut out: Option<BytesMut> = None;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'\r' => return Frame::Rejected(LineError::BareCr),
            0 => return Frame::Rejected(LineError::Nul),
            IAC => {
                let out = out.get_or_insert_with(|| {
                    let mut o = BytesMut::with_capacity(raw.len());
                    o.extend_from_slice(raw.get(..i).unwrap_or(&[]));
                    o
                });
                match raw.get(i + 1) {
                    Some(&IAC) => out.put_u8(IAC),
                    Some(&(IP | DM | NOP)) => {}
                    _ => return Frame::Rejected(LineError::Telnet),
                }
                i += 2;
                continue;
            }
            _ => {
                if let Some(out) = out.as_mut() {
                    out.put_u8(b);
                }
            }
        }
        i += 1;
    }
    Frame::Line(match out {
        Some(out) => out.freeze(),
        None => raw.freeze(),
    })
}

/// Appends `line` with every `0xFF` doubled (`IAC IAC`, RFC 854) and a `CRLF`.
///
/// `line` must not contain `CR` or `LF`; lines decoded by [`LineCodec`] never do, and lines
/// the proxy builds itself must not either. They are not filtered here because silently
/// changing a path would be worse than the caller's bug being visible in tests.
pub fn encode_line(line: &[u8], out: &mut BytesMut) {
    out.reserve(line.len() + 2);
    for chunk in line.split_inclusive(|&b| b == IAC) {
        out.extend_from_slice(chunk);
        if chunk.last() == Some(&IAC) {
            out.put_u8(IAC);
        }
    }
    out.extend_from_slice(b"\r\n");
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

    fn all_frames(codec: &mut LineCodec, buf: &mut BytesMut) -> Vec<Frame> {
        let mut v = Vec::new();
        while let Some(f) = codec.decode(buf).unwrap() {
            v.push(f);
        }
        v
    }

    fn frames(max: usize, input: &[u8]) -> Vec<Frame> {
        let mut c = LineCodec::new(max);
        let mut buf = BytesMut::from(input);
        let mut v = all_frames(&mut c, &mut buf);
        while let Some(f) = c.decode_eof(&mut buf).unwrap() {
            v.push(f);
        }
        v
    }

    fn line(s: &[u8]) -> Frame {
        Frame::Line(Bytes::copy_from_slice(s))
    }

    #[test]
    fn crlf_and_lf_end_lines() {
        assert_eq!(
            frames(64, b"USER a\r\nPASS b\nNOOP\r\n"),
            vec![line(b"USER a"), line(b"PASS b"), line(b"NOOP")]
        );
    }

    #[test]
    fn empty_lines_are_lines() {
        assert_eq!(frames(64, b"\r\n\n"), vec![line(b""), line(b"")]);
    }

    #[test]
    fn two_commands_in_one_buffer_are_two_frames() {
        assert_eq!(
            frames(512, b"AUTH TLS\r\nPORT 192,0,2,10,4,1\r\n"),
            vec![line(b"AUTH TLS"), line(b"PORT 192,0,2,10,4,1")]
        );
    }

    #[test]
    fn overlong_line_is_rejected_whole_then_next_line_works() {
        let mut input = vec![b'A'; 10_000];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(
            frames(512, &input),
            vec![Frame::Rejected(LineError::TooLong), line(b"NOOP")]
        );
    }

    #[test]
    fn overlong_line_memory_stays_bounded() {
        let mut c = LineCodec::new(16);
        let mut buf = BytesMut::new();
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'A'; 100]);
            assert_eq!(c.decode(&mut buf).unwrap(), None);
            assert!(buf.len() <= 17, "buffer grew to {}", buf.len());
        }
        buf.extend_from_slice(b"AAA\r\nNOOP\r\n");
        assert_eq!(
            all_frames(&mut c, &mut buf),
            vec![Frame::Rejected(LineError::TooLong), line(b"NOOP")]
        );
    }

    #[test]
    fn length_cap_is_inclusive_and_ignores_crlf() {
        assert_eq!(frames(4, b"ABCD\r\n"), vec![line(b"ABCD")]);
        assert_eq!(frames(4, b"ABCD\n"), vec![line(b"ABCD")]);
        assert_eq!(
            frames(4, b"ABCDE\r\n"),
            vec![Frame::Rejected(LineError::TooLong)]
        );
        // Counted before Telnet decoding: IAC IAC is two bytes on the wire.
        assert_eq!(
            frames(4, b"AB\xff\xff\xff\xff\r\n"),
            vec![Frame::Rejected(LineError::TooLong)]
        );
    }

    #[test]
    fn cr_lf_split_across_reads() {
        let mut c = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"ABCD\r"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(line(b"ABCD")));
    }

    #[test]
    fn bare_cr_is_rejected() {
        assert_eq!(
            frames(64, b"RETR a\rDELE b\r\nNOOP\r\n"),
            vec![Frame::Rejected(LineError::BareCr), line(b"NOOP")]
        );
        // Only one CR is stripped.
        assert_eq!(
            frames(64, b"NOOP\r\r\n"),
            vec![Frame::Rejected(LineError::BareCr)]
        );
    }

    #[test]
    fn nul_is_rejected() {
        assert_eq!(
            frames(64, b"RETR a\0b\r\n"),
            vec![Frame::Rejected(LineError::Nul)]
        );
    }

    #[test]
    fn telnet_iac_iac_is_ff() {
        assert_eq!(frames(64, b"RETR \xff\xffx\r\n"), vec![line(b"RETR \xffx")]);
    }

    #[test]
    fn telnet_ip_dm_before_abor_is_consumed() {
        assert_eq!(frames(64, b"\xff\xf4\xff\xf2ABOR\r\n"), vec![line(b"ABOR")]);
        assert_eq!(frames(64, b"NO\xff\xf1OP\r\n"), vec![line(b"NOOP")]);
    }

    #[test]
    fn telnet_negotiation_is_rejected() {
        // IAC WILL ECHO, IAC DO x, IAC SB, lone IAC at end of line, IAC before CRLF.
        for input in [
            &b"\xff\xfb\x01NOOP\r\n"[..],
            b"NOOP\xff\xfdx\r\n",
            b"\xff\xfa\x18\x01\xff\xf0\r\n",
            b"NOOP\xff\r\n",
            b"NOOP\xff\n",
        ] {
            assert_eq!(
                frames(64, input),
                vec![Frame::Rejected(LineError::Telnet)],
                "{input:?}"
            );
        }
    }

    #[test]
    fn first_offending_byte_decides() {
        assert_eq!(
            frames(64, b"a\0b\rc\r\n"),
            vec![Frame::Rejected(LineError::Nul)]
        );
        assert_eq!(
            frames(64, b"a\rb\0c\r\n"),
            vec![Frame::Rejected(LineError::BareCr)]
        );
    }

    #[test]
    fn partial_line_at_eof_is_dropped_without_error() {
        assert_eq!(frames(64, b"NOOP\r\nQUI"), vec![line(b"NOOP")]);
        let mut c = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"AAAAAAAAAAAAAAAA"[..]);
        assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_escapes_iac_and_appends_crlf() {
        let mut out = BytesMut::new();
        encode_line(b"a\xffb\xff", &mut out);
        assert_eq!(&out[..], b"a\xff\xffb\xff\xff\r\n");
    }

    #[test]
    fn error_display_is_short_text() {
        assert_eq!(LineError::TooLong.to_string(), "line too long");
    }

    /// Bytes that matter to the framer, so random streams hit every branch often.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(b'\n'),
            Just(b'\r'),
            Just(0u8),
            Just(IAC),
            Just(IP),
            Just(DM),
            Just(NOP),
            Just(0xFBu8),
            Just(b'A'),
            any::<u8>(),
        ]
    }

    #[test]
    fn a_stream_opening_with_a_tls_record_is_refused_without_waiting_for_lf() {
        let mut c = LineCodec::new(512);
        let mut buf = BytesMut::from(&b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..]);
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Frame::Rejected(LineError::TlsRecord))
        );
        buf.extend_from_slice(b"USER a\r\n");
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            None,
            "nothing after TLS is framed"
        );
        // Only the stream's first byte counts: 0x16 later in a line is an ordinary byte.
        let mut c = LineCodec::new(512);
        let mut buf = BytesMut::from(&b"NOOP\r\n\x16A\r\n"[..]);
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Frame::Line(Bytes::from_static(b"NOOP")))
        );
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(Frame::Line(Bytes::from_static(b"\x16A")))
        );
    }

    proptest! {
        #[test]
        fn framing_is_independent_of_chunking(
            data in proptest::collection::vec(interesting_byte(), 0..200),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
            max in 0usize..12,
        ) {
            let whole = frames(max, &data);

            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.push(data.len());
            points.sort_unstable();
            let mut c = LineCodec::new(max);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut prev = 0;
            for p in points {
                buf.extend_from_slice(&data[prev..p]);
                prev = p;
                got.extend(all_frames(&mut c, &mut buf));
            }
            while let Some(f) = c.decode_eof(&mut buf).unwrap() {
                got.push(f);
            }
            prop_assert_eq!(got, whole);
        }

        #[test]
        fn encode_then_decode_round_trips(
            line_bytes in proptest::collection::vec(
                any::<u8>().prop_filter("no CR/LF/NUL", |b| !matches!(b, b'\r' | b'\n' | 0)),
                0..100,
            )
        ) {
            let mut buf = BytesMut::new();
            encode_line(&line_bytes, &mut buf);
            let got = frames(1000, &buf);
            // A stream opening with a TLS record is refused whole (implicit FTPS).
            let want = if line_bytes.first() == Some(&TLS_HANDSHAKE) {
                Frame::Rejected(LineError::TlsRecord)
            } else {
                Frame::Line(Bytes::from(line_bytes))
            };
            prop_assert_eq!(got, vec![want]);
        }

        #[test]
        fn buffered_bytes_stay_bounded(
            data in proptest::collection::vec(interesting_byte(), 0..400),
            max in 0usize..12,
        ) {
            // Feed one byte at a time: after each decode round the codec may hold at most
            // the cap plus a trailing CR plus the byte that tipped it over, or the five
            // bytes of a stream start that may still become `PROXY `.
            let mut c = LineCodec::new(max);
            let mut buf = BytesMut::new();
            for b in data {
                buf.put_u8(b);
                let _ = all_frames(&mut c, &mut buf);
                prop_assert!(buf.len() <= (max + 1).max(PROXY_V1_START.len() - 1));
            }
        }
    }
}
