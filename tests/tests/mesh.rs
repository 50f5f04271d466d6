//! The mesh as it stands: a node's name and peers, and the export side (`Export`): a
//! peer reads only what is exported to it, with the envelope an importer needs, then
//! live events and heartbeats; a peer nothing is exported to is refused; a deploy that
//! changes the export set ends the stream.

mod common;

use std::time::Duration;

use common::*;
use datamesh_runtime::api::pb;
use datamesh_runtime::api::pb::export_message::Kind;
use std::collections::VecDeque;
use tonic::Code;

const PAYMENTS: &str = "event Paid { order: string, amount: int }
event Refunded { order: string, amount: int }
event Audited { note: string }
export to bank { Paid, Refunded }
export to reporting { Paid }";

/// What an export stream says, one event at a time (the exporter sends events in
/// batches).
#[derive(Debug)]
enum Msg {
    Hello(pb::ExportHello),
    Event(pb::ExportedEvent),
    Heartbeat(pb::ExportHeartbeat),
}

/// An export stream read one [`Msg`] at a time.
struct Feed {
    stream: tonic::Streaming<pb::ExportMessage>,
    queue: VecDeque<Msg>,
}

impl From<tonic::Streaming<pb::ExportMessage>> for Feed {
    fn from(stream: tonic::Streaming<pb::ExportMessage>) -> Feed {
        Feed {
            stream,
            queue: VecDeque::new(),
        }
    }
}

/// The next item of an export stream, within 10 s.
async fn next(feed: &mut Feed) -> Msg {
    loop {
        if let Some(msg) = feed.queue.pop_front() {
            return msg;
        }
        let kind = tokio::time::timeout(Duration::from_secs(10), feed.stream.message())
            .await
            .expect("a message within 10 s")
            .expect("no error")
            .expect("the stream goes on")
            .kind
            .expect("a kind");
        match kind {
            Kind::Hello(h) => feed.queue.push_back(Msg::Hello(h)),
            Kind::Heartbeat(h) => feed.queue.push_back(Msg::Heartbeat(h)),
            Kind::Events(batch) => {
                assert!(!batch.events.is_empty(), "an empty batch is never sent");
                feed.queue.extend(batch.events.into_iter().map(Msg::Event));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reads_only_what_is_exported_to_it() {
    let engine = Engine::Jit;
    let guard = temp_dir("mesh-export", engine);
    let data = guard.path().join("data");
    let node = Node::start(
        &data,
        engine,
        &["--name", "payments", "--peer", "bank=http://127.0.0.1:7071"],
    );
    let mut client = node.client().await;
    client
        .deploy(pb::DeployRequest {
            source: PAYMENTS.into(),
            origin: "payments.dmp".into(),
        })
        .await
        .expect("deploy");
    let status = client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.name, "payments");
    assert_eq!(
        status
            .peers
            .iter()
            .map(|p| (p.name.as_str(), p.address.as_str()))
            .collect::<Vec<_>>(),
        [("bank", "http://127.0.0.1:7071")]
    );
    let events = [
        ("Paid", r#"{"order":"o1","amount":10}"#, "order-o1", "p1"),
        ("Audited", r#"{"note":"x"}"#, "", ""),
        (
            "Refunded",
            r#"{"order":"o1","amount":10}"#,
            "order-o1",
            "r1",
        ),
        ("Paid", r#"{"order":"o2","amount":5}"#, "order-o2", ""),
    ];
    for (ty, data, stream, id) in events {
        client
            .append(pb::AppendRequest {
                events: vec![event(ty, data, stream, id)],
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append");
    }
    let log = read_all(&mut client).await;

    // The bank reads Paid and Refunded, from the start.
    let mut stream: Feed = client
        .export(pb::ExportRequest {
            peer: "bank".into(),
            from_position: 0,
        })
        .await
        .expect("export to bank")
        .into_inner()
        .into();
    let Msg::Hello(hello) = next(&mut stream).await else {
        panic!("the first message is the hello")
    };
    assert_eq!(hello.node, "payments");
    assert_eq!(hello.log_identity.len(), 32);
    assert_eq!(hello.head, 4);
    assert_eq!(
        hello
            .types
            .iter()
            .map(|t| (t.name.as_str(), t.declaration.as_str()))
            .collect::<Vec<_>>(),
        [
            ("Paid", "event Paid { order: string, amount: int }"),
            ("Refunded", "event Refunded { order: string, amount: int }"),
        ]
    );
    let mut received = Vec::new();
    for _ in 0..3 {
        match next(&mut stream).await {
            Msg::Event(e) => received.push(e),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    assert_eq!(
        received
            .iter()
            .map(|e| (
                e.position,
                e.r#type.as_str(),
                e.stream.as_str(),
                e.id.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            (0, "Paid", "order-o1", "p1"),
            (2, "Refunded", "order-o1", "r1"),
            (3, "Paid", "order-o2", ""),
        ]
    );
    assert_eq!(received[0].data, r#"{"order":"o1","amount":10}"#);
    assert_eq!(received[0].origin, ["payments"]);
    // The exporter's time, as the log holds it (µs): the same instant `Read` shows.
    assert!(received[0].time > 0);
    assert!(log[0].time.starts_with("20"), "{}", log[0].time);
    // Caught up: a heartbeat with the head, then live events.
    match next(&mut stream).await {
        Msg::Heartbeat(beat) => assert_eq!((beat.head, beat.position), (4, 4)),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    for (ty, data) in [
        ("Audited", r#"{"note":"y"}"#),
        ("Paid", r#"{"order":"o3","amount":1}"#),
    ] {
        client
            .append(pb::AppendRequest {
                events: vec![event(ty, data, "", "")],
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append");
    }
    let live = loop {
        match next(&mut stream).await {
            Msg::Event(e) => break e,
            Msg::Heartbeat(_) => continue,
            Msg::Hello(_) => panic!("one hello"),
        }
    };
    assert_eq!((live.position, live.r#type.as_str()), (5, "Paid"));

    // A later position skips what came before; the reporting peer sees Paid only.
    let mut reporting: Feed = client
        .export(pb::ExportRequest {
            peer: "reporting".into(),
            from_position: 1,
        })
        .await
        .expect("export to reporting")
        .into_inner()
        .into();
    assert!(matches!(next(&mut reporting).await, Msg::Hello(_)));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let Msg::Event(e) = next(&mut reporting).await {
            seen.push((e.position, e.r#type));
        }
    }
    assert_eq!(seen, [(3, "Paid".to_owned()), (5, "Paid".to_owned())]);

    // A peer nothing is exported to, or a name that is no name, is refused.
    let refused = client
        .export(pb::ExportRequest {
            peer: "stranger".into(),
            from_position: 0,
        })
        .await
        .expect_err("nothing is exported to a stranger");
    assert_eq!(
        refused.code(),
        Code::PermissionDenied,
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("export to stranger"),
        "{}",
        refused.message()
    );
    let refused = client
        .export(pb::ExportRequest {
            peer: "no such/peer".into(),
            from_position: 0,
        })
        .await
        .expect_err("not a name");
    assert_eq!(
        refused.code(),
        Code::InvalidArgument,
        "{}",
        refused.message()
    );

    // A deploy that exports more to the bank ends the bank's stream, so it cannot
    // miss earlier events of the newly exported type.
    let deployed = client
        .deploy(pb::DeployRequest {
            source: "event Audited { note: string }\nexport to bank { Audited }".into(),
            origin: "audit.dmp".into(),
        })
        .await
        .expect("deploy")
        .into_inner();
    assert_eq!(deployed.exported, ["bank:Audited"]);
    let ended = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.stream.message())
            .await
            .expect("within 10 s");
        match message {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream must end with a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unavailable, "{}", ended.message());
    // The reporting peer's set did not change: its stream goes on.
    client
        .append(pb::AppendRequest {
            events: vec![event("Paid", r#"{"order":"o4","amount":2}"#, "", "")],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append");
    loop {
        if let Msg::Event(e) = next(&mut reporting).await {
            assert_eq!(e.position, 6);
            break;
        }
    }
}

#[test]
fn a_bad_name_or_peer_is_refused_at_start() {
    let engine = Engine::Jit;
    let guard = temp_dir("mesh-flags", engine);
    let data = guard.path().join("data");
    for (args, says) in [
        (vec!["--name", "no spaces"], "--name"),
        (vec!["--peer", "bank"], "--peer"),
        (vec!["--peer", "bank=127.0.0.1:7071"], "not a peer address"),
    ] {
        let (code, lines) = Node::try_start(&data, engine, &args, Some("warn"))
            .err()
            .expect("refused");
        let text = lines.join("\n");
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains(says), "{text}");
    }
}
