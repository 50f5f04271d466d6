//! A link's position, kept in the importer's own log.
//!
//! Each batch a link imports is one append: the local events its rules emitted, then
//! one `$link` record saying how far into the peer's log the batch reaches (the peer's
//! log identity, the next peer position to read, the count of local events the link
//! has appended). The log commits a request as one group, and a group is all in the
//! log or none of it (see `log/format.rs`), so after a crash the last `$link` record
//! says exactly which peer events were imported: no event twice, none lost, whatever
//! moment the crash hit. There is no separate checkpoint to drift from the data, and
//! no dedup window.
//!
//! `$link` records go to the stream `$link/PEER`, so the link's last record is found
//! through the stream index without a scan. Names starting with `$` are reserved for
//! the node's own records: an append may not use them, programs cannot declare them,
//! and reads, subscriptions and exports skip them (a read of a `$` stream by name
//! shows them: the history of a link, resets included).

use serde::{Deserialize, Serialize};

use crate::log::{Log, LogError, NewEvent};

/// The type of a link's position record.
pub const LINK_TYPE: &str = "$link";

/// Whether an event type or stream name is reserved for the node's own records.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with('$')
}

/// The stream of a link's position records.
pub fn link_stream(peer: &str) -> String {
    format!("$link/{peer}")
}

/// Where a link stands: what its last `$link` record says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The peer.
    pub peer: String,
    /// The peer's log identity (32 hex digits), "" when not known yet (a new link, or
    /// one reset to accept whatever log the peer has).
    pub identity: String,
    /// The next peer position to import: every position before it is done.
    pub position: u64,
    /// Local events the link has appended, in total.
    pub imported: u64,
    /// The time (µs) of the peer's record at `position - 1`, as the link saw it; 0
    /// when unknown (a new link, a reset). A peer that answers with another time there
    /// is not the log the link read (restored from an older copy, then grown again).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_time: i64,
    /// Set on the record a `datamesh link reset` wrote: who asked and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<String>,
}

fn is_zero(time: &i64) -> bool {
    *time == 0
}

impl Checkpoint {
    /// The record that commits this checkpoint (appended after the batch's events, in
    /// the same request).
    pub fn record(&self) -> NewEvent {
        let payload = serde_json::to_vec(self).unwrap_or_default();
        NewEvent::local(LINK_TYPE, payload, link_stream(&self.peer), "")
    }
}

/// The last checkpoint of the link to `peer`, `None` when it never imported.
///
/// # Errors
/// Log read errors; a record that does not parse (damage) is an I/O error naming it.
pub fn last(log: &Log, peer: &str) -> Result<Option<Checkpoint>, LogError> {
    let stream = link_stream(peer);
    let Some(version) = log.stream_version(&stream) else {
        return Ok(None);
    };
    let Some(record) = log.read_stream(&stream, version, 1)?.pop() else {
        return Ok(None);
    };
    serde_json::from_slice(&record.payload)
        .map(Some)
        .map_err(|e| {
            LogError::Io(format!(
                "the link record at position {} does not parse: {e}",
                record.position
            ))
        })
}
