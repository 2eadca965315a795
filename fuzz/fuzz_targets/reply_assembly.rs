//! libFuzzer entry for `reply_assembly`; the invariants are in `checks/reply_assembly.rs`, which
//! `tests/proto_props.rs` in the main crate also runs as property tests.
#![no_main]

#[path = "../checks/reply_assembly.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
