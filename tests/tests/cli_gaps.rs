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

/// `deploy --wait` answers once the program's versions have applied every event the
/// log held at the deploy (a rebuild over thousands of events), says so in its line,
/// and exits 1, naming the fault, when one of them faults instead: the deploy itself
/// stands either way.
#[test]
fn deploy_waits_until_its_projections_caught_up() {
    let guard = temp_dir("deploy-wait", Engine::Jit);
    let node = with_balances(&guard);
    let events = guard.path().join("events.jsonl");
    let lines: String = (0..50_000)
        .map(|i| {
            format!(
                "{{\"type\":\"Deposited\",\"data\":{{\"account\":\"a{}\",\"amount\":{}}}}}\n",
                i % 300,
                i % 7
            )
        })
        .collect();
    std::fs::write(&events, lines).expect("write");
    let (code, _, err) = node.cli(&["append", "--file", events.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");

    let program = guard.path().join("counts.dmp");
    std::fs::write(
        &program,
        "event Deposited { account: string, amount: int }\nprojection counts { key account state { n: int } on Deposited { n += 1 } }\n",
    )
    .expect("write");
    let (code, out, err) = node.cli(&["deploy", program.to_str().expect("utf-8"), "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(line["started"], serde_json::json!(["counts@v1"]), "{out}");
    assert_eq!(line["caught_up_to"], 50_000, "{out}");
    // Caught up when it answered: a read that does not wait sees every event.
    let (code, out, err) = node.cli(&["projections", "--json"]);
    assert_eq!(code, 0, "{err}");
    let counts = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|p| p["projection"] == "counts")
        .unwrap_or_else(|| panic!("counts listed: {out}"));
    assert_eq!(counts["position"], 50_000, "{out}");

    // A version that faults on the first event: exit 1 with the fault, deployed anyway.
    let faulty = guard.path().join("faulty.dmp");
    std::fs::write(
        &faulty,
        "event Deposited { account: string, amount: int }\nprojection ratio { key account state { r: int } on Deposited { r = 100 / (event.amount - event.amount) } }\n",
    )
    .expect("write");
    let (code, out, err) = node.cli(&["deploy", faulty.to_str().expect("utf-8"), "--wait", "60"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("ratio@v1"), "{out}");
    assert!(err.contains("faulted") && err.contains("R0002"), "{err}");
}
