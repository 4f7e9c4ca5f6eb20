// Shared by the build scripts of prism-cli and prism-benchmarks (`include!`d), so that `prism`
// and bench-train link tcmalloc the same way (xtask's `tcmalloc` module says why).

/// Links the shared library `PRISM_TCMALLOC_LIB` names, by its file name, with its folder as a
/// run path. Linked from the calling crate, it comes before the C library (which the standard
/// library links last), so its `malloc` serves the whole process.
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
