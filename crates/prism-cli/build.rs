//! With the `tch` feature, gives the `prism` binary the torch venv's library folder as its run
//! path (`PRISM_LIBTORCH_LIB`, set by `cargo xtask build-tch`), so that it finds libtorch without
//! `LD_LIBRARY_PATH`, and links tcmalloc ahead of the C library where `PRISM_TCMALLOC_LIB` names
//! it (xtask's `tcmalloc` module says why). Without the feature it does nothing.

fn main() {
    println!("cargo:rerun-if-env-changed=PRISM_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=PRISM_TCMALLOC_LIB");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    if let Ok(lib) = std::env::var("PRISM_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{lib}");
    }
    link_tcmalloc();
}

include!("../../build-support/link_tcmalloc.rs");
