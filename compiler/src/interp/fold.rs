//! Folding events into projection documents, all projections of a program at once.
//!
//! Invariants: for one event and one projection, every matching handler runs in source
//! order against a working copy of the touched documents; the copy is committed only if
//! all of them succeed (a trap changes nothing and faults that projection at that event).
//! A faulted projection ignores later events; other projections go on.

use std::collections::BTreeMap;
use std::sync::Arc;

use datamesh_stdlib::Value;

use super::Trap;
use super::eval::{Flow, Frame, eval, exec_block};
use crate::ast::Span;
use crate::ir::{EventId, Handler, Program, Projection};

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

/// A program folding events: the reference implementation of a node's projection engine.
#[derive(Debug)]
pub struct Fold<'p> {
    program: &'p Program,
    /// One state per projection, in program order.
    pub projections: Vec<ProjectionState>,
    next_position: i64,
}

/// Documents touched by one event in one projection: `None` marks a deleted document.
pub type Overlay = BTreeMap<Vec<Value>, Option<Vec<Value>>>;

impl<'p> Fold<'p> {
    /// Starts with empty projections.
    pub fn new(program: &'p Program) -> Fold<'p> {
        Fold {
            program,
            projections: vec![ProjectionState::default(); program.projections.len()],
            next_position: 0,
        }
    }

    /// The program being folded.
    pub fn program(&self) -> &'p Program {
        self.program
    }

    /// The position the next event will get.
    pub fn next_position(&self) -> i64 {
        self.next_position
    }

    /// Appends a local event: assigns it the next position and applies it to every
    /// projection. Returns the faults it caused.
    pub fn apply_local(&mut self, event: EventId, row: &[Value], mut meta: Meta) -> Vec<Fault> {
        meta.position = self.next_position;
        self.next_position += 1;
        if let Some(decl) = self.program.events.get(event) {
            meta.event_type = Arc::from(decl.name.as_str());
        }
        let mut faults = Vec::new();
        for (index, projection) in self.program.projections.iter().enumerate() {
            let state = &mut self.projections[index];
            if state.fault.is_some() {
                continue;
            }
            if let Err((trap, handler)) = apply_to_projection(projection, state, event, row, &meta)
            {
                let fault = Fault {
                    projection: index,
                    position: meta.position,
                    event_type: meta.event_type.to_string(),
                    trap,
                    handler,
                };
                state.fault = Some(fault.clone());
                faults.push(fault);
            }
        }
        faults
    }

    /// Runs import rules without applying their output: the local events they emit.
    ///
    /// # Errors
    /// A [`Fault`] when a rule trapped.
    pub fn run_import(
        &self,
        import: usize,
        event: usize,
        row: &[Value],
        meta: &Meta,
    ) -> Result<Vec<(EventId, Vec<Value>)>, Fault> {
        let Some(block) = self.program.imports.get(import) else {
            return Ok(Vec::new());
        };
        let mut meta = meta.clone();
        if let Some(decl) = block.events.get(event) {
            meta.event_type = Arc::from(decl.name.as_str());
        }
        let mut out = Vec::new();
        for rule in block.rules.iter().filter(|r| r.event == event) {
            let mut frame = Frame::new(Some(row), Some(&meta), &[], rule.locals.len());
            let fault = |trap: Trap| Fault {
                projection: import,
                position: meta.position,
                event_type: meta.event_type.to_string(),
                trap,
                handler: rule.span,
            };
            if let Some(guard) = &rule.guard
                && !matches!(
                    eval(guard, &mut frame, None).map_err(fault)?,
                    Value::Bool(true)
                )
            {
                continue;
            }
            exec_block(&rule.body, &mut frame, &mut None).map_err(fault)?;
            out.append(&mut frame.emitted);
        }
        Ok(out)
    }

    /// The document of a projection at a key, as stored (without defaults for missing
    /// single documents).
    pub fn doc(&self, projection: usize, key: &[Value]) -> Option<&Vec<Value>> {
        self.projections.get(projection)?.docs.get(key)
    }
}

/// Applies one event to one projection atomically.
fn apply_to_projection(
    projection: &Projection,
    state: &mut ProjectionState,
    event: EventId,
    row: &[Value],
    meta: &Meta,
) -> Result<(), (Trap, Span)> {
    let overlay = apply_event(projection, event, row, meta, &mut |key| {
        state.docs.get(key).cloned()
    })?;
    for (key, doc) in overlay {
        match doc {
            Some(doc) => {
                state.docs.insert(key, doc);
            }
            None => {
                state.docs.remove(&key);
            }
        }
    }
    Ok(())
}

/// Applies one event to one projection whose documents live elsewhere (a store):
/// `load` fetches a document by key. Returns every touched document (`None` when it
/// was deleted), to be committed together; on a trap, nothing is to be committed and
/// the error carries the trap and the span of the handler that raised it.
///
/// # Errors
/// The trap and the handler's span.
pub fn apply_event(
    projection: &Projection,
    event: EventId,
    row: &[Value],
    meta: &Meta,
    load: &mut dyn FnMut(&[Value]) -> Option<Vec<Value>>,
) -> Result<Overlay, (Trap, Span)> {
    let mut overlay: Overlay = BTreeMap::new();
    for handler in projection.handlers.iter().filter(|h| h.event == event) {
        run_handler(projection, handler, load, &mut overlay, row, meta)
            .map_err(|t| (t, handler.span))?;
    }
    Ok(overlay)
}

fn run_handler(
    projection: &Projection,
    handler: &Handler,
    load: &mut dyn FnMut(&[Value]) -> Option<Vec<Value>>,
    overlay: &mut Overlay,
    row: &[Value],
    meta: &Meta,
) -> Result<(), Trap> {
    let mut frame = Frame::new(
        Some(row),
        Some(meta),
        &projection.state,
        handler.locals.len(),
    );
    let key = handler
        .key
        .iter()
        .map(|k| eval(k, &mut frame, None))
        .collect::<Result<Vec<_>, _>>()?;
    let current = match overlay.get(&key) {
        Some(doc) => doc.clone(),
        None => load(&key),
    };
    let mut doc = current.unwrap_or_else(|| default_doc(projection));
    if let Some(guard) = &handler.guard
        && !matches!(eval(guard, &mut frame, Some(&doc))?, Value::Bool(true))
    {
        return Ok(());
    }
    let flow = exec_block(&handler.body, &mut frame, &mut Some(&mut doc))?;
    overlay.insert(key, (flow == Flow::Normal).then_some(doc));
    Ok(())
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
