//! [`Api`]: the gRPC service as the node serves it. It wraps the generated server and
//! corrects the statuses that tonic itself produces before a request reaches
//! [`Service`], so every refusal carries the code the book promises:
//!
//! - a request field that is not valid UTF-8 (or any request that is not a valid
//!   protobuf message) is INVALID_ARGUMENT naming the message and field, not INTERNAL;
//! - a request over the message size limit is RESOURCE_EXHAUSTED (the gRPC convention
//!   for size limits), not OUT_OF_RANGE;
//! - a status whose message or details would not fit in gRPC metadata (HTTP/2 headers,
//!   which clients cap at 8 to 16 KiB; past that the client only sees a protocol
//!   error) is cut: the message to [`MAX_STATUS_MESSAGE`] bytes, and details over
//!   [`MAX_STATUS_DETAILS`] bytes are left out (the message says so).
//!
//! It also authenticates and authorizes every call of the DataMesh service when the
//! node has tokens ([`crate::auth`]): a call without a valid token, or whose role does
//! not allow it, is answered here, before it reaches the service, so it changes
//! nothing; an allowed call carries its [`crate::auth::Principal`] in its extensions.
//! A call without a token on a connection whose client certificate names a node
//! ([`crate::tls::ConnInfo::peer`]) is that node's peer role.
//!
//! Errors are sent before any message as headers only ("trailers-only"), which is
//! where this looks: a successful response costs one header lookup. The corrections
//! match tonic's own messages; `tests/tests/hostile.rs` sends each case, so a tonic
//! upgrade that changes them fails there.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use datamesh_compiler::exec::codec::clip_to;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::Service;
use super::pb::data_mesh_server::DataMeshServer;

/// The most bytes of a status message the node sends (percent-encoding may triple
/// them on the wire).
pub const MAX_STATUS_MESSAGE: usize = 1 << 10;

/// The most bytes of status details the node sends (base64 makes them a third larger
/// on the wire).
pub const MAX_STATUS_DETAILS: usize = 3 << 10;

/// The service as the node serves it (see the module documentation).
#[derive(Debug, Clone)]
pub struct Api {
    inner: DataMeshServer<Service>,
    tokens: Option<std::sync::Arc<crate::auth::Tokens>>,
    metrics: Option<crate::api::RpcMetrics>,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Api {
    /// The service, accepting and sending messages of up to `max_message` bytes.
    pub fn new(service: Service, max_message: usize) -> Api {
        let calls = service.calls();
        Api {
            calls,
            inner: DataMeshServer::new(service)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            tokens: None,
            metrics: None,
        }
    }

    /// The service recording each call's latency and status code in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::api::RpcMetrics) -> Api {
        self.metrics = Some(metrics);
        self
    }

    /// The service checking calls against `tokens` (when any is active).
    #[must_use]
    pub fn with_tokens(mut self, tokens: std::sync::Arc<crate::auth::Tokens>) -> Api {
        self.tokens = Some(tokens);
        self
    }

    /// Who may make this call: `Ok(None)` when the node has no tokens.
    fn admit<B>(
        &self,
        request: &http::Request<B>,
    ) -> Result<Option<crate::auth::Principal>, Status> {
        let header = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let certified = request
            .extensions()
            .get::<crate::tls::ConnInfo>()
            .and_then(|c| c.peer.as_deref());
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        admit(self.tokens.as_deref(), header, certified, method)
    }
}

/// Who may call `method` with the `authorization` value `header`, on a connection whose
/// client certificate proves the node name `certified`: `Ok(None)` when the node has
/// no tokens. Shared by both transports (gRPC and [`crate::wire`]).
///
/// # Errors
/// UNAUTHENTICATED or PERMISSION_DENIED, as [`crate::auth`] decides.
pub fn admit(
    tokens: Option<&crate::auth::Tokens>,
    header: Option<&str>,
    certified: Option<&str>,
    method: &str,
) -> Result<Option<crate::auth::Principal>, Status> {
    let Some(tokens) = tokens.filter(|t| t.enabled()) else {
        return Ok(None);
    };
    // A peer that proved its name by certificate needs no token: it is that peer.
    let principal = match (header, certified) {
        (None, Some(name)) => crate::auth::Principal::certified(name),
        _ => tokens.authenticate(header)?,
    };
    crate::auth::authorize(&principal, method)?;
    Ok(Some(principal))
}

impl NamedService for Api {
    const NAME: &'static str = <DataMeshServer<Service> as NamedService>::NAME;
}

type Reply = http::Response<tonic::body::Body>;

impl<B> tower::Service<http::Request<B>> for Api
where
    DataMeshServer<Service>: tower::Service<http::Request<B>, Response = Reply, Error = Infallible>,
    <DataMeshServer<Service> as tower::Service<http::Request<B>>>::Future: Send + 'static,
{
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let observe = self.metrics.clone().map(|m| {
            (
                m,
                crate::api::RpcMetrics::method(request.uri().path()),
                std::time::Instant::now(),
            )
        });
        let record = move |reply: &Reply| {
            if let Some((metrics, path, started)) = &observe {
                let code = reply
                    .headers()
                    .get(GRPC_STATUS)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from_i32);
                metrics.observe(*path, code, started.elapsed().as_secs_f64());
            }
        };
        match self.admit(&request) {
            Ok(Some(principal)) => {
                request.extensions_mut().insert(principal);
            }
            Ok(None) => {}
            Err(status) => {
                let reply = status.into_http::<tonic::body::Body>();
                record(&reply);
                return Box::pin(async move { Ok(reply) });
            }
        }
        let reply = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            let mut reply = reply.await?;
            correct(reply.headers_mut());
            record(&reply);
            Ok(reply)
        })
    }
}

const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";
const GRPC_DETAILS: &str = "grpc-status-details-bin";

/// Rewrites a trailers-only error status in `headers` when it needs correcting.
fn correct(headers: &mut http::HeaderMap) {
    if !headers.contains_key(GRPC_STATUS) {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let Some(fixed) = corrected(&status) else {
        return;
    };
    let mut fresh = http::HeaderMap::new();
    if fixed.add_header(&mut fresh).is_err() {
        return;
    }
    for name in [GRPC_STATUS, GRPC_MESSAGE, GRPC_DETAILS] {
        headers.remove(name);
        if let Some(value) = fresh.remove(name) {
            headers.insert(name, value);
        }
    }
}

/// The status to send instead of `status`, if it needs correcting.
pub fn corrected(status: &Status) -> Option<Status> {
    let text = status.message();
    let oversized = text.len() > MAX_STATUS_MESSAGE || status.details().len() > MAX_STATUS_DETAILS;
    let (code, mut message) = match status.code() {
        // prost: "failed to decode Protobuf message: AppendRequest.events: Event.type:
        // invalid string value: data is not UTF-8 encoded".
        Code::Internal if text.starts_with("failed to decode Protobuf message") => {
            // prost names fields as in Rust (`Event.r#type`), the proto as `type`.
            let what = text
                .strip_prefix("failed to decode Protobuf message: ")
                .unwrap_or(text)
                .replace("r#", "");
            (
                Code::InvalidArgument,
                format!("the request is not a valid message: {what}"),
            )
        }
        // tonic: "Error, decoded message length too large: found N bytes, the limit
        // is: M bytes".
        Code::OutOfRange if text.starts_with("Error, decoded message length too large") => {
            (Code::ResourceExhausted, too_large(text))
        }
        code if oversized => (code, text.to_owned()),
        _ => return None,
    };
    let details = status.details();
    if details.len() > MAX_STATUS_DETAILS {
        message = format!(
            "{} (status details of {} bytes left out)",
            clip_to(message, MAX_STATUS_MESSAGE - 64),
            details.len()
        );
        return Some(Status::new(code, message));
    }
    let message = clip_to(message, MAX_STATUS_MESSAGE);
    Some(if details.is_empty() {
        Status::new(code, message)
    } else {
        Status::with_details(
            code,
            message,
            tonic::codegen::Bytes::copy_from_slice(details),
        )
    })
}

/// The message for a request over the size limit, from tonic's.
fn too_large(text: &str) -> String {
    let number_after = |marker: &str| -> Option<u64> {
        let rest = text.get(text.find(marker)? + marker.len()..)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    match (number_after("found "), number_after("the limit is: ")) {
        (Some(found), Some(limit)) => format!(
            "the request is {found} bytes; this node takes at most {limit} bytes in one \
             message: split it (appends: fewer events per request)"
        ),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_failures_are_invalid_argument_and_size_resource_exhausted() {
        let utf8 = Status::internal(
            "failed to decode Protobuf message: Event.r#type: AppendRequest.events: invalid \
             string value: data is not UTF-8 encoded",
        );
        let fixed = corrected(&utf8).expect("corrected");
        assert_eq!(fixed.code(), Code::InvalidArgument);
        assert!(
            fixed.message().contains("Event.type"),
            "{}",
            fixed.message()
        );
        let size = Status::out_of_range(
            "Error, decoded message length too large: found 22020096 bytes, the limit is: \
             20971520 bytes",
        );
        let fixed = corrected(&size).expect("corrected");
        assert_eq!(fixed.code(), Code::ResourceExhausted);
        assert!(
            fixed
                .message()
                .contains("the request is 22020096 bytes; this node takes at most 20971520"),
            "{}",
            fixed.message()
        );
        assert!(corrected(&Status::internal("other")).is_none());
        assert!(corrected(&Status::out_of_range("other")).is_none());
    }

    #[test]
    fn oversized_statuses_are_cut() {
        let long = Status::not_found("é ".repeat(1 << 20));
        let fixed = corrected(&long).expect("corrected");
        assert_eq!(fixed.code(), Code::NotFound);
        assert!(fixed.message().len() <= MAX_STATUS_MESSAGE);
        let details = Status::with_details(
            Code::InvalidArgument,
            "bad",
            tonic::codegen::Bytes::from(vec![0u8; MAX_STATUS_DETAILS + 1]),
        );
        let fixed = corrected(&details).expect("corrected");
        assert!(fixed.details().is_empty());
        assert!(fixed.message().contains("left out"), "{}", fixed.message());
        let mut headers = http::HeaderMap::new();
        long.add_header(&mut headers).expect("headers");
        correct(&mut headers);
        let total: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        assert!(total < 8 << 10, "{total}");
        assert_eq!(
            Status::from_header_map(&headers).map(|s| s.code()),
            Some(Code::NotFound)
        );
    }
}
