//! Limits on what a projection can grow to, end to end (issue 10, finding 7): a real
//! node folds a program with a string doubled on every event and a document that
//! gains a 256 KiB entry on every event, beside a projection that only counts. Before
//! the limits, the doubling aborted the node with an allocation failure, and again on
//! every restart. Now each growing projection faults with R0007 at the event that
//! would pass its limit (a string of 1 MiB, a document of 3 MiB encoded), nothing over
//! a limit is written, the counting projection goes on, and the node restarts and
//! serves reads.

mod common;

use common::*;

use datamesh_runtime::api::pb;
use datamesh_runtime::api::pb::data_mesh_client::DataMeshClient;
use datamesh_stdlib::limits::MAX_STRING_BYTES;
use tonic::transport::Channel;

/// The entry `hoards` adds per event: "0123456789abcdef" doubled 14 times.
const ENTRY_BYTES: usize = 16 << 14;

/// A program whose handler builds a 256 KiB string by doubling and keeps one per event.
fn program() -> String {
    let mut build = String::from("let a0 = \"0123456789abcdef\"");
    for i in 1..=14 {
        build.push_str(&format!("; let a{i} = a{} + a{}", i - 1, i - 1));
    }
    format!(
        "event Grow {{ n: int }}
         projection doubles {{ state {{ s: string = \"x\" }} on Grow {{ s = s + s }} }}
         projection hoards {{ state {{ m: map<int, string> }} on Grow {{ {build}; m[event.n] = a14 }} }}
         projection counts {{ state {{ n: int = 0 }} on Grow {{ n += 1 }} }}"
    )
}

/// The position at which `hoards` passes the document limit: the stored document is a
/// field count, the map's tag and length, and per entry an int key (9 bytes) and a
/// string (tag, a 3-byte length, the bytes).
fn hoards_fault_position() -> u64 {
    let limit = datamesh_compiler::exec::storage::MAX_DOC_BYTES;
    let size = |entries: usize| 1 + 1 + 3 + entries * (9 + 1 + 3 + ENTRY_BYTES);
    let entries = (1..).find(|&n| size(n) > limit).unwrap_or(1);
    u64::try_from(entries - 1).unwrap_or(0)
}

async fn get(
    client: &mut DataMeshClient<Channel>,
    projection: &str,
    min_position: u64,
) -> Result<serde_json::Value, tonic::Status> {
    let found = client
        .get(pb::GetRequest {
            projection: projection.into(),
            min_position,
            ..Default::default()
        })
        .await?;
    Ok(serde_json::from_str(&found.into_inner().document).unwrap_or_default())
}

async fn status_of(client: &mut DataMeshClient<Channel>, name: &str) -> pb::ProjectionStatus {
    let status = client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    status
        .projections
        .into_iter()
        .find(|p| p.name == name)
        .expect("listed")
}

async fn growth_faults_only_the_growing_projections(engine: Engine) {
    let data_guard = temp_dir("limits", engine);
    // The node makes its data directory itself, private to its owner.
    let data = data_guard.path().join("data");
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    client
        .deploy(pb::DeployRequest {
            source: program(),
            origin: "limits.dmp".into(),
        })
        .await
        .expect("deploy");
    // One event per append, each folded before the next, so every event is its own
    // batch and a fault lands at the event that caused it.
    let events = 24u64;
    for n in 0..events {
        let head = client
            .append(pb::AppendRequest {
                events: vec![event("Grow", &format!(r#"{{"n":{n}}}"#), "", "")],
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append")
            .into_inner()
            .head;
        let counted = get(&mut client, "counts", head).await.expect("counts");
        assert_eq!(counted["n"], n + 1);
    }

    // The doubled string stops at 2^20 bytes: event 20 would have made it 2 MiB.
    let doubles = status_of(&mut client, "doubles").await;
    assert_eq!((doubles.state.as_str(), doubles.position), ("faulted", 20));
    assert!(
        doubles.fault.contains("R0007")
            && doubles
                .fault
                .contains("a string of 2097152 bytes is longer than the limit of 1048576"),
        "{}",
        doubles.fault
    );
    let s = get(&mut client, "doubles", 0).await.expect("stale read");
    assert_eq!(s["s"].as_str().map(str::len), Some(MAX_STRING_BYTES));

    // The document that would pass 3 MiB is not written; the fault names it.
    let at = hoards_fault_position();
    let hoards = status_of(&mut client, "hoards").await;
    assert_eq!((hoards.state.as_str(), hoards.position), ("faulted", at));
    assert!(
        hoards.fault.contains("R0007") && hoards.fault.contains("more than 3145728 bytes"),
        "{}",
        hoards.fault
    );
    let waiting = get(&mut client, "hoards", events)
        .await
        .expect_err("faulted");
    assert_eq!(waiting.code(), tonic::Code::FailedPrecondition);
    // The last document that fits is still served, in one message.
    let m = get(&mut client, "hoards", 0).await.expect("stale read");
    assert_eq!(m["m"].as_object().map(|m| m.len() as u64), Some(at));

    // The counting projection went on to the end.
    let counts = status_of(&mut client, "counts").await;
    assert_eq!(
        (counts.state.as_str(), counts.position),
        ("running", events)
    );

    // A restart resumes from the checkpoints: the node starts, nothing refolds past a
    // limit, and reads work.
    drop(client);
    drop(node);
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let counted = get(&mut client, "counts", events).await.expect("counts");
    assert_eq!(counted["n"], events);
    let doubles = status_of(&mut client, "doubles").await;
    assert_eq!((doubles.state.as_str(), doubles.position), ("faulted", 20));
    let hoards = status_of(&mut client, "hoards").await;
    assert_eq!((hoards.state.as_str(), hoards.position), ("faulted", at));
    let m = get(&mut client, "hoards", 0).await.expect("stale read");
    assert_eq!(m["m"].as_object().map(|m| m.len() as u64), Some(at));
    // And it still takes events.
    client
        .append(pb::AppendRequest {
            events: vec![event("Grow", r#"{"n":99}"#, "", "")],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append after restart");
    let counted = get(&mut client, "counts", events + 1)
        .await
        .expect("counts");
    assert_eq!(counted["n"], events + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growth_faults_only_the_growing_projections_jit() {
    growth_faults_only_the_growing_projections(Engine::Jit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growth_faults_only_the_growing_projections_interp() {
    growth_faults_only_the_growing_projections(Engine::Interp).await;
}

/// A key from a payload longer than the store holds (fjall panics on keys over 64 KiB,
/// which stopped the whole engine): only the projection keyed by it faults, with
/// R0007; the others fold on, and the node restarts and serves.
async fn an_overlong_key_faults_only_its_projection(engine: Engine) {
    let data_guard = temp_dir("longkey", engine);
    let data = data_guard.path().join("data");
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    client
        .deploy(pb::DeployRequest {
            source: "event Seen { who: string }
                     projection by_who { key who state { n: int = 0 } on Seen { n += 1 } }
                     projection counts { state { n: int = 0 } on Seen { n += 1 } }"
                .into(),
            origin: "keys.dmp".into(),
        })
        .await
        .expect("deploy");
    let long = "k".repeat(100_000);
    for who in ["ann", long.as_str(), "bob"] {
        let head = client
            .append(pb::AppendRequest {
                events: vec![event("Seen", &format!(r#"{{"who":"{who}"}}"#), "", "")],
                expected: vec![],
                read_back: Vec::new(),
            })
            .await
            .expect("append")
            .into_inner()
            .head;
        get(&mut client, "counts", head).await.expect("counts");
    }
    let faulted = status_of(&mut client, "by_who").await;
    assert_eq!(faulted.state, "faulted", "{faulted:?}");
    assert!(faulted.fault.contains("R0007"), "{}", faulted.fault);
    assert!(
        faulted.fault.contains("longer than the store holds"),
        "{}",
        faulted.fault
    );
    assert!(
        faulted.fault.len() < 4096,
        "the fault quotes the key briefly"
    );
    let counts = get(&mut client, "counts", 3).await.expect("counts");
    assert_eq!(counts["n"], 3);
    let status = client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.log_error.is_empty(), "{}", status.log_error);
    drop(client);
    drop(node);
    let node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let ann = client
        .get(pb::GetRequest {
            projection: "by_who".into(),
            key: "ann".into(),
            ..Default::default()
        })
        .await
        .expect("the faulted projection's documents still read")
        .into_inner();
    assert!(ann.document.contains("\"n\":1"), "{}", ann.document);
    let counts = get(&mut client, "counts", 3).await.expect("counts");
    assert_eq!(counts["n"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_key_faults_only_its_projection_jit() {
    an_overlong_key_faults_only_its_projection(Engine::Jit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_key_faults_only_its_projection_interp() {
    an_overlong_key_faults_only_its_projection(Engine::Interp).await;
}
