//! Fuzzes the decoder on whole HDF5 files (seed the corpus with real .h5 files).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prism_events_fuzz::decode("fuzz.h5", b"", data);
});
