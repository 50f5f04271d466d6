//! Protobuf conversion: what the log, the engine and the token file hold, as the API
//! shows it.

use super::pb;
use crate::log::Record;

/// A token as the API shows it (never its secret).
pub(super) fn token_info(record: &crate::auth::TokenRecord) -> pb::TokenInfo {
    pb::TokenInfo {
        id: record.id.clone(),
        name: record.name.clone(),
        role: record.role.clone(),
        scope: record.scope.clone(),
        created: datamesh_stdlib::time::format_rfc3339(record.created),
        revoked: record
            .revoked
            .map(datamesh_stdlib::time::format_rfc3339)
            .unwrap_or_default(),
    }
}

/// An event record as the API shows it.
pub fn record_to_pb(record: Record) -> pb::EventRecord {
    pb::EventRecord {
        position: record.position,
        r#type: record.event_type,
        data: String::from_utf8(record.payload).unwrap_or_default(),
        stream: record.stream,
        stream_version: record.stream_version,
        id: record.id,
        time: datamesh_stdlib::time::format_rfc3339(record.time),
        origin: origin_chain(&record.origin),
    }
}

/// A record's origin chain as a list ("" is a local event: empty).
pub fn origin_chain(origin: &str) -> Vec<String> {
    if origin.is_empty() {
        Vec::new()
    } else {
        origin.split(',').map(str::to_owned).collect()
    }
}

pub(super) fn state_name(p: &crate::engine::ProjectionInfo, head: u64) -> &'static str {
    if p.fault.is_some() {
        "faulted"
    } else if p.position >= head {
        "running"
    } else {
        "catching-up"
    }
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
