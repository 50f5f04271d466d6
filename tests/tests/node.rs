//! The node as users run it: real `datamesh` processes on loopback ports, driven over
//! gRPC and through the CLI, killed with SIGKILL, restarted and checked.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

use datamesh_runtime::api::pb;

async fn bank_end_to_end_through_the_cli(engine: Engine) {
    let data_guard = temp_dir("bank", engine);
    let data = data_guard.path().to_path_buf();
    let node = Node::start(&data, engine, &[]);
    let (code, out, err) = node.cli(&["deploy", "examples/bank/bank.dmp"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("balances@v1"), "{out}");
    let events = data.join("events.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(root().join("examples/bank/events.jsonl"))
        .expect("bank events")
        .lines()
        .filter(|l| !l.contains("PaymentSettled"))
        .map(str::to_owned)
        .collect();
    std::fs::write(&events, lines.join("\n")).expect("write");
    // The fixtures carry `dmc run` times, which the node cannot take: it stamps events.
    let (code, out, err) = node.cli(&[
        "append",
        "--file",
        events.to_str().expect("path"),
        "--drop-time",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"appended\":7"), "{out}");
    let (code, out, err) = node.cli(&["get", "balances", "a1", "--min-position", "7"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["balance"], 140);
    assert_eq!(doc["tx_count"], 3);
    assert_eq!(doc["owner"], "ann");
    let (code, out, _) = node.cli(&["get", "totals", "--min-position", "7"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).expect("json")["deposited"],
        370
    );
    let (code, _, err) = node.cli(&["get", "balances", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("no document at key `nobody`"), "{err}");
    // Single appends with an expected version, and their conflicts.
    let (code, out, err) = node.cli(&[
        "append",
        "Deposited",
        r#"{"account":"a1","amount":5}"#,
        "--stream",
        "account-a1",
        "--expect-version",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"positions\":[7]"), "{out}");
    let (code, _, err) = node.cli(&[
        "append",
        "Deposited",
        r#"{"account":"a1","amount":5}"#,
        "--stream",
        "account-a1",
        "--expect-version",
        "3",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("stream `account-a1`: expected version 3, but its last version is 4"),
        "{err}"
    );
    let (code, out, _) = node.cli(&["scan", "balances", "--limit", "10"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2);
    let (code, out, _) = node.cli(&["tail", "--from", "6"]);
    assert_eq!(code, 0);
    let tail: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1]["position"], 7);
    assert_eq!(tail[1]["stream_version"], 4);
    let (code, out, _) = node.cli(&["status", "--json"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["head"], 8);
    // For people: tables.
    let (code, out, _) = node.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("node datamesh  head 8  "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("PROJECTION") && l.contains("STATE")),
        "{out}"
    );
    let status = node
        .client()
        .await
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.engine, engine.name());
}

async fn scan_pages_by_prefix_and_range(engine: Engine) {
    let data_guard = temp_dir("scan", engine);
    let data = data_guard.path().to_path_buf();
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let source = std::fs::read_to_string(root().join("examples/bank/bank.dmp")).expect("bank");
    client
        .deploy(pb::DeployRequest {
            source,
            origin: "bank.dmp".into(),
        })
        .await
        .expect("deploy");
    let events: Vec<pb::Event> = (0..30)
        .map(|i| {
            event(
                "Deposited",
                &format!(r#"{{"account":"acc-{:02}","amount":{}}}"#, i % 10, i + 1),
                "",
                "",
            )
        })
        .collect();
    let head = client
        .append(pb::AppendRequest {
            events,
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append")
        .into_inner()
        .head;
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .scan(pb::ScanRequest {
                projection: "balances".into(),
                limit: 4,
                page_token: token,
                min_position: head,
                ..Default::default()
            })
            .await
            .expect("scan")
            .into_inner();
        keys.extend(page.documents.iter().map(|d| d.key.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..10).map(|i| format!("acc-{i:02}")).collect();
    assert_eq!(
        keys, expected,
        "every document once, in key order, across pages"
    );
    let range = client
        .scan(pb::ScanRequest {
            projection: "balances".into(),
            start: "acc-03".into(),
            end: "acc-06".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(
        range
            .documents
            .iter()
            .map(|d| d.key.as_str())
            .collect::<Vec<_>>(),
        ["acc-03", "acc-04", "acc-05"]
    );
    let composite = client
        .scan(pb::ScanRequest {
            projection: "daily_volume".into(),
            prefix: r#"["acc-07"]"#.into(),
            ..Default::default()
        })
        .await
        .expect("prefix")
        .into_inner();
    assert_eq!(composite.documents.len(), 1);
    let doc: serde_json::Value =
        serde_json::from_str(&composite.documents[0].document).expect("json");
    assert_eq!(doc["volume"], 8 + 18 + 28);
}

async fn bad_input_gets_a_precise_status_and_changes_nothing(engine: Engine) {
    let data_guard = temp_dir("bad", engine);
    let data = data_guard.path().to_path_buf();
    let node = Node::start(&data, engine, &["--strict"]);
    let mut client = node.client().await;
    // Before any deploy, a read names the fix.
    let (code, _, stderr) = node.cli(&["get", "balances", "a"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no projection `balances` is deployed (none is: deploy a program first)"),
        "{stderr}"
    );
    let source = std::fs::read_to_string(root().join("examples/bank/bank.dmp")).expect("bank");
    client
        .deploy(pb::DeployRequest {
            source: source.clone(),
            origin: "bank.dmp".into(),
        })
        .await
        .expect("deploy");
    client
        .append(pb::AppendRequest {
            events: vec![event(
                "Deposited",
                r#"{"account":"a","amount":1}"#,
                "s",
                "id-1",
            )],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("good append");
    let before = head(&mut client).await;
    let append = |events: Vec<pb::Event>, expected: Vec<pb::ExpectedVersion>| pb::AppendRequest {
        events,
        expected,
        read_back: Vec::new(),
    };
    let cases: Vec<(&str, pb::AppendRequest, tonic::Code, &str)> = vec![
        (
            "malformed JSON",
            append(vec![event("Deposited", "{nope", "", "")], vec![]),
            tonic::Code::InvalidArgument,
            "not valid JSON",
        ),
        (
            "wrong field type",
            append(
                vec![event(
                    "Deposited",
                    r#"{"account":"a","amount":"1"}"#,
                    "",
                    "",
                )],
                vec![],
            ),
            tonic::Code::InvalidArgument,
            "field `amount`: expected int",
        ),
        (
            "missing field",
            append(
                vec![event("Deposited", r#"{"account":"a"}"#, "", "")],
                vec![],
            ),
            tonic::Code::InvalidArgument,
            "field `amount`: missing",
        ),
        (
            "unknown field",
            append(
                vec![event(
                    "Deposited",
                    r#"{"account":"a","amount":1,"x":2}"#,
                    "",
                    "",
                )],
                vec![],
            ),
            tonic::Code::InvalidArgument,
            "field `x`",
        ),
        (
            "undeclared type, strict",
            append(vec![event("Refunded", "{}", "", "")], vec![]),
            tonic::Code::InvalidArgument,
            "undeclared event type",
        ),
        (
            "one bad event fails the whole batch",
            append(
                vec![
                    event("Deposited", r#"{"account":"a","amount":1}"#, "", ""),
                    event("Deposited", r#"{"account":"a","amount":true}"#, "", ""),
                ],
                vec![],
            ),
            tonic::Code::InvalidArgument,
            "event 1 (Deposited)",
        ),
        (
            "version conflict",
            append(
                vec![event("Deposited", r#"{"account":"a","amount":1}"#, "s", "")],
                vec![pb::ExpectedVersion {
                    stream: "s".into(),
                    expect: Some(pb::expected_version::Expect::NoStream(true)),
                }],
            ),
            tonic::Code::FailedPrecondition,
            "stream `s`: expected no stream, but its last version is 0",
        ),
        (
            "partially repeated ids",
            append(
                vec![
                    event("Deposited", r#"{"account":"a","amount":1}"#, "", "id-1"),
                    event("Deposited", r#"{"account":"a","amount":1}"#, "", "id-2"),
                ],
                vec![],
            ),
            tonic::Code::AlreadyExists,
            "`id-1` is already in the log at position 0",
        ),
        (
            "the same id twice",
            append(
                vec![
                    event("Deposited", r#"{"account":"a","amount":1}"#, "", "d"),
                    event("Deposited", r#"{"account":"a","amount":1}"#, "", "d"),
                ],
                vec![],
            ),
            tonic::Code::InvalidArgument,
            "appears twice",
        ),
        (
            "oversized batch",
            append(
                (0..10_001)
                    .map(|_| event("Deposited", r#"{"account":"a","amount":1}"#, "", ""))
                    .collect(),
                vec![],
            ),
            tonic::Code::ResourceExhausted,
            "the limit is 10000",
        ),
        (
            "empty request",
            append(vec![], vec![]),
            tonic::Code::InvalidArgument,
            "at least one event",
        ),
    ];
    for (name, request, code, message) in cases {
        let status = client.append(request).await.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {}", status.message());
        assert!(
            status.message().contains(message),
            "{name}: `{}` lacks `{message}`",
            status.message()
        );
        assert_eq!(head(&mut client).await, before, "{name} moved the log head");
    }
    // A retried request returns the original positions and appends nothing.
    let retry = client
        .append(append(
            vec![event(
                "Deposited",
                r#"{"account":"a","amount":1}"#,
                "s",
                "id-1",
            )],
            vec![],
        ))
        .await
        .expect("retry")
        .into_inner();
    assert!(retry.deduplicated);
    assert_eq!(retry.positions, vec![0]);
    assert_eq!(head(&mut client).await, before);

    let invalid = client
        .deploy(pb::DeployRequest {
            source:
                "event E { n: int }\nprojection p { state { n: int = 0 } on E { n += event.m } }"
                    .into(),
            origin: "bad.dmp".into(),
        })
        .await
        .expect_err("invalid program");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert!(invalid.message().contains("E0105"), "{}", invalid.message());
    let details = datamesh_runtime::api::deploy_diagnostics(&invalid).expect("details");
    assert_eq!(details.diagnostics[0].code, "E0105");
    assert_eq!(
        (details.diagnostics[0].line, details.diagnostics[0].column),
        (2, 55)
    );
    let changed = source.replace(
        "balance += event.amount; tx_count += 1",
        "balance += event.amount * 2; tx_count += 1",
    );
    let conflict = client
        .deploy(pb::DeployRequest {
            source: changed,
            origin: "bank.dmp".into(),
        })
        .await
        .expect_err("conflict");
    assert_eq!(conflict.code(), tonic::Code::FailedPrecondition);
    assert!(
        conflict
            .message()
            .contains("deploy the change as a new version (v2)"),
        "{}",
        conflict.message()
    );
    let again = client
        .deploy(pb::DeployRequest {
            source,
            origin: "bank.dmp".into(),
        })
        .await
        .expect("same source")
        .into_inner();
    assert!(again.started.is_empty() && again.unchanged.len() == 3);

    let missing = client
        .get(pb::GetRequest {
            projection: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("no projection");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(
        missing
            .message()
            .contains("(deployed: balances@v1, totals@v1, daily_volume@v1)"),
        "{missing:?}"
    );
    let bad_key = client
        .get(pb::GetRequest {
            projection: "daily_volume".into(),
            key: "a".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad key");
    assert_eq!(bad_key.code(), tonic::Code::InvalidArgument);
    assert_eq!(head(&mut client).await, before);
}

async fn kill_9_loses_no_acknowledged_event_and_projections_match_a_rebuild(engine: Engine) {
    let data_guard = temp_dir("crash", engine);
    let data = data_guard.path().to_path_buf();
    let mut node = Node::start(&data, engine, &[]);
    let source = std::fs::read_to_string(root().join("examples/bank/bank.dmp")).expect("bank");
    node.client()
        .await
        .deploy(pb::DeployRequest {
            source: source.clone(),
            origin: "bank.dmp".into(),
        })
        .await
        .expect("deploy");
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut client = node.client().await;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{w}-{i}");
                let data = format!(r#"{{"account":"acc-{}","amount":{}}}"#, i % 13, i % 97 + 1);
                let request = pb::AppendRequest {
                    events: vec![event("Deposited", &data, "", &id)],
                    expected: vec![],
                    read_back: Vec::new(),
                };
                match client.append(request).await {
                    Ok(r) => acked
                        .lock()
                        .expect("lock")
                        .push((id, r.into_inner().positions[0])),
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 100,
        "only {} appends acknowledged before the kill",
        acked.len()
    );

    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let events = read_all(&mut client).await;
    let recovered = head(&mut client).await;
    assert_eq!(events.len() as u64, recovered);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.position, i as u64, "positions are dense and ordered");
    }
    let mut seen = std::collections::HashSet::new();
    for e in &events {
        assert!(seen.insert(e.id.clone()), "id {} appears twice", e.id);
    }
    for (id, position) in &acked {
        let e = events
            .get(*position as usize)
            .unwrap_or_else(|| panic!("acknowledged {id} at {position} is lost"));
        assert_eq!(&e.id, id, "acknowledged event at {position} changed");
    }
    // The projections after restart equal a fresh fold of the log.
    let checked = datamesh_compiler::check::check_source(&source);
    let program = checked.program.expect("bank checks");
    let mut fold = datamesh_compiler::interp::Fold::new(&program);
    for e in &events {
        let id = program.event_id(&e.r#type).expect("declared");
        let json: serde_json::Value = serde_json::from_str(&e.data).expect("json");
        let row = datamesh_compiler::exec::codec::decode_payload(&program.events[id], &json)
            .expect("row");
        let meta = datamesh_compiler::exec::Meta {
            time: datamesh_stdlib::time::parse_rfc3339(&e.time).expect("time"),
            ..Default::default()
        };
        fold.apply_local(id, &row, meta);
    }
    let expected = datamesh_compiler::exec::codec::documents_json(&program, &fold.projections);
    let mut actual = serde_json::Map::new();
    for doc in client
        .scan(pb::ScanRequest {
            projection: "balances".into(),
            limit: 1000,
            min_position: recovered,
            ..Default::default()
        })
        .await
        .expect("scan")
        .into_inner()
        .documents
    {
        actual.insert(doc.key, serde_json::from_str(&doc.document).expect("json"));
    }
    assert_eq!(serde_json::Value::Object(actual), expected["balances"]);
    let totals: serde_json::Value = serde_json::from_str(
        &client
            .get(pb::GetRequest {
                projection: "totals".into(),
                min_position: recovered,
                ..Default::default()
            })
            .await
            .expect("totals")
            .into_inner()
            .document,
    )
    .expect("json");
    assert_eq!(totals, expected["totals"]);
    // A producer retries after the crash: every event the log kept, acknowledged or
    // not, is recognised by its id (the id index was rebuilt on open) and nothing is
    // appended twice.
    let head_before = head(&mut client).await;
    for e in events.iter().step_by(7) {
        let retried = client
            .append(pb::AppendRequest {
                events: vec![event("Deposited", &e.data, "", &e.id)],
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("retry")
            .into_inner();
        assert!(retried.deduplicated, "{} was appended again", e.id);
        assert_eq!(retried.positions, vec![e.position], "{}", e.id);
    }
    assert_eq!(head(&mut client).await, head_before);
}

async fn a_torn_tail_is_cut_on_restart_and_never_served(engine: Engine) {
    let data_guard = temp_dir("torn", engine);
    let data = data_guard.path().to_path_buf();
    let mut node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    for i in 0..10 {
        client
            .append(pb::AppendRequest {
                events: vec![event("Noted", &format!(r#"{{"n":{i}}}"#), "", "")],
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append");
    }
    assert_eq!(node.terminate(), Some(0), "SIGTERM shuts down cleanly");
    let segment = std::fs::read_dir(data.join("log"))
        .expect("log dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment");
    let len = std::fs::metadata(&segment).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open")
        .set_len(len - 5)
        .expect("truncate");
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let events = read_all(&mut client).await;
    assert_eq!(
        events.len(),
        9,
        "the torn record is cut, the rest is intact"
    );
    assert_eq!(events[8].data, r#"{"n":8}"#);
    let next = client
        .append(pb::AppendRequest {
            events: vec![event("Noted", r#"{"n":99}"#, "", "")],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append after recovery")
        .into_inner();
    assert_eq!(next.positions, vec![9]);
    assert!(
        node.stderr
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l.contains("cutting the torn tail"))
    );
}

async fn a_new_version_rebuilds_beside_the_old_one_and_is_promoted_and_retired(engine: Engine) {
    let data_guard = temp_dir("versions", engine);
    let data = data_guard.path().to_path_buf();
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let v1 = "event Deposited { account: string, amount: int }\nprojection balances v1 { key account state { balance: int = 0 } on Deposited { balance += event.amount } }\n";
    client
        .deploy(pb::DeployRequest {
            source: v1.into(),
            origin: "v1.dmp".into(),
        })
        .await
        .expect("v1");
    let events: Vec<pb::Event> = (1..=50)
        .map(|i| {
            event(
                "Deposited",
                &format!(r#"{{"account":"a","amount":{i}}}"#),
                "",
                "",
            )
        })
        .collect();
    let head = client
        .append(pb::AppendRequest {
            events,
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append")
        .into_inner()
        .head;
    let v2 = v1
        .replace("v1", "v2")
        .replace("balance += event.amount", "balance += event.amount * 2");
    let deployed = client
        .deploy(pb::DeployRequest {
            source: v2,
            origin: "v2.dmp".into(),
        })
        .await
        .expect("v2")
        .into_inner();
    assert_eq!(deployed.started, vec!["balances@v2"]);
    let get = |version: u32| pb::GetRequest {
        projection: "balances".into(),
        key: "a".into(),
        min_position: head,
        version,
    };
    let doc = |r: pb::GetResponse| {
        serde_json::from_str::<serde_json::Value>(&r.document).expect("json")["balance"].clone()
    };
    assert_eq!(
        doc(client.get(get(1)).await.expect("v1").into_inner()),
        1275
    );
    assert_eq!(
        doc(client.get(get(2)).await.expect("v2").into_inner()),
        2550
    );
    // Once v2 has caught up it is the default.
    assert_eq!(
        doc(client.get(get(0)).await.expect("active").into_inner()),
        2550
    );
    let list = client
        .list_projections(pb::ListProjectionsRequest {})
        .await
        .expect("list")
        .into_inner();
    let active: Vec<(u32, bool)> = list
        .projections
        .iter()
        .map(|p| (p.version, p.active))
        .collect();
    assert_eq!(active, vec![(1, false), (2, true)]);

    // Promote pins the version reads go to; the promoted one cannot be retired.
    let promote = |version: u32| pb::PromoteRequest {
        name: "balances".into(),
        version,
    };
    let retire = |version: u32| pb::RetireRequest {
        name: "balances".into(),
        version,
    };
    let promoted = client.promote(promote(1)).await.expect("promote v1");
    assert_eq!(promoted.into_inner().active, "balances@v1");
    assert_eq!(
        doc(client.get(get(0)).await.expect("active").into_inner()),
        1275
    );
    let refused = client.retire(retire(1)).await.expect_err("v1 is promoted");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    let missing = client.promote(promote(7)).await.expect_err("no v7");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    assert!(missing.message().contains("v1, v2"), "{missing:?}");
    // Roll forward: promote v2, retire v1; its documents are gone.
    client.promote(promote(2)).await.expect("promote v2");
    let retired = client
        .retire(retire(1))
        .await
        .expect("retire v1")
        .into_inner();
    assert_eq!(
        (retired.retired.as_str(), retired.active.as_str()),
        ("balances@v1", "balances@v2")
    );
    let gone = client.get(get(1)).await.expect_err("v1 retired");
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    let redeploy = client
        .deploy(pb::DeployRequest {
            source: v1.into(),
            origin: "v1.dmp".into(),
        })
        .await
        .expect_err("a retired version stays retired");
    assert_eq!(
        redeploy.code(),
        tonic::Code::FailedPrecondition,
        "{redeploy:?}"
    );
    let versions = |list: pb::ListProjectionsResponse| -> Vec<(u32, bool, bool)> {
        list.projections
            .iter()
            .map(|p| (p.version, p.active, p.promoted))
            .collect()
    };
    let list = client
        .list_projections(pb::ListProjectionsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(versions(list), vec![(2, true, true)]);
    // Both survive a restart, and v2 goes on folding.
    drop(client);
    drop(node);
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let head = client
        .append(pb::AppendRequest {
            events: vec![event("Deposited", r#"{"account":"a","amount":5}"#, "", "")],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append")
        .into_inner()
        .head;
    let now = client
        .get(pb::GetRequest {
            projection: "balances".into(),
            key: "a".into(),
            min_position: head,
            version: 0,
        })
        .await
        .expect("v2 after restart")
        .into_inner();
    assert_eq!(doc(now), 2560);
    let gone = client.get(get(1)).await.expect_err("v1 still retired");
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    let list = client
        .list_projections(pb::ListProjectionsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(versions(list), vec![(2, true, true)]);
}

async fn a_fault_stops_only_its_projection(engine: Engine) {
    let data_guard = temp_dir("fault", engine);
    let data = data_guard.path().to_path_buf();
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let source = "event E { n: int }\nprojection ratio { state { v: int = 0 } on E { v = 100 / event.n } }\nprojection count { state { n: int = 0 } on E { n += 1 } }\n";
    client
        .deploy(pb::DeployRequest {
            source: source.into(),
            origin: "f.dmp".into(),
        })
        .await
        .expect("deploy");
    let events = ["4", "0", "5"]
        .iter()
        .map(|n| event("E", &format!(r#"{{"n":{n}}}"#), "", ""))
        .collect();
    let head = client
        .append(pb::AppendRequest {
            events,
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append")
        .into_inner()
        .head;
    let count = client
        .get(pb::GetRequest {
            projection: "count".into(),
            min_position: head,
            ..Default::default()
        })
        .await
        .expect("count");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&count.into_inner().document).expect("json")["n"],
        3
    );
    let waiting = client
        .get(pb::GetRequest {
            projection: "ratio".into(),
            min_position: head,
            ..Default::default()
        })
        .await
        .expect_err("faulted");
    assert_eq!(waiting.code(), tonic::Code::FailedPrecondition);
    assert!(
        waiting
            .message()
            .contains("R0002 division by zero at position 1"),
        "{}",
        waiting.message()
    );
    let ratio = client
        .get(pb::GetRequest {
            projection: "ratio".into(),
            ..Default::default()
        })
        .await
        .expect("stale read");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ratio.into_inner().document).expect("json")["v"],
        25
    );
    let status = client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let ratio = status
        .projections
        .iter()
        .find(|p| p.name == "ratio")
        .expect("listed");
    assert_eq!((ratio.state.as_str(), ratio.position), ("faulted", 1));
}

async fn subscribe_catches_up_then_follows_live_appends_and_health_answers(engine: Engine) {
    let data_guard = temp_dir("subscribe", engine);
    let data = data_guard.path().to_path_buf();
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let noted = |i: u32| event("Noted", &format!(r#"{{"n":{i}}}"#), "", "");
    client
        .append(pb::AppendRequest {
            events: (0..3).map(noted).collect(),
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append");
    let mut stream = client
        .subscribe(pb::SubscribeRequest { from_position: 1 })
        .await
        .expect("subscribe")
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(
            stream
                .message()
                .await
                .expect("stream")
                .expect("event")
                .position,
        );
    }
    // Live: appended after the subscription started.
    let mut writer = node.client().await;
    writer
        .append(pb::AppendRequest {
            events: (3..6).map(noted).collect(),
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append");
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("live event in time");
        seen.push(next.expect("stream").expect("event").position);
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);

    // `tail --follow` prints the same events as JSON lines.
    let mut tail = Command::new(BIN)
        .args(["tail", "--from", "4", "--follow", "--node", &node.url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let first: serde_json::Value =
        serde_json::from_str(&lines.next().expect("a line").expect("utf-8")).expect("json");
    assert_eq!(first["position"], 4);
    assert_eq!(first["data"]["n"], 4);
    let _ = tail.kill();
    let _ = tail.wait();

    let channel = tonic::transport::Endpoint::from_shared(node.url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "datamesh.v1.DataMesh".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// `serve --config FILE`: the file's settings apply (here strict mode and a request
/// limit), flags override it, and a file with a mistake stops the node before it
/// starts, with the key named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bench_workload_runs_against_a_node_and_reports() {
    let data_guard = temp_dir("bench", Engine::Jit);
    let data = data_guard.path().to_path_buf();
    let socket = data.join("node.sock");
    let socket_path = socket.to_str().expect("utf-8 path");
    let node = Node::start(&data, Engine::Jit, &["--socket", socket_path]);
    // An unknown workload is a usage error that deploys and appends nothing.
    let (code, _, stderr) = node.cli(&["bench", "--workload", "w4"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("w1, w2, w3, w5"), "{stderr}");
    let mut client = node.client().await;
    assert_eq!(head(&mut client).await, 0);
    let listed = client
        .list_projections(pb::ListProjectionsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(listed.projections.is_empty(), "{listed:?}");
    let (code, _, stderr) = node.cli(&["bench", "--workload", "w5", "--accounts", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--accounts must be at least 1"), "{stderr}");
    let runs: [(&str, &[&str], &str); 5] = [
        ("w1", &["--events", "3000", "--batch", "500"], "3000 events"),
        (
            "w1",
            &["--events", "2000", "--batch", "500", "--skew", "zipf"],
            "Zipf(1.1) accounts",
        ),
        ("w2", &["--seconds", "1", "--clients", "2"], "events/s"),
        (
            "w3",
            &["--seconds", "1", "--clients", "2"],
            "read-your-writes",
        ),
        (
            "w5",
            &["--seconds", "1", "--clients", "2", "--accounts", "50"],
            "reads/s",
        ),
    ];
    for (workload, extra, expected) in runs {
        let mut args = vec!["bench", "--workload", workload];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = node.cli(&args);
        assert_eq!(code, 0, "{workload}: {stderr}");
        assert!(
            stdout.starts_with(workload) && stdout.contains(expected) && stdout.contains("p99"),
            "{workload}: {stdout}"
        );
        // What it cost the node (on this host): events per fdatasync, CPU and context
        // switches per call.
        let cost = stdout
            .lines()
            .find(|l| l.starts_with("node: "))
            .unwrap_or_default();
        assert!(
            cost.contains("events per fdatasync")
                && cost.contains("µs of node CPU")
                && cost.contains("context switches"),
            "{workload}: {stdout}"
        );
    }
    // With `--ids` every event carries a unique id: two runs append every event (no id
    // of one run repeats one of the other) and say so.
    for _ in 0..2 {
        let before = head(&mut client).await;
        let (code, out, err) = node.cli(&[
            "bench",
            "--workload",
            "w1",
            "--events",
            "2000",
            "--batch",
            "500",
            "--ids",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("with event ids"), "{out}");
        assert_eq!(head(&mut client).await, before + 2000, "{out}");
    }
    let (code, out, err) = node.cli(&[
        "bench",
        "--workload",
        "w2",
        "--seconds",
        "1",
        "--clients",
        "2",
        "--ids",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("with event ids"), "{out}");
    // The load generator runs over the Unix socket too, and says so.
    let unix = format!("unix:{socket_path}");
    let (code, out, err) = cli_at(
        &unix,
        &[
            "bench",
            "--workload",
            "w1",
            "--events",
            "500",
            "--batch",
            "100",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("over a Unix socket") && out.contains("500 events"),
        "{out}"
    );
    // W3 kept `balances` current: its documents are there, with every deposit counted.
    let (code, stdout, stderr) = node.cli(&["scan", "balances", "--limit", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("tx_count"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_sets_the_node_up_and_its_mistakes_are_named() {
    let data_guard = temp_dir("config", Engine::Jit);
    let data = data_guard.path().join("data");
    // Inside the guard's directory, so it goes with it.
    let config = data_guard.path().join("node.toml");
    std::fs::write(
        &config,
        "strict = true\nengine = \"interp\"\n[limits]\nmax_events = 2\n",
    )
    .expect("config written");
    let config_path = config.to_str().expect("utf-8 path");
    // `--engine jit` (from `Node::start`) overrides the file's `interp`.
    let node = Node::start(&data, Engine::Jit, &["--config", config_path]);
    let mut client = node.client().await;
    let status = node.cli(&["status"]);
    assert!(
        status.1.contains("jit"),
        "flags override the file: {status:?}"
    );
    let undeclared = client
        .append(pb::AppendRequest {
            events: vec![event("Nobody", "{}", "", "")],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect_err("strict mode from the file");
    assert_eq!(undeclared.code(), tonic::Code::InvalidArgument);
    let source = "event E { n: int }";
    client
        .deploy(pb::DeployRequest {
            source: source.into(),
            origin: "e.dmp".into(),
        })
        .await
        .expect("deploy");
    let three = client
        .append(pb::AppendRequest {
            events: vec![event("E", r#"{"n":1}"#, "", ""); 3],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect_err("the file's limit of 2 events");
    assert_eq!(three.code(), tonic::Code::ResourceExhausted);
    assert_eq!(head(&mut client).await, 0);
    drop(node);

    std::fs::write(&config, "strict = true\nlisten = \"localhost\"\n").expect("written");
    let out = Command::new(BIN)
        .args(["serve", "--config", config_path])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("listen"), "the key is named: {stderr}");
    let _ = std::fs::remove_file(&config);
}

/// `serve --socket PATH`: the same node answers on a Unix socket (the CLI connects
/// with `--node unix:PATH`); a socket file a crashed node left behind is replaced, a
/// socket a live node serves or a file that is not a socket is refused, and a clean
/// shutdown removes the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_serves_the_same_node() {
    let data_guard = temp_dir("unix", Engine::Jit);
    let data = data_guard.path().to_path_buf();
    let socket = data.join("node.sock");
    let socket_path = socket.to_str().expect("utf-8 path");
    // What a node killed with SIGKILL leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());
    let mut node = Node::start(&data, Engine::Jit, &["--socket", socket_path]);
    let unix = format!("unix:{socket_path}");
    let (code, out, err) = cli_at(&unix, &["deploy", "examples/bank/bank.dmp"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("balances@v1"), "{out}");
    let (code, _, err) = cli_at(
        &unix,
        &["append", "Deposited", r#"{"account":"a1","amount":5}"#],
    );
    assert_eq!(code, 0, "{err}");
    // Both listeners serve one node: what went in through the socket is read over TCP.
    let (code, out, err) = node.cli(&["get", "balances", "a1", "--min-position", "1"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["balance"], 5);
    let (code, out, _) = cli_at(&unix, &["get", "balances", "a1"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).expect("json"),
        doc
    );

    // A second node may not take over a socket the first one serves.
    let other_guard = temp_dir("unix-other", Engine::Jit);
    let other = other_guard.path().to_path_buf();
    // A node on `other` with the same socket must refuse to start, saying `why`.
    let refused = |why: &str| {
        let out = Command::new(BIN)
            .args(["serve", "--data", other.to_str().expect("path")])
            .args(["--listen", "127.0.0.1:0", "--socket", socket_path])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    };
    refused("in use");
    let (code, _, err) = cli_at(&unix, &["status"]);
    assert_eq!(code, 0, "the first node still answers: {err}");

    assert_eq!(node.terminate(), Some(0));
    assert!(!socket.exists(), "a clean shutdown removes the socket");
    let (code, _, err) = cli_at(&unix, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach a node at unix:"), "{err}");

    // A file that is not a socket is never replaced.
    std::fs::write(&socket, "keep me").expect("written");
    refused("not a socket");
    assert_eq!(
        std::fs::read_to_string(&socket).ok().as_deref(),
        Some("keep me")
    );
    let _ = std::fs::remove_file(&socket);
}

/// Without `RUST_LOG` the node logs its own events, not its libraries' chatter: the JIT
/// backend prints every compiled function's IR at `info`, the storage engine each
/// flush. A `RUST_LOG` the operator sets still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_log_is_the_nodes_own() {
    let data_guard = temp_dir("log", Engine::Jit);
    let data = data_guard.path().to_path_buf();
    let run = |log: Option<&str>| {
        let mut node = Node::start_logging(&data, Engine::Jit, &[], log);
        let bank = root().join("examples/bank/bank.dmp");
        let (code, _, err) = node.cli(&["deploy", bank.to_str().expect("utf-8 path")]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = node.cli(&["append", "Deposited", r#"{"account":"a1","amount":5}"#]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = node.cli(&["get", "totals", "--min-position", "1"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(node.terminate(), Some(0));
        node.stderr.lock().expect("lock").clone()
    };
    let lines = run(None);
    assert!(lines.iter().any(|l| l.contains("serving")), "{lines:#?}");
    let chatter = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("cranelift") || l.contains("lsm_tree") || l.contains("fjall"))
    };
    assert!(!chatter(&lines), "{lines:#?}");
    // The operator's filter is honoured, whatever it asks for.
    let lines = run(Some("info"));
    assert!(
        chatter(&lines),
        "RUST_LOG=info shows the libraries too: {lines:#?}"
    );
}

/// A program that only declares event types puts them in force: a strict node accepts
/// them, their payloads are validated, another program must declare them the same way,
/// and all of this survives a restart. Deploying it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_of_events_alone_declares_them() {
    let data_guard = temp_dir("events-alone", Engine::Jit);
    let data = data_guard.path().to_path_buf();
    let mut node = Node::start(&data, Engine::Jit, &["--strict"]);
    let mut client = node.client().await;
    let deploy = |source: &str| pb::DeployRequest {
        source: source.into(),
        origin: "events.dmp".into(),
    };
    let events = "event Measured { sensor: string, value: float }";
    let first = client
        .deploy(deploy(events))
        .await
        .expect("deploys")
        .into_inner();
    assert_eq!(first.declared, vec!["Measured".to_owned()]);
    assert!(first.started.is_empty());
    let again = client
        .deploy(deploy(events))
        .await
        .expect("deploys")
        .into_inner();
    assert!(
        again.declared.is_empty() && again.started.is_empty(),
        "{again:?}"
    );
    let measured = |data: &str| pb::AppendRequest {
        events: vec![event("Measured", data, "", "")],
        expected: vec![],
        read_back: Vec::new(),
    };
    client
        .append(measured(r#"{"sensor":"s1","value":1.5}"#))
        .await
        .expect("a declared type on a strict node");
    let wrong = client
        .append(measured(r#"{"sensor":"s1","value":"hot"}"#))
        .await
        .expect_err("validated against the declaration");
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
    assert!(wrong.message().contains("value"), "{}", wrong.message());
    let conflict = client
        .deploy(deploy("event Measured { sensor: string }"))
        .await
        .expect_err("declared differently");
    assert_eq!(conflict.code(), tonic::Code::FailedPrecondition);
    assert_eq!(head(&mut client).await, 1);

    assert_eq!(node.terminate(), Some(0));
    drop(node);
    let node = Node::start(&data, Engine::Jit, &["--strict"]);
    let mut client = node.client().await;
    client
        .append(measured(r#"{"sensor":"s2","value":2}"#))
        .await
        .expect("still declared after a restart");
    let wrong = client
        .append(measured(r#"{"sensor":"s1"}"#))
        .await
        .expect_err("still validated after a restart");
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
    assert_eq!(head(&mut client).await, 2);
}

/// Declares each test body above as two tests, `jit::<name>` and `interp::<name>`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod jit {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Jit).await;
                }
            )*
        }
        mod interp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Engine::Interp).await;
                }
            )*
        }
    };
}

on_both_engines!(
    bank_end_to_end_through_the_cli,
    scan_pages_by_prefix_and_range,
    bad_input_gets_a_precise_status_and_changes_nothing,
    kill_9_loses_no_acknowledged_event_and_projections_match_a_rebuild,
    a_torn_tail_is_cut_on_restart_and_never_served,
    a_new_version_rebuilds_beside_the_old_one_and_is_promoted_and_retired,
    a_fault_stops_only_its_projection,
    subscribe_catches_up_then_follows_live_appends_and_health_answers
);
