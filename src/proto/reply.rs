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
//!
//! Every reply the assembler completes is safe to relay as it stands (SECURITY.md invariant
//! 12): an inner line that a lax client could take for a final reply gets one leading `SP`,
//! as RFC 959 section 4.2 asks servers to do for text lines that begin with digits. See
//! [`ReplyAssembler::push`] for the exact rule.

use bytes::{BufMut, Bytes, BytesMut};

use super::line::encode_line;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Each line as received (with its `ddd-`/`ddd ` prefix), Telnet-decoded, without `CRLF`;
    /// in an assembled reply, inner lines that could read as a reply have a leading `SP`
    /// (see [`ReplyAssembler::push`]).
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

/// Whether an inner line of a multi-line reply could be read as a reply line of its own:
/// three ASCII digits (any, not only a valid code) followed by anything but `-`, or nothing.
///
/// The strict reading (`ddd SP` or a bare `ddd`, RFC 959 section 4.2) is what curl checks,
/// but lax parsers go further: Python's `ftplib` ends a multi-line reply at any line that
/// starts with the code and whose fourth byte is not `-`, so `2110 text` would end a `211`
/// and everything after it would be read as the reply to the next command. Padding every
/// `ddd` + non-`-` line covers both readings.
///
/// `ddd-` lines are left alone: many servers (ProFTPD, Pure-FTPd, IIS banners) repeat
/// `ddd-` on every inner line, no client reads such a line as a final reply, and it could
/// only be taken for the start of a new reply by a client already out of step, which this
/// padding is there to prevent.
fn could_read_as_reply(line: &[u8]) -> bool {
    match line {
        [a, b, c, rest @ ..] => {
            a.is_ascii_digit()
                && b.is_ascii_digit()
                && c.is_ascii_digit()
                && rest.first() != Some(&b'-')
        }
        _ => false,
    }
}

/// `line` with one `SP` in front.
fn pad(line: &[u8]) -> Bytes {
    let mut padded = BytesMut::with_capacity(line.len() + 1);
    padded.put_u8(b' ');
    padded.extend_from_slice(line);
    padded.freeze()
}

impl ReplyAssembler {
    /// An assembler that refuses replies of more than `max_lines` lines or `max_bytes` bytes
    /// (the sum of the line lengths as relayed, padding included, without `CRLF`).
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
    ///
    /// Inner lines (neither the first nor the end line of a multi-line reply) that start
    /// with three ASCII digits followed by anything but `-`, or by nothing, are stored with
    /// one leading `SP`. The first and end lines, and every other inner line, are kept byte
    /// for byte; no line is dropped or reordered.
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
        let done = is_end_line(&line, pending.code);
        // Neutralised here, not in the session, so that every consumer of assembled replies
        // (the session relay, the health checker, anything added later) gets lines that are
        // safe to relay: text inside a multi-line reply must never read as a final reply or
        // as a 227/229 to a client that parses more loosely than we do (SECURITY.md
        // invariants 1 and 12). The caps count the padded line, so an assembled reply never
        // exceeds `max_bytes` as relayed.
        let line = if !done && could_read_as_reply(&line) {
            pad(&line)
        } else {
            line
        };
        pending.bytes = pending.bytes.saturating_add(line.len());
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
        // Inner lines that could read as a reply are padded; the others are untouched.
        assert_eq!(&r.lines[1][..], b" 227 (10,0,0,5,0,22)");
        assert_eq!(&r.lines[2][..], b" 211 not the end (leading space)");
        assert_eq!(&r.lines[3][..], b"211-still not the end");
        assert_eq!(&r.lines[4][..], b" 2110 nor this");
        assert_eq!(&r.lines[5][..], b"");
        assert_eq!(&r.lines[6][..], b"211 End");
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

    #[test]
    fn inner_lines_that_read_as_replies_are_padded() {
        let mut a = ReplyAssembler::new(20, 1000);
        let inner: [(&[u8], &[u8]); 14] = [
            (
                b"227 Entering Passive Mode (10,0,0,5,0,22)",
                b" 227 Entering Passive Mode (10,0,0,5,0,22)",
            ),
            (b"229 (|||22|)", b" 229 (|||22|)"),
            (b"226", b" 226"),
            (b"200 ", b" 200 "),
            (b"099 not a code but digits", b" 099 not a code but digits"),
            (b"999", b" 999"),
            (b"2270", b" 2270"),
            (b"227x", b" 227x"),
            (b"211\xff", b" 211\xff"),
            (b"227-legal continuation", b"227-legal continuation"),
            (b"211-same code continuation", b"211-same code continuation"),
            (b"22 two digits", b"22 two digits"),
            (b"a227 text", b"a227 text"),
            (b" 227 already padded", b" 227 already padded"),
        ];
        assert_eq!(a.push(b(b"211-Status")).unwrap(), None);
        for (line, _) in inner {
            assert_eq!(a.push(b(line)).unwrap(), None, "{line:?}");
        }
        let r = a.push(b(b"211 End")).unwrap().unwrap();
        assert_eq!(r.lines.len(), inner.len() + 2);
        assert_eq!(&r.lines[0][..], b"211-Status");
        assert_eq!(&r.lines[r.lines.len() - 1][..], b"211 End");
        for (got, (_, want)) in r.lines[1..].iter().zip(inner) {
            assert_eq!(&got[..], want);
        }
    }

    #[test]
    fn single_lines_and_end_lines_are_not_padded() {
        let mut a = ReplyAssembler::new(10, 1000);
        assert_eq!(
            &a.push(b(b"227 (1,2,3,4,5,6)")).unwrap().unwrap().lines[0][..],
            b"227 (1,2,3,4,5,6)"
        );
        assert_eq!(a.push(b(b"230-hi")).unwrap(), None);
        let r = a.push(b(b"230")).unwrap().unwrap();
        assert_eq!(r.lines, vec![b(b"230-hi"), b(b"230")]);
    }

    #[test]
    fn padding_counts_towards_max_bytes() {
        // "211-a" (5) + "227" (3) + "211" (3) = 11 as received, 12 as relayed.
        let mut a = ReplyAssembler::new(10, 11);
        assert_eq!(a.push(b(b"211-a")).unwrap(), None);
        assert_eq!(a.push(b(b"227")).unwrap(), None);
        assert_eq!(a.push(b(b"211")), Err(ReplyError::TooLarge));
        let mut a = ReplyAssembler::new(10, 12);
        assert_eq!(a.push(b(b"211-a")).unwrap(), None);
        assert_eq!(a.push(b(b"227")).unwrap(), None);
        assert_eq!(a.push(b(b"211")).unwrap().unwrap().lines.len(), 3);
    }

    /// Reference for the padding rule, written from the documented rule.
    fn model_pad(line: &[u8]) -> Vec<u8> {
        let digits = line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit);
        if digits && line.get(3) != Some(&b'-') {
            [&b" "[..], line].concat()
        } else {
            line.to_vec()
        }
    }

    /// An inner-line candidate: digits and separators that look like replies, the reply's
    /// own code, or arbitrary bytes.
    fn inner_line() -> impl Strategy<Value = Vec<u8>> {
        let sep = prop_oneof![Just(""), Just(" "), Just("-"), Just("0"), Just("x")];
        prop_oneof![
            (0u16..1000, sep.clone(), "[ -~]{0,8}")
                .prop_map(|(n, s, t)| format!("{n:03}{s}{t}").into_bytes()),
            (sep, "[ -~]{0,8}").prop_map(|(s, t)| format!("CODE{s}{t}").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..10),
        ]
    }

    proptest! {
        #[test]
        fn assembled_inner_lines_are_harmless(
            code in 100u16..600,
            first_text in proptest::collection::vec(any::<u8>(), 0..8),
            inner in proptest::collection::vec(inner_line(), 0..12),
            last_text in proptest::collection::vec(any::<u8>(), 0..8),
            bare_end in any::<bool>(),
        ) {
            let code_text = format!("{code:03}");
            let first = [code_text.as_bytes(), b"-", &first_text].concat();
            let last = if bare_end {
                code_text.clone().into_bytes()
            } else {
                [code_text.as_bytes(), b" ", &last_text].concat()
            };
            // "CODE" stands for this reply's own code; a line that would end the reply
            // early becomes a legal `ddd-` continuation instead.
            let inner: Vec<Vec<u8>> = inner
                .into_iter()
                .map(|l| {
                    let l = if l.starts_with(b"CODE") {
                        [code_text.as_bytes(), &l[4..]].concat()
                    } else {
                        l
                    };
                    if is_end_line(&l, code) {
                        [code_text.as_bytes(), b"-", &l[3..]].concat()
                    } else {
                        l
                    }
                })
                .collect();
            let mut a = ReplyAssembler::new(64, 64 * 1024);
            prop_assert_eq!(a.push(Bytes::from(first.clone())), Ok(None));
            for l in &inner {
                prop_assert_eq!(a.push(Bytes::from(l.clone())), Ok(None));
            }
            let r = a.push(Bytes::from(last.clone())).unwrap().unwrap();
            prop_assert_eq!(r.code, code);
            prop_assert_eq!(r.lines.len(), inner.len() + 2);
            prop_assert_eq!(&r.lines[0][..], &first[..]);
            prop_assert_eq!(&r.lines[r.lines.len() - 1][..], &last[..]);
            for (got, sent) in r.lines[1..r.lines.len() - 1].iter().zip(&inner) {
                // Not a final-reply shape...
                let reads_final = got.len() >= 3
                    && got[..3].iter().all(u8::is_ascii_digit)
                    && matches!(got.get(3), None | Some(b' '));
                prop_assert!(!reads_final, "{:?}", got);
                // ...and the same line, in the same place, with at most one SP added.
                prop_assert_eq!(&got[..], &model_pad(sent)[..]);
                prop_assert!(got == sent || (got[0] == b' ' && got[1..] == sent[..]));
            }
        }

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
                    if let [_, inner @ .., _] = &r.lines[..] {
                        for l in inner {
                            prop_assert!(!could_read_as_reply(l), "{:?}", l);
                        }
                    }
                    let _ = r.text();
                }
            }
        }
    }
}
