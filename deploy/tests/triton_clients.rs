//! Triton's own Python clients (`tritonclient[http,grpc]`, provisioned by `cargo xtask`) against
//! the server on each CPU backend, over HTTP and gRPC: health, metadata, JSON, binary and raw
//! tensors, an RVT sequence, errors; and a model repository through the clients' repository API.
//! `triton_client.py` checks every answer against ONNX Runtime running the same file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use prism_deploy::server::{Server, ServerOptions};
use prism_deploy::{Backend, Engine, EngineOptions};

/// The test venv's python, when it can import Triton's clients (else the test is skipped).
fn tritonclient_python(test: &str) -> Option<PathBuf> {
    let python = prism_env().join("venv/bin/python");
    let importable = Command::new(&python)
        .args(["-c", "import tritonclient.http, tritonclient.grpc"])
        .status()
        .is_ok_and(|s| s.success());
    if importable {
        Some(python)
    } else {
        skip(
            test,
            "tritonclient is not installed (run `cargo xtask provision`)",
        )
    }
}

/// Runs `triton_client.py ARGS... MODEL` and fails the test, with the script's output, unless
/// every check passed.
fn run_client(python: &Path, what: &str, args: &[&str], model: &Path) {
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/triton_client.py"
        ))
        .args(args)
        .arg(model)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{what}: tritonclient checks failed\n{stdout}\n{stderr}"
    );
    let passed = stdout.lines().filter(|l| l.starts_with("ok:")).count();
    eprintln!("{what}: {passed} tritonclient checks passed");
}

#[test]
fn tritonclient_http_and_grpc_get_the_same_numbers_as_onnxruntime() {
    let test = "tritonclient_http_and_grpc_get_the_same_numbers_as_onnxruntime";
    let Some(dir) = fixtures(test) else {
        return;
    };
    let Some(python) = tritonclient_python(test) else {
        return;
    };
    let model = dir.join("rvt_tiny.onnx");
    for backend in cpu_backends(test) {
        let engine = Arc::new(Engine::load(&model, &EngineOptions::new(backend)).unwrap());
        let server = Server::start(
            engine,
            ServerOptions {
                addr: "127.0.0.1:0".parse().unwrap(),
                model_name: Some("rvt".into()),
                grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
                ..ServerOptions::default()
            },
        )
        .unwrap();
        for (protocol, addr) in [
            ("http", server.local_addr()),
            ("grpc", server.grpc_addr().unwrap()),
        ] {
            run_client(
                &python,
                &format!("{backend:?} over {protocol}"),
                &[protocol, &addr.to_string(), "rvt"],
                &model,
            );
        }
        server.shutdown();
    }
}

/// Triton's clients drive a model repository over HTTP and gRPC: index, unload, load, reload and
/// the refusals, with the same answers on both protocols.
#[test]
fn tritonclient_manages_a_model_repository() {
    let test = "tritonclient_manages_a_model_repository";
    let Some(dir) = fixtures(test) else {
        return;
    };
    let Some(python) = tritonclient_python(test) else {
        return;
    };
    let model = dir.join("rvt_tiny.onnx");
    let repo = tempfile::tempdir().unwrap();
    for name in ["alpha", "beta"] {
        std::fs::copy(&model, repo.path().join(format!("{name}.onnx"))).unwrap();
    }
    let server = Server::start_repository(
        repo.path(),
        EngineOptions::new(Backend::Tract),
        ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    for (protocol, addr) in [
        ("http", server.local_addr()),
        ("grpc", server.grpc_addr().unwrap()),
    ] {
        run_client(
            &python,
            &format!("repository over {protocol}"),
            &[protocol, &addr.to_string(), "--repository", "alpha", "beta"],
            &model,
        );
    }
    server.shutdown();
}
