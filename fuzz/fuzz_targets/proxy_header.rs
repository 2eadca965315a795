//! libFuzzer entry for `proxy_header`; the invariants are in `checks/proxy_header.rs`, which
//! `tests/proto_props.rs` in the main crate also runs as property tests.
#![no_main]

#[path = "../checks/proxy_header.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
