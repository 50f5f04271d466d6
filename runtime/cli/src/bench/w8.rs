//! W8: the mesh. An exporter node is filled with `--events` deposits (exported to the
//! importer), then the importer deploys an `import` block for them: the catch-up rate
//! is the events imported per second, from the deploy until the importer's link has
//! read the exporter's whole log. Then `--clients` clients append single events on the
//! exporter for `--seconds` while a subscriber on the importer watches them arrive:
//! the end-to-end latency runs from the exporter's acknowledgement (as the appending
//! client sees it) to the imported event being in the importer's log (delivered by
//! `Subscribe`, so readable), both measured on this process's clock.
//!
//! Run it against two fresh nodes, the importer started with `--peer` naming the
//! exporter (`runtime/cli/benches/w8.sh` starts both and runs it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BenchArgs, Rng, deposit_payload, histogram, push_digits, transport};
use crate::client::{CliError, connect};
use datamesh_runtime::api::pb;

fn fail(message: impl Into<String>) -> CliError {
    CliError {
        message: message.into(),
        code: 1,
    }
}

/// Runs W8: `url` is the exporter, `args.importer` the importer.
///
/// # Errors
/// Connection failures, refused requests, a link that does not catch up.
pub async fn run(url: &str, args: &BenchArgs) -> Result<(), CliError> {
    let Some(importer_url) = args.importer.as_deref() else {
        return Err(CliError {
            message: "w8 needs two nodes: --node EXPORTER --importer IMPORTER (the importer started with --peer EXPORTER_NAME=EXPORTER_ADDRESS)".into(),
            code: 2,
        });
    };
    let mut exporter = connect(url).await?;
    let mut importer = connect(importer_url).await?;
    let exporter_status = exporter.status(pb::StatusRequest {}).await?.into_inner();
    let importer_status = importer.status(pb::StatusRequest {}).await?.into_inner();
    let (from, to) = (exporter_status.name, importer_status.name);
    if from == to {
        return Err(fail(format!(
            "both nodes are named `{from}`: start them with different --name"
        )));
    }
    if !importer_status.peers.iter().any(|p| p.name == from) {
        return Err(fail(format!(
            "the importer `{to}` does not know the exporter `{from}`: start it with --peer {from}=ADDRESS"
        )));
    }
    if exporter_status.head != 0 || importer_status.head != 0 {
        return Err(fail("w8 needs two fresh nodes (both logs empty)"));
    }
    exporter
        .deploy(pb::DeployRequest {
            source: format!("{}export to {to} {{ Deposited }}\n", super::SCHEMA_PROGRAM),
            origin: "bench-w8-exporter.dmp".into(),
        })
        .await?;

    // The backlog, appended as W1 does (1,000 events a request, 4 in flight).
    let started = Instant::now();
    let total = args.events;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut appended = 0;
    while appended < total {
        let mut requests = Vec::new();
        for _ in 0..4 {
            let n = (total - appended).min(1000);
            if n == 0 {
                break;
            }
            let events = (0..n)
                .map(|_| {
                    let x = rng.next();
                    pb::Event {
                        r#type: "Deposited".into(),
                        data: deposit_payload(x % args.accounts.max(1), (x >> 20) % 1000 + 1),
                        stream: String::new(),
                        id: String::new(),
                    }
                })
                .collect();
            appended += n;
            let mut client = exporter.clone();
            requests.push(tokio::spawn(async move {
                client
                    .append(pb::AppendRequest {
                        events,
                        expected: Vec::new(),
                        read_back: Vec::new(),
                    })
                    .await
            }));
        }
        for request in requests {
            request.await.map_err(|e| fail(e.to_string()))??;
        }
    }
    eprintln!(
        "w8: {total} events appended on `{from}` in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // Catch-up: from the deploy of the import block until the link has read it all.
    let head = exporter
        .status(pb::StatusRequest {})
        .await?
        .into_inner()
        .head;
    let program = format!(
        "// Deployed by `datamesh bench --workload w8`.
event Credited {{ account: string, amount: int }}
import {from} {{
  event Deposited {{ account: string, amount: int, note: string = \"\" }}
  on Deposited {{ emit Credited {{ account: event.account, amount: event.amount }} }}
}}
"
    );
    let started = Instant::now();
    importer
        .deploy(pb::DeployRequest {
            source: program,
            origin: "bench-w8-importer.dmp".into(),
        })
        .await?;
    let deadline = started + Duration::from_secs(600);
    let caught_up = loop {
        let status = importer.status(pb::StatusRequest {}).await?.into_inner();
        let link = status.links.iter().find(|l| l.peer == from);
        if let Some(link) = link
            && link.position >= head
        {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "the link did not catch up in 10 minutes: {link:?}"
            )));
        }
        if let Some(link) = link {
            eprint!(
                "\r[w8 catch-up] {:>5.1} s  {:>10} of {head}   ",
                started.elapsed().as_secs_f64(),
                link.position
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rate = head as f64 / caught_up.as_secs_f64();
    eprintln!();
    println!(
        "w8 catch-up: {head} events imported from `{from}` in {:.2} s = {rate:.0} events/s (from the deploy of the import block, link start included){}",
        caught_up.as_secs_f64(),
        transport(importer_url)
    );

    // Live: clients append on the exporter; a subscriber on the importer sees them.
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let from_head = importer
        .status(pb::StatusRequest {})
        .await?
        .into_inner()
        .head;
    let mut stream = importer
        .subscribe(pb::SubscribeRequest {
            from_position: from_head,
        })
        .await?
        .into_inner();
    let watcher = {
        let seen = seen.clone();
        let prefix = format!("{from}/");
        tokio::spawn(async move {
            while let Ok(Some(record)) = stream.message().await {
                let now = Instant::now();
                if let Some(id) = record.id.strip_prefix(&prefix)
                    && let Ok(mut seen) = seen.lock()
                {
                    seen.insert(id.to_owned(), now);
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut clients = Vec::new();
    for c in 0..args.clients {
        let mut client = connect(url).await?;
        let acked = acked.clone();
        let accounts = args.accounts.max(1);
        clients.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut id = format!("w8-c{c}-");
                push_digits(&mut id, n, 1);
                n += 1;
                let x = rng.next();
                client
                    .append(pb::AppendRequest {
                        events: vec![pb::Event {
                            r#type: "Deposited".into(),
                            data: deposit_payload(x % accounts, (x >> 20) % 1000 + 1),
                            stream: String::new(),
                            id: id.clone(),
                        }],
                        expected: Vec::new(),
                        read_back: Vec::new(),
                    })
                    .await?;
                let now = Instant::now();
                if let Ok(mut acked) = acked.lock() {
                    acked.insert(id, now);
                }
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for client in clients {
        client.await.map_err(|e| fail(e.to_string()))??;
    }
    let sent = acked.lock().map_or(0, |a| a.len());
    // Everything acknowledged arrives (bounded wait).
    let wait = Instant::now() + Duration::from_secs(60);
    while seen.lock().map_or(0, |s| s.len()) < sent && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.abort();
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut latencies = histogram();
    for (id, at) in &acked {
        if let Some(arrived) = seen.get(id) {
            let micros = arrived.saturating_duration_since(*at).as_micros() as u64;
            let _ = latencies.record(micros.max(1));
        }
    }
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "w8 live: {} clients appended {sent} single events on `{from}` in {} s; {} arrived on `{to}`; end-to-end (exporter ack -> readable on the importer) p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        args.clients,
        args.seconds,
        latencies.len(),
        ms(0.5),
        ms(0.99),
        latencies.max() as f64 / 1000.0
    );
    if (latencies.len() as usize) < sent {
        return Err(fail(format!(
            "{} acknowledged events did not arrive on the importer within 60 s",
            sent - latencies.len() as usize
        )));
    }
    Ok(())
}
