//! The run-time interface of generated code: the context block, the envelope block and
//! the `extern "C"` helpers (shims) that compiled handlers call.
//!
//! Invariant: every helper computes its result with the same `datamesh_stdlib` function
//! the interpreter uses for that operation, so both engines produce identical values and
//! identical traps. Helpers never unwind: a failure is recorded in the [`Ctx`] (its
//! `trapped` word set to 1) and the generated code checks that word after each fallible
//! call. Pointers handed to helpers come from the fold that owns the [`Ctx`] and stay
//! valid for the duration of one handler call.

use std::sync::Arc;

use datamesh_stdlib::{self as std_, Value, collections, math, string};

use crate::ir::Builtin;

/// Handler returned normally.
pub const STATUS_OK: u32 = 0;
/// Handler executed `delete`.
pub const STATUS_DELETE: u32 = 1;
/// The `where` guard was false: the handler did nothing.
pub const STATUS_SKIP: u32 = 2;
/// A trap: its kind and span index are in [`Ctx::trap`].
pub const STATUS_TRAP: u32 = 3;

/// Byte offset of [`Ctx::trapped`].
pub const CTX_TRAPPED: i32 = 0;
/// Byte offset of [`Ctx::heap`].
pub const CTX_HEAP: i32 = 8;
/// Byte offset of [`Ctx::none`].
pub const CTX_NONE: i32 = 16;
/// Byte offset of [`Ctx::key`].
pub const CTX_KEY: i32 = 24;

/// Byte offsets of the fields of [`MetaAbi`].
pub const META_POSITION: i32 = 0;
/// `meta.time`.
pub const META_TIME: i32 = 8;
/// `meta.stream`.
pub const META_STREAM: i32 = 16;
/// `meta.type`.
pub const META_TYPE: i32 = 24;
/// `meta.id`.
pub const META_ID: i32 = 32;

/// A compiled handler, guard included; also the signature of key functions.
pub type HandlerFn = unsafe extern "C" fn(
    doc: *mut u64,
    row: *const u64,
    meta: *const MetaAbi,
    ctx: *mut Ctx,
) -> u32;

/// The envelope as generated code reads it.
#[repr(C)]
#[derive(Debug)]
pub struct MetaAbi {
    /// Log position.
    pub position: i64,
    /// Append time, µs.
    pub time: i64,
    /// `meta.stream` as a string value.
    pub stream: *const Value,
    /// `meta.type` as a string value.
    pub event_type: *const Value,
    /// `meta.id` as a string value.
    pub id: *const Value,
}

/// The per-call context. The first four words are read by generated code at the fixed
/// offsets above; the rest is private to the helpers and the fold.
#[repr(C)]
#[derive(Debug)]
pub struct Ctx {
    /// Set to 1 by a helper that trapped.
    pub trapped: u64,
    /// The heap array of the document being updated (null for import rules).
    pub heap: *mut Value,
    /// A `Value::None` the code can point at.
    pub none: *const Value,
    /// Where key functions write the key components (one word each).
    pub key: *mut u64,
    /// The trap a helper recorded: its kind and the span-table index of the expression.
    pub trap: Option<(std_::Trap, u32)>,
    /// Values created during one handler call; freed after each projection's run.
    pub arena: Vec<Box<Value>>,
    /// Rows emitted by an import rule.
    pub emitted: Vec<(usize, Vec<Value>)>,
    /// The row an `emit` is building.
    pub emit_row: Vec<Value>,
    /// How to undo each change the current call made to document fields, in order.
    pub undo: Vec<Undo>,
    none_value: Box<Value>,
    key_words: Vec<u64>,
}

impl Ctx {
    /// A context whose key buffer holds `key_len` components.
    pub fn new(key_len: usize) -> Box<Ctx> {
        let none_value = Box::new(Value::None);
        let mut ctx = Box::new(Ctx {
            trapped: 0,
            heap: std::ptr::null_mut(),
            none: std::ptr::null(),
            key: std::ptr::null_mut(),
            trap: None,
            arena: Vec::new(),
            emitted: Vec::new(),
            emit_row: Vec::new(),
            undo: Vec::new(),
            none_value,
            key_words: vec![0; key_len.max(1)],
        });
        ctx.none = &raw const *ctx.none_value;
        ctx.key = ctx.key_words.as_mut_ptr();
        ctx
    }

    /// The key components the last key function wrote.
    pub fn key_words(&self) -> &[u64] {
        &self.key_words
    }

    /// Prepares for one handler call on a document's heap (or none).
    #[inline(always)]
    pub fn reset(&mut self, heap: *mut Value) {
        self.heap = heap;
        // After a call that neither trapped nor changed a handle field (nearly every
        // call) there is nothing to clear: three loads, no call.
        if self.trapped != 0 || self.trap.is_some() || !self.undo.is_empty() {
            self.clear_outcome();
        }
    }

    #[cold]
    #[inline(never)]
    fn clear_outcome(&mut self) {
        self.trapped = 0;
        self.trap = None;
        self.undo.clear();
    }

    /// Undoes, newest first, every change the last call made to document fields.
    ///
    /// # Safety
    /// The fields the last call changed must still be where they were (nothing may have
    /// moved or dropped the document's heap array since).
    pub unsafe fn roll_back(&mut self) {
        // SAFETY: the caller guarantees the recorded fields are live.
        unsafe { undo_all(&mut self.undo) };
    }

    pub(super) fn record(&mut self, kind: std_::Trap, span: u32) {
        if self.trap.is_none() {
            self.trap = Some((kind, span));
        }
        self.trapped = 1;
    }

    fn alloc(&mut self, value: Value) -> *const Value {
        self.arena.push(Box::new(value));
        match self.arena.last() {
            Some(b) => &raw const **b,
            None => self.none,
        }
    }
}

/// Reads a value behind a pointer handed out by the fold.
///
/// # Safety
/// `p` must be null or point to a live `Value` (row, document heap, constant pool or
/// arena), which the fold guarantees for every pointer generated code passes.
unsafe fn val<'a>(p: *const Value) -> &'a Value {
    static NONE: Value = Value::None;
    // SAFETY: the caller guarantees `p` is null or valid for the handler call.
    unsafe { p.as_ref() }.unwrap_or(&NONE)
}

/// The context behind the pointer generated code passes.
///
/// # Safety
/// `ctx` must be the fold's live, exclusively borrowed context.
unsafe fn cx<'a>(ctx: *mut Ctx) -> Option<&'a mut Ctx> {
    // SAFETY: the caller guarantees `ctx` is the fold's context or null.
    unsafe { ctx.as_mut() }
}

/// Integer-like trap codes used by [`dm_trap_int`].
pub mod int_op {
    /// `math::add_int`.
    pub const ADD: i32 = 0;
    /// `math::sub_int`.
    pub const SUB: i32 = 1;
    /// `math::mul_int`.
    pub const MUL: i32 = 2;
    /// `math::div_int`.
    pub const DIV: i32 = 3;
    /// `math::rem_int`.
    pub const REM: i32 = 4;
    /// `math::neg_int`.
    pub const NEG: i32 = 5;
    /// Duration arithmetic overflow.
    pub const DURATION: i32 = 6;
    /// Timestamp arithmetic overflow.
    pub const TIMESTAMP: i32 = 7;
    /// Duration negation overflow.
    pub const NEG_DURATION: i32 = 8;
}

fn int_trap(code: i32, a: i64, b: i64) -> std_::Trap {
    let result = match code {
        int_op::ADD => math::add_int(a, b),
        int_op::SUB => math::sub_int(a, b),
        int_op::MUL => math::mul_int(a, b),
        int_op::DIV => math::div_int(a, b),
        int_op::REM => math::rem_int(a, b),
        int_op::NEG => math::neg_int(a),
        int_op::DURATION => Err(std_::Trap::Overflow("duration arithmetic")),
        int_op::TIMESTAMP => Err(std_::Trap::Overflow("timestamp arithmetic")),
        _ => Err(std_::Trap::Overflow("negation")),
    };
    result
        .err()
        .unwrap_or(std_::Trap::Overflow("integer operation"))
}

/// Records the trap of a failed inline integer operation, computed by the same stdlib
/// function (or with the same message) the interpreter uses.
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_trap_int(ctx: *mut Ctx, code: i32, a: i64, b: i64, span: u32) {
    // SAFETY: generated code passes the context it was given.
    if let Some(ctx) = unsafe { cx(ctx) } {
        ctx.record(int_trap(code, a, b), span);
    }
}

/// Records the trap of a float operation whose inline result was not finite.
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_trap_float(ctx: *mut Ctx, code: i32, a: f64, b: f64, span: u32) {
    let result = match code {
        int_op::ADD => math::add_float(a, b),
        int_op::SUB => math::sub_float(a, b),
        int_op::MUL => math::mul_float(a, b),
        _ => math::div_float(a, b),
    };
    let kind = result
        .err()
        .unwrap_or(std_::Trap::NonFinite("float operation"));
    // SAFETY: generated code passes the context it was given.
    if let Some(ctx) = unsafe { cx(ctx) } {
        ctx.record(kind, span);
    }
}

/// Float remainder (Cranelift has no instruction for it) through `math::rem_float`.
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_rem_float(ctx: *mut Ctx, a: f64, b: f64, span: u32) -> f64 {
    match math::rem_float(a, b) {
        Ok(r) => r,
        Err(kind) => {
            // SAFETY: generated code passes the context it was given.
            if let Some(ctx) = unsafe { cx(ctx) } {
                ctx.record(kind, span);
            }
            0.0
        }
    }
}

fn int_value(tag: i64, x: i64) -> Value {
    match tag {
        1 => Value::Timestamp(x),
        2 => Value::Duration(x),
        _ => Value::Int(x),
    }
}

/// Boxes an integer-like value (`tag`: 0 int, 1 timestamp, 2 duration) into the arena,
/// or returns the none value when `present` is 0.
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_box_int(ctx: *mut Ctx, tag: i64, present: i8, x: i64) -> *const Value {
    // SAFETY: generated code passes the context it was given.
    let Some(ctx) = (unsafe { cx(ctx) }) else {
        return std::ptr::null();
    };
    if present == 0 {
        return ctx.none;
    }
    ctx.alloc(int_value(tag, x))
}

/// Boxes a float (or none).
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_box_float(ctx: *mut Ctx, present: i8, x: f64) -> *const Value {
    // SAFETY: generated code passes the context it was given.
    let Some(ctx) = (unsafe { cx(ctx) }) else {
        return std::ptr::null();
    };
    if present == 0 {
        return ctx.none;
    }
    ctx.alloc(Value::Float(x))
}

/// Boxes a bool (or none).
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_box_bool(ctx: *mut Ctx, present: i8, x: i8) -> *const Value {
    // SAFETY: generated code passes the context it was given.
    let Some(ctx) = (unsafe { cx(ctx) }) else {
        return std::ptr::null();
    };
    if present == 0 {
        return ctx.none;
    }
    ctx.alloc(Value::Bool(x != 0))
}

/// The i64 inside an int, timestamp or duration value (0 otherwise).
///
/// # Safety
/// `p` must be a valid value pointer.
pub unsafe extern "C" fn dm_as_int(p: *const Value) -> i64 {
    // SAFETY: generated code passes live value pointers.
    match unsafe { val(p) } {
        Value::Int(i) | Value::Timestamp(i) | Value::Duration(i) => *i,
        _ => 0,
    }
}

/// The f64 inside a float value (0.0 otherwise).
///
/// # Safety
/// `p` must be a valid value pointer.
pub unsafe extern "C" fn dm_as_float(p: *const Value) -> f64 {
    // SAFETY: generated code passes live value pointers.
    match unsafe { val(p) } {
        Value::Float(f) => *f,
        _ => 0.0,
    }
}

/// 1 for `true`, else 0.
///
/// # Safety
/// `p` must be a valid value pointer.
pub unsafe extern "C" fn dm_as_bool(p: *const Value) -> i8 {
    // SAFETY: generated code passes live value pointers.
    i8::from(matches!(unsafe { val(p) }, Value::Bool(true)))
}

/// 1 when the value is not `none`.
///
/// # Safety
/// `p` must be a valid value pointer.
pub unsafe extern "C" fn dm_is_some(p: *const Value) -> i8 {
    // SAFETY: generated code passes live value pointers.
    i8::from(!matches!(unsafe { val(p) }, Value::None))
}

/// Copies a value into the arena, so a `let` keeps it even if the document changes.
///
/// # Safety
/// `ctx` must be the fold's context and `p` a valid value pointer.
pub unsafe extern "C" fn dm_clone(ctx: *mut Ctx, p: *const Value) -> *const Value {
    // SAFETY: generated code passes live value pointers.
    let v = unsafe { val(p) }.clone();
    // SAFETY: generated code passes the context it was given.
    match unsafe { cx(ctx) } {
        Some(ctx) => ctx.alloc(v),
        None => std::ptr::null(),
    }
}

/// Stores a copy of `src` into the document field `dst` (the old value is kept for
/// rollback).
///
/// # Safety
/// `ctx` must be the fold's context, `dst` point into the current document's heap and
/// `src` be a valid value pointer.
pub unsafe extern "C" fn dm_assign(ctx: *mut Ctx, dst: *mut Value, src: *const Value) {
    // SAFETY: the clone is taken before the write, so `src == dst` is fine.
    let v = unsafe { val(src) }.clone();
    // SAFETY: `dst` is a live heap slot of the document being updated.
    if let Some(d) = unsafe { dst.as_mut() } {
        let old = std::mem::replace(d, v);
        remember(ctx, Undo::Replace(dst, old));
    }
}

/// `==` on two values, as the interpreter computes it (floats with IEEE equality).
///
/// # Safety
/// `a` and `b` must be valid value pointers.
pub unsafe extern "C" fn dm_value_eq(a: *const Value, b: *const Value) -> i8 {
    // SAFETY: generated code passes live value pointers.
    let (a, b) = unsafe { (val(a), val(b)) };
    i8::from(match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y,
        _ => a == b,
    })
}

/// The order of two values: -1, 0 or 1 (as `Value`'s total order).
///
/// # Safety
/// `a` and `b` must be valid value pointers.
pub unsafe extern "C" fn dm_value_cmp(a: *const Value, b: *const Value) -> i32 {
    // SAFETY: generated code passes live value pointers.
    let (a, b) = unsafe { (val(a), val(b)) };
    a.cmp(b) as i32
}

fn as_str(v: &Value) -> &str {
    match v {
        Value::Str(s) => s,
        _ => "",
    }
}

/// String `+`: `string::concat`, as the interpreter (a result past the string limit
/// traps, before it is built).
///
/// # Safety
/// `ctx` must be the fold's context; `a` and `b` valid value pointers.
pub unsafe extern "C" fn dm_concat(
    ctx: *mut Ctx,
    a: *const Value,
    b: *const Value,
    span: u32,
) -> *const Value {
    // SAFETY: generated code passes live value pointers.
    let (a, b) = unsafe { (val(a), val(b)) };
    let s = string::concat(&[as_str(a), as_str(b)]);
    // SAFETY: generated code passes the context it was given.
    let Some(ctx) = (unsafe { cx(ctx) }) else {
        return std::ptr::null();
    };
    match s {
        Ok(s) => ctx.alloc(Value::Str(Arc::from(s))),
        Err(kind) => {
            ctx.record(kind, span);
            ctx.none
        }
    }
}

/// Calls builtin number `f` on `n` value pointers at `args`; the result is in the
/// arena. On a trap, records it and returns the none value.
///
/// # Safety
/// `ctx` must be the fold's context; `args` must point to `n` valid value pointers.
pub unsafe extern "C" fn dm_call(
    ctx: *mut Ctx,
    f: u32,
    args: *const *const Value,
    n: u32,
    ret_float: i8,
    span: u32,
) -> *const Value {
    let count = usize::try_from(n).unwrap_or(0);
    let pointers: &[*const Value] = if args.is_null() || count == 0 {
        &[]
    } else {
        // SAFETY: generated code stores `n` pointers in a stack slot at `args`.
        unsafe { std::slice::from_raw_parts(args, count) }
    };
    // SAFETY: every stored pointer is a live value pointer.
    let values: Vec<&Value> = pointers.iter().map(|p| unsafe { val(*p) }).collect();
    // SAFETY: generated code passes the context it was given.
    let Some(ctx) = (unsafe { cx(ctx) }) else {
        return std::ptr::null();
    };
    // A number no builtin has is a code generator bug: trap rather than call
    // another function.
    let Some(builtin) = Builtin::from_index(f) else {
        ctx.record(
            std_::Trap::OutOfRange(format!("internal error: no builtin number {f}")),
            span,
        );
        return ctx.none;
    };
    let result = crate::exec::builtin::call(builtin, &values, ret_float != 0);
    match result {
        Ok(v) => ctx.alloc(v),
        Err(kind) => {
            ctx.record(kind, span);
            ctx.none
        }
    }
}

/// `base[index]`: a map lookup (none when absent) or a checked list index.
///
/// # Safety
/// `ctx` must be the fold's context; `base` and `index` valid value pointers.
pub unsafe extern "C" fn dm_index(
    ctx: *mut Ctx,
    base: *const Value,
    index: *const Value,
    span: u32,
) -> *const Value {
    // SAFETY: generated code passes live value pointers.
    let (base, index) = unsafe { (val(base), val(index)) };
    let result = match (base, index) {
        (Value::Map(m), k) => Ok(m.get(k).cloned().unwrap_or(Value::None)),
        (Value::List(l), Value::Int(i)) => collections::get(l, *i),
        _ => Ok(Value::None),
    };
    // SAFETY: generated code passes the context it was given.
    let Some(ctx) = (unsafe { cx(ctx) }) else {
        return std::ptr::null();
    };
    match result {
        Ok(v) => ctx.alloc(v),
        Err(kind) => {
            ctx.record(kind, span);
            ctx.none
        }
    }
}

/// A fresh empty list in the arena, for a list literal.
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_list_new(ctx: *mut Ctx) -> *mut Value {
    // SAFETY: generated code passes the context it was given.
    match unsafe { cx(ctx) } {
        Some(ctx) => ctx.alloc(Value::List(Vec::new())).cast_mut(),
        None => std::ptr::null_mut(),
    }
}

/// Appends a copy of `item` to a list literal under construction.
///
/// # Safety
/// `list` must come from [`dm_list_new`] in this call; `item` a valid value pointer.
pub unsafe extern "C" fn dm_list_push(list: *mut Value, item: *const Value) {
    // SAFETY: generated code passes live value pointers.
    let item = unsafe { val(item) }.clone();
    // SAFETY: the list is an arena value only this literal refers to so far.
    if let Some(Value::List(l)) = unsafe { list.as_mut() } {
        l.push(item);
    }
}

/// `map[key] = value` on a document field (the old entry is kept for rollback); a new
/// key in a full map traps (`collections::set_entry`).
///
/// # Safety
/// `ctx` must be the fold's context, `map` point into the current document's heap;
/// `key`, `value` valid pointers.
pub unsafe extern "C" fn dm_map_set(
    ctx: *mut Ctx,
    map: *mut Value,
    key: *const Value,
    value: *const Value,
    span: u32,
) {
    // SAFETY: generated code passes live value pointers; both are cloned before the write.
    let (k, v) = unsafe { (val(key).clone(), val(value).clone()) };
    // SAFETY: `map` is a live heap slot of the document being updated.
    if let Some(Value::Map(m)) = unsafe { map.as_mut() } {
        match collections::set_entry(m, k.clone(), v) {
            Ok(old) => remember(ctx, Undo::MapEntry(map, k, old)),
            Err(kind) => record(ctx, kind, span),
        }
    }
}

/// The entry of a map field, or `zero` when absent (for compound assignment).
///
/// # Safety
/// `ctx` must be the fold's context; the other pointers valid value pointers.
pub unsafe extern "C" fn dm_map_get_or(
    ctx: *mut Ctx,
    map: *const Value,
    key: *const Value,
    zero: *const Value,
) -> *const Value {
    // SAFETY: generated code passes live value pointers.
    let (map, key, zero) = unsafe { (val(map), val(key), val(zero)) };
    let v = match map {
        Value::Map(m) => m.get(key).cloned().unwrap_or_else(|| zero.clone()),
        _ => zero.clone(),
    };
    // SAFETY: generated code passes the context it was given.
    match unsafe { cx(ctx) } {
        Some(ctx) => ctx.alloc(v),
        None => std::ptr::null(),
    }
}

/// The inverse of one change to a document field, recorded by the helper that made it
/// so a trap can be rolled back in time proportional to what changed (a document's
/// collections are never copied whole for that). The pointer is the field.
#[derive(Debug)]
pub enum Undo {
    /// Put this value back.
    Replace(*mut Value, Value),
    /// Give this map key its old entry back (none: remove it).
    MapEntry(*mut Value, Value, Option<Value>),
    /// Take this value back out of a set.
    SetInserted(*mut Value, Value),
    /// Pop the last element of a list.
    ListPushed(*mut Value),
    /// Put this value back into a set.
    SetRemoved(*mut Value, Value),
    /// Put this element back into a list at this index.
    ListRemoved(*mut Value, usize, Value),
}

impl Undo {
    /// # Safety
    /// The field must be live.
    unsafe fn apply(self) {
        let field = match &self {
            Undo::Replace(p, _)
            | Undo::MapEntry(p, ..)
            | Undo::SetInserted(p, _)
            | Undo::ListPushed(p)
            | Undo::SetRemoved(p, _)
            | Undo::ListRemoved(p, ..) => *p,
        };
        // SAFETY: the caller guarantees the field is live.
        let Some(field) = (unsafe { field.as_mut() }) else {
            return;
        };
        match (self, field) {
            (Undo::Replace(_, old), field) => *field = old,
            (Undo::MapEntry(_, key, old), Value::Map(m)) => match old {
                Some(old) => {
                    m.insert(key, old);
                }
                None => {
                    m.remove(&key);
                }
            },
            (Undo::SetInserted(_, v), Value::Set(s)) => {
                s.remove(&v);
            }
            (Undo::ListPushed(_), Value::List(l)) => {
                l.pop();
            }
            (Undo::SetRemoved(_, v), Value::Set(s)) => {
                s.insert(v);
            }
            (Undo::ListRemoved(_, at, v), Value::List(l)) => l.insert(at.min(l.len()), v),
            _ => {}
        }
    }
}

/// Applies and empties an undo log, newest entry first.
///
/// # Safety
/// Every field the entries point to must be live.
pub unsafe fn undo_all(log: &mut Vec<Undo>) {
    while let Some(undo) = log.pop() {
        // SAFETY: the caller guarantees the fields are live.
        unsafe { undo.apply() };
    }
}

/// Records a trap a document helper met (nothing when there is no context).
fn record(ctx: *mut Ctx, kind: std_::Trap, span: u32) {
    // SAFETY: generated code passes the context it was given.
    if let Some(ctx) = unsafe { cx(ctx) } {
        ctx.record(kind, span);
    }
}

/// Records how to undo a change (nothing when there is no context).
fn remember(ctx: *mut Ctx, undo: Undo) {
    // SAFETY: generated code passes the context it was given.
    if let Some(ctx) = unsafe { cx(ctx) } {
        ctx.undo.push(undo);
    }
}

/// Mutation codes for [`dm_mutate`].
pub mod mutation {
    /// `insert`.
    pub const INSERT: u32 = 0;
    /// `push`.
    pub const PUSH: u32 = 1;
    /// `remove`.
    pub const REMOVE: u32 = 2;
    /// `clear`.
    pub const CLEAR: u32 = 3;
}

/// An in-place collection update of a document field, as the interpreter does it (with
/// its inverse kept for rollback); `push` onto a full list or `insert` of a new element
/// into a full set traps.
///
/// # Safety
/// `ctx` must be the fold's context, `target` point into the current document's heap;
/// `arg` null or a valid pointer.
pub unsafe extern "C" fn dm_mutate(
    ctx: *mut Ctx,
    op: u32,
    target: *mut Value,
    arg: *const Value,
    span: u32,
) {
    let field = target;
    let arg = if arg.is_null() {
        None
    } else {
        // SAFETY: a non-null argument is a live value pointer.
        Some(unsafe { val(arg) }.clone())
    };
    // SAFETY: `target` is a live heap slot of the document being updated.
    let Some(target) = (unsafe { target.as_mut() }) else {
        return;
    };
    let undo = match (op, target, arg) {
        (mutation::INSERT, Value::Set(set), Some(v)) => match collections::insert(set, v.clone()) {
            Ok(added) => added.then_some(Undo::SetInserted(field, v)),
            Err(kind) => return record(ctx, kind, span),
        },
        (mutation::PUSH, Value::List(list), Some(v)) => match collections::push(list, v) {
            Ok(()) => Some(Undo::ListPushed(field)),
            Err(kind) => return record(ctx, kind, span),
        },
        (mutation::REMOVE, Value::Set(set), Some(v)) => {
            set.take(&v).map(|old| Undo::SetRemoved(field, old))
        }
        (mutation::REMOVE, Value::Map(map), Some(k)) => map
            .remove(&k)
            .map(|old| Undo::MapEntry(field, k, Some(old))),
        (mutation::REMOVE, Value::List(list), Some(v)) => list
            .iter()
            .position(|x| *x == v)
            .map(|at| Undo::ListRemoved(field, at, list.remove(at))),
        (mutation::CLEAR, target @ (Value::Set(_) | Value::List(_) | Value::Map(_)), _) => {
            let empty = match target {
                Value::Set(_) => Value::Set(Default::default()),
                Value::List(_) => Value::List(Vec::new()),
                _ => Value::Map(Default::default()),
            };
            Some(Undo::Replace(field, std::mem::replace(target, empty)))
        }
        _ => None,
    };
    if let Some(undo) = undo {
        remember(ctx, undo);
    }
}

/// Starts building an emitted row.
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_emit_begin(ctx: *mut Ctx) {
    // SAFETY: generated code passes the context it was given.
    if let Some(ctx) = unsafe { cx(ctx) } {
        ctx.emit_row.clear();
    }
}

/// Adds the next field of an emitted row.
///
/// # Safety
/// `ctx` must be the fold's context; `v` a valid value pointer.
pub unsafe extern "C" fn dm_emit_push(ctx: *mut Ctx, v: *const Value) {
    // SAFETY: generated code passes live value pointers.
    let v = unsafe { val(v) }.clone();
    // SAFETY: generated code passes the context it was given.
    if let Some(ctx) = unsafe { cx(ctx) } {
        ctx.emit_row.push(v);
    }
}

/// Finishes an emitted row of local event `event`.
///
/// # Safety
/// `ctx` must be the fold's context.
pub unsafe extern "C" fn dm_emit_end(ctx: *mut Ctx, event: u32) {
    // SAFETY: generated code passes the context it was given.
    if let Some(ctx) = unsafe { cx(ctx) } {
        let row = std::mem::take(&mut ctx.emit_row);
        ctx.emitted
            .push((usize::try_from(event).unwrap_or(usize::MAX), row));
    }
}

/// Argument and return types of a helper, as Cranelift sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A pointer or i64.
    I64,
    /// i32 / u32.
    I32,
    /// i8 (bools, flags).
    I8,
    /// f64.
    F64,
}

/// A helper: its symbol, address, parameters and optional result.
#[derive(Debug, Clone, Copy)]
pub struct Shim {
    /// Symbol name.
    pub name: &'static str,
    /// Address.
    pub addr: *const u8,
    /// Parameter types.
    pub params: &'static [Arg],
    /// Result type.
    pub ret: Option<Arg>,
}

macro_rules! shim {
    ($f:ident, [$($p:ident),*], $r:expr) => {
        Shim { name: stringify!($f), addr: $f as *const u8, params: &[$(Arg::$p),*], ret: $r }
    };
}

/// Every helper generated code may call.
pub fn shims() -> Vec<Shim> {
    use Arg::{F64, I8, I32, I64};
    vec![
        shim!(dm_trap_int, [I64, I32, I64, I64, I32], None),
        shim!(dm_trap_float, [I64, I32, F64, F64, I32], None),
        shim!(dm_rem_float, [I64, F64, F64, I32], Some(F64)),
        shim!(dm_box_int, [I64, I64, I8, I64], Some(I64)),
        shim!(dm_box_float, [I64, I8, F64], Some(I64)),
        shim!(dm_box_bool, [I64, I8, I8], Some(I64)),
        shim!(dm_as_int, [I64], Some(I64)),
        shim!(dm_as_float, [I64], Some(F64)),
        shim!(dm_as_bool, [I64], Some(I8)),
        shim!(dm_is_some, [I64], Some(I8)),
        shim!(dm_clone, [I64, I64], Some(I64)),
        shim!(dm_assign, [I64, I64, I64], None),
        shim!(dm_value_eq, [I64, I64], Some(I8)),
        shim!(dm_value_cmp, [I64, I64], Some(I32)),
        shim!(dm_concat, [I64, I64, I64, I32], Some(I64)),
        shim!(dm_call, [I64, I32, I64, I32, I8, I32], Some(I64)),
        shim!(dm_index, [I64, I64, I64, I32], Some(I64)),
        shim!(dm_list_new, [I64], Some(I64)),
        shim!(dm_list_push, [I64, I64], None),
        shim!(dm_map_set, [I64, I64, I64, I64, I32], None),
        shim!(dm_map_get_or, [I64, I64, I64, I64], Some(I64)),
        shim!(dm_mutate, [I64, I32, I64, I64, I32], None),
        shim!(dm_emit_begin, [I64], None),
        shim!(dm_emit_push, [I64, I64], None),
        shim!(dm_emit_end, [I64, I32], None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builtin_number_out_of_range_traps_instead_of_calling_another() {
        let mut ctx = Ctx::new(1);
        let value = Value::Int(7);
        let args = [&raw const value];
        let ctx_ptr: *mut Ctx = &raw mut *ctx;
        // SAFETY: `ctx` is a live context and `args` holds one live value pointer.
        let out = unsafe { dm_call(ctx_ptr, u32::MAX, args.as_ptr(), 1, 0, 3) };
        assert_eq!(out, ctx.none);
        assert_eq!(ctx.trapped, 1);
        assert!(
            matches!(&ctx.trap, Some((std_::Trap::OutOfRange(m), 3)) if m.contains("no builtin number")),
            "{:?}",
            ctx.trap
        );
    }
}
