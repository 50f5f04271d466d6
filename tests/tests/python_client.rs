//! A client outside Rust, and stock gRPC tooling (issue 13): the Python client of
//! `examples/clients/python` (stubs generated from the proto by grpcio-tools) appends,
//! reads a document and follows a subscription; grpcio's own reflection (v1alpha),
//! health and rich-status packages, with no DataMesh code, list the services, check
//! health and decode a refused deploy's `google.rpc.Status` details.
//!
//! `examples/clients/python/setup.sh` makes the virtualenv (in `target/python`) with
//! the pinned packages from PyPI. Without `python3` the test says so and passes.

mod common;

use std::process::Command;

use common::*;

/// The virtualenv's python, or `None` (with the reason printed) without Python.
fn python() -> Option<String> {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed, so the Python client cannot be tried");
        return None;
    }
    let mut setup = Command::new("bash");
    setup.arg(root().join("examples/clients/python/setup.sh"));
    let out = setup.output().expect("setup.sh runs");
    assert!(
        out.status.success(),
        "setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    Some(
        stdout
            .lines()
            .last()
            .expect("the python path")
            .trim()
            .to_owned(),
    )
}

fn run(python: &str, script: &str, node: &Node) -> serde_json::Value {
    let address = node.url.trim_start_matches("http://");
    let out = Command::new(python)
        .arg(root().join("examples/clients/python").join(script))
        .args(["--node", address])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn a_python_client_and_stock_grpc_tools_work_against_a_node() {
    let Some(python) = python() else {
        return;
    };
    let guard = temp_dir("python", Engine::Jit);
    let node = Node::start(&guard.path().join("data"), Engine::Jit, &[]);

    let seen = run(&python, "client.py", &node);
    assert_eq!(
        seen["document"],
        serde_json::json!({"balance": 100, "deposits": 2}),
        "{seen}"
    );
    assert_eq!(seen["positions"], serde_json::json!([0, 1]), "{seen}");
    let subscribed = seen["subscribed"].as_array().expect("events");
    assert_eq!(subscribed.len(), 2, "{seen}");
    assert_eq!(subscribed[1]["data"]["amount"], 30, "{seen}");

    // The wire protocol, implemented from the book's description.
    let wire = run(&python, "wire.py", &node);
    assert_eq!(
        wire["document"],
        serde_json::json!({"balance": 55, "deposits": 10}),
        "{wire}"
    );
    assert_eq!(
        wire["positions"].as_array().map(Vec::len),
        Some(10),
        "{wire}"
    );
    assert_eq!(wire["refused"]["code"], 9, "{wire}");
    assert!(
        wire["refused"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("version")),
        "{wire}"
    );

    let stock = run(&python, "stock_tools.py", &node);
    let services = stock["services"].as_array().expect("services");
    for service in ["datamesh.v1.DataMesh", "grpc.health.v1.Health"] {
        assert!(services.iter().any(|s| s == service), "{stock}");
    }
    assert_eq!(
        stock["health_methods"],
        serde_json::json!(["Check", "Watch"])
    );
    assert_eq!(stock["health"], "SERVING");
    assert_eq!(stock["deploy_code"], "INVALID_ARGUMENT");
    assert_eq!(stock["status_code"], 3);
    assert_eq!(
        stock["details"][0]["type"], "datamesh.v1.DeployResponse",
        "{stock}"
    );
    assert_eq!(stock["details"][0]["codes"][0], "E0103", "{stock}");
}
