//! bench-serve's gRPC client, generated from the proto the server is built from.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../deploy/proto/kserve_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../deploy/proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
