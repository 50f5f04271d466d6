//! The typed IR: a checked program, with every name resolved to an index and every
//! expression annotated with its type.
//!
//! Both engines consume this IR: the reference interpreter ([`crate::interp`]) walks it,
//! and the code generator will lower it to Cranelift. Invariant: an IR [`Program`] is
//! only produced for a program without errors, so every index is in range and every
//! operator is applied to the types it accepts; engines may rely on it.

use std::fmt;

use datamesh_stdlib::Value;

use crate::ast::{BinaryOp, Span, UnaryOp};

pub mod builtin;

pub use builtin::Builtin;

/// Static types of the language.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    /// `int`: i64, checked arithmetic.
    Int,
    /// `float`: finite f64.
    Float,
    /// `bool`
    Bool,
    /// `string`
    String,
    /// `timestamp`: µs since the epoch, UTC.
    Timestamp,
    /// `duration`: µs.
    Duration,
    /// `T?`
    Optional(Box<Type>),
    /// `list<T>`
    List(Box<Type>),
    /// `set<T>`
    Set(Box<Type>),
    /// `map<K, V>`
    Map(Box<Type>, Box<Type>),
    /// The type of the `none` literal: fits any optional.
    None,
    /// A projection document in a test (`balances["a1"]`).
    Doc(usize),
    /// The type of an expression that already failed to check; accepted everywhere so
    /// one mistake is reported once.
    Error,
}

impl Type {
    /// The value a state field or map entry of this type starts from when the program
    /// gives no default: 0, 0.0, false, "", the epoch, empty collections, none.
    pub fn zero_value(&self) -> Value {
        match self {
            Type::Int => Value::Int(0),
            Type::Float => Value::Float(0.0),
            Type::Bool => Value::Bool(false),
            Type::String => Value::str(""),
            Type::Timestamp => Value::Timestamp(0),
            Type::Duration => Value::Duration(0),
            Type::List(_) => Value::List(Vec::new()),
            Type::Set(_) => Value::Set(Default::default()),
            Type::Map(..) => Value::Map(Default::default()),
            Type::Optional(_) | Type::None | Type::Doc(_) | Type::Error => Value::None,
        }
    }

    /// Whether values of this type can be ordered with `<` and friends.
    pub fn is_ordered(&self) -> bool {
        matches!(
            self,
            Type::Int | Type::Float | Type::String | Type::Timestamp | Type::Duration | Type::Error
        )
    }

    /// Whether this type may be a document key component, a set element or a map key.
    pub fn is_key(&self) -> bool {
        matches!(
            self,
            Type::Int | Type::Bool | Type::String | Type::Timestamp | Type::Duration | Type::Error
        )
    }

    /// Whether this is a scalar (allowed inside collections).
    pub fn is_scalar(&self) -> bool {
        matches!(
            self,
            Type::Int
                | Type::Float
                | Type::Bool
                | Type::String
                | Type::Timestamp
                | Type::Duration
                | Type::Error
        )
    }

    /// Whether a value of type `self` may be stored where `target` is expected.
    pub fn fits(&self, target: &Type) -> bool {
        if self == target || *self == Type::Error || *target == Type::Error {
            return true;
        }
        match (self, target) {
            (Type::None, Type::Optional(_)) => true,
            (inner, Type::Optional(t)) => inner.fits(t),
            (Type::List(a), Type::List(b)) | (Type::Set(a), Type::Set(b)) => a.fits(b),
            _ => false,
        }
    }

    /// The type inside an optional, or the type itself.
    pub fn unwrap_optional(&self) -> &Type {
        match self {
            Type::Optional(inner) => inner,
            other => other,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Int => f.write_str("int"),
            Type::Float => f.write_str("float"),
            Type::Bool => f.write_str("bool"),
            Type::String => f.write_str("string"),
            Type::Timestamp => f.write_str("timestamp"),
            Type::Duration => f.write_str("duration"),
            Type::Optional(t) => write!(f, "{t}?"),
            Type::List(t) => write!(f, "list<{t}>"),
            Type::Set(t) => write!(f, "set<{t}>"),
            Type::Map(k, v) => write!(f, "map<{k}, {v}>"),
            Type::None => f.write_str("none"),
            Type::Doc(_) => f.write_str("document"),
            Type::Error => f.write_str("{unknown}"),
        }
    }
}

/// Index of an event type in [`Program::events`].
pub type EventId = usize;

/// A checked program.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Local event types, in declaration order.
    pub events: Vec<EventType>,
    /// Projections, in declaration order.
    pub projections: Vec<Projection>,
    /// Import blocks.
    pub imports: Vec<Import>,
    /// Export declarations.
    pub exports: Vec<Export>,
    /// Test blocks.
    pub tests: Vec<Test>,
}

impl Program {
    /// Looks up a local event type by name.
    pub fn event_id(&self, name: &str) -> Option<EventId> {
        self.events.iter().position(|e| e.name == name)
    }

    /// The import block for a peer.
    pub fn import(&self, peer: &str) -> Option<&Import> {
        self.imports.iter().find(|i| i.peer == peer)
    }

    /// Per local event type, per field: whether some projection handler (key, guard or
    /// body) reads it. An engine may leave the other fields of a row undecoded.
    pub fn event_fields_read(&self) -> Vec<Vec<bool>> {
        let mut read: Vec<Vec<bool>> = self
            .events
            .iter()
            .map(|e| vec![false; e.fields.len()])
            .collect();
        for handler in self.projections.iter().flat_map(|p| &p.handlers) {
            let Some(fields) = read.get_mut(handler.event) else {
                continue;
            };
            let mut mark = |e: &Expr| {
                if let ExprKind::EventField(i) = e.kind
                    && let Some(f) = fields.get_mut(i)
                {
                    *f = true;
                }
            };
            handler.key.iter().for_each(|e| e.walk(&mut mark));
            if let Some(guard) = &handler.guard {
                guard.walk(&mut mark);
            }
            handler.body.iter().for_each(|s| s.walk_exprs(&mut mark));
        }
        read
    }

    /// Whether a handler or import rule reads a text field of the envelope
    /// (`meta.stream`, `meta.type`, `meta.id`): when none does, an engine need not
    /// build them for every event.
    pub fn reads_text_meta(&self) -> bool {
        let mut found = false;
        let mut look = |e: &Expr| {
            found |= matches!(
                e.kind,
                ExprKind::Meta(MetaField::Stream | MetaField::Type | MetaField::Id)
            );
        };
        let handlers = (self.projections.iter().flat_map(|p| &p.handlers))
            .chain(self.imports.iter().flat_map(|i| &i.rules));
        for h in handlers {
            h.key.iter().chain(&h.guard).for_each(|e| e.walk(&mut look));
            h.body.iter().for_each(|s| s.walk_exprs(&mut look));
        }
        found
    }
}

/// An event type: the schema of a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct EventType {
    /// Name, e.g. `Deposited`.
    pub name: String,
    /// Fields in declaration order; a decoded payload is a row in this order.
    pub fields: Vec<Field>,
    /// Declaration.
    pub span: Span,
}

impl EventType {
    /// Position of a field in the row.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// A field of an event payload or of a projection's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: Type,
    /// Value used when absent: for events, `None` means the field is required; state
    /// fields always have one.
    pub default: Option<Value>,
    /// Declaration.
    pub span: Span,
}

/// A checked projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Name, e.g. `balances`.
    pub name: String,
    /// Version number (`v2` → 2; 1 when not written).
    pub version: u32,
    /// State fields; a document is a row in this order.
    pub state: Vec<Field>,
    /// Types of the key components; empty for a single-document projection.
    pub key: Vec<Type>,
    /// Handlers in source order; for one event they run in this order.
    pub handlers: Vec<Handler>,
    /// Declaration.
    pub span: Span,
}

impl Projection {
    /// The label used for this projection in output: `name` or `name@vN` when the
    /// program declares several versions of one name.
    pub fn label(&self, program: &Program) -> String {
        let versions = program
            .projections
            .iter()
            .filter(|p| p.name == self.name)
            .count();
        if versions > 1 {
            format!("{}@v{}", self.name, self.version)
        } else {
            self.name.clone()
        }
    }
}

/// `on Event [key ...] [where ...] { ... }` in a projection, or a rule in an import.
#[derive(Debug, Clone, PartialEq)]
pub struct Handler {
    /// The event type handled (a local event, or for import rules an index into the
    /// import's own events).
    pub event: EventId,
    /// Key expressions, one per key component (empty for single-document projections
    /// and import rules).
    pub key: Vec<Expr>,
    /// Guard: the handler runs only when this is true.
    pub guard: Option<Expr>,
    /// Statements.
    pub body: Vec<Stmt>,
    /// Types of the local slots (`let`), indexed by slot.
    pub locals: Vec<Type>,
    /// The whole handler.
    pub span: Span,
}

/// Statements.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `let x = value` into a fresh slot.
    Let {
        /// Slot index.
        slot: usize,
        /// Value.
        value: Expr,
    },
    /// `field = value`, `field op= value`, `field[k] op= value`.
    Assign {
        /// What is assigned.
        target: Place,
        /// `None` for `=`, else the arithmetic of a compound assignment.
        op: Option<BinaryOp>,
        /// The right-hand side.
        value: Expr,
        /// The type of what is stored: `value`'s for `=`, that of `target op value` for
        /// a compound assignment (the checker's, so no engine works it out again).
        stored: Type,
        /// The statement.
        span: Span,
    },
    /// `if cond { then } else { otherwise }`
    If {
        /// Condition.
        cond: Expr,
        /// Then branch.
        then: Vec<Stmt>,
        /// Else branch (empty when absent).
        otherwise: Vec<Stmt>,
    },
    /// `delete`: drop the document and stop the handler.
    Delete,
    /// `emit Event { ... }` in an import rule: a full row of the local event.
    Emit {
        /// Local event type.
        event: EventId,
        /// One expression per field of the event, defaults filled in.
        fields: Vec<Expr>,
        /// The statement.
        span: Span,
    },
    /// `field.insert(x)` and other in-place collection updates.
    Mutate {
        /// State field.
        field: usize,
        /// Operation.
        op: Mutation,
        /// Arguments.
        args: Vec<Expr>,
        /// The statement.
        span: Span,
    },
}

impl Stmt {
    /// Calls `f` on every expression of the statement, nested ones included.
    pub fn walk_exprs(&self, f: &mut impl FnMut(&Expr)) {
        match self {
            Stmt::Let { value, .. } => value.walk(f),
            Stmt::Assign { target, value, .. } => {
                if let Place::MapEntry(_, key) = target {
                    key.walk(f);
                }
                value.walk(f);
            }
            Stmt::If {
                cond,
                then,
                otherwise,
            } => {
                cond.walk(f);
                then.iter().chain(otherwise).for_each(|s| s.walk_exprs(f));
            }
            Stmt::Delete => {}
            Stmt::Emit { fields, .. } => fields.iter().for_each(|e| e.walk(f)),
            Stmt::Mutate { args, .. } => args.iter().for_each(|e| e.walk(f)),
        }
    }
}

/// The target of an assignment.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// A state field.
    State(usize),
    /// An entry of a map-typed state field.
    MapEntry(usize, Box<Expr>),
}

/// In-place collection updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// `set.insert(x)`
    Insert,
    /// `list.push(x)`
    Push,
    /// `set.remove(x)`, `map.remove(k)`, `list.remove(x)`
    Remove,
    /// `c.clear()`
    Clear,
}

/// Envelope fields readable as `meta.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaField {
    /// `meta.position`: int, the event's log position.
    Position,
    /// `meta.time`: timestamp of the append.
    Time,
    /// `meta.stream`: string, "" when the event has none.
    Stream,
    /// `meta.type`: string, the event type's name.
    Type,
    /// `meta.id`: string, "" when the event has none.
    Id,
}

impl MetaField {
    /// All fields, for suggestions.
    pub const ALL: [(&'static str, MetaField, Type); 5] = [
        ("position", MetaField::Position, Type::Int),
        ("time", MetaField::Time, Type::Timestamp),
        ("stream", MetaField::Stream, Type::String),
        ("type", MetaField::Type, Type::String),
        ("id", MetaField::Id, Type::String),
    ];
}

/// A typed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr<R = NoReads> {
    /// What it computes.
    pub kind: ExprKind<R>,
    /// Its static type.
    pub ty: Type,
    /// Where it was written.
    pub span: Span,
}

impl<R> Expr<R> {
    /// Calls `f` on this expression and every expression nested in it (the key
    /// expressions of a document read aside).
    pub fn walk(&self, f: &mut impl FnMut(&Expr<R>)) {
        f(self);
        match &self.kind {
            ExprKind::Const(_)
            | ExprKind::EventField(_)
            | ExprKind::Meta(_)
            | ExprKind::State(_)
            | ExprKind::Local(_)
            | ExprKind::Read(_) => {}
            ExprKind::Unary(_, a) => a.walk(f),
            ExprKind::Binary(_, a, b) | ExprKind::Index(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            ExprKind::If(c, a, b) => {
                c.walk(f);
                a.walk(f);
                b.walk(f);
            }
            ExprKind::Call(_, args) | ExprKind::List(args) => {
                args.iter().for_each(|e| e.walk(f));
            }
        }
    }
}

/// Expressions. `R` is what an expression may read besides the event, the envelope,
/// the state and locals: nothing ([`NoReads`], which has no value) in every
/// expression an engine runs, documents of projections ([`DocRead`]) in a test's
/// `expect`. So no engine can be handed a test's document read: the type rules it out.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind<R = NoReads> {
    /// A constant.
    Const(Value),
    /// A field of the event being handled, by row position.
    EventField(usize),
    /// An envelope field.
    Meta(MetaField),
    /// A state field of the current document.
    State(usize),
    /// A local slot.
    Local(usize),
    /// `-x`, `not x`.
    Unary(UnaryOp, Box<Expr<R>>),
    /// Arithmetic, comparison, `and`/`or` (short-circuit), `??`.
    Binary(BinaryOp, Box<Expr<R>>, Box<Expr<R>>),
    /// `if c { a } else { b }`.
    If(Box<Expr<R>>, Box<Expr<R>>, Box<Expr<R>>),
    /// A standard-library call.
    Call(Builtin, Vec<Expr<R>>),
    /// `map[k]` (optional result) or `list[i]` (traps when out of range).
    Index(Box<Expr<R>>, Box<Expr<R>>),
    /// `[a, b, c]`.
    List(Vec<Expr<R>>),
    /// A read of what only `R` can read.
    Read(R),
}

/// No reads beyond the event, the envelope, the state and locals: handlers, guards,
/// keys, import rules and constants. It has no value, so `ExprKind::Read` cannot
/// occur in an engine's expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReads {}

/// A read of a projection's documents, in a test's `expect`.
#[derive(Debug, Clone, PartialEq)]
pub enum DocRead {
    /// A document of a projection: `balances["a1"]`, `totals`.
    Doc {
        /// Projection index.
        projection: usize,
        /// Key components.
        key: Vec<Expr<DocRead>>,
    },
    /// A state field of a document.
    DocField(Box<Expr<DocRead>>, usize),
    /// `exists(doc)`.
    DocExists(Box<Expr<DocRead>>),
}

/// An import block: the peer's events and the rules mapping them to local events.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// Peer node name.
    pub peer: String,
    /// The peer's event types as this node sees them.
    pub events: Vec<EventType>,
    /// Rules; `Handler::event` indexes `events`.
    pub rules: Vec<Handler>,
    /// Declaration.
    pub span: Span,
}

impl Import {
    /// Looks up one of the peer's event types by name.
    pub fn event_id(&self, name: &str) -> Option<usize> {
        self.events.iter().position(|e| e.name == name)
    }
}

/// `export to peer { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// Peer allowed to read.
    pub peer: String,
    /// Local event types it may read.
    pub events: Vec<EventId>,
    /// Declaration.
    pub span: Span,
}

/// A test block.
#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    /// Its name.
    pub name: String,
    /// Steps in order.
    pub steps: Vec<TestStep>,
    /// Declaration.
    pub span: Span,
}

/// Where a test event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// A local event type.
    Local(EventId),
    /// An event of a peer: import index and the import's event index.
    Import(usize, usize),
}

/// A test step.
#[derive(Debug, Clone, PartialEq)]
pub enum TestStep {
    /// Feed an event.
    Given {
        /// Its type.
        source: EventSource,
        /// One expression per payload field, defaults filled in.
        fields: Vec<Expr>,
        /// `with { time: ... }`: µs since the epoch.
        time: Option<Expr>,
        /// `with { stream: ... }`.
        stream: Option<Expr>,
        /// `with { id: ... }`.
        id: Option<Expr>,
        /// The step.
        span: Span,
    },
    /// Check a condition over the projections' documents.
    Expect {
        /// A `bool` expression, which may read documents.
        cond: Expr<DocRead>,
        /// The step.
        span: Span,
    },
}
