//! [`Fault`]: why a projection stopped, as the engine records it. The engine builds it
//! as a value; it becomes JSON only where it is stored (the `fault/<label>` entry of
//! the `meta` keyspace) and text only where it is shown (status, errors, the admin
//! page), through [`Fault`]'s `Display`.
//!
//! The stored JSON keeps the shape earlier releases wrote (`position`, `event_type`,
//! `code`, `message`, and `span` and `handler` as `[start, end]` byte ranges when a
//! handler trapped), so a store written before the type existed reads the same.
//! Invariant: a stored fault that does not parse still reads as a fault (its text is
//! the message), so a damaged entry never makes a faulted projection look healthy.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a projection stopped, at which event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The log position of the event it stopped at.
    pub position: u64,
    /// That event's type ("" when the fault is not about one event).
    pub event_type: String,
    /// The diagnostic code (`R0002`, `L0001`, ...).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The source span of the expression that trapped, as a byte range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<[u32; 2]>,
    /// The source span of the handler (or import rule) that trapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<[u32; 2]>,
}

impl Fault {
    /// A fault at `position` that no source span explains.
    pub fn new(
        position: u64,
        event_type: &str,
        code: datamesh_compiler::codes::Code,
        message: impl Into<String>,
    ) -> Fault {
        Fault {
            position,
            event_type: event_type.to_owned(),
            code: code.id.to_owned(),
            message: message.into(),
            span: None,
            handler: None,
        }
    }

    /// The fault of a handler that trapped at the event at `position`.
    pub fn trap(
        position: u64,
        event_type: &str,
        trap: &datamesh_compiler::exec::Trap,
        handler: datamesh_compiler::ast::Span,
    ) -> Fault {
        Fault {
            span: Some([trap.span.start, trap.span.end]),
            handler: Some([handler.start, handler.end]),
            ..Fault::new(position, event_type, trap.code(), trap.to_string())
        }
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored fault; one that does not parse keeps its text as the message.
    pub fn from_stored(bytes: &[u8]) -> Fault {
        serde_json::from_slice(bytes).unwrap_or_else(|_| Fault {
            position: 0,
            event_type: String::new(),
            code: String::from("?"),
            message: String::from_utf8_lossy(bytes).into_owned(),
            span: None,
            handler: None,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at position {} ({})",
            self.code, self.message, self.position, self.event_type
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_shape_is_the_one_earlier_releases_wrote() {
        let old = r#"{"position":7,"event_type":"Deposit","code":"R0002","message":"division by zero","span":[10,15],"handler":[3,40]}"#;
        let fault = Fault::from_stored(old.as_bytes());
        assert_eq!(fault.position, 7);
        assert_eq!(fault.span, Some([10, 15]));
        assert_eq!(fault.handler, Some([3, 40]));
        assert_eq!(
            fault.to_string(),
            "R0002 division by zero at position 7 (Deposit)"
        );
        let again: serde_json::Value = serde_json::from_str(&fault.to_json()).unwrap_or_default();
        let old: serde_json::Value = serde_json::from_str(old).unwrap_or_default();
        assert_eq!(again, old);
        let no_span = Fault::new(3, "", datamesh_compiler::codes::L0001, "unreadable");
        assert!(!no_span.to_json().contains("span"));
        assert_eq!(Fault::from_stored(no_span.to_json().as_bytes()), no_span);
    }

    #[test]
    fn a_damaged_entry_still_reads_as_a_fault() {
        let fault = Fault::from_stored(b"{not json");
        assert_eq!(fault.message, "{not json");
        assert_eq!(fault.code, "?");
    }
}
