//! The node's side of the wire protocol: telling a wire connection from a gRPC one
//! ([`sniff`]) and serving it ([`WireService::serve`]).
//!
//! One task per connection reads frames, runs their calls concurrently in that task
//! (no task per call, no hand-off between threads; a request over 16 KiB, whose
//! decoding and validation is real CPU work, gets a task of its own so that it runs in
//! parallel), and writes every response that is ready with one `write`: a pipelining
//! client gets many answers per system call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tonic::Status;

use super::{MAGIC, MAX_IN_FLIGHT, Method};
use crate::api::Service;
use crate::proto::data_mesh_server::DataMesh;

/// Requests larger than this run in a task of their own; smaller ones run in the
/// connection's task (a hand-off would cost more than the call).
const SPAWN_ABOVE: usize = 16 << 10;

/// Bytes of answers gathered before they are written.
const FLUSH_AT: usize = 1 << 20;

/// How long a new connection may take to send its first 4 bytes.
const FIRST_BYTES: Duration = Duration::from_secs(10);

/// What the node serves a connection with, by its first 4 bytes.
#[derive(Debug)]
pub enum Sniffed<IO> {
    /// gRPC: the connection with the bytes read put back in front.
    Grpc(Rewind<IO>),
    /// The wire protocol (its magic consumed).
    Wire(IO),
}

/// Reads the first 4 bytes of a connection: the wire protocol's magic, or the start
/// of something else (gRPC's HTTP/2 preface), put back for the gRPC server to read.
///
/// # Errors
/// The connection closed, failed or stayed silent for 10 seconds.
pub async fn sniff<IO: AsyncRead + Unpin>(mut io: IO) -> std::io::Result<Sniffed<IO>> {
    let mut first = [0u8; 4];
    tokio::time::timeout(FIRST_BYTES, io.read_exact(&mut first))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    if &first == MAGIC {
        return Ok(Sniffed::Wire(io));
    }
    Ok(Sniffed::Grpc(Rewind {
        first,
        at: 0,
        inner: io,
    }))
}

/// A connection whose first bytes were read, and are read again first.
#[derive(Debug)]
pub struct Rewind<IO> {
    first: [u8; 4],
    at: usize,
    inner: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.first.len() {
            let rest = &this.first[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Rewind<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Connections being sniffed at once; past that a new connection is closed.
const MAX_SNIFFING: usize = 1024;

/// The connections of `accepted` for the gRPC server: each one's first bytes are read
/// in a task of its own (a silent client holds up no one), wire protocol connections
/// are served by `wire`, and the others are passed on with those bytes put back. Ends
/// when the stream is dropped (the gRPC server stopped).
pub fn incoming<A, IO>(
    mut accepted: A,
    wire: Arc<WireService>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Rewind<IO>>>
where
    A: futures_util::Stream<Item = std::io::Result<IO>> + Send + Unpin + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let sniffing = Arc::new(tokio::sync::Semaphore::new(MAX_SNIFFING));
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = accepted.next() => next,
                () = tx.closed() => return,
            };
            let io = match next {
                Some(Ok(io)) => io,
                Some(Err(e)) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                None => return,
            };
            let Ok(permit) = sniffing.clone().try_acquire_owned() else {
                tracing::warn!("{MAX_SNIFFING} new connections sent nothing yet: closing one more");
                continue;
            };
            let (tx, wire, stop) = (tx.clone(), wire.clone(), stop.clone());
            tokio::spawn(async move {
                let sniffed = sniff(io).await;
                drop(permit);
                match sniffed {
                    Ok(Sniffed::Grpc(io)) => {
                        let _ = tx.send(Ok(io)).await;
                    }
                    Ok(Sniffed::Wire(io)) => wire.serve(io, stop).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "a connection closed before its first request")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The API as the wire protocol serves it: the same service, token check, counters
/// and metrics as gRPC's [`crate::api::Api`].
#[derive(Debug, Clone)]
pub struct WireService {
    service: Service,
    tokens: Arc<crate::auth::Tokens>,
    metrics: Option<crate::api::RpcMetrics>,
    calls: Arc<AtomicU64>,
    max_message: usize,
    /// Connections being served.
    live: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a connection as live while it exists.
struct Live(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type Done = (u32, Result<Vec<u8>, Status>);
type Call = Pin<Box<dyn Future<Output = Done> + Send>>;

impl WireService {
    /// The wire protocol for `service`, checking `tokens`, refusing frames over
    /// `max_message` bytes, recording latencies in `metrics` when given.
    pub fn new(
        service: Service,
        tokens: Arc<crate::auth::Tokens>,
        metrics: Option<crate::api::RpcMetrics>,
        max_message: usize,
    ) -> WireService {
        WireService {
            calls: service.calls(),
            service,
            tokens,
            metrics,
            max_message,
            live: Arc::default(),
        }
    }

    /// Waits until every connection has answered its calls in flight and closed (they
    /// stop reading when the node stops), for at most `timeout`.
    pub async fn drained(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        while self.live.load(Ordering::Acquire) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Serves one connection (its magic already read) until the client closes it, it
    /// fails, or `stop` turns true; then finishes the calls in flight, answers them and
    /// closes.
    pub async fn serve<IO: AsyncRead + AsyncWrite + Unpin>(
        self: Arc<Self>,
        mut io: IO,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        self.live.fetch_add(1, Ordering::AcqRel);
        let _live = Live(self.live.clone());
        // Small to start with: an idle connection costs little (the buffers grow to
        // the frames a client actually sends and keep that size).
        let mut input = BytesMut::with_capacity(4 << 10);
        let mut output: Vec<u8> = Vec::new();
        let mut calls: FuturesUnordered<Call> = FuturesUnordered::new();
        let mut authorization: Option<Arc<str>> = None;
        let mut reading = true;
        loop {
            // Start the call of every whole frame read.
            while reading && calls.len() < MAX_IN_FLIGHT {
                let (id, method, body) = match super::take_frame(&mut input, self.max_message) {
                    super::Next::Frame(id, method, body) => (id, method, body),
                    super::Next::Partial => break,
                    super::Next::TooLong { id, len } => {
                        let status = Status::resource_exhausted(format!(
                            "the request is {len} bytes; this node takes at most {} bytes in \
                             one message: split it (appends: fewer events per request)",
                            self.max_message
                        ));
                        super::put_status(&mut output, id, &status);
                        reading = false;
                        break;
                    }
                };
                match Method::from_wire(method) {
                    Some(Method::Hello) => {
                        authorization = match std::str::from_utf8(&body) {
                            Ok("") => None,
                            Ok(token) => Some(format!("Bearer {}", token.trim()).into()),
                            // Any value that is not a valid token is refused per call.
                            Err(_) => Some("Bearer ?".into()),
                        };
                        super::put_header(&mut output, 0, id, 0);
                    }
                    Some(method) => {
                        let large = body.len() > SPAWN_ABOVE;
                        let call = self.clone().call(method, id, body, authorization.clone());
                        if large {
                            // Decoding and validating a large request is CPU work:
                            // it gets a task of its own, so that several of them (and
                            // other connections) run on every core, as over gRPC.
                            calls.push(Box::pin(async move {
                                tokio::spawn(call).await.unwrap_or_else(|e| {
                                    (id, Err(Status::internal(format!("the call failed: {e}"))))
                                })
                            }));
                        } else {
                            calls.push(Box::pin(call));
                        }
                    }
                    None => super::put_status(
                        &mut output,
                        id,
                        &Status::unimplemented(format!(
                            "method {method} is not part of the wire protocol (Subscribe \
                             and Export are served over gRPC only)"
                        )),
                    ),
                }
            }
            // Answer every call that is done, without waiting for the others (up to
            // a bound: a client that does not read its answers holds up the writes,
            // not the node's memory).
            while output.len() < FLUSH_AT
                && let Some(Some((id, result))) = calls.next().now_or_never()
            {
                encode(&mut output, id, result);
            }
            if !output.is_empty() {
                if io.write_all(&output).await.is_err() {
                    return;
                }
                output.clear();
            }
            if !reading && calls.is_empty() {
                let _ = io.shutdown().await;
                return;
            }
            // Room to read many small frames with one `read`.
            input.reserve(4 << 10);
            tokio::select! {
                Some((id, result)) = calls.next(), if !calls.is_empty() => {
                    encode(&mut output, id, result);
                }
                read = io.read_buf(&mut input), if reading && calls.len() < MAX_IN_FLIGHT => {
                    match read {
                        Ok(0) | Err(_) => reading = false,
                        Ok(_) => {}
                    }
                }
                _ = stop.wait_for(|s| *s), if reading => reading = false,
            }
        }
    }

    /// Runs one call: the same checks and service method as over gRPC.
    async fn call(
        self: Arc<Self>,
        method: Method,
        id: u32,
        body: Bytes,
        authorization: Option<Arc<str>>,
    ) -> Done {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = self.metrics.as_ref().map(|_| Instant::now());
        let result = self.dispatch(method, body, authorization.as_deref()).await;
        if let (Some(metrics), Some(started)) = (&self.metrics, started) {
            let code = result
                .as_ref()
                .map_or_else(Status::code, |_| tonic::Code::Ok);
            metrics.observe(
                crate::api::RpcMetrics::method(method.grpc_name()),
                code,
                started.elapsed().as_secs_f64(),
            );
        }
        (id, result)
    }

    async fn dispatch(
        &self,
        method: Method,
        body: Bytes,
        authorization: Option<&str>,
    ) -> Result<Vec<u8>, Status> {
        let principal =
            crate::api::admit(Some(&self.tokens), authorization, None, method.grpc_name())?;
        let service = &self.service;
        macro_rules! unary {
            ($call:ident, $message:ty) => {{
                let message = <$message>::decode(body).map_err(|e| {
                    Status::invalid_argument(format!(
                        "the request is not a valid message: {}",
                        e.to_string().replace("r#", "")
                    ))
                })?;
                let mut request = tonic::Request::new(message);
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                }
                Ok(DataMesh::$call(service, request)
                    .await?
                    .into_inner()
                    .encode_to_vec())
            }};
        }
        use crate::proto as pb;
        match method {
            Method::Hello => Ok(Vec::new()),
            Method::Append => unary!(append, pb::AppendRequest),
            Method::Read => unary!(read, pb::ReadRequest),
            Method::Get => unary!(get, pb::GetRequest),
            Method::Scan => unary!(scan, pb::ScanRequest),
            Method::Deploy => unary!(deploy, pb::DeployRequest),
            Method::ListProjections => unary!(list_projections, pb::ListProjectionsRequest),
            Method::Status => unary!(status, pb::StatusRequest),
            Method::Promote => unary!(promote, pb::PromoteRequest),
            Method::Retire => unary!(retire, pb::RetireRequest),
            Method::LinkReset => unary!(link_reset, pb::LinkResetRequest),
            Method::TokenCreate => unary!(token_create, pb::TokenCreateRequest),
            Method::TokenList => unary!(token_list, pb::TokenListRequest),
            Method::TokenRevoke => unary!(token_revoke, pb::TokenRevokeRequest),
            Method::Audit => unary!(audit, pb::AuditRequest),
        }
    }
}

/// Appends the response frame of a finished call.
fn encode(output: &mut Vec<u8>, id: u32, result: Result<Vec<u8>, Status>) {
    match result {
        Ok(message) => {
            super::put_header(output, message.len(), id, 0);
            output.extend_from_slice(&message);
        }
        Err(status) => {
            // The same cuts as gRPC's (a huge message or details stay within bounds).
            let status = crate::api::corrected(&status).unwrap_or(status);
            super::put_status(output, id, &status);
        }
    }
}
