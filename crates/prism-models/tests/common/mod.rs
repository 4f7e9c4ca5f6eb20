//! Locating the official RVT fixture (`../shared/fixtures/rvt-official` next to the workspace,
//! or `$PRISM_RVT_FIXTURES`). With `PRISM_REQUIRE_FIXTURES=1` (set by `cargo xtask test`) a
//! missing fixture fails the test; otherwise the test is skipped with a message.

use std::path::PathBuf;

#[allow(clippy::panic)]
/// The fixture directory, or `None` (skip) when it is absent and not required.
pub fn rvt_fixture_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("PRISM_RVT_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/rvt-official")
        }
    };
    if dir.join("rvt-tiny-gen1.ckpt").exists() {
        return Some(dir);
    }
    if std::env::var_os("PRISM_REQUIRE_FIXTURES").is_some_and(|v| v == "1") {
        panic!(
            "RVT fixture missing at {} (set PRISM_RVT_FIXTURES)",
            dir.display()
        );
    }
    eprintln!("SKIPPED: RVT fixture not found at {}", dir.display());
    None
}
