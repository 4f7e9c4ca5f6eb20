//! Fuzzes the bbox `.npy` label parser: any bytes, with and without a valid magic and version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prism_events::labels::parse_bbox_npy;

fuzz_target!(|data: &[u8]| {
    let _ = parse_bbox_npy(data);
    let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
    with_magic.extend_from_slice(data);
    let _ = parse_bbox_npy(&with_magic);
});
