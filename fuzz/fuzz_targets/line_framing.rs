//! libFuzzer entry for `line_framing`; the invariants are in `checks/line_framing.rs`, which
//! `tests/proto_props.rs` in the main crate also runs as property tests.
#![no_main]

#[path = "../checks/line_framing.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
