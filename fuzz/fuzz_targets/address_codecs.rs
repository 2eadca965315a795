//! libFuzzer entry for `address_codecs`; the invariants are in `checks/address_codecs.rs`, which
//! `tests/proto_props.rs` in the main crate also runs as property tests.
#![no_main]

#[path = "../checks/address_codecs.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
