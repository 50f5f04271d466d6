//! Folding events into projection documents, all projections of a program at once.
//!
//! Invariants: for one event and one projection, every matching handler runs in source
//! order against a working copy of the touched documents; the copy is committed only if
//! all of them succeed (a trap changes nothing and faults that projection at that event).
//! A faulted projection ignores later events; other projections go on.

use std::collections::BTreeMap;
use std::sync::Arc;

use datamesh_stdlib::Value;
use smallvec::SmallVec;

use super::eval::{Flow, Frame, Undo, eval, exec_block, roll_back};
use crate::ast::Span;
use crate::exec::engine::FoldEngine;
use crate::exec::{Fault, Meta, ProjectionState, Trap, default_doc};
use crate::ir::{EventId, Handler, Program, Projection};

/// A program folding events: the reference implementation of a node's projection engine.
#[derive(Debug)]
pub struct Fold<'p> {
    program: &'p Program,
    /// One state per projection, in program order.
    pub projections: Vec<ProjectionState>,
    next_position: i64,
}

impl FoldEngine for Fold<'_> {
    fn program(&self) -> &Program {
        Fold::program(self)
    }

    fn apply_local(&mut self, event: EventId, row: &[Value], meta: &Meta) -> Vec<Fault> {
        Fold::apply_local(self, event, row, meta.clone())
    }

    fn run_import(
        &mut self,
        import: usize,
        event: usize,
        row: &[Value],
        meta: &Meta,
    ) -> Result<Vec<(EventId, Vec<Value>)>, Fault> {
        Fold::run_import(self, import, event, row, meta)
    }

    fn next_position(&self) -> i64 {
        Fold::next_position(self)
    }

    fn snapshot(&self) -> Vec<ProjectionState> {
        self.projections.clone()
    }
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
    let docs = &mut state.docs;
    let (touched, result) =
        apply_event_in_place(projection, event, row, meta, &mut |key| docs.remove(key));
    // Committed or rolled back, the documents go back where they were taken from.
    for taken in touched {
        if let Some(doc) = taken.doc {
            docs.insert(taken.key, doc);
        }
    }
    result
}

/// A document an event touched in one projection (see [`apply_event_in_place`]).
#[derive(Debug)]
pub struct Taken {
    /// Its key.
    pub key: Vec<Value>,
    /// The document to put back (`None`: there is none).
    pub doc: Option<Vec<Value>>,
    /// Whether a handler body ran on it (the documents [`apply_event`] returns): its
    /// stored form may differ, so it is to be written. Never set after a trap.
    pub changed: bool,
}

/// The documents an event took, in the order it first touched them.
pub type TakenDocs = SmallVec<[Taken; 2]>;

/// Moves a document out of its store by key (`None`: there is none).
pub type Take<'a> = dyn FnMut(&[Value]) -> Option<Vec<Value>> + 'a;

/// What one handler did to one taken document, to undo it.
enum Change {
    /// The document did not exist.
    Created,
    /// The document was deleted.
    Deleted(Vec<Value>),
    /// These entries of the event's undo log are changes to its fields.
    Fields(std::ops::Range<usize>),
}

/// What each handler of an event did, by taken document (its index).
type Changes = SmallVec<[(usize, Change); 2]>;

/// [`apply_event`] without copying documents: `take` moves each document the event
/// touches out of its store (`None`: there is none), the handlers change it in place
/// and record how to undo each change, and the documents come back to be put where
/// they were: as the event left them (`None`: deleted or never created), or, on a
/// trap, exactly as they were taken. So an event costs what its handlers change, not
/// the size of the documents' collections.
///
/// # Errors
/// The trap and the handler's span; the documents returned are then as taken.
pub fn apply_event_in_place(
    projection: &Projection,
    event: EventId,
    row: &[Value],
    meta: &Meta,
    take: &mut Take<'_>,
) -> (TakenDocs, Result<(), (Trap, Span)>) {
    let mut taken = TakenDocs::new();
    // What each handler did, by taken document, and the field changes they logged.
    let mut changes = Changes::new();
    let mut log: Vec<Undo> = Vec::new();
    for handler in projection.handlers.iter().filter(|h| h.event == event) {
        let ran = run_handler_in_place(
            projection,
            handler,
            (take, &mut taken),
            (&mut changes, &mut log),
            (row, meta),
        );
        if let Err(trap) = ran {
            for (i, change) in changes.into_iter().rev() {
                let Some(slot) = taken.get_mut(i).map(|t| &mut t.doc) else {
                    continue;
                };
                match change {
                    Change::Created => *slot = None,
                    Change::Deleted(doc) => *slot = Some(doc),
                    Change::Fields(range) => {
                        if let Some(doc) = slot {
                            roll_back(doc, log.drain(range));
                        }
                    }
                }
            }
            return (taken, Err((trap, handler.span)));
        }
    }
    for (i, _) in changes {
        if let Some(t) = taken.get_mut(i) {
            t.changed = true;
        }
    }
    (taken, Ok(()))
}

fn run_handler_in_place(
    projection: &Projection,
    handler: &Handler,
    (take, taken): (&mut Take<'_>, &mut TakenDocs),
    (changes, log): (&mut Changes, &mut Vec<Undo>),
    (row, meta): (&[Value], &Meta),
) -> Result<(), Trap> {
    let (mut frame, key) = frame_and_key(projection, handler, row, meta)?;
    let i = match taken.iter().position(|t| t.key == key) {
        Some(i) => i,
        None => {
            let doc = take(&key);
            taken.push(Taken {
                key,
                doc,
                changed: false,
            });
            taken.len() - 1
        }
    };
    let Some(slot) = taken.get_mut(i).map(|t| &mut t.doc) else {
        return Ok(());
    };
    match slot {
        None => {
            // A new document runs on its own until it is known to be kept.
            let mut doc = default_doc(projection);
            if let Some(guard) = &handler.guard
                && !matches!(eval(guard, &mut frame, Some(&doc))?, Value::Bool(true))
            {
                return Ok(());
            }
            if exec_block(&handler.body, &mut frame, &mut Some(&mut doc))? == Flow::Normal {
                *slot = Some(doc);
                changes.push((i, Change::Created));
            }
        }
        Some(doc) => {
            if let Some(guard) = &handler.guard
                && !matches!(eval(guard, &mut frame, Some(&*doc))?, Value::Bool(true))
            {
                return Ok(());
            }
            // The handler logs into the event's log, so its changes are undone with the
            // others' if it or a later handler traps.
            frame.undo = std::mem::take(log);
            let start = frame.undo.len();
            let flow = exec_block(&handler.body, &mut frame, &mut Some(doc));
            *log = std::mem::take(&mut frame.undo);
            changes.push((i, Change::Fields(start..log.len())));
            if flow? == Flow::Delete
                && let Some(old) = slot.take()
            {
                changes.push((i, Change::Deleted(old)));
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
    let (mut frame, key) = frame_and_key(projection, handler, row, meta)?;
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

/// The frame a handler runs in for an event, and the key of the document it changes.
fn frame_and_key<'a>(
    projection: &'a Projection,
    handler: &Handler,
    row: &'a [Value],
    meta: &'a Meta,
) -> Result<(Frame<'a>, Vec<Value>), Trap> {
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
    Ok((frame, key))
}
