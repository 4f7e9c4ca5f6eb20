//! Running the `prism` binary from the CLI tests.
#![allow(dead_code, clippy::expect_used)]

use std::process::{Command, Output};

/// Runs `prism args...` to completion.
pub fn prism(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(args)
        .output()
        .expect("the prism binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
