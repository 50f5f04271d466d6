//! The Cranelift code generator: compiles every handler of a checked program to native
//! code and folds events with it ([`JitFold`]), with exactly the interpreter's results.
//!
//! Split by concern: [`layout`] (fixed row and document layouts), [`abi`] (the context,
//! the envelope and the helpers compiled code calls), [`translate`] (IR to Cranelift IR),
//! [`fold`] (the engine over in-memory documents), [`store`] (one event applied to one
//! projection over an external document store, as the node runs it). Each handler becomes two functions of the same signature
//! ([`abi::HandlerFn`]): one writing the key components into the context, one running
//! guard and body against a document.
//!
//! Invariant: [`compile`] either returns a program whose every function was defined and
//! finalized, or a typed [`CodegenError`]; it never panics. The machine code lives as
//! long as the [`JitProgram`] and is freed when it drops.

// The one place with unsafe code: it maps, calls and frees generated machine code.
#![allow(unsafe_code)]

pub mod abi;
pub mod fold;
pub mod layout;
pub mod store;
pub mod translate;

use cranelift_codegen::Context;
use cranelift_codegen::ir::UserFuncName;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};

pub use fold::JitFold;
pub use store::{JitScratch, Prepared};

use abi::HandlerFn;
use layout::{Doc, Layout, Repr, Slot};
use translate::{Kind, Pool, Shims, Translator};

use crate::ast::Span;
use crate::ir::{ExprKind, Handler, Program, Type};

/// Why a program could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    /// A construct the code generator does not handle (the interpreter still runs it).
    #[error("the JIT cannot compile {0} yet")]
    Unsupported(String),
    /// Cranelift rejected the generated code or could not map it.
    #[error("code generation failed: {0}")]
    Backend(String),
}

fn backend(e: impl std::fmt::Display) -> CodegenError {
    CodegenError::Backend(e.to_string())
}

/// A compiled handler or import rule.
#[derive(Debug, Clone)]
pub struct CompiledHandler {
    /// The event it handles.
    pub(in crate::codegen) event: usize,
    /// Writes the key components (absent when the handler has no key).
    pub(in crate::codegen) key: Option<HandlerFn>,
    /// When every key component is an event field, the row words holding them: the
    /// key is then read straight from the row, without calling `key`.
    pub(in crate::codegen) key_words: Option<Box<[usize]>>,
    /// Guard and body.
    pub(in crate::codegen) body: HandlerFn,
    /// The handler, for faults.
    pub(in crate::codegen) span: Span,
}

/// A compiled projection.
#[derive(Debug)]
pub struct CompiledProjection {
    /// Document layout.
    pub(in crate::codegen) layout: Layout,
    /// Handlers in source order.
    pub(in crate::codegen) handlers: Vec<CompiledHandler>,
    /// Indices into `handlers`, per local event type.
    pub(in crate::codegen) by_event: Vec<Vec<usize>>,
    /// How each local event type is handled, decided here once rather than per event.
    pub(in crate::codegen) plans: Vec<Plan>,
    /// A fresh document.
    pub(in crate::codegen) default_doc: Doc,
    /// Key component types.
    pub(in crate::codegen) key: Vec<Type>,
}

/// How a projection handles events of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No handler.
    Skip,
    /// One handler whose key is one string field of the event: the document is found
    /// with the field's text (the row word at `word` points at it).
    Text {
        /// Index into the projection's handlers.
        handler: usize,
        /// Row word of the key field.
        word: usize,
    },
    /// One handler of a projection without key: its only document.
    Single {
        /// Index into the projection's handlers.
        handler: usize,
    },
    /// One handler with any other key, encoded per event.
    Keyed {
        /// Index into the projection's handlers.
        handler: usize,
    },
    /// Several handlers, run in order as one change.
    Many,
}

/// A compiled import block.
#[derive(Debug)]
pub struct CompiledImport {
    /// Row layouts of the peer's events.
    pub(in crate::codegen) rows: Vec<Layout>,
    /// The peer's event type names, in the block's order (for the envelope).
    pub(in crate::codegen) names: Vec<std::sync::Arc<str>>,
    /// Rules in source order.
    pub(in crate::codegen) rules: Vec<CompiledHandler>,
}

/// Owns the JIT module and frees its code on drop.
struct Code(Option<JITModule>);

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code")
    }
}

// SAFETY: `Code` only owns the JIT module so that its memory is freed on drop; nothing
// reads or changes the module through a shared `&Code` (the field is private and no
// method uses it), so sharing references across threads is sound (`Sync`). Moving it
// to another thread (`Send`) only moves where `free_memory` runs: unmapping the code
// and data pages is not tied to the thread that mapped them, and the module holds no
// thread-local state (its symbol table is plain addresses of `extern "C"` shims, its
// lookup and libcall-name functions capture nothing). The finalized machine code itself
// is immutable and re-entrant: every compiled function works only on the pointers it
// is passed (document, row, envelope, a per-call `Ctx`) and reads the constant pool,
// which the `JitProgram` owns and nothing mutates after compilation.
unsafe impl Send for Code {}
// SAFETY: see `Send` above.
unsafe impl Sync for Code {}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: the function pointers into this module are owned by the same
            // `JitProgram` (or were never handed out), so no code runs after this.
            unsafe { module.free_memory() };
        }
    }
}

/// A program compiled to native code.
#[derive(Debug)]
pub struct JitProgram {
    /// Row layouts of the local events.
    pub(in crate::codegen) rows: Vec<Layout>,
    /// Projections, in program order.
    pub(in crate::codegen) projections: Vec<CompiledProjection>,
    /// Import blocks, in program order.
    pub(in crate::codegen) imports: Vec<CompiledImport>,
    /// Constants and the span table compiled code refers to.
    pub(in crate::codegen) pool: Pool,
    /// The Cranelift IR of every function (only when asked for).
    pub(in crate::codegen) clif: Vec<(String, String)>,
    /// Whether some handler reads `meta.stream`, `meta.type` or `meta.id`: only then
    /// is an event's envelope turned into values for compiled code.
    pub(in crate::codegen) text_meta: bool,
    // Declared last so the code is freed after everything else.
    _code: Code,
}

impl JitProgram {
    /// The document layout of projection number `projection` (in program order): the
    /// only way to build documents its compiled code accepts.
    pub fn layout(&self, projection: usize) -> Option<&Layout> {
        self.projections.get(projection).map(|p| &p.layout)
    }

    /// Whether some handler reads `meta.stream`, `meta.type` or `meta.id` (only then
    /// does an event's envelope become values for compiled code).
    pub fn reads_text_meta(&self) -> bool {
        self.text_meta
    }
}

/// Compiles every handler and import rule of a program.
///
/// # Errors
/// [`CodegenError::Unsupported`] for a construct the generator does not handle;
/// [`CodegenError::Backend`] if Cranelift fails.
pub fn compile(program: &Program) -> Result<JitProgram, CodegenError> {
    Compiler::new(false)?.run(program)
}

/// Compiles a program and returns the Cranelift IR of every function, labelled.
///
/// # Errors
/// As [`compile`].
pub fn clif(program: &Program) -> Result<Vec<(String, String)>, CodegenError> {
    Ok(Compiler::new(true)?.run(program)?.clif)
}

struct Compiler {
    code: Code,
    shims: Shims,
    pool: Pool,
    keep_clif: bool,
    clif: Vec<(String, String)>,
    fctx: FunctionBuilderContext,
    next: u32,
}

/// Function ids of one handler, resolved to pointers after finalization.
struct Pending {
    event: usize,
    key: Option<FuncId>,
    key_words: Option<Box<[usize]>>,
    body: FuncId,
    span: Span,
}

impl Compiler {
    fn new(keep_clif: bool) -> Result<Compiler, CodegenError> {
        let mut builder =
            JITBuilder::with_flags(&[("opt_level", "speed")], default_libcall_names())
                .map_err(backend)?;
        for shim in abi::shims() {
            builder.symbol(shim.name, shim.addr);
        }
        let mut module = JITModule::new(builder);
        let shims = translate::declare_shims(&mut module)?;
        Ok(Compiler {
            code: Code(Some(module)),
            shims,
            pool: Pool::default(),
            keep_clif,
            clif: Vec::new(),
            fctx: FunctionBuilderContext::new(),
            next: 0,
        })
    }

    fn module(&mut self) -> Result<&mut JITModule, CodegenError> {
        self.code
            .0
            .as_mut()
            .ok_or_else(|| CodegenError::Backend("the module is gone".into()))
    }

    fn run(mut self, program: &Program) -> Result<JitProgram, CodegenError> {
        let rows = program
            .events
            .iter()
            .map(|e| Layout::row(&e.fields))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pending_projections = Vec::new();
        for p in &program.projections {
            let layout = Layout::doc(&p.state)?;
            let mut pending = Vec::new();
            for (j, h) in p.handlers.iter().enumerate() {
                let row = rows
                    .get(h.event)
                    .ok_or_else(|| CodegenError::Backend("unknown event".into()))?;
                let label = format!("projection {} handler {j}", p.label(program));
                pending.push(self.define_handler(&label, h, row, Some(&layout))?);
            }
            pending_projections.push((layout, pending));
        }
        let mut pending_imports = Vec::new();
        for import in &program.imports {
            let import_rows = import
                .events
                .iter()
                .map(|e| Layout::row(&e.fields))
                .collect::<Result<Vec<_>, _>>()?;
            let mut pending = Vec::new();
            for (j, rule) in import.rules.iter().enumerate() {
                let row = import_rows
                    .get(rule.event)
                    .ok_or_else(|| CodegenError::Backend("unknown event".into()))?;
                let label = format!("import {} rule {j}", import.peer);
                pending.push(self.define_handler(&label, rule, row, None)?);
            }
            let names = import
                .events
                .iter()
                .map(|e| std::sync::Arc::from(e.name.as_str()))
                .collect::<Vec<_>>();
            pending_imports.push((import_rows, names, pending));
        }
        self.module()?.finalize_definitions().map_err(backend)?;
        let mut projections = Vec::new();
        for ((layout, pending), p) in pending_projections.into_iter().zip(&program.projections) {
            let handlers = self.resolve(pending)?;
            projections.push(project(program, p, layout, handlers));
        }
        let mut imports = Vec::new();
        for (rows, names, pending) in pending_imports {
            let rules = self.resolve(pending)?;
            imports.push(CompiledImport { rows, names, rules });
        }
        Ok(JitProgram {
            rows,
            projections,
            imports,
            pool: self.pool,
            clif: self.clif,
            text_meta: program.reads_text_meta(),
            _code: self.code,
        })
    }

    fn resolve(&mut self, pending: Vec<Pending>) -> Result<Vec<CompiledHandler>, CodegenError> {
        let module = self.module()?;
        let pointer = |id: FuncId| -> HandlerFn {
            let p = module.get_finalized_function(id);
            // SAFETY: `id` was defined with `handler_signature`, which is exactly the
            // C ABI of `HandlerFn`, and the module has been finalized.
            unsafe { std::mem::transmute::<*const u8, HandlerFn>(p) }
        };
        Ok(pending
            .into_iter()
            .map(|p| CompiledHandler {
                event: p.event,
                key: p.key.map(pointer),
                key_words: p.key_words,
                body: pointer(p.body),
                span: p.span,
            })
            .collect())
    }

    fn define_handler(
        &mut self,
        label: &str,
        h: &Handler,
        row: &Layout,
        doc: Option<&Layout>,
    ) -> Result<Pending, CodegenError> {
        let key = if h.key.is_empty() {
            None
        } else {
            Some(self.define(&format!("{label} key"), h, row, None, Kind::Key)?)
        };
        let body = self.define(label, h, row, doc, Kind::Body)?;
        Ok(Pending {
            event: h.event,
            key,
            key_words: key_row_words(h, row),
            body,
            span: h.span,
        })
    }

    fn define(
        &mut self,
        label: &str,
        h: &Handler,
        row: &Layout,
        doc: Option<&Layout>,
        kind: Kind,
    ) -> Result<FuncId, CodegenError> {
        self.next += 1;
        let name = format!("f{}", self.next);
        let module = self
            .code
            .0
            .as_mut()
            .ok_or_else(|| CodegenError::Backend("the module is gone".into()))?;
        let sig = translate::handler_signature(module);
        let id = module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(backend)?;
        let mut ctx: Context = module.make_context();
        ctx.func.signature = sig;
        ctx.func.name = UserFuncName::user(0, self.next);
        {
            let b = FunctionBuilder::new(&mut ctx.func, &mut self.fctx);
            let t = Translator::new(b, module, &self.shims, &mut self.pool, row, doc, &h.locals)?;
            match kind {
                Kind::Key => t.translate_key(h)?,
                Kind::Body => t.translate_body(h)?,
            }
        }
        if self.keep_clif {
            self.clif
                .push((label.to_owned(), translate::display(&ctx.func)));
        }
        module.define_function(id, &mut ctx).map_err(backend)?;
        module.clear_context(&mut ctx);
        Ok(id)
    }
}

/// The row words of a key made only of event fields whose row word is exactly the word
/// the key function would write (an integer-like value, or a string's handle).
fn key_row_words(h: &Handler, row: &Layout) -> Option<Box<[usize]>> {
    if h.key.is_empty() {
        return None;
    }
    h.key
        .iter()
        .map(|expr| match (&expr.kind, &expr.ty) {
            (
                ExprKind::EventField(field),
                Type::Int | Type::Timestamp | Type::Duration | Type::String,
            ) => match row.slots.get(*field)? {
                Slot::Inline {
                    offset,
                    repr: Repr::Int | Repr::Ref,
                } => usize::try_from(*offset / 8).ok(),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn project(
    program: &Program,
    p: &crate::ir::Projection,
    layout: Layout,
    handlers: Vec<CompiledHandler>,
) -> CompiledProjection {
    let mut by_event = vec![Vec::new(); program.events.len()];
    for (j, h) in handlers.iter().enumerate() {
        if let Some(list) = by_event.get_mut(h.event) {
            list.push(j);
        }
    }
    let plans = by_event
        .iter()
        .map(|list| match list.as_slice() {
            [] => Plan::Skip,
            [one] => {
                let handler = *one;
                let h = handlers.get(handler);
                match h.and_then(|h| h.key_words.as_deref()) {
                    Some([word]) if p.key.first() == Some(&Type::String) => Plan::Text {
                        handler,
                        word: *word,
                    },
                    _ if h.is_some_and(|h| h.key.is_none() && h.key_words.is_none()) => {
                        Plan::Single { handler }
                    }
                    _ => Plan::Keyed { handler },
                }
            }
            _ => Plan::Many,
        })
        .collect();
    let default_doc = layout.encode_doc(&crate::exec::default_doc(p));
    CompiledProjection {
        layout,
        handlers,
        by_event,
        plans,
        default_doc,
        key: p.key.clone(),
    }
}
