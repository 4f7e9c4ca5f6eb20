//! bench-serve's gRPC client, generated from the proto the server is built from; and, with the
//! `tch` feature, tcmalloc linked ahead of the C library where `PRISM_TCMALLOC_LIB` names it, as
//! the `prism` binary links it (see prism-cli's build script), so that bench-train times Burn's
//! LibTorch backend the way `prism train` runs it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=PRISM_TCMALLOC_LIB");
    if std::env::var_os("CARGO_FEATURE_TCH").is_some() {
        link_tcmalloc();
    }
    let proto = "../deploy/proto/kserve_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../deploy/proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}

include!("../build-support/link_tcmalloc.rs");
