//! The engine against the reference interpreter: a log folded by the node's engine
//! (with tiny chunks, batches and document tables, so every chunk boundary, commit and
//! table eviction is crossed many times) must leave in the store exactly the documents
//! and faults `interp::Fold` computes over the same events, on both engines, and again
//! after a restart with cold tables and more events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datamesh_compiler::check::check_source;
use datamesh_compiler::codec::decode_payload_bytes;
use datamesh_compiler::interp::{Meta, apply_event};
use datamesh_compiler::ir::Program;
use datamesh_stdlib::Value;

use super::{Engine, EngineKind};
use crate::log::{Log, LogConfig, NewEvent};
use crate::store::Store;
use crate::store::encoding::{decode_doc, decode_key};

const PROGRAM: &str = r#"
event Opened { account: string, owner: string }
event Deposited { account: string, amount: int }
event Withdrawn { account: string, amount: int }
event Closed { account: string }
event Moved { from: string, to: string, amount: int }

projection balances v1 {
  key account
  state { owner: string = "", balance: int = 0, n: int = 0, tags: list<string> }
  on Opened { owner = event.owner; tags.push("open") }
  on Deposited { balance += event.amount; n += 1 }
  on Withdrawn { balance -= event.amount; n += 1 }
  on Closed where balance < 500 { delete }
  on Moved key event.from { balance -= event.amount }
  on Moved key event.to where event.amount > 3 { balance += event.amount }
}

projection totals v1 {
  state { sum: int = 0, count: int = 0 }
  on Deposited { sum += event.amount; count += 1 }
}

// Changes every kind of collection, then traps at the first deposit of 37: the
// document must be left as before that deposit.
projection audit v1 {
  key account
  state { seen: set<int>, amounts: list<int>, by: map<string, int>, n: int = 0, last: int = 0 }
  on Deposited {
    amounts.push(event.amount); amounts.push(event.amount); amounts.remove(event.amount)
    by["d"] = (by["d"] ?? 0) + event.amount; by[to_string(event.amount)] = 1; n += 1
    seen.insert(event.amount)
    if event.amount == 37 { seen.remove(event.amount); seen.remove(1) }
    last = 100 / (event.amount - 37)
  }
}

// Traps (division by zero) at the first withdrawal of 13.
projection ratio v1 {
  key account
  state { r: int = 0 }
  on Withdrawn { r = 1000 / (event.amount - 13) }
}
"#;

/// Deterministic events over 40 accounts (twice the test table size).
fn events(seed: u64, n: usize) -> Vec<NewEvent> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let r = next();
            let a = format!("acc-{}", r % 40);
            let amount = (r >> 8) % 50 + 1;
            let (ty, data) = match (r >> 20) % 10 {
                0 => (
                    "Opened",
                    format!(r#"{{"account":"{a}","owner":"o{}"}}"#, r % 7),
                ),
                1 => ("Closed", format!(r#"{{"account":"{a}"}}"#)),
                2 => (
                    "Moved",
                    format!(
                        r#"{{"from":"{a}","to":"acc-{}","amount":{amount}}}"#,
                        (r >> 30) % 40
                    ),
                ),
                3 | 4 => (
                    "Withdrawn",
                    format!(r#"{{"account":"{a}","amount":{amount}}}"#),
                ),
                _ => (
                    "Deposited",
                    format!(r#"{{"account":"{a}","amount":{amount}}}"#),
                ),
            };
            NewEvent {
                event_type: ty.to_owned(),
                payload: data.into_bytes(),
                stream: String::new(),
                id: String::new(),
            }
        })
        .collect()
}

type Docs = BTreeMap<Vec<Value>, Vec<Value>>;

/// What the interpreter's reference semantics make of the whole log (each event on
/// copies of its documents, committed only if no handler traps: `interp::apply_event`,
/// independent of the in-place folding both engines do): per projection, documents
/// and the position of its fault.
fn reference(program: &Program, log: &Log) -> Vec<(Docs, Option<i64>)> {
    let mut out: Vec<(Docs, Option<i64>)> = vec![(Docs::new(), None); program.projections.len()];
    for record in log.read(0, usize::MAX).expect("read") {
        let id = program.event_id(&record.event_type).expect("declared");
        let row = decode_payload_bytes(&program.events[id], &record.payload).expect("decodes");
        let position = i64::try_from(record.position).expect("small");
        let meta = Meta {
            position,
            time: record.time,
            stream: Arc::from(record.stream.as_str()),
            event_type: Arc::from(record.event_type.as_str()),
            id: Arc::from(record.id.as_str()),
        };
        for (projection, (docs, fault)) in program.projections.iter().zip(&mut out) {
            if fault.is_some() {
                continue;
            }
            match apply_event(projection, id, &row, &meta, &mut |k| docs.get(k).cloned()) {
                Ok(overlay) => {
                    for (key, doc) in overlay {
                        match doc {
                            Some(doc) => docs.insert(key, doc),
                            None => docs.remove(&key),
                        };
                    }
                }
                Err(_) => *fault = Some(position),
            }
        }
    }
    out
}

/// What the engine left in the store.
fn stored(engine: &Engine, program: &Program) -> Vec<(Docs, Option<i64>)> {
    program
        .projections
        .iter()
        .map(|p| {
            let label = format!("{}@v{}", p.name, p.version);
            let (keyspace, fault) = engine
                .with_registry(|r| {
                    let info = r.resolve(&p.name, Some(p.version)).expect("deployed");
                    (info.keyspace.clone(), info.fault.clone())
                })
                .expect("registry");
            let store = engine.store();
            let ks = store.keyspace(&keyspace).expect("keyspace");
            let docs = store
                .scan(&ks, &[], None, None, usize::MAX)
                .expect("scan")
                .into_iter()
                .map(|(k, v)| (decode_key(&k).expect("key"), decode_doc(&v).expect("doc")))
                .collect();
            let fault = fault.map(|json| {
                let v: serde_json::Value = serde_json::from_str(&json).expect("fault json");
                v["position"].as_i64().expect("position")
            });
            let _ = label;
            (docs, fault)
        })
        .collect()
}

async fn caught_up(engine: &Engine, program: &Program, head: u64) {
    for p in &program.projections {
        let label = format!("{}@v{}", p.name, p.version);
        engine
            .wait_for(&label, head, Duration::from_secs(60))
            .await
            .expect("known projection");
    }
}

/// A fresh directory, the checked program and an empty log for one test and engine.
/// The directory is removed when the returned guard is dropped.
fn setup(name: &str, kind: EngineKind) -> (tempfile::TempDir, Program, Log) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("datamesh-engine-{name}-{}-", kind.name()))
        .tempdir()
        .expect("temp dir");
    let program = check_source(PROGRAM).program.expect("the program checks");
    let (log, _) = Log::open(LogConfig::new(dir.path().join("log"))).expect("log");
    (dir, program, log)
}

async fn agrees_with_the_interpreter(kind: EngineKind) {
    let (dir, program, log) = setup("agree", kind);
    for chunk in events(0x9E37_79B9_7F4A_7C15, 3000).chunks(500) {
        log.append(chunk.to_vec(), Vec::new())
            .await
            .expect("append");
    }
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store.clone(), kind).expect("engine");
    engine.deploy(PROGRAM, "t.dmp").expect("deploy");
    caught_up(&engine, &program, log.head()).await;
    let want = reference(&program, &log);
    assert!(want[2].1.is_some(), "the test log must fault `audit`");
    assert!(want[3].1.is_some(), "the test log must fault `ratio`");
    assert!(
        !want[0].0.is_empty() && want[0].0.len() < 40,
        "some accounts deleted"
    );
    assert_eq!(stored(&engine, &program), want, "{kind}: first run");

    // A restart: a new engine with cold tables, over the same store, and more events.
    engine.stop().await;
    for chunk in events(0xD1B5_4A32_D192_ED03, 1500).chunks(500) {
        log.append(chunk.to_vec(), Vec::new())
            .await
            .expect("append");
    }
    let engine = Engine::start(log.clone(), store, kind).expect("engine restarts");
    caught_up(&engine, &program, log.head()).await;
    assert_eq!(
        stored(&engine, &program),
        reference(&program, &log),
        "{kind}: after a restart"
    );
    engine.stop().await;
}

/// A handler that changes every kind of collection and then traps, on a document an
/// earlier event of the same batch changed (so it is about to be written): the store
/// must get the document as that earlier event left it.
async fn a_trap_leaves_a_changed_document_as_it_was(kind: EngineKind) {
    let (dir, program, log) = setup("trap", kind);
    let deposit = |amount: u32| NewEvent {
        event_type: "Deposited".to_owned(),
        payload: format!(r#"{{"account":"a","amount":{amount}}}"#).into_bytes(),
        stream: String::new(),
        id: String::new(),
    };
    let batch = vec![deposit(1), deposit(5), deposit(37), deposit(2)];
    log.append(batch, Vec::new()).await.expect("append");
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store, kind).expect("engine");
    engine.deploy(PROGRAM, "t.dmp").expect("deploy");
    caught_up(&engine, &program, log.head()).await;
    let want = reference(&program, &log);
    assert_eq!(want[2].1, Some(2), "`audit` faults at the deposit of 37");
    let doc = want[2]
        .0
        .get(&vec![Value::str("a")])
        .expect("a's audit document");
    assert_eq!(
        doc[3],
        Value::Int(2),
        "two deposits counted before the trap"
    );
    assert_eq!(stored(&engine, &program), want, "{kind}");
    engine.stop().await;
}

/// Declares each test body above as two tests, `jit::<name>` and `interp::<name>`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod jit {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::EngineKind::Jit).await;
                }
            )*
        }
        mod interp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::EngineKind::Interp).await;
                }
            )*
        }
    };
}

on_both_engines!(
    agrees_with_the_interpreter,
    a_trap_leaves_a_changed_document_as_it_was
);
