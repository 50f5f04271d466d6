//! A node on its worst day, as an operator meets it: a damaged log refuses to start
//! with a message that says where and what to do, `datamesh repair` reports and then
//! cuts, the node starts on what verified and rebuilds its projections, and the saved
//! events go back in with `append --file`. Also: limits the log cannot store and a data
//! directory other users can read are refused at start, and the golden data directory
//! of format 1 still opens.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The active segment (the last one) of a node's log.
fn active_segment(data: &Path) -> PathBuf {
    std::fs::read_dir(data.join("log"))
        .expect("log dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment")
}

/// `datamesh <args>` without a node: (exit code, stdout, stderr).
fn offline(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("cli runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_refuses_to_start_then_repair_keeps_what_verifies() {
    let engine = Engine::Jit;
    let guard = temp_dir("damaged", engine);
    let data = guard.path().to_path_buf();
    let data_arg = data.to_str().expect("utf-8");
    let mut node = Node::start(&data, engine, &[]);
    let (code, _, err) = node.cli(&["deploy", "examples/bank/bank.dmp"]);
    assert_eq!(code, 0, "{err}");
    let mut client = node.client().await;
    // 40 single-event requests: 40 groups.
    for i in 0..40 {
        let data = if i == 0 {
            r#"{"account":"a1","owner":"ann"}"#.to_owned()
        } else {
            format!(r#"{{"account":"a1","amount":{i}}}"#)
        };
        let ty = if i == 0 { "AccountOpened" } else { "Deposited" };
        client
            .append(datamesh_runtime::api::pb::AppendRequest {
                events: vec![event(ty, &data, "account-a1", &format!("e{i}"))],
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append");
    }
    let (code, doc, _) = node.cli(&["get", "balances", "a1", "--min-position", "40"]);
    assert_eq!(code, 0);
    let all: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(all["balance"], (1..40).sum::<i64>());
    assert_eq!(node.terminate(), Some(0));

    // One flipped byte in the payload of the 21st event.
    let segment = active_segment(&data);
    let mut bytes = std::fs::read(&segment).expect("read");
    let needle = br#"{"account":"a1","amount":20}"#;
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the payload is in the segment");
    bytes[at + 5] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("write");

    // The node refuses to start, and says where and what to do.
    let (code, lines) = Node::try_start(&data, engine, &[], Some("warn"))
        .err()
        .expect("a damaged log must not start");
    let text = lines.join("\n");
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("damaged at byte"), "{text}");
    assert!(text.contains("position 20"), "{text}");
    assert!(text.contains("datamesh repair"), "{text}");
    assert_eq!(
        std::fs::read(&segment).expect("read"),
        bytes,
        "refusing changed nothing"
    );

    // A dry run reports, changes nothing, exits 2.
    let (code, report, _) = offline(&["repair", "--data", data_arg]);
    assert_eq!(code, 2, "{report}");
    assert!(report.contains("kept: positions 0..20"), "{report}");
    assert!(report.contains("salvaged"), "{report}");
    assert!(report.contains("19 records, positions 21..=39"), "{report}");
    assert!(report.contains("unreadable: 1 records"), "{report}");
    assert_eq!(std::fs::read(&segment).expect("read"), bytes);

    // Applied: the cut is saved first.
    let (code, report, err) = offline(&["repair", "--data", data_arg, "--apply"]);
    assert_eq!(code, 0, "{report}{err}");
    let saved = std::fs::read_dir(&data)
        .expect("data")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("repair-"))
        })
        .expect("a repair directory");
    let dropped = saved.join("dropped.jsonl");
    assert_eq!(
        std::fs::read_to_string(&dropped)
            .expect("jsonl")
            .lines()
            .count(),
        19
    );

    // The node starts on the 20 verified events; the projections that had folded
    // 40 are rebuilt from the log as it is now.
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    assert_eq!(head(&mut client).await, 20);
    let (code, doc, err) = node.cli(&["get", "balances", "a1", "--min-position", "20"]);
    assert_eq!(code, 0, "{err}");
    let kept: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(kept["balance"], (1..20).sum::<i64>(), "{doc}");

    // The salvaged events go back in (their ids are new to the cut log).
    let (code, out, err) = node.cli(&["append", "--file", dropped.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(head(&mut client).await, 39);
    let (code, doc, _) = node.cli(&["get", "balances", "a1", "--min-position", "39"]);
    assert_eq!(code, 0);
    let back: serde_json::Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(back["balance"], (1..40).sum::<i64>() - 20, "{doc}");
}

#[test]
fn limits_the_log_cannot_store_and_an_open_data_directory_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let engine = Engine::Jit;
    let guard = temp_dir("refused", engine);
    let config = guard.path().join("node.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_event_bytes = 73400320\nmax_request_bytes = 83886080\n",
    )
    .expect("config");
    let data = guard.path().join("data");
    let (code, lines) = Node::try_start(
        &data,
        engine,
        &["--config", config.to_str().expect("utf-8")],
        Some("warn"),
    )
    .err()
    .expect("a 70 MiB event limit must be refused");
    let text = lines.join("\n");
    assert_ne!(code, Some(0));
    assert!(text.contains("max_event_bytes is 73400320"), "{text}");

    // A data directory with data in it that other users can enter.
    std::fs::create_dir_all(data.join("log")).expect("dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (code, lines) = Node::try_start(&data, engine, &[], Some("warn"))
        .err()
        .expect("a 0755 data directory must be refused");
    let text = lines.join("\n");
    assert_ne!(code, Some(0));
    assert!(text.contains("chmod 700"), "{text}");
    assert!(
        std::fs::read_dir(data.join("log"))
            .expect("dir")
            .next()
            .is_none(),
        "nothing was written into it"
    );
    // An empty one (made with `mkdir`) is restricted and used.
    let empty = guard.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    drop(Node::start(&empty, engine, &[]));
    let mode = std::fs::metadata(&empty).expect("dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    // A directory the node creates itself is private.
    let fresh = guard.path().join("fresh").join("data");
    drop(Node::start(&fresh, engine, &[]));
    let mode = std::fs::metadata(&fresh).expect("dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// Copies a directory tree (directories private, as a node makes them).
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).expect("dir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for entry in std::fs::read_dir(from).expect("dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_golden_data_directory_of_format_1_still_opens() {
    let engine = Engine::Jit;
    let guard = temp_dir("golden", engine);
    let data = guard.path().join("data");
    copy_tree(&root().join("tests/golden/v1"), &data);
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let events = read_all(&mut client).await;
    let summary: Vec<(u64, &str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.position,
                e.r#type.as_str(),
                e.stream.as_str(),
                e.data.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                0,
                "AccountOpened",
                "account-a1",
                r#"{"account":"a1","owner":"ann"}"#
            ),
            (
                1,
                "Deposited",
                "account-a1",
                r#"{"account":"a1","amount":70}"#
            ),
            (
                2,
                "AccountOpened",
                "account-b2",
                r#"{"account":"b2","owner":"bob"}"#
            ),
            (
                3,
                "Deposited",
                "account-b2",
                r#"{"account":"b2","amount":5}"#
            ),
        ]
    );
    let (code, doc, err) = node.cli(&["get", "balances", "a1", "--min-position", "4"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        doc.trim(),
        r#"{"owner":"ann","balance":70,"tx_count":1,"opened":"2026-12-03T16:23:39.730439Z"}"#
    );
    let (code, doc, _) = node.cli(&["get", "totals"]);
    assert_eq!(code, 0);
    assert_eq!(doc.trim(), r#"{"accounts":2,"deposited":75,"largest":70}"#);
    // Ids recorded then still deduplicate; the log appends on.
    let (code, out, _) = node.cli(&[
        "append",
        "Deposited",
        r#"{"account":"a1","amount":70}"#,
        "--stream",
        "account-a1",
        "--id",
        "dep-1",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""positions":[1]"#), "{out}");
    let (code, out, _) = node.cli(&[
        "append",
        "Deposited",
        r#"{"account":"a1","amount":1}"#,
        "--stream",
        "account-a1",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""positions":[4]"#), "{out}");
}

/// Every file of the projection store, damaged three ways: the node still starts (a
/// damaged store is moved aside and rebuilt from the log and the catalog) and serves
/// exactly the documents the log folds to, with the program still deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_projection_store_is_rebuilt_from_the_log() {
    let engine = Engine::Jit;
    let guard = temp_dir("store-damage", engine);
    let pristine = guard.path().join("pristine");
    let node = Node::start(&pristine, engine, &[]);
    let (code, _, err) = node.cli(&["deploy", "examples/bank/bank.dmp"]);
    assert_eq!(code, 0, "{err}");
    let mut client = node.client().await;
    for (ty, data) in [
        ("AccountOpened", r#"{"account":"a1","owner":"ann"}"#),
        ("Deposited", r#"{"account":"a1","amount":70}"#),
        ("AccountOpened", r#"{"account":"b2","owner":"bob"}"#),
        ("Deposited", r#"{"account":"b2","amount":5}"#),
        ("Withdrawn", r#"{"account":"a1","amount":20}"#),
    ] {
        client
            .append(datamesh_runtime::api::pb::AppendRequest {
                events: vec![event(ty, data, "", "")],
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append");
    }
    let read = |node: &Node| {
        let (c1, a1, e1) = node.cli(&["get", "balances", "a1", "--min-position", "5"]);
        let (c2, totals, e2) = node.cli(&["get", "totals", "--min-position", "5"]);
        assert_eq!((c1, c2), (0, 0), "{e1}{e2}");
        (a1, totals)
    };
    let expected = read(&node);
    drop(node);
    let mut files = Vec::new();
    let mut dirs = vec![pristine.join("store")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::metadata(&path).expect("meta").len() > 0 {
                files.push(path);
            }
        }
    }
    files.sort();
    let (mut cases, mut rebuilt) = (0, 0);
    for file in &files {
        let relative = file.strip_prefix(&pristine).expect("inside");
        let len = std::fs::metadata(file).expect("meta").len() as usize;
        for harm in ["flip", "zero", "truncate"] {
            cases += 1;
            let case = guard.path().join("case");
            let _ = std::fs::remove_dir_all(&case);
            copy_tree(&pristine, &case);
            let target = case.join(relative);
            let mut bytes = std::fs::read(&target).expect("read");
            match harm {
                "flip" => bytes[len / 2] ^= 0x5A,
                "zero" => bytes[..len.min(64)].fill(0),
                _ => bytes.truncate(len / 2),
            }
            std::fs::write(&target, &bytes).expect("write");
            let what = format!("{harm} {}", relative.display());
            let node = Node::try_start(&case, engine, &[], Some("warn"))
                .unwrap_or_else(|(code, lines)| panic!("{what}: refused ({code:?}): {lines:?}"));
            assert_eq!(read(&node), expected, "{what}");
            if std::fs::read_dir(&case)
                .expect("dir")
                .filter_map(Result::ok)
                .any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("store.damaged-")
                })
            {
                rebuilt += 1;
            }
        }
    }
    eprintln!(
        "store damage: {cases} cases over {} files, {rebuilt} rebuilt from the log",
        files.len()
    );
    assert!(rebuilt > 0);
}

/// A second node, or a repair, on the data directory of a running node is refused:
/// recovery would cut the running node's group in flight as a torn tail.
#[test]
fn a_running_nodes_data_directory_is_not_opened_twice() {
    let engine = Engine::Jit;
    let guard = temp_dir("twice", engine);
    let data = guard.path().join("data");
    let node = Node::start(&data, engine, &[]);
    let (code, lines) = Node::try_start(&data, engine, &[], Some("warn"))
        .err()
        .expect("a second node on the same data must not start");
    let text = lines.join("\n");
    assert_ne!(code, Some(0));
    assert!(text.contains("in use by another process"), "{text}");
    let (code, out, err) = offline(&["repair", "--data", data.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("in use by another process"), "{err}");
    // The first node still serves.
    let (code, out, err) = node.cli(&["status"]);
    assert_eq!(code, 0, "{out}{err}");
    drop(node);
    let (code, out, err) = offline(&["repair", "--data", data.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("every record verifies"), "{out}");
}
