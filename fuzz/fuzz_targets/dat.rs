//! Fuzzes the decoder on Prophesee .dat records after a valid header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prism_events_fuzz::decode("fuzz.dat", b"% Height 720\n% Width 1280\n\x0c\x08", data);
});
