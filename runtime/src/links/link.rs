//! One link: imports a peer's exported events through an `import` block, exactly
//! once, in the peer's order.
//!
//! A session connects to the peer, opens its `Export` stream from the link's
//! checkpoint (see `checkpoint.rs`) and checks the hello: the peer's log must be the
//! one the link followed (same identity, head not behind the link), and the block must
//! agree with what the peer exports (`schema.rs`). Then it takes whatever messages
//! have arrived (up to [`BATCH_MESSAGES`]), runs each event of a declared type through
//! the block's rules, and appends the emitted events with the new checkpoint as one
//! request, which the log commits as one group: all of it or none of it. Events the
//! rules drop, events of types the block does not declare, events that came from this
//! node, and heartbeats move the position too; when nothing was emitted the checkpoint
//! is written only when the link is caught up or a second has passed, since
//! re-reading dropped events after a crash imports nothing.
//!
//! Any failure ends the session; the link tries again after an exponential backoff
//! with jitter (forever), re-reading its checkpoint from the log, so what a failed
//! append may or may not have written is never guessed. A session never runs beside
//! another of the same link (the manager stops one before it starts the next).
//!
//! Invariants: a peer event is imported only if its position is at or after the
//! checkpoint, and the checkpoint moves past it in the same group as its emitted
//! events; an event whose origin chain names this node is never imported (so A <-> B
//! terminates); a peer event that does not decode against the block pauses the link
//! at its position (it is never skipped); a rule trap imports nothing for that event
//! and is recorded in the link's status.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datamesh_compiler::codegen::JitScratch;
use datamesh_compiler::exec::codec::{decode_payload_text, doc_to_json};
use datamesh_compiler::exec::{Fault, Meta, imported_meta};
use datamesh_compiler::interp::Fold;
use datamesh_compiler::ir::Program;
use datamesh_stdlib::Value;
use tokio::sync::watch;

use crate::log::{Log, NewEvent};
use crate::mesh::checkpoint::{self, Checkpoint};
use crate::proto as pb;

/// Most peer messages handled in one batch (one append); each carries the exported
/// events of one read of the peer's log (up to 512).
pub const BATCH_MESSAGES: usize = 8;

/// Most peer payload bytes handled in one batch.
const BATCH_BYTES: usize = 4 << 20;

/// A peer that sends nothing (not even a heartbeat, which comes every second) for this
/// long is taken for gone, and the link reconnects.
pub const SILENCE: Duration = Duration::from_secs(5);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The first wait after a failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// With nothing emitted, the checkpoint is written at least this often while the link
/// is behind.
const QUIET_CHECKPOINT: Duration = Duration::from_secs(1);

/// What a link is doing, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    /// The peer.
    pub peer: String,
    /// `connecting`, `catching-up`, `live`, `paused`, `stopped`, `refused`,
    /// `no-address`.
    pub state: &'static str,
    /// The next peer position to import.
    pub position: u64,
    /// The peer's head, as last heard.
    pub peer_head: u64,
    /// Local events appended by the link, in total.
    pub imported: u64,
    /// When the link last moved or heard it is current (µs since the epoch).
    pub last_progress: i64,
    /// The last error, "" when none since the last progress.
    pub error: String,
    /// The last rule trap: position, code and message.
    pub last_trap: String,
    /// Rule traps since the node started.
    pub traps: u64,
    /// The peer log's identity the link follows.
    pub peer_identity: String,
}

impl LinkState {
    /// The status as the API shows it.
    pub fn to_pb(&self) -> pb::LinkStatus {
        pb::LinkStatus {
            peer: self.peer.clone(),
            state: self.state.to_owned(),
            position: self.position,
            peer_head: self.peer_head,
            lag: self.peer_head.saturating_sub(self.position),
            imported: self.imported,
            last_progress: self.last_progress,
            error: self.error.clone(),
            last_trap: self.last_trap.clone(),
            traps: self.traps,
            peer_identity: self.peer_identity.clone(),
        }
    }
}

/// Everything one link needs.
pub(super) struct Link {
    /// This node's name.
    pub me: String,
    /// The peer.
    pub peer: String,
    /// The peer's address, if configured.
    pub address: Option<String>,
    /// The file of the token to present to the peer, if configured.
    pub token: Option<std::path::PathBuf>,
    /// TLS for `https://` peers: the CA to verify them, the certificate to present.
    pub tls: crate::tls::ClientTls,
    /// The program whose import block runs, its index in the registry (whose JIT code
    /// runs the rules when the JIT compiled it), and the block's index in it.
    pub program: Arc<Program>,
    pub index: usize,
    pub block: usize,
    pub engine: crate::engine::Engine,
    pub log: Log,
    /// The largest payload an event may have on this node.
    pub max_event_bytes: usize,
    pub status: Arc<Mutex<LinkState>>,
}

/// Why a session ended.
#[derive(Debug)]
struct Failure {
    state: &'static str,
    message: String,
}

impl Failure {
    fn new(state: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            state,
            message: message.into(),
        }
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Link {
    fn update(&self, f: impl FnOnce(&mut LinkState)) {
        if let Ok(mut state) = self.status.lock() {
            let before = state.state;
            f(&mut state);
            // A change of state is logged (a retry's "connecting" is not: the failure
            // before it was).
            match state.state {
                now if now == before || now == "connecting" => {}
                now @ ("stopped" | "paused" | "refused" | "no-address") => {
                    tracing::warn!(peer = %self.peer, state = now, was = before, position = state.position, error = %state.error, "mesh link state");
                }
                now => {
                    tracing::info!(peer = %self.peer, state = now, was = before, position = state.position, "mesh link state");
                }
            }
        }
    }

    /// Runs sessions until `stop` is set, backing off between failed ones.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            if *stop.borrow() {
                return;
            }
            let progressed_before = self.status.lock().map_or(0, |s| s.last_progress);
            let failure = match self.session(&mut stop).await {
                Ok(()) => return,
                Err(failure) => failure,
            };
            tracing::warn!(peer = %self.peer, state = failure.state, error = %failure.message, "mesh link");
            self.update(|s| {
                s.state = failure.state;
                s.error = failure.message;
            });
            // A session that made progress starts the backoff over.
            if self.status.lock().map_or(0, |s| s.last_progress) != progressed_before {
                backoff = MIN_BACKOFF;
            }
            // Jitter: between half and all of the delay, so links that failed
            // together do not retry together.
            let nanos = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
            );
            let half = backoff / 2;
            let delay = half + half.mul_f64((nanos % 1000) as f64 / 1000.0);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection to the peer, until it fails or `stop` is set (`Ok`). The request
    /// a session left in flight is settled before it returns, so the next session
    /// reads the link's position from a log that no longer changes under it.
    async fn session(&self, stop: &mut watch::Receiver<bool>) -> Result<(), Failure> {
        let mut pending = None;
        let result = self.follow(stop, &mut pending).await;
        if let Some((request, _)) = pending.take() {
            let _ = request.await;
        }
        result
    }

    /// Connects, checks the hello and imports until a failure or `stop`; `pending` is
    /// the append in flight (at most one), with the checkpoint it commits.
    async fn follow(
        &self,
        stop: &mut watch::Receiver<bool>,
        pending: &mut Option<(Pending, Checkpoint)>,
    ) -> Result<(), Failure> {
        let mut committed = checkpoint::last(&self.log, &self.peer)
            .map_err(|e| Failure::new("connecting", format!("reading the link's position: {e}")))?
            .unwrap_or_else(|| Checkpoint {
                peer: self.peer.clone(),
                ..Checkpoint::default()
            });
        self.update(|s| {
            s.position = committed.position;
            s.imported = committed.imported;
            s.peer_identity.clone_from(&committed.identity);
            if s.state.is_empty() || s.state == "connecting" {
                s.state = "connecting";
            }
        });
        let Some(address) = &self.address else {
            // Only a restart with the peer configured can help: say so once and wait.
            let message = format!(
                "no address for peer `{0}`: start the node with `--peer {0}=ADDRESS` or add `[peers.{0}] address = \"...\"` to its config",
                self.peer
            );
            tracing::warn!(peer = %self.peer, "{message}");
            self.update(|s| {
                s.state = "no-address";
                s.error = message;
            });
            let _ = stop.wait_for(|stopped| *stopped).await;
            return Ok(());
        };
        let channel = crate::connect::channel(address, &self.tls)
            .await
            .map_err(|e| Failure::new("connecting", e))?;
        let mut client =
            pb::data_mesh_client::DataMeshClient::new(channel).max_decoding_message_size(128 << 20);
        let mut request = tonic::Request::new(pb::ExportRequest {
            peer: self.me.clone(),
            from_position: committed.position,
        });
        if let Some(file) = &self.token {
            // Read at each connection, so a new token is used without a restart.
            let token = std::fs::read_to_string(file).map_err(|e| {
                Failure::new(
                    "connecting",
                    format!(
                        "the token file for `{}` ({}): {e}",
                        self.peer,
                        file.display()
                    ),
                )
            })?;
            let bearer = crate::connect::Bearer::new(&token)
                .map_err(|e| Failure::new("connecting", format!("{}: {e}", file.display())))?;
            bearer.apply(&mut request);
        }
        let response = client
            .export(request)
            .await
            .map_err(|status| self.refusal(&status))?;
        let mut stream = response.into_inner();
        let hello = match tokio::time::timeout(SILENCE, stream.message()).await {
            Ok(Ok(Some(pb::ExportMessage {
                kind: Some(pb::export_message::Kind::Hello(hello)),
            }))) => hello,
            Ok(Err(status)) => return Err(self.refusal(&status)),
            Ok(_) => {
                return Err(Failure::new(
                    "connecting",
                    "the peer's export stream did not start with a hello",
                ));
            }
            Err(_) => return Err(Failure::new("connecting", "the peer sent no hello")),
        };
        self.update(|s| s.peer_head = hello.head);
        self.check_hello(&hello, &mut committed)?;
        self.update(|s| {
            s.peer_head = hello.head;
            s.peer_identity.clone_from(&committed.identity);
            s.error.clear();
            s.state = if committed.position >= hello.head {
                "live"
            } else {
                "catching-up"
            };
        });
        // Messages are read on their own task, so that a batch is whatever has
        // arrived while the previous one was appended.
        let (tx, mut rx) = tokio::sync::mpsc::channel(BATCH_MESSAGES);
        let _reader = AbortOnDrop(tokio::spawn(async move {
            loop {
                let next = stream.message().await;
                let done = !matches!(next, Ok(Some(_)));
                if tx.send(next).await.is_err() || done {
                    return;
                }
            }
        }));
        let mut position = committed.position;
        let mut peer_head = hello.head;
        let mut last_write = Instant::now();
        // The checkpoint of the last request submitted (`committed` once it is).
        let mut submitted = committed.clone();
        // The time of the peer's record at `position - 1` (0: unknown).
        let mut last_time = committed.last_time;
        loop {
            let step = tokio::select! {
                next = tokio::time::timeout(SILENCE, rx.recv()) => Step::Message(next),
                done = settle(pending), if pending.is_some() => Step::Committed(done),
                _ = stop.changed() => Step::Stop,
            };
            let first = match step {
                Step::Stop => return Ok(()),
                Step::Committed(done) => {
                    let taken = pending.take();
                    done.map_err(|e| {
                        Failure::new("connecting", format!("appending imported events: {e}"))
                    })?;
                    if let Some((_, checkpoint)) = taken {
                        committed = checkpoint;
                    }
                    self.update(|s| {
                        s.position = committed.position;
                        s.imported = committed.imported;
                    });
                    continue;
                }
                Step::Message(Err(_)) => {
                    return Err(Failure::new(
                        "connecting",
                        format!(
                            "no word from the peer for {} s (it sends a heartbeat every second): reconnecting",
                            SILENCE.as_secs()
                        ),
                    ));
                }
                Step::Message(Ok(None) | Ok(Some(Ok(None)))) => {
                    return Err(Failure::new(
                        "connecting",
                        "the peer ended the export stream",
                    ));
                }
                Step::Message(Ok(Some(Err(status)))) => return Err(self.refusal(&status)),
                Step::Message(Ok(Some(Ok(Some(message))))) => message,
            };
            let mut size = message_bytes(&first);
            let mut messages = vec![first];
            while messages.len() < BATCH_MESSAGES && size < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(Ok(Some(message))) => {
                        size += message_bytes(&message);
                        messages.push(message);
                    }
                    // An error or the end is seen by the next `recv`.
                    _ => break,
                }
            }
            let caught_up_hint = rx.is_empty();
            let batch = self.fold(messages, &mut position, &mut peer_head);
            if let Some(time) = batch.last_time {
                last_time = time;
            }
            let moved = position != submitted.position;
            let write = !batch.events.is_empty()
                || submitted.identity.is_empty() && !hello.log_identity.is_empty()
                || moved
                    && (batch.pause.is_some()
                        || caught_up_hint && position >= peer_head
                        || last_write.elapsed() >= QUIET_CHECKPOINT);
            if write {
                let next = Checkpoint {
                    peer: self.peer.clone(),
                    identity: hello.log_identity.clone(),
                    position,
                    imported: submitted.imported + batch.events.len() as u64,
                    last_time,
                    reset: None,
                };
                let mut events = batch.events;
                events.push(next.record());
                // Submitted now, so the writer syncs it while the next batch is folded;
                // kept in `pending` before the previous request is awaited, so that
                // whatever happens next it is settled before another session starts.
                // (A link's request carries no ids and no expected versions: it can only
                // fail when the log refuses every later request too, so requests in
                // flight never commit out of order with a failure between them.)
                let request: Pending = Box::pin(self.log.submit(events, Vec::new()));
                let previous = pending.replace((request, next.clone()));
                if let Some((previous, checkpoint)) = previous {
                    previous.await.map_err(|e| {
                        Failure::new("connecting", format!("appending imported events: {e}"))
                    })?;
                    committed = checkpoint;
                }
                submitted = next;
                last_write = Instant::now();
            }
            let live = position >= peer_head;
            self.update(|s| {
                s.position = committed.position;
                s.peer_head = peer_head;
                s.imported = committed.imported;
                s.peer_identity.clone_from(&submitted.identity);
                s.traps += batch.traps;
                if let Some(trap) = batch.last_trap {
                    s.last_trap = trap;
                }
                if moved || live {
                    s.last_progress = now_micros();
                    s.error.clear();
                }
                s.state = if live { "live" } else { "catching-up" };
            });
            if let Some(pause) = batch.pause {
                return Err(pause);
            }
        }
    }

    /// What a refusal of the peer means for the link.
    fn refusal(&self, status: &tonic::Status) -> Failure {
        match status.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                Failure::new("refused", status.message())
            }
            tonic::Code::Unimplemented => Failure::new(
                "refused",
                format!(
                    "`{}` runs a release without the export side of the mesh",
                    self.peer
                ),
            ),
            _ => Failure::new(
                "connecting",
                format!("{}: {}", status.code(), status.message()),
            ),
        }
    }

    /// The checks before anything is imported: the peer's log is the one the link
    /// followed, it is not behind the link, and the block agrees with its exports.
    fn check_hello(
        &self,
        hello: &pb::ExportHello,
        committed: &mut Checkpoint,
    ) -> Result<(), Failure> {
        let peer = &self.peer;
        if hello.node != *peer {
            return Err(Failure::new(
                "stopped",
                format!(
                    "the node at {} calls itself `{}`, not `{peer}`: check the address configured for `{peer}`",
                    self.address.as_deref().unwrap_or_default(),
                    hello.node
                ),
            ));
        }
        if !committed.identity.is_empty() && committed.identity != hello.log_identity {
            return Err(Failure::new(
                "stopped",
                format!(
                    "`{peer}` has a different log (identity {}) from the one this link imported from (identity {}): its data was replaced. Nothing is imported until an operator decides: `datamesh link reset {peer} --from POSITION` imports the new log from POSITION (0 for all of it)",
                    hello.log_identity, committed.identity
                ),
            ));
        }
        if hello.head < committed.position {
            return Err(Failure::new(
                "stopped",
                format!(
                    "`{peer}`'s log ends at position {}, but this link has imported up to position {}: the peer lost events it had exported (restored from an older copy, or repaired). Nothing is imported until an operator decides: `datamesh link reset {peer} --from POSITION`",
                    hello.head, committed.position
                ),
            ));
        }
        if committed.position > 0
            && committed.last_time != 0
            && hello.previous_time != committed.last_time
        {
            return Err(Failure::new(
                "stopped",
                format!(
                    "`{peer}`'s record at position {} is not the one this link read there (its time was {}, it is {}): the peer's log was restored from an older copy or repaired, and has grown again, so positions this link imported from now hold other events. Nothing is imported until an operator decides: `datamesh link reset {peer} --from POSITION`",
                    committed.position - 1,
                    committed.last_time,
                    hello.previous_time
                ),
            ));
        }
        let exported = hello
            .types
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    crate::mesh::Exported {
                        declaration: t.declaration.clone(),
                        defaulted: t.defaulted.clone(),
                    },
                )
            })
            .collect();
        let Some(block) = self.program.imports.get(self.block) else {
            return Err(Failure::new("stopped", "the import block is gone"));
        };
        let mismatches = crate::mesh::schema::check(block, &self.me, &exported);
        if !mismatches.is_empty() {
            let text: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
            return Err(Failure::new("stopped", text.join("\n")));
        }
        Ok(())
    }

    /// Runs a batch of peer messages through the block's rules, with the program's
    /// native code when the JIT compiled it (else the interpreter): the local events to
    /// append, and where the link stands after them.
    fn fold(
        &self,
        messages: Vec<pb::ExportMessage>,
        position: &mut u64,
        peer_head: &mut u64,
    ) -> Batch {
        let folded = self.engine.with_registry(|registry| {
            let same = registry
                .programs
                .get(self.index)
                .is_some_and(|p| Arc::ptr_eq(p, &self.program));
            let code = registry.jit(self.index).filter(|_| same);
            let interp = Fold::new(&self.program);
            let mut scratch = code.map(|_| JitScratch::new());
            let mut rules = |kind: usize, row: &[Value], meta: &Meta| match (code, scratch.as_mut())
            {
                (Some(code), Some(scratch)) => {
                    code.run_import(self.block, kind, row, meta, scratch)
                }
                _ => interp.run_import(self.block, kind, row, meta),
            };
            self.fold_with(messages, position, peer_head, &mut rules)
        });
        folded.unwrap_or_default()
    }

    fn fold_with(
        &self,
        messages: Vec<pb::ExportMessage>,
        position: &mut u64,
        peer_head: &mut u64,
        rules: &mut RunRules<'_>,
    ) -> Batch {
        let mut batch = Batch::default();
        let Some(block) = self.program.imports.get(self.block) else {
            return batch;
        };
        let mut row = Vec::new();
        // Events and heartbeats, in the order the peer sent them.
        let items = messages.into_iter().flat_map(|message| match message.kind {
            Some(pb::export_message::Kind::Events(batch)) => {
                batch.events.into_iter().map(Ok).collect()
            }
            Some(pb::export_message::Kind::Heartbeat(beat)) => vec![Err(beat)],
            _ => Vec::new(),
        });
        for item in items {
            let event = match item {
                Ok(event) => event,
                Err(beat) => {
                    *peer_head = (*peer_head).max(beat.head);
                    if beat.position >= *position && beat.previous_time != 0 {
                        batch.last_time = Some(beat.previous_time);
                    }
                    *position = (*position).max(beat.position);
                    continue;
                }
            };
            if event.position < *position {
                continue;
            }
            *peer_head = (*peer_head).max(event.position + 1);
            // An event that started here came back through other nodes: not again.
            let Some(kind) = block
                .event_id(&event.r#type)
                .filter(|_| !event.origin.iter().any(|n| n == &self.me))
            else {
                *position = event.position + 1;
                batch.last_time = Some(event.time);
                continue;
            };
            let declared = &block.events[kind];
            if let Err(e) = decode_payload_text(declared, &event.data, None, &mut row) {
                batch.pause = Some(Failure::new(
                    "paused",
                    format!(
                        "error[M0006]: the event at position {} of `{}` ({}{}) does not match `import {}`'s declaration of `{}`: {e}\n  help: deploy a program whose `import {}` block declares the event as the peer sends it, and the link resumes at position {}; if no block can (the peer accepted the event before it declared its type), skip it explicitly with `datamesh link reset {} --from {}` (kept in the log). The event is never skipped otherwise",
                        event.position,
                        self.peer,
                        event.r#type,
                        if event.id.is_empty() {
                            String::new()
                        } else {
                            format!(", id `{}`", event.id)
                        },
                        self.peer,
                        declared.name,
                        self.peer,
                        event.position,
                        self.peer,
                        event.position + 1
                    ),
                ));
                return batch;
            }
            let source = Meta {
                position: i64::try_from(event.position).unwrap_or(i64::MAX),
                time: event.time,
                stream: Arc::from(event.stream.as_str()),
                event_type: Arc::from(""),
                id: Arc::from(event.id.as_str()),
            };
            *position = event.position + 1;
            batch.last_time = Some(event.time);
            let emitted = match rules(kind, &row, &source) {
                Ok(emitted) => emitted,
                Err(fault) => {
                    batch.traps += 1;
                    batch.last_trap = Some(format!(
                        "position {}: {} {} (the event was not imported)",
                        event.position,
                        fault.trap.code(),
                        fault.trap
                    ));
                    continue;
                }
            };
            let count = emitted.len();
            let origin = event.origin.join(",");
            let mut out = Vec::with_capacity(count);
            let mut too_large = None;
            for (n, (local, values)) in emitted.into_iter().enumerate() {
                let Some(declared) = self.program.events.get(local) else {
                    continue;
                };
                let meta = imported_meta(&self.peer, &source, n, count);
                let payload = doc_to_json(&declared.fields, &values).to_string();
                if payload.len() > self.max_event_bytes {
                    too_large = Some(payload.len());
                    break;
                }
                out.push(NewEvent {
                    event_type: declared.name.clone(),
                    payload: payload.into_bytes(),
                    stream: meta.stream.to_string(),
                    id: meta.id.to_string(),
                    origin: origin.clone(),
                    time: Some(event.time),
                });
            }
            if let Some(size) = too_large {
                batch.traps += 1;
                batch.last_trap = Some(format!(
                    "position {}: R0007 an emitted event is {size} bytes, over this node's max_event_bytes ({}) (the event was not imported)",
                    event.position, self.max_event_bytes
                ));
                continue;
            }
            batch.events.append(&mut out);
        }
        batch
    }
}

/// An append of the link in flight.
type Pending = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<crate::log::Appended, crate::log::LogError>> + Send,
    >,
>;

/// What a session's wait ended with.
enum Step {
    /// A message from the peer (or its end, or silence).
    Message(
        Result<
            Option<Result<Option<pb::ExportMessage>, tonic::Status>>,
            tokio::time::error::Elapsed,
        >,
    ),
    /// The append in flight was settled.
    Committed(Result<crate::log::Appended, crate::log::LogError>),
    /// The link is asked to stop.
    Stop,
}

/// Waits for the append in flight (forever when there is none).
async fn settle(
    pending: &mut Option<(Pending, Checkpoint)>,
) -> Result<crate::log::Appended, crate::log::LogError> {
    match pending {
        Some((request, _)) => request.await,
        None => std::future::pending().await,
    }
}

/// Runs the block's rules on one peer event (type index, row, envelope).
type RunRules<'a> = dyn FnMut(usize, &[Value], &Meta) -> Result<Emitted, Fault> + 'a;

/// The local events rules emitted for one peer event: type index and row.
type Emitted = Vec<(usize, Vec<Value>)>;

/// About how many bytes a peer message holds.
fn message_bytes(message: &pb::ExportMessage) -> usize {
    match &message.kind {
        Some(pb::export_message::Kind::Events(batch)) => batch
            .events
            .iter()
            .map(|e| e.data.len() + e.id.len() + e.stream.len() + 64)
            .sum(),
        _ => 32,
    }
}

/// What a batch of peer messages became.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<NewEvent>,
    /// The time of the peer's record before the position the batch reached, when the
    /// batch moved it.
    last_time: Option<i64>,
    traps: u64,
    last_trap: Option<String>,
    /// The link pauses after this batch (at the event that did not decode).
    pause: Option<Failure>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
