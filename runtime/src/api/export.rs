//! The `Export` RPC: the export side of the mesh.
//!
//! A peer names itself and a position; the node answers with a hello (its name, its
//! log's identity and head, the event types exported to that peer with their
//! declarations), then every exported event from that position on, in log order (in
//! batches: the exported events of one read of the log per message), and
//! follows the log live. While nothing exported appears it sends heartbeats (the head,
//! and the position up to which everything has been considered), at least every
//! [`HEARTBEAT`] when idle and after every stretch of events none of which is
//! exported, so an importer can checkpoint past what it will never see and tell an
//! idle exporter from a stalled link.
//!
//! Invariants: an event of a type not exported to the peer is never sent (the check is
//! [`crate::mesh::exports_to`], the one place that decides); the set of types is fixed
//! for the life of a stream, and a deploy that changes it ends the stream (UNAVAILABLE),
//! so an importer never silently misses events of a type exported later.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::Status;

use super::{Service, pb, read_step};
use crate::engine::Engine;
use crate::mesh::{check_name, exports_to};

/// The longest an idle export stream stays silent.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The least time between two heartbeats while scanning past unexported events.
const SCAN_HEARTBEAT: Duration = Duration::from_millis(200);

/// Records read per step.
const STEP: usize = 512;

/// The stream of an `Export` call.
pub type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportMessage, Status>> + Send>>;

/// What the deployed programs export to `peer`, and the deploy count it was computed
/// at (programs are only ever added, so a change of the count is when to look again).
fn exported(engine: &Engine, peer: &str) -> (usize, BTreeMap<String, crate::mesh::Exported>) {
    engine
        .with_registry(|r| {
            (
                r.programs.len(),
                exports_to(r.programs.iter().map(AsRef::as_ref), peer),
            )
        })
        .unwrap_or_default()
}

fn message(kind: pb::export_message::Kind) -> Result<pb::ExportMessage, Status> {
    Ok(pb::ExportMessage { kind: Some(kind) })
}

impl Service {
    /// Whether the caller may read what is exported to `peer`: a client certificate
    /// naming a node reads as that node only, whatever its token; a token reads as the
    /// peer it was made for (or anything, for an admin); with neither, only a node
    /// that does not verify client certificates serves the stream (local development).
    fn may_export(
        &self,
        peer: &str,
        principal: Option<&crate::auth::Principal>,
        certified: Option<&str>,
    ) -> Result<(), Status> {
        if let Some(name) = certified {
            if name == peer {
                return Ok(());
            }
            return Err(Status::permission_denied(format!(
                "the client certificate names node `{name}`: it may read what is exported to `{name}`, not to `{peer}`"
            )));
        }
        if let Some(principal) = principal {
            if principal.may_export_to(peer) {
                return Ok(());
            }
            return Err(Status::permission_denied(format!(
                "token `{}` has role {}: it may not read what is exported to `{peer}`",
                principal.id, principal.role
            )));
        }
        if self.peer_certs {
            return Err(Status::unauthenticated(format!(
                "node `{}` serves its exports only to peers that prove their name: connect with a certificate signed by its CA naming `datamesh://{peer}` (or a `peer:{peer}` token)",
                self.mesh.name
            )));
        }
        Ok(())
    }

    /// Starts an export stream (see the module documentation).
    pub(super) fn export_stream(
        &self,
        request: pb::ExportRequest,
        principal: Option<&crate::auth::Principal>,
        certified: Option<&str>,
    ) -> Result<ExportStream, Status> {
        let peer = request.peer;
        // (The message quotes the name only when it is short.)
        check_name(&peer).map_err(|e| Status::invalid_argument(format!("`peer`: {e}")))?;
        self.may_export(&peer, principal, certified)?;
        let (mut generation, types) = exported(&self.engine, &peer);
        let node = self.mesh.name.clone();
        if types.is_empty() {
            return Err(Status::permission_denied(format!(
                "node `{node}` exports nothing to `{peer}`: a program deployed here must say `export to {peer} {{ ... }}`"
            )));
        }
        let log = self.log.clone();
        let engine = self.engine.clone();
        let budget = self.limits.max_bytes;
        let mut position = request.from_position;
        // The time of the record before `position`: what lets an importer tell this
        // log from an older copy of it that has grown past its position again.
        let mut previous_time = position
            .checked_sub(1)
            .and_then(|p| log.read(p, 1).ok())
            .and_then(|r| r.first().map(|r| r.time))
            .unwrap_or(0);
        let hello = pb::ExportHello {
            node: node.clone(),
            log_identity: format!("{:032x}", log.identity()),
            head: log.head(),
            types: types
                .iter()
                .map(|(name, exported)| pb::ExportedType {
                    name: name.clone(),
                    declaration: exported.declaration.clone(),
                    defaulted: exported.defaulted.clone(),
                })
                .collect(),
            previous_time,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let mut closing = self.closing();
        tokio::spawn(async move {
            if tx
                .send(message(pb::export_message::Kind::Hello(hello)))
                .await
                .is_err()
            {
                return;
            }
            let heartbeat = |head: u64, position: u64, previous_time: i64| {
                message(pb::export_message::Kind::Heartbeat(pb::ExportHeartbeat {
                    head,
                    position,
                    previous_time,
                }))
            };
            let mut head_changes = log.watch_head();
            let mut last_beat = tokio::time::Instant::now();
            loop {
                let closed = *closing.borrow();
                if closed {
                    let _ = tx.send(Err(super::shutting_down())).await;
                    return;
                }
                // A deploy may have changed what this peer may read: end the stream
                // if it did (the importer reconnects and sees the new set).
                let deployed = engine.with_registry(|r| r.programs.len()).unwrap_or(0);
                if deployed != generation {
                    let (now, current) = exported(&engine, &peer);
                    if current != types {
                        let _ = tx
                            .send(Err(Status::unavailable(format!(
                                "what node `{node}` exports to `{peer}` changed: reconnect to read the new set"
                            ))))
                            .await;
                        return;
                    }
                    generation = now;
                }
                let head = log.head();
                if position >= head {
                    tokio::select! {
                        changed = head_changes.changed() => if changed.is_err() { return },
                        () = tokio::time::sleep(HEARTBEAT) => {
                            if tx.send(heartbeat(log.head(), position, previous_time)).await.is_err() {
                                return;
                            }
                            last_beat = tokio::time::Instant::now();
                        }
                        () = tx.closed() => return,
                        changed = closing.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
                let batch = match read_step(&log, position, STEP, budget).await {
                    Ok(batch) => batch,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    continue;
                }
                let mut events = Vec::new();
                for record in batch {
                    position = record.position + 1;
                    previous_time = record.time;
                    if !types.contains_key(&record.event_type) {
                        continue;
                    }
                    // The chain it came through, then this node. An event that came
                    // from the peer itself is not sent back (the importer would drop
                    // it anyway: it never imports what started there).
                    let mut origin = super::origin_chain(&record.origin);
                    if origin.iter().any(|n| n == &peer) {
                        continue;
                    }
                    origin.push(node.clone());
                    let Ok(data) = String::from_utf8(record.payload) else {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "the payload at position {} is not UTF-8",
                                record.position
                            ))))
                            .await;
                        return;
                    };
                    events.push(pb::ExportedEvent {
                        position: record.position,
                        r#type: record.event_type,
                        stream: record.stream,
                        id: record.id,
                        time: record.time,
                        data,
                        origin,
                    });
                }
                // One message per read of the log: a message per event cost the
                // exporter a channel hand-off and an HTTP/2 frame each (W8: a sixth of
                // its time in context switches).
                let sent = !events.is_empty();
                if sent {
                    let batch = pb::ExportedEvents { events };
                    if tx
                        .send(message(pb::export_message::Kind::Events(batch)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if sent {
                    last_beat = tokio::time::Instant::now();
                } else if last_beat.elapsed() >= SCAN_HEARTBEAT || position >= log.head() {
                    if tx
                        .send(heartbeat(log.head(), position, previous_time))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    last_beat = tokio::time::Instant::now();
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
