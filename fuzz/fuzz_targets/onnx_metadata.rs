//! Fuzzes the ONNX model reader the engines run before loading: protobuf decode, graph
//! interface, the `prism` metadata spec and its check against the graph (seed the corpus with
//! exported models).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = prism_deploy::engine::inspect(std::path::Path::new("fuzz.onnx"), data);
});
