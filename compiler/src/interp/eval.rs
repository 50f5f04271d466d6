//! Expression evaluation and statement execution over one event and one document.
//!
//! Invariant: a handler's changes reach the caller's documents only if it (and every
//! other handler of the same event) succeeds, so a trap changes nothing. Either the
//! handler runs on a private copy ([`super::fold::apply_event`]), or it runs in place
//! and every change to the document is recorded in the frame's undo log (the old value
//! it replaced, moved out, never copied), which the caller replays on a trap.
//! Reading a state field inside an index or a call borrows it, so neither costs a copy
//! of a collection.

use std::borrow::Cow;
use std::sync::Arc;

use datamesh_stdlib::{self as std_, Value, collections, math, string};

use crate::ast::{BinaryOp, Span, UnaryOp};
use crate::exec::{Meta, Trap};
use crate::ir::{DocRead, Expr, ExprKind, Field, MetaField, Mutation, NoReads, Place, Stmt, Type};

/// What the code being run can see.
pub(super) struct Frame<'a> {
    pub event: Option<&'a [Value]>,
    pub meta: Option<&'a Meta>,
    pub state_fields: &'a [Field],
    pub locals: Vec<Value>,
    /// Documents of all projections, for test expectations.
    pub docs: Option<&'a dyn DocLookup>,
    /// Events emitted by an import rule: local event id and row.
    pub emitted: Vec<(usize, Vec<Value>)>,
    /// How to undo each change made to the document so far, in order.
    pub undo: Vec<Undo>,
}

/// The inverse of one change to a document's field.
#[derive(Debug)]
pub(super) enum Undo {
    /// The field held this value (an assignment, or a collection cleared).
    Field(usize, Value),
    /// The map field had this entry at this key (`None`: no entry).
    MapEntry(usize, Value, Option<Value>),
    /// This element was inserted into the set field.
    SetInserted(usize, Value),
    /// An element was pushed onto the list field.
    ListPushed(usize),
    /// This element was removed from the set field.
    SetRemoved(usize, Value),
    /// This element was removed from the list field at this index.
    ListRemoved(usize, usize, Value),
}

/// Undoes `undo` (newest first) on `doc`.
pub(super) fn roll_back(doc: &mut [Value], undo: impl DoubleEndedIterator<Item = Undo>) {
    for change in undo.rev() {
        match change {
            Undo::Field(field, old) => {
                if let Some(slot) = doc.get_mut(field) {
                    *slot = old;
                }
            }
            Undo::MapEntry(field, key, old) => {
                if let Some(Value::Map(map)) = doc.get_mut(field) {
                    match old {
                        Some(old) => map.insert(key, old),
                        None => map.remove(&key),
                    };
                }
            }
            Undo::SetInserted(field, v) => {
                if let Some(Value::Set(set)) = doc.get_mut(field) {
                    set.remove(&v);
                }
            }
            Undo::ListPushed(field) => {
                if let Some(Value::List(list)) = doc.get_mut(field) {
                    list.pop();
                }
            }
            Undo::SetRemoved(field, v) => {
                if let Some(Value::Set(set)) = doc.get_mut(field) {
                    set.insert(v);
                }
            }
            Undo::ListRemoved(field, index, v) => {
                if let Some(Value::List(list)) = doc.get_mut(field)
                    && index <= list.len()
                {
                    list.insert(index, v);
                }
            }
        }
    }
}

/// Read access to projection documents from a test.
pub(super) trait DocLookup {
    /// The document of `projection` at `key`, if it exists.
    fn doc(&self, projection: usize, key: &[Value]) -> Option<Vec<Value>>;
}

/// How a body finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Normal,
    Delete,
}

type R<T> = Result<T, Trap>;

fn trap(kind: std_::Trap, span: Span) -> Trap {
    Trap { kind, span }
}

/// Evaluates an expression that needs no event, state or locals (defaults, test payloads).
///
/// # Errors
/// The trap the expression raised.
pub fn eval_const(expr: &Expr) -> R<Value> {
    let mut frame = Frame {
        event: None,
        meta: None,
        state_fields: &[],
        locals: Vec::new(),
        docs: None,
        emitted: Vec::new(),
        undo: Vec::new(),
    };
    eval(expr, &mut frame, None)
}

impl<'a> Frame<'a> {
    pub(super) fn new(
        event: Option<&'a [Value]>,
        meta: Option<&'a Meta>,
        state_fields: &'a [Field],
        locals: usize,
    ) -> Self {
        Frame {
            event,
            meta,
            state_fields,
            locals: vec![Value::None; locals],
            docs: None,
            emitted: Vec::new(),
            undo: Vec::new(),
        }
    }
}

/// Runs statements against a document.
pub(super) fn exec_block(
    stmts: &[Stmt],
    frame: &mut Frame<'_>,
    doc: &mut Option<&mut Vec<Value>>,
) -> R<Flow> {
    for stmt in stmts {
        if exec(stmt, frame, doc)? == Flow::Delete {
            return Ok(Flow::Delete);
        }
    }
    Ok(Flow::Normal)
}

fn exec(stmt: &Stmt, frame: &mut Frame<'_>, doc: &mut Option<&mut Vec<Value>>) -> R<Flow> {
    match stmt {
        Stmt::Let { slot, value } => {
            let v = eval(value, frame, doc.as_deref())?;
            if let Some(local) = frame.locals.get_mut(*slot) {
                *local = v;
            }
        }
        Stmt::Assign {
            target,
            op,
            value,
            span,
            ..
        } => {
            let v = eval(value, frame, doc.as_deref())?;
            match target {
                Place::State(field) => {
                    let Some(d) = doc.as_deref_mut() else {
                        return Ok(Flow::Normal);
                    };
                    let new = match op {
                        None => v,
                        Some(op) => binary_values(*op, d[*field].clone(), v, *span)?,
                    };
                    let old = std::mem::replace(&mut d[*field], new);
                    frame.undo.push(Undo::Field(*field, old));
                }
                Place::MapEntry(field, key) => {
                    let k = eval(key, frame, doc.as_deref())?;
                    let value_ty = match frame.state_fields.get(*field).map(|f| &f.ty) {
                        Some(Type::Map(_, v)) => (**v).clone(),
                        _ => Type::Error,
                    };
                    let Some(d) = doc.as_deref_mut() else {
                        return Ok(Flow::Normal);
                    };
                    if let Value::Map(map) = &mut d[*field] {
                        let new = match op {
                            None => v,
                            Some(op) => {
                                let old = map
                                    .get(&k)
                                    .cloned()
                                    .unwrap_or_else(|| value_ty.zero_value());
                                binary_values(*op, old, v, *span)?
                            }
                        };
                        let old = collections::set_entry(map, k.clone(), new)
                            .map_err(|kind| trap(kind, *span))?;
                        frame.undo.push(Undo::MapEntry(*field, k, old));
                    }
                }
            }
        }
        Stmt::If {
            cond,
            then,
            otherwise,
        } => {
            let branch = if truthy(&eval(cond, frame, doc.as_deref())?) {
                then
            } else {
                otherwise
            };
            return exec_block(branch, frame, doc);
        }
        Stmt::Delete => return Ok(Flow::Delete),
        Stmt::Emit { event, fields, .. } => {
            let row = fields
                .iter()
                .map(|f| eval(f, frame, doc.as_deref()))
                .collect::<R<Vec<_>>>()?;
            frame.emitted.push((*event, row));
        }
        Stmt::Mutate {
            field,
            op,
            args,
            span,
        } => {
            let arg = match args.first() {
                Some(a) => Some(eval(a, frame, doc.as_deref())?),
                None => None,
            };
            let Some(d) = doc.as_deref_mut() else {
                return Ok(Flow::Normal);
            };
            let target = &mut d[*field];
            let undo = &mut frame.undo;
            // The same changes as `collections::{insert, push, remove}`, each recorded.
            match (op, target, arg) {
                // Inserting a present element changes nothing (the last arm).
                (Mutation::Insert, Value::Set(set), Some(v)) if !set.contains(&v) => {
                    collections::insert(set, v.clone()).map_err(|kind| trap(kind, *span))?;
                    undo.push(Undo::SetInserted(*field, v));
                }
                (Mutation::Push, Value::List(list), Some(v)) => {
                    collections::push(list, v).map_err(|kind| trap(kind, *span))?;
                    undo.push(Undo::ListPushed(*field));
                }
                (Mutation::Remove, Value::Set(set), Some(v)) => {
                    if let Some(v) = set.take(&v) {
                        undo.push(Undo::SetRemoved(*field, v));
                    }
                }
                (Mutation::Remove, Value::Map(map), Some(k)) => {
                    if let Some(old) = map.remove(&k) {
                        undo.push(Undo::MapEntry(*field, k, Some(old)));
                    }
                }
                (Mutation::Remove, Value::List(list), Some(v)) => {
                    if let Some(index) = list.iter().position(|x| *x == v) {
                        let old = list.remove(index);
                        undo.push(Undo::ListRemoved(*field, index, old));
                    }
                }
                (Mutation::Clear, target @ (Value::Set(_) | Value::List(_) | Value::Map(_)), _) => {
                    let empty = match target {
                        Value::Set(_) => Value::Set(Default::default()),
                        Value::List(_) => Value::List(Vec::new()),
                        _ => Value::Map(Default::default()),
                    };
                    undo.push(Undo::Field(*field, std::mem::replace(target, empty)));
                }
                _ => {}
            }
        }
    }
    Ok(Flow::Normal)
}

/// Evaluates an expression, borrowing a state field instead of copying it.
fn eval_ref<'d, X: Reader>(
    expr: &Expr<X>,
    frame: &mut Frame<'_>,
    doc: Option<&'d Vec<Value>>,
) -> R<Cow<'d, Value>> {
    match (&expr.kind, doc) {
        (ExprKind::State(i), Some(d)) => {
            Ok(d.get(*i).map_or(Cow::Owned(Value::None), Cow::Borrowed))
        }
        _ => eval(expr, frame, doc).map(Cow::Owned),
    }
}

fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// Evaluates an expression.
pub(super) fn eval<X: Reader>(
    expr: &Expr<X>,
    frame: &mut Frame<'_>,
    doc: Option<&Vec<Value>>,
) -> R<Value> {
    let span = expr.span;
    Ok(match &expr.kind {
        ExprKind::Const(v) => v.clone(),
        ExprKind::EventField(i) => frame
            .event
            .and_then(|e| e.get(*i))
            .cloned()
            .unwrap_or(Value::None),
        ExprKind::Meta(m) => {
            let Some(meta) = frame.meta else {
                return Ok(Value::None);
            };
            match m {
                MetaField::Position => Value::Int(meta.position),
                MetaField::Time => Value::Timestamp(meta.time),
                MetaField::Stream => Value::Str(meta.stream.clone()),
                MetaField::Type => Value::Str(meta.event_type.clone()),
                MetaField::Id => Value::Str(meta.id.clone()),
            }
        }
        ExprKind::State(i) => doc.and_then(|d| d.get(*i)).cloned().unwrap_or(Value::None),
        ExprKind::Local(slot) => frame.locals.get(*slot).cloned().unwrap_or(Value::None),
        ExprKind::Unary(op, inner) => {
            let v = eval(inner, frame, doc)?;
            match (op, v) {
                (UnaryOp::Not, Value::Bool(b)) => Value::Bool(!b),
                (UnaryOp::Neg, Value::Int(i)) => {
                    Value::Int(math::neg_int(i).map_err(|k| trap(k, span))?)
                }
                (UnaryOp::Neg, Value::Float(f)) => Value::Float(-f),
                (UnaryOp::Neg, Value::Duration(d)) => Value::Duration(
                    d.checked_neg()
                        .ok_or_else(|| trap(std_::Trap::Overflow("negation"), span))?,
                ),
                (_, other) => other,
            }
        }
        ExprKind::Binary(BinaryOp::And, a, b) => {
            Value::Bool(truthy(&eval(a, frame, doc)?) && truthy(&eval(b, frame, doc)?))
        }
        ExprKind::Binary(BinaryOp::Or, a, b) => {
            Value::Bool(truthy(&eval(a, frame, doc)?) || truthy(&eval(b, frame, doc)?))
        }
        ExprKind::Binary(BinaryOp::Coalesce, a, b) => match eval(a, frame, doc)? {
            Value::None => eval(b, frame, doc)?,
            v => v,
        },
        ExprKind::Binary(op, a, b) => {
            let a = eval(a, frame, doc)?;
            let b = eval(b, frame, doc)?;
            binary_values(*op, a, b, span)?
        }
        ExprKind::If(c, a, b) => {
            if truthy(&eval(c, frame, doc)?) {
                eval(a, frame, doc)?
            } else {
                eval(b, frame, doc)?
            }
        }
        ExprKind::Call(f, args) => {
            let args = args
                .iter()
                .map(|a| eval_ref(a, frame, doc))
                .collect::<R<Vec<_>>>()?;
            let refs: Vec<&Value> = args.iter().map(|a| &**a).collect();
            crate::exec::builtin::call(*f, &refs, expr.ty == Type::Float)
                .map_err(|k| trap(k, span))?
        }
        ExprKind::Index(base, index) => {
            let base = eval_ref(base, frame, doc)?;
            let index = eval(index, frame, doc)?;
            match (&*base, index) {
                (Value::Map(m), k) => m.get(&k).cloned().unwrap_or(Value::None),
                (Value::List(l), Value::Int(i)) => {
                    collections::get(l, i).map_err(|k| trap(k, span))?
                }
                _ => Value::None,
            }
        }
        ExprKind::List(items) => {
            let values = items
                .iter()
                .map(|i| eval(i, frame, doc))
                .collect::<R<Vec<_>>>()?;
            // The checker types a list literal written into a set as that set.
            match expr.ty {
                Type::Set(_) => Value::Set(values.into_iter().collect()),
                _ => Value::List(values),
            }
        }
        ExprKind::Read(read) => read.read(frame, doc)?,
    })
}

/// What an expression reads beyond the event, the envelope, the state and locals, as
/// the interpreter evaluates it: nothing in an engine's expressions ([`NoReads`]), the
/// documents of the test being run ([`DocRead`], through the frame's `docs`).
pub(crate) trait Reader: Sized {
    /// The value read.
    fn read(&self, frame: &mut Frame<'_>, doc: Option<&Vec<Value>>) -> R<Value>;
}

impl Reader for NoReads {
    fn read(&self, _: &mut Frame<'_>, _: Option<&Vec<Value>>) -> R<Value> {
        match *self {}
    }
}

impl Reader for DocRead {
    fn read(&self, frame: &mut Frame<'_>, doc: Option<&Vec<Value>>) -> R<Value> {
        Ok(match self {
            DocRead::Doc { projection, key } => {
                let key = key
                    .iter()
                    .map(|k| eval(k, frame, doc))
                    .collect::<R<Vec<_>>>()?;
                match frame.docs.and_then(|d| d.doc(*projection, &key)) {
                    Some(fields) => Value::List(fields),
                    None => Value::None,
                }
            }
            DocRead::DocField(d, i) => {
                let key_text = doc_description(d, frame, doc)?;
                match eval(d, frame, doc)? {
                    Value::List(fields) => fields.get(*i).cloned().unwrap_or(Value::None),
                    _ => {
                        return Err(trap(
                            std_::Trap::OutOfRange(format!("no document {key_text}")),
                            d.span,
                        ));
                    }
                }
            }
            DocRead::DocExists(d) => Value::Bool(!matches!(eval(d, frame, doc)?, Value::None)),
        })
    }
}

/// `balances["a1"]` for a failure message.
fn doc_description(
    d: &Expr<DocRead>,
    frame: &mut Frame<'_>,
    doc: Option<&Vec<Value>>,
) -> R<String> {
    let ExprKind::Read(DocRead::Doc { key, .. }) = &d.kind else {
        return Ok(String::new());
    };
    let parts = key
        .iter()
        .map(|k| eval(k, frame, doc))
        .collect::<R<Vec<_>>>()?;
    Ok(format!("at key {}", crate::exec::codec::key_string(&parts)))
}

/// Applies an arithmetic or comparison operator to two values.
pub(super) fn binary_values(op: BinaryOp, a: Value, b: Value, span: Span) -> R<Value> {
    use Value as V;
    let t = |k| trap(k, span);
    let ts = |r: Option<i64>, what| r.ok_or_else(|| trap(std_::Trap::Overflow(what), span));
    Ok(match (op, a, b) {
        (BinaryOp::Eq, V::Float(x), V::Float(y)) => V::Bool(x == y),
        (BinaryOp::Ne, V::Float(x), V::Float(y)) => V::Bool(x != y),
        (BinaryOp::Eq, x, y) => V::Bool(x == y),
        (BinaryOp::Ne, x, y) => V::Bool(x != y),
        (BinaryOp::Lt, V::Float(x), V::Float(y)) => V::Bool(x < y),
        (BinaryOp::Le, V::Float(x), V::Float(y)) => V::Bool(x <= y),
        (BinaryOp::Gt, V::Float(x), V::Float(y)) => V::Bool(x > y),
        (BinaryOp::Ge, V::Float(x), V::Float(y)) => V::Bool(x >= y),
        (BinaryOp::Lt, x, y) => V::Bool(x < y),
        (BinaryOp::Le, x, y) => V::Bool(x <= y),
        (BinaryOp::Gt, x, y) => V::Bool(x > y),
        (BinaryOp::Ge, x, y) => V::Bool(x >= y),
        (BinaryOp::Add, V::Int(x), V::Int(y)) => V::Int(math::add_int(x, y).map_err(t)?),
        (BinaryOp::Sub, V::Int(x), V::Int(y)) => V::Int(math::sub_int(x, y).map_err(t)?),
        (BinaryOp::Mul, V::Int(x), V::Int(y)) => V::Int(math::mul_int(x, y).map_err(t)?),
        (BinaryOp::Div, V::Int(x), V::Int(y)) => V::Int(math::div_int(x, y).map_err(t)?),
        (BinaryOp::Rem, V::Int(x), V::Int(y)) => V::Int(math::rem_int(x, y).map_err(t)?),
        (BinaryOp::Add, V::Float(x), V::Float(y)) => V::Float(math::add_float(x, y).map_err(t)?),
        (BinaryOp::Sub, V::Float(x), V::Float(y)) => V::Float(math::sub_float(x, y).map_err(t)?),
        (BinaryOp::Mul, V::Float(x), V::Float(y)) => V::Float(math::mul_float(x, y).map_err(t)?),
        (BinaryOp::Div, V::Float(x), V::Float(y)) => V::Float(math::div_float(x, y).map_err(t)?),
        (BinaryOp::Rem, V::Float(x), V::Float(y)) => V::Float(math::rem_float(x, y).map_err(t)?),
        (BinaryOp::Add, V::Str(x), V::Str(y)) => {
            V::Str(Arc::from(string::concat(&[&x, &y]).map_err(t)?))
        }
        (BinaryOp::Add, V::Duration(x), V::Duration(y)) => {
            V::Duration(ts(x.checked_add(y), "duration arithmetic")?)
        }
        (BinaryOp::Sub, V::Duration(x), V::Duration(y)) => {
            V::Duration(ts(x.checked_sub(y), "duration arithmetic")?)
        }
        (BinaryOp::Add, V::Timestamp(x), V::Duration(y))
        | (BinaryOp::Add, V::Duration(y), V::Timestamp(x)) => {
            V::Timestamp(ts(x.checked_add(y), "timestamp arithmetic")?)
        }
        (BinaryOp::Sub, V::Timestamp(x), V::Duration(y)) => {
            V::Timestamp(ts(x.checked_sub(y), "timestamp arithmetic")?)
        }
        (BinaryOp::Sub, V::Timestamp(x), V::Timestamp(y)) => {
            V::Duration(ts(x.checked_sub(y), "timestamp arithmetic")?)
        }
        (BinaryOp::Mul, V::Duration(x), V::Int(y)) | (BinaryOp::Mul, V::Int(y), V::Duration(x)) => {
            V::Duration(ts(x.checked_mul(y), "duration arithmetic")?)
        }
        (BinaryOp::Div, V::Duration(x), V::Int(y)) => V::Duration(math::div_int(x, y).map_err(t)?),
        // Traps like int division: by a zero duration, and `i64::MIN / -1`.
        (BinaryOp::Div, V::Duration(x), V::Duration(y)) => V::Int(math::div_int(x, y).map_err(t)?),
        (op, a, b) => {
            return Err(trap(
                std_::Trap::InvalidConversion(format!(
                    "`{}` on {} and {}",
                    op.symbol(),
                    a.type_name(),
                    b.type_name()
                )),
                span,
            ));
        }
    })
}
