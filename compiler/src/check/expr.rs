//! Checking expressions and statements inside one context: a handler, an import rule,
//! a key, a test step or a constant.
//!
//! Invariant: every function here returns a typed IR node even when the input is wrong;
//! a failed node has type [`Type::Error`] and the problem has been reported exactly once.

use crate::codes;
use datamesh_stdlib::Value;

use super::builtins::{self, CallError};
use super::names::suggest;
use crate::ast::{self, AssignOp, BinaryOp, Span, UnaryOp};
use crate::diag::Diagnostic;
use crate::ir::Builtin;
use crate::ir::{
    DocRead, EventType, Expr, ExprKind, Field, MetaField, Mutation, NoReads, Place, Program, Stmt,
    Type,
};

/// What a piece of code may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A projection handler: event, meta, state, locals.
    Handler,
    /// An import rule: the peer's event, meta, locals, `emit`.
    ImportRule,
    /// A test expectation: projections' documents.
    Test,
    /// A default value or a test payload: literals and pure functions only.
    Const,
}

struct Local {
    name: String,
    slot: usize,
    ty: Type,
    span: Span,
    used: bool,
}

/// The checking context of one body.
pub struct Cx<'a> {
    mode: Mode,
    diags: &'a mut Vec<Diagnostic>,
    /// The event in scope (`event.*`).
    pub event: Option<&'a EventType>,
    /// The state of the projection in scope.
    pub state: Option<&'a [Field]>,
    /// Local events an import rule may emit.
    pub emit_targets: Option<&'a [EventType]>,
    /// The program, for tests.
    pub program: Option<&'a Program>,
    /// State fields assigned anywhere in this body.
    pub assigned: Vec<bool>,
    /// Local events emitted by this body.
    pub emitted: Vec<usize>,
    scopes: Vec<Local>,
    slots: Vec<Type>,
}

/// What an expression being checked may read besides the event, the envelope, the state
/// and locals: documents (in a test's `expect`, [`DocRead`]) or nothing ([`NoReads`]).
/// The checker builds a document read only through these, which give `None` where
/// expressions cannot read documents (that case is reported before it gets here).
pub trait Reads: Sized + Clone + PartialEq + std::fmt::Debug {
    /// The document of `projection` at `key`.
    fn doc(projection: usize, key: Vec<Expr<Self>>) -> Option<Self>;
    /// State field `field` of a document.
    fn field(doc: Expr<Self>, field: usize) -> Option<Self>;
    /// Whether a document exists.
    fn exists(doc: Expr<Self>) -> Option<Self>;
}

impl Reads for NoReads {
    fn doc(_: usize, _: Vec<Expr<Self>>) -> Option<Self> {
        None
    }

    fn field(_: Expr<Self>, _: usize) -> Option<Self> {
        None
    }

    fn exists(_: Expr<Self>) -> Option<Self> {
        None
    }
}

impl Reads for DocRead {
    fn doc(projection: usize, key: Vec<Expr<Self>>) -> Option<Self> {
        Some(DocRead::Doc { projection, key })
    }

    fn field(doc: Expr<Self>, field: usize) -> Option<Self> {
        Some(DocRead::DocField(Box::new(doc), field))
    }

    fn exists(doc: Expr<Self>) -> Option<Self> {
        Some(DocRead::DocExists(Box::new(doc)))
    }
}

impl<'a> Cx<'a> {
    /// A fresh context.
    pub fn new(mode: Mode, diags: &'a mut Vec<Diagnostic>) -> Cx<'a> {
        Cx {
            mode,
            diags,
            event: None,
            state: None,
            emit_targets: None,
            program: None,
            assigned: Vec::new(),
            emitted: Vec::new(),
            scopes: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Reports a problem.
    pub fn report(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// A document read where the expression cannot read documents (only a test's
    /// `expect` can; the checker reads documents only in one).
    fn outside_test<R>(&mut self, span: Span) -> Expr<R> {
        let d = Diagnostic::error(
            codes::E0106,
            "projection documents can only be read in a test's `expect`",
            span,
        )
        .label("not readable here");
        self.err(d, span)
    }

    fn err<R>(&mut self, d: Diagnostic, span: Span) -> Expr<R> {
        self.report(d);
        error_expr(span)
    }

    /// Reports unused locals still in scope and returns the slot types.
    pub fn finish_locals(&mut self) -> Vec<Type> {
        self.pop_scope(0);
        std::mem::take(&mut self.slots)
    }

    fn pop_scope(&mut self, mark: usize) {
        while self.scopes.len() > mark {
            let Some(local) = self.scopes.pop() else {
                break;
            };
            if !local.used && !local.name.starts_with('_') {
                self.report(
                    Diagnostic::warning(
                        codes::W0003,
                        format!("`{}` is never used", local.name),
                        local.span,
                    )
                    .label("bound here")
                    .help(format!("remove the `let`, or name it `_{}`", local.name)),
                );
            }
        }
    }

    // ------------------------------------------------------------ statements

    /// Checks a block of statements in a new scope.
    pub fn block(&mut self, stmts: &[ast::Stmt]) -> Vec<Stmt> {
        if self.state.is_some() && self.assigned.is_empty() {
            self.assigned = vec![false; self.state.map_or(0, <[Field]>::len)];
        }
        let mark = self.scopes.len();
        let out = stmts.iter().filter_map(|s| self.stmt(s)).collect();
        self.pop_scope(mark);
        out
    }

    fn stmt(&mut self, stmt: &ast::Stmt) -> Option<Stmt> {
        match &stmt.kind {
            ast::StmtKind::Let(name, ty, value) => {
                let mut value = self.expr(value);
                if let Some(ty) = ty {
                    let declared = self.resolve_simple_type(ty);
                    if !value.ty.fits(&declared) {
                        let d = mismatch(&declared, &value.ty, value.span);
                        self.report(d);
                    }
                    value.ty = declared;
                }
                if name.name == "meta" {
                    self.report(
                        Diagnostic::error(codes::E0217, "`meta` is a reserved name", name.span)
                            .label("reserved for the event envelope")
                            .help("choose another name"),
                    );
                }
                if let Some(field) = self
                    .state
                    .and_then(|s| s.iter().find(|f| f.name == name.name))
                {
                    let span = field.span;
                    self.report(
                        Diagnostic::error(
                            codes::E0101,
                            format!("`{}` is already a state field", name.name),
                            name.span,
                        )
                        .label("this `let` would hide it")
                        .related(span, "state field declared here")
                        .help("choose another name for the local"),
                    );
                }
                let slot = self.slots.len();
                self.slots.push(value.ty.clone());
                self.scopes.push(Local {
                    name: name.name.clone(),
                    slot,
                    ty: value.ty.clone(),
                    span: name.span,
                    used: false,
                });
                Some(Stmt::Let { slot, value })
            }
            ast::StmtKind::Assign(place, op, value) => self.assign(place, *op, value, stmt.span),
            ast::StmtKind::If(cond, then, otherwise) => {
                let cond = self.condition(cond, "an `if`");
                let then = self.block(&then.stmts);
                let otherwise = match otherwise.as_deref() {
                    None => Vec::new(),
                    Some(ast::Stmt {
                        kind: ast::StmtKind::Block(b),
                        ..
                    }) => self.block(&b.stmts),
                    Some(other) => {
                        let mark = self.scopes.len();
                        let s = self.stmt(other);
                        self.pop_scope(mark);
                        s.into_iter().collect()
                    }
                };
                Some(Stmt::If {
                    cond,
                    then,
                    otherwise,
                })
            }
            ast::StmtKind::Block(b) => {
                let stmts = self.block(&b.stmts);
                Some(Stmt::If {
                    cond: const_expr(Value::Bool(true), Type::Bool, b.span),
                    then: stmts,
                    otherwise: Vec::new(),
                })
            }
            ast::StmtKind::Delete => {
                if self.mode != Mode::Handler {
                    self.report(
                        Diagnostic::error(
                            codes::E0218,
                            "`delete` is only allowed in projection handlers",
                            stmt.span,
                        )
                        .label("there is no document here")
                        .help("import rules transform events; they do not own documents"),
                    );
                    return None;
                }
                Some(Stmt::Delete)
            }
            ast::StmtKind::Emit(name, fields) => self.emit(name, fields, stmt.span),
            ast::StmtKind::Expr(expr) => self.effect(expr, stmt.span),
            ast::StmtKind::Error => None,
        }
    }

    fn assign(
        &mut self,
        place: &ast::Expr,
        op: AssignOp,
        value: &ast::Expr,
        span: Span,
    ) -> Option<Stmt> {
        let value = self.expr(value);
        if self.mode != Mode::Handler {
            self.report(
                Diagnostic::error(
                    codes::E0212,
                    "import rules have no state to assign",
                    place.span,
                )
                .label("not a state field")
                .help("use `let` for a local value, and `emit` to produce events"),
            );
            return None;
        }
        let (target, target_ty) = self.assigned_place(place, op, &value)?;
        let (Place::State(f) | Place::MapEntry(f, _)) = &target;
        if let Some(flag) = self.assigned.get_mut(*f) {
            *flag = true;
        }
        let op = match op {
            AssignOp::Set => None,
            AssignOp::Add => Some(BinaryOp::Add),
            AssignOp::Sub => Some(BinaryOp::Sub),
            AssignOp::Mul => Some(BinaryOp::Mul),
            AssignOp::Div => Some(BinaryOp::Div),
            AssignOp::Rem => Some(BinaryOp::Rem),
        };
        let stored = self.stored_type(op, &target_ty, &value, span)?;
        Some(Stmt::Assign {
            target,
            op,
            value,
            stored,
            span,
        })
    }

    /// What an assignment assigns: a state field or a map entry of one, and its type.
    /// `None` (reported) for anything else: a local, an event field, an element of a
    /// list or set, an expression.
    fn assigned_place(
        &mut self,
        place: &ast::Expr,
        op: AssignOp,
        value: &Expr,
    ) -> Option<(Place, Type)> {
        let found = match &place.kind {
            ast::ExprKind::Name(name) => {
                if let Some(local) = self.scopes.iter().rev().find(|l| l.name == *name) {
                    let span = local.span;
                    self.report(
                        Diagnostic::error(
                            codes::E0205,
                            format!("cannot assign to `{name}`: `let` bindings are immutable"),
                            place.span,
                        )
                        .label("assigned here")
                        .related(span, "bound here")
                        .help(
                            "declare a state field to keep a value, or bind a new name with `let`",
                        ),
                    );
                    return None;
                }
                let field = self.state_field(name, place.span, Target::Assigned(op, &value.ty))?;
                (Place::State(field), self.state_ty(field))
            }
            ast::ExprKind::Index(base, index) => {
                let ast::ExprKind::Name(name) = &base.kind else {
                    self.report(not_assignable(place.span));
                    return None;
                };
                let field = self.state_field(name, base.span, Target::Entry(&value.ty))?;
                let Type::Map(k, v) = self.state_ty(field) else {
                    let ty = self.state_ty(field);
                    self.report(
                        Diagnostic::error(
                            codes::E0205,
                            format!("cannot assign to an element of `{name}`, of type `{ty}`"),
                            place.span,
                        )
                        .label("only map entries can be assigned")
                        .help(match ty {
                            Type::List(_) => "append with `.push(x)`",
                            Type::Set(_) => "add with `.insert(x)`",
                            _ => "assign the whole field instead",
                        }),
                    );
                    return None;
                };
                if index.len() != 1 {
                    self.report(
                        Diagnostic::error(codes::E0203, "a map is indexed by one key", place.span)
                            .label("expected `map[key]`"),
                    );
                    return None;
                }
                let key = self.expect_type(&index[0], &k);
                (Place::MapEntry(field, Box::new(key)), *v)
            }
            ast::ExprKind::Field(base, _) if matches!(base.kind, ast::ExprKind::EventRoot) => {
                self.report(
                    Diagnostic::error(codes::E0205, "cannot assign to an event field", place.span)
                        .label("events are immutable facts")
                        .help("assign a state field instead"),
                );
                return None;
            }
            _ => {
                self.report(not_assignable(place.span));
                return None;
            }
        };
        Some(found)
    }

    /// The type of what `target op= value` stores (`value`'s for `=`), checked against
    /// the target's type; `None` (reported) for a compound assignment to an optional.
    fn stored_type(
        &mut self,
        op: Option<BinaryOp>,
        target_ty: &Type,
        value: &Expr,
        span: Span,
    ) -> Option<Type> {
        Some(match op {
            None => {
                if !value.ty.fits(target_ty) {
                    let d = mismatch(target_ty, &value.ty, value.span);
                    self.report(d);
                }
                value.ty.clone()
            }
            Some(op) => {
                let lhs_ty = target_ty.unwrap_optional().clone();
                if matches!(target_ty, Type::Optional(_)) {
                    self.report(
                        Diagnostic::error(
                            codes::E0202,
                            format!("`{}=` on an optional field", op.symbol()),
                            span,
                        )
                        .label(format!("this field is `{target_ty}`"))
                        .help(format!(
                            "write `field = (field ?? default) {} value`",
                            op.symbol()
                        )),
                    );
                    return None;
                }
                match binary_type(op, &lhs_ty, &value.ty) {
                    Some(result) if result.fits(target_ty) => result,
                    Some(result) => {
                        let d = mismatch(target_ty, &result, span);
                        self.report(d);
                        result
                    }
                    None => {
                        let d = operand_error(op, &lhs_ty, &value.ty, span);
                        self.report(d);
                        Type::Error
                    }
                }
            }
        })
    }

    fn state_field(&mut self, name: &str, span: Span, target: Target<'_>) -> Option<usize> {
        let state = self.state.unwrap_or(&[]);
        if let Some(i) = state.iter().position(|f| f.name == name) {
            return Some(i);
        }
        let d = Diagnostic::error(codes::E0106, format!("`{name}` is not a state field"), span)
            .label("unknown field");
        let d = match suggest(name, state.iter().map(|f| f.name.as_str())) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(target.help(name)),
        };
        self.report(d);
        None
    }

    fn state_ty(&self, field: usize) -> Type {
        self.state
            .and_then(|s| s.get(field))
            .map_or(Type::Error, |f| f.ty.clone())
    }

    fn emit(&mut self, name: &ast::Ident, fields: &[ast::FieldInit], span: Span) -> Option<Stmt> {
        let Some(targets) = self.emit_targets else {
            self.report(
                Diagnostic::error(codes::E0209, "`emit` is only allowed in import rules", span)
                    .label("projections fold events; they do not produce them")
                    .help("move this into an `import peer { on ... { emit ... } }` rule"),
            );
            return None;
        };
        let Some(id) = targets.iter().position(|e| e.name == name.name) else {
            let d = Diagnostic::error(
                codes::E0102,
                format!("unknown event type `{}`", name.name),
                name.span,
            )
            .label("not a local event");
            let d = match suggest(&name.name, targets.iter().map(|e| e.name.as_str())) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => {
                    d.help("an import rule emits events declared at the top level of this program")
                }
            };
            self.report(d);
            return None;
        };
        if !self.emitted.contains(&id) {
            self.emitted.push(id);
        }
        let fields = self.record(&targets[id], fields, name);
        Some(Stmt::Emit {
            event: id,
            fields,
            span,
        })
    }

    /// Checks `{ field: value, ... }` against an event type; returns one expression per
    /// field, with defaults for the fields not given.
    pub fn record(
        &mut self,
        event: &EventType,
        inits: &[ast::FieldInit],
        name: &ast::Ident,
    ) -> Vec<Expr> {
        let mut values: Vec<Option<Expr>> = vec![None; event.fields.len()];
        for init in inits {
            let Some(i) = event.field(&init.name.name) else {
                let d = Diagnostic::error(
                    codes::E0105,
                    format!("event `{}` has no field `{}`", event.name, init.name.name),
                    init.name.span,
                )
                .label("unknown field")
                .related(event.span, "event declared here");
                let d = match suggest(
                    &init.name.name,
                    event.fields.iter().map(|f| f.name.as_str()),
                ) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("its fields are: {}", field_list(event))),
                };
                self.report(d);
                self.expr::<NoReads>(&init.value);
                continue;
            };
            if values[i].is_some() {
                self.report(
                    Diagnostic::error(
                        codes::E0101,
                        format!("field `{}` is given twice", init.name.name),
                        init.name.span,
                    )
                    .label("given again here"),
                );
                continue;
            }
            let ty = event.fields[i].ty.clone();
            values[i] = Some(self.expect_type(&init.value, &ty));
        }
        let mut missing = Vec::new();
        let out = values
            .into_iter()
            .zip(&event.fields)
            .map(|(value, field)| match (value, &field.default) {
                (Some(v), _) => v,
                (None, Some(default)) => const_expr(default.clone(), field.ty.clone(), name.span),
                (None, None) => {
                    missing.push(field.name.clone());
                    error_expr(name.span)
                }
            })
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            self.report(
                Diagnostic::error(
                    codes::E0209,
                    format!(
                        "missing field{} {list} of `{}`",
                        if missing.len() > 1 { "s" } else { "" },
                        event.name
                    ),
                    name.span,
                )
                .label("required fields not given")
                .related(event.span, "event declared here")
                .help("give every field that has no default value"),
            );
        }
        out
    }

    /// A call statement: a collection mutation (`tags.insert(x)`).
    fn effect(&mut self, expr: &ast::Expr, span: Span) -> Option<Stmt> {
        if let ast::ExprKind::MethodCall(recv, method, args) = &expr.kind {
            let op = match method.name.as_str() {
                "insert" => Some(Mutation::Insert),
                "push" => Some(Mutation::Push),
                "remove" => Some(Mutation::Remove),
                "clear" => Some(Mutation::Clear),
                _ => None,
            };
            if let Some(op) = op {
                return self.mutation(recv, method, op, args, span);
            }
        }
        let typed = self.expr::<NoReads>(expr);
        if typed.ty != Type::Error {
            self.report(
                Diagnostic::error(codes::E0210, "this call has no effect", span)
                    .label("its result is discarded")
                    .help("assign the result to a state field, or bind it with `let`"),
            );
        }
        None
    }

    fn mutation(
        &mut self,
        recv: &ast::Expr,
        method: &ast::Ident,
        op: Mutation,
        args: &[ast::Expr],
        span: Span,
    ) -> Option<Stmt> {
        if self.mode != Mode::Handler {
            self.report(
                Diagnostic::error(
                    codes::E0212,
                    format!(
                        "`.{}()` changes state, and import rules have none",
                        method.name
                    ),
                    span,
                )
                .label("no state here"),
            );
            return None;
        }
        let ast::ExprKind::Name(name) = &recv.kind else {
            self.report(
                Diagnostic::error(
                    codes::E0210,
                    format!("`.{}()` needs a state field", method.name),
                    recv.span,
                )
                .label("not a state field")
                .help(format!(
                    "call it on a collection field: `tags.{}(x)`",
                    method.name
                )),
            );
            return None;
        };
        let field = self.state_field(name, recv.span, Target::Collection(op))?;
        let ty = self.state_ty(field);
        let elem: Option<Type> = match (op, &ty) {
            (Mutation::Insert, Type::Set(e)) | (Mutation::Push, Type::List(e)) => {
                Some((**e).clone())
            }
            (Mutation::Remove, Type::Set(e) | Type::List(e))
            | (Mutation::Remove, Type::Map(e, _)) => Some((**e).clone()),
            (Mutation::Clear, Type::Set(_) | Type::List(_) | Type::Map(..)) => None,
            (_, Type::Error) => return None,
            _ => {
                let help = match &ty {
                    Type::Set(_) => "sets support insert, remove and clear",
                    Type::List(_) => "lists support push, remove and clear",
                    Type::Map(..) => "maps support `m[k] = v`, remove and clear",
                    _ => "only collection fields (list, set, map) can be changed in place",
                };
                self.report(
                    Diagnostic::error(
                        codes::E0210,
                        format!(
                            "`{name}` has type `{ty}`, which has no `.{}()`",
                            method.name
                        ),
                        method.span,
                    )
                    .label("not supported")
                    .help(help),
                );
                return None;
            }
        };
        let want = usize::from(elem.is_some());
        if args.len() != want {
            self.report(
                Diagnostic::error(
                    codes::E0203,
                    format!(
                        "`.{}()` takes {want} argument{}",
                        method.name,
                        if want == 1 { "" } else { "s" }
                    ),
                    span,
                )
                .label(format!("{} given", args.len())),
            );
            return None;
        }
        let args = match elem {
            Some(elem) => vec![self.expect_type(&args[0], &elem)],
            None => Vec::new(),
        };
        if let Some(flag) = self.assigned.get_mut(field) {
            *flag = true;
        }
        Some(Stmt::Mutate {
            field,
            op,
            args,
            span,
        })
    }

    // ------------------------------------------------------------ expressions
}

/// Expressions, generic over what they may read (`R`): documents in a test's
/// `expect`, nothing beyond the event, state and locals everywhere else.
impl Cx<'_> {
    /// Checks a condition (`if`, `where`, `expect`).
    pub fn condition<R: Reads>(&mut self, expr: &ast::Expr, what: &str) -> Expr<R> {
        let typed = self.expr(expr);
        if !typed.ty.fits(&Type::Bool) {
            let help = if matches!(typed.ty, Type::Optional(_)) {
                "test for presence with `x != none`, or give a default with `x ?? false`"
            } else {
                "compare it, e.g. `x > 0` or `x == \"...\"`"
            };
            self.report(
                Diagnostic::error(
                    codes::E0211,
                    format!("the condition of {what} must be `bool`, not `{}`", typed.ty),
                    typed.span,
                )
                .label("not a bool")
                .help(help),
            );
        }
        typed
    }

    /// Checks an expression that must have (or fit) a type.
    pub fn expect_type<R: Reads>(&mut self, expr: &ast::Expr, ty: &Type) -> Expr<R> {
        // A string literal where a timestamp is expected is parsed now, at compile time.
        if let (ast::ExprKind::Str(text), Type::Timestamp) = (&expr.kind, ty.unwrap_optional()) {
            let literal = const_expr(Value::str(text), Type::String, expr.span);
            return self.coerce_time(literal);
        }
        let mut typed = self.expr(expr);
        // A list literal also writes a set; its elements must fit the element type.
        if let (ast::ExprKind::List(_), Type::List(elem) | Type::Set(elem)) = (&expr.kind, ty)
            && let ExprKind::List(items) = &typed.kind
        {
            if let Some(bad) = items.iter().find(|i| !i.ty.fits(elem)) {
                let d = mismatch(elem, &bad.ty, bad.span);
                self.report(d);
            }
            typed.ty = ty.clone();
        }
        if !typed.ty.fits(ty) {
            let d = mismatch(ty, &typed.ty, typed.span);
            self.report(d);
        }
        typed
    }

    /// A `with { time: ... }` value: an RFC 3339 string literal or a timestamp.
    pub fn coerce_time<R: Reads>(&mut self, expr: Expr<R>) -> Expr<R> {
        match (&expr.kind, &expr.ty) {
            (ExprKind::Const(Value::Str(s)), _) => match datamesh_stdlib::time::parse_rfc3339(s) {
                Ok(us) => const_expr(Value::Timestamp(us), Type::Timestamp, expr.span),
                Err(trap) => self.err(
                    Diagnostic::error(
                        codes::E0204,
                        format!("invalid time: {}", trap_detail(&trap)),
                        expr.span,
                    )
                    .label("not an RFC 3339 timestamp")
                    .help("write e.g. \"2024-05-01T09:30:00Z\""),
                    expr.span,
                ),
            },
            (_, Type::Timestamp | Type::Error) => expr,
            (_, other) => {
                let other = other.clone();
                self.err(mismatch(&Type::Timestamp, &other, expr.span), expr.span)
            }
        }
    }

    /// A key component. A bare name in a projection-level key means the event field of
    /// that name (`key account` is `key event.account`).
    pub fn key_expr<R: Reads>(
        &mut self,
        expr: &ast::Expr,
        projection_level: bool,
        handler_event: &ast::Ident,
    ) -> Expr<R> {
        let saved = self.state.take();
        let typed = match &expr.kind {
            ast::ExprKind::Name(name) if self.event.is_some_and(|e| e.field(name).is_some()) => {
                let event = self.event.map_or(&[][..], |e| &e.fields[..]);
                let i = event.iter().position(|f| f.name == *name).unwrap_or(0);
                Expr {
                    kind: ExprKind::EventField(i),
                    ty: event.get(i).map_or(Type::Error, |f| f.ty.clone()),
                    span: expr.span,
                }
            }
            ast::ExprKind::Name(name) if projection_level => {
                let event = self.event.map_or("?", |e| e.name.as_str());
                let d = Diagnostic::error(
                    codes::E0208,
                    format!("the projection's key `{name}` is not a field of `{event}`"),
                    expr.span,
                )
                .label(format!("`{event}` has no field `{name}`"))
                .related(handler_event.span, "this handler uses the projection's key")
                .help(format!(
                    "give the handler its own key: `on {event} key event.<field> {{ ... }}`"
                ));
                self.err(d, expr.span)
            }
            ast::ExprKind::Name(name)
                if saved.is_some_and(|s| s.iter().any(|f| f.name == *name)) =>
            {
                let d = Diagnostic::error(codes::E0208, format!("a key cannot read the state field `{name}`"), expr.span)
                    .label("state is only known once the document is chosen")
                    .help("a key comes from the event: `event.<field>`, `meta.<field>` and functions of them");
                self.err(d, expr.span)
            }
            _ => self.expr(expr),
        };
        self.state = saved;
        if !typed.ty.is_key() {
            let help = match &typed.ty {
                Type::Optional(_) => "a key must always be present: use `x ?? \"default\"`",
                Type::Float => "floats make poor keys (rounding); use `round(x)` or `to_string(x)`",
                _ => "keys are int, bool, string, timestamp or duration",
            };
            let d = Diagnostic::error(
                codes::E0206,
                format!("a key cannot be `{}`", typed.ty),
                typed.span,
            )
            .label("invalid key type")
            .help(help);
            return self.err(d, typed.span);
        }
        typed
    }

    fn resolve_simple_type(&mut self, ty: &ast::TypeExpr) -> Type {
        let mut checker = super::Checker::default();
        let resolved = checker.resolve_type(ty);
        self.diags.extend(checker.diags);
        resolved
    }

    /// Checks any expression.
    pub fn expr<R: Reads>(&mut self, expr: &ast::Expr) -> Expr<R> {
        let span = expr.span;
        let (kind, ty) = match &expr.kind {
            ast::ExprKind::Int(v) => (ExprKind::Const(Value::Int(*v)), Type::Int),
            ast::ExprKind::Float(v) => (ExprKind::Const(Value::Float(*v)), Type::Float),
            ast::ExprKind::Str(s) => (ExprKind::Const(Value::str(s)), Type::String),
            ast::ExprKind::Bool(b) => (ExprKind::Const(Value::Bool(*b)), Type::Bool),
            ast::ExprKind::None => (ExprKind::Const(Value::None), Type::None),
            ast::ExprKind::Duration(us) => (ExprKind::Const(Value::Duration(*us)), Type::Duration),
            ast::ExprKind::Error => return error_expr(span),
            ast::ExprKind::Name(name) => return self.name(name, span),
            ast::ExprKind::EventRoot => {
                let d =
                    Diagnostic::error(codes::E0105, "`event` must be followed by a field", span)
                        .label("expected `event.<field>`");
                let d = match self.event {
                    Some(e) => d.help(format!("its fields are: {}", field_list(e))),
                    None => d.help("`event` is only available in handlers and import rules"),
                };
                return self.err(d, span);
            }
            ast::ExprKind::Field(base, field) => return self.field(base, field, span),
            ast::ExprKind::Index(base, index) => return self.index(base, index, span),
            ast::ExprKind::Call(f, args) => return self.call(f, args, None, span),
            ast::ExprKind::MethodCall(recv, method, args) => {
                if matches!(method.name.as_str(), "insert" | "push" | "remove" | "clear") {
                    let d = Diagnostic::error(
                        codes::E0210,
                        format!(
                            "`.{}()` changes a collection and cannot be used as a value",
                            method.name
                        ),
                        span,
                    )
                    .label("used as a value")
                    .help("call it as a statement of its own");
                    return self.err(d, span);
                }
                return self.call(method, args, Some(recv), span);
            }
            ast::ExprKind::Unary(op, inner) => {
                let inner = self.expr(inner);
                let ty = match (op, &inner.ty) {
                    (_, Type::Error) => Type::Error,
                    (UnaryOp::Neg, t @ (Type::Int | Type::Float | Type::Duration)) => t.clone(),
                    (UnaryOp::Not, Type::Bool) => Type::Bool,
                    (UnaryOp::Neg, t) => {
                        let d =
                            Diagnostic::error(codes::E0202, format!("cannot negate `{t}`"), span)
                                .label("`-` needs int, float or duration");
                        return self.err(d, span);
                    }
                    (UnaryOp::Not, t) => {
                        let d = Diagnostic::error(
                            codes::E0202,
                            format!("`not` needs a bool, found `{t}`"),
                            span,
                        )
                        .label("not a bool");
                        return self.err(d, span);
                    }
                };
                // Fold negative literals so `-9223372036854775807 - 1` style limits and
                // defaults stay constants.
                if let (UnaryOp::Neg, ExprKind::Const(Value::Int(v))) = (op, &inner.kind)
                    && let Some(n) = v.checked_neg()
                {
                    return const_expr(Value::Int(n), Type::Int, span);
                }
                (ExprKind::Unary(*op, Box::new(inner)), ty)
            }
            ast::ExprKind::Binary(op, a, b) => return self.binary(*op, a, b, span),
            ast::ExprKind::If(c, a, b) => {
                let c = self.condition(c, "an `if`");
                let a = self.expr(a);
                let b = self.expr(b);
                let Some(ty) = unify(&a.ty, &b.ty) else {
                    let d = Diagnostic::error(
                        codes::E0201,
                        format!(
                            "`if` branches have different types: `{}` and `{}`",
                            a.ty, b.ty
                        ),
                        span,
                    )
                    .label("branches disagree")
                    .related(a.span, format!("this is `{}`", a.ty))
                    .related(b.span, format!("this is `{}`", b.ty));
                    return self.err(d, span);
                };
                (ExprKind::If(Box::new(c), Box::new(a), Box::new(b)), ty)
            }
            ast::ExprKind::List(items) => {
                let items: Vec<Expr<R>> = items.iter().map(|i| self.expr(i)).collect();
                let mut elem = Type::Error;
                for item in &items {
                    if elem == Type::Error {
                        elem = item.ty.clone();
                    } else if !item.ty.fits(&elem) {
                        let d = mismatch(&elem, &item.ty, item.span);
                        return self.err(d, span);
                    }
                }
                if !elem.is_scalar() {
                    let d = Diagnostic::error(
                        codes::E0104,
                        format!("a list cannot hold `{elem}`"),
                        span,
                    )
                    .label("list elements must be scalar");
                    return self.err(d, span);
                }
                (ExprKind::List(items), Type::List(Box::new(elem)))
            }
        };
        Expr { kind, ty, span }
    }

    fn name<R: Reads>(&mut self, name: &str, span: Span) -> Expr<R> {
        if let Some(local) = self.scopes.iter_mut().rev().find(|l| l.name == name) {
            local.used = true;
            return Expr {
                kind: ExprKind::Local(local.slot),
                ty: local.ty.clone(),
                span,
            };
        }
        if let Some(state) = self.state
            && let Some(i) = state.iter().position(|f| f.name == name)
        {
            return Expr {
                kind: ExprKind::State(i),
                ty: state[i].ty.clone(),
                span,
            };
        }
        if self.mode == Mode::Test
            && let Some(doc) = self.doc(name, &[], span, false)
        {
            return doc;
        }
        if name == "meta" {
            let d = Diagnostic::error(codes::E0108, "`meta` must be followed by a field", span)
                .label("expected `meta.<field>`")
                .help("envelope fields are meta.position, meta.time, meta.stream, meta.type and meta.id");
            return self.err(d, span);
        }
        let mut d = Diagnostic::error(codes::E0106, format!("unknown name `{name}`"), span)
            .label("not found in this scope");
        if let Some(event) = self.event.filter(|e| e.field(name).is_some()) {
            d = d.help(format!(
                "`{name}` is a field of `{}`: write `event.{name}`",
                event.name
            ));
        } else {
            let mut candidates: Vec<&str> = self.scopes.iter().map(|l| l.name.as_str()).collect();
            if let Some(state) = self.state {
                candidates.extend(state.iter().map(|f| f.name.as_str()));
            }
            if let Some(program) = self.program {
                candidates.extend(program.projections.iter().map(|p| p.name.as_str()));
            }
            d = match suggest(name, candidates.into_iter()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => match self.mode {
                    Mode::Handler => d.help("names are state fields, `let` bindings, `event.<field>` and `meta.<field>`"),
                    Mode::ImportRule => d.help("names are `let` bindings, `event.<field>` and `meta.<field>`"),
                    Mode::Test => d.help("an `expect` reads projections: `balances[\"a1\"].balance`, `totals.count`"),
                    Mode::Const => d.help("only literals and function calls are allowed here"),
                },
            };
        }
        self.err(d, span)
    }

    /// A projection document in a test: `p` (single document) or `p[k, ...]`.
    fn doc<R: Reads>(
        &mut self,
        name: &str,
        key: &[ast::Expr],
        span: Span,
        indexed: bool,
    ) -> Option<Expr<R>> {
        let program = self.program?;
        // `name@vN` picks a version; a plain name means the newest one.
        let (base, version) = match name.split_once('@') {
            Some((base, v)) => (
                base,
                Some(
                    v.strip_prefix('v')
                        .and_then(|n| n.parse::<u32>().ok())
                        .unwrap_or(0),
                ),
            ),
            None => (name, None),
        };
        let found = program
            .projections
            .iter()
            .enumerate()
            .filter(|(_, p)| p.name == base && version.is_none_or(|v| p.version == v))
            .max_by_key(|(_, p)| p.version);
        let Some((index, projection)) = found else {
            if version.is_some() && program.projections.iter().any(|p| p.name == base) {
                let versions: Vec<String> = program
                    .projections
                    .iter()
                    .filter(|p| p.name == base)
                    .map(|p| format!("v{}", p.version))
                    .collect();
                let d = Diagnostic::error(
                    codes::E0106,
                    format!(
                        "projection `{base}` has no version `{}`",
                        name.split_once('@').map_or("", |x| x.1)
                    ),
                    span,
                )
                .label("unknown version")
                .help(format!("declared versions: {}", versions.join(", ")));
                return Some(self.err(d, span));
            }
            return None;
        };
        let key: Vec<Expr<R>> = key.iter().map(|k| self.expr(k)).collect();
        if projection.key.is_empty() && indexed {
            let d = Diagnostic::error(
                codes::E0203,
                format!("`{name}` has a single document and takes no key"),
                span,
            )
            .label("remove the `[...]`")
            .help(format!("write `{name}.field`"));
            return Some(self.err(d, span));
        }
        if !projection.key.is_empty() && !indexed {
            let d = Diagnostic::error(
                codes::E0203,
                format!("`{name}` is keyed: say which document"),
                span,
            )
            .label("missing key")
            .help(format!("write `{name}[key].field`"));
            return Some(self.err(d, span));
        }
        if indexed && key.len() != projection.key.len() {
            let d = Diagnostic::error(
                codes::E0203,
                format!(
                    "`{name}` has {} key part(s), {} given",
                    projection.key.len(),
                    key.len()
                ),
                span,
            )
            .label("wrong number of key parts");
            return Some(self.err(d, span));
        }
        for (k, ty) in key.iter().zip(&projection.key) {
            if !k.ty.fits(ty) {
                let d = mismatch(ty, &k.ty, k.span);
                self.report(d);
            }
        }
        let Some(read) = R::doc(index, key) else {
            return Some(self.outside_test(span));
        };
        Some(Expr {
            kind: ExprKind::Read(read),
            ty: Type::Doc(index),
            span,
        })
    }

    fn field<R: Reads>(&mut self, base: &ast::Expr, field: &ast::Ident, span: Span) -> Expr<R> {
        match &base.kind {
            ast::ExprKind::EventRoot => {
                let Some(event) = self.event else {
                    let d =
                        Diagnostic::error(codes::E0106, "`event` is not available here", base.span)
                            .label("no event in scope")
                            .help("`event` is only available in handlers and import rules");
                    return self.err(d, span);
                };
                match event.field(&field.name) {
                    Some(i) => Expr {
                        kind: ExprKind::EventField(i),
                        ty: event.fields[i].ty.clone(),
                        span,
                    },
                    None => {
                        let d = Diagnostic::error(
                            codes::E0105,
                            format!("event `{}` has no field `{}`", event.name, field.name),
                            field.span,
                        )
                        .label("unknown field")
                        .related(event.span, "event declared here");
                        let d = match suggest(
                            &field.name,
                            event.fields.iter().map(|f| f.name.as_str()),
                        ) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!("its fields are: {}", field_list(event))),
                        };
                        self.err(d, span)
                    }
                }
            }
            ast::ExprKind::Name(n) if n == "meta" && !self.is_bound("meta") => {
                if matches!(self.mode, Mode::Const | Mode::Test) {
                    let d =
                        Diagnostic::error(codes::E0108, "`meta` is not available here", base.span)
                            .label("no event envelope in scope")
                            .help("`meta` is only available in handlers and import rules");
                    return self.err(d, span);
                }
                match MetaField::ALL.iter().find(|(n, _, _)| *n == field.name) {
                    Some((_, m, ty)) => Expr {
                        kind: ExprKind::Meta(*m),
                        ty: ty.clone(),
                        span,
                    },
                    None => {
                        let d = Diagnostic::error(
                            codes::E0108,
                            format!("unknown envelope field `meta.{}`", field.name),
                            field.span,
                        )
                        .label("not an envelope field");
                        let d =
                            match suggest(&field.name, MetaField::ALL.iter().map(|(n, _, _)| *n)) {
                                Some(s) => d.help(format!("did you mean `meta.{s}`?")),
                                None => d.help(
                                    "envelope fields are position, time, stream, type and id",
                                ),
                            };
                        self.err(d, span)
                    }
                }
            }
            _ => {
                let base = self.expr(base);
                match &base.ty {
                    Type::Error => error_expr(span),
                    Type::Doc(p) => {
                        let Some(projection) =
                            self.program.and_then(|prog| prog.projections.get(*p))
                        else {
                            return error_expr(span);
                        };
                        match projection.state.iter().position(|f| f.name == field.name) {
                            Some(i) => {
                                let ty = projection.state[i].ty.clone();
                                match R::field(base, i) {
                                    Some(read) => Expr {
                                        kind: ExprKind::Read(read),
                                        ty,
                                        span,
                                    },
                                    None => self.outside_test(span),
                                }
                            }
                            None => {
                                let d = Diagnostic::error(
                                    codes::E0105,
                                    format!(
                                        "projection `{}` has no state field `{}`",
                                        projection.name, field.name
                                    ),
                                    field.span,
                                )
                                .label("unknown field")
                                .related(projection.span, "projection declared here");
                                let d = match suggest(
                                    &field.name,
                                    projection.state.iter().map(|f| f.name.as_str()),
                                ) {
                                    Some(s) => d.help(format!("did you mean `{s}`?")),
                                    None => d,
                                };
                                self.err(d, span)
                            }
                        }
                    }
                    other => {
                        let d = Diagnostic::error(
                            codes::E0105,
                            format!("`{other}` has no fields"),
                            field.span,
                        )
                        .label(format!("no field `{}`", field.name))
                        .help("only `event`, `meta` and documents in tests have fields");
                        self.err(d, span)
                    }
                }
            }
        }
    }

    fn is_bound(&self, name: &str) -> bool {
        self.scopes.iter().any(|l| l.name == name)
            || self.state.is_some_and(|s| s.iter().any(|f| f.name == name))
    }

    fn index<R: Reads>(&mut self, base: &ast::Expr, index: &[ast::Expr], span: Span) -> Expr<R> {
        if self.mode == Mode::Test
            && let ast::ExprKind::Name(name) = &base.kind
            && let Some(doc) = self.doc(name, index, span, true)
        {
            return doc;
        }
        let base = self.expr(base);
        let index: Vec<Expr<R>> = index.iter().map(|i| self.expr(i)).collect();
        if base.ty == Type::Error || index.iter().any(|i| i.ty == Type::Error) {
            return error_expr(span);
        }
        if index.len() != 1 {
            let d = Diagnostic::error(codes::E0203, "collections are indexed by one value", span)
                .label("expected `c[index]`");
            return self.err(d, span);
        }
        let Some(i) = index.into_iter().next() else {
            return error_expr(span);
        };
        let ty = match &base.ty {
            Type::Map(k, v) => {
                if !i.ty.fits(k) {
                    let d = mismatch(k, &i.ty, i.span);
                    return self.err(d, span);
                }
                Type::Optional(v.clone())
            }
            Type::List(e) => {
                if i.ty != Type::Int {
                    let d = mismatch(&Type::Int, &i.ty, i.span);
                    return self.err(d, span);
                }
                (**e).clone()
            }
            other => {
                let d = Diagnostic::error(
                    codes::E0202,
                    format!("`{other}` cannot be indexed"),
                    base.span,
                )
                .label("not a list or map");
                return self.err(d, span);
            }
        };
        Expr {
            kind: ExprKind::Index(Box::new(base), Box::new(i)),
            ty,
            span,
        }
    }

    fn call<R: Reads>(
        &mut self,
        f: &ast::Ident,
        args: &[ast::Expr],
        recv: Option<&ast::Expr>,
        span: Span,
    ) -> Expr<R> {
        if f.name == "exists" && self.mode == Mode::Test && recv.is_none() {
            let [arg] = args else {
                let d = Diagnostic::error(codes::E0203, "`exists` takes one document", span)
                    .label("expected `exists(p[key])`");
                return self.err(d, span);
            };
            let doc = self.expr(arg);
            if !matches!(doc.ty, Type::Doc(_) | Type::Error) {
                let d = Diagnostic::error(
                    codes::E0203,
                    "`exists` takes a projection document",
                    arg.span,
                )
                .label(format!("this is `{}`", doc.ty))
                .help("write `exists(balances[\"a1\"])`");
                return self.err(d, span);
            }
            return match R::exists(doc) {
                Some(read) => Expr {
                    kind: ExprKind::Read(read),
                    ty: Type::Bool,
                    span,
                },
                None => self.outside_test(span),
            };
        }
        let mut typed: Vec<Expr<R>> = Vec::with_capacity(args.len() + 1);
        if let Some(recv) = recv {
            typed.push(self.expr(recv));
        }
        typed.extend(args.iter().map(|a| self.expr(a)));
        let types: Vec<Type> = typed.iter().map(|a| a.ty.clone()).collect();
        match builtins::resolve(&f.name, &types) {
            Ok((builtin, ty)) => Expr {
                kind: ExprKind::Call(builtin, typed),
                ty,
                span,
            },
            Err(CallError::Unknown) => {
                let d = Diagnostic::error(
                    codes::E0107,
                    format!("unknown function `{}`", f.name),
                    f.span,
                )
                .label("not a function");
                let d = match suggest(&f.name, Builtin::names()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(
                        "see the standard library chapter of the book for the functions available",
                    ),
                };
                self.err(d, span)
            }
            Err(CallError::Arity(sig) | CallError::Types(sig)) => {
                let shown = types
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut d = Diagnostic::error(
                    codes::E0203,
                    format!("`{}` cannot be called with ({shown})", f.name),
                    span,
                )
                .label("no matching signature")
                .help(format!("expected {sig}"));
                if types.iter().any(|t| matches!(t, Type::Optional(_))) {
                    d = d.help(format!(
                        "expected {sig}; unwrap optional values with `x ?? default`"
                    ));
                }
                self.err(d, span)
            }
        }
    }

    fn binary<R: Reads>(
        &mut self,
        op: BinaryOp,
        a: &ast::Expr,
        b: &ast::Expr,
        span: Span,
    ) -> Expr<R> {
        let mut a = self.expr(a);
        let mut b = self.expr(b);
        // A list literal compared with a set is read as a set literal.
        set_literal(&a.ty, &mut b);
        set_literal(&b.ty, &mut a);
        if a.ty == Type::Error || b.ty == Type::Error {
            return error_expr(span);
        }
        let ty = match op {
            BinaryOp::And | BinaryOp::Or => {
                for side in [&a, &b] {
                    if side.ty != Type::Bool {
                        let d = Diagnostic::error(
                            codes::E0202,
                            format!("`{}` needs bool operands, found `{}`", op.symbol(), side.ty),
                            side.span,
                        )
                        .label("not a bool");
                        return self.err(d, span);
                    }
                }
                Type::Bool
            }
            BinaryOp::Coalesce => {
                if a.ty == Type::None {
                    return b;
                }
                let Type::Optional(inner) = &a.ty else {
                    let d = Diagnostic::error(
                        codes::E0202,
                        format!("the left side of `??` is `{}`, which is never none", a.ty),
                        a.span,
                    )
                    .label("not optional")
                    .help("remove `?? ...`");
                    return self.err(d, span);
                };
                if !b.ty.fits(&a.ty) {
                    let d = mismatch(inner, &b.ty, b.span);
                    return self.err(d, span);
                }
                if matches!(b.ty, Type::Optional(_) | Type::None) {
                    a.ty.clone()
                } else {
                    (**inner).clone()
                }
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                if unify(&a.ty, &b.ty).is_none() {
                    let d = Diagnostic::error(
                        codes::E0202,
                        format!("cannot compare `{}` with `{}`", a.ty, b.ty),
                        span,
                    )
                    .label("different types")
                    .related(a.span, format!("`{}`", a.ty))
                    .related(b.span, format!("`{}`", b.ty))
                    .help(conversion_help(&a.ty, &b.ty));
                    return self.err(d, span);
                }
                Type::Bool
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                if a.ty != b.ty || !a.ty.is_ordered() {
                    let d = operand_error(op, &a.ty, &b.ty, span);
                    return self.err(d, span);
                }
                Type::Bool
            }
            _ => match binary_type(op, &a.ty, &b.ty) {
                Some(t) => t,
                None => {
                    let d = operand_error(op, &a.ty, &b.ty, span);
                    return self.err(d, span);
                }
            },
        };
        Expr {
            kind: ExprKind::Binary(op, Box::new(a), Box::new(b)),
            ty,
            span,
        }
    }
}

/// How a name that is not a state field was used as one, for E0106's help.
#[derive(Clone, Copy)]
enum Target<'t> {
    /// `name op= value`, the value of this type.
    Assigned(AssignOp, &'t Type),
    /// `name[key] = value`.
    Entry(&'t Type),
    /// `name.push(x)` and the other collection updates.
    Collection(Mutation),
}

impl Target<'_> {
    fn help(self, name: &str) -> String {
        // A type to declare the field with: the assigned value's, when it has one a
        // field can hold.
        let declared = |ty: &Type| match ty {
            Type::None => "int?".to_owned(),
            Type::Error | Type::Doc(_) => "int".to_owned(),
            ty => ty.to_string(),
        };
        match self {
            Target::Assigned(AssignOp::Set, ty) => format!(
                "to name a value in this handler, write `let {name} = ...`; to keep it from one event to the next, declare it in the projection's state: `state {{ {name}: {} }}`",
                declared(ty)
            ),
            Target::Assigned(_, ty) => format!(
                "declare it in the projection's state: `state {{ {name}: {} }}` (fields start at zero; `let` bindings cannot be updated)",
                declared(ty)
            ),
            Target::Entry(ty) => format!(
                "declare it in the projection's state as a map: `state {{ {name}: map<string, {}> }}`",
                if ty.is_scalar() && *ty != Type::Error {
                    ty.to_string()
                } else {
                    "int".to_owned()
                }
            ),
            Target::Collection(op) => format!(
                "declare it in the projection's state as a collection: `state {{ {name}: {}<string> }}`",
                if matches!(op, Mutation::Insert) {
                    "set"
                } else {
                    "list"
                }
            ),
        }
    }
}

/// The result type of an arithmetic operator, if the operands are allowed.
pub fn binary_type(op: BinaryOp, a: &Type, b: &Type) -> Option<Type> {
    use Type as T;
    Some(match (op, a, b) {
        (_, T::Error, _) | (_, _, T::Error) => T::Error,
        (
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem,
            T::Int,
            T::Int,
        ) => T::Int,
        (
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem,
            T::Float,
            T::Float,
        ) => T::Float,
        (BinaryOp::Add, T::String, T::String) => T::String,
        (BinaryOp::Add | BinaryOp::Sub, T::Duration, T::Duration) => T::Duration,
        (BinaryOp::Add | BinaryOp::Sub, T::Timestamp, T::Duration) => T::Timestamp,
        (BinaryOp::Add, T::Duration, T::Timestamp) => T::Timestamp,
        (BinaryOp::Sub, T::Timestamp, T::Timestamp) => T::Duration,
        (BinaryOp::Mul | BinaryOp::Div, T::Duration, T::Int) => T::Duration,
        // How many times one duration fits in another, truncated toward zero:
        // `(meta.time - due) / 1d` is the whole days late.
        (BinaryOp::Div, T::Duration, T::Duration) => T::Int,
        (BinaryOp::Mul, T::Int, T::Duration) => T::Duration,
        _ => return None,
    })
}

/// The common type of two branches or comparison operands.
fn unify(a: &Type, b: &Type) -> Option<Type> {
    if a.fits(b) {
        return Some(b.clone());
    }
    if b.fits(a) {
        return Some(a.clone());
    }
    match (a, b) {
        (Type::None, t) | (t, Type::None) if t.is_scalar() => {
            Some(Type::Optional(Box::new(t.clone())))
        }
        _ => None,
    }
}

fn operand_error(op: BinaryOp, a: &Type, b: &Type, span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::E0202,
        format!("`{}` cannot be applied to `{a}` and `{b}`", op.symbol()),
        span,
    )
    .label("invalid operands")
    .help(conversion_help(a, b))
}

fn conversion_help(a: &Type, b: &Type) -> String {
    match (a, b) {
        (Type::Int, Type::Float) | (Type::Float, Type::Int) => {
            "int and float do not mix: convert with `to_float(x)` or `round(x)`".to_owned()
        }
        (Type::Optional(_), _) | (_, Type::Optional(_)) => {
            "unwrap the optional value with `x ?? default`".to_owned()
        }
        (Type::String, _) | (_, Type::String) => {
            "convert with `to_string(x)` or `parse_int(s)`".to_owned()
        }
        _ => "both operands must have compatible types".to_owned(),
    }
}

fn mismatch(expected: &Type, found: &Type, span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::E0201,
        format!("expected `{expected}`, found `{found}`"),
        span,
    )
    .label(format!("this is `{found}`"))
    .help(conversion_help(expected, found))
}

fn not_assignable(span: Span) -> Diagnostic {
    Diagnostic::error(codes::E0205, "only state fields can be assigned", span)
        .label("not a state field")
        .help("assign a field declared in `state { ... }`, or an entry `map[key]`")
}

fn field_list(event: &EventType) -> String {
    if event.fields.is_empty() {
        return "(none)".to_owned();
    }
    event
        .fields
        .iter()
        .map(|f| format!("`{}`", f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_expr<R>(span: Span) -> Expr<R> {
    Expr {
        kind: ExprKind::Const(Value::None),
        ty: Type::Error,
        span,
    }
}

fn const_expr<R>(value: Value, ty: Type, span: Span) -> Expr<R> {
    Expr {
        kind: ExprKind::Const(value),
        ty,
        span,
    }
}

/// The message of a trap without its kind prefix.
fn trap_detail(trap: &datamesh_stdlib::Trap) -> String {
    match trap {
        datamesh_stdlib::Trap::InvalidConversion(m) | datamesh_stdlib::Trap::OutOfRange(m) => {
            m.clone()
        }
        other => other.to_string(),
    }
}

/// Retypes a list literal as a set when it is compared with a set of the same elements.
fn set_literal<R>(other: &Type, list: &mut Expr<R>) {
    if let (Type::Set(elem), ExprKind::List(items)) = (other, &list.kind)
        && items.iter().all(|i| i.ty.fits(elem))
    {
        list.ty = other.clone();
    }
}
