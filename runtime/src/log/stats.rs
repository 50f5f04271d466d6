//! [`LogStats`]: what the writer did, for the node's metrics: groups committed, the
//! events and bytes in them, how many events each `fdatasync` made durable, and how
//! long each `fdatasync` took.
//!
//! The instruments are `prometheus-client`'s (atomic counters, lock-free histograms);
//! the writer thread updates them after each group's sync, so a scrape never waits on
//! the writer and the writer never waits on a scrape.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// The writer's counters (cheap to clone: the instruments are shared).
#[derive(Debug, Clone)]
pub struct LogStats {
    /// Append requests committed (a refused request is not counted).
    pub appends: Counter,
    /// Events committed.
    pub events: Counter,
    /// Groups committed, each made durable by one `fdatasync`.
    pub syncs: Counter,
    /// Bytes written to segments.
    pub bytes: Counter,
    /// Events per group, which is events per `fdatasync` (a group is made durable by
    /// one).
    pub group_events: Histogram,
    /// Seconds each `fdatasync` of a group took.
    pub sync_seconds: Histogram,
}

impl Default for LogStats {
    fn default() -> Self {
        LogStats {
            appends: Counter::default(),
            events: Counter::default(),
            syncs: Counter::default(),
            bytes: Counter::default(),
            // 1, 2, 4, ... 65536 events.
            group_events: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
            // 50 µs to about 1.6 s.
            sync_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 16)),
        }
    }
}

impl LogStats {
    /// Records a committed group.
    pub(super) fn group(&self, requests: usize, events: usize, bytes: usize, sync: f64) {
        self.appends.inc_by(requests as u64);
        self.events.inc_by(events as u64);
        self.syncs.inc();
        self.bytes.inc_by(bytes as u64);
        self.group_events.observe(events as f64);
        self.sync_seconds.observe(sync);
    }
}
