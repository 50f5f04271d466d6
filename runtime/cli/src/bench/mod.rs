//! `datamesh bench`: a load generator in the spirit of `pgbench` and `redis-benchmark`,
//! driving a running node over gRPC with the workloads of `shared/bench/WORKLOADS.md`:
//!
//! - `w1`: bulk append, requests of `--batch` (1,000) events, one client (one
//!   connection, with `--inflight` (4) requests pipelined on it, as a Kafka producer
//!   pipelines; the next requests are generated while earlier ones are in flight);
//! - `w2`: single-event appends with an expected stream version, `--clients` (8)
//!   clients, for `--seconds` (30);
//! - `w3`: `w2` with the `balances` projection kept up to date: each append reads its
//!   account's document back in the same call (`read_back`: read-your-writes), or with
//!   `--two-calls` in a `Get` with `min_position` just past its event; the latency
//!   covers both;
//! - `w5`: point reads of `balances` by key, `--clients` clients, for `--seconds`;
//! - `w8`: the mesh, two nodes: catch-up import of `--events`, then live end-to-end
//!   latency with `--clients` appending on the exporter (see `w8.rs`).
//!
//! Accounts (`--accounts`, 10,000) are picked uniformly, or with `--skew zipf` from
//! Zipf(1.1), the skewed variant of the workloads (account 0 the hottest).
//!
//! It deploys its own small program (a `Deposited` event with the workload's ~100-byte
//! payload, validated on every append, and for `w3` and `w5` a `balances` projection), so run
//! it against a fresh node. It prints a
//! progress line every second, then throughput and latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

mod cost;
mod w8;

use crate::client::{CliError, connect};
use datamesh_runtime::api::pb;
use datamesh_runtime::log::{Log, LogError, NewEvent};

/// The schema the append workloads validate against: the event alone, no projection,
/// so append throughput is measured without the engine folding at the same time.
pub const SCHEMA_PROGRAM: &str = r#"// Deployed by `datamesh bench`.
event Deposited { account: string, amount: int, note: string = "" }
"#;

/// The program the read workload deploys (and the W4 rebuild bench folds).
pub const BENCH_PROGRAM: &str = r#"// Deployed by `datamesh bench`.
event Deposited { account: string, amount: int, note: string = "" }

projection balances v1 {
  key account
  state { balance: int = 0, tx_count: int = 0 }
  on Deposited { balance += event.amount; tx_count += 1 }
}
"#;

/// Fills `log` up to `n` events with the synthetic `Deposited` events of the in-process
/// benchmarks (W4, W7): 10,000 accounts, amounts 1..=1000, ~100-byte payloads, appended
/// 1,000 at a time; with `streams`, each in stream `account-<id>`. The sequence is
/// deterministic, so a log built by an earlier run can be reused.
///
/// # Errors
/// The log's append errors.
pub async fn fill_log(log: &Log, n: u64, streams: bool) -> Result<(), LogError> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut appended = log.head();
    // Skip what an earlier run appended, so the sequence continues where it stopped.
    for _ in 0..appended {
        rng.next();
    }
    while appended < n {
        let batch: Vec<NewEvent> = (0..1000.min(n - appended))
            .map(|_| {
                let x = rng.next();
                let account = x % 10_000;
                let amount = (x >> 20) % 1000 + 1;
                NewEvent {
                    event_type: "Deposited".into(),
                    payload: deposit_payload(account, amount).into_bytes(),
                    stream: if streams {
                        format!("account-{account}")
                    } else {
                        String::new()
                    },
                    id: String::new(),
                    origin: String::new(),
                    time: None,
                }
            })
            .collect();
        appended += batch.len() as u64;
        log.append(batch, Vec::new()).await?;
    }
    Ok(())
}

/// Options of `datamesh bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Workload: w1, w2, w3, w5 or w8.
    #[arg(long, default_value = "w1")]
    pub workload: String,
    /// Events to append (w1).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per request (w1).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Requests in flight on the one connection (w1), as a producer pipelines.
    #[arg(long, default_value_t = 4)]
    pub inflight: usize,
    /// Concurrent clients (w2, w5).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Duration (w2, w5).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Distinct accounts.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: u64,
    /// How accounts are picked: uniformly, or Zipf(1.1), the skewed variant (account 0
    /// the hottest).
    #[arg(long, value_enum, default_value_t = Skew::Uniform)]
    pub skew: Skew,
    /// Give every event a unique client id, as an idempotent producer does (w1, w2,
    /// w3): the node then also checks and records every id.
    #[arg(long)]
    pub ids: bool,
    /// w8: the importing node (`--node` is the exporter).
    #[arg(long)]
    pub importer: Option<String>,
    /// w3: read the document back with a `Get` after the append (two round trips)
    /// instead of in the append itself.
    #[arg(long)]
    pub two_calls: bool,
}

/// Unique event ids for one run, `<run>-<n>`, when the run asks for them.
struct Ids {
    prefix: Option<String>,
    next: u64,
}

impl Ids {
    fn new(enabled: bool, run: &str) -> Ids {
        Ids {
            prefix: enabled.then(|| format!("{run}-")),
            next: 0,
        }
    }

    /// The next id, or an empty one when the run has none.
    fn next(&mut self) -> String {
        let Some(prefix) = &self.prefix else {
            return String::new();
        };
        let mut id = String::with_capacity(prefix.len() + 12);
        id.push_str(prefix);
        push_digits(&mut id, self.next, 1);
        self.next += 1;
        id
    }

    /// How a report says so.
    fn label(&self) -> &'static str {
        if self.prefix.is_some() {
            ", with event ids"
        } else {
            ""
        }
    }
}

/// A name no earlier run used: ids and streams of one run never collide with another's.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench-{nanos}")
}

/// The account distribution of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Skew {
    /// Every account equally likely.
    Uniform,
    /// Zipf with exponent 1.1: account `k` has weight `1 / (k + 1)^1.1`.
    Zipf,
}

/// Picks account numbers in `0..n` by a run's [`Skew`].
#[derive(Debug, Clone)]
struct Accounts {
    n: u64,
    /// For Zipf: the cumulative probability of accounts `0..=k`.
    cdf: Option<Arc<[f64]>>,
}

impl Accounts {
    fn new(n: u64, skew: Skew) -> Accounts {
        let n = n.max(1);
        let cdf = (skew == Skew::Zipf).then(|| {
            let mut total = 0.0;
            let mut cdf: Vec<f64> = (0..n)
                .map(|k| {
                    total += 1.0 / ((k + 1) as f64).powf(1.1);
                    total
                })
                .collect();
            for c in &mut cdf {
                *c /= total;
            }
            cdf.into()
        });
        Accounts { n, cdf }
    }

    fn pick(&self, rng: &mut Rng) -> u64 {
        match &self.cdf {
            None => rng.next() % self.n,
            Some(cdf) => {
                // 53 random bits: a uniform float in [0, 1).
                let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                (cdf.partition_point(|&c| c <= u) as u64).min(self.n - 1)
            }
        }
    }

    /// How a report names the distribution.
    fn label(&self) -> &'static str {
        if self.cdf.is_some() {
            Skew::Zipf.label()
        } else {
            Skew::Uniform.label()
        }
    }
}

impl Skew {
    /// How a report names the distribution.
    fn label(self) -> &'static str {
        match self {
            Skew::Uniform => "",
            Skew::Zipf => ", Zipf(1.1) accounts",
        }
    }
}

/// How a report names the connection, when it is not TCP.
fn transport(url: &str) -> &'static str {
    if url.starts_with("unix:") {
        ", over a Unix socket"
    } else if url.starts_with("dmw+unix:") {
        ", wire protocol over a Unix socket"
    } else if url.starts_with("dmw://") {
        ", wire protocol"
    } else {
        ""
    }
}

/// A small deterministic generator (xorshift), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn deposit(rng: &mut Rng, accounts: &Accounts, stream_prefix: &str) -> pb::Event {
    let account = accounts.pick(rng);
    let amount = rng.next() % 1000 + 1;
    deposit_event(account, amount, stream_prefix)
}

/// A deposit of `amount` to `account`, in its stream `<prefix>acc-NNNNNN`.
fn deposit_event(account: u64, amount: u64, stream_prefix: &str) -> pb::Event {
    let mut stream = String::with_capacity(stream_prefix.len() + 10);
    stream.push_str(stream_prefix);
    stream.push_str("acc-");
    push_digits(&mut stream, account, 6);
    pb::Event {
        r#type: "Deposited".to_owned(),
        data: deposit_payload(account, amount),
        stream,
        id: String::new(),
    }
}

/// The payload of a benchmark deposit: `{"account":"acc-NNNNNN","amount":N,"note":"x..."}`
/// (about 100 bytes). Written by hand rather than with `format!`: the load generator
/// shares the machine with the node, so its own cost is kept small.
fn deposit_payload(account: u64, amount: u64) -> String {
    const NOTE: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    let mut data = String::with_capacity(112);
    data.push_str(r#"{"account":"acc-"#);
    push_digits(&mut data, account, 6);
    data.push_str(r#"","amount":"#);
    push_digits(&mut data, amount, 1);
    data.push_str(r#","note":""#);
    data.push_str(NOTE);
    data.push_str(r#""}"#);
    data
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    while n > 0 || digits.len() - at < width.max(1) {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to 60 s at 3 significant figures: fixed, valid bounds.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn report(name: &str, unit: &str, count: u64, elapsed: Duration, latencies: &Histogram<u64>) {
    let rate = count as f64 / elapsed.as_secs_f64();
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    eprintln!();
    println!(
        "{name}: {count} {unit} in {:.2} s = {rate:.0} {unit}/s; latency p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms",
        elapsed.as_secs_f64(),
        ms(0.5),
        ms(0.99),
        ms(0.999)
    );
}

/// Prints a progress line every second until `stop` is set.
fn progress(name: &'static str, unit: &'static str, done: Arc<AtomicU64>, stop: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last = 0;
        while stop.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = done.load(Ordering::Relaxed);
            eprint!(
                "\r[{name}] {:>5.1} s  {now:>10} {unit}  {:>9} {unit}/s   ",
                start.elapsed().as_secs_f64(),
                now - last
            );
            last = now;
        }
    });
}

/// The shared scaffolding of a timed multi-client workload: progress line, deadline,
/// and the merge of every client's latencies into one report.
struct Timed {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicU64>,
    deadline: Instant,
    start: Instant,
}

type ClientTask = tokio::task::JoinHandle<Result<Histogram<u64>, tonic::Status>>;

impl Timed {
    fn begin(name: &'static str, unit: &'static str, seconds: u64) -> Timed {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicU64::new(0));
        progress(name, unit, done.clone(), stop.clone());
        Timed {
            done,
            stop,
            deadline: Instant::now() + Duration::from_secs(seconds),
            start: Instant::now(),
        }
    }

    async fn finish(self, tasks: Vec<ClientTask>, label: &str, unit: &str) -> Result<(), CliError> {
        let all = merged(tasks).await?;
        let elapsed = self.start.elapsed();
        self.stop.store(1, Ordering::Relaxed);
        report(
            label,
            unit,
            self.done.load(Ordering::Relaxed),
            elapsed,
            &all,
        );
        Ok(())
    }
}

/// Waits for every client task and merges their latencies.
async fn merged(tasks: Vec<ClientTask>) -> Result<Histogram<u64>, CliError> {
    let mut all = histogram();
    for task in tasks {
        let latencies = task.await.map_err(|e| CliError {
            message: e.to_string(),
            code: 1,
        })??;
        let _ = all.add(&latencies);
    }
    Ok(all)
}

/// Runs a workload against the node at `url`.
///
/// # Errors
/// Connection failures, rejected requests.
pub async fn run(url: &str, args: BenchArgs) -> Result<(), CliError> {
    if !matches!(args.workload.as_str(), "w1" | "w2" | "w3" | "w5" | "w8") {
        return Err(CliError {
            message: format!("unknown workload `{}` (w1, w2, w3, w5, w8)", args.workload),
            code: 2,
        });
    }
    for (name, value) in [
        ("--accounts", args.accounts),
        ("--clients", args.clients as u64),
        ("--batch", args.batch as u64),
        ("--inflight", args.inflight as u64),
        ("--seconds", args.seconds),
    ] {
        if value == 0 {
            return Err(CliError {
                message: format!("{name} must be at least 1"),
                code: 2,
            });
        }
    }
    if args.workload == "w8" {
        return w8::run(url, &args).await;
    }
    let mut client = connect(url).await?;
    let program = if matches!(args.workload.as_str(), "w3" | "w5") {
        BENCH_PROGRAM
    } else {
        SCHEMA_PROGRAM
    };
    client
        .deploy(pb::DeployRequest {
            source: program.to_owned(),
            origin: "bench.dmp".to_owned(),
        })
        .await?;
    // The node's counters around the workload: its cost per call (when it runs on
    // this host) and events per fdatasync.
    let local = url.starts_with("unix:")
        || url.starts_with("dmw+unix:")
        || url.contains("://127.")
        || url.contains("://localhost")
        || url.contains("://[::1]");
    let before = cost::sample(&mut client, local).await;
    match args.workload.as_str() {
        "w1" => w1(url, &args).await,
        "w2" => w2(url, &args, false).await,
        "w3" => w2(url, &args, true).await,
        _ => w5(url, &args).await,
    }?;
    if let (Some(before), Some(after)) = (before, cost::sample(&mut client, local).await) {
        println!("{}", cost::describe(&before, &after));
    }
    Ok(())
}

async fn w1(url: &str, args: &BenchArgs) -> Result<(), CliError> {
    let client = connect(url).await?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    progress("w1", "events", done.clone(), stop.clone());
    let inflight = args.inflight.max(1);
    // The generator runs ahead of the senders by at most `inflight` requests.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::AppendRequest>(inflight);
    let (total, batch) = (args.events, args.batch.max(1) as u64);
    let accounts = Accounts::new(args.accounts, args.skew);
    let mut ids = Ids::new(args.ids, &run_id());
    let label = format!("{}{}", accounts.label(), ids.label());
    let generator = tokio::spawn(async move {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut made = 0;
        while made < total {
            let n = (total - made).min(batch);
            let events = (0..n)
                .map(|_| {
                    let mut event = deposit(&mut rng, &accounts, "");
                    event.id = ids.next();
                    event
                })
                .collect();
            let request = pb::AppendRequest {
                events,
                expected: Vec::new(),
                read_back: Vec::new(),
            };
            if tx.send(request).await.is_err() {
                return;
            }
            made += n;
        }
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let start = Instant::now();
    let senders: Vec<ClientTask> = (0..inflight)
        .map(|_| {
            let (mut client, rx, done) = (client.clone(), rx.clone(), done.clone());
            tokio::spawn(async move {
                let mut latencies = histogram();
                loop {
                    let Some(request) = rx.lock().await.recv().await else {
                        return Ok(latencies);
                    };
                    let n = request.events.len() as u64;
                    let t = Instant::now();
                    client.append(request).await?;
                    let _ = latencies.record(t.elapsed().as_micros() as u64);
                    done.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let all = merged(senders).await?;
    let elapsed = start.elapsed();
    stop.store(1, Ordering::Relaxed);
    let _ = generator.await;
    report(
        &format!(
            "w1 durable bulk append, {batch}-event requests, {inflight} in flight{label}{}",
            transport(url)
        ),
        "events",
        done.load(Ordering::Relaxed),
        elapsed,
        &all,
    );
    Ok(())
}

/// W2, and with `read_back` W3: each append reads its account's document back in the
/// same call (or, with `--two-calls`, is followed by a read-your-writes `Get`).
async fn w2(url: &str, args: &BenchArgs, read_back: bool) -> Result<(), CliError> {
    let two_calls = args.two_calls;
    let run = run_id();
    let name = if read_back { "w3" } else { "w2" };
    let timed = Timed::begin(name, "events", args.seconds);
    let deadline = timed.deadline;
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let mut client = connect(url).await?;
        let done = timed.done.clone();
        let accounts = Accounts::new(args.accounts, args.skew);
        let clients = args.clients as u64;
        let prefix = format!("{run}-");
        let mut ids = Ids::new(args.ids, &format!("{run}-c{c}"));
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
            let mut versions: std::collections::HashMap<u64, u64> =
                std::collections::HashMap::new();
            let mut latencies = histogram();
            while Instant::now() < deadline {
                // Each client owns the accounts congruent to its number, so it knows
                // every stream's version without asking.
                let account = accounts.pick(&mut rng);
                let account = account - account % clients + c as u64;
                if account >= accounts.n {
                    continue;
                }
                let mut event = deposit_event(account, rng.next() % 1000 + 1, &prefix);
                event.id = ids.next();
                let expect = match versions.get(&account) {
                    None => pb::expected_version::Expect::NoStream(true),
                    Some(v) => pb::expected_version::Expect::Exact(*v),
                };
                let expected = vec![pb::ExpectedVersion {
                    stream: event.stream.clone(),
                    expect: Some(expect),
                }];
                let key = format!("acc-{account:06}");
                let reads = if read_back && !two_calls {
                    vec![pb::ReadBack {
                        projection: "balances".into(),
                        key: key.clone(),
                        version: 0,
                    }]
                } else {
                    Vec::new()
                };
                let t = Instant::now();
                let appended = client
                    .append(pb::AppendRequest {
                        events: vec![event],
                        expected,
                        read_back: reads,
                    })
                    .await?
                    .into_inner();
                if let Some(read) = appended.read_back.first()
                    && read.code != 0
                {
                    return Err(tonic::Status::new(
                        tonic::Code::from_i32(read.code as i32),
                        format!("reading back {key}: {}", read.message),
                    ));
                }
                if read_back && two_calls {
                    let position = appended.positions.first().copied().unwrap_or(0);
                    client
                        .get(pb::GetRequest {
                            projection: "balances".into(),
                            key,
                            min_position: position + 1,
                            version: 0,
                        })
                        .await?;
                }
                let _ = latencies.record(t.elapsed().as_micros() as u64);
                versions.insert(account, versions.get(&account).map_or(0, |v| v + 1));
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, tonic::Status>(latencies)
        }));
    }
    timed
        .finish(
            tasks,
            &format!(
                "{name} durable single-event appends with expected version{}, {} clients{}{}{}",
                match (read_back, two_calls) {
                    (true, false) =>
                        ", each read back from balances in the same call (read-your-writes)",
                    (true, true) =>
                        ", each read back from balances by a Get (read-your-writes, two calls)",
                    (false, _) => "",
                },
                args.clients,
                args.skew.label(),
                Ids::new(args.ids, "").label(),
                transport(url),
            ),
            "events",
        )
        .await
}

async fn w5(url: &str, args: &BenchArgs) -> Result<(), CliError> {
    // Make sure every account has a document, then read them.
    let mut client = connect(url).await?;
    let mut head = 0;
    let mut account = 0;
    while account < args.accounts {
        let events: Vec<pb::Event> = (account..(account + 1000).min(args.accounts))
            .map(|a| pb::Event {
                r#type: "Deposited".to_owned(),
                data: format!(r#"{{"account":"acc-{a:06}","amount":1}}"#),
                stream: String::new(),
                id: format!("w5-setup-{a}"),
            })
            .collect();
        account += events.len() as u64;
        head = client
            .append(pb::AppendRequest {
                events,
                expected: Vec::new(),
                read_back: Vec::new(),
            })
            .await?
            .into_inner()
            .head;
    }
    client
        .get(pb::GetRequest {
            projection: "balances".into(),
            key: "acc-000000".into(),
            min_position: head,
            version: 0,
        })
        .await?;
    let timed = Timed::begin("w5", "reads", args.seconds);
    let deadline = timed.deadline;
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let mut client = connect(url).await?;
        let done = timed.done.clone();
        let accounts = Accounts::new(args.accounts, args.skew);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (c as u64 + 1));
            let mut latencies = histogram();
            while Instant::now() < deadline {
                let key = format!("acc-{:06}", accounts.pick(&mut rng));
                let t = Instant::now();
                client
                    .get(pb::GetRequest {
                        projection: "balances".into(),
                        key,
                        min_position: 0,
                        version: 0,
                    })
                    .await?;
                let _ = latencies.record(t.elapsed().as_micros() as u64);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, tonic::Status>(latencies)
        }));
    }
    timed
        .finish(
            tasks,
            &format!(
                "w5 point reads of balances, {} clients{}{}",
                args.clients,
                args.skew.label(),
                transport(url)
            ),
            "reads",
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_follow_their_distribution() {
        let n = 10_000;
        let picks = 200_000;
        for skew in [Skew::Uniform, Skew::Zipf] {
            let accounts = Accounts::new(n, skew);
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let mut counts = vec![0u32; n as usize];
            for _ in 0..picks {
                let a = accounts.pick(&mut rng);
                assert!(a < n, "{skew:?} picked {a}");
                counts[a as usize] += 1;
            }
            let share = |k: usize| f64::from(counts[k]) / f64::from(picks);
            match skew {
                Skew::Uniform => {
                    // 20 expected per account: none is hot, none starved.
                    assert!(counts.iter().all(|&c| (1..=60).contains(&c)), "{counts:?}");
                }
                Skew::Zipf => {
                    // Account k has weight 1 / (k + 1)^1.1: account 0 takes about 11%
                    // of the picks, twice as many as account 1, and the tail is long.
                    let total: f64 = (1..=n).map(|k| 1.0 / (k as f64).powf(1.1)).sum();
                    assert!((share(0) - 1.0 / total).abs() < 0.005, "{}", share(0));
                    let ratio = share(0) / share(1);
                    assert!((1.9..2.4).contains(&ratio), "{ratio}");
                    assert!(share(0) > share(9) && share(9) > share(99));
                    assert!(counts[5_000..].iter().sum::<u32>() > picks / 50);
                }
            }
        }
        // One account: always it.
        let one = Accounts::new(1, Skew::Zipf);
        let mut rng = Rng(7);
        assert!((0..100).all(|_| one.pick(&mut rng) == 0));
    }

    #[test]
    fn hand_written_payloads_are_what_format_writes() {
        for (account, amount) in [
            (0, 1),
            (7, 1000),
            (9_999, 42),
            (123_456, 999),
            (1_234_567, 5),
        ] {
            let expected = format!(
                r#"{{"account":"acc-{account:06}","amount":{amount},"note":"{}"}}"#,
                "x".repeat(48)
            );
            assert_eq!(deposit_payload(account, amount), expected);
            let mut stream = String::new();
            push_digits(&mut stream, account, 6);
            assert_eq!(stream, format!("{account:06}"));
        }
    }
}
