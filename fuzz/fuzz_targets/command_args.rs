//! libFuzzer entry for `command_args`; the invariants are in `checks/command_args.rs`, which
//! `tests/proto_props.rs` in the main crate also runs as property tests.
#![no_main]

#[path = "../checks/command_args.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
