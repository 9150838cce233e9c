//! libFuzzer harness for [`worldfleet_fuzz::rules`] (built by `cargo fuzz`, see the crate README).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| worldfleet_fuzz::rules(data));
