//! What both engines share to run a program, and neither owns: an event's envelope
//! ([`Meta`]), traps and faults, default documents, the metadata of imported events,
//! the builtin dispatch ([`builtin`]), the two interfaces the engines implement
//! ([`engine::FoldEngine`] in memory, [`fold::TableFold`] into a node's tables), the
//! document table they fold into ([`table`]), the stored encoding of keys and
//! documents ([`storage`]) and JSON at the edges ([`codec`]).
//!
//! Invariant: nothing here depends on an engine; the interpreter ([`crate::interp`])
//! and the JIT ([`crate::codegen`]) depend on this module and never on each other.

use std::collections::BTreeMap;
use std::sync::Arc;

use datamesh_stdlib::Value;

use crate::ast::Span;
use crate::ir::Projection;

pub mod builtin;
pub mod codec;
pub mod engine;
pub mod fold;
pub mod storage;
pub mod table;

/// The envelope of an event, readable as `meta.*`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// Log position.
    pub position: i64,
    /// Append time, µs since the epoch.
    pub time: i64,
    /// Stream, "" when none.
    pub stream: Arc<str>,
    /// Event type name.
    pub event_type: Arc<str>,
    /// Client-supplied id, "" when none.
    pub id: Arc<str>,
}

/// Why a projection stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Index of the projection in the program (or of the import, for import faults).
    pub projection: usize,
    /// Position of the event that trapped.
    pub position: i64,
    /// Name of that event's type.
    pub event_type: String,
    /// The trap.
    pub trap: Trap,
    /// The handler (or import rule) that trapped.
    pub handler: Span,
}

/// The documents of one projection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectionState {
    /// Documents by key; a single-document projection uses the empty key.
    pub docs: BTreeMap<Vec<Value>, Vec<Value>>,
    /// Set once a handler trapped; the projection then stays at that position.
    pub fault: Option<Fault>,
}

/// The code of [`datamesh_stdlib::Trap::LimitExceeded`]: a string, collection or
/// document would grow past its limit (see [`datamesh_stdlib::limits`] and
/// [`crate::exec::storage::MAX_DOC_BYTES`]).
pub const LIMIT_CODE: crate::codes::Code = crate::codes::R0007;

/// A runtime trap at a place in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Trap {
    /// What went wrong.
    pub kind: datamesh_stdlib::Trap,
    /// The expression or statement that trapped.
    pub span: Span,
}

impl std::fmt::Display for Trap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl Trap {
    /// The stable diagnostic code of this kind of trap.
    pub fn code(&self) -> crate::codes::Code {
        use crate::codes;
        match self.kind {
            datamesh_stdlib::Trap::Overflow(_) => codes::R0001,
            datamesh_stdlib::Trap::DivisionByZero => codes::R0002,
            datamesh_stdlib::Trap::InvalidConversion(_) => codes::R0003,
            datamesh_stdlib::Trap::OutOfRange(_) => codes::R0004,
            datamesh_stdlib::Trap::NonFinite(_) => codes::R0005,
            datamesh_stdlib::Trap::LimitExceeded(_) => LIMIT_CODE,
        }
    }
}

/// A fresh document: every state field at its default.
pub fn default_doc(projection: &Projection) -> Vec<Value> {
    projection
        .state
        .iter()
        .map(|f| f.default.clone().unwrap_or_else(|| f.ty.zero_value()))
        .collect()
}

/// The envelope of the `n`th of `count` local events an import rule emitted for a peer's
/// event: the peer event's time and stream, and an id derived from the peer and the
/// peer event's id (or position), so re-importing the same event yields the same ids.
pub fn imported_meta(peer: &str, source: &Meta, n: usize, count: usize) -> Meta {
    let origin = if source.id.is_empty() {
        source.position.to_string()
    } else {
        source.id.to_string()
    };
    let id = if count > 1 {
        format!("{peer}/{origin}/{n}")
    } else {
        format!("{peer}/{origin}")
    };
    Meta {
        position: 0,
        time: source.time,
        stream: source.stream.clone(),
        event_type: Arc::from(""),
        id: Arc::from(id),
    }
}
