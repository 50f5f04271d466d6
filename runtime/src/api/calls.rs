//! The API's instruments: each call's latency by method and status code, recorded by
//! the gRPC guard and the wire server alike and exported by [`crate::metrics`].
//!
//! Invariant: recording a successful call touches no lock and hashes no label (the
//! `OK` series of each method is made up front).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

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
