//! `datamesh status` for people (issue 13): tables by default, `--json` for scripts,
//! `--watch` redrawing every second with the rates the node measures.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use datamesh_runtime::api::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_redraws_with_append_and_fold_rates() {
    let guard = temp_dir("status", Engine::Jit);
    let node = Node::start(&guard.path().join("data"), Engine::Jit, &[]);
    let mut client = node.client().await;
    client
        .deploy(pb::DeployRequest {
            source: "event E { n: int }\nprojection total { state { n: int = 0 } on E { n += event.n } }".into(),
            origin: "total.dmp".into(),
        })
        .await
        .expect("deploy");
    let mut watch = Command::new(BIN)
        .args(["--node", &node.url, "status", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("status --watch");
    // Appends for three and a half seconds while it redraws.
    let until = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < until {
        client
            .append(pb::AppendRequest {
                events: (0..20).map(|_| event("E", r#"{"n":1}"#, "", "")).collect(),
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = watch.kill();
    let mut out = String::new();
    watch
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("read");
    let _ = watch.wait();
    let tables: Vec<&str> = out.split("node datamesh  head ").skip(1).collect();
    assert!(tables.len() >= 3, "{} redraws:\n{out}", tables.len());
    // Once the node has two samples a second apart, it reports rates.
    let last = tables.last().expect("a table");
    assert!(!last.contains("appends -"), "no append rate:\n{last}");
    let row = last
        .lines()
        .find(|l| l.starts_with("total@v1"))
        .expect("the projection's row");
    assert!(row.contains("/s"), "no fold rate: {row}");

    let (code, json, err) = node.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert!(
        status["append_rate"].as_f64().is_some_and(|r| r > 0.0),
        "{json}"
    );
    assert!(
        status["projections"][0]["fold_rate"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{json}"
    );
}
