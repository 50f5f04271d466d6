//! Applying one event to one projection whose documents live outside the JIT (the
//! node's store): the compiled counterpart of [`crate::interp::apply_event`], with the
//! same inputs, the same output ([`Overlay`]) and the same traps.
//!
//! Documents cross this boundary as `Vec<Value>` rows in state-field order, as they do
//! for the interpreter: a loaded document is converted into the JIT's fixed layout by
//! moving its values (no deep copy), the handlers run on it in place, and each touched
//! document is converted back the same way.
//!
//! Invariants: the handlers of the event run in source order, each against the documents
//! as the previous ones left them; if one traps, nothing is returned but the trap and
//! the span of that handler (all-or-nothing); a handler whose guard is false touches
//! nothing; `delete` yields `None`. Only documents a handler wrote appear in the overlay,
//! exactly as with the interpreter.
//!
//! Threads: a [`JitProgram`] is `Send + Sync` (see `Code` in the parent module), so the
//! node compiles a program once and runs it from any blocking worker; the mutable state
//! of a call lives in a [`JitScratch`], one per thread of execution.

use datamesh_stdlib::Value;

use super::abi::{self, Ctx};
use super::fold::{call, key_value, meta_abi, meta_values, run_body};
use super::layout::Doc;
use super::{CompiledHandler, CompiledProjection, JitProgram};
use crate::ast::Span;
use crate::interp::{Meta, Overlay, Trap};
use crate::ir::EventId;

/// One document a call has looked at: loaded, or written by a handler.
#[derive(Debug)]
struct Work {
    key: Vec<Value>,
    /// `None`: no document (absent from the store, or deleted by an earlier handler).
    doc: Option<Doc>,
    /// A handler wrote (or deleted) it, so it belongs in the overlay.
    touched: bool,
}

/// The reusable buffers of [`JitProgram::apply_event`]: the context block compiled code
/// writes to, the encoded row and the working documents.
///
/// It holds raw pointers (the context points into itself and, during a call, into a
/// document), so it is neither `Send` nor `Sync`: create one per thread (the node makes
/// one per batch, inside its blocking task). One scratch serves any number of programs.
#[derive(Debug)]
pub struct JitScratch {
    ctx: Box<Ctx>,
    row: Vec<u64>,
    work: Vec<Work>,
}

impl Default for JitScratch {
    fn default() -> Self {
        JitScratch::new()
    }
}

impl JitScratch {
    /// Empty buffers; the key buffer grows to the widest key it meets.
    pub fn new() -> JitScratch {
        JitScratch {
            ctx: Ctx::new(1),
            row: Vec::new(),
            work: Vec::new(),
        }
    }
}

impl JitProgram {
    /// Applies one event (its decoded `row` and envelope) to projection number
    /// `projection` of the program, whose documents `load` fetches by key. Returns every
    /// document the handlers wrote (`None` when deleted), to be committed together.
    /// An unknown projection or event type handles nothing.
    ///
    /// # Errors
    /// The trap and the span of the handler that raised it; nothing is to be committed.
    pub fn apply_event(
        &self,
        scratch: &mut JitScratch,
        projection: usize,
        event: EventId,
        row: &[Value],
        meta: &Meta,
        load: &mut dyn FnMut(&[Value]) -> Option<Vec<Value>>,
    ) -> Result<Overlay, (Trap, Span)> {
        let mut overlay = Overlay::new();
        let Some(p) = self.projections.get(projection) else {
            return Ok(overlay);
        };
        let (Some(handlers), Some(layout)) = (p.by_event.get(event), self.rows.get(event)) else {
            return Ok(overlay);
        };
        if handlers.is_empty() {
            return Ok(overlay);
        }
        // Key functions write one word per component into the context: it must be wide
        // enough for this projection's key (a scratch may have served narrower keys).
        if scratch.ctx.key_words().len() < p.key.len() {
            scratch.ctx = Ctx::new(p.key.len());
        }
        // Handle fields of the encoded row point into `row`, which outlives this call.
        layout.encode_row(row, &mut scratch.row);
        let values = meta_values(meta);
        let abi_meta = meta_abi(meta, &values);
        scratch.work.clear();
        let result = self.run_handlers(scratch, p, handlers, &abi_meta, load);
        // Values compiled code created live in the arena until the run is over: the
        // documents and keys taken from it have been cloned or moved out by now.
        scratch.ctx.arena.clear();
        result?;
        for work in scratch.work.drain(..) {
            if work.touched {
                overlay.insert(work.key, work.doc.map(|d| p.layout.decode_doc_owned(d)));
            }
        }
        Ok(overlay)
    }

    fn run_handlers(
        &self,
        scratch: &mut JitScratch,
        p: &CompiledProjection,
        handlers: &[usize],
        meta: &abi::MetaAbi,
        load: &mut dyn FnMut(&[Value]) -> Option<Vec<Value>>,
    ) -> Result<(), (Trap, Span)> {
        let JitScratch { ctx, row, work } = scratch;
        for handler in handlers.iter().filter_map(|&h| p.handlers.get(h)) {
            let key = self
                .key_of(ctx, p, handler, row, meta)
                .map_err(|t| (t, handler.span))?;
            let slot = match work.iter().position(|w| w.key == key) {
                Some(slot) => slot,
                None => {
                    let doc = load(&key).map(|d| p.layout.encode_doc_owned(d));
                    work.push(Work {
                        key,
                        doc,
                        touched: false,
                    });
                    work.len() - 1
                }
            };
            let Some(entry) = work.get_mut(slot) else {
                continue;
            };
            // A missing (or deleted) document starts from the defaults; it is kept only
            // if the handler runs to completion.
            let mut fresh = None;
            let doc = match &mut entry.doc {
                Some(doc) => doc,
                None => fresh.insert(p.default_doc.clone()),
            };
            // On a trap the document may be half-written, but the whole working set is
            // discarded with it, so nothing needs restoring.
            match run_body(handler.body, doc, row, meta, ctx) {
                abi::STATUS_TRAP => return Err((trap_from(ctx, self), handler.span)),
                abi::STATUS_SKIP => {}
                abi::STATUS_DELETE => {
                    entry.doc = None;
                    entry.touched = true;
                }
                _ => {
                    if let Some(doc) = fresh {
                        entry.doc = Some(doc);
                    }
                    entry.touched = true;
                }
            }
        }
        Ok(())
    }

    /// Runs a handler's key function (an empty key when it has none).
    fn key_of(
        &self,
        ctx: &mut Ctx,
        p: &CompiledProjection,
        handler: &CompiledHandler,
        row: &[u64],
        meta: &abi::MetaAbi,
    ) -> Result<Vec<Value>, Trap> {
        let Some(f) = handler.key else {
            return Ok(Vec::new());
        };
        let status = call(
            f,
            std::ptr::null_mut(),
            row,
            meta,
            ctx,
            std::ptr::null_mut(),
        );
        if status == abi::STATUS_TRAP {
            return Err(trap_from(ctx, self));
        }
        Ok(p.key
            .iter()
            .zip(ctx.key_words())
            .map(|(ty, word)| key_value(ty, *word))
            .collect())
    }
}

/// The trap a helper recorded in the context, with its span resolved.
fn trap_from(ctx: &mut Ctx, program: &JitProgram) -> Trap {
    match ctx.trap.take() {
        Some((kind, index)) => Trap {
            kind,
            span: usize::try_from(index)
                .ok()
                .and_then(|i| program.pool.spans.get(i))
                .copied()
                .unwrap_or_default(),
        },
        None => Trap {
            kind: datamesh_stdlib::Trap::InvalidConversion("unknown trap".into()),
            span: Span::default(),
        },
    }
}
