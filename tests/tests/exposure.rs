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
    let mut client = datamesh_cli::client::connect(&format!("http://127.0.0.1:{port}"))
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
    let mut client = datamesh_cli::client::connect(&format!("unix:{}", socket.display()))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_address_is_served_with_tls_and_tokens_and_stays_locked() {
    let guard = temp_dir("exposure-tls", Engine::Jit);
    let dir = guard.path();
    let data = dir.join("data");
    let certs = dir.join("certs");
    let (code, out, err) = cli_at(
        "http://127.0.0.1:1",
        &[
            "cert",
            "dev",
            "--out",
            certs.to_str().expect("utf-8"),
            "node",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let cert = certs.join("node.pem");
    let key = certs.join("node.key");
    let tls = [
        "--listen",
        "0.0.0.0:0",
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ];

    // TLS without a token: refused, saying to make one.
    let (code, stderr) = serve(&data, &tls).expect_err("refused");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no authentication"), "{stderr}");
    assert!(stderr.contains("token create"), "{stderr}");
    // Tokens without TLS: refused, saying to give it a certificate.
    let (code, out, err) = cli_at(
        "http://127.0.0.1:1",
        &[
            "token",
            "create",
            "--role",
            "admin",
            "--data",
            data.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let (id, token) = (
        line["id"].as_str().expect("id").to_owned(),
        line["token"].as_str().expect("token").to_owned(),
    );
    let (code, stderr) = serve(&data, &["--listen", "0.0.0.0:0"]).expect_err("refused");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");

    // Both: served, and not reported insecure.
    let (mut child, addr) = serve(&data, &tls).expect("starts");
    let port = addr.rsplit(':').next().expect("port");
    let url = format!("https://127.0.0.1:{port}");
    let ca = certs.join("ca.pem");
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, &token).expect("write");
    let args = |rest: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--ca".to_owned(),
            ca.display().to_string(),
            "--token-file".to_owned(),
            token_file.display().to_string(),
        ];
        v.extend(rest.iter().map(|s| (*s).to_owned()));
        v
    };
    let run = |rest: &[&str]| {
        let a = args(rest);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        cli_at(&url, &a)
    };
    let (code, out, err) = run(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (&status["insecure"], &status["auth"], &status["tls"]),
        (
            &serde_json::json!(false),
            &serde_json::json!(true),
            &serde_json::json!(true)
        )
    );
    // Revoking the last token locks everyone out instead of opening the node.
    let (code, _, err) = run(&["token", "revoke", &id]);
    assert_eq!(code, 0, "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _, err) = cli_at(&url, &["--ca", ca.to_str().expect("utf-8"), "status"]);
        if code == 1 && err.contains("Unauthenticated") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served without a token: {code} {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
}
