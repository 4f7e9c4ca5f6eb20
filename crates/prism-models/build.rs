//! With the `tch` feature: compiles `csrc/libtorch_calls.cpp` (LibTorch's backward pass
//! from given output gradients and its fused AdamW step, which tch does not expose) against the libtorch that torch-sys
//! links, with the same headers and C++ ABI it found. Without the feature: nothing.

use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/libtorch_calls.cpp");
    if std::env::var_os("CARGO_FEATURE_TCH").is_none() {
        return Ok(());
    }
    let (includes, cxx11_abi) = libtorch_headers()?;
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .includes(&includes)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={cxx11_abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/libtorch_calls.cpp")
        .compile("prism_libtorch_calls");
    Ok(())
}

/// The include directories and C++ ABI flag of the libtorch torch-sys builds against, found the
/// way torch-sys finds them: from the Python torch with `LIBTORCH_USE_PYTORCH`, else from
/// `$LIBTORCH` (or the directory above torch-sys's library directory).
fn libtorch_headers() -> Result<(Vec<PathBuf>, String), String> {
    for name in [
        "LIBTORCH_USE_PYTORCH",
        "LIBTORCH",
        "LIBTORCH_INCLUDE",
        "LIBTORCH_CXX11_ABI",
        "VIRTUAL_ENV",
    ] {
        println!("cargo:rerun-if-env-changed={name}");
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var_os("VIRTUAL_ENV")
            .map(|venv| PathBuf::from(venv).join("bin/python"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("python3"));
        let query = "import torch\nfrom torch.utils import cpp_extension\n\
                     print(int(torch._C._GLIBCXX_USE_CXX11_ABI))\n\
                     print('\\n'.join(cpp_extension.include_paths()))";
        let out = Command::new(&python)
            .args(["-c", query])
            .output()
            .map_err(|e| format!("running {} for torch's headers: {e}", python.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} could not report torch's headers: {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let abi = lines.next().unwrap_or("1").trim().to_string();
        return Ok((lines.map(PathBuf::from).collect(), abi));
    }
    let root = std::env::var_os("LIBTORCH_INCLUDE")
        .or_else(|| std::env::var_os("LIBTORCH"))
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("DEP_TCH_LIBTORCH_LIB")
                .and_then(|lib| PathBuf::from(lib).parent().map(PathBuf::from))
        })
        .ok_or("libtorch's headers: set LIBTORCH or LIBTORCH_USE_PYTORCH, as for torch-sys")?;
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    Ok((
        vec![
            root.join("include"),
            root.join("include/torch/csrc/api/include"),
        ],
        abi,
    ))
}
