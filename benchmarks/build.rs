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

/// Links the shared library `PRISM_TCMALLOC_LIB` names, by its file name, with its folder as a
/// run path (the same as prism-cli's build script).
fn link_tcmalloc() {
    let Ok(library) = std::env::var("PRISM_TCMALLOC_LIB") else {
        return;
    };
    let library = std::path::Path::new(&library);
    let (Some(dir), Some(name)) = (library.parent(), library.file_name()) else {
        return;
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!(
        "cargo:rustc-link-lib=dylib:+verbatim={}",
        name.to_string_lossy()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", dir.display());
}
