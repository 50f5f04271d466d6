//! W4: rebuild the `balances` projection from a log of 1,000,000 `Deposited` events
//! (10,000 accounts, ~100-byte payloads), through the real log reader, engine and fjall
//! store. Each iteration starts a fresh store, deploys the program and waits until the
//! projection has caught up. It runs once per engine (`jit`, then `interp`) over the
//! same log, so one report shows both side by side.
//!
//! Run with `cargo bench -p datamesh --bench w4` (set `W4_EVENTS` to change the
//! log size).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datamesh_cli::bench::{BENCH_PROGRAM, fill_log};
use datamesh_runtime::engine::{Engine, EngineKind};
use datamesh_runtime::log::{Log, LogConfig};
use datamesh_runtime::store::Store;

/// The node's allocator (see the `datamesh` binary), so the bench measures what a
/// node runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn events() -> u64 {
    std::env::var("W4_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn build_log(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, n: u64) -> Log {
    let (log, _) = Log::open(LogConfig::new(dir)).expect("log opens");
    runtime.block_on(fill_log(&log, n, false)).expect("append");
    log
}

fn w4(c: &mut Criterion) {
    let n = events();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = std::env::temp_dir().join(format!("datamesh-w4-{}", std::process::id()));
    let log = build_log(&runtime, &base.join(format!("log-{n}")), n);
    let mut group = c.benchmark_group("w4");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(n));
    let mut round = 0;
    for kind in [EngineKind::Jit, EngineKind::Interp] {
        group.bench_function(format!("rebuild_balances_{n}_events/{kind}"), |b| {
            b.iter(|| {
                round += 1;
                // A directory per round: the store keeps its catalog of deployments
                // beside it, and a catalog from an earlier round would make this one
                // a restart (programs loaded, compiled in the background) instead of
                // a deploy.
                let round_dir = base.join(format!("round-{round}"));
                let _ = std::fs::remove_dir_all(&round_dir);
                std::fs::create_dir_all(&round_dir).expect("round directory");
                let store_dir = round_dir.join("store");
                let store = std::sync::Arc::new(Store::open(&store_dir).expect("store"));
                runtime.block_on(async {
                    let engine = Engine::start(log.clone(), store, kind).expect("engine");
                    engine.deploy(BENCH_PROGRAM, "bench.dmp").expect("deploy");
                    let reached = engine
                        .wait_for("balances@v1", n, Duration::from_secs(600))
                        .await;
                    assert_eq!(reached, Some(n));
                    engine.stop().await;
                });
                let _ = std::fs::remove_dir_all(&round_dir);
            })
        });
    }
    group.finish();
    log.close();
    let _ = std::fs::remove_dir_all(&base);
}

criterion_group!(benches, w4);
criterion_main!(benches);
