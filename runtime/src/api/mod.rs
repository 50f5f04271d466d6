//! The gRPC API `datamesh.v1`: the service implementation over the log and the engine.
//!
//! Invariant: a request that fails validation changes nothing, and every error carries
//! the gRPC code a client can act on — INVALID_ARGUMENT (malformed or mismatching
//! input), FAILED_PRECONDITION (version conflicts, faulted projections, deploy
//! conflicts), ALREADY_EXISTS (partially repeated ids), NOT_FOUND, RESOURCE_EXHAUSTED
//! (oversized requests), UNAVAILABLE (the log refuses writes), DEADLINE_EXCEEDED.
//!
//! Invariant: a status never grows with what a client sent. Input quoted in a message
//! (a key, a name, a type) is an excerpt with its length ([`excerpt`]); a deploy's
//! diagnostics travel in the status details only up to a byte budget, with a count of
//! the rest; and [`Api`], the service as the node serves it, cuts whatever status
//! would still be too large for gRPC metadata (HTTP/2 headers, which clients limit to
//! 8 to 16 KiB: past that the client sees a protocol error instead of the status).

pub use crate::proto as pb;

pub use calls::{RpcLabels, RpcMethod, RpcMetrics, code_name};

mod calls;
mod convert;
mod export;
mod guard;
mod status;
mod validate;

use convert::{from_hex, state_name, to_hex, token_info};
pub use convert::{origin_chain, record_to_pb};
pub use guard::{Api, MAX_STATUS_DETAILS, MAX_STATUS_MESSAGE, admit, corrected};
pub use status::{DEPLOY_RESPONSE_URL, deploy_diagnostics};
use status::{
    DETAILS_BUDGET, compile_failure_message, diagnostics_to_pb, foreign, lifecycle_status,
    list_names, log_status, shutting_down, status_with_detail, token_status,
};
use validate::{
    MAX_NAME, MAX_READ_BACK, MAX_STORE_KEY, parse_prefix, storable, unknown_if_too_long,
    wait_budget,
};

use std::pin::Pin;
use std::time::Duration;

use datamesh_compiler::exec::codec::{
    check_json, decode_payload_text, doc_to_json, excerpt, key_string, parse_key,
};
use datamesh_compiler::exec::default_doc;
use datamesh_stdlib::Value;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::engine::{DeployError, Engine};
use crate::log::{Expected, Log, LogError, NewEvent, Record};
use crate::store::encoding::{decode_doc, decode_key, encode_key};
use pb::data_mesh_server::DataMesh;

/// Limits on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Events per append.
    pub max_events: usize,
    /// Payload bytes per append.
    pub max_bytes: usize,
    /// Bytes of one event payload.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: 10_000,
            max_bytes: 16 << 20,
            max_event_bytes: 1 << 20,
        }
    }
}

/// A validated append: the events and the expected stream versions.
type ValidAppend = (Vec<NewEvent>, Vec<(String, Expected)>);

/// The service.
#[derive(Debug, Clone)]
pub struct Service {
    log: Log,
    engine: Engine,
    strict: bool,
    limits: Limits,
    mesh: std::sync::Arc<crate::links::MeshConfig>,
    links: Option<crate::links::Links>,
    /// Set when the node shuts down: the streams that follow the log end then, so
    /// that the server's graceful shutdown does not wait for them forever.
    closing: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// Serving a network address with no TLS and no authentication (`--insecure`).
    insecure: bool,
    /// The node's tokens (for `status`; [`Api`] checks them).
    tokens: Option<std::sync::Arc<crate::auth::Tokens>>,
    /// The data directory, whose audit trail admin actions are appended to.
    audit: Option<std::path::PathBuf>,
    /// The TCP listener serves TLS.
    tls: bool,
    /// Client certificates are verified: exports go only to the node a certificate
    /// names, or to a peer's token.
    peer_certs: bool,
    /// Append and fold rates, sampled by [`Service::sample_rates`].
    rates: std::sync::Arc<crate::rate::Rates>,
    /// Calls answered ([`Api`] counts them).
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Service {
    /// A service over a log and its engine. `strict` rejects undeclared event types.
    pub fn new(log: Log, engine: Engine, strict: bool, limits: Limits) -> Service {
        Service {
            log,
            engine,
            strict,
            limits,
            mesh: std::sync::Arc::default(),
            links: None,
            closing: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
            insecure: false,
            tokens: None,
            audit: None,
            tls: false,
            peer_certs: false,
            rates: std::sync::Arc::default(),
            calls: std::sync::Arc::default(),
        }
    }

    /// The counter of calls answered, for [`Api`].
    pub(crate) fn calls(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.calls.clone()
    }

    /// Samples the log head and every projection's position for the rates `status`
    /// reports (the node calls it once a second).
    pub fn sample_rates(&self) {
        let positions = self
            .engine
            .with_registry(|r| {
                r.projections
                    .iter()
                    .filter(|p| !p.retired)
                    .map(|p| (p.label.clone(), p.position))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        self.rates.sample(self.log.head(), &positions);
    }

    /// The service of a node whose listener serves TLS (`tls`), verifying client
    /// certificates (`peer_certs`): the export stream then requires a peer to prove
    /// its name, by certificate or token.
    #[must_use]
    pub fn with_tls(mut self, tls: bool, peer_certs: bool) -> Service {
        self.tls = tls;
        self.peer_certs = peer_certs;
        self
    }

    /// The service of a node that keeps its audit trail in the data directory `data`.
    #[must_use]
    pub fn with_audit(mut self, data: std::path::PathBuf) -> Service {
        self.audit = Some(data);
        self
    }

    /// Appends an admin action to the audit trail (see [`crate::audit`]).
    async fn record_audit(
        &self,
        by: serde_json::Value,
        action: &'static str,
        details: serde_json::Value,
    ) {
        // Every admin action is logged too, for log shippers.
        tracing::info!(action, by = %by, details = %details, "admin action");
        let Some(data) = self.audit.clone() else {
            return;
        };
        let written =
            tokio::task::spawn_blocking(move || crate::audit::record(&data, action, by, details))
                .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::error!(action, "cannot append an admin action to the audit trail");
        }
    }

    /// The service of a node with these tokens (`status` says whether they are on).
    #[must_use]
    pub fn with_tokens(mut self, tokens: std::sync::Arc<crate::auth::Tokens>) -> Service {
        self.tokens = Some(tokens);
        self
    }

    /// The service of a node that serves a network address with no TLS and no
    /// authentication, which `status` reports.
    #[must_use]
    pub fn with_insecure(mut self, insecure: bool) -> Service {
        self.insecure = insecure;
        self
    }

    /// Ends every stream that follows the log (`Subscribe`, `Export`) with
    /// UNAVAILABLE: the node is shutting down.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Set once [`Service::close`] was called.
    fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// The service of a node whose links these are (status, `link reset`).
    #[must_use]
    pub fn with_links(mut self, links: crate::links::Links) -> Service {
        self.links = Some(links);
        self
    }

    /// The service of a node with this name and these peers.
    #[must_use]
    pub fn with_mesh(mut self, mesh: crate::links::MeshConfig) -> Service {
        self.mesh = std::sync::Arc::new(mesh);
        self
    }

    /// Checks an append and takes its events apart (moving, not copying, their text).
    fn validate_append(&self, request: pb::AppendRequest) -> Result<ValidAppend, Status> {
        if request.events.is_empty() {
            return Err(Status::invalid_argument(
                "an append needs at least one event",
            ));
        }
        if request.events.len() > self.limits.max_events {
            return Err(Status::resource_exhausted(format!(
                "{} events in one request; the limit is {}: split the batch",
                request.events.len(),
                self.limits.max_events
            )));
        }
        let total: usize = request.events.iter().map(|e| e.data.len()).sum();
        if total > self.limits.max_bytes {
            return Err(Status::resource_exhausted(format!(
                "{total} payload bytes in one request; the limit is {}: split the batch",
                self.limits.max_bytes
            )));
        }
        let schemas = self
            .engine
            .with_registry(|r| r.schemas.clone())
            .unwrap_or_default();
        let mut events = Vec::with_capacity(request.events.len());
        let mut row = Vec::new();
        for (n, event) in request.events.into_iter().enumerate() {
            let at = |msg: String| {
                Status::invalid_argument(format!("event {n} ({}): {msg}", excerpt(&event.r#type)))
            };
            if event.r#type.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "event {n}: `type` is empty"
                )));
            }
            if crate::mesh::is_reserved(&event.r#type) || crate::mesh::is_reserved(&event.stream) {
                return Err(at(
                    "types and streams starting with `$` are reserved for the node's own records"
                        .to_owned(),
                ));
            }
            if event.data.len() > self.limits.max_event_bytes {
                return Err(Status::resource_exhausted(format!(
                    "event {n} ({}): payload of {} bytes; the limit is {}",
                    excerpt(&event.r#type),
                    event.data.len(),
                    self.limits.max_event_bytes
                )));
            }
            for (what, text) in [
                ("type", &event.r#type),
                ("stream", &event.stream),
                ("id", &event.id),
            ] {
                if text.len() > MAX_NAME {
                    return Err(at(format!(
                        "`{what}` is {} bytes; the limit is {MAX_NAME}",
                        text.len()
                    )));
                }
            }
            let blank = event.data.trim().is_empty();
            let data = if blank { "{}" } else { event.data.as_str() };
            match schemas.get(&event.r#type) {
                // Checked field by field against the declaration, building nothing.
                Some(schema) => decode_payload_text(schema, data, Some(&[]), &mut row)
                    .map_err(|e| at(e.to_string()))?,
                None if self.strict => {
                    let mut known: Vec<&String> = schemas.keys().collect();
                    known.sort();
                    return Err(at(format!(
                        "undeclared event type, and this node is strict (declared: {})",
                        list_names(known.iter().map(|s| s.as_str()))
                    )));
                }
                // The JSON itself, so that a later declaration cannot fault on it.
                None => check_json(data.as_bytes()).map_err(|e| at(e.to_string()))?,
            }
            events.push(NewEvent {
                // The text was just validated: it is stored as sent.
                payload: if blank {
                    b"{}".to_vec()
                } else {
                    event.data.into_bytes()
                },
                event_type: event.r#type,
                stream: event.stream,
                id: event.id,
                origin: String::new(),
                time: None,
            });
        }
        let mut expected = Vec::with_capacity(request.expected.len());
        for (n, e) in request.expected.into_iter().enumerate() {
            if e.stream.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "expected version {n}: an expected version needs a stream"
                )));
            }
            if e.stream.len() > MAX_NAME {
                return Err(Status::invalid_argument(format!(
                    "expected version {n}: `stream` is {} bytes; the limit is {MAX_NAME}",
                    e.stream.len()
                )));
            }
            let kind = match e.expect {
                Some(pb::expected_version::Expect::Exact(v)) => Expected::Exact(v),
                Some(pb::expected_version::Expect::NoStream(true)) => Expected::NoStream,
                _ => Expected::Any,
            };
            expected.push((e.stream, kind));
        }
        Ok((events, expected))
    }
}

impl Service {
    /// The data directory whose tokens the token RPCs manage.
    fn token_dir(&self) -> Result<std::path::PathBuf, Status> {
        self.audit
            .clone()
            .ok_or_else(|| Status::failed_precondition("this node keeps no tokens"))
    }
}

/// Runs a change or read of the token file on a blocking thread (it syncs, and may
/// wait for the file's lock), its failure as a status.
async fn on_tokens<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::auth::AuthError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(token_status)
}

/// Who sent `request`, as the audit trail names them: the token, or the address.
fn who<T>(request: &Request<T>) -> serde_json::Value {
    match principal(request) {
        Some(p) => serde_json::json!({ "token": p.id, "name": p.name, "role": p.role.to_string() }),
        None => serde_json::json!({
            "address": request
                .remote_addr()
                .or_else(|| conn(request).and_then(|c| c.remote))
                .map_or_else(|| "unix socket".to_owned(), |a| a.to_string())
        }),
    }
}

/// The TLS connection `request` came on, if it came on the TLS listener.
fn conn<T>(request: &Request<T>) -> Option<&crate::tls::ConnInfo> {
    request.extensions().get::<crate::tls::ConnInfo>()
}

/// Who sent `request`, when the node has tokens ([`Api`] put it there).
fn principal<T>(request: &Request<T>) -> Option<&crate::auth::Principal> {
    request.extensions().get::<crate::auth::Principal>()
}

type RecordStream = Pin<Box<dyn Stream<Item = Result<pb::EventRecord, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DataMesh for Service {
    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        if let Some(principal) = principal(&request) {
            for event in &request.get_ref().events {
                principal.may_append(&event.r#type)?;
            }
            for read in &request.get_ref().read_back {
                principal.may_read_projection(&read.projection)?;
            }
        }
        let budget = wait_budget(&request);
        let mut request = request.into_inner();
        let reads = std::mem::take(&mut request.read_back);
        self.check_read_back(&reads)?;
        let (events, expected) = self.validate_append(request)?;
        let appended = self
            .log
            .append(events, expected)
            .await
            .map_err(log_status)?;
        // Past the last of these events (a deduplicated append's are earlier ones).
        let after = appended
            .positions
            .iter()
            .max()
            .map_or(appended.head, |last| last + 1);
        // One deadline for every read-back, not one each.
        let until = std::time::Instant::now() + budget;
        let mut read_back = Vec::with_capacity(reads.len());
        for read in reads {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let result = self
                .document(&read.projection, &read.key, read.version, after, left)
                .await;
            read_back.push(match result {
                Ok(document) => pb::ReadBackResult {
                    document: Some(document),
                    code: 0,
                    message: String::new(),
                },
                Err(status) => pb::ReadBackResult {
                    document: None,
                    code: status.code() as u32,
                    message: status.message().to_owned(),
                },
            });
        }
        Ok(Response::new(pb::AppendResponse {
            positions: appended.positions,
            deduplicated: appended.deduplicated,
            head: appended.head,
            read_back,
        }))
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        if let Some(principal) = principal(&request) {
            principal.may_read_log()?;
        }
        let r = request.into_inner();
        let limit = match r.limit {
            0 => 1000,
            n => (n as usize).min(10_000),
        };
        let log = self.log.clone();
        let budget = self.limits.max_bytes;
        let records = tokio::task::spawn_blocking(move || {
            let stream = (!r.stream.is_empty()).then_some(r.stream.as_str());
            read_bounded(&log, stream, r.from_position, limit, budget, true)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(log_status)?;
        Ok(Response::new(pb::ReadResponse {
            events: records.into_iter().map(record_to_pb).collect(),
            head: self.log.head(),
        }))
    }

    type SubscribeStream = RecordStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        if let Some(principal) = principal(&request) {
            principal.may_read_log()?;
        }
        let mut position = request.into_inner().from_position;
        let log = self.log.clone();
        let budget = self.limits.max_bytes;
        // A small buffer: a slow consumer makes the reader wait, and it then reads from
        // the log (catch-up) instead of buffering live events without bound.
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let mut closing = self.closing();
        tokio::spawn(async move {
            let mut head = log.watch_head();
            loop {
                let closed = *closing.borrow();
                if closed {
                    let _ = tx.send(Err(shutting_down())).await;
                    return;
                }
                if position >= log.head() {
                    tokio::select! {
                        changed = head.changed() => if changed.is_err() { return },
                        () = tx.closed() => return,
                        changed = closing.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
                let batch = match read_step(&log, position, 512, budget).await {
                    Ok(batch) => batch,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                for record in batch {
                    position = record.position + 1;
                    if crate::mesh::is_reserved(&record.event_type) {
                        continue;
                    }
                    if tx.send(Ok(record_to_pb(record))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        if let Some(principal) = principal(&request) {
            principal.may_read_projection(&request.get_ref().projection)?;
        }
        let budget = wait_budget(&request);
        let r = request.into_inner();
        self.document(&r.projection, &r.key, r.version, r.min_position, budget)
            .await
            .map(Response::new)
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        if let Some(principal) = principal(&request) {
            principal.may_read_projection(&request.get_ref().projection)?;
        }
        let budget = wait_budget(&request);
        let r = request.into_inner();
        let info = self.resolve(&r.projection, r.version)?;
        let position = self.wait(&info, r.min_position, budget).await?;
        let limit = match r.limit {
            0 => 100,
            n => (n as usize).min(10_000),
        };
        let prefix = if r.prefix.is_empty() {
            Vec::new()
        } else {
            storable(
                "prefix",
                &r.prefix,
                encode_key(
                    &parse_prefix(&info.key, &r.prefix)
                        .map_err(|e| Status::invalid_argument(foreign(e)))?,
                ),
            )?
        };
        let bound = |text: &str| -> Result<Option<Vec<u8>>, Status> {
            if text.is_empty() {
                return Ok(None);
            }
            let key = parse_key(&info.key, text).map_err(|e| {
                Status::invalid_argument(foreign(format!("bound `{}`: {e}", excerpt(text))))
            })?;
            storable("bound", text, encode_key(&key)).map(Some)
        };
        let mut start = bound(&r.start)?;
        let end = bound(&r.end)?;
        if !r.page_token.is_empty() {
            let mut after = from_hex(&r.page_token)
                .filter(|key| key.len() < MAX_STORE_KEY)
                .ok_or_else(|| Status::invalid_argument("malformed page token"))?;
            // Resume just after the last key of the previous page.
            after.push(0);
            start = Some(after);
        }
        let keyspace = self
            .engine
            .store()
            .keyspace(&info.keyspace)
            .map_err(|e| Status::internal(e.to_string()))?;
        let rows = self
            .engine
            .store()
            .scan(
                &keyspace,
                &prefix,
                start.as_deref(),
                end.as_deref(),
                limit + 1,
            )
            .map_err(|e| Status::internal(e.to_string()))?;
        let more = rows.len() > limit;
        let mut documents = Vec::with_capacity(limit);
        let mut last_key = Vec::new();
        for (key, value) in rows.into_iter().take(limit) {
            let parts = decode_key(&key).ok_or_else(|| Status::internal("corrupt key"))?;
            let doc = decode_doc(&value).ok_or_else(|| Status::internal("corrupt document"))?;
            documents.push(pb::Document {
                key: key_string(&parts),
                document: doc_to_json(&info.state, &doc).to_string(),
            });
            last_key = key;
        }
        Ok(Response::new(pb::ScanResponse {
            documents,
            next_page_token: if more {
                to_hex(&last_key)
            } else {
                String::new()
            },
            position,
        }))
    }

    async fn deploy(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::DeployResponse>, Status> {
        let by = who(&request);
        let r = request.into_inner();
        if r.origin.len() > MAX_NAME {
            return Err(Status::invalid_argument(format!(
                "`origin` is {} bytes; the limit is {MAX_NAME}",
                r.origin.len()
            )));
        }
        let origin = if r.origin.is_empty() {
            "deploy.dmp".to_owned()
        } else {
            r.origin.clone()
        };
        let engine = self.engine.clone();
        let source = r.source.clone();
        let deployed_as = origin.clone();
        let result = tokio::task::spawn_blocking(move || engine.deploy(&source, &origin))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        match result {
            Ok(outcome) => {
                if !outcome.brings_nothing() {
                    let details = serde_json::json!({
                        "origin": deployed_as,
                        "started": outcome.started,
                        "declared": outcome.declared,
                        "exported": outcome.exported,
                        "imported": outcome.imported,
                    });
                    self.record_audit(by, "deploy", details).await;
                }
                let (diagnostics, omitted) = diagnostics_to_pb(&r.source, &outcome.warnings, None);
                Ok(Response::new(pb::DeployResponse {
                    started: outcome.started,
                    unchanged: outcome.unchanged,
                    declared: outcome.declared,
                    exported: outcome.exported,
                    imported: outcome.imported,
                    retired: outcome.retired,
                    diagnostics,
                    omitted,
                }))
            }
            Err(DeployError::Invalid(diagnostics)) => {
                let (listed, omitted) =
                    diagnostics_to_pb(&r.source, &diagnostics, Some(DETAILS_BUDGET));
                let errors = diagnostics.iter().filter(|d| d.is_error()).count();
                let message = compile_failure_message(&listed, errors);
                let details = pb::DeployResponse {
                    diagnostics: listed,
                    omitted,
                    ..pb::DeployResponse::default()
                };
                Err(status_with_detail(
                    tonic::Code::InvalidArgument,
                    message,
                    DEPLOY_RESPONSE_URL,
                    prost::Message::encode_to_vec(&details),
                ))
            }
            Err(DeployError::Conflict(message)) => {
                Err(Status::failed_precondition(foreign(message)))
            }
            Err(e) => Err(Status::internal(foreign(e.to_string()))),
        }
    }

    async fn list_projections(
        &self,
        _: Request<pb::ListProjectionsRequest>,
    ) -> Result<Response<pb::ListProjectionsResponse>, Status> {
        let projections = self
            .engine
            .with_registry(|r| {
                r.projections
                    .iter()
                    .filter(|p| !p.retired)
                    .map(|p| pb::ProjectionInfo {
                        name: p.name.clone(),
                        version: p.version,
                        active: r.is_active(p),
                        promoted: r.promoted_version(&p.name) == Some(p.version),
                        position: p.position,
                        state: state_name(p, self.log.head()).to_owned(),
                        fault: p
                            .fault
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        key: p.key.iter().map(ToString::to_string).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::ListProjectionsResponse { projections }))
    }

    async fn promote(
        &self,
        request: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::PromoteResponse>, Status> {
        let by = who(&request);
        let r = request.into_inner();
        unknown_if_too_long(&r.name)?;
        let active = self
            .engine
            .promote(&r.name, r.version)
            .map_err(lifecycle_status)?;
        tracing::info!(%active, "promoted");
        self.record_audit(by, "promote", serde_json::json!({ "active": active }))
            .await;
        Ok(Response::new(pb::PromoteResponse { active }))
    }

    async fn retire(
        &self,
        request: Request<pb::RetireRequest>,
    ) -> Result<Response<pb::RetireResponse>, Status> {
        let by = who(&request);
        let r = request.into_inner();
        unknown_if_too_long(&r.name)?;
        let (retired, active) = self
            .engine
            .retire(&r.name, r.version)
            .map_err(lifecycle_status)?;
        tracing::info!(%retired, "retired");
        let details = serde_json::json!({ "retired": retired, "active": active });
        self.record_audit(by, "retire", details).await;
        Ok(Response::new(pb::RetireResponse {
            retired,
            active: active.unwrap_or_default(),
        }))
    }

    type ExportStream = export::ExportStream;

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let principal = principal(&request).cloned();
        let certified = conn(&request).and_then(|c| c.peer.clone());
        self.export_stream(
            request.into_inner(),
            principal.as_ref(),
            certified.as_deref(),
        )
        .map(Response::new)
    }

    async fn token_create(
        &self,
        request: Request<pb::TokenCreateRequest>,
    ) -> Result<Response<pb::TokenCreateResponse>, Status> {
        let by = who(&request);
        let r = request.into_inner();
        let data = self.token_dir()?;
        let (record, secret) =
            on_tokens(move || crate::auth::create(&data, &r.role, &r.name, &r.scope)).await?;
        let token = token_info(&record);
        let details =
            serde_json::json!({ "id": record.id, "name": record.name, "role": record.role });
        self.record_audit(by, "token create", details).await;
        Ok(Response::new(pb::TokenCreateResponse {
            token: Some(token),
            secret,
        }))
    }

    async fn token_list(
        &self,
        _: Request<pb::TokenListRequest>,
    ) -> Result<Response<pb::TokenListResponse>, Status> {
        let data = self.token_dir()?;
        let records = on_tokens(move || crate::auth::list(&data)).await?;
        Ok(Response::new(pb::TokenListResponse {
            tokens: records.iter().map(token_info).collect(),
        }))
    }

    async fn audit(
        &self,
        request: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        let last = match request.get_ref().last {
            0 => 100,
            n => (n as usize).min(10_000),
        };
        let data = self
            .audit
            .clone()
            .ok_or_else(|| Status::failed_precondition("this node keeps no audit trail"))?;
        let entries = tokio::task::spawn_blocking(move || crate::audit::read(&data))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot read the audit trail: {e}")))?;
        let omitted = entries.len().saturating_sub(last);
        Ok(Response::new(pb::AuditResponse {
            entries: entries[omitted..].iter().map(ToString::to_string).collect(),
            omitted: omitted as u64,
        }))
    }

    async fn token_revoke(
        &self,
        request: Request<pb::TokenRevokeRequest>,
    ) -> Result<Response<pb::TokenRevokeResponse>, Status> {
        let by = who(&request);
        let id = request.into_inner().id;
        let data = self.token_dir()?;
        let record = on_tokens(move || crate::auth::revoke(&data, &id)).await?;
        let details =
            serde_json::json!({ "id": record.id, "name": record.name, "role": record.role });
        self.record_audit(by, "token revoke", details).await;
        Ok(Response::new(pb::TokenRevokeResponse {
            token: Some(token_info(&record)),
        }))
    }

    async fn link_reset(
        &self,
        request: Request<pb::LinkResetRequest>,
    ) -> Result<Response<pb::LinkResetResponse>, Status> {
        let by = who(&request);
        let r = request.into_inner();
        crate::mesh::check_name(&r.peer)
            .map_err(|e| Status::invalid_argument(format!("`peer`: {e}")))?;
        if r.note.len() > MAX_NAME {
            return Err(Status::invalid_argument(format!(
                "`note` is {} bytes; the limit is {MAX_NAME}",
                r.note.len()
            )));
        }
        let Some(links) = &self.links else {
            return Err(Status::failed_precondition("this node runs no links"));
        };
        match links.reset(&r.peer, r.from_position, &r.note).await {
            Ok(position) => {
                let details = serde_json::json!({
                    "peer": r.peer,
                    "from": r.from_position,
                    "note": r.note,
                    "link_record": position,
                });
                self.record_audit(by, "link reset", details).await;
                Ok(Response::new(pb::LinkResetResponse { position }))
            }
            Err(crate::links::ResetError::NoLink(peer)) => Err(Status::not_found(format!(
                "no deployed program has an `import {peer}` block, so there is no link to reset"
            ))),
            Err(crate::links::ResetError::Log(e)) => Err(log_status(e)),
        }
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.snapshot()))
    }
}

impl Service {
    /// The node's status now: what `Status` answers, the admin page shows and the
    /// metrics export.
    pub fn snapshot(&self) -> pb::StatusResponse {
        let head = self.log.head();
        let projections = self
            .engine
            .with_registry(|r| {
                r.projections
                    .iter()
                    .filter(|p| !p.retired)
                    .map(|p| pb::ProjectionStatus {
                        name: p.name.clone(),
                        version: p.version,
                        active: r.is_active(p),
                        position: p.position,
                        lag: head.saturating_sub(p.position),
                        state: state_name(p, head).to_owned(),
                        fault: p
                            .fault
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        fold_rate: self.rates.folds(&p.label),
                    })
                    .collect()
            })
            .unwrap_or_default();
        pb::StatusResponse {
            head,
            projections,
            strict: self.strict,
            name: self.mesh.name.clone(),
            peers: (self.mesh.peers.iter())
                .map(|(name, address)| pb::Peer {
                    name: name.clone(),
                    address: address.clone(),
                })
                .collect(),
            links: self
                .links
                .as_ref()
                .map(|l| {
                    l.status()
                        .iter()
                        .map(crate::links::LinkState::to_pb)
                        .collect()
                })
                .unwrap_or_default(),
            insecure: self.insecure,
            auth: self.tokens.as_ref().is_some_and(|t| t.enabled()),
            tls: self.tls,
            peer_certs: self.peer_certs,
            append_rate: self.rates.appends.per_second(),
            pid: std::process::id(),
            log_syncs: self.log.stats().syncs.get(),
            log_events: self.log.stats().events.get(),
            calls: self.calls.load(std::sync::atomic::Ordering::Relaxed),
            log_damage: self.log.damage().iter().map(ToString::to_string).collect(),
            log_verified: self.log.scrubbed(),
            log_error: self
                .log
                .poisoned()
                .or_else(|| self.engine.failure())
                .unwrap_or_default(),
            engine: self.engine.kind().name().to_owned(),
        }
    }

    /// The node's log (for the metrics).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The node's engine (for the metrics and the admin page).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// One step of a stream that follows the log: [`read_bounded`] from `from` on a
/// blocking thread (the node's own records included: the caller moves past them),
/// its failure as the status to end the stream with.
async fn read_step(log: &Log, from: u64, max: usize, budget: usize) -> Result<Vec<Record>, Status> {
    let reader = log.clone();
    match tokio::task::spawn_blocking(move || read_bounded(&reader, None, from, max, budget, false))
        .await
    {
        Ok(read) => read.map_err(log_status),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

/// About how many bytes a record takes in a response.
fn record_bytes(record: &Record) -> usize {
    record.payload.len() + record.event_type.len() + record.stream.len() + record.id.len() + 48
}

/// Reads up to `limit` records from `from` (a position, or a stream version when
/// `stream` is set), but no more than about `budget` bytes of them (always at least
/// one): a read of 10,000 events of 1 MiB each would hold 10 GB in the node and answer
/// with a message over the size limit. Reads in chunks sized from the records seen, so
/// small events cost one or two log reads.
fn read_bounded(
    log: &Log,
    stream: Option<&str>,
    from: u64,
    limit: usize,
    budget: usize,
    skip_reserved: bool,
) -> Result<Vec<Record>, LogError> {
    let mut out: Vec<Record> = Vec::new();
    let mut bytes = 0;
    let mut next = from;
    while out.len() < limit {
        let want = if out.is_empty() {
            limit.min(64)
        } else {
            let average = bytes / out.len() + 1;
            (budget.saturating_sub(bytes) / average).clamp(1, limit - out.len())
        };
        let batch = match stream {
            Some(stream) => log.read_stream(stream, next, want)?,
            None => log.read(next, want)?,
        };
        let got = batch.len();
        for record in batch {
            // The node's own records (a link's position) are not events: a read
            // skips them, unless it reads their stream by name. (Streams that follow
            // the log see them, to move past them.)
            if skip_reserved && stream.is_none() && crate::mesh::is_reserved(&record.event_type) {
                next = record.position + 1;
                continue;
            }
            let size = record_bytes(&record);
            if !out.is_empty() && bytes + size > budget {
                return Ok(out);
            }
            bytes += size;
            next = if stream.is_some() {
                record.stream_version + 1
            } else {
                record.position + 1
            };
            out.push(record);
        }
        if got < want {
            break;
        }
    }
    Ok(out)
}

impl Service {
    /// One document, as `Get` answers: `projection` (version `version`, 0 for the one
    /// reads go to) at the key `text`, once it has applied every event before `min_position`
    /// (waiting at most `budget`).
    async fn document(
        &self,
        projection: &str,
        text: &str,
        version: u32,
        min_position: u64,
        budget: Duration,
    ) -> Result<pb::GetResponse, Status> {
        let info = self.resolve(projection, version)?;
        let position = self.wait(&info, min_position, budget).await?;
        let key = parse_key(&info.key, text).map_err(|e| {
            Status::invalid_argument(foreign(format!(
                "key `{}` of `{}`: {e}",
                excerpt(text),
                info.label
            )))
        })?;
        let keyspace = self
            .engine
            .store()
            .keyspace(&info.keyspace)
            .map_err(|e| Status::internal(e.to_string()))?;
        let encoded = storable("key", text, encode_key(&key))?;
        let stored = self
            .engine
            .store()
            .get(&keyspace, &encoded)
            .map_err(|e| Status::internal(e.to_string()))?;
        let doc = match stored {
            Some(bytes) => decode_doc(&bytes)
                .ok_or_else(|| Status::internal(format!("corrupt document in {}", info.label)))?,
            None if key.is_empty() => self.default_document(&info)?,
            None if text.is_empty() => {
                // Most likely the key was left out (`datamesh get balances`).
                return Err(Status::not_found(format!(
                    "`{}` is keyed by {}: give a key (`datamesh get {} KEY`); no document has the empty key",
                    info.label,
                    info.key
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    info.name
                )));
            }
            None => {
                return Err(Status::not_found(format!(
                    "`{}` has no document at key `{}`",
                    info.label,
                    excerpt(text)
                )));
            }
        };
        Ok(pb::GetResponse {
            document: doc_to_json(&info.state, &doc).to_string(),
            position,
        })
    }

    /// Checks an append's read-backs before anything is appended: at most
    /// [`MAX_READ_BACK`], each of a projection that exists, at a well-formed key.
    fn check_read_back(&self, reads: &[pb::ReadBack]) -> Result<(), Status> {
        if reads.len() > MAX_READ_BACK {
            return Err(Status::invalid_argument(format!(
                "{} read-backs; an append reads back at most {MAX_READ_BACK} documents",
                reads.len()
            )));
        }
        for read in reads {
            let info = self.resolve(&read.projection, read.version)?;
            let key = parse_key(&info.key, &read.key).map_err(|e| {
                Status::invalid_argument(foreign(format!(
                    "read-back key `{}` of `{}`: {e}",
                    excerpt(&read.key),
                    info.label
                )))
            })?;
            storable("key", &read.key, encode_key(&key))?;
        }
        Ok(())
    }

    fn resolve(&self, name: &str, version: u32) -> Result<crate::engine::ProjectionInfo, Status> {
        let version = (version > 0).then_some(version);
        self.engine
            .with_registry(|r| r.resolve(name, version).cloned())
            .flatten()
            .ok_or_else(|| {
                let known = self
                    .engine
                    .with_registry(|r| list_names(r.projections.iter().map(|p| p.label.as_str())))
                    .unwrap_or_default();
                let name = excerpt(name);
                let what = version.map_or(name.to_string(), |v| format!("{name}@v{v}"));
                if known.is_empty() {
                    return Status::not_found(format!(
                        "no projection `{what}` is deployed (none is: deploy a program first)"
                    ));
                }
                Status::not_found(format!(
                    "no projection `{what}` is deployed (deployed: {known})"
                ))
            })
    }

    async fn wait(
        &self,
        info: &crate::engine::ProjectionInfo,
        min_position: u64,
        budget: Duration,
    ) -> Result<u64, Status> {
        // Already there (every read without `min_position`): the position resolved with
        // the projection is a lower bound of what the read sees, since documents commit
        // before their position is published.
        if info.position >= min_position {
            return Ok(info.position);
        }
        let label = info.label.as_str();
        let position = self
            .engine
            .wait_for(label, min_position, budget)
            .await
            .unwrap_or(0);
        if position >= min_position {
            return Ok(position);
        }
        if let Some(fault) = self
            .engine
            .with_registry(|r| {
                r.projections
                    .iter()
                    .find(|p| p.label == label)
                    .and_then(|p| p.fault.clone())
            })
            .flatten()
        {
            return Err(Status::failed_precondition(format!(
                "`{label}` is faulted and will not reach position {min_position}: {fault}"
            )));
        }
        Err(Status::deadline_exceeded(format!(
            "`{label}` is at position {position}, not yet at {min_position}"
        )))
    }

    fn default_document(&self, info: &crate::engine::ProjectionInfo) -> Result<Vec<Value>, Status> {
        self.engine
            .with_registry(|r| {
                r.programs
                    .get(info.program)
                    .and_then(|p| p.projections.get(info.index))
                    .map(default_doc)
            })
            .flatten()
            .ok_or_else(|| Status::internal("projection program missing"))
    }
}
