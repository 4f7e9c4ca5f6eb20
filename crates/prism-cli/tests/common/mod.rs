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

/// `prism serve --model MODEL --addr 127.0.0.1:0` in its own process, and the address it says
/// it listens on. Kill the child when done.
pub fn serve(model: &std::path::Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_prism"))
        .args([
            "serve",
            "--model",
            model.to_str().expect("a UTF-8 path"),
            "--addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prism serve starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .expect("readable stderr");
        if let Some(rest) = line.strip_prefix("serving on http://") {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_string();
        }
    };
    // Keep reading the server's log: a closed pipe would make its next log line fail (EPIPE),
    // and a server that cannot write its log may end, resetting the test's connection.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("prism serve: {line}");
        }
    });
    (child, addr)
}

/// Sends `method path` (with a JSON `body` when given) to `addr` over one connection and
/// returns the whole raw response.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the server accepts");
    let head = match body {
        Some(b) => format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        ),
        None => format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    };
    s.write_all(head.as_bytes()).expect("the request is sent");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("a response");
    raw
}

/// The one-node Slurm that `cargo xtask test` provisions (`SLURM_CONF`), or `None` (the caller
/// skips its Slurm part) where it is not required; under `PRISM_REQUIRE_FIXTURES` its absence
/// fails the test.
pub fn slurm_conf() -> Option<std::ffi::OsString> {
    let conf = std::env::var_os("SLURM_CONF");
    if conf.is_none() {
        assert!(
            std::env::var_os("PRISM_REQUIRE_FIXTURES").is_none(),
            "SLURM_CONF is not set: run `cargo xtask provision-slurm` (cargo xtask test does)"
        );
        eprintln!("skipped the Slurm part: no SLURM_CONF (cargo xtask provision-slurm)");
    }
    conf
}
