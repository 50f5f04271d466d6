//! W7: restart a node whose log holds 10,000,000 events (10,000 streams `account-<id>`,
//! ~100-byte payloads as in W4, no ids, default 128 MiB segments): measures
//! `Log::open` + `Log::close`. The log is built once, in batches of 1000 appends, in a
//! temp directory reused across runs.
//!
//! Sealed segments are loaded from their `.idx` files; only the active segment is
//! scanned. With `W7_SCAN=1` a second benchmark measures `Log::open` alone after
//! deleting every `.idx` file first, i.e. a full verifying scan of the whole log (the
//! recovery rewrites the idx files in the background after `open` returns, outside the
//! measurement).
//!
//! `scrub_{n}_events` measures `Log::open` until the background scrub has verified
//! every frame of every sealed segment (what a full check on open would cost, paid
//! after the node is already serving instead).
//!
//! Run with `cargo bench -p datamesh --bench w7` (set `W7_EVENTS` to change the
//! log size).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datamesh_cli::bench::fill_log;
use datamesh_runtime::log::{Log, LogConfig};

/// The node's allocator (see the `datamesh` binary), so the bench measures what a
/// node runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn events() -> u64 {
    std::env::var("W7_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn build_log(dir: &Path, n: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (log, _) = Log::open(LogConfig::new(dir)).expect("log opens");
    runtime.block_on(fill_log(&log, n, true)).expect("append");
    log.close();
}

fn remove_idx_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("log dir").flatten() {
        if entry.path().extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(entry.path()).expect("remove idx");
        }
    }
}

fn w7(c: &mut Criterion) {
    let n = events();
    let dir = std::env::temp_dir().join(format!("datamesh-w7-{n}-{}", std::process::id()));
    build_log(&dir, n);
    let mut group = c.benchmark_group("w7");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(n));
    group.bench_function(format!("open_close_{n}_events"), |b| {
        b.iter(|| {
            let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("open");
            assert_eq!(recovery.records, n);
            log.close();
        })
    });
    group.bench_function(format!("scrub_{n}_events"), |b| {
        b.iter(|| {
            let (log, _) = Log::open(LogConfig::new(&dir)).expect("open");
            while !log.scrubbed() {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(log.damage().is_empty());
            log.close();
        })
    });
    if std::env::var_os("W7_SCAN").is_some() {
        group.bench_function(format!("open_full_scan_{n}_events"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    remove_idx_files(&dir);
                    let start = Instant::now();
                    let (log, recovery) = Log::open(LogConfig::new(&dir)).expect("open");
                    total += start.elapsed();
                    assert_eq!(recovery.records, n);
                    assert_eq!(recovery.indexed_segments, 0);
                    log.close();
                }
                total
            })
        });
    }
    group.finish();
    // The log is gigabytes at 10M events: it does not outlive the run.
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, w7);
criterion_main!(benches);
