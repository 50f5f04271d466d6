//! Projection lifecycles across restarts, end to end with real node processes: a
//! promoted version survives retiring the old one and a restart; a store whose log was
//! replaced is rebuilt for the new log; a large deploy leaves appends and status
//! answering while it compiles.

mod common;

use std::time::{Duration, Instant};

use common::*;

use datamesh_runtime::api::pb;
use datamesh_runtime::api::pb::data_mesh_client::DataMeshClient;
use tonic::transport::Channel;

const V1: &str = "event Deposited { account: string, amount: int }\nprojection balances v1 { key account state { balance: int = 0 } on Deposited { balance += event.amount } }\n";
const V2: &str = "projection balances v2 { key account state { balance: int = 0 } on Deposited { balance += event.amount * 2 } }\n";

/// A data directory only its owner can read (the node refuses others).
fn private_dir(name: &str, engine: Engine) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir(name, engine);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 700");
    dir
}

async fn deploy(
    client: &mut DataMeshClient<Channel>,
    source: &str,
    origin: &str,
) -> Result<pb::DeployResponse, tonic::Status> {
    client
        .deploy(pb::DeployRequest {
            source: source.into(),
            origin: origin.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn deposit(client: &mut DataMeshClient<Channel>, account: &str, amounts: &[i64]) -> u64 {
    let events = amounts
        .iter()
        .map(|a| {
            event(
                "Deposited",
                &format!(r#"{{"account":"{account}","amount":{a}}}"#),
                "",
                "",
            )
        })
        .collect();
    client
        .append(pb::AppendRequest {
            events,
            expected: vec![],
            read_back: Vec::new(),
        })
        .await
        .expect("append")
        .into_inner()
        .head
}

/// The balance of `account` in `balances` (version 0: the active one) once it has
/// applied everything before `min_position`.
async fn balance(
    client: &mut DataMeshClient<Channel>,
    version: u32,
    account: &str,
    min_position: u64,
) -> Result<serde_json::Value, tonic::Status> {
    let r = client
        .get(pb::GetRequest {
            projection: "balances".into(),
            key: account.into(),
            min_position,
            version,
        })
        .await?
        .into_inner();
    let doc: serde_json::Value = serde_json::from_str(&r.document).expect("json");
    Ok(doc["balance"].clone())
}

async fn states(client: &mut DataMeshClient<Channel>) -> Vec<(String, u32, String, u64)> {
    client
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .projections
        .into_iter()
        .map(|p| (p.name, p.version, p.state, p.position))
        .collect()
}

/// Finding 5: deploy `balances v1`, then a program holding v1 and v2; promote v2,
/// retire v1, restart: the program loads with v1 skipped, v2 serves and folds, and
/// redeploying the same file is a no-op (a program of v1 alone is still refused).
async fn a_promoted_version_survives_retiring_the_old_one_and_a_restart(engine: Engine) {
    let data_guard = private_dir("promote-retire", engine);
    let data = data_guard.path().to_path_buf();
    let mut node = Node::start(&data, engine, &[]);
    let mut client = node.client().await;
    let both = format!("{V1}{V2}");
    deploy(&mut client, V1, "v1.dmp").await.expect("v1");
    let deployed = deploy(&mut client, &both, "bank.dmp")
        .await
        .expect("v1 + v2");
    assert_eq!(deployed.started, vec!["balances@v2"]);
    let head = deposit(&mut client, "a", &[10, 20, 30]).await;
    assert_eq!(balance(&mut client, 1, "a", head).await.expect("v1"), 60);
    assert_eq!(balance(&mut client, 2, "a", head).await.expect("v2"), 120);
    client
        .promote(pb::PromoteRequest {
            name: "balances".into(),
            version: 2,
        })
        .await
        .expect("promote v2");
    client
        .retire(pb::RetireRequest {
            name: "balances".into(),
            version: 1,
        })
        .await
        .expect("retire v1");
    drop(client);
    assert_eq!(node.terminate(), Some(0));
    drop(node);

    let node = Node::start_logging(&data, engine, &[], Some("info"));
    let mut client = node.client().await;
    let head = deposit(&mut client, "a", &[5]).await;
    assert_eq!(
        balance(&mut client, 0, "a", head).await.expect("v2 serves"),
        130
    );
    let gone = balance(&mut client, 1, "a", 0)
        .await
        .expect_err("v1 stays retired");
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    assert_eq!(
        states(&mut client).await,
        vec![("balances".to_owned(), 2, "running".to_owned(), head)]
    );
    let lines = node.stderr.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("retired") && l.contains("balances@v1")),
        "the node says it skipped v1: {lines:?}"
    );
    let again = deploy(&mut client, &both, "bank.dmp")
        .await
        .expect("the same file again is accepted");
    assert!(
        again.started.is_empty() && again.declared.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.unchanged, vec!["balances@v2"]);
    let refused = deploy(&mut client, V1, "v1.dmp")
        .await
        .expect_err("v1 alone was retired");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    // The CLI agrees.
    let (code, out, err) = node.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("balances") && !out.contains("faulted"),
        "{out}"
    );
}

/// Finding 2: the log directory of a node is replaced by another node's log: every
/// projection is rebuilt from the new log at start (with a WARN saying so), so reads
/// answer from the new log's events, at its positions.
async fn a_replaced_log_rebuilds_every_projection(engine: Engine) {
    let first_guard = private_dir("swap-a", engine);
    let other_guard = private_dir("swap-b", engine);
    let (first, other) = (
        first_guard.path().to_path_buf(),
        other_guard.path().to_path_buf(),
    );
    let mut node = Node::start(&first, engine, &[]);
    let mut client = node.client().await;
    deploy(&mut client, V1, "v1.dmp").await.expect("v1");
    let head = deposit(&mut client, "a", &[1; 40]).await;
    assert_eq!(balance(&mut client, 0, "a", head).await.expect("read"), 40);
    drop(client);
    assert_eq!(node.terminate(), Some(0));
    drop(node);

    let mut node = Node::start(&other, engine, &[]);
    let mut client = node.client().await;
    let other_head = deposit(&mut client, "a", &[100, 200]).await;
    drop(client);
    assert_eq!(node.terminate(), Some(0));
    drop(node);
    std::fs::remove_dir_all(first.join("log")).expect("remove the log");
    std::fs::rename(other.join("log"), first.join("log")).expect("move the other log");

    let node = Node::start_logging(&first, engine, &[], Some("warn"));
    let mut client = node.client().await;
    assert_eq!(head_of(&mut client).await, other_head);
    assert_eq!(
        balance(&mut client, 0, "a", other_head)
            .await
            .expect("read"),
        300
    );
    let head = deposit(&mut client, "a", &[3]).await;
    assert_eq!(balance(&mut client, 0, "a", head).await.expect("read"), 303);
    let lines = node.stderr.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("another log") && l.contains("rebuilt")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("balances@v1") && l.contains("rebuilding")),
        "{lines:?}"
    );
}

async fn head_of(client: &mut DataMeshClient<Channel>) -> u64 {
    head(client).await
}

/// Finding 8: while a large program compiles on deploy, appends and status answer
/// within a fraction of the deploy's time (before, the registry's write lock was held
/// for the whole compile and both waited for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_status_answer_while_a_large_program_compiles() {
    let data_guard = private_dir("big-deploy", Engine::Jit);
    let node = Node::start(data_guard.path(), Engine::Jit, &[]);
    let mut client = node.client().await;
    deploy(&mut client, V1, "v1.dmp").await.expect("v1");
    // One handler of about 7,200 IR nodes: under the JIT threshold, seconds to compile.
    let mut body = String::new();
    for i in 0..800 {
        body.push_str(&format!(
            "  by[\"k{i}\"] = (by[\"k{i}\"] ?? 0) + event.amount\n"
        ));
    }
    let big = format!(
        "event Deposited {{ account: string, amount: int }}\nprojection big v1 {{\n  key account\n  state {{ by: map<string, int> }}\n  on Deposited {{\n{body}  }}\n}}\n"
    );
    let mut deployer = node.client().await;
    let deploying = tokio::spawn(async move {
        let started = Instant::now();
        deploy(&mut deployer, &big, "big.dmp")
            .await
            .expect("deploy");
        started.elapsed()
    });
    let (mut worst, mut samples) = (Duration::ZERO, 0);
    while !deploying.is_finished() {
        let started = Instant::now();
        deposit(&mut client, "a", &[1]).await;
        client.status(pb::StatusRequest {}).await.expect("status");
        worst = worst.max(started.elapsed());
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = deploying.await.expect("deploy task");
    eprintln!("deploy {took:?}: {samples} append + status pairs, the slowest {worst:?}");
    assert!(
        samples >= 3,
        "the deploy took {took:?}: too short to measure"
    );
    assert!(
        worst * 3 < took,
        "an append and status took {worst:?} during a {took:?} deploy"
    );
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
    a_promoted_version_survives_retiring_the_old_one_and_a_restart,
    a_replaced_log_rebuilds_every_projection
);
