//! See `harness::pickle`; the input's peak heap is held to `harness::bound`.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

#[global_allocator]
static HEAP: harness::Counting = harness::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run_bounded("pickle", data);
});
