#![no_main]
// The body lives in sim::fuzz::ingress so that `cargo test` replays the corpus on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sim::fuzz::ingress(data));
