//! [`JitFold`]: the fold engine running compiled handlers, with the interpreter's exact
//! semantics.
//!
//! Invariants: an event's payload is encoded into its row layout once and shared by all
//! projections; for one event and one projection, every matching handler runs in source
//! order against the documents as the previous handlers left them, and if any of them
//! traps, every touched document is restored and the projection faults with the same
//! [`Fault`] the interpreter reports. A faulted projection ignores later events.

use std::collections::BTreeMap;
use std::sync::Arc;

use datamesh_stdlib::Value;

use super::abi;
use super::layout::Doc;
use super::store::{JitScratch, call, trap_from};
use super::{CodegenError, JitProgram, compile};
use crate::exec::engine::FoldEngine;
use crate::exec::storage;
use crate::exec::table::DocTable;
use crate::exec::{Fault, Meta, ProjectionState};
use crate::ir::{EventId, Program};

/// The documents of one projection.
#[derive(Debug, Default)]
struct Store {
    docs: DocTable<Doc>,
    fault: Option<Fault>,
}

/// Folds events into the projections of one program with compiled handlers.
#[derive(Debug)]
pub struct JitFold<'p> {
    program: &'p Program,
    code: JitProgram,
    stores: Vec<Store>,
    next_position: i64,
    scratch: JitScratch,
    type_names: Vec<Arc<str>>,
    /// Per event type, the projections with a handler for it.
    routes: Vec<Vec<usize>>,
}

impl<'p> JitFold<'p> {
    /// Compiles the program and starts with empty projections.
    ///
    /// # Errors
    /// The [`CodegenError`] of [`compile`].
    pub fn new(program: &'p Program) -> Result<JitFold<'p>, CodegenError> {
        let code = compile(program)?;
        let routes = (0..program.events.len())
            .map(|event| {
                (code.projections.iter().enumerate())
                    .filter(|(_, p)| p.by_event.get(event).is_some_and(|h| !h.is_empty()))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        Ok(JitFold {
            program,
            stores: program
                .projections
                .iter()
                .map(|_| Store::default())
                .collect(),
            code,
            next_position: 0,
            scratch: JitScratch::new(),
            type_names: program
                .events
                .iter()
                .map(|e| Arc::from(e.name.as_str()))
                .collect(),
            routes,
        })
    }

    /// The compiled program.
    pub fn compiled(&self) -> &JitProgram {
        &self.code
    }

    /// Appends a local event (see [`FoldEngine::apply_local`]).
    pub fn apply_local(&mut self, event: EventId, row: &[Value], meta: &Meta) -> Vec<Fault> {
        let position = self.next_position;
        self.next_position += 1;
        let Some(event_type) = self.type_names.get(event) else {
            return Vec::new();
        };
        let envelope = (position, event_type);
        let Some(abi_meta) = self.scratch.prepare(&self.code, event, row, envelope, meta) else {
            return Vec::new();
        };
        let mut faults = Vec::new();
        for &index in self.routes.get(event).map_or(&[][..], Vec::as_slice) {
            let Some(store) = self.stores.get_mut(index) else {
                continue;
            };
            if store.fault.is_some() {
                continue;
            }
            // Documents live only here: a key the table does not hold has none.
            let result = self.code.fold_prepared(
                &mut self.scratch,
                index,
                event,
                &abi_meta,
                &mut store.docs,
                &mut |_| None,
            );
            if let Err((trap, handler)) = result {
                let fault = Fault {
                    projection: index,
                    position,
                    event_type: event_type.to_string(),
                    trap,
                    handler,
                };
                store.fault = Some(fault.clone());
                faults.push(fault);
            }
        }
        faults
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
        self.code
            .run_import(import, event, row, meta, &mut self.scratch)
    }

    /// The documents and fault of every projection, as the interpreter stores them.
    pub fn snapshot(&self) -> Vec<ProjectionState> {
        self.stores
            .iter()
            .zip(&self.code.projections)
            .map(|(store, p)| ProjectionState {
                docs: store
                    .docs
                    .documents()
                    .map(|(k, d)| {
                        (
                            storage::decode_key(k).unwrap_or_default(),
                            p.layout.decode_doc(d),
                        )
                    })
                    .collect::<BTreeMap<_, _>>(),
                fault: store.fault.clone(),
            })
            .collect()
    }
}

impl FoldEngine for JitFold<'_> {
    fn program(&self) -> &Program {
        self.program
    }

    fn apply_local(&mut self, event: EventId, row: &[Value], meta: &Meta) -> Vec<Fault> {
        JitFold::apply_local(self, event, row, meta)
    }

    fn run_import(
        &mut self,
        import: usize,
        event: usize,
        row: &[Value],
        meta: &Meta,
    ) -> Result<Vec<(EventId, Vec<Value>)>, Fault> {
        JitFold::run_import(self, import, event, row, meta)
    }

    fn next_position(&self) -> i64 {
        self.next_position
    }

    fn snapshot(&self) -> Vec<ProjectionState> {
        JitFold::snapshot(self)
    }
}

impl JitProgram {
    /// Runs the compiled import rules of `import` on one of the peer's events (`event`
    /// indexes the import's own event types): the local events they emit, in order,
    /// exactly as [`crate::interp::Fold::run_import`] computes them. Everything it
    /// needs was compiled in, so it cannot be run against another program's IR.
    ///
    /// # Errors
    /// The [`Fault`] of the rule that trapped (its `projection` is the import's index).
    pub fn run_import(
        &self,
        import: usize,
        event: usize,
        row: &[Value],
        meta: &Meta,
        scratch: &mut JitScratch,
    ) -> Result<Vec<(EventId, Vec<Value>)>, Fault> {
        let Some(compiled) = self.imports.get(import) else {
            return Ok(Vec::new());
        };
        let mut meta = meta.clone();
        if let Some(name) = compiled.names.get(event) {
            meta.event_type = name.clone();
        }
        let ctx = &mut scratch.ctx;
        let Some(layout) = compiled.rows.get(event) else {
            return Ok(Vec::new());
        };
        let mut words = Vec::new();
        layout.encode_row(row, &mut words);
        let values = [
            Value::Str(meta.stream.clone()),
            Value::Str(meta.event_type.clone()),
            Value::Str(meta.id.clone()),
        ];
        let abi_meta = abi::MetaAbi {
            position: meta.position,
            time: meta.time,
            stream: &raw const values[0],
            event_type: &raw const values[1],
            id: &raw const values[2],
        };
        let mut out = Vec::new();
        for rule in compiled.rules.iter().filter(|r| r.event == event) {
            ctx.emitted.clear();
            let status = call(
                rule.body,
                std::ptr::null_mut(),
                &words,
                &abi_meta,
                ctx,
                std::ptr::null_mut(),
            );
            if status == abi::STATUS_TRAP {
                let trap = trap_from(ctx, self);
                ctx.arena.clear();
                return Err(Fault {
                    projection: import,
                    position: meta.position,
                    event_type: meta.event_type.to_string(),
                    trap,
                    handler: rule.span,
                });
            }
            out.append(&mut ctx.emitted);
        }
        ctx.arena.clear();
        Ok(out)
    }
}
