//! Prometheus metrics (`--metrics ADDR`), with `prometheus-client`.
//!
//! Three sources: the log writer's instruments ([`crate::log::LogStats`]: appends,
//! events, bytes, events per `fdatasync`, `fdatasync` latency), the API's
//! ([`RpcMetrics`], kept beside the calls in `api`: latency by method and status code), and a collector that reads
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
use prometheus_client::registry::Registry;

use crate::api::{RpcMetrics, Service};

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

        let labels = |p: &crate::proto::ProjectionStatus| ProjectionLabels {
            projection: p.name.clone(),
            version: p.version.to_string(),
            active: if p.active { "true" } else { "false" },
        };
        let per =
            |f: &dyn Fn(&crate::proto::ProjectionStatus) -> f64| -> Vec<(ProjectionLabels, f64)> {
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
        let link = |f: &dyn Fn(&crate::proto::LinkStatus) -> f64| -> Vec<(LinkLabels, f64)> {
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
