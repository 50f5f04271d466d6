//! Folding events into a [`DocTable`] of compiled-layout documents: what both the
//! in-memory [`super::JitFold`] and the node's engine run.
//!
//! A handler's key (read from the row when it is made of event fields, otherwise
//! written by its key function) is encoded straight into the table's key bytes (the
//! store's key encoding), the document is found (or loaded once, through the caller's
//! `load`), and the body runs on it in place. The table remembers which documents
//! changed, so the node writes each one back once per batch. For rollback, only the
//! inline words of a document are copied per event; changes to its handle fields
//! (collections, strings) are undone from the log the helpers keep ([`abi::Undo`]), so
//! an event costs what it changes, whatever the size of the document.
//!
//! Invariants: the handlers of the event run in source order, each against the
//! documents as the previous ones left them; if one traps, every document the event
//! touched in this projection is exactly as before the event (all-or-nothing) and the
//! trap comes back with the span of its handler; a handler whose guard is false touches
//! nothing; `delete` leaves the key with no document; a new document is kept only if
//! its handler ran to completion.
//!
//! Threads: a [`JitProgram`] is `Send + Sync` (see `Code` in the parent module), so the
//! node compiles a program once and runs it from any blocking worker; the mutable state
//! of a call lives in a [`JitScratch`], one per thread of execution.

use std::sync::Arc;

use datamesh_stdlib::Value;

use super::abi::Undo;
use super::abi::{self, Ctx, MetaAbi};
use super::layout::{Doc, Layout, Slot, Words, scalar_value};
use super::{CompiledHandler, CompiledProjection, JitProgram, Plan};
use crate::ast::Span;
use crate::exec::fold::{Stored, TableFold};
use crate::exec::storage;
use crate::exec::table::{DocTable, Entry, KeyProbe, SingleDocument, TextKey};
use crate::exec::{Meta, Trap};
use crate::ir::{EventId, Type};

/// The envelope strings as values, reused while they do not change (an engine folding
/// one stream, or events without stream and id, builds them once). Event type names
/// are few and interleave, so the last few are kept: a fold alternating between two
/// types clones no `Arc` per event.
#[derive(Debug)]
struct MetaValues {
    stream: Value,
    event_types: Vec<Value>,
    /// Which of `event_types` the current event has.
    current_type: usize,
    id: Value,
}

/// How many event type names [`MetaValues`] remembers.
const REMEMBERED_TYPES: usize = 8;

impl MetaValues {
    fn new() -> MetaValues {
        MetaValues {
            stream: Value::None,
            event_types: Vec::new(),
            current_type: 0,
            id: Value::None,
        }
    }

    #[inline]
    fn update(&mut self, meta: &Meta, event_type: &Arc<str>) {
        fn set(slot: &mut Value, text: &Arc<str>) {
            if !matches!(slot, Value::Str(s) if Arc::ptr_eq(s, text)) {
                *slot = Value::Str(text.clone());
            }
        }
        set(&mut self.stream, &meta.stream);
        set(&mut self.id, &meta.id);
        let same = |v: &Value| matches!(v, Value::Str(s) if Arc::ptr_eq(s, event_type));
        if self.event_types.get(self.current_type).is_some_and(same) {
            return;
        }
        self.current_type = match self.event_types.iter().position(same) {
            Some(i) => i,
            None if self.event_types.len() < REMEMBERED_TYPES => {
                self.event_types.push(Value::Str(event_type.clone()));
                self.event_types.len() - 1
            }
            None => {
                let i = (self.current_type + 1) % REMEMBERED_TYPES;
                self.event_types[i] = Value::Str(event_type.clone());
                i
            }
        };
    }

    #[inline]
    fn abi(&self, position: i64, meta: &Meta) -> MetaAbi {
        MetaAbi {
            position,
            time: meta.time,
            stream: &raw const self.stream,
            event_type: self
                .event_types
                .get(self.current_type)
                .map_or(std::ptr::null(), |v| v as *const Value),
            id: &raw const self.id,
        }
    }
}

/// A key an event touched, and its entry as it was before (`None`: the table had none;
/// otherwise the document's inline words, `None` when it had no document, and whether
/// it was dirty). Handle fields are not copied: their changes are in the undo log.
type Before = (Box<[u8]>, Option<(Option<Words>, bool)>);

/// The inline words of the document one handler changes, kept for rollback. Most
/// documents have a few words: they are copied word by word into a fixed array (a
/// `memcpy` call per event cost more than the handler); wider ones go to a vector.
#[derive(Debug, Default)]
struct Saved {
    words: [u64; 8],
    wide: Vec<u64>,
}

impl Saved {
    #[inline]
    fn save(&mut self, slots: &[u64]) {
        // Fixed-size arms for the common widths: a copy of variable length compiles to a
        // `memcpy` call, which cost more than the handler.
        let w = &mut self.words;
        match *slots {
            [] => {}
            [a] => w[0] = a,
            [a, b] => (w[0], w[1]) = (a, b),
            [a, b, c] => (w[0], w[1], w[2]) = (a, b, c),
            [a, b, c, d] => (w[0], w[1], w[2], w[3]) = (a, b, c, d),
            _ if slots.len() <= w.len() => {
                for (to, from) in w.iter_mut().zip(slots) {
                    *to = *from;
                }
            }
            _ => {
                self.wide.clear();
                self.wide.extend_from_slice(slots);
            }
        }
    }

    #[inline]
    fn restore(&self, slots: &mut [u64]) {
        if slots.len() <= self.words.len() {
            for (to, from) in slots.iter_mut().zip(&self.words) {
                *to = *from;
            }
        } else {
            slots.copy_from_slice(&self.wide);
        }
    }
}

/// The reusable buffers of a fold: the context block compiled code writes to, the
/// encoded row and key, the saved words of the document being changed, and what a
/// multi-handler event needs to roll back (the entries it touched, the handle-field
/// changes of all its handlers, and the documents it dropped, kept alive until the
/// event is over because undo entries may point into them).
///
/// It holds raw pointers (the context points into itself and, during a call, into a
/// document), so it is neither `Send` nor `Sync`: create one per thread (the node makes
/// one per batch, inside its blocking task). One scratch serves any number of programs.
#[derive(Debug)]
pub struct JitScratch {
    pub(super) ctx: Box<Ctx>,
    row: Vec<u64>,
    key: Vec<u8>,
    saved: Saved,
    undo: Vec<Before>,
    heap_undo: Vec<Undo>,
    dropped: Vec<(Box<[u8]>, Doc)>,
    meta: MetaValues,
    /// Which scratch this is and how many events it prepared, so a [`Prepared`] from
    /// another scratch, or from before the last event, is recognised.
    generation: (u64, u64),
}

/// Numbers scratches apart (see `JitScratch::generation`).
static SCRATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
            key: Vec::new(),
            saved: Saved::default(),
            undo: Vec::new(),
            heap_undo: Vec::new(),
            dropped: Vec::new(),
            meta: MetaValues::new(),
            generation: (
                SCRATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                0,
            ),
        }
    }

    /// Encodes an event's row and envelope for the calls that follow (the row's handle
    /// words point into `row`, which must outlive them); `position` and `event_type`
    /// override the envelope's.
    #[inline]
    pub(super) fn prepare(
        &mut self,
        program: &JitProgram,
        event: EventId,
        row: &[Value],
        (position, event_type): (i64, &Arc<str>),
        meta: &Meta,
    ) -> Option<MetaAbi> {
        let layout = program.rows.get(event)?;
        layout.encode_row(row, &mut self.row);
        if program.text_meta {
            self.meta.update(meta, event_type);
        }
        self.generation.1 = self.generation.1.wrapping_add(1);
        Some(self.meta.abi(position, meta))
    }
}

/// An event encoded once by [`JitProgram::prepare_event`] for every projection it
/// reaches. Its row words and envelope values live in the scratch that prepared it: it
/// is only honoured by that scratch, while it has prepared nothing else, and it borrows
/// the decoded row the words point into.
#[derive(Debug)]
pub struct Prepared<'r> {
    event: EventId,
    meta: MetaAbi,
    generation: (u64, u64),
    _row: std::marker::PhantomData<&'r [Value]>,
}

/// What a load returns: the stored document of a key, already in the compiled layout.
pub type Load<'a> = dyn FnMut(&[u8]) -> Option<Doc> + 'a;

impl JitProgram {
    /// Applies one event (its type, decoded `row` and envelope) to projection number
    /// `projection`, whose documents are in `table`; `load` supplies those the table
    /// does not hold yet (`None`: no such document). An unknown projection or event
    /// type handles nothing.
    ///
    /// # Errors
    /// The trap and the span of the handler that raised it; the table is then as it
    /// was before the event.
    pub fn fold_event(
        &self,
        scratch: &mut JitScratch,
        projection: usize,
        (event, row, meta): (EventId, &[Value], &Meta),
        table: &mut DocTable<Doc>,
        load: &mut Load<'_>,
    ) -> Result<(), (Trap, Span)> {
        let Some(p) = self.projections.get(projection) else {
            return Ok(());
        };
        if p.by_event.get(event).is_none_or(Vec::is_empty) {
            return Ok(());
        }
        let envelope = (meta.position, &meta.event_type);
        let Some(abi_meta) = scratch.prepare(self, event, row, envelope, meta) else {
            return Ok(());
        };
        self.fold_prepared(scratch, projection, event, &abi_meta, table, load)
    }

    /// Encodes an event (type, decoded row, envelope) once for
    /// [`JitProgram::fold_prepared_event`] on each projection it reaches; `None` for an
    /// event type the program does not declare.
    pub fn prepare_event<'r>(
        &self,
        scratch: &mut JitScratch,
        (event, row, meta): (EventId, &'r [Value], &Meta),
    ) -> Option<Prepared<'r>> {
        let envelope = (meta.position, &meta.event_type);
        let abi_meta = scratch.prepare(self, event, row, envelope, meta)?;
        Some(Prepared {
            event,
            meta: abi_meta,
            generation: scratch.generation,
            _row: std::marker::PhantomData,
        })
    }

    /// [`JitProgram::fold_event`] for an event [`JitProgram::prepare_event`] encoded with
    /// the same scratch. An event the scratch is not prepared for (another scratch
    /// prepared it, or this one prepared another since) handles nothing.
    ///
    /// # Errors
    /// As [`JitProgram::fold_event`].
    pub fn fold_prepared_event(
        &self,
        scratch: &mut JitScratch,
        projection: usize,
        prepared: &Prepared<'_>,
        table: &mut DocTable<Doc>,
        load: &mut Load<'_>,
    ) -> Result<(), (Trap, Span)> {
        if prepared.generation != scratch.generation {
            return Ok(());
        }
        self.fold_prepared(
            scratch,
            projection,
            prepared.event,
            &prepared.meta,
            table,
            load,
        )
    }

    /// [`JitProgram::fold_event`] for a row and envelope already encoded by
    /// [`JitScratch::prepare`] (shared by every projection the event reaches).
    #[inline]
    pub(super) fn fold_prepared(
        &self,
        scratch: &mut JitScratch,
        projection: usize,
        event: EventId,
        meta: &MetaAbi,
        table: &mut DocTable<Doc>,
        load: &mut Load<'_>,
    ) -> Result<(), (Trap, Span)> {
        let Some(p) = self.projections.get(projection) else {
            return Ok(());
        };
        let result = match p.plans.get(event).copied().unwrap_or(Plan::Skip) {
            Plan::Skip => return Ok(()),
            one @ (Plan::Text { .. } | Plan::Single { .. } | Plan::Keyed { .. }) => {
                self.run_single(scratch, p, one, meta, table, load)
            }
            Plan::Many => {
                let handlers = p.by_event.get(event).map_or(&[][..], Vec::as_slice);
                self.run_many(scratch, p, handlers, meta, table, load)
            }
        };
        // Values compiled code created live in the arena until the run is over: the
        // documents and keys taken from it have been cloned or encoded by now.
        scratch.ctx.arena.clear();
        result
    }

    /// The common case: one handler. It runs in place on the document, whose inline
    /// words are saved first; the helpers that change its handle fields record how to
    /// undo each change, so a trap costs what the handler changed, never a copy of the
    /// document's collections. The plan (one of the single-handler ones) says how the
    /// document is found.
    #[inline]
    fn run_single(
        &self,
        scratch: &mut JitScratch,
        p: &CompiledProjection,
        plan: Plan,
        meta: &MetaAbi,
        table: &mut DocTable<Doc>,
        load: &mut Load<'_>,
    ) -> Result<(), (Trap, Span)> {
        let (h, text_word) = match plan {
            Plan::Text { handler, word } => (handler, Some(word)),
            Plan::Single { handler } | Plan::Keyed { handler } => (handler, None),
            Plan::Skip | Plan::Many => return Ok(()),
        };
        let Some(handler) = p.handlers.get(h) else {
            return Ok(());
        };
        {
            let JitScratch {
                ctx, row, saved, ..
            } = &mut *scratch;
            let row: &[u64] = row;
            // A text with a 0 byte has no `TextKey`: it is encoded below.
            if let Some(text) = text_word.and_then(|word| text_key(row, word)) {
                return self.run_single_at(p, handler, (ctx, row, saved), meta, table, load, text);
            }
            if let Plan::Single { .. } = plan {
                let key = SingleDocument;
                return self.run_single_at(p, handler, (ctx, row, saved), meta, table, load, key);
            }
        }
        self.key_of(scratch, p, handler, meta)
            .map_err(|t| (t, handler.span))?;
        let JitScratch {
            ctx,
            row,
            key,
            saved,
            ..
        } = scratch;
        let key: &[u8] = key;
        self.run_single_at(p, handler, (ctx, row, saved), meta, table, load, key)
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn run_single_at(
        &self,
        p: &CompiledProjection,
        handler: &CompiledHandler,
        (ctx, row, saved): (&mut Box<Ctx>, &[u64], &mut Saved),
        meta: &MetaAbi,
        table: &mut DocTable<Doc>,
        load: &mut Load<'_>,
        key: impl KeyProbe,
    ) -> Result<(), (Trap, Span)> {
        table
            .update(key, load, |slot| match slot {
                Some(doc) => {
                    saved.save(&doc.slots);
                    match run_body(handler.body, &p.layout, doc, row, meta, ctx) {
                        abi::STATUS_TRAP => {
                            saved.restore(&mut doc.slots);
                            // SAFETY: the undo entries point into `doc.heap`, which the
                            // call did not move (only helpers touch it, in place).
                            unsafe { ctx.roll_back() };
                            (Err(trap_from(ctx, self)), false)
                        }
                        abi::STATUS_DELETE => {
                            *slot = None;
                            (Ok(()), true)
                        }
                        abi::STATUS_SKIP => (Ok(()), false),
                        _ => (Ok(()), true),
                    }
                }
                None => {
                    let mut doc = p.default_doc.clone();
                    match run_body(handler.body, &p.layout, &mut doc, row, meta, ctx) {
                        abi::STATUS_TRAP => (Err(trap_from(ctx, self)), false),
                        abi::STATUS_OK => {
                            *slot = Some(doc);
                            (Ok(()), true)
                        }
                        _ => (Ok(()), false),
                    }
                }
            })
            .map_err(|t| (t, handler.span))
    }

    /// Several handlers: the inline words of each touched entry are saved the first time
    /// and the helpers log every handle-field change, so a trap in any handler puts
    /// every touched entry back as it was.
    fn run_many(
        &self,
        scratch: &mut JitScratch,
        p: &CompiledProjection,
        handlers: &[usize],
        meta: &MetaAbi,
        table: &mut DocTable<Doc>,
        load: &mut Load<'_>,
    ) -> Result<(), (Trap, Span)> {
        scratch.undo.clear();
        scratch.heap_undo.clear();
        for handler in handlers.iter().filter_map(|&h| p.handlers.get(h)) {
            let result = self.run_touching(scratch, p, handler, meta, table, load);
            scratch.heap_undo.append(&mut scratch.ctx.undo);
            if let Err(trap) = result {
                roll_back_many(scratch, table);
                return Err((trap, handler.span));
            }
        }
        scratch.dropped.clear();
        Ok(())
    }

    fn run_touching(
        &self,
        scratch: &mut JitScratch,
        p: &CompiledProjection,
        handler: &CompiledHandler,
        meta: &MetaAbi,
        table: &mut DocTable<Doc>,
        load: &mut Load<'_>,
    ) -> Result<(), Trap> {
        self.key_of(scratch, p, handler, meta)?;
        let JitScratch {
            ctx,
            row,
            key,
            undo,
            dropped,
            ..
        } = scratch;
        if !undo.iter().any(|(k, _)| **k == **key) {
            let before = table
                .get(key)
                .map(|e| (e.doc.as_ref().map(|d| d.slots.clone()), e.dirty));
            undo.push((key.as_slice().into(), before));
        }
        let key: &[u8] = key;
        table.update(key, load, |slot| {
            let (mut fresh, existed) = match slot {
                Some(_) => (None, true),
                None => (Some(p.default_doc.clone()), false),
            };
            let Some(doc) = fresh.as_mut().or(slot.as_mut()) else {
                return (Ok(()), false);
            };
            let status = run_body(handler.body, &p.layout, doc, row, meta, ctx);
            // A document leaving the table stays alive until the event is over: the
            // undo log may point into it.
            let mut drop_doc = |doc: Option<Doc>| {
                if let Some(doc) = doc {
                    dropped.push((Box::from(key), doc));
                }
            };
            match status {
                abi::STATUS_TRAP => {
                    drop_doc(fresh);
                    (Err(trap_from(ctx, self)), false)
                }
                abi::STATUS_DELETE => {
                    drop_doc(fresh);
                    drop_doc(slot.take());
                    (Ok(()), existed)
                }
                abi::STATUS_SKIP => {
                    drop_doc(fresh);
                    (Ok(()), false)
                }
                _ => {
                    if let Some(doc) = fresh {
                        *slot = Some(doc);
                    }
                    (Ok(()), true)
                }
            }
        })
    }

    /// Runs a handler's key function and encodes the key into `scratch.key`.
    #[inline]
    fn key_of(
        &self,
        scratch: &mut JitScratch,
        p: &CompiledProjection,
        handler: &CompiledHandler,
        meta: &MetaAbi,
    ) -> Result<(), Trap> {
        scratch.key.clear();
        if let Some(words) = &handler.key_words {
            for (ty, &word) in p.key.iter().zip(words.iter()) {
                let word = scratch.row.get(word).copied().unwrap_or_default();
                encode_key_word(ty, word, &mut scratch.key);
            }
            return Ok(());
        }
        let Some(f) = handler.key else {
            scratch
                .key
                .extend_from_slice(storage::single_document_key());
            return Ok(());
        };
        // Key functions write one word per component into the context: it must be wide
        // enough for this projection's key (a scratch may have served narrower keys).
        if scratch.ctx.key_words().len() < p.key.len() {
            scratch.ctx = Ctx::new(p.key.len());
        }
        let status = call(
            f,
            std::ptr::null_mut(),
            &scratch.row,
            meta,
            &mut scratch.ctx,
            std::ptr::null_mut(),
        );
        if status == abi::STATUS_TRAP {
            return Err(trap_from(&mut scratch.ctx, self));
        }
        for (ty, word) in p.key.iter().zip(scratch.ctx.key_words()) {
            encode_key_word(ty, *word, &mut scratch.key);
        }
        Ok(())
    }

    /// The document of projection `projection` that the store holds as `bytes`
    /// ([`storage::encode_doc`] of its fields), in the compiled layout.
    pub fn doc_from_stored(&self, projection: usize, bytes: &[u8]) -> Option<Doc> {
        let p = self.projections.get(projection)?;
        Some(p.layout.encode_doc_owned(storage::decode_doc(bytes)?))
    }

    /// Appends the stored form of a compiled-layout document to `out` (the bytes
    /// [`storage::encode_doc`] gives for its fields), without building its values.
    pub fn doc_to_stored(&self, projection: usize, doc: &Doc, out: &mut Vec<u8>) {
        // Without a limit, encoding cannot fail.
        let _ = self.doc_to_stored_within(projection, doc, usize::MAX, out);
    }

    /// [`JitProgram::doc_to_stored`], unless the document would take more than `max`
    /// bytes ([`storage::encode_doc_within`]): encoding stops as soon as it would pass
    /// `max`, so an oversized document is found at the cost of the limit.
    ///
    /// # Errors
    /// [`storage::DocTooLarge`]; `out` then holds a partial encoding, to be discarded.
    pub fn doc_to_stored_within(
        &self,
        projection: usize,
        doc: &Doc,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), storage::DocTooLarge> {
        let Some(p) = self.projections.get(projection) else {
            return Ok(());
        };
        // Inline fields are scalars, whose values cost nothing to build; the handle
        // fields are encoded where they live.
        let fields = p.layout.slots.iter().zip(&p.layout.types);
        let values = fields.map(|(slot, ty)| match slot {
            Slot::Heap { index } => {
                std::borrow::Cow::Borrowed(doc.heap.get(*index).unwrap_or(&Value::None))
            }
            Slot::Inline { .. } => std::borrow::Cow::Owned(p.layout.read_slot(doc, slot, ty)),
        });
        storage::encode_fields_within(p.layout.slots.len(), values, max, out)
    }
}

/// The one-string key of a handler whose key is the string field at row word `word`
/// ([`Plan::Text`]), read from the row and probed without encoding it (see
/// [`TextKey`]).
#[inline]
fn text_key(row: &[u64], word: usize) -> Option<TextKey<'_>> {
    let pointer = *row.get(word)? as usize as *const Value;
    // SAFETY: a string field's row word points at the caller's row value, which
    // outlives every use of the row words (see `JitScratch::prepare`).
    match unsafe { pointer.as_ref() }? {
        Value::Str(text) => TextKey::new(text),
        _ => None,
    }
}

/// Puts every entry a multi-handler event touched back as it was: the handle-field
/// changes first (newest first, while every document they point into is alive, in the
/// table or among the dropped ones), then each entry's document, inline words and
/// dirty flag.
fn roll_back_many(scratch: &mut JitScratch, table: &mut DocTable<Doc>) {
    // SAFETY: each entry points into the heap of a document this event changed, and
    // every such document is still alive: in the table, or in `dropped`.
    unsafe { abi::undo_all(&mut scratch.heap_undo) };
    for (key, before) in scratch.undo.drain(..).rev() {
        let Some((words, dirty)) = before else {
            table.forget(&key);
            continue;
        };
        // The original document is the first one dropped under this key, if the event
        // deleted it; otherwise it is still in the table.
        let original = match scratch.dropped.iter().position(|(k, _)| *k == key) {
            Some(i) => Some(scratch.dropped.remove(i).1),
            None => table.get_mut(&key).and_then(|e| e.doc.take()),
        };
        let doc = words.and_then(|words| {
            original.map(|mut doc| {
                doc.slots = words;
                doc
            })
        });
        table.restore(&key, Entry { doc, dirty });
    }
    scratch.dropped.clear();
}

/// Appends the key component a key function wrote as `word` (a scalar, or a pointer to
/// a live string value for a `string` component) to `out`.
#[inline]
fn encode_key_word(ty: &Type, word: u64, out: &mut Vec<u8>) {
    match ty {
        Type::String => {
            let p = word as usize as *const Value;
            // SAFETY: for a string key component the key function stores a pointer to a
            // live string value (row, constant pool or arena), valid until the arena is
            // cleared after this projection's run.
            match unsafe { p.as_ref() } {
                Some(Value::Str(text)) => storage::encode_key_text(text.as_bytes(), out),
                value => storage::encode_key_part(value.unwrap_or(&Value::None), out),
            }
        }
        other => storage::encode_key_part(&scalar_value(other, word), out),
    }
}

/// The trap a helper recorded in the context, with its span resolved.
pub(super) fn trap_from(ctx: &mut Ctx, program: &JitProgram) -> Trap {
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

/// Runs a compiled body on `doc`, which must be laid out by `layout` (the layout the
/// body was compiled against): a document of another shape (from another projection,
/// say) is refused with a trap instead of letting the code read or write past it.
#[inline]
pub(super) fn run_body(
    f: super::abi::HandlerFn,
    layout: &Layout,
    doc: &mut Doc,
    row: &[u64],
    meta: &MetaAbi,
    ctx: &mut Ctx,
) -> u32 {
    if doc.slots.len() < layout.words || doc.heap.len() != layout.heap {
        ctx.reset(std::ptr::null_mut());
        ctx.record(
            datamesh_stdlib::Trap::OutOfRange(
                "internal error: a document that does not match its projection's layout".to_owned(),
            ),
            0,
        );
        return abi::STATUS_TRAP;
    }
    let heap = doc.heap.as_mut_ptr();
    call(f, doc.slots.as_mut_ptr(), row, meta, ctx, heap)
}

#[inline]
pub(super) fn call(
    f: super::abi::HandlerFn,
    doc: *mut u64,
    row: &[u64],
    meta: &MetaAbi,
    ctx: &mut Ctx,
    heap: *mut Value,
) -> u32 {
    ctx.reset(heap);
    // SAFETY: `f` was compiled for this program with the `HandlerFn` ABI; `doc` and
    // `heap` are the document's inline words and heap array laid out by the layout the
    // function was compiled against (or null for key functions and import rules, which
    // never touch state); `row` was encoded with the event's row layout and the values
    // it points to outlive the call; `meta` and `ctx` are live for the call.
    unsafe { f(doc, row.as_ptr(), meta, ctx) }
}

/// The JIT folds into tables of documents in its compiled layout; an event's row is
/// encoded once ([`JitProgram::prepare_event`]) for every projection it reaches.
impl TableFold for JitProgram {
    type Doc = Doc;
    type Scratch = JitScratch;
    type Event<'r> = Prepared<'r>;

    fn prepare<'r>(
        &self,
        scratch: &mut JitScratch,
        event: (EventId, &'r [Value], &'r Meta),
    ) -> Option<Prepared<'r>> {
        self.prepare_event(scratch, event)
    }

    fn fold(
        &self,
        scratch: &mut JitScratch,
        projection: usize,
        event: &Prepared<'_>,
        table: &mut DocTable<Doc>,
        stored: &mut Stored<'_>,
    ) -> Result<(), (Trap, Span)> {
        self.fold_prepared_event(scratch, projection, event, table, &mut |key| {
            stored(key).and_then(|bytes| self.doc_from_stored(projection, &bytes))
        })
    }

    fn encode_within(
        &self,
        projection: usize,
        doc: &Doc,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), storage::DocTooLarge> {
        self.doc_to_stored_within(projection, doc, max, out)
    }
}
