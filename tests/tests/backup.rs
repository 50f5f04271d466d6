//! `datamesh backup`, as an operator uses it: taken from a node that is appending, the
//! copy holds every event acknowledged before it started, in order, and a node started
//! on it serves the deployed projections again (rebuilt from the copied log); taken
//! from a quiet node, the restored node's documents are the original's. A target that
//! is not empty and a source that does not verify are refused, leaving nothing behind.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use datamesh_runtime::api::pb;

/// `datamesh backup --data DATA OUT`: (exit code, stdout, stderr).
fn backup(data: &Path, out: &Path) -> (i32, String, String) {
    cli_at(
        "http://127.0.0.1:1",
        &[
            "backup",
            "--data",
            data.to_str().expect("utf-8"),
            out.to_str().expect("utf-8"),
        ],
    )
}

/// 200 deposits to 50 accounts, numbered from `n`.
fn deposits(n: u64) -> Vec<pb::Event> {
    (0..200)
        .map(|i| {
            let k = n + i;
            event(
                "Deposited",
                &format!(r#"{{"account":"a{}","amount":{}}}"#, k % 50, k % 97 + 1),
                &format!("account-{}", k % 50),
                "",
            )
        })
        .collect()
}

/// Deploys the bank example and opens its 50 accounts.
async fn bank(node: &Node) {
    let (code, out, err) = node.cli(&["deploy", "examples/bank/bank.dmp"]);
    assert_eq!(code, 0, "{out}{err}");
    let opened = (0..50)
        .map(|a| {
            event(
                "AccountOpened",
                &format!(r#"{{"account":"a{a}","owner":"o{a}"}}"#),
                &format!("account-{a}"),
                "",
            )
        })
        .collect();
    node.client()
        .await
        .append(pb::AppendRequest {
            events: opened,
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("open accounts");
}

/// The node's documents of `balances` after it has applied everything before `head`.
fn balances(node: &Node, head: u64) -> String {
    let (code, out, err) = node.cli(&["get", "totals", "--min-position", &head.to_string()]);
    assert!(code == 0 || code == 1, "{out}{err}");
    let (code, out, err) = node.cli(&["scan", "balances"]);
    assert_eq!(code, 0, "{out}{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_an_appending_node_holds_what_was_acknowledged_and_a_node_starts_on_it() {
    let dir = temp_dir("backup", Engine::Jit);
    let data = dir.path().join("data");
    // Small segments, so the copy crosses sealed segments and the active one.
    let node = Node::start(&data, Engine::Jit, &["--segment-mib", "1"]);
    bank(&node).await;

    // Appends go on while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let stop = stop.clone();
        let mut client = node.client().await;
        tokio::spawn(async move {
            let mut n = 0u64;
            // Bounded: at most 400 requests (80,000 events), stopped earlier.
            while !stop.load(Ordering::Relaxed) && n < 80_000 {
                client
                    .append(pb::AppendRequest {
                        events: deposits(n),
                        expected: vec![],
                        read_back: Vec::new(),
                    })
                    .await
                    .expect("append");
                n += 200;
            }
            n
        })
    };
    let mut client = node.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while head(&mut client).await < 15_000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acknowledged = head(&mut client).await;
    let first = dir.path().join("first");
    let (code, out, err) = {
        let (data, first) = (data.clone(), first.clone());
        tokio::task::spawn_blocking(move || backup(&data, &first))
            .await
            .expect("backup runs")
    };
    stop.store(true, Ordering::Relaxed);
    let appended = appender.await.expect("appender");
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("json report");
    let copied = report["head"].as_u64().expect("head");
    let final_head = head(&mut client).await;
    assert!(
        acknowledged >= 15_000 && copied >= acknowledged && copied <= final_head,
        "acknowledged before: {acknowledged}, in the copy: {copied}, at the end: {final_head} ({appended} appended)"
    );
    assert!(
        report["segments"].as_u64().expect("segments") >= 2,
        "{report}"
    );
    assert_eq!(
        report["files"],
        serde_json::json!(["catalog", "audit.jsonl"])
    );

    // A node on the copy: the same events, the projections deployed again and rebuilt.
    let original = read_all(&mut client).await;
    let restored = Node::start(&first, Engine::Jit, &[]);
    let mut restored_client = restored.client().await;
    let events = read_all(&mut restored_client).await;
    assert_eq!(events.len() as u64, copied);
    assert_eq!(events[..], original[..events.len()]);
    let (code, out, err) = restored.cli(&["projections"]);
    assert_eq!(code, 0, "{out}{err}");
    for projection in ["balances", "totals", "daily_volume"] {
        assert!(out.contains(projection), "{projection} missing: {out}");
    }
    let rebuilt = balances(&restored, copied);
    assert_eq!(rebuilt.lines().count(), 50, "{rebuilt}");
    drop(restored);

    // From a quiet node: the restored documents are the original's.
    let second = dir.path().join("second");
    std::fs::create_dir(&second).expect("an empty target is taken");
    let (code, out, err) = backup(&data, &second);
    assert_eq!(code, 0, "{out}{err}");
    let quiet = balances(&node, final_head);
    let restored = Node::start(&second, Engine::Jit, &[]);
    assert_eq!(balances(&restored, final_head), quiet);
}

#[test]
fn a_target_with_files_and_a_source_that_does_not_verify_are_refused_leaving_nothing() {
    let dir = temp_dir("backup-refused", Engine::Jit);
    let data = dir.path().join("data");
    {
        let mut node = Node::start(&data, Engine::Jit, &["--segment-mib", "1"]);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            bank(&node).await;
            // A second deploy: the catalog then has a record before its last one.
            let notes = dir.path().join("notes.dmp");
            std::fs::write(
                &notes,
                "event Noted { text: string }\nprojection notes v1 { key text state { n: int } on Noted { n += 1 } }\n",
            )
            .expect("program");
            let (code, out, err) = node.cli(&["deploy", notes.to_str().expect("utf-8")]);
            assert_eq!(code, 0, "{out}{err}");
            let mut client = node.client().await;
            for n in 0..80 {
                client
                    .append(pb::AppendRequest {
                        events: deposits(n * 200),
                        expected: vec![],
                        read_back: Vec::new(),
                    })
                    .await
                    .expect("append");
            }
        });
        node.terminate();
    }

    // A target with a file in it: refused, the file untouched.
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).expect("dir");
    std::fs::write(taken.join("notes.txt"), "mine").expect("file");
    let (code, _, err) = backup(&data, &taken);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_dir(&taken).expect("dir").count(),
        1,
        "nothing added"
    );
    assert_eq!(
        std::fs::read_to_string(taken.join("notes.txt")).expect("file"),
        "mine"
    );

    // Not a data directory.
    let (code, _, err) = backup(&dir.path().join("nothing"), &dir.path().join("out0"));
    assert_eq!(code, 2, "{err}");
    assert!(!dir.path().join("out0").exists());

    // A flipped byte in the catalog's first record (the bank deploy; the notes deploy
    // follows it): a node would refuse to start on it, and a backup refuses it.
    let catalog = data.join("catalog");
    let intact = std::fs::read(&catalog).expect("catalog");
    let mut damaged = intact.clone();
    damaged[16 + 8 + 4] ^= 0x01;
    std::fs::write(&catalog, &damaged).expect("damage");
    let out = dir.path().join("out-catalog");
    let (code, _, err) = backup(&data, &out);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("catalog does not verify"), "{err}");
    assert!(!out.exists(), "the failed copy is removed");
    std::fs::write(&catalog, &intact).expect("repaired");

    // A flipped byte in the middle of the first (sealed) segment: a node would refuse
    // this log, and so does a backup, with no copy left.
    let mut segments: Vec<_> = std::fs::read_dir(data.join("log"))
        .expect("log")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    let mut bytes = std::fs::read(&segments[0]).expect("segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&segments[0], &bytes).expect("damage");
    let out = dir.path().join("out1");
    let (code, _, err) = backup(&data, &out);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not verify"), "{err}");
    assert!(!out.exists(), "the failed copy is removed");
}
