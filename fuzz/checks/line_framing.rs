//! `LineCodec` on arbitrary bytes, fed in arbitrary chunks.
//!
//! Input layout (see fuzz/README.md):
//!   byte 0      the line cap `max_len`: 0..=15 as is, 16..=255 mapped onto 16..=4096
//!   byte 1      n = number of chunk-size bytes (taken mod 17, clipped to what is left)
//!   next n      chunk sizes, used cyclically: s < 0x80 means s bytes, else (s & 0x7f) * 32
//!   the rest    the payload, the bytes "received" from the peer
//!
//! Invariants checked:
//! - chunking does not matter: the frames from the chunked feed equal those of one feed of
//!   the whole payload (both finished with `decode_eof` like `FramedRead` does);
//! - both equal an independent reference framer written from the module's documented rules
//!   (LF ends a line, one CR before it is stripped, cap counted before Telnet decoding,
//!   bare CR / NUL / other IAC sequences reject the line, a partial line at EOF is dropped;
//!   a stream whose first byte is 0x16, a TLS handshake record, or that starts like a
//!   PROXY header, `PROXY ` or the v2 signature's first five bytes, is refused whole);
//! - exactly one frame per LF in the payload (one in all for a refused stream);
//! - no `Frame::Line` contains CR, LF or NUL, or is longer than `max_len`;
//! - the decoder never returns an error;
//! - after each drain the buffered bytes are at most `max_len + 1` (or the 5 bytes of a
//!   stream start that may still become `PROXY `), and `decode_eof`
//!   leaves the buffer empty;
//! - every line survives `encode_line` + decode unchanged.

use bytes::{Bytes, BytesMut};
use ftpgate::proto::line::{encode_line, Frame, LineCodec, LineError};
use tokio_util::codec::Decoder;

const IAC: u8 = 0xFF;
const TLS_HANDSHAKE: u8 = 0x16;
const MAX_CHUNK_SPECS: usize = 16;
const PROXY_V1: &[u8] = b"PROXY ";
const PROXY_V2: &[u8] = b"\r\n\r\n\0";

/// The refusal of a stream as a whole, decided by how it starts.
fn refused_stream(payload: &[u8]) -> Option<LineError> {
    if payload.first() == Some(&TLS_HANDSHAKE) {
        Some(LineError::TlsRecord)
    } else if payload.starts_with(PROXY_V1) || payload.starts_with(PROXY_V2) {
        Some(LineError::ProxyHeader)
    } else {
        None
    }
}

fn cap_from_byte(b: u8) -> usize {
    let b = usize::from(b);
    if b < 16 {
        b
    } else {
        // Quadratic, so small caps (where lines overflow often) get most of the range.
        let x = b - 16; // 0..=239
        16 + x * x * (4096 - 16) / (239 * 239)
    }
}

fn chunk_len(spec: u8) -> usize {
    if spec < 0x80 {
        usize::from(spec)
    } else {
        usize::from(spec & 0x7f) * 32
    }
}

/// Decodes until the codec wants more bytes; checks the buffer bound afterwards.
fn drain(codec: &mut LineCodec, buf: &mut BytesMut, out: &mut Vec<Frame>) {
    loop {
        match codec.decode(buf) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => break,
            Err(e) => panic!("decode returned an error: {e}"),
        }
    }
    // The start of a stream that may still become `PROXY ` is held whatever the cap.
    let bound = codec.max_len().saturating_add(1).max(PROXY_V1.len() - 1);
    assert!(
        buf.len() <= bound,
        "buffer holds {} bytes with max_len {}",
        buf.len(),
        codec.max_len()
    );
}

/// End of stream, as `FramedRead` does it: `decode_eof` until it returns `None`.
fn finish(codec: &mut LineCodec, buf: &mut BytesMut, out: &mut Vec<Frame>) {
    loop {
        match codec.decode_eof(buf) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => break,
            Err(e) => panic!("decode_eof returned an error: {e}"),
        }
    }
    assert!(buf.is_empty(), "decode_eof left {} bytes", buf.len());
}

fn whole_feed(max_len: usize, payload: &[u8]) -> Vec<Frame> {
    let mut codec = LineCodec::new(max_len);
    let mut buf = BytesMut::from(payload);
    let mut out = Vec::new();
    drain(&mut codec, &mut buf, &mut out);
    finish(&mut codec, &mut buf, &mut out);
    out
}

fn chunked_feed(max_len: usize, specs: &[u8], payload: &[u8]) -> Vec<Frame> {
    let mut codec = LineCodec::new(max_len);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = payload;
    let lens: Vec<usize> = specs.iter().map(|&s| chunk_len(s)).collect();
    if lens.iter().any(|&l| l > 0) {
        // Zero-length chunks are kept: decoding again with no new bytes must be harmless.
        for &len in lens.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, r) = rest.split_at(len.min(rest.len()));
            rest = r;
            buf.extend_from_slice(chunk);
            drain(&mut codec, &mut buf, &mut out);
        }
    } else {
        buf.extend_from_slice(rest);
        drain(&mut codec, &mut buf, &mut out);
    }
    finish(&mut codec, &mut buf, &mut out);
    out
}

/// The framing rules of `proto/line.rs`, written independently of its implementation.
fn reference(max_len: usize, payload: &[u8]) -> Vec<Frame> {
    if let Some(why) = refused_stream(payload) {
        return vec![Frame::Rejected(why)];
    }
    let mut out = Vec::new();
    let mut rest = payload;
    while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
        let mut line = &rest[..pos];
        rest = &rest[pos + 1..];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.len() > max_len {
            out.push(Frame::Rejected(LineError::TooLong));
        } else {
            out.push(reference_content(line));
        }
    }
    // A trailing partial line is dropped at EOF.
    out
}

fn reference_content(line: &[u8]) -> Frame {
    let mut decoded = Vec::with_capacity(line.len());
    let mut it = line.iter().copied();
    while let Some(b) = it.next() {
        match b {
            b'\r' => return Frame::Rejected(LineError::BareCr),
            0 => return Frame::Rejected(LineError::Nul),
            IAC => match it.next() {
                Some(IAC) => decoded.push(IAC),
                Some(0xF4 | 0xF2 | 0xF1) => {} // IP, DM, NOP
                _ => return Frame::Rejected(LineError::Telnet),
            },
            _ => decoded.push(b),
        }
    }
    Frame::Line(Bytes::from(decoded))
}

/// The target's whole check: panics when an invariant fails.
pub fn run(data: &[u8]) {
    let Some((&cap_byte, rest)) = data.split_first() else {
        return;
    };
    let max_len = cap_from_byte(cap_byte);
    let (n, rest) = match rest.split_first() {
        Some((&n, rest)) => (usize::from(n) % (MAX_CHUNK_SPECS + 1), rest),
        None => (0, rest),
    };
    let (specs, payload) = rest.split_at(n.min(rest.len()));

    let whole = whole_feed(max_len, payload);
    let chunked = chunked_feed(max_len, specs, payload);
    assert_eq!(chunked, whole, "chunked feed differs from a single feed");
    assert_eq!(
        whole,
        reference(max_len, payload),
        "codec differs from the reference"
    );

    let lfs = payload.iter().filter(|&&b| b == b'\n').count();
    if refused_stream(payload).is_some() {
        assert_eq!(whole.len(), 1, "one refusal for a refused stream");
    } else {
        assert_eq!(whole.len(), lfs, "one frame per LF");
    }

    for frame in &whole {
        let Frame::Line(line) = frame else { continue };
        assert!(
            !line.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
            "line contains CR/LF/NUL: {line:?}"
        );
        assert!(
            line.len() <= max_len,
            "line of {} > cap {max_len}",
            line.len()
        );

        let mut wire = BytesMut::new();
        encode_line(line, &mut wire);
        assert!(wire.ends_with(b"\r\n"));
        let again = whole_feed(wire.len(), &wire);
        // A line of its own that starts with 0x16 or `PROXY ` is, as a whole stream, refused.
        let want = match refused_stream(&wire) {
            Some(why) => Frame::Rejected(why),
            None => frame.clone(),
        };
        assert_eq!(again, vec![want], "encode_line round trip");
    }
}
