//! Generates the gRPC server code from `proto/kserve_v2.proto`. protox parses the proto in Rust,
//! so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/kserve_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        // Tensor bytes as `Bytes`: a request's raw inputs are slices of the received message,
        // not copies of it, and an answer's raw outputs are moved in, not copied.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(descriptors)?;
    Ok(())
}
