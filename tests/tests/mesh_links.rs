//! The import side of the mesh, with real node processes on loopback, each with its
//! own data directory, talking over Unix sockets (so a restarted node keeps its
//! address): links import exactly once and in order through a chain and a fan-in,
//! whatever is killed when; they stop on a replaced peer log until a reset; they
//! check the block against the peer's exports; they move past dropped events for
//! good; an import loop terminates.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use datamesh_runtime::api::pb;
use datamesh_runtime::api::pb::data_mesh_client::DataMeshClient;
use tonic::transport::Channel;

async fn deploy(client: &mut DataMeshClient<Channel>, source: &str) -> pb::DeployResponse {
    client
        .deploy(pb::DeployRequest {
            source: source.into(),
            origin: "test.dmp".into(),
        })
        .await
        .expect("deploy")
        .into_inner()
}

fn example(name: &str) -> String {
    std::fs::read_to_string(root().join("examples/mesh").join(name)).expect("example")
}

async fn link(client: &mut DataMeshClient<Channel>, peer: &str) -> Option<pb::LinkStatus> {
    let status = client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    status.links.into_iter().find(|l| l.peer == peer)
}

/// Polls the link to `peer` until `done` holds (at most `secs` seconds).
async fn wait_link(
    client: &mut DataMeshClient<Channel>,
    peer: &str,
    secs: u64,
    done: impl Fn(&pb::LinkStatus) -> bool,
) -> pb::LinkStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(l) = link(client, peer).await {
            if done(&l) {
                return l;
            }
            last = Some(l);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the link to {peer} did not get there in {secs} s: {last:?}");
}

/// Waits until the link to `peer` has read everything up to the peer's head.
async fn caught_up(
    client: &mut DataMeshClient<Channel>,
    peer: &str,
    peer_client: &mut DataMeshClient<Channel>,
) -> pb::LinkStatus {
    let target = head(peer_client).await;
    wait_link(client, peer, 120, |l| {
        l.position >= target && l.state == "live"
    })
    .await
}

async fn append(client: &mut DataMeshClient<Channel>, events: Vec<pb::Event>) {
    client
        .append(pb::AppendRequest {
            events,
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append");
}

/// The documents of a projection, key -> document.
async fn documents(
    client: &mut DataMeshClient<Channel>,
    projection: &str,
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let r = client
            .scan(pb::ScanRequest {
                projection: projection.into(),
                limit: 10_000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("scan")
            .into_inner();
        for d in r.documents {
            out.insert(d.key, serde_json::from_str(&d.document).expect("json"));
        }
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
    panic!("too many pages");
}

/// The events of `records` as `dmc run` lines from `peer`.
fn from_lines(records: &[pb::EventRecord], peer: &str) -> String {
    let mut out = String::new();
    for r in records {
        let line = serde_json::json!({
            "type": r.r#type,
            "data": serde_json::from_str::<serde_json::Value>(&r.data).expect("json"),
            "stream": r.stream,
            "id": r.id,
            "time": r.time,
            "from": peer,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// What `dmc run` folds from `lines` with the example program `program`.
fn offline(dir: &Path, program: &str, lines: &str) -> serde_json::Value {
    let events = dir.join(format!("{program}.jsonl"));
    std::fs::write(&events, lines).expect("write events");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = dmc::run(
        &root().join("examples/mesh").join(program),
        &events,
        dmc::RunOptions::default(),
        dmc::Style::Plain,
        &mut out,
        &mut err,
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    serde_json::from_slice(&out).expect("dmc run prints JSON")
}

fn payment(i: usize) -> pb::Event {
    let currency = if i % 7 == 3 { "USD" } else { "EUR" };
    let fee = if i.is_multiple_of(5) { 150 } else { 0 };
    event(
        "PaymentSettled",
        &format!(
            r#"{{"payment":"p{i}","iban":"de{:02}","cents":{},"currency":"{currency}","fee_cents":{fee}}}"#,
            i % 13,
            1000 + i * 7
        ),
        &format!("payment-{i}"),
        &format!("p{i}"),
    )
}

fn charge(i: usize) -> pb::Event {
    event(
        "CardCharged",
        &format!(
            r#"{{"charge":"c{i}","account":"de{:02}","cents":{},"merchant":"m{}"}}"#,
            i % 11,
            300 + i * 3,
            i % 4
        ),
        "",
        &format!("c{i}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_and_a_fan_in_import_what_the_offline_fold_gives() {
    chain_and_fan_in(Engine::Jit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_and_a_fan_in_on_the_interpreter_import_the_same() {
    chain_and_fan_in(Engine::Interp).await;
}

/// payments and cards -> bank -> reporting, the importers' rules run on `engine`.
async fn chain_and_fan_in(engine: Engine) {
    let guard = temp_dir("mesh-chain", engine);
    let dir = guard.path();
    let mesh = start_mesh(
        dir,
        engine,
        &[
            ("payments", &[]),
            ("cards", &[]),
            ("bank", &["payments", "cards"]),
            ("reporting", &["bank"]),
        ],
    );
    let [payments, cards, bank, reporting] =
        <[Member; 4]>::try_from(mesh).unwrap_or_else(|_| panic!("four members"));
    let (mut p, mut c, mut b, mut r) = (
        payments.client().await,
        cards.client().await,
        bank.client().await,
        reporting.client().await,
    );
    deploy(&mut p, &example("payments.dmp")).await;
    deploy(&mut c, &example("cards.dmp")).await;
    let deployed = deploy(&mut b, &example("bank.dmp")).await;
    assert_eq!(deployed.imported, ["payments", "cards"]);
    deploy(&mut r, &example("reporting.dmp")).await;
    // Some before the links start, some while they run.
    for chunk in (0..300).collect::<Vec<_>>().chunks(50) {
        append(&mut p, chunk.iter().map(|&i| payment(i)).collect()).await;
        let charges: Vec<pb::Event> = chunk
            .iter()
            .filter(|&&i| i < 200)
            .map(|&i| charge(i))
            .collect();
        if !charges.is_empty() {
            append(&mut c, charges).await;
        }
    }
    let to_payments = caught_up(&mut b, "payments", &mut p).await;
    caught_up(&mut b, "cards", &mut c).await;
    caught_up(&mut r, "bank", &mut b).await;
    assert_eq!(to_payments.lag, 0);
    assert!(to_payments.error.is_empty(), "{to_payments:?}");

    // The bank holds what its rules make of every peer event, once.
    let paid = read_all(&mut p).await;
    let charged = read_all(&mut c).await;
    let banked = read_all(&mut b).await;
    let eur: Vec<&pb::EventRecord> = paid.iter().filter(|e| !e.data.contains("USD")).collect();
    let fees = eur
        .iter()
        .filter(|e| !e.data.contains("\"fee_cents\":0"))
        .count();
    assert_eq!(banked.len(), eur.len() + fees + charged.len());
    assert_eq!(to_payments.imported as usize, eur.len() + fees);
    let mut ids: Vec<&str> = banked.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), banked.len(), "an imported event appears twice");
    for e in &banked {
        let peer = if e.r#type == "Withdrawn" {
            "cards"
        } else {
            "payments"
        };
        assert_eq!(e.origin, [peer], "{e:?}");
        assert!(e.id.starts_with(&format!("{peer}/")), "{e:?}");
    }
    // Per peer, in the peer's order.
    let from_payments: Vec<&str> = banked
        .iter()
        .filter(|e| e.origin == ["payments"])
        .map(|e| e.id.split('/').nth(1).expect("source id"))
        .collect();
    let mut expected: Vec<&str> = Vec::new();
    for e in &eur {
        expected.push(&e.id);
        if !e.data.contains("\"fee_cents\":0") {
            expected.push(&e.id);
        }
    }
    assert_eq!(from_payments, expected);
    let lines = from_lines(&paid, "payments") + &from_lines(&charged, "cards");
    let folded = offline(dir, "bank.dmp", &lines);
    let balances = documents(&mut b, "balances").await;
    assert_eq!(
        serde_json::to_value(&balances).expect("json"),
        folded["balances"]
    );

    // Reporting holds what its rules make of the bank's events (two hops).
    let reported = read_all(&mut r).await;
    assert_eq!(reported.len(), banked.len());
    assert!(reported.iter().any(|e| e.origin == ["payments", "bank"]));
    assert!(reported.iter().any(|e| e.origin == ["cards", "bank"]));
    let folded = offline(dir, "reporting.dmp", &from_lines(&banked, "bank"));
    for projection in ["flows", "net"] {
        let docs = documents(&mut r, projection).await;
        assert_eq!(
            serde_json::to_value(&docs).expect("json"),
            folded[projection],
            "{projection}"
        );
    }
    // The node's own records are not events: none is read, and none can be appended.
    assert!(banked.iter().all(|e| !e.r#type.starts_with('$')));
    let refused = b
        .append(pb::AppendRequest {
            events: vec![event("$link", "{}", "", "")],
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect_err("reserved");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

/// Two nodes in `dir`, payments and the bank importing from it, running the example
/// programs; with a client of each.
async fn payments_and_bank(
    dir: &Path,
) -> (
    Member,
    Member,
    DataMeshClient<Channel>,
    DataMeshClient<Channel>,
) {
    let mesh = start_mesh(
        dir,
        Engine::Jit,
        &[("payments", &[]), ("bank", &["payments"])],
    );
    let [payments, bank] = <[Member; 2]>::try_from(mesh).unwrap_or_else(|_| panic!("two members"));
    let mut p = payments.client().await;
    let mut b = bank.client().await;
    deploy(&mut p, &example("payments.dmp")).await;
    deploy(&mut b, &example("bank.dmp")).await;
    (payments, bank, p, b)
}

/// Appends payments `from..to` to the node at `socket`, retrying each batch until
/// it is acknowledged (the node may be down): ids make a retry exactly once.
async fn append_through_restarts(socket: &Path, from: usize, to: usize, batch: usize) {
    let url = format!("unix:{}", socket.display());
    let mut i = from;
    let deadline = Instant::now() + Duration::from_secs(300);
    while i < to {
        assert!(Instant::now() < deadline, "appends did not go through");
        let Ok(mut client) = datamesh_cli::client::connect(&url).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let end = (i + batch).min(to);
        let sent = client
            .append(pb::AppendRequest {
                events: (i..end).map(payment).collect(),
                expected: vec![],
                read_back: Vec::new(),
            })
            .await;
        match sent {
            Ok(_) => i = end,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A tiny random number generator (the test prints its seed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Kills the importer during catch-up, then the importer or the exporter (in turn)
/// during live appends, `rounds` times each at random moments, restarting each; then
/// checks that the bank holds every EUR payment's events exactly once, in the
/// payments node's order.
async fn kill_matrix(rounds: usize) {
    let seed = std::env::var("DATAMESH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("kill matrix: seed {seed} (DATAMESH_SEED), {rounds} rounds");
    let mut rng = Rng(seed);
    let guard = temp_dir("mesh-kills", Engine::Jit);
    let dir = guard.path();
    let mut payments = Member::new(dir, "payments", &[]);
    let mut bank = Member::new(dir, "bank", &[&payments]);
    payments.start();
    deploy(&mut payments.client().await, &example("payments.dmp")).await;
    // Catch-up: a backlog, then the importer killed while it reads it.
    let backlog = 30_000;
    append_through_restarts(&payments.socket, 0, backlog, 2_000).await;
    bank.start();
    deploy(&mut bank.client().await, &example("bank.dmp")).await;
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(400))).await;
        bank.kill9();
        bank.start();
    }
    // Live: appends go on while one side or the other is killed.
    let socket = payments.socket.clone();
    let total = backlog + 400 * rounds.max(1);
    let appender = tokio::spawn(async move {
        append_through_restarts(&socket, backlog, total, 20).await;
    });
    for round in 0..rounds * 2 {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(300))).await;
        let victim = if round % 2 == 0 {
            &mut bank
        } else {
            &mut payments
        };
        victim.kill9();
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        victim.start();
    }
    appender.await.expect("appender");
    let mut p = payments.client().await;
    let mut b = bank.client().await;
    caught_up(&mut b, "payments", &mut p).await;

    let paid = read_all(&mut p).await;
    assert_eq!(
        paid.len(),
        total,
        "every acknowledged payment is in the exporter's log"
    );
    let mut expected = Vec::new();
    for e in paid.iter().filter(|e| !e.data.contains("USD")) {
        if e.data.contains("\"fee_cents\":0") {
            expected.push(format!("payments/{}", e.id));
        } else {
            expected.push(format!("payments/{}/0", e.id));
            expected.push(format!("payments/{}/1", e.id));
        }
    }
    let banked: Vec<String> = read_all(&mut b).await.into_iter().map(|e| e.id).collect();
    assert_eq!(
        banked.len(),
        expected.len(),
        "imported exactly once (seed {seed})"
    );
    assert!(
        banked == expected,
        "imported in the peer's order (seed {seed})"
    );
    let balances = documents(&mut b, "balances").await;
    let deposits: u64 = balances
        .values()
        .map(|d| d["deposits"].as_u64().expect("deposits"))
        .sum();
    assert_eq!(
        deposits as usize,
        paid.iter().filter(|e| !e.data.contains("USD")).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_either_side_at_random_moments_imports_exactly_once_in_order() {
    let rounds = std::env::var("DATAMESH_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    kill_matrix(rounds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 100 rounds of kills (run with --ignored)"]
async fn kill_matrix_one_hundred_rounds() {
    kill_matrix(100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_peer_log_stops_the_link_until_a_reset() {
    let guard = temp_dir("mesh-wiped", Engine::Jit);
    let dir = guard.path();
    let (mut payments, bank, mut p, mut b) = payments_and_bank(dir).await;
    append(&mut p, (0..10).map(payment).collect()).await;
    let before = caught_up(&mut b, "payments", &mut p).await;
    let banked = read_all(&mut b).await.len();

    // The exporter stops for a while (and stops promptly, though an importer follows
    // it live): the link says so, and catches up after.
    assert_eq!(
        payments.terminate(),
        Some(0),
        "a clean stop with an importer attached"
    );
    let down = wait_link(&mut b, "payments", 30, |l| {
        l.state == "connecting" && !l.error.is_empty()
    })
    .await;
    assert_eq!(down.position, before.position);
    payments.start();
    let mut p = payments.client().await;
    append(&mut p, (10..20).map(payment).collect()).await;
    caught_up(&mut b, "payments", &mut p).await;
    assert!(read_all(&mut b).await.len() > banked);
    let banked = read_all(&mut b).await.len();

    // Wiped and recreated: another log. Nothing is imported.
    payments.kill9();
    std::fs::remove_dir_all(&payments.data).expect("wipe");
    payments.start();
    let mut p = payments.client().await;
    deploy(&mut p, &example("payments.dmp")).await;
    append(&mut p, (100..140).map(payment).collect()).await;
    let stopped = wait_link(&mut b, "payments", 30, |l| l.state == "stopped").await;
    assert!(stopped.error.contains("different log"), "{}", stopped.error);
    assert!(
        stopped.error.contains("datamesh link reset payments"),
        "{}",
        stopped.error
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        read_all(&mut b).await.len(),
        banked,
        "nothing imported from a replaced log"
    );

    // The operator accepts the new log from its start; the reset is in the log.
    let (code, out, err) = bank.node().cli(&[
        "link",
        "reset",
        "payments",
        "--from",
        "0",
        "--note",
        "payments restored from scratch",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, audit, _) = bank
        .node()
        .cli(&["audit", "--data", bank.data.to_str().expect("utf-8")]);
    let last = audit.lines().last().unwrap_or_default();
    assert!(
        last.contains("\"link reset\"") && last.contains("payments restored from scratch"),
        "{audit}"
    );
    caught_up(&mut b, "payments", &mut p).await;
    let after = read_all(&mut b).await;
    let new_ids: Vec<&str> = after[banked..].iter().map(|e| e.id.as_str()).collect();
    assert!(
        new_ids.iter().all(|id| id.starts_with("payments/p1")),
        "{new_ids:?}"
    );
    assert!(!new_ids.is_empty());
    let history = b
        .read(pb::ReadRequest {
            from_position: 0,
            limit: 1000,
            stream: "$link/payments".into(),
        })
        .await
        .expect("read the link's history")
        .into_inner()
        .events;
    assert!(
        history
            .iter()
            .any(|e| e.data.contains("payments restored from scratch")),
        "{history:?}"
    );
    let refused = b
        .link_reset(pb::LinkResetRequest {
            peer: "nobody".into(),
            from_position: 0,
            note: String::new(),
        })
        .await
        .expect_err("no such link");
    assert_eq!(refused.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_events_move_the_link_for_good() {
    let guard = temp_dir("mesh-dropped", Engine::Jit);
    let dir = guard.path();
    let (_payments, mut bank, mut p, mut b) = payments_and_bank(dir).await;
    // 200,000 events none of which passes the rules (USD).
    for chunk in 0..40 {
        let events = (0..5_000)
            .map(|i| {
                event(
                    "PaymentSettled",
                    &format!(
                        r#"{{"payment":"u{chunk}-{i}","iban":"us1","cents":5,"currency":"USD"}}"#
                    ),
                    "",
                    "",
                )
            })
            .collect();
        append(&mut p, events).await;
    }
    let done = caught_up(&mut b, "payments", &mut p).await;
    assert_eq!(done.position, 200_000);
    assert_eq!(done.imported, 0);
    assert!(read_all(&mut b).await.is_empty());
    let records = head(&mut b).await;
    assert!(
        records < 1_000,
        "{records} link records for 200,000 dropped events"
    );
    // After a restart the link starts where it was: nothing is read again.
    bank.kill9();
    bank.start();
    let mut b = bank.client().await;
    let again = wait_link(&mut b, "payments", 30, |l| l.state == "live").await;
    assert_eq!(again.position, 200_000);
    assert_eq!(head(&mut b).await, records, "a restart writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_disagrees_with_the_peer_stops_or_pauses_the_link() {
    let guard = temp_dir("mesh-schema", Engine::Jit);
    let dir = guard.path();
    let mut payments = Member::new(dir, "payments", &[]);
    let mut bank = Member::new(dir, "bank", &[&payments]);
    let mut stranger = Member::new(dir, "stranger", &[&payments]);
    // The bank's `cards` configured at the address of another node.
    bank.peers.push(("cards".into(), payments.socket.clone()));
    payments.start();
    bank.start();
    stranger.start();
    let mut p = payments.client().await;
    let mut b = bank.client().await;
    // Before payments declares its events, it takes anything (not strict): one event
    // that its later declaration would refuse.
    append(
        &mut p,
        vec![event(
            "PaymentSettled",
            r#"{"payment":"bad","iban":"de01","cents":"12","currency":"EUR"}"#,
            "",
            "bad",
        )],
    )
    .await;
    deploy(&mut p, &example("payments.dmp")).await;
    append(&mut p, (0..5).map(payment).collect()).await;

    // A block that declares `cents` as a float: refused when the link starts.
    let bank_source = example("bank.dmp");
    let without_tests = &bank_source[..bank_source.find("test \"").expect("tests")];
    let wrong = without_tests.replacen("{ payment: string, iban", "{ payment: int, iban", 1);
    deploy(&mut b, &wrong).await;
    let stopped = wait_link(&mut b, "payments", 30, |l| l.state == "stopped").await;
    assert!(stopped.error.contains("M0004"), "{}", stopped.error);
    assert!(
        stopped.error.contains(
            "declares `PaymentSettled.payment: int`, but `payments` sends it as `string`"
        ),
        "{}",
        stopped.error
    );
    assert!(read_all(&mut b).await.is_empty());

    // The fixed block runs; the event that does not decode pauses the link at it.
    let deployed = deploy(&mut b, &example("bank.dmp")).await;
    assert_eq!(deployed.imported, ["payments"]);
    let paused = wait_link(&mut b, "payments", 30, |l| l.state == "paused").await;
    assert_eq!(paused.position, 0);
    assert!(paused.error.contains("M0006"), "{}", paused.error);
    assert!(paused.error.contains("position 0"), "{}", paused.error);
    assert!(paused.error.contains("`cents`"), "{}", paused.error);
    assert!(read_all(&mut b).await.is_empty(), "never skipped");
    // Skipping it is an operator's decision, kept in the log.
    let (code, out, err) = bank.node().cli(&[
        "link", "reset", "payments", "--from", "1", "--note", "skip bad",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    caught_up(&mut b, "payments", &mut p).await;
    assert_eq!(read_all(&mut b).await.len(), 5);

    // A node nothing is exported to is refused.
    let mut s = stranger.client().await;
    deploy(
        &mut s,
        "event Seen { n: int }
         import payments {
           event PaymentSettled { payment: string, iban: string, cents: int, currency: string, fee_cents: int = 0 }
           on PaymentSettled { emit Seen { n: event.cents } }
         }",
    )
    .await;
    let refused = wait_link(&mut s, "payments", 30, |l| l.state == "refused").await;
    assert!(
        refused.error.contains("exports nothing to `stranger`"),
        "{}",
        refused.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_loop_terminates() {
    let guard = temp_dir("mesh-loop", Engine::Jit);
    let dir = guard.path();
    let program = |other: &str| {
        format!(
            "event Ping {{ n: int }}
             projection pings {{ state {{ count: int }} on Ping {{ count += 1 }} }}
             import {other} {{
               event Ping {{ n: int }}
               on Ping {{ emit Ping {{ n: event.n + 1 }} }}
             }}
             export to {other} {{ Ping }}"
        )
    };
    let mut a = Member::new(dir, "a", &[]);
    let b_socket = dir.join("b.sock");
    a.peers.push(("b".into(), b_socket));
    let mut b = Member::new(dir, "b", &[&a]);
    a.start();
    b.start();
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    deploy(&mut ca, &program("b")).await;
    deploy(&mut cb, &program("a")).await;
    append(
        &mut ca,
        (0..3)
            .map(|n| event("Ping", &format!(r#"{{"n":{n}}}"#), "", ""))
            .collect(),
    )
    .await;
    append(
        &mut cb,
        (0..2)
            .map(|n| event("Ping", &format!(r#"{{"n":{n}}}"#), "", ""))
            .collect(),
    )
    .await;
    // Each node holds its own pings and the other's, once: nothing comes back.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ea, eb) = (read_all(&mut ca).await, read_all(&mut cb).await);
        if ea.len() == 5 && eb.len() == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "a: {ea:?}\nb: {eb:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    caught_up(&mut ca, "b", &mut cb).await;
    caught_up(&mut cb, "a", &mut ca).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ea, eb) = (read_all(&mut ca).await, read_all(&mut cb).await);
    assert_eq!((ea.len(), eb.len()), (5, 5), "a: {ea:?}\nb: {eb:?}");
    assert_eq!(ea.iter().filter(|e| e.origin == ["b"]).count(), 2);
    assert_eq!(eb.iter().filter(|e| e.origin == ["a"]).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_restored_from_an_older_copy_stops_the_link() {
    let guard = temp_dir("mesh-restored", Engine::Jit);
    let dir = guard.path();
    let (mut payments, bank, mut p, mut b) = payments_and_bank(dir).await;
    append(&mut p, (0..5).map(payment).collect()).await;
    caught_up(&mut b, "payments", &mut p).await;
    // A copy of the exporter's data, taken while it is stopped.
    payments.kill9();
    let backup = dir.join("payments-backup");
    let copied = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&payments.data)
        .arg(&backup)
        .status()
        .expect("cp");
    assert!(copied.success());
    payments.start();
    let mut p = payments.client().await;
    append(&mut p, (5..15).map(payment).collect()).await;
    let before = caught_up(&mut b, "payments", &mut p).await;
    let banked = read_all(&mut b).await.len();

    // Restored from the copy, it takes new events until its head passes the link's
    // position again: those positions now hold other events. The link notices.
    payments.kill9();
    std::fs::remove_dir_all(&payments.data).expect("remove");
    std::fs::rename(&backup, &payments.data).expect("restore");
    payments.start();
    let mut p = payments.client().await;
    append(&mut p, (100..140).map(payment).collect()).await;
    assert!(head(&mut p).await > before.position);
    let stopped = wait_link(&mut b, "payments", 30, |l| l.state == "stopped").await;
    assert!(
        stopped.error.contains("restored from an older copy"),
        "{}",
        stopped.error
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        read_all(&mut b).await.len(),
        banked,
        "nothing imported from the restored log"
    );
    drop(bank);
}
