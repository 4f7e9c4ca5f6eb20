//! Fuzzes the reader of RVT's preprocessed histogram files (`event_representations*.h5`):
//! whole HDF5 files through `rust-hdf5` with its Blosc (Zstd, LZ4, BloscLZ, shuffle) and
//! deflate filters, then every window read and padded (seed the corpus with small files RVT's
//! writer settings produce).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prism_events_fuzz::read_rvt_histograms(data);
});
