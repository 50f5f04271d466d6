//! CLI behaviour a new user relies on (issue 13): `scan` says when more documents
//! remain and continues `--after` a key; `tail --stream` reads one stream; `projections`
//! lists the versions; a keyed `get` without a key says a key is needed; `append
//! --file` reports the new head.

mod common;

use common::*;

/// A node in `guard` with a `balances` projection (total per account) deployed.
fn with_balances(guard: &tempfile::TempDir) -> Node {
    let node = Node::start(&guard.path().join("data"), Engine::Jit, &[]);
    let program = guard.path().join("p.dmp");
    std::fs::write(
        &program,
        "event Deposited { account: string, amount: int }\nprojection balances { key account state { total: int } on Deposited { total += event.amount } }\n",
    )
    .expect("write");
    let (code, out, err) = node.cli(&["deploy", program.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    node
}

#[test]
fn scan_pages_tail_reads_a_stream_and_get_asks_for_a_key() {
    let guard = temp_dir("cli-gaps", Engine::Jit);
    let node = with_balances(&guard);
    let events = guard.path().join("events.jsonl");
    let lines: String = (0..5)
        .map(|i| {
            format!(
                "{{\"type\":\"Deposited\",\"data\":{{\"account\":\"a{i}\",\"amount\":{}}},\"stream\":\"account-a{}\"}}\n",
                i + 1,
                i % 2
            )
        })
        .collect();
    std::fs::write(&events, lines).expect("write");
    let (code, out, err) = node.cli(&["append", "--file", events.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"head\":5"), "{out}");
    let (code, _, err) = node.cli(&["get", "balances", "a4", "--min-position", "5"]);
    assert_eq!(code, 0, "{err}");

    // Two of five, then the rest after the last key printed.
    let (code, out, err) = node.cli(&["scan", "balances", "--limit", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        err.contains("more documents: continue with --after a1"),
        "{err}"
    );
    let (code, out, err) = node.cli(&["scan", "balances", "--after", "a1"]);
    assert_eq!(code, 0, "{err}");
    let keys: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["key"]
                .as_str()
                .expect("key")
                .to_owned()
        })
        .collect();
    assert_eq!(keys, ["a2", "a3", "a4"]);
    assert!(!err.contains("more"), "{err}");

    // One stream, by stream version.
    let (code, out, err) = node.cli(&["tail", "--stream", "account-a1", "--from", "1"]);
    assert_eq!(code, 0, "{err}");
    let accounts: Vec<String> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            v["data"]["account"].as_str().expect("account").to_owned()
        })
        .collect();
    assert_eq!(accounts, ["a3"], "{out}");

    let (code, out, err) = node.cli(&["projections"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("PROJECTION"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("balances") && l.contains("v1") && l.contains("string")),
        "{out}"
    );

    let (code, _, err) = node.cli(&["get", "balances"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("give a key (`datamesh get balances KEY`)"),
        "{err}"
    );
}

/// `append --read-back PROJECTION:KEY` prints the document as it is once the event is
/// applied (read-your-writes in one call), or why it could not be read; a malformed
/// `--read-back` is a usage error and appends nothing.
#[test]
fn append_reads_a_document_back() {
    let guard = temp_dir("cli-read-back", Engine::Jit);
    let node = with_balances(&guard);
    for (amount, total) in [(5, 5), (7, 12)] {
        let data = format!(r#"{{"account":"a","amount":{amount}}}"#);
        let (code, out, err) = node.cli(&[
            "append",
            "Deposited",
            &data,
            "--read-back",
            "balances:a",
            "--read-back",
            "balances:zz",
        ]);
        assert_eq!(code, 0, "{err}");
        let printed: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(printed["read_back"][0]["document"]["total"], total, "{out}");
        assert_eq!(
            printed["read_back"][1]["error"]["code"], "NotFound",
            "{out}"
        );
    }
    let (code, _, err) = node.cli(&[
        "append",
        "Deposited",
        r#"{"account":"a","amount":1}"#,
        "--read-back",
        "balances",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("PROJECTION:KEY"), "{err}");
    let (code, out, err) = node.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(status["head"], 2, "the refused append wrote nothing");
}
