//! Fuzzes the decoder on EVT 2.0 words after a valid header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prism_events_fuzz::decode("fuzz.raw", b"% evt 2.0\n% geometry 640x480\n", data);
});
