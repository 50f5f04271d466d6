//! The client side of the wire protocol: [`WireClient`], one connection shared by
//! every clone, calls pipelined on it.
//!
//! A call writes its frame itself (under a lock, one `write`), then waits for the
//! reader task to hand it the response with its id: one wake-up per call, and any
//! number of calls in flight from as many tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::Status;

use super::{HEADER, MAGIC, Method};

type Reply = Result<bytes::Bytes, Status>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A wire protocol connection to a node. Cloning it shares the connection.
#[derive(Debug, Clone)]
pub struct WireClient {
    shared: Arc<Shared>,
}

struct Shared {
    writer: tokio::sync::Mutex<Writer>,
    /// Calls waiting for their response, by id; `None` once the connection is gone
    /// (with why).
    pending: Mutex<Result<HashMap<u32, oneshot::Sender<Reply>>, String>>,
    next: AtomicU32,
    max_message: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl WireClient {
    /// Connects to the node at `url` (`dmw://HOST:PORT` or `dmw+unix:PATH`) and says
    /// hello with `token`.
    ///
    /// # Errors
    /// The URL is not a wire protocol address, nothing answers there, or what answers
    /// does not speak the wire protocol (a node serving TLS on that port, say).
    pub async fn connect(url: &str, token: Option<&str>) -> Result<WireClient, String> {
        let unreachable = |e: std::io::Error| format!("cannot reach a node at {url}: {e}");
        let timeout = std::time::Duration::from_secs(5);
        let (reader, writer): (Box<dyn AsyncRead + Send + Unpin>, Writer) =
            if let Some(path) = url.strip_prefix("dmw+unix:") {
                let stream = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|_| format!("cannot reach a node at {url}: timed out"))?
                    .map_err(unreachable)?;
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            } else if let Some(address) = url.strip_prefix("dmw://") {
                let address = address.trim_end_matches('/');
                let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
                    .await
                    .map_err(|_| format!("cannot reach a node at {url}: timed out"))?
                    .map_err(unreachable)?;
                let _ = stream.set_nodelay(true);
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            } else {
                return Err(format!(
                    "`{url}` is not a wire protocol address (dmw://HOST:PORT or dmw+unix:PATH)"
                ));
            };
        let client = WireClient {
            shared: Arc::new(Shared {
                writer: tokio::sync::Mutex::new(writer),
                pending: Mutex::new(Ok(HashMap::new())),
                next: AtomicU32::new(1),
                max_message: 64 << 20,
            }),
        };
        let reader_shared = client.shared.clone();
        tokio::spawn(async move {
            let why = read_responses(reader, &reader_shared).await;
            if let Ok(mut pending) = reader_shared.pending.lock() {
                // Every call still waiting hears why; later calls fail at once.
                *pending = Err(why);
            }
        });
        {
            let mut writer = client.shared.writer.lock().await;
            writer
                .write_all(MAGIC)
                .await
                .map_err(|e| format!("cannot reach a node at {url}: {e}"))?;
        }
        let hello = client.call_raw(Method::Hello, token.unwrap_or_default().as_bytes().to_vec());
        match tokio::time::timeout(timeout, hello).await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(status)) => Err(format!(
                "the node at {url} does not speak the wire protocol: {} (is it serving TLS \
                 on that port? use gRPC with https:// there)",
                status.message()
            )),
            Err(_) => Err(format!(
                "the node at {url} did not answer the wire protocol's hello"
            )),
        }
    }

    /// Sends `body` as a call of `method` and waits for its response body.
    async fn call_raw(&self, method: Method, body: Vec<u8>) -> Reply {
        let mut frame = Vec::with_capacity(HEADER + body.len());
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        super::put_header(&mut frame, body.len(), id, method as u8);
        frame.extend_from_slice(&body);
        self.send(id, frame).await
    }

    /// Writes `frame` (call `id`) and waits for the response.
    async fn send(&self, id: u32, frame: Vec<u8>) -> Reply {
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .map_err(|_| Status::internal("the connection's state is poisoned"))?;
            match pending.as_mut() {
                Ok(pending) => {
                    pending.insert(id, tx);
                }
                Err(why) => return Err(Status::unavailable(why.clone())),
            }
        }
        let written = {
            let mut writer = self.shared.writer.lock().await;
            writer.write_all(&frame).await
        };
        if let Err(e) = written {
            if let Ok(Ok(pending)) = self.shared.pending.lock().as_deref_mut() {
                pending.remove(&id);
            }
            return Err(Status::unavailable(format!(
                "the connection to the node failed: {e}"
            )));
        }
        rx.await
            .map_err(|_| Status::unavailable("the connection to the node closed"))?
    }

    /// Calls `method` with `request` and decodes its response.
    ///
    /// # Errors
    /// The node's status, or UNAVAILABLE when the connection is gone.
    pub async fn call<Response: Message + Default>(
        &self,
        method: Method,
        request: &impl Message,
    ) -> Result<Response, Status> {
        let mut frame = Vec::with_capacity(HEADER + request.encoded_len());
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        super::put_message(&mut frame, id, method as u8, request);
        let body = self.send(id, frame).await?;
        Response::decode(body)
            .map_err(|e| Status::internal(format!("the node's response does not decode: {e}")))
    }
}

/// Reads response frames and hands each to its call, until the connection ends;
/// returns why it ended.
async fn read_responses(mut reader: Box<dyn AsyncRead + Send + Unpin>, shared: &Shared) -> String {
    let mut input = BytesMut::with_capacity(16 << 10);
    loop {
        loop {
            let (id, code, body) = match super::take_frame(&mut input, shared.max_message) {
                super::Next::Frame(id, code, body) => (id, code, body),
                super::Next::Partial => break,
                super::Next::TooLong { len, .. } => {
                    return format!("the node sent a frame of {len} bytes, over the limit");
                }
            };
            let reply = if code == 0 {
                Ok(body)
            } else {
                Err(super::status_from(code, &body))
            };
            let waiting = shared
                .pending
                .lock()
                .ok()
                .and_then(|mut p| p.as_mut().ok().and_then(|p| p.remove(&id)));
            if let Some(tx) = waiting {
                let _ = tx.send(reply);
            }
        }
        input.reserve(4 << 10);
        match reader.read_buf(&mut input).await {
            Ok(0) => return "the node closed the connection".to_owned(),
            Ok(_) => {}
            Err(e) => return format!("the connection to the node failed: {e}"),
        }
    }
}
