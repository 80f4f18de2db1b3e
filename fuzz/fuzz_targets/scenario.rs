#![no_main]
// The body lives in sim::fuzz::scenario so that `cargo test` replays the corpus on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sim::fuzz::scenario(data));
