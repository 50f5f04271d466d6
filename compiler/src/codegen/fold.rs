//! [`JitFold`]: the fold engine running compiled handlers, with the interpreter's exact
//! semantics.
//!
//! Invariants: an event's payload is encoded into its row layout once and shared by all
//! projections; for one event and one projection, every matching handler runs in source
//! order against the documents as the previous handlers left them, and if any of them
//! traps, every touched document is restored and the projection faults with the same
//! [`Fault`] the interpreter reports. A faulted projection ignores later events.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use datamesh_stdlib::Value;

use super::abi::{self, Ctx, HandlerFn, MetaAbi};
use super::layout::{Doc, scalar_value};
use super::{CodegenError, CompiledHandler, CompiledProjection, JitProgram, compile};
use crate::ast::Span;
use crate::engine::FoldEngine;
use crate::interp::{Fault, Meta, ProjectionState, Trap};
use crate::ir::{EventId, Program, Type};

/// A document key; hashed by content (keys never hold floats or collections).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key(Vec<Value>);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for v in &self.0 {
            match v {
                Value::Int(i) | Value::Timestamp(i) | Value::Duration(i) => state.write_i64(*i),
                Value::Bool(b) => state.write_u8(u8::from(*b)),
                Value::Str(s) => state.write(s.as_bytes()),
                other => state.write_u8(other.type_name().len() as u8),
            }
        }
    }
}

/// A small multiplicative hasher (FxHash): keys are short and not attacker-chosen
/// within one fold.
#[derive(Debug, Default, Clone, Copy)]
struct Fx(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        // The multiply only carries entropy upwards, and the table indexes by the low
        // bits: a final avalanche (murmur3's fmix64) spreads it over every bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(w) ^ (rest.len() as u64) << 59);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

type Docs = HashMap<Key, Doc, BuildHasherDefault<Fx>>;

/// The documents of one projection.
#[derive(Debug, Default)]
struct Store {
    docs: Docs,
    fault: Option<Fault>,
}

/// A document's state before the event touched it (for rollback).
#[derive(Debug)]
struct Undo {
    key: Key,
    before: Option<Doc>,
}

/// Folds events into the projections of one program with compiled handlers.
#[derive(Debug)]
pub struct JitFold<'p> {
    program: &'p Program,
    code: JitProgram,
    stores: Vec<Store>,
    next_position: i64,
    ctx: Box<Ctx>,
    row_words: Vec<u64>,
    key_buf: Vec<Value>,
    scratch: Vec<u64>,
    undo: Vec<Undo>,
    type_names: Vec<Arc<str>>,
}

/// The envelope strings as values, alive for one event.
pub(super) struct MetaValues {
    stream: Value,
    event_type: Value,
    id: Value,
}

/// How one handler call went.
enum Outcome {
    Ok,
    Trap(Trap),
}

impl<'p> JitFold<'p> {
    /// Compiles the program and starts with empty projections.
    ///
    /// # Errors
    /// The [`CodegenError`] of [`compile`].
    pub fn new(program: &'p Program) -> Result<JitFold<'p>, CodegenError> {
        let code = compile(program)?;
        let key_len = program
            .projections
            .iter()
            .map(|p| p.key.len())
            .max()
            .unwrap_or(0);
        Ok(JitFold {
            program,
            stores: program
                .projections
                .iter()
                .map(|_| Store::default())
                .collect(),
            code,
            next_position: 0,
            ctx: Ctx::new(key_len),
            row_words: Vec::new(),
            key_buf: Vec::new(),
            scratch: Vec::new(),
            undo: Vec::new(),
            type_names: program
                .events
                .iter()
                .map(|e| Arc::from(e.name.as_str()))
                .collect(),
        })
    }

    /// The compiled program.
    pub fn compiled(&self) -> &JitProgram {
        &self.code
    }

    fn trap_from_ctx(&mut self) -> Trap {
        let spans = &self.code.pool.spans;
        match self.ctx.trap.take() {
            Some((kind, index)) => Trap {
                kind,
                span: usize::try_from(index)
                    .ok()
                    .and_then(|i| spans.get(i))
                    .copied()
                    .unwrap_or_default(),
            },
            None => Trap {
                kind: datamesh_stdlib::Trap::InvalidConversion("unknown trap".into()),
                span: Span::default(),
            },
        }
    }

    /// Appends a local event (see [`FoldEngine::apply_local`]).
    pub fn apply_local(&mut self, event: EventId, row: &[Value], mut meta: Meta) -> Vec<Fault> {
        meta.position = self.next_position;
        self.next_position += 1;
        if let Some(name) = self.type_names.get(event) {
            meta.event_type = name.clone();
        }
        let Some(layout) = self.code.rows.get(event) else {
            return Vec::new();
        };
        let mut words = std::mem::take(&mut self.row_words);
        layout.encode_row(row, &mut words);
        let values = meta_values(&meta);
        let abi_meta = meta_abi(&meta, &values);
        let mut faults = Vec::new();
        for index in 0..self.stores.len() {
            if self.stores[index].fault.is_some() {
                continue;
            }
            let result = self.apply_to_projection(index, event, &words, &abi_meta);
            self.ctx.arena.clear();
            if let Err((trap, handler)) = result {
                let fault = Fault {
                    projection: index,
                    position: meta.position,
                    event_type: meta.event_type.to_string(),
                    trap,
                    handler,
                };
                self.stores[index].fault = Some(fault.clone());
                faults.push(fault);
            }
        }
        self.row_words = words;
        faults
    }

    fn apply_to_projection(
        &mut self,
        index: usize,
        event: EventId,
        row: &[u64],
        meta: &MetaAbi,
    ) -> Result<(), (Trap, Span)> {
        let Some(p) = self.code.projections.get(index) else {
            return Ok(());
        };
        let Some(handlers) = p.by_event.get(event) else {
            return Ok(());
        };
        match handlers.as_slice() {
            [] => Ok(()),
            [one] => self.run_single(index, event, *one, row, meta),
            _ => self.run_many(index, event, row, meta),
        }
    }

    /// Computes a handler's key into `self.key_buf`.
    fn compute_key(
        &mut self,
        p: &CompiledProjection,
        h: &CompiledHandler,
        row: &[u64],
        meta: &MetaAbi,
    ) -> Outcome {
        self.key_buf.clear();
        let Some(f) = h.key else {
            return Outcome::Ok;
        };
        if call(
            f,
            std::ptr::null_mut(),
            row,
            meta,
            &mut self.ctx,
            std::ptr::null_mut(),
        ) == abi::STATUS_TRAP
        {
            return Outcome::Trap(self.trap_from_ctx());
        }
        for (ty, word) in p.key.iter().zip(self.ctx.key_words()) {
            self.key_buf.push(key_value(ty, *word));
        }
        Outcome::Ok
    }

    /// The common case: one handler of this projection handles the event. It runs in
    /// place on the stored document, whose inline words (and, if the handler may change
    /// them, handle fields) are saved first for rollback.
    fn run_single(
        &mut self,
        index: usize,
        event: EventId,
        h: usize,
        row: &[u64],
        meta: &MetaAbi,
    ) -> Result<(), (Trap, Span)> {
        let code = std::ptr::from_ref(&self.code);
        // SAFETY: `self.code` is never mutated while the fold runs; the raw reborrow only
        // lets the handler tables be read while the stores are updated.
        let code = unsafe { &*code };
        let p = &code.projections[index];
        let handler = &p.handlers[h];
        if let Outcome::Trap(t) = self.compute_key(p, handler, row, meta) {
            return Err((t, handler.span));
        }
        let key = Key(std::mem::take(&mut self.key_buf));
        let writes_heap = p.writes_heap.get(event).copied().unwrap_or(true);
        let result = match self.stores[index].docs.get_mut(&key) {
            Some(doc) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(&doc.slots);
                let heap = writes_heap.then(|| doc.heap.clone());
                let status = run_body(handler.body, doc, row, meta, &mut self.ctx);
                match status {
                    abi::STATUS_TRAP => {
                        doc.slots.copy_from_slice(&self.scratch);
                        if let Some(heap) = heap {
                            doc.heap = heap;
                        }
                        Err(self.trap_from_ctx())
                    }
                    abi::STATUS_DELETE => {
                        self.stores[index].docs.remove(&key);
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            None => {
                let mut doc = p.default_doc.clone();
                match run_body(handler.body, &mut doc, row, meta, &mut self.ctx) {
                    abi::STATUS_TRAP => Err(self.trap_from_ctx()),
                    abi::STATUS_OK => {
                        self.stores[index].docs.insert(key.clone(), doc);
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        };
        self.key_buf = key.0;
        result.map_err(|t| (t, handler.span))
    }

    /// Several handlers of this projection handle the event: each touched document is
    /// saved whole the first time, and restored if any handler traps.
    fn run_many(
        &mut self,
        index: usize,
        event: EventId,
        row: &[u64],
        meta: &MetaAbi,
    ) -> Result<(), (Trap, Span)> {
        let code = std::ptr::from_ref(&self.code);
        // SAFETY: as in `run_single`, the compiled program is only read.
        let code = unsafe { &*code };
        let p = &code.projections[index];
        self.undo.clear();
        let handlers = p.by_event.get(event).map_or(&[][..], Vec::as_slice);
        for &h in handlers {
            let handler = &p.handlers[h];
            if let Err(t) = self.run_touching(index, p, handler, row, meta) {
                self.rollback(index);
                return Err((t, handler.span));
            }
        }
        Ok(())
    }

    fn run_touching(
        &mut self,
        index: usize,
        p: &CompiledProjection,
        handler: &CompiledHandler,
        row: &[u64],
        meta: &MetaAbi,
    ) -> Result<(), Trap> {
        if let Outcome::Trap(t) = self.compute_key(p, handler, row, meta) {
            return Err(t);
        }
        let key = Key(self.key_buf.clone());
        let docs = &mut self.stores[index].docs;
        if !self.undo.iter().any(|u| u.key == key) {
            self.undo.push(Undo {
                key: key.clone(),
                before: docs.get(&key).cloned(),
            });
        }
        let existed = docs.contains_key(&key);
        let doc = docs
            .entry(key.clone())
            .or_insert_with(|| p.default_doc.clone());
        match run_body(handler.body, doc, row, meta, &mut self.ctx) {
            abi::STATUS_TRAP => Err(self.trap_from_ctx()),
            abi::STATUS_DELETE => {
                self.stores[index].docs.remove(&key);
                Ok(())
            }
            abi::STATUS_SKIP if !existed => {
                self.stores[index].docs.remove(&key);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn rollback(&mut self, index: usize) {
        let docs = &mut self.stores[index].docs;
        for undo in self.undo.drain(..).rev() {
            match undo.before {
                Some(doc) => {
                    docs.insert(undo.key, doc);
                }
                None => {
                    docs.remove(&undo.key);
                }
            }
        }
    }

    /// Runs the import rules of `import` on a peer event (see [`FoldEngine`]).
    ///
    /// # Errors
    /// The fault of the rule that trapped.
    pub fn run_import(
        &mut self,
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
        let code = std::ptr::from_ref(&self.code);
        // SAFETY: the compiled program is only read.
        let code = unsafe { &*code };
        let Some(compiled) = code.imports.get(import) else {
            return Ok(Vec::new());
        };
        let Some(layout) = compiled.rows.get(event) else {
            return Ok(Vec::new());
        };
        let mut words = Vec::new();
        layout.encode_row(row, &mut words);
        let values = meta_values(&meta);
        let abi_meta = meta_abi(&meta, &values);
        let mut out = Vec::new();
        for rule in compiled.rules.iter().filter(|r| r.event == event) {
            self.ctx.emitted.clear();
            let status = call(
                rule.body,
                std::ptr::null_mut(),
                &words,
                &abi_meta,
                &mut self.ctx,
                std::ptr::null_mut(),
            );
            if status == abi::STATUS_TRAP {
                let trap = self.trap_from_ctx();
                self.ctx.arena.clear();
                return Err(Fault {
                    projection: import,
                    position: meta.position,
                    event_type: meta.event_type.to_string(),
                    trap,
                    handler: rule.span,
                });
            }
            out.append(&mut self.ctx.emitted);
        }
        self.ctx.arena.clear();
        Ok(out)
    }

    /// Runs import rules and applies what they emit (see [`FoldEngine::apply_import`]).
    ///
    /// # Errors
    /// The fault of the rule that trapped; nothing is applied then.
    pub fn apply_import(
        &mut self,
        import: usize,
        event: usize,
        row: &[Value],
        meta: Meta,
    ) -> Result<Vec<Fault>, Fault> {
        let emitted = self.run_import(import, event, row, &meta)?;
        let program = self.program;
        let peer = program.imports.get(import).map_or("", |i| i.peer.as_str());
        Ok(crate::engine::apply_emitted(self, peer, &meta, emitted))
    }

    /// The documents and fault of every projection, as the interpreter stores them.
    pub fn snapshot(&self) -> Vec<ProjectionState> {
        self.stores
            .iter()
            .zip(&self.code.projections)
            .map(|(store, p)| ProjectionState {
                docs: store
                    .docs
                    .iter()
                    .map(|(k, d)| (k.0.clone(), p.layout.decode_doc(d)))
                    .collect::<BTreeMap<_, _>>(),
                fault: store.fault.clone(),
            })
            .collect()
    }
}

pub(super) fn meta_values(meta: &Meta) -> MetaValues {
    MetaValues {
        stream: Value::Str(meta.stream.clone()),
        event_type: Value::Str(meta.event_type.clone()),
        id: Value::Str(meta.id.clone()),
    }
}

pub(super) fn meta_abi(meta: &Meta, values: &MetaValues) -> MetaAbi {
    MetaAbi {
        position: meta.position,
        time: meta.time,
        stream: &raw const values.stream,
        event_type: &raw const values.event_type,
        id: &raw const values.id,
    }
}

/// A key component from the word a key function wrote.
pub(super) fn key_value(ty: &Type, word: u64) -> Value {
    match ty {
        Type::String => {
            let p = word as usize as *const Value;
            // SAFETY: for a string key component the key function stores a pointer to a
            // live string value (row, constant pool or arena), valid until the arena is
            // cleared after this projection's run.
            unsafe { p.as_ref() }.cloned().unwrap_or(Value::None)
        }
        other => scalar_value(other, word),
    }
}

pub(super) fn run_body(
    f: HandlerFn,
    doc: &mut Doc,
    row: &[u64],
    meta: &MetaAbi,
    ctx: &mut Ctx,
) -> u32 {
    let heap = doc.heap.as_mut_ptr();
    call(f, doc.slots.as_mut_ptr(), row, meta, ctx, heap)
}

pub(super) fn call(
    f: HandlerFn,
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

impl FoldEngine for JitFold<'_> {
    fn program(&self) -> &Program {
        self.program
    }

    fn apply_local(&mut self, event: EventId, row: &[Value], meta: Meta) -> Vec<Fault> {
        JitFold::apply_local(self, event, row, meta)
    }

    fn apply_import(
        &mut self,
        import: usize,
        event: usize,
        row: &[Value],
        meta: Meta,
    ) -> Result<Vec<Fault>, Fault> {
        JitFold::apply_import(self, import, event, row, meta)
    }

    fn next_position(&self) -> i64 {
        self.next_position
    }

    fn snapshot(&self) -> Vec<ProjectionState> {
        JitFold::snapshot(self)
    }
}
