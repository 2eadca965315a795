//! `CommandLine::parse` and `looks_like_http` on arbitrary bytes (one framed line).
//!
//! Invariants checked:
//! - `Empty` exactly for the empty line; `Ok` exactly when the bytes before the first SP are
//!   3 or 4 ASCII letters; `BadVerb` otherwise;
//! - for `Ok`: `line` is the input, not copied; `verb_str()` is the first token; `arg` is a
//!   suffix of `line` sharing its memory, and `line` is `verb [SP arg]` (an empty `arg` means
//!   the line was the verb, or the verb and one SP);
//! - the verb is `Verb::from_name(verb_str())`, case-insensitively, and a policed verb's
//!   variant name is the verb in upper case (`Verb::Retr` for `rEtR`);
//! - `direction()` and `is_transfer()` agree;
//! - `looks_like_http` never panics and agrees with a reference written as a 3-way split on
//!   SP (`METHOD SP target SP HTTP/d.d`, method letters only, target non-empty).

use bytes::Bytes;
use ftpgate::proto::command::{looks_like_http, CommandError, CommandLine, Verb};

fn reference_http(line: &[u8]) -> bool {
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return false;
    };
    let version_ok = version.len() == 8
        && version[..5].eq_ignore_ascii_case(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit();
    version_ok
        && !method.is_empty()
        && method.iter().all(u8::is_ascii_alphabetic)
        && !target.is_empty()
}

/// The target's whole check: panics when an invariant fails.
pub fn run(data: &[u8]) {
    assert_eq!(
        looks_like_http(data),
        reference_http(data),
        "looks_like_http disagrees with the reference"
    );

    let first_token = data.split(|&b| b == b' ').next().unwrap_or(&[]);
    let verb_shaped =
        (3..=4).contains(&first_token.len()) && first_token.iter().all(u8::is_ascii_alphabetic);

    let line = Bytes::copy_from_slice(data);
    match CommandLine::parse(line.clone()) {
        Ok(c) => {
            assert!(verb_shaped, "accepted a malformed verb: {data:?}");
            assert_eq!(&c.line[..], data);
            assert_eq!(c.line.as_ptr(), line.as_ptr(), "line was copied");

            let verb = c.verb_str();
            assert_eq!(verb, first_token);
            assert!(c.line.starts_with(verb));
            assert!(c.line.ends_with(&c.arg), "arg is not a suffix of line");
            if c.arg.is_empty() {
                assert!(
                    c.line.len() == verb.len()
                        || (c.line.len() == verb.len() + 1 && c.line[verb.len()] == b' '),
                    "empty arg but line has more: {data:?}"
                );
            } else {
                assert_eq!(c.line.len(), verb.len() + 1 + c.arg.len());
                assert_eq!(c.line[verb.len()], b' ');
                // Zero-copy: the arg is a view into the line.
                let offset = c.arg.as_ptr() as usize - c.line.as_ptr() as usize;
                assert_eq!(offset, verb.len() + 1, "arg is not a view of line");
            }

            assert_eq!(Verb::from_name(verb), c.verb);
            assert_eq!(Verb::from_name(&verb.to_ascii_uppercase()), c.verb);
            assert_eq!(Verb::from_name(&verb.to_ascii_lowercase()), c.verb);
            if c.verb != Verb::Other {
                let name = format!("{:?}", c.verb).to_ascii_uppercase();
                assert_eq!(name.as_bytes(), &verb.to_ascii_uppercase()[..]);
            }
            assert_eq!(c.verb.is_transfer(), c.verb.direction().is_some());
        }
        Err(CommandError::Empty) => assert!(data.is_empty(), "Empty for {data:?}"),
        Err(CommandError::BadVerb) => {
            assert!(
                !data.is_empty() && !verb_shaped,
                "refused a good verb: {data:?}"
            )
        }
    }

    // from_name must cope with any name, not only 3-4 letters.
    let _ = Verb::from_name(&data[..data.len().min(8)]);
}
