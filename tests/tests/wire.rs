//! The wire protocol (issue 14): the API's unary calls as pipelined frames beside gRPC
//! on the same TCP port and Unix socket. A call gives what the same call gives over
//! gRPC (results, status codes, messages, authorization); hostile frames get an error
//! and the node stays up; the CLI speaks it through a `dmw://` or `dmw+unix:` address.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use datamesh_runtime::api::pb;
use datamesh_runtime::wire::{MAGIC, Method, WireClient};
use tonic::Code;

const PROGRAM: &str = r#"
event Deposited { account: string, amount: int }
projection balances v1 {
  key account
  state { balance: int = 0 }
  on Deposited { balance += event.amount }
}
"#;

/// A started node with a Unix socket, the balances program deployed.
async fn node(guard: &tempfile::TempDir, extra: &[&str]) -> (Node, String) {
    let socket = guard.path().join("s.sock");
    let socket_arg = socket.to_str().expect("utf-8").to_owned();
    let mut args = vec!["--socket", socket_arg.as_str()];
    args.extend_from_slice(extra);
    let node = Node::start(&guard.path().join("data"), Engine::Jit, &args);
    (node, socket_arg)
}

fn tcp_wire(node: &Node) -> String {
    node.url.replace("http://", "dmw://")
}

async fn deploy(node: &Node) {
    let mut grpc = node.client().await;
    grpc.deploy(pb::DeployRequest {
        source: PROGRAM.into(),
        origin: "wire.dmp".into(),
    })
    .await
    .expect("deploy");
}

fn deposit(account: &str, amount: i64) -> pb::Event {
    event(
        "Deposited",
        &format!(r#"{{"account":"{account}","amount":{amount}}}"#),
        account,
        "",
    )
}

fn append(events: Vec<pb::Event>, expected: Vec<pb::ExpectedVersion>) -> pb::AppendRequest {
    pb::AppendRequest {
        events,
        expected,
        read_back: Vec::new(),
    }
}

fn get(key: &str, min_position: u64) -> pb::GetRequest {
    pb::GetRequest {
        projection: "balances".into(),
        key: key.into(),
        min_position,
        version: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_wire_give_what_grpc_gives() {
    let guard = temp_dir("wire-calls", Engine::Jit);
    let (node, socket) = node(&guard, &[]).await;
    deploy(&node).await;
    let mut grpc = node.client().await;
    for url in [format!("dmw+unix:{socket}"), tcp_wire(&node)] {
        let wire = WireClient::connect(&url, None).await.expect("connects");
        let account = format!("acc-{}", url.len());
        let appended: pb::AppendResponse = wire
            .call(Method::Append, &append(vec![deposit(&account, 40)], vec![]))
            .await
            .expect("append");
        let position = appended.positions[0];
        // Read-your-writes over the wire, and the same document over gRPC.
        let over_wire: pb::GetResponse = wire
            .call(Method::Get, &get(&account, position + 1))
            .await
            .expect("get");
        let over_grpc = grpc
            .get(get(&account, position + 1))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(over_wire, over_grpc, "{url}");
        assert!(over_wire.document.contains("40"), "{over_wire:?}");
        // The same refusals, with the same codes and messages.
        let conflict = append(
            vec![deposit(&account, 1)],
            vec![pb::ExpectedVersion {
                stream: account.clone(),
                expect: Some(pb::expected_version::Expect::NoStream(true)),
            }],
        );
        let by_wire = wire
            .call::<pb::AppendResponse>(Method::Append, &conflict)
            .await
            .expect_err("conflict");
        let by_grpc = grpc.append(conflict).await.expect_err("conflict");
        assert_eq!(by_wire.code(), by_grpc.code(), "{url}");
        assert_eq!(by_wire.message(), by_grpc.message(), "{url}");
        let bad = append(vec![event("Deposited", "{not json", &account, "")], vec![]);
        let refused = wire
            .call::<pb::AppendResponse>(Method::Append, &bad)
            .await
            .expect_err("bad json");
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{}",
            refused.message()
        );
        let missing = wire
            .call::<pb::GetResponse>(
                Method::Get,
                &pb::GetRequest {
                    projection: "nope".into(),
                    ..get("x", 0)
                },
            )
            .await
            .expect_err("unknown projection");
        assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());
        // A refused deploy carries its diagnostics as details, as over gRPC.
        let broken = pb::DeployRequest {
            source: "projection p v1 { on Nope { } }".into(),
            origin: "broken.dmp".into(),
        };
        let by_wire = wire
            .call::<pb::DeployResponse>(Method::Deploy, &broken)
            .await
            .expect_err("broken deploy");
        let by_grpc = grpc.deploy(broken).await.expect_err("broken deploy");
        assert_eq!(by_wire.code(), by_grpc.code());
        assert_eq!(by_wire.details(), by_grpc.details());
        assert!(!by_wire.details().is_empty());
    }
    // Nothing refused reached the log: two deposits, one per transport address.
    assert_eq!(read_all(&mut grpc).await.len(), 2);
}

/// An append that reads documents back (read-your-writes in one call), over gRPC and
/// the wire protocol alike: each document includes the events just appended; a read
/// that fails after the append says why in its result while the append stands (no
/// document, a faulted projection); a read-back that cannot be served at all (unknown
/// projection, too many) fails the call and appends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_reads_its_documents_back_in_the_same_call() {
    let guard = temp_dir("wire-read-back", Engine::Jit);
    let (node, socket) = node(&guard, &[]).await;
    deploy(&node).await;
    let mut grpc = node.client().await;
    grpc.deploy(pb::DeployRequest {
        source: "event Deposited { account: string, amount: int }\n\
                 projection ratio v1 { key account state { r: int = 0 }\n\
                 on Deposited { r = 100 / event.amount } }\n"
            .into(),
        origin: "ratio.dmp".into(),
    })
    .await
    .expect("deploy ratio");
    let wire = WireClient::connect(&format!("dmw+unix:{socket}"), None)
        .await
        .expect("connects");
    let mut watcher = node.client().await;
    let read = |projection: &str, key: &str| pb::ReadBack {
        projection: projection.into(),
        key: key.into(),
        version: 0,
    };
    let with_reads = |events: Vec<pb::Event>, reads: Vec<pb::ReadBack>| pb::AppendRequest {
        read_back: reads,
        ..append(events, vec![])
    };
    for transport in ["grpc", "wire"] {
        let account = format!("acc-{transport}");
        let mut call = async |request: pb::AppendRequest| match transport {
            "grpc" => grpc.append(request).await.map(tonic::Response::into_inner),
            _ => {
                wire.call::<pb::AppendResponse>(Method::Append, &request)
                    .await
            }
        };
        let mut balance = 0;
        for amount in [40, 2] {
            balance += amount;
            let done = call(with_reads(
                vec![deposit(&account, amount)],
                vec![read("balances", &account), read("balances", "acc-nobody")],
            ))
            .await
            .expect("append");
            let [found, missing] = done.read_back.as_slice() else {
                panic!("{transport}: two results, not {:?}", done.read_back);
            };
            let document = found.document.as_ref().expect("the document");
            assert_eq!(found.code, 0, "{transport}: {}", found.message);
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&document.document).expect("json"),
                serde_json::json!({ "balance": balance }),
                "{transport}: the read-back includes the append"
            );
            assert!(document.position > done.positions[0], "{transport}");
            assert_eq!(missing.code, Code::NotFound as u32, "{transport}");
            assert!(
                missing.message.contains("acc-nobody"),
                "{}",
                missing.message
            );
        }
        // A projection that faults on the appended event: the append stands, the read
        // says why.
        let done = call(with_reads(
            vec![deposit(&account, 0)],
            vec![read("ratio", &account)],
        ))
        .await
        .expect("append");
        assert_eq!(done.positions.len(), 1);
        assert_eq!(
            done.read_back[0].code,
            Code::FailedPrecondition as u32,
            "{transport}: {}",
            done.read_back[0].message
        );
        // Read-backs that cannot be served fail the call before anything is appended.
        let before = head(&mut watcher).await;
        let unknown = call(with_reads(
            vec![deposit(&account, 1)],
            vec![read("nope", &account)],
        ))
        .await
        .expect_err("unknown projection");
        assert_eq!(unknown.code(), Code::NotFound, "{}", unknown.message());
        let many = call(with_reads(
            vec![deposit(&account, 1)],
            (0..17).map(|_| read("balances", &account)).collect(),
        ))
        .await
        .expect_err("too many");
        assert_eq!(many.code(), Code::InvalidArgument, "{}", many.message());
        assert_eq!(
            head(&mut watcher).await,
            before,
            "{transport}: nothing appended"
        );
    }
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_are_all_answered_by_id() {
    let guard = temp_dir("wire-pipeline", Engine::Jit);
    let (node, socket) = node(&guard, &[]).await;
    deploy(&node).await;
    let wire = WireClient::connect(&format!("dmw+unix:{socket}"), None)
        .await
        .expect("connects");
    // 200 appends from as many tasks on one connection, each to its own stream.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let wire = wire.clone();
            tokio::spawn(async move {
                let r: pb::AppendResponse = wire
                    .call(
                        Method::Append,
                        &append(vec![deposit(&format!("p-{i}"), i)], vec![]),
                    )
                    .await
                    .expect("append");
                (i, r.positions[0])
            })
        })
        .collect();
    let mut positions = Vec::new();
    for task in tasks {
        positions.push(task.await.expect("task"));
    }
    let mut seen: Vec<u64> = positions.iter().map(|(_, p)| *p).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<u64>>());
    // Each answer was the one for its own request.
    let mut grpc = node.client().await;
    let log = read_all(&mut grpc).await;
    for (i, position) in positions {
        assert_eq!(log[position as usize].stream, format!("p-{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_apply_to_wire_calls() {
    let guard = temp_dir("wire-auth", Engine::Jit);
    let data = guard.path().join("data");
    let reader = create_token(&data, "reader", "reader");
    let writer = create_token(&data, "writer", "writer");
    let (node, socket) = node(&guard, &[]).await;
    let url = format!("dmw+unix:{socket}");
    let deposit_one = append(vec![deposit("a", 1)], vec![]);
    for (token, code) in [
        (None, Code::Unauthenticated),
        (Some("made-up"), Code::Unauthenticated),
        (Some(reader.as_str()), Code::PermissionDenied),
    ] {
        let wire = WireClient::connect(&url, token).await.expect("connects");
        let refused = wire
            .call::<pb::AppendResponse>(Method::Append, &deposit_one)
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), code, "{token:?}: {}", refused.message());
    }
    let wire = WireClient::connect(&url, Some(&writer))
        .await
        .expect("connects");
    let done: pb::AppendResponse = wire
        .call(Method::Append, &deposit_one)
        .await
        .expect("the writer appends");
    assert_eq!(done.positions, vec![0]);
    let status: pb::StatusResponse = WireClient::connect(&url, Some(&reader))
        .await
        .expect("connects")
        .call(Method::Status, &pb::StatusRequest {})
        .await
        .expect("the reader reads");
    assert_eq!(status.head, 1);
    drop(node);
}

/// Sends `bytes` on a fresh wire connection (magic first) and reads what comes back
/// until the node closes or goes quiet.
fn raw(socket: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    stream.write_all(MAGIC).expect("magic");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buffer[..n]),
        }
    }
}

fn frame(id: u32, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// The (id, code) of each response frame in `bytes`.
fn responses(bytes: &[u8]) -> Vec<(u32, u8)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        let id = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4"));
        out.push((id, bytes[at + 8]));
        at += 9 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_an_error_and_the_node_stays_up() {
    let guard = temp_dir("wire-hostile", Engine::Jit);
    let (node, socket) = node(&guard, &[]).await;
    let hello = frame(1, 0, b"");
    // A frame claiming 2 GiB: RESOURCE_EXHAUSTED, then the node closes the connection.
    let mut huge = hello.clone();
    huge.extend_from_slice(&(1u32 << 31).to_be_bytes());
    huge.extend_from_slice(&2u32.to_be_bytes());
    huge.push(Method::Append as u8);
    huge.extend_from_slice(&[0u8; 64]);
    let got = responses(&raw(&socket, &huge));
    assert_eq!(got, vec![(1, 0), (2, Code::ResourceExhausted as u8)]);
    // An unknown method is UNIMPLEMENTED; a body that is not the message is
    // INVALID_ARGUMENT; the connection goes on serving after both.
    let mut mixed = hello.clone();
    mixed.extend(frame(2, 200, b"x"));
    mixed.extend(frame(3, Method::Append as u8, &[0xff; 16]));
    mixed.extend(frame(4, Method::Status as u8, b""));
    let mut got = responses(&raw(&socket, &mixed));
    got.sort_unstable();
    assert_eq!(
        got,
        vec![
            (1, 0),
            (2, Code::Unimplemented as u8),
            (3, Code::InvalidArgument as u8),
            (4, 0)
        ]
    );
    // Garbage after the magic that is not a whole frame, then a close: nothing breaks.
    let _ = raw(&socket, &[1, 2, 3]);
    // The node still serves both transports, and nothing was appended.
    let mut grpc = node.client().await;
    assert_eq!(head(&mut grpc).await, 0);
    let wire = WireClient::connect(&format!("dmw+unix:{socket}"), None)
        .await
        .expect("connects");
    let status: pb::StatusResponse = wire
        .call(Method::Status, &pb::StatusRequest {})
        .await
        .expect("status");
    assert_eq!(status.head, 0);
}

/// The node's virtual memory (`VmSize`), in bytes.
fn vm_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmSize");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_headers_alone_do_not_make_the_node_allocate_what_they_claim() {
    let guard = temp_dir("wire-claims", Engine::Jit);
    let (node, socket) = node(&guard, &[]).await;
    let pid = node.child.id();
    let before = vm_size(pid);
    // 50 connections, each announcing a 20 MiB request (under the limit) and sending
    // 10 bytes of it: had the node reserved what they claim, 1 GiB.
    let mut held = Vec::new();
    for id in 0..50u32 {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connects");
        let mut bytes = MAGIC.to_vec();
        bytes.extend(frame(1, 0, b""));
        bytes.extend_from_slice(&(20u32 << 20).to_be_bytes());
        bytes.extend_from_slice(&(id + 2).to_be_bytes());
        bytes.push(Method::Append as u8);
        bytes.extend_from_slice(&[0u8; 10]);
        stream.write_all(&bytes).expect("write");
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = vm_size(pid).saturating_sub(before);
    assert!(grown < 256 << 20, "the node grew by {} MiB", grown >> 20);
    // It still serves, and nothing was appended.
    let mut grpc = node.client().await;
    assert_eq!(head(&mut grpc).await, 0);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_the_wire_protocol() {
    let guard = temp_dir("wire-cli", Engine::Jit);
    let (node, socket) = node(&guard, &[]).await;
    let program = guard.path().join("balances.dmp");
    std::fs::write(&program, PROGRAM).expect("write");
    let url = format!("dmw+unix:{socket}");
    let run = |args: &[&str]| {
        let (code, out, err) = cli_at(&url, args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    };
    run(&["deploy", program.to_str().expect("utf-8")]);
    run(&[
        "append",
        "Deposited",
        r#"{"account":"acc-1","amount":7}"#,
        "--stream",
        "acc-1",
    ]);
    let document = run(&["get", "balances", "acc-1", "--min-position", "1"]);
    assert!(document.contains("\"balance\":7"), "{document}");
    // A streaming command goes over gRPC on the same socket.
    let tail = run(&["tail", "--from", "0"]);
    assert!(tail.contains("acc-1"), "{tail}");
    // A TCP wire address works as well; a node that is not there is a clear error.
    let status = cli_at(&tcp_wire(&node), &["status", "--json"]);
    assert_eq!(status.0, 0, "{status:?}");
    let (code, _, err) = cli_at("dmw://127.0.0.1:1", &["status"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot reach a node at dmw://127.0.0.1:1"),
        "{err}"
    );
}
