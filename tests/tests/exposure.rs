//! Safe defaults (issue 15, first part): with no TLS and no authentication, a node
//! serves loopback and a Unix socket private to its user; it refuses any other
//! address unless told `--insecure`, and then says so in `status`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use datamesh_runtime::api::pb;

/// Runs `datamesh serve` with exactly `args` (plus the data directory); returns the
/// address it listens on, or its exit code and stderr when it exits first.
fn serve(
    data: &std::path::Path,
    args: &[&str],
) -> Result<(std::process::Child, String), (Option<i32>, String)> {
    let mut child = Command::new(BIN)
        .args(["serve", "--data", data.to_str().expect("utf-8")])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("datamesh listening on ") {
                let _ = tx.send(Ok(addr.to_owned()));
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(addr)) => Ok((child, addr)),
        Ok(Err(seen)) => {
            let code = child.wait().ok().and_then(|s| s.code());
            Err((code, seen))
        }
        Err(_) => {
            let _ = child.kill();
            Err((None, "silent for 30 s".into()))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_address_needs_insecure_and_status_says_so() {
    let guard = temp_dir("exposure", Engine::Jit);
    let data = guard.path().join("data");

    let (code, stderr) = serve(&data, &["--listen", "0.0.0.0:0"]).expect_err("refused");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure"), "{stderr}");
    assert!(!data.join("log").exists(), "nothing was created: {stderr}");

    let (mut child, addr) = serve(&data, &["--listen", "0.0.0.0:0", "--insecure"]).expect("starts");
    let port = addr.rsplit(':').next().expect("port");
    let mut client = datamesh_runtime::client::connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect");
    let status = client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.insecure);
    let _ = child.kill();
    let _ = child.wait();

    // Loopback and the socket: not insecure, and the socket is its user's alone.
    let socket = guard.path().join("node.sock");
    let (mut child, _) = serve(
        &data,
        &[
            "--listen",
            "127.0.0.1:0",
            "--socket",
            socket.to_str().expect("utf-8"),
        ],
    )
    .expect("starts");
    let mut client = datamesh_runtime::client::connect(&format!("unix:{}", socket.display()))
        .await
        .expect("connect over the socket");
    let status = client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(!status.insecure);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let _ = child.kill();
    let _ = child.wait();
}
