//! Reading event lines (`.jsonl`) for `dmc run`: one JSON object per line with the
//! event's `type`, `data`, and optional `stream`, `id`, `time` and `from`.
//!
//! Invariant: a line is accepted only if its envelope and payload match the program's
//! declarations exactly; the error names the offending key or field.

use std::sync::Arc;

use datamesh_compiler::exec::Meta;
use datamesh_compiler::exec::codec::decode_payload;
use datamesh_compiler::ir::Program;
use datamesh_stdlib::{Value, time};
use serde_json::Value as Json;

/// Options of `dmc run`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Skip events of undeclared types instead of failing.
    pub allow_unknown: bool,
}

/// A decoded event line.
#[derive(Debug, Clone, PartialEq)]
pub enum EventLine {
    /// A local event.
    Local {
        /// Event type.
        event: usize,
        /// Decoded payload.
        row: Vec<Value>,
        /// Envelope (position assigned when folded).
        meta: Meta,
    },
    /// An event from a peer, for the import rules.
    Import {
        /// Import block.
        import: usize,
        /// The peer's event type.
        event: usize,
        /// Decoded payload.
        row: Vec<Value>,
        /// Envelope.
        meta: Meta,
    },
}

const KEYS: &[&str] = &["type", "data", "stream", "id", "time", "from"];

/// Parses one line. `Ok(None)` for an undeclared type skipped by `allow_unknown`.
///
/// # Errors
/// A message naming the key or field at fault.
pub fn parse_event_line(
    program: &Program,
    line: &str,
    options: RunOptions,
) -> Result<Option<EventLine>, String> {
    let json: Json = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Json::Object(object) = json else {
        return Err(
            "each line must be a JSON object like {\"type\": \"...\", \"data\": {...}}".to_owned(),
        );
    };
    if let Some(key) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{key}` (allowed: {})",
            KEYS.join(", ")
        ));
    }
    let text = |key: &str| -> Result<Option<&str>, String> {
        match object.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("`{key}` must be a string, found {other}")),
        }
    };
    let type_name = text("type")?.ok_or("missing `type`")?;
    let time = match object.get("time") {
        None | Some(Json::Null) => 0,
        Some(Json::String(s)) => time::parse_rfc3339(s).map_err(|e| format!("`time`: {e}"))?,
        Some(Json::Number(n)) => n
            .as_i64()
            .ok_or("`time` must be RFC 3339 or integer microseconds")?,
        Some(other) => return Err(format!("`time` must be an RFC 3339 string, found {other}")),
    };
    let meta = Meta {
        position: 0,
        time,
        stream: Arc::from(text("stream")?.unwrap_or("")),
        event_type: Arc::from(type_name),
        id: Arc::from(text("id")?.unwrap_or("")),
    };
    let empty = Json::Object(serde_json::Map::new());
    let data = object.get("data").unwrap_or(&empty);
    match text("from")? {
        None => {
            let Some(event) = program.event_id(type_name) else {
                if options.allow_unknown {
                    return Ok(None);
                }
                let known: Vec<&str> = program.events.iter().map(|e| e.name.as_str()).collect();
                return Err(format!(
                    "unknown event type `{type_name}` (declared: {}); pass --allow-unknown to skip such events",
                    known.join(", ")
                ));
            };
            let row = decode_payload(&program.events[event], data)
                .map_err(|e| format!("`{type_name}`: {e}"))?;
            Ok(Some(EventLine::Local { event, row, meta }))
        }
        Some(peer) => {
            let Some(import) = program.imports.iter().position(|i| i.peer == peer) else {
                return Err(format!(
                    "no `import {peer}` block in the program for this event"
                ));
            };
            let block = &program.imports[import];
            let Some(event) = block.event_id(type_name) else {
                if options.allow_unknown {
                    return Ok(None);
                }
                return Err(format!(
                    "`import {peer}` does not declare event type `{type_name}`"
                ));
            };
            let row = decode_payload(&block.events[event], data)
                .map_err(|e| format!("`{type_name}` from `{peer}`: {e}"))?;
            Ok(Some(EventLine::Import {
                import,
                event,
                row,
                meta,
            }))
        }
    }
}
