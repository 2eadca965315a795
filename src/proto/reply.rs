//! Server replies (RFC 959 section 4.2) with bounded multi-line assembly.
//!
//! A reply is a three-digit code whose first digit is 1-5, then `SP` and text (RFC 959
//! section 4.2). A multi-line reply opens with `ddd-` and ends at the first line that starts
//! with the same code followed by `SP` (RFC 959 section 4.2, RFC 1123 section 4.1.2.7); we also
//! accept a bare `ddd` as the end, as some servers send it. Lines in between are text, even
//! when they look like a reply (`227 (...)` inside a `211-` is data, SECURITY.md invariant 1).
//!
//! A hostile server could keep a multi-line reply open forever, so the assembler caps the
//! number of lines and their total size, and forgets everything on error.

use bytes::{Bytes, BytesMut};

use super::line::encode_line;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Each line as received (with its `ddd-`/`ddd ` prefix), Telnet-decoded, without `CRLF`.
    pub lines: Vec<Bytes>,
}

impl Reply {
    /// A single-line reply `"ddd text"`.
    ///
    /// The proxy only builds replies from its own text, but `CR`, `LF` and `NUL` are still
    /// replaced by spaces so an echoed value can never split the reply or smuggle a line.
    /// `code` should be 100..=599; it is not checked because only proxy code calls this.
    pub fn new(code: u16, text: &str) -> Reply {
        let mut line = format!("{code:03} {text}").into_bytes();
        for b in &mut line {
            if matches!(*b, b'\r' | b'\n' | 0) {
                *b = b' ';
            }
        }
        Reply {
            code,
            lines: vec![Bytes::from(line)],
        }
    }

    /// A 1xx (positive preliminary) reply: another reply to the same command follows.
    pub fn is_preliminary(&self) -> bool {
        self.class() == 1
    }

    /// The first digit of the code.
    pub fn class(&self) -> u8 {
        u8::try_from(self.code / 100).unwrap_or(u8::MAX)
    }

    /// The first line after its four-character prefix; empty if the line is just `ddd`.
    pub fn text(&self) -> &[u8] {
        self.lines.first().and_then(|l| l.get(4..)).unwrap_or(&[])
    }

    /// Appends every line, `IAC`-escaped and `CRLF`-terminated.
    pub fn encode(&self, out: &mut BytesMut) {
        for line in &self.lines {
            encode_line(line, out);
        }
    }
}

/// Why a reply could not be assembled. Any of these ends the session (SECURITY.md 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The first line is not `ddd`, `ddd ` or `ddd-` with a first digit of 1-5.
    #[error("malformed reply line")]
    Malformed,
    /// A multi-line reply has more lines than allowed.
    #[error("reply has too many lines")]
    TooManyLines,
    /// A reply's lines add up to more bytes than allowed.
    #[error("reply too large")]
    TooLarge,
}

/// Collects lines into replies, one line at a time.
#[derive(Debug, Clone)]
pub struct ReplyAssembler {
    max_lines: usize,
    max_bytes: usize,
    /// The open multi-line reply, if any.
    pending: Option<Pending>,
}

#[derive(Debug, Clone)]
struct Pending {
    code: u16,
    lines: Vec<Bytes>,
    bytes: usize,
}

/// What the start of a reply line says.
enum Sep {
    /// `ddd ` or a bare `ddd`: a single-line reply, or the end of a multi-line one.
    Last,
    /// `ddd-`: more lines follow.
    More,
}

/// Parses the `ddd` prefix and separator of a line that must start a reply.
fn parse_start(line: &[u8]) -> Option<(u16, Sep)> {
    let (digits, rest) = line.split_at_checked(3)?;
    let [a, b, c] = digits else { return None };
    if !(b'1'..=b'5').contains(a) || !b.is_ascii_digit() || !c.is_ascii_digit() {
        return None;
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    match rest.first() {
        None | Some(b' ') => Some((code, Sep::Last)),
        Some(b'-') => Some((code, Sep::More)),
        Some(_) => None,
    }
}

/// Whether `line` ends the multi-line reply with `code`: same digits, then `SP` or nothing.
fn is_end_line(line: &[u8], code: u16) -> bool {
    matches!(parse_start(line), Some((c, Sep::Last)) if c == code)
}

impl ReplyAssembler {
    /// An assembler that refuses replies of more than `max_lines` lines or `max_bytes` bytes
    /// (the sum of the line lengths, without `CRLF`).
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        ReplyAssembler {
            max_lines,
            max_bytes,
            pending: None,
        }
    }

    /// Whether a multi-line reply is open (useful to tell an EOF mid-reply from a clean one).
    pub fn in_progress(&self) -> bool {
        self.pending.is_some()
    }

    /// Feeds one framed line; returns the reply once it is complete.
    ///
    /// After an error the partial reply is dropped and the next line is treated as the start
    /// of a new reply; the session is expected to close anyway.
    pub fn push(&mut self, line: Bytes) -> Result<Option<Reply>, ReplyError> {
        let Some(mut pending) = self.pending.take() else {
            let (code, sep) = parse_start(&line).ok_or(ReplyError::Malformed)?;
            self.check(1, line.len())?;
            let lines = vec![line];
            return Ok(match sep {
                Sep::Last => Some(Reply { code, lines }),
                Sep::More => {
                    let bytes = lines.iter().map(Bytes::len).sum();
                    self.pending = Some(Pending { code, lines, bytes });
                    None
                }
            });
        };
        // `pending` is taken out of `self`, so every early return below leaves the assembler
        // reset, as documented.
        pending.bytes = pending.bytes.saturating_add(line.len());
        let done = is_end_line(&line, pending.code);
        pending.lines.push(line);
        self.check(pending.lines.len(), pending.bytes)?;
        if done {
            Ok(Some(Reply {
                code: pending.code,
                lines: pending.lines,
            }))
        } else {
            self.pending = Some(pending);
            Ok(None)
        }
    }

    fn check(&self, lines: usize, bytes: usize) -> Result<(), ReplyError> {
        if lines > self.max_lines {
            Err(ReplyError::TooManyLines)
        } else if bytes > self.max_bytes {
            Err(ReplyError::TooLarge)
        } else {
            Ok(())
        }
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

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn single_line_reply() {
        let mut a = ReplyAssembler::new(10, 1000);
        let r = a.push(b(b"220 Welcome")).unwrap().unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(r.class(), 2);
        assert!(!r.is_preliminary());
        assert_eq!(r.text(), b"Welcome");
        let r = a.push(b(b"150")).unwrap().unwrap();
        assert!(r.is_preliminary());
        assert_eq!(r.text(), b"");
    }

    #[test]
    fn multi_line_reply_with_embedded_227_is_one_reply() {
        let mut a = ReplyAssembler::new(10, 1000);
        assert_eq!(a.push(b(b"211-Features:")).unwrap(), None);
        assert!(a.in_progress());
        assert_eq!(a.push(b(b"227 (10,0,0,5,0,22)")).unwrap(), None);
        assert_eq!(
            a.push(b(b" 211 not the end (leading space)")).unwrap(),
            None
        );
        assert_eq!(a.push(b(b"211-still not the end")).unwrap(), None);
        assert_eq!(a.push(b(b"2110 nor this")).unwrap(), None);
        assert_eq!(a.push(b(b"")).unwrap(), None);
        let r = a.push(b(b"211 End")).unwrap().unwrap();
        assert_eq!(r.code, 211);
        assert_eq!(r.lines.len(), 7);
        assert_eq!(r.text(), b"Features:");
        assert_eq!(&r.lines[1][..], b"227 (10,0,0,5,0,22)");
        assert!(!a.in_progress());
    }

    #[test]
    fn bare_code_ends_multi_line() {
        let mut a = ReplyAssembler::new(10, 1000);
        assert_eq!(a.push(b(b"230-hello")).unwrap(), None);
        let r = a.push(b(b"230")).unwrap().unwrap();
        assert_eq!(r.lines.len(), 2);
    }

    #[test]
    fn malformed_first_lines() {
        for l in [
            &b""[..],
            b"22 x",
            b"2200 x",
            b"600 x",
            b"000 x",
            b"099 x",
            b"abc x",
            b"2a0 x",
            b" 220 x",
            b"220x",
            b"220\tx",
            b"220\xffx",
        ] {
            let mut a = ReplyAssembler::new(10, 1000);
            assert_eq!(a.push(b(l)), Err(ReplyError::Malformed), "{l:?}");
        }
    }

    #[test]
    fn too_many_lines_and_reset() {
        let mut a = ReplyAssembler::new(100, 1_000_000);
        let mut err = None;
        assert_eq!(a.push(b(b"250-start")).unwrap(), None);
        for i in 0..1000 {
            match a.push(b(format!(" line {i}").as_bytes())) {
                Ok(None) => {}
                Ok(Some(r)) => panic!("unexpected reply {r:?}"),
                Err(e) => {
                    err = Some((i, e));
                    break;
                }
            }
        }
        // 1 opening line + 99 text lines fit; the 100th text line is line 101.
        assert_eq!(err, Some((99, ReplyError::TooManyLines)));
        assert!(!a.in_progress());
        // Reset: the next line is a fresh first line.
        assert_eq!(a.push(b(b"200 ok")).unwrap().unwrap().code, 200);
    }

    #[test]
    fn exactly_max_lines_fits() {
        let mut a = ReplyAssembler::new(3, 1000);
        assert_eq!(a.push(b(b"211-a")).unwrap(), None);
        assert_eq!(a.push(b(b"b")).unwrap(), None);
        assert_eq!(a.push(b(b"211 c")).unwrap().unwrap().lines.len(), 3);
        let mut a = ReplyAssembler::new(0, 1000);
        assert_eq!(a.push(b(b"200 x")), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn too_large_and_reset() {
        let mut a = ReplyAssembler::new(100, 20);
        assert_eq!(a.push(b(b"211-0123456789")).unwrap(), None);
        assert_eq!(a.push(b(b"01234")).unwrap(), None);
        assert_eq!(a.push(b(b"211 x")), Err(ReplyError::TooLarge));
        assert!(!a.in_progress());
        assert_eq!(
            a.push(b(b"200 0123456789012345678")),
            Err(ReplyError::TooLarge)
        );
        // Exactly max_bytes fits.
        assert_eq!(
            a.push(b(b"200 0123456789012345")).unwrap().unwrap().code,
            200
        );
    }

    #[test]
    fn many_preliminary_replies_are_separate() {
        // Capping 150 floods is the session's job; the assembler must not merge them.
        let mut a = ReplyAssembler::new(4, 100);
        for _ in 0..10 {
            assert_eq!(a.push(b(b"150 ok")).unwrap().unwrap().code, 150);
        }
    }

    #[test]
    fn new_and_encode() {
        let r = Reply::new(421, "Service not available");
        assert_eq!(r.lines, vec![b(b"421 Service not available")]);
        assert_eq!(r.text(), b"Service not available");
        let r = Reply::new(501, "bad\r\nPORT 1\0");
        assert_eq!(r.lines, vec![b(b"501 bad  PORT 1 ")]);
        let mut out = BytesMut::new();
        Reply {
            code: 211,
            lines: vec![b(b"211-a\xff"), b(b"211 end")],
        }
        .encode(&mut out);
        assert_eq!(&out[..], b"211-a\xff\xff\r\n211 end\r\n");
    }

    proptest! {
        #[test]
        fn push_never_panics(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..20),
            max_lines in 0usize..8,
            max_bytes in 0usize..64,
        ) {
            let mut a = ReplyAssembler::new(max_lines, max_bytes);
            for l in lines {
                if let Ok(Some(r)) = a.push(Bytes::from(l)) {
                    prop_assert!((100..600).contains(&r.code));
                    prop_assert!(r.lines.len() <= max_lines);
                    prop_assert!(r.lines.iter().map(Bytes::len).sum::<usize>() <= max_bytes);
                    let _ = r.text();
                }
            }
        }
    }
}
