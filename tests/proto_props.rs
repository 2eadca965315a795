//! The fuzz targets' invariants, run as property tests in `cargo test`.
//!
//! Each fuzz target (`fuzz/fuzz_targets/<target>.rs`) is a thin libFuzzer entry around
//! `fuzz/checks/<target>.rs`, whose `run(&[u8])` panics when an invariant fails. This file
//! includes the same check modules, so CI exercises the same oracles without libFuzzer or a
//! nightly flag:
//!
//! - `seeds_and_regressions`: every tracked seed (`fuzz/seeds/<target>/`) and minimised
//!   crash reproducer (`fuzz/regressions/<target>/`) passes its check;
//! - one property test per target: a seed, mutated by a few random edits (byte flips,
//!   inserts, deletions, copies, and tokens from `fuzz/dicts/<target>.dict`), or plain
//!   random bytes, passes the check. This is a small mutational fuzzer without coverage
//!   feedback: far weaker than a libFuzzer run, but cheap and deterministic enough for CI.
//!
//! The number of cases per target is `PROTO_PROPS_CASES` (default 256); CI can raise it, e.g.
//! `PROTO_PROPS_CASES=20000 cargo test --release --test proto_props`. A failure is shrunk by
//! proptest and printed; nothing is written to disk.

#[path = "../fuzz/checks/address_codecs.rs"]
mod address_codecs;
#[path = "../fuzz/checks/command_args.rs"]
mod command_args;
#[path = "../fuzz/checks/command_parse.rs"]
mod command_parse;
#[path = "../fuzz/checks/config_parse.rs"]
mod config_parse;
#[path = "../fuzz/checks/line_framing.rs"]
mod line_framing;
#[path = "../fuzz/checks/proxy_header.rs"]
mod proxy_header;
#[path = "../fuzz/checks/reply_assembly.rs"]
mod reply_assembly;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use std::path::{Path, PathBuf};

type Check = fn(&[u8]);

/// Every target: its name (the folder and dictionary name under `fuzz/`) and its check.
const TARGETS: &[(&str, Check)] = &[
    ("line_framing", line_framing::run),
    ("command_parse", command_parse::run),
    ("command_args", command_args::run),
    ("reply_assembly", reply_assembly::run),
    ("address_codecs", address_codecs::run),
    ("config_parse", config_parse::run),
    ("proxy_header", proxy_header::run),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn cases() -> u32 {
    match std::env::var("PROTO_PROPS_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("PROTO_PROPS_CASES={v:?} is not a number")),
        Err(_) => 256,
    }
}

/// The files of `fuzz/<kind>/<target>/`, sorted by name (none if the folder is absent).
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("readable fuzz input folder").path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("readable fuzz input");
            (p, data)
        })
        .collect()
}

/// The tokens of a libFuzzer dictionary: each line `"value"` or `name="value"`, with the
/// escapes `\\`, `\"` and `\xNN`; `#` lines and blank lines are skipped.
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let path = fuzz_dir().join("dicts").join(format!("{target}.dict"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else {
            panic!("{}: no quoted value in {line:?}", path.display());
        };
        assert!(close > open, "{}: unterminated {line:?}", path.display());
        let raw = &line.as_bytes()[open + 1..close];
        let mut token = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'\\' if raw.get(i + 1) == Some(&b'x') => {
                    let hex = std::str::from_utf8(&raw[i + 2..i + 4]).expect("ASCII escape");
                    token.push(u8::from_str_radix(hex, 16).expect("\\xNN escape"));
                    i += 4;
                }
                b'\\' => {
                    token.push(raw[i + 1]);
                    i += 2;
                }
                b => {
                    token.push(b);
                    i += 1;
                }
            }
        }
        tokens.push(token);
    }
    tokens
}

/// One random edit of an input.
#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index, u8),
    Token(Index, Index),
    Copy { from: Index, len: u8, to: Index },
    SetByte(Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<Index>(), 1u8..=255).prop_map(|(i, m)| Edit::Flip(i, m)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<Index>(), 1u8..=16).prop_map(|(i, n)| Edit::Delete(i, n)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Edit::Token(i, t)),
        1 => (any::<Index>(), 1u8..=64, any::<Index>())
            .prop_map(|(from, len, to)| Edit::Copy { from, len, to }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::SetByte(i, b)),
    ]
}

/// `Index` into `0..=len` (an insertion point).
fn point(i: &Index, len: usize) -> usize {
    i.index(len + 1)
}

fn apply(data: &mut Vec<u8>, e: &Edit, dict: &[Vec<u8>]) {
    let len = data.len();
    match e {
        Edit::Flip(i, m) if len > 0 => data[i.index(len)] ^= m,
        Edit::SetByte(i, b) if len > 0 => data[i.index(len)] = *b,
        Edit::Insert(i, b) => data.insert(point(i, len), *b),
        Edit::Delete(i, n) if len > 0 => {
            let at = i.index(len);
            let end = (at + usize::from(*n)).min(len);
            data.drain(at..end);
        }
        Edit::Token(i, t) if !dict.is_empty() => {
            let at = point(i, len);
            let token = &dict[t.index(dict.len())];
            data.splice(at..at, token.iter().copied());
        }
        Edit::Copy { from, len: n, to } if len > 0 => {
            let at = from.index(len);
            let end = (at + usize::from(*n)).min(len);
            let part = data[at..end].to_vec();
            let to = point(to, len);
            data.splice(to..to, part);
        }
        _ => {}
    }
}

/// Runs `check` on `cases()` inputs: mutated seeds, and now and then random bytes.
fn fuzz_like(target: &str, check: Check) {
    let seeds: Vec<Vec<u8>> = inputs("seeds", target)
        .into_iter()
        .chain(inputs("regressions", target))
        .map(|(_, d)| d)
        .collect();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    let dict = dictionary(target);

    let input = prop_oneof![
        9 => (any::<Index>(), vec(edit(), 1..8)).prop_map(move |(s, edits)| {
            let mut data = seeds[s.index(seeds.len())].clone();
            for e in &edits {
                apply(&mut data, e, &dict);
            }
            data
        }),
        1 => vec(any::<u8>(), 0..256),
    ];

    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&input, |data| {
        check(&data);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

#[test]
fn seeds_and_regressions() {
    for &(target, check) in TARGETS {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for (path, data) in seeds.iter().chain(&inputs("regressions", target)) {
            let outcome = std::panic::catch_unwind(|| check(data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        }
    }
}

#[test]
fn dictionaries_parse() {
    for &(target, _) in TARGETS {
        assert!(
            !dictionary(target).is_empty(),
            "empty dictionary for {target}"
        );
    }
}

#[test]
fn line_framing_props() {
    fuzz_like("line_framing", line_framing::run);
}

#[test]
fn command_parse_props() {
    fuzz_like("command_parse", command_parse::run);
}

#[test]
fn command_args_props() {
    fuzz_like("command_args", command_args::run);
}

#[test]
fn reply_assembly_props() {
    fuzz_like("reply_assembly", reply_assembly::run);
}

#[test]
fn address_codecs_props() {
    fuzz_like("address_codecs", address_codecs::run);
}

#[test]
fn config_parse_props() {
    fuzz_like("config_parse", config_parse::run);
}

#[test]
fn proxy_header_props() {
    fuzz_like("proxy_header", proxy_header::run);
}
