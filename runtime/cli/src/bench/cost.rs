//! What a workload cost the node, printed after its figures: events per `fdatasync`
//! (from the node's own counters, wherever it runs), and, when the node runs on this
//! host, its CPU time and context switches per call (from `/proc`), so a regression
//! shows without a profiler.

use crate::client::Client;
use datamesh_runtime::api::pb;

/// The node's counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    syncs: u64,
    events: u64,
    calls: u64,
    /// CPU time (seconds) and context switches, when the process is on this host.
    process: Option<(f64, u64)>,
}

/// The CPU seconds (user + system) and context switches (voluntary and not, summed
/// over its threads) of process `pid`, if it is a `datamesh` on this host.
fn process(pid: u32) -> Option<(f64, u64)> {
    let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
    if !comm.trim().starts_with("datamesh") {
        return None;
    }
    // /proc/PID/stat: fields after the command's closing parenthesis; utime and stime
    // are the 12th and 13th of them, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let mut switches = 0u64;
    for task in std::fs::read_dir(dir.join("task")).ok()?.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(n) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += n.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some((ticks as f64 / 100.0, switches))
}

/// Samples the node (one `Status` call).
pub async fn sample(client: &mut Client, local: bool) -> Option<Sample> {
    let status: pb::StatusResponse = client.status(pb::StatusRequest {}).await.ok()?.into_inner();
    Some(Sample {
        syncs: status.log_syncs,
        events: status.log_events,
        calls: status.calls,
        process: if local { process(status.pid) } else { None },
    })
}

/// The line describing what happened between `before` and `after`.
pub fn describe(before: &Sample, after: &Sample) -> String {
    let syncs = after.syncs.saturating_sub(before.syncs);
    let events = after.events.saturating_sub(before.events);
    // The sampling `Status` call itself is not the workload's.
    let calls = after
        .calls
        .saturating_sub(before.calls)
        .saturating_sub(1)
        .max(1);
    let mut line = if syncs > 0 {
        format!(
            "node: {:.2} events per fdatasync ({syncs} fdatasyncs)",
            events as f64 / syncs as f64
        )
    } else {
        "node: no fdatasync (nothing appended)".to_owned()
    };
    match (before.process, after.process) {
        (Some((cpu0, switches0)), Some((cpu1, switches1))) => {
            line.push_str(&format!(
                "; per call ({calls} calls): {:.1} µs of node CPU, {:.2} context switches",
                (cpu1 - cpu0) * 1e6 / calls as f64,
                switches1.saturating_sub(switches0) as f64 / calls as f64
            ));
        }
        _ => line.push_str("; CPU and context switches: the node is not on this host"),
    }
    line
}
