//! With the `tch` feature, gives the `prism` binary the torch venv's library folder as its run
//! path (`PRISM_LIBTORCH_LIB`, set by `cargo xtask build-tch`), so that it finds libtorch without
//! `LD_LIBRARY_PATH`. Without the feature it does nothing.

fn main() {
    println!("cargo:rerun-if-env-changed=PRISM_LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return;
    }
    if let Ok(lib) = std::env::var("PRISM_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{lib}");
    }
}
