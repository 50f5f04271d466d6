//! The node under hostile and careless requests (issue 10, findings 10, 12, 13, 15):
//! each bad request gets a precise gRPC status with a message of bounded size, leaves
//! the log head and every projection as they were, and the node answers afterwards.

mod common;

use std::time::Duration;

use common::*;

use datamesh_runtime::api::pb;
use datamesh_runtime::api::pb::data_mesh_client::DataMeshClient;
use datamesh_runtime::api::pb::prost_reexport::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::transport::Channel;

const PROGRAM: &str = r#"
event Deposited { account: string, amount: int }
projection balances v1 {
  key account
  state { balance: int = 0 }
  on Deposited { balance += event.amount }
}
"#;

/// The most a status message may weigh on the wire (the node cuts at 1 KiB).
const SHORT: usize = 1100;

const FIVE_MB: usize = 5 << 20;

/// What must not change when a request is refused: the head and every projection's
/// position and state.
async fn snapshot(client: &mut DataMeshClient<Channel>) -> (u64, Vec<(String, u64, String)>) {
    let status = client
        .status(pb::StatusRequest {})
        .await
        .expect("the node still answers")
        .into_inner();
    let projections = status
        .projections
        .into_iter()
        .map(|p| (format!("{}@v{}", p.name, p.version), p.position, p.state))
        .collect();
    (status.head, projections)
}

/// A data directory only its owner can read (the node refuses others).
fn private_dir(name: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir(name, Engine::Jit);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// A node with [`PROGRAM`] deployed and two deposits folded.
async fn bank_node(name: &str, extra: &[&str]) -> (tempfile::TempDir, Node) {
    let dir = private_dir(name);
    let node = Node::start(dir.path(), Engine::Jit, extra);
    let mut client = node.client().await;
    client
        .deploy(pb::DeployRequest {
            source: PROGRAM.into(),
            origin: "bank.dmp".into(),
        })
        .await
        .expect("deploy");
    client
        .append(pb::AppendRequest {
            events: vec![
                event("Deposited", r#"{"account":"a1","amount":5}"#, "", "d1"),
                event("Deposited", r#"{"account":"a2","amount":7}"#, "", "d2"),
            ],
            expected: Vec::new(),
            read_back: Vec::new(),
        })
        .await
        .expect("append");
    client
        .get(pb::GetRequest {
            projection: "balances".into(),
            key: "a2".into(),
            min_position: 2,
            version: 0,
        })
        .await
        .expect("folded");
    (dir, node)
}

fn assert_refused(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, has: &[&str]) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{}", status.message());
    let message = status.message();
    assert!(
        message.len() <= SHORT,
        "a message of {} bytes: {}",
        message.len(),
        message.get(..300).unwrap_or(message)
    );
    for part in has {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
}

// Finding 10: diagnostics and echoes that did not fit in gRPC metadata became an
// HTTP/2 protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_stay_small_whatever_the_request_carries() {
    let (dir, node) = bank_node("echo", &[]).await;
    let mut client = node.client().await;
    let before = snapshot(&mut client).await;

    // Hundreds of errors: the first ones, and how many more.
    let many: String = (0..500)
        .map(|i| format!("event E{i} {{ a: Nope{i} }}\n"))
        .collect();
    let status = client
        .deploy(pb::DeployRequest {
            source: many.clone(),
            origin: "many.dmp".into(),
        })
        .await
        .expect_err("does not compile");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().len() <= SHORT,
        "{}",
        status.message().len()
    );
    assert!(
        status.message().contains("(500 errors)") && status.message().contains("and 497 more"),
        "{}",
        status.message()
    );
    let details = datamesh_runtime::api::deploy_diagnostics(&status).expect("details");
    assert!(!details.diagnostics.is_empty());
    assert!(details.omitted > 0, "{}", details.omitted);
    assert!(details.diagnostics.len() + details.omitted as usize >= 500);
    assert!(details.diagnostics[0].message.contains("Nope0"));
    assert_eq!(details.diagnostics[0].line, 1);
    assert_eq!(snapshot(&mut client).await, before);

    // The CLI shows what it was sent and says how many more there are.
    let file = dir.path().join("many.dmp");
    std::fs::write(&file, &many).expect("write");
    let (code, _, err) = node.cli(&["deploy", file.to_str().expect("path")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Nope0"), "{err}");
    assert!(
        err.contains("more diagnostics the node did not send"),
        "{err}"
    );
    assert!(err.contains("was not deployed"), "{err}");

    // An error quoting a 5 MB name.
    let name = "N".repeat(FIVE_MB);
    let status = client
        .deploy(pb::DeployRequest {
            source: format!("event E {{ a: {name} }}\n"),
            origin: "huge.dmp".into(),
        })
        .await
        .expect_err("does not compile");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().len() <= SHORT,
        "{}",
        status.message().len()
    );
    let details = datamesh_runtime::api::deploy_diagnostics(&status).expect("details");
    for d in &details.diagnostics {
        assert!(d.message.len() <= 300 && d.label.len() <= 300 && d.help.len() <= 300);
    }
    let status = client
        .deploy(pb::DeployRequest {
            source: PROGRAM.into(),
            origin: name.clone(),
        })
        .await
        .expect_err("origin too long");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains(&format!("`origin` is {FIVE_MB} bytes"))
    );

    // Keys, names, types and streams of 5 MB, quoted as excerpts with their length.
    let huge = "k".repeat(FIVE_MB);
    let cut = format!("… ({FIVE_MB} bytes)");
    assert_refused(
        client
            .get(pb::GetRequest {
                projection: "balances".into(),
                key: huge.clone(),
                min_position: 0,
                version: 0,
            })
            .await,
        Code::InvalidArgument,
        &["key `kkk", &cut, "keys are at most 65535 bytes"],
    );
    // (A key the store can hold but no document has.)
    assert_refused(
        client
            .get(pb::GetRequest {
                projection: "balances".into(),
                key: huge[..60_000].to_owned(),
                min_position: 0,
                version: 0,
            })
            .await,
        Code::NotFound,
        &["no document at key", "… (60000 bytes)"],
    );
    for (start, prefix) in [(huge.clone(), String::new()), (String::new(), huge.clone())] {
        assert_refused(
            client
                .scan(pb::ScanRequest {
                    projection: "balances".into(),
                    start,
                    prefix,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &["keys are at most 65535 bytes"],
        );
    }
    assert_refused(
        client
            .get(pb::GetRequest {
                projection: huge.clone(),
                key: "a1".into(),
                min_position: 0,
                version: 0,
            })
            .await,
        Code::NotFound,
        &["no projection", &cut],
    );
    assert_refused(
        client
            .scan(pb::ScanRequest {
                projection: "balances".into(),
                prefix: format!("[\"{huge}\""),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &[],
    );
    assert_refused(
        client
            .promote(pb::PromoteRequest {
                name: huge.clone(),
                version: 1,
            })
            .await,
        Code::NotFound,
        &["no projection", &cut],
    );
    assert_refused(
        client
            .append(pb::AppendRequest {
                events: vec![event(&huge, "{}", "", "")],
                expected: Vec::new(),
                read_back: Vec::new(),
            })
            .await,
        Code::InvalidArgument,
        &[
            "event 0",
            &cut,
            &format!("`type` is {FIVE_MB} bytes; the limit is 1024"),
        ],
    );
    assert_refused(
        client
            .append(pb::AppendRequest {
                events: vec![event("Deposited", r#"{"account":"a1","amount":1}"#, "", "")],
                expected: vec![pb::ExpectedVersion {
                    stream: huge.clone(),
                    expect: Some(pb::expected_version::Expect::Exact(3)),
                }],
                read_back: Vec::new(),
            })
            .await,
        Code::InvalidArgument,
        &["expected version 0: `stream` is 5242880 bytes"],
    );
    // A payload quoting a 1 MB field name and a 1 MB timestamp.
    let field = "f".repeat(1 << 19);
    assert_refused(
        client
            .append(pb::AppendRequest {
                events: vec![event(
                    "Deposited",
                    &format!(r#"{{"account":"a1","amount":1,"{field}":1}}"#),
                    "",
                    "",
                )],
                expected: Vec::new(),
                read_back: Vec::new(),
            })
            .await,
        Code::InvalidArgument,
        &["event 0 (Deposited)", "has no such field", "(524288 bytes)"],
    );
    assert_eq!(snapshot(&mut client).await, before);
}

// Finding 12: a non-strict node took undeclared events whose JSON no declaration could
// ever decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_events_must_be_json_a_declaration_can_decode() {
    let (_dir, node) = bank_node("undeclared", &[]).await;
    let mut client = node.client().await;
    let before = snapshot(&mut client).await;
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let digits = format!("{{\"n\":{}}}", "9".repeat(400));
    let cases: [(&str, &str); 7] = [
        (r#"{"text":"\ud800"}"#, "lone surrogate"),
        (r#"{"text":"a\udc00b"}"#, "lone surrogate"),
        (r#"{"\ud800":1}"#, "lone surrogate"),
        (&deep, "nests deeper than 64 levels"),
        (&digits, "number out of range"),
        (r#"{"n":-1e400}"#, "number out of range"),
        (r#"{"n":1} {"#, "trailing characters"),
    ];
    for (data, why) in cases {
        assert_refused(
            client
                .append(pb::AppendRequest {
                    events: vec![
                        event("Note", r#"{"text":"fine"}"#, "", ""),
                        event("Note", data, "", ""),
                    ],
                    expected: Vec::new(),
                    read_back: Vec::new(),
                })
                .await,
            Code::InvalidArgument,
            &["event 1 (Note)", why],
        );
        assert_eq!(snapshot(&mut client).await, before, "{why}");
    }
    // What any declaration could decode goes in, and a later declaration folds it.
    client
        .append(pb::AppendRequest {
            events: vec![event(
                "Note",
                r#"{"text":"ok \ud83d\ude00","n":18446744073709551615}"#,
                "",
                "",
            )],
            expected: Vec::new(),
            read_back: Vec::new(),
        })
        .await
        .expect("valid JSON");
    let (code, out, err) = node.cli(&["tail"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("null"), "{out}");
    client
        .deploy(pb::DeployRequest {
            source: "event Note { text: string, n: float }\n\
                     projection notes v1 { state { count: int = 0 } on Note { count += 1 } }\n"
                .into(),
            origin: "notes.dmp".into(),
        })
        .await
        .expect("deploy");
    let doc = client
        .get(pb::GetRequest {
            projection: "notes".into(),
            key: String::new(),
            min_position: 3,
            version: 0,
        })
        .await
        .expect("folded, not faulted")
        .into_inner();
    assert_eq!(doc.document, r#"{"count":1}"#);
}

// Finding 12: `tail` printed `"data": null` for an event it could not read, and exited 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_refuses_to_print_what_it_cannot_read() {
    let dir = private_dir("tail");
    // Events written by a node that did not validate JSON (as before this fix).
    {
        use datamesh_runtime::log::{Log, LogConfig, NewEvent};
        let (log, _) = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
        let new = |payload: &str| NewEvent {
            event_type: "Note".into(),
            payload: payload.as_bytes().to_vec(),
            stream: String::new(),
            id: String::new(),
            origin: String::new(),
            time: None,
        };
        log.append(
            vec![
                new(r#"{"text":"fine"}"#),
                new(r#"{"text":"\ud800"}"#),
                new(r#"{"text":"after"}"#),
            ],
            Vec::new(),
        )
        .await
        .expect("append");
        log.close();
    }
    let node = Node::start(dir.path(), Engine::Jit, &[]);
    let (code, out, err) = node.cli(&["tail"]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("null"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("fine"), "{out}");
    assert!(
        err.contains("the event at position 1 (Note) has data that is not readable JSON"),
        "{err}"
    );
    assert!(err.contains("tail --from 2"), "{err}");
    let (code, out, err) = node.cli(&["tail", "--from", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("after"), "{out}");
    let mut client = node.client().await;
    assert_eq!(head(&mut client).await, 3);
}

/// Sends raw bytes as a request message, so a test can send what no typed client can
/// (invalid UTF-8 in a string field).
#[derive(Debug, Clone, Copy)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

async fn raw(url: &str, method: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let channel = Channel::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, Raw)
        .await
        .map(tonic::Response::into_inner)
}

/// A length-delimited protobuf field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut n = bytes.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(bytes);
    out
}

// Finding 13: invalid UTF-8 was INTERNAL, an oversized request OUT_OF_RANGE, and
// `grpc-timeout` wrapped around.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_oversized_and_odd_deadline_requests() {
    let (_dir, node) = bank_node("decode", &[]).await;
    let mut client = node.client().await;
    let before = snapshot(&mut client).await;

    // An event whose type is not UTF-8.
    let bad_event = [field(1, b"Dep\xffosited"), field(2, b"{}")].concat();
    let status = raw(
        &node.url,
        "/datamesh.v1.DataMesh/Append",
        field(1, &bad_event),
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains("Event.type") && status.message().contains("not UTF-8"),
        "{}",
        status.message()
    );
    // A key that is not UTF-8.
    let get = [field(1, b"balances"), field(2, b"a\xc3")].concat();
    let status = raw(&node.url, "/datamesh.v1.DataMesh/Get", get)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains("GetRequest.key"),
        "{}",
        status.message()
    );
    // Not protobuf at all.
    let status = raw(&node.url, "/datamesh.v1.DataMesh/Append", vec![0xff; 7])
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert_eq!(snapshot(&mut client).await, before);

    // Over the message limit (at least 20 MiB, what a read of a 3 MiB document may
    // need, + 4 MiB): RESOURCE_EXHAUSTED, as the book says, not OUT_OF_RANGE.
    let big = format!(r#"{{"account":"{}","amount":1}}"#, "a".repeat(25 << 20));
    let status = client
        .append(pb::AppendRequest {
            events: vec![event("Deposited", &big, "", "")],
            expected: Vec::new(),
            read_back: Vec::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("this node takes at most"),
        "{}",
        status.message()
    );
    // Under it, but over the payload limit of a request: the same code.
    let status = client
        .append(pb::AppendRequest {
            events: vec![event("Deposited", &big[..17 << 20], "", "")],
            expected: Vec::new(),
            read_back: Vec::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert_eq!(snapshot(&mut client).await, before);

    // `grpc-timeout` of 2^60 hours (and more digits than a u64 holds): a long wait,
    // capped at 30 s, not an immediate deadline (2^60 * 3600 wrapped to 0) nor a panic.
    for timeout in ["1152921504606846976H", "99999999999999999999999999S"] {
        let head = head(&mut client).await;
        let mut waiting = node.client().await;
        let mut request = tonic::Request::new(pb::GetRequest {
            projection: "balances".into(),
            key: "a1".into(),
            min_position: head + 1,
            version: 0,
        });
        request
            .metadata_mut()
            .insert("grpc-timeout", timeout.parse().expect("ascii"));
        let get = tokio::spawn(async move { waiting.get(request).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        client
            .append(pb::AppendRequest {
                events: vec![event("Deposited", r#"{"account":"a1","amount":1}"#, "", "")],
                expected: Vec::new(),
                read_back: Vec::new(),
            })
            .await
            .expect("append");
        let doc = get
            .await
            .expect("joined")
            .unwrap_or_else(|e| panic!("{timeout}: {e:?}"))
            .into_inner();
        assert!(doc.position > head, "{timeout}");
    }
    snapshot(&mut client).await;
}

// Finding 15: `append --file` dropped each line's `time` without a word, and said
// "appended" of events it deduplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_file_refuses_times_and_reports_deduplication() {
    let (dir, node) = bank_node("file", &[]).await;
    let mut client = node.client().await;
    let before = snapshot(&mut client).await;
    let file = dir.path().join("events.jsonl");
    let path = file.to_str().expect("path");
    std::fs::write(
        &file,
        "{\"type\":\"Deposited\",\"data\":{\"account\":\"a1\",\"amount\":1},\"id\":\"f1\"}\n\
         {\"type\":\"Deposited\",\"data\":{\"account\":\"a1\",\"amount\":2},\"id\":\"f2\",\"time\":\"2024-05-01T09:00:00Z\"}\n",
    )
    .expect("write");
    let (code, out, err) = node.cli(&["append", "--file", path]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("events.jsonl:2: `time` cannot be appended"),
        "{err}"
    );
    assert!(err.contains("--drop-time"), "{err}");
    assert_eq!(snapshot(&mut client).await, before);

    let (code, out, err) = node.cli(&["append", "--file", path, "--drop-time"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["appended"], 2, "{out}");
    assert_eq!(report["deduplicated"], 0, "{out}");
    assert_eq!(report["first"], 2, "{out}");
    // The same file again: every id is in the log, nothing is appended.
    let (code, out, err) = node.cli(&["append", "--file", path, "--drop-time"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["appended"], 0, "{out}");
    assert_eq!(report["deduplicated"], 2, "{out}");
    assert_eq!(report["first"], 2, "{out}");
    assert_eq!(head(&mut client).await, before.0 + 2);
    // `--drop-time` is for files only.
    let (code, _, err) = node.cli(&["append", "Deposited", "{}", "--drop-time"]);
    assert_eq!(code, 2, "{err}");
}
