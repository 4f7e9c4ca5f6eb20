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

/// Links the shared library `PRISM_TCMALLOC_LIB` names, by its file name, with its folder as a
/// run path. Linked from this crate, it comes before the C library (which the standard library
/// links last), so its `malloc` serves the whole process.
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
