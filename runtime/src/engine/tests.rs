//! The engine against the reference interpreter: a log folded by the node's engine
//! (with tiny chunks, batches and document tables, so every chunk boundary, commit and
//! table eviction is crossed many times) must leave in the store exactly the documents
//! and faults `interp::Fold` computes over the same events, on both engines, and again
//! after a restart with cold tables and more events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datamesh_compiler::check::check_source;
use datamesh_compiler::exec::Meta;
use datamesh_compiler::exec::codec::decode_payload_bytes;
use datamesh_compiler::interp::apply_event;
use datamesh_compiler::ir::Program;
use datamesh_stdlib::Value;

use super::{DeployLimits, Engine, EngineKind};
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
                origin: String::new(),
                time: None,
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
            let fault = fault.map(|f| i64::try_from(f.position).expect("position"));
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
        origin: String::new(),
        time: None,
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

/// Deposits only (for programs that declare nothing else).
fn deposits(seed: u64, n: usize) -> Vec<NewEvent> {
    events(seed, n)
        .into_iter()
        .filter(|e| e.event_type == "Deposited")
        .collect()
}

async fn append_all(log: &Log, events: Vec<NewEvent>) {
    for chunk in events.chunks(200) {
        log.append(chunk.to_vec(), Vec::new())
            .await
            .expect("append");
    }
}

/// Finding 2: a log cut behind the projections' checkpoints (damage cut its tail) must
/// not leave them past the head: they are rebuilt from position 0 at start, so events
/// appended at the reused positions are folded and the documents are the log's.
async fn a_checkpoint_past_the_head_is_rebuilt(kind: EngineKind) {
    let (dir, program, log) = setup("past-head", kind);
    append_all(&log, events(0x1234_5678_9ABC_DEF1, 600)).await;
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store.clone(), kind).expect("engine");
    engine.deploy(PROGRAM, "t.dmp").expect("deploy");
    caught_up(&engine, &program, log.head()).await;
    engine.stop().await;
    drop(engine);
    log.close();
    // Cut the only segment in half: recovery drops the torn tail.
    let segment = std::fs::read_dir(dir.path().join("log"))
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    let len = std::fs::metadata(&segment).expect("meta").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open");
    file.set_len(len / 2).expect("truncate");
    drop(file);
    let (log, _) = Log::open(LogConfig::new(dir.path().join("log"))).expect("log reopens");
    assert!(log.head() < 500, "the cut removed records: {}", log.head());
    // New events take the positions the projections had applied.
    append_all(&log, events(0x0F0F_1234_5555_AAAA, 150)).await;
    let engine = Engine::start(log.clone(), store, kind).expect("engine restarts");
    caught_up(&engine, &program, log.head()).await;
    assert_eq!(
        stored(&engine, &program),
        reference(&program, &log),
        "{kind}: the projections are the log's after the rebuild"
    );
    engine.stop().await;
    drop(engine);
    log.close();
}

/// Finding 2: a store folded from another log (the log directory was replaced) is
/// rebuilt for this log at start, even where its checkpoints are below the head; the
/// new log's identity is recorded, so the next start rebuilds nothing.
async fn a_store_from_another_log_is_rebuilt(kind: EngineKind) {
    let (dir, program, log) = setup("other-log", kind);
    append_all(&log, events(0x1111_2222_3333_4444, 300)).await;
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store.clone(), kind).expect("engine");
    engine.deploy(PROGRAM, "t.dmp").expect("deploy");
    caught_up(&engine, &program, log.head()).await;
    engine.stop().await;
    drop(engine);
    assert_eq!(
        store.log_identity().expect("identity"),
        Some(log.identity())
    );
    log.close();
    let (other, _) = Log::open(LogConfig::new(dir.path().join("other"))).expect("other log");
    append_all(&other, events(0x5555_6666_7777_8888, 700)).await;
    let engine = Engine::start(other.clone(), store.clone(), kind).expect("engine");
    caught_up(&engine, &program, other.head()).await;
    assert_eq!(
        stored(&engine, &program),
        reference(&program, &other),
        "{kind}: the projections are the new log's"
    );
    assert_eq!(
        store.log_identity().expect("identity"),
        Some(other.identity())
    );
    engine.stop().await;
    drop(engine);
    let engine = Engine::start(other.clone(), store, kind).expect("engine");
    let positions: Vec<u64> = engine
        .with_registry(|r| r.projections.iter().map(|p| p.position).collect())
        .expect("registry");
    assert!(
        positions.iter().any(|p| *p > 0),
        "no rebuild on a start with the same log: {positions:?}"
    );
    engine.stop().await;
    drop(engine);
    other.close();
}

/// Finding 4: a record in a sealed segment that no longer reads faults only the
/// projections that still need it, with a fault naming the segment and offset; a
/// projection already past it goes on following the head, and the engine runs on.
async fn an_unreadable_record_faults_only_the_projections_that_need_it(kind: EngineKind) {
    let (dir, _, log) = setup("unreadable", kind);
    log.close();
    let log_dir = dir.path().join("log");
    let (log, _) = Log::open(LogConfig {
        segment_bytes: 4096,
        ..LogConfig::new(&log_dir)
    })
    .expect("log");
    let deposit = |account: &str| NewEvent {
        event_type: "Deposited".to_owned(),
        payload: format!(r#"{{"account":"{account}","amount":3}}"#).into_bytes(),
        stream: String::new(),
        id: String::new(),
        origin: String::new(),
        time: None,
    };
    let mut batch: Vec<NewEvent> = (0..20).map(|i| deposit(&format!("a{}", i % 5))).collect();
    batch.push(deposit("the-damaged-one"));
    batch.extend((0..300).map(|i| deposit(&format!("a{}", i % 5))));
    append_all(&log, batch).await;
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store, kind).expect("engine");
    let early = "event Deposited { account: string, amount: int }\nprojection early v1 { key account state { n: int = 0 } on Deposited { n += event.amount } }\n";
    engine.deploy(early, "early.dmp").expect("deploy");
    let head = log.head();
    engine
        .wait_for("early@v1", head, Duration::from_secs(60))
        .await;
    assert_eq!(
        engine.with_registry(|r| r.position("early@v1")).flatten(),
        Some(head)
    );
    // Damage the payload of position 20, in a sealed segment, while the log is open.
    let mut damaged = None;
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    for segment in &segments {
        let bytes = std::fs::read(segment).expect("segment");
        let needle = b"the-damaged-one";
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            damaged = Some((segment.clone(), at));
        }
    }
    let (segment, at) = damaged.expect("the record is on disk");
    assert_ne!(
        Some(&segment),
        segments.last(),
        "the damaged segment is sealed"
    );
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .expect("open");
        file.write_all_at(b"X", at as u64).expect("damage");
        file.sync_all().expect("sync");
    }
    let late = "event Deposited { account: string, amount: int }\nprojection late v1 { state { n: int = 0 } on Deposited { n += 1 } }\n";
    engine.deploy(late, "late.dmp").expect("deploy");
    engine
        .wait_for("late@v1", head, Duration::from_secs(60))
        .await;
    let (position, fault) = engine
        .with_registry(|r| {
            let p = r.resolve("late", Some(1)).expect("late");
            (p.position, p.fault.clone())
        })
        .expect("registry");
    assert_eq!(position, 20, "late applied everything before the damage");
    let fault = fault.expect("late is faulted");
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert_eq!(fault.code, "L0001", "{fault}");
    assert_eq!(fault.position, 20, "{fault}");
    assert!(
        fault.message.contains(&name) && fault.message.contains("byte"),
        "{fault}"
    );
    // The projection past the damage follows the head; the engine did not stop.
    append_all(&log, (0..50).map(|_| deposit("a1")).collect()).await;
    let head = log.head();
    engine
        .wait_for("early@v1", head, Duration::from_secs(60))
        .await;
    assert_eq!(
        engine.with_registry(|r| r.position("early@v1")).flatten(),
        Some(head)
    );
    assert_eq!(engine.failure(), None);
    let (faulted, position) = engine
        .with_registry(|r| (r.is_faulted("early@v1"), r.position("late@v1")))
        .expect("registry");
    assert!(!faulted);
    assert_eq!(position, Some(20));
    engine.stop().await;
    drop(engine);
    log.close();
}

/// Finding 5: a program that still names a retired version loads after a restart,
/// with that version skipped: the promoted version serves, and redeploying the same
/// file is a no-op; a program of nothing but retired versions is still refused.
async fn a_retired_version_named_by_a_program_is_skipped_after_a_restart(kind: EngineKind) {
    let (dir, _, log) = setup("retired", kind);
    append_all(&log, deposits(0xABCD_EF01_2345_6789, 200)).await;
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store.clone(), kind).expect("engine");
    let v1 = "event Deposited { account: string, amount: int }\nprojection balances v1 { key account state { balance: int = 0 } on Deposited { balance += event.amount } }\n";
    let both = format!(
        "{v1}projection balances v2 {{ key account state {{ balance: int = 0 }} on Deposited {{ balance += event.amount * 2 }} }}\n"
    );
    engine.deploy(v1, "v1.dmp").expect("v1");
    let outcome = engine.deploy(&both, "both.dmp").expect("both");
    assert_eq!(outcome.started, vec!["balances@v2"]);
    let head = log.head();
    for label in ["balances@v1", "balances@v2"] {
        engine.wait_for(label, head, Duration::from_secs(60)).await;
    }
    engine.promote("balances", 2).expect("promote v2");
    engine.retire("balances", 1).expect("retire v1");
    engine.stop().await;
    drop(engine);
    let engine = Engine::start(log.clone(), store.clone(), kind).expect("engine restarts");
    let active = engine
        .with_registry(|r| {
            r.resolve("balances", None)
                .map(|p| (p.label.clone(), p.fault.clone()))
        })
        .flatten();
    assert_eq!(active, Some(("balances@v2".to_owned(), None)));
    append_all(&log, deposits(0x1357_9BDF_2468_ACE0, 50)).await;
    let head = log.head();
    assert_eq!(
        engine
            .wait_for("balances@v2", head, Duration::from_secs(60))
            .await,
        Some(head)
    );
    let again = engine
        .deploy(&both, "both.dmp")
        .expect("the same file again");
    assert!(
        again.started.is_empty() && again.declared.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.unchanged, vec!["balances@v2"]);
    assert_eq!(again.retired, vec!["balances@v1"]);
    let refused = engine
        .deploy(v1, "v1.dmp")
        .expect_err("only a retired version");
    assert!(
        matches!(refused, super::DeployError::Conflict(_)),
        "{refused}"
    );
    assert_eq!(store.deployments().expect("deployments").len(), 2);
    assert!(
        engine
            .with_registry(|r| r.is_faulted("balances@v1"))
            .expect("registry")
    );
    engine.stop().await;
    drop(engine);
    log.close();
}

/// Finding 8: a deploy compiles outside the registry's lock: while a large program
/// compiles, what appends and status take (the registry, to validate and to report)
/// answers at once, and appends go on; a restart does not wait for the compile (the
/// interpreter folds until the code is installed); both engines agree throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_deploy_compiles_without_blocking_and_a_restart_does_not_wait_for_it() {
    let kind = EngineKind::Jit;
    let (dir, _, log) = setup("big-deploy", kind);
    append_all(&log, deposits(0x2468_1357_ACE0_BDF1, 100)).await;
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store.clone(), kind).expect("engine");
    // About 7,200 IR nodes in one handler: under the JIT threshold, seconds to
    // compile in a debug build.
    let source = big_program(2, 800);
    let program = check_source(&source).program.expect("checks");
    let deployer = engine.clone();
    let deploy_source = source.clone();
    let deploy = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        deployer.deploy(&deploy_source, "big.dmp").expect("deploy");
        started.elapsed()
    });
    let (mut registry_worst, mut append_worst, mut samples) = (Duration::ZERO, Duration::ZERO, 0);
    let more = deposits(0x1111_3333_5555_7777, 400);
    while !deploy.is_finished() {
        let started = std::time::Instant::now();
        engine.with_registry(|r| r.schemas.len());
        registry_worst = registry_worst.max(started.elapsed());
        let started = std::time::Instant::now();
        log.append(vec![more[samples % more.len()].clone()], Vec::new())
            .await
            .expect("append");
        append_worst = append_worst.max(started.elapsed());
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = deploy.join().expect("deploy thread");
    eprintln!(
        "deploy {took:?}; during it {samples} samples, registry worst {registry_worst:?}, append worst {append_worst:?}"
    );
    assert!(
        samples >= 3,
        "the deploy took {took:?}: too short to measure"
    );
    assert!(
        registry_worst * 4 < took,
        "the registry was held for {registry_worst:?} of a {took:?} deploy"
    );
    assert!(
        append_worst * 2 < took,
        "an append waited {append_worst:?} during a {took:?} deploy"
    );
    assert_eq!(engine.with_registry(|r| r.jit(0).is_some()), Some(true));
    let head = log.head();
    engine
        .wait_for("big@v1", head, Duration::from_secs(120))
        .await;
    assert_eq!(
        stored(&engine, &program),
        reference(&program, &log),
        "after the deploy"
    );
    engine.stop().await;
    drop(engine);

    // A restart registers the program at once and compiles it in the background.
    let started = std::time::Instant::now();
    let engine = Engine::start(log.clone(), store, kind).expect("engine restarts");
    let start = started.elapsed();
    assert!(
        start * 4 < took,
        "the start took {start:?}; compiling takes {took:?}"
    );
    append_all(&log, deposits(0x9999_8888_7777_6666, 100)).await;
    let head = log.head();
    assert_eq!(
        engine
            .wait_for("big@v1", head, Duration::from_secs(120))
            .await,
        Some(head)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while engine.with_registry(|r| r.jit(0).is_none()) == Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "the code is never installed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    append_all(&log, deposits(0x4444_2222_1111_0000, 100)).await;
    let head = log.head();
    engine
        .wait_for("big@v1", head, Duration::from_secs(120))
        .await;
    assert_eq!(
        stored(&engine, &program),
        reference(&program, &log),
        "after the restart"
    );
    engine.stop().await;
    drop(engine);
    log.close();
}

/// Finding 8: the deploy limits: a source over the byte limit and a handler over the
/// node limit are refused with a diagnostic; a handler past the JIT threshold runs on
/// the interpreter, with the same results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_limits_refuse_or_fall_back_to_the_interpreter() {
    let kind = EngineKind::Jit;
    let (dir, _, log) = setup("limits", kind);
    append_all(&log, deposits(0x0123_4567_89AB_CDEF, 200)).await;
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store.clone(), kind).expect("engine");
    let huge = format!("{}{}", big_program(0, 1), " ".repeat(1 << 20));
    match engine.deploy(&huge, "huge.dmp") {
        Err(super::DeployError::Invalid(d)) => {
            assert_eq!(d[0].code, "D0001", "{d:?}");
            assert!(d[0].message.contains("1048576"), "{d:?}");
        }
        other => panic!("a 1 MiB program is refused: {other:?}"),
    }
    engine.stop().await;
    drop(engine);
    let limits = DeployLimits {
        max_handler_nodes: 2_000,
        jit_max_handler_nodes: 500,
        ..DeployLimits::default()
    };
    let engine = Engine::start_with_limits(log.clone(), store, kind, limits).expect("engine");
    match engine.deploy(&big_program(0, 200), "big.dmp") {
        Err(super::DeployError::Invalid(d)) => {
            assert_eq!(d[0].code, "D0002", "{d:?}");
            assert!(d[0].message.contains("2401"), "{d:?}");
        }
        other => panic!("a handler over the limit is refused: {other:?}"),
    }
    let source = big_program(0, 100);
    let program = check_source(&source).program.expect("checks");
    engine.deploy(&source, "big.dmp").expect("deploys");
    assert_eq!(
        engine.with_registry(|r| r.jit(0).is_none()),
        Some(true),
        "past the JIT threshold, the interpreter runs it"
    );
    engine
        .wait_for("big@v1", log.head(), Duration::from_secs(60))
        .await;
    assert_eq!(stored(&engine, &program), reference(&program, &log));
    engine.stop().await;
    drop(engine);
    log.close();
}

/// A payload appended before any program declared its type, that does not match the
/// declaration deployed later, faults the projections that handle it at its position
/// (R0006, naming the field), whether the engine decoded it ahead on the reading thread
/// (a rebuild of many chunks) or itself; the events before it are applied, a projection
/// of another event type goes on to the head.
async fn a_payload_that_does_not_match_faults_its_projections_at_that_event(kind: EngineKind) {
    let (dir, _, log) = setup("mismatch", kind);
    let event = |ty: &str, payload: String| NewEvent {
        event_type: ty.to_owned(),
        payload: payload.into_bytes(),
        stream: String::new(),
        id: String::new(),
        origin: String::new(),
        time: None,
    };
    let deposit = |i: usize| {
        event(
            "Deposited",
            format!(r#"{{"account":"a{}","amount":{}}}"#, i % 7, i % 10 + 1),
        )
    };
    // Far more events than a chunk before the bad one, so it is met ahead of the fold.
    let bad_at = 1000;
    let mut events: Vec<NewEvent> = (0..bad_at).map(deposit).collect();
    events.push(event(
        "Deposited",
        r#"{"account":"a1","amount":"lots"}"#.to_owned(),
    ));
    events.extend((0..500).map(|i| event("Noted", format!(r#"{{"n":{i}}}"#))));
    events.extend((0..300).map(deposit));
    append_all(&log, events).await;
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store, kind).expect("engine");
    let program = "event Deposited { account: string, amount: int }\n\
        event Noted { n: int }\n\
        projection sums v1 { key account state { total: int = 0 } on Deposited { total += event.amount } }\n\
        projection notes v1 { state { n: int = 0 } on Noted { n += 1 } }\n";
    engine.deploy(program, "p.dmp").expect("deploy");
    let head = log.head();
    engine
        .wait_for("notes@v1", head, Duration::from_secs(60))
        .await;
    let info = |label: &str| {
        engine
            .with_registry(|r| {
                let p = r.resolve(label, Some(1)).expect("deployed");
                (p.position, p.fault.clone(), p.keyspace.clone())
            })
            .expect("registry")
    };
    let (position, fault, keyspace) = info("sums");
    let fault = fault.expect("sums is faulted");
    assert_eq!(
        (fault.code.as_str(), fault.position),
        ("R0006", 1000),
        "{fault}"
    );
    assert!(fault.message.contains("amount"), "{fault}");
    assert_eq!(
        position, 1000,
        "sums applied every event before the bad one"
    );
    let store = engine.store();
    let ks = store.keyspace(&keyspace).expect("keyspace");
    let totals: i64 = store
        .scan(&ks, &[], None, None, usize::MAX)
        .expect("scan")
        .into_iter()
        .map(|(_, v)| match decode_doc(&v).expect("doc").first() {
            Some(Value::Int(total)) => *total,
            other => panic!("a total, not {other:?}"),
        })
        .sum();
    let want: i64 = (0..bad_at)
        .map(|i| i64::try_from(i % 10 + 1).expect("small"))
        .sum();
    assert_eq!(totals, want);
    let (position, fault, _) = info("notes");
    assert_eq!((position, fault), (head, None));
    engine.stop().await;
    drop(engine);
    log.close();
    drop(dir);
}

/// A handler that reads the envelope's text (`meta.stream`, `meta.id`) gets it for
/// every event of a rebuild of many chunks, whether or not another deployed program
/// reads it.
async fn the_envelope_reaches_the_handlers_that_read_it(kind: EngineKind) {
    let (dir, _, log) = setup("envelope", kind);
    let n = 400u64;
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent {
            event_type: "Ping".to_owned(),
            payload: format!(r#"{{"device":"d{}"}}"#, i % 3).into_bytes(),
            stream: format!("s-{}", i % 5),
            id: if i % 2 == 0 {
                format!("id-{i}")
            } else {
                String::new()
            },
            origin: String::new(),
            time: None,
        })
        .collect();
    append_all(&log, events).await;
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store, kind).expect("engine");
    let plain = "event Ping { device: string }\n\
        projection pings v1 { key device state { n: int = 0 } on Ping { n += 1 } }\n";
    engine.deploy(plain, "plain.dmp").expect("deploy plain");
    engine
        .wait_for("pings@v1", n, Duration::from_secs(60))
        .await;
    let reading = "event Ping { device: string }\n\
        projection seen v1 { key device state { stream: string = \"\", id: string = \"\", ids: int = 0 }\n\
          on Ping { stream = meta.stream\n if meta.id != \"\" { id = meta.id\n ids += 1 } } }\n";
    engine
        .deploy(reading, "reading.dmp")
        .expect("deploy reading");
    engine.wait_for("seen@v1", n, Duration::from_secs(60)).await;
    let rows = |label: &str| -> Vec<Vec<Value>> {
        let keyspace = engine
            .with_registry(|r| {
                let p = r.resolve(label, Some(1)).expect("deployed");
                assert!(p.fault.is_none(), "{label}: {:?}", p.fault);
                p.keyspace.clone()
            })
            .expect("registry");
        let store = engine.store();
        let ks = store.keyspace(&keyspace).expect("keyspace");
        let scanned = store.scan(&ks, &[], None, None, usize::MAX).expect("scan");
        scanned
            .into_iter()
            .map(|(_, v)| decode_doc(&v).expect("doc"))
            .collect()
    };
    let text = |v: &Value| match v {
        Value::Str(s) => s.to_string(),
        other => panic!("a string, not {other:?}"),
    };
    // Device d0 got events 0, 3, ..., 399 (the last one: 399 % 5 = 4, odd, no id);
    // the last with an id was 396; 67 of them had one.
    let seen = rows("seen");
    assert_eq!(seen.len(), 3);
    assert_eq!(
        text(&seen[0][0]),
        "s-4",
        "{kind}: meta.stream of d0's last event"
    );
    assert_eq!(
        text(&seen[0][1]),
        "id-396",
        "{kind}: meta.id of d0's last event with one"
    );
    assert!(
        matches!(seen[0][2], Value::Int(67)),
        "{kind}: {:?}",
        seen[0][2]
    );
    let pings = rows("pings");
    assert!(
        matches!(pings[0][0], Value::Int(134)),
        "{kind}: {:?}",
        pings[0][0]
    );
    engine.stop().await;
    drop(engine);
    log.close();
    drop(dir);
}

/// The engine folds appends as they arrive (its thread is unparked by the log's
/// writer), and an engine dropped without [`Engine::stop`] lets go of the store: its
/// thread ends, so nothing keeps the store open behind the caller's back.
async fn a_live_engine_folds_each_append_and_a_dropped_one_lets_go(kind: EngineKind) {
    let (dir, program, log) = setup("live", kind);
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    let engine = Engine::start(log.clone(), store.clone(), kind).expect("engine");
    engine.deploy(PROGRAM, "t.dmp").expect("deploy");
    for (i, event) in deposits(0x5EED_0F11_7E00_0001, 40).into_iter().enumerate() {
        log.append(vec![event], Vec::new()).await.expect("append");
        caught_up(&engine, &program, log.head()).await;
        assert_eq!(
            engine
                .with_registry(|r| r.position("balances@v1"))
                .flatten(),
            Some(log.head()),
            "{kind}: append {i} is folded"
        );
    }
    assert_eq!(
        stored(&engine, &program),
        reference(&program, &log),
        "{kind}"
    );
    drop(engine);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&store) > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        Arc::strong_count(&store),
        1,
        "{kind}: the dropped engine's thread still holds the store"
    );
    // The log goes on without it.
    log.append(deposits(7, 1), Vec::new())
        .await
        .expect("append");
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
    a_trap_leaves_a_changed_document_as_it_was,
    a_checkpoint_past_the_head_is_rebuilt,
    a_store_from_another_log_is_rebuilt,
    an_unreadable_record_faults_only_the_projections_that_need_it,
    a_payload_that_does_not_match_faults_its_projections_at_that_event,
    a_retired_version_named_by_a_program_is_skipped_after_a_restart,
    the_envelope_reaches_the_handlers_that_read_it,
    a_live_engine_folds_each_append_and_a_dropped_one_lets_go
);

/// A program with one handler of about `statements` statements, of one of three
/// shapes: `if`s with arithmetic on both branches; `let`s that all stay live until
/// the end (register pressure); map updates (helper calls).
fn big_program(shape: usize, statements: usize) -> String {
    let mut body = String::new();
    match shape {
        0 => {
            for i in 0..statements {
                body.push_str(&format!(
                    "  if event.amount > {i} {{ total += event.amount * {i} + n }} else {{ n += {i} }}\n"
                ));
            }
        }
        1 => {
            for i in 0..statements / 2 {
                body.push_str(&format!("  let x{i} = event.amount * {i} + n\n"));
            }
            for i in 0..statements / 2 {
                body.push_str(&format!("  total += x{i}\n"));
            }
        }
        _ => {
            for i in 0..statements {
                body.push_str(&format!(
                    "  by[\"k{i}\"] = (by[\"k{i}\"] ?? 0) + event.amount\n"
                ));
            }
        }
    }
    format!(
        "event Deposited {{ account: string, amount: int }}\n\
         projection big v1 {{\n  key account\n  state {{ total: int = 0, n: int = 0, by: map<string, int> }}\n  on Deposited {{\n{body}  }}\n}}\n"
    )
}

/// Measures JIT compile time against handler size (run with `--ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a test"]
fn measure_compile_time_against_handler_size() {
    let shapes: Vec<usize> = std::env::var("SHAPES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 1, 2]);
    let max: usize = std::env::var("MAX")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3200);
    for shape in shapes {
        let mut statements = 100;
        while statements <= max {
            let source = big_program(shape, statements);
            let started = std::time::Instant::now();
            let program = check_source(&source).program.expect("checks");
            let checked = started.elapsed();
            let nodes = super::registry::handler_nodes(&program.projections[0].handlers[0]);
            let started = std::time::Instant::now();
            let code = datamesh_compiler::codegen::compile(&program);
            let compiled = started.elapsed();
            assert!(code.is_ok());
            println!(
                "shape {shape} statements {statements:>6} nodes {nodes:>7} bytes {:>8} check {:>8.1} ms jit {:>9.1} ms ({:.1} us/node)",
                source.len(),
                checked.as_secs_f64() * 1e3,
                compiled.as_secs_f64() * 1e3,
                compiled.as_secs_f64() * 1e6 / nodes as f64
            );
            statements *= 2;
        }
    }
}
