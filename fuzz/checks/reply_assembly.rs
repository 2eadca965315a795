//! `ReplyAssembler` fed arbitrary lines with small caps.
//!
//! Input layout (see fuzz/README.md):
//!   byte 0      max_lines = byte % 16 (0..=15)
//!   byte 1      max_bytes = byte * 2 (0..=510)
//!   the rest    split on '\n'; each piece is pushed as one line (CR, NUL, 0xFF included)
//!
//! Invariants checked, for every push:
//! - the result equals that of a reference model of RFC 959 section 4.2 assembly (first line
//!   `ddd`, `ddd SP..` or `ddd-..` with first digit 1-5; a multi-line reply ends at the first
//!   line that is its code then SP or nothing; an inner line that starts with three digits
//!   not followed by `-` gets one leading SP; caps checked after every line, on the padded
//!   lengths, line count first; everything forgotten on error);
//! - `in_progress()` is true exactly after `Ok(None)`;
//! - every `Ok(Some(reply))`: code in 100..=599 and equal to the first line's three digits;
//!   single-line replies have no `-`, multi-line ones open with `ddd-` and close with an end
//!   line, no line in between is an end line or starts with three digits and SP or nothing
//!   (SECURITY.md invariant 12); 1..=max_lines lines, total bytes <= max_bytes; the lines are
//!   the ones pushed since the previous reply or error, in order, first and last verbatim,
//!   inner ones padded as above;
//!   `class()`, `is_preliminary()` and `text()` agree with the code and first line;
//! - `Reply::encode` of a reply whose lines hold no CR/NUL decodes back (via `LineCodec`)
//!   to the same lines.

use bytes::{Bytes, BytesMut};
use ftpgate::proto::line::{Frame, LineCodec};
use ftpgate::proto::reply::{Reply, ReplyAssembler, ReplyError};
use tokio_util::codec::Decoder;

/// Reference assembler, written from the RFC rules rather than from `reply.rs`.
struct Model {
    max_lines: usize,
    max_bytes: usize,
    open: Option<(String, Vec<Bytes>)>,
}

/// An inner line as it must be relayed: one SP in front if it starts with three ASCII digits
/// that are not followed by `-` (RFC 959 section 4.2's advice to servers, applied by the
/// proxy so no client can read it as a reply).
fn harmless(line: Bytes) -> Bytes {
    let digits = line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit);
    if digits && line.get(3) != Some(&b'-') {
        let mut v = Vec::with_capacity(line.len() + 1);
        v.push(b' ');
        v.extend_from_slice(&line);
        Bytes::from(v)
    } else {
        line
    }
}

/// `Some((code digits, more_follows))` if `line` may start a reply.
fn start(line: &[u8]) -> Option<(String, bool)> {
    let code = std::str::from_utf8(line.get(..3)?).ok()?;
    let mut ch = code.chars();
    let first_ok = matches!(ch.next(), Some('1'..='5'));
    if !first_ok || !ch.all(|c| c.is_ascii_digit()) {
        return None;
    }
    match line.get(3) {
        None | Some(b' ') => Some((code.to_string(), false)),
        Some(b'-') => Some((code.to_string(), true)),
        Some(_) => None,
    }
}

impl Model {
    fn over_caps(&self, lines: &[Bytes]) -> Option<ReplyError> {
        if lines.len() > self.max_lines {
            Some(ReplyError::TooManyLines)
        } else if lines.iter().map(|l| l.len()).sum::<usize>() > self.max_bytes {
            Some(ReplyError::TooLarge)
        } else {
            None
        }
    }

    fn push(&mut self, line: Bytes) -> Result<Option<Vec<Bytes>>, ReplyError> {
        let (code, mut lines, done) = match self.open.take() {
            None => {
                let (code, more) = start(&line).ok_or(ReplyError::Malformed)?;
                (code, vec![line], !more)
            }
            Some((code, mut lines)) => {
                let done = matches!(start(&line), Some((c, false)) if c == code);
                lines.push(if done { line } else { harmless(line) });
                (code, lines, done)
            }
        };
        if let Some(e) = self.over_caps(&lines) {
            return Err(e);
        }
        if done {
            return Ok(Some(std::mem::take(&mut lines)));
        }
        self.open = Some((code, lines));
        Ok(None)
    }
}

fn check_reply(r: &Reply, max_lines: usize, max_bytes: usize) {
    assert!((100..=599).contains(&r.code), "code {}", r.code);
    let code_text = format!("{:03}", r.code);
    let first = r.lines.first().expect("a reply has at least one line");
    assert_eq!(
        &first[..3],
        code_text.as_bytes(),
        "code does not match first line"
    );
    assert!(
        r.lines.len() <= max_lines,
        "{} lines > {max_lines}",
        r.lines.len()
    );
    let bytes: usize = r.lines.iter().map(Bytes::len).sum();
    assert!(bytes <= max_bytes, "{bytes} bytes > {max_bytes}");

    let is_end =
        |l: &Bytes| l.starts_with(code_text.as_bytes()) && matches!(l.get(3), None | Some(b' '));
    if r.lines.len() == 1 {
        assert!(is_end(first), "single-line reply is not `ddd[ SP..]`");
    } else {
        assert_eq!(
            first.get(3),
            Some(&b'-'),
            "multi-line reply does not open with ddd-"
        );
        assert!(is_end(r.lines.last().expect("non-empty")), "no end line");
        for mid in &r.lines[1..r.lines.len() - 1] {
            assert!(!is_end(mid), "reply went on past an end line");
            let reads_final = mid.len() >= 3
                && mid[..3].iter().all(u8::is_ascii_digit)
                && matches!(mid.get(3), None | Some(b' '));
            assert!(!reads_final, "inner line reads as a final reply: {mid:?}");
        }
    }

    assert_eq!(u16::from(r.class()), r.code / 100);
    assert_eq!(r.is_preliminary(), r.code / 100 == 1);
    assert_eq!(r.text(), first.get(4..).unwrap_or(&[]));

    if r.lines
        .iter()
        .all(|l| !l.contains(&b'\r') && !l.contains(&0))
    {
        let mut wire = BytesMut::new();
        r.encode(&mut wire);
        let mut codec = LineCodec::new(wire.len());
        let mut back = Vec::new();
        while let Some(f) = codec.decode(&mut wire).expect("decode never errors") {
            match f {
                Frame::Line(l) => back.push(l),
                Frame::Rejected(e) => panic!("encoded reply line rejected: {e}"),
            }
        }
        assert!(wire.is_empty());
        assert_eq!(back, r.lines, "encode/decode round trip");
    }
}

/// The target's whole check: panics when an invariant fails.
pub fn run(data: &[u8]) {
    let [a, b, rest @ ..] = data else { return };
    let max_lines = usize::from(*a % 16);
    let max_bytes = usize::from(*b) * 2;

    let mut asm = ReplyAssembler::new(max_lines, max_bytes);
    let mut model = Model {
        max_lines,
        max_bytes,
        open: None,
    };
    for piece in rest.split(|&c| c == b'\n') {
        let line = Bytes::copy_from_slice(piece);
        let got = asm.push(line.clone());
        let want = model.push(line);
        match (&got, &want) {
            (Ok(Some(r)), Ok(Some(lines))) => {
                assert_eq!(&r.lines, lines, "reply lines differ from the model");
                check_reply(r, max_lines, max_bytes);
            }
            (Ok(None), Ok(None)) => {}
            (Err(g), Err(w)) => assert_eq!(g, w, "different error"),
            _ => panic!("assembler {got:?} but model {want:?}"),
        }
        assert_eq!(
            asm.in_progress(),
            matches!(got, Ok(None)),
            "in_progress after {got:?}"
        );
    }
}
