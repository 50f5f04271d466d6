//! What a node logs (issue 13): admin actions, faults (with code and position) and
//! link state changes; JSON lines with `--log-format json`; no ANSI colour when
//! stderr is not a terminal.

mod common;

use std::time::{Duration, Instant};

use common::*;
use datamesh_runtime::api::pb;

/// Waits (at most 10 s) until a line of the node's stderr satisfies `want`.
fn wait_for_line(node: &Node, what: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = node
            .stderr
            .lock()
            .ok()
            .and_then(|lines| lines.iter().find(|l| want(l)).cloned())
        {
            return line;
        }
        let lines = node.stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
        assert!(Instant::now() < deadline, "no line with {what}:\n{lines}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_and_faults_are_logged_as_json_lines() {
    let guard = temp_dir("logs-json", Engine::Jit);
    let node = Node::start_logging(
        &guard.path().join("data"),
        Engine::Jit,
        &["--log-format", "json"],
        None,
    );
    let mut client = node.client().await;
    client
        .deploy(pb::DeployRequest {
            source: "event E { n: int }\nprojection ratio { state { v: int = 0 } on E { v = 100 / event.n } }".into(),
            origin: "ratio.dmp".into(),
        })
        .await
        .expect("deploy");
    client
        .append(pb::AppendRequest {
            events: vec![
                event("E", r#"{"n":4}"#, "", ""),
                event("E", r#"{"n":0}"#, "", ""),
            ],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append");

    let deploy = wait_for_line(&node, "the deploy", |l| l.contains("admin action"));
    let deploy: serde_json::Value = serde_json::from_str(&deploy).expect("a JSON line");
    assert_eq!(deploy["level"], "INFO", "{deploy}");
    assert_eq!(deploy["fields"]["action"], "deploy", "{deploy}");
    assert!(
        deploy["fields"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("ratio.dmp")),
        "{deploy}"
    );
    let fault = wait_for_line(&node, "the fault", |l| l.contains("projection faulted"));
    let fault: serde_json::Value = serde_json::from_str(&fault).expect("a JSON line");
    assert_eq!(fault["level"], "WARN", "{fault}");
    assert_eq!(fault["fields"]["code"], "R0002", "{fault}");
    assert_eq!(fault["fields"]["position"], 1, "{fault}");
    assert_eq!(fault["fields"]["projection"], "ratio@v1", "{fault}");
    assert!(
        fault["fields"]["fault"]
            .as_str()
            .is_some_and(|m| m.contains("division by zero")),
        "{fault}"
    );
    // Every line the node logged is JSON (the ready line aside, which is for tools).
    let lines = node.stderr.lock().map(|l| l.clone()).unwrap_or_default();
    for line in lines
        .iter()
        .filter(|l| !l.starts_with("datamesh listening on"))
    {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_have_no_colour_when_stderr_is_not_a_terminal() {
    let guard = temp_dir("logs-text", Engine::Jit);
    let node = Node::start_logging(&guard.path().join("data"), Engine::Jit, &[], None);
    wait_for_line(&node, "the serving line", |l| l.contains("serving"));
    let lines = node.stderr.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "ANSI escapes in a pipe: {lines:?}"
    );
}
