//! Fuzzes the `.npy` parsers: bbox labels and the 1-D integer arrays of RVT's preprocessed
//! datasets; any bytes, with and without a valid magic and version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_events::labels::{parse_bbox_npy, parse_int_npy};

fuzz_target!(|data: &[u8]| {
    let _ = parse_bbox_npy(data);
    let _ = parse_int_npy(data);
    let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
    with_magic.extend_from_slice(data);
    let _ = parse_bbox_npy(&with_magic);
    let _ = parse_int_npy(&with_magic);
});
