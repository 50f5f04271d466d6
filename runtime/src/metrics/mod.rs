//! Prometheus metrics (`--metrics ADDR`), with `prometheus-client`.
//!
//! Three sources: the log writer's instruments ([`crate::log::LogStats`]: appends,
//! events, bytes, events per `fdatasync`, `fdatasync` latency), the API's
//! ([`RpcMetrics`]: latency by method and status code), and a collector that reads
//! the node's status at each scrape (`api::Service::snapshot`: head, rates, each
//! projection version, each mesh link, the store's figures), so a scrape shows
//! exactly what `datamesh status` would and nothing goes stale.
//!
//! The HTTP listener ([`http`]) serves `/metrics` and the admin page.
//!
//! Invariant: the request path only touches atomics and a read-locked map (one
//! histogram observation per call); everything else is computed when scraped.

pub mod http;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::Service;

/// Labels of an RPC's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// The RPC's name (`Append`, `Get`, ...).
    pub method: &'static str,
    /// The gRPC status code (`OK`, `INVALID_ARGUMENT`, ...).
    pub code: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 25 µs to about 1.6 s.
    Histogram::new(exponential_buckets(25e-6, 2.0, 17))
}

/// The API's instruments.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    /// Seconds from a call's arrival to its response headers (for a unary call, its
    /// whole handling; for a stream, until it starts).
    pub latency: HistogramFamily<RpcLabels>,
    /// The `OK` series of each method (by [`RpcMethod`]), made up front: a successful
    /// call records without a lookup in the family (its lock and label hashing).
    ok: std::sync::Arc<[Histogram]>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        let latency: HistogramFamily<RpcLabels> = Family::new_with_constructor(latency_histogram);
        let ok = METHODS
            .iter()
            .chain(std::iter::once(&"other"))
            .map(|method| {
                latency
                    .get_or_create(&RpcLabels { method, code: "OK" })
                    .clone()
            })
            .collect();
        RpcMetrics { latency, ok }
    }
}

/// An RPC, as [`RpcMetrics`] counts it: its index in the service's methods (one past
/// the last: "other").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcMethod(usize);

/// The RPC names the service has, as `'static` label values (anything else is
/// "other").
const METHODS: [&str; 16] = [
    "Append",
    "Read",
    "Subscribe",
    "Get",
    "Scan",
    "Deploy",
    "ListProjections",
    "Status",
    "Promote",
    "Retire",
    "Export",
    "LinkReset",
    "TokenCreate",
    "TokenList",
    "TokenRevoke",
    "Audit",
];

impl RpcMetrics {
    /// The RPC of the request path `path` (`/datamesh.v1.DataMesh/Append`, or just
    /// `Append`).
    pub fn method(path: &str) -> RpcMethod {
        let name = path.rsplit('/').next().unwrap_or_default();
        RpcMethod(
            METHODS
                .iter()
                .position(|m| *m == name)
                .unwrap_or(METHODS.len()),
        )
    }

    /// Records one call of `method` (from [`RpcMetrics::method`]).
    pub fn observe(&self, method: RpcMethod, code: tonic::Code, seconds: f64) {
        if code == tonic::Code::Ok
            && let Some(series) = self.ok.get(method.0)
        {
            series.observe(seconds);
            return;
        }
        self.latency
            .get_or_create(&RpcLabels {
                method: METHODS.get(method.0).copied().unwrap_or("other"),
                code: code_name(code),
            })
            .observe(seconds);
    }
}

/// The canonical name of a gRPC code, as Prometheus users expect it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Labels of a projection version.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: String,
    version: String,
    active: &'static str,
}

/// Labels of a mesh link.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabels {
    peer: String,
}

/// Labels of a mesh link's state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkStateLabels {
    peer: String,
    state: String,
}

/// The per-scrape part: the node's status, as gauges.
#[derive(Debug)]
struct StatusCollector {
    service: Service,
}

/// Encodes a family as a gauge.
fn gauges<
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(L, f64)],
) -> Result<(), std::fmt::Error> {
    let family = Family::<L, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (labels, value) in values {
        family.get_or_create(labels).set(*value);
    }
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    family.encode(metric)
}

/// One unlabelled gauge.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    metric.set(value);
    let encoded = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    metric.encode(encoded)
}

impl prometheus_client::collector::Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.service.snapshot();
        let store = self.service.engine().store().clone();
        gauge(
            &mut encoder,
            "log_head",
            "The log head: one past the last position.",
            status.head as f64,
        )?;
        gauge(
            &mut encoder,
            "append_rate",
            "Events appended per second over the last 10 s.",
            status.append_rate,
        )?;
        gauge(
            &mut encoder,
            "log_writable",
            "1 while the log accepts writes, 0 after an I/O error made it refuse them.",
            if status.log_error.is_empty() {
                1.0
            } else {
                0.0
            },
        )?;
        gauge(
            &mut encoder,
            "log_damage",
            "Damaged records found in sealed log segments.",
            status.log_damage.len() as f64,
        )?;
        gauge(
            &mut encoder,
            "store_write_buffer_bytes",
            "Bytes in the projection store's write buffer.",
            store.write_buffer_bytes() as f64,
        )?;
        gauge(
            &mut encoder,
            "store_disk_bytes",
            "Bytes the projection store takes on disk.",
            store.disk_bytes() as f64,
        )?;

        let labels = |p: &crate::api::pb::ProjectionStatus| ProjectionLabels {
            projection: p.name.clone(),
            version: p.version.to_string(),
            active: if p.active { "true" } else { "false" },
        };
        let per =
            |f: &dyn Fn(&crate::api::pb::ProjectionStatus) -> f64| -> Vec<(ProjectionLabels, f64)> {
                status
                    .projections
                    .iter()
                    .map(|p| (labels(p), f(p)))
                    .collect()
            };
        gauges(
            &mut encoder,
            "projection_position",
            "The next log position the projection version folds.",
            &per(&|p| p.position as f64),
        )?;
        gauges(
            &mut encoder,
            "projection_lag",
            "Events between the projection version's position and the log head.",
            &per(&|p| p.lag as f64),
        )?;
        gauges(
            &mut encoder,
            "projection_fold_rate",
            "Events the projection version folds per second over the last 10 s.",
            &per(&|p| p.fold_rate),
        )?;
        gauges(
            &mut encoder,
            "projection_faulted",
            "1 when the projection version has stopped at a fault.",
            &per(&|p| if p.fault.is_empty() { 0.0 } else { 1.0 }),
        )?;
        let documents: Vec<(ProjectionLabels, f64)> = status
            .projections
            .iter()
            .filter_map(|p| {
                let keyspace = crate::store::keyspace_name(&p.name, p.version);
                store
                    .approximate_documents(&keyspace)
                    .map(|n| (labels(p), n as f64))
            })
            .collect();
        gauges(
            &mut encoder,
            "projection_documents_approx",
            "About how many documents the projection version holds (the store's estimate: versions not yet compacted away count too).",
            &documents,
        )?;

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let link = |f: &dyn Fn(&crate::api::pb::LinkStatus) -> f64| -> Vec<(LinkLabels, f64)> {
            status
                .links
                .iter()
                .map(|l| {
                    (
                        LinkLabels {
                            peer: l.peer.clone(),
                        },
                        f(l),
                    )
                })
                .collect()
        };
        gauges(
            &mut encoder,
            "link_lag",
            "Peer events the link has not imported yet.",
            &link(&|l| l.lag as f64),
        )?;
        gauges(
            &mut encoder,
            "link_imported",
            "Events the link imported since the node started.",
            &link(&|l| l.imported as f64),
        )?;
        gauges(
            &mut encoder,
            "link_traps",
            "Import rule traps since the node started.",
            &link(&|l| l.traps as f64),
        )?;
        gauges(
            &mut encoder,
            "link_last_progress_age_seconds",
            "Seconds since the link last imported or moved past a peer event (absent: never).",
            &status
                .links
                .iter()
                .filter(|l| l.last_progress > 0)
                .map(|l| {
                    (
                        LinkLabels {
                            peer: l.peer.clone(),
                        },
                        (now - l.last_progress) as f64 / 1e6,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        gauges(
            &mut encoder,
            "link_state",
            "1 for the link's current state (connecting, catching-up, live, paused, stopped, refused, no-address).",
            &status
                .links
                .iter()
                .map(|l| {
                    (
                        LinkStateLabels {
                            peer: l.peer.clone(),
                            state: l.state.clone(),
                        },
                        1.0,
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    }
}

/// The node's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The metrics of a node: its log's instruments, its API's, and its status.
    pub fn new(service: Service, rpc: &RpcMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("datamesh");
        let stats = service.log().stats().clone();
        registry.register("appends", "Append requests committed.", stats.appends);
        registry.register(
            "events_appended",
            "Events committed to the log.",
            stats.events,
        );
        registry.register(
            "bytes_appended",
            "Bytes written to log segments.",
            stats.bytes,
        );
        registry.register(
            "group_events",
            "Events per committed group, which is per fdatasync.",
            stats.group_events,
        );
        registry.register(
            "fdatasync_seconds",
            "Seconds each group's fdatasync took.",
            stats.sync_seconds,
        );
        registry.register(
            "rpc_seconds",
            "Seconds from a call's arrival to its response headers, by method and status code.",
            rpc.latency.clone(),
        );
        registry.register_collector(Box::new(StatusCollector { service }));
        Metrics { registry }
    }

    /// The OpenMetrics text of every metric now.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
