//! The syntax tree the parser builds: every node carries the byte span it came from.
//!
//! Invariant: the AST is exactly what was written, with no name resolution and no
//! desugaring, so `dmc explain --ast` shows the user's own program and diagnostics can
//! point at any part of it. Nodes that failed to parse are kept as `Error` variants so
//! later passes can skip them without reporting follow-on noise.

use std::fmt;

/// A byte range in the source file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// Makes a span from byte offsets (saturating at `u32::MAX`).
    pub fn new(start: usize, end: usize) -> Span {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Span {
            start: clamp(start),
            end: clamp(end),
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Length in bytes.
    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// Whether the span covers no bytes.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        miette::SourceSpan::new((span.start as usize).into(), span.len())
    }
}

/// A name as written, with its span.
#[derive(Clone, PartialEq)]
pub struct Ident {
    /// The text.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{:?}", self.name, self.span)
    }
}

/// A whole `.dmp` file.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

/// A top-level declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `event Name { fields }`
    Event(EventDecl),
    /// `projection name v1 { ... }`
    Projection(ProjectionDecl),
    /// `import peer { events and rules }`
    Import(ImportDecl),
    /// `export to peer { Event, ... }`
    Export(ExportDecl),
    /// `test "name" { given ...; expect ... }`
    Test(TestDecl),
    /// An item that failed to parse (already reported).
    Error(Span),
}

/// `event Name { field: type = default, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct EventDecl {
    /// The event type's name.
    pub name: Ident,
    /// Payload fields.
    pub fields: Vec<FieldDecl>,
    /// The whole declaration.
    pub span: Span,
}

/// `name: type [= default]`, in an event or a state block.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    /// Field name.
    pub name: Ident,
    /// Declared type.
    pub ty: TypeExpr,
    /// Default value, a constant expression.
    pub default: Option<Expr>,
    /// The whole field.
    pub span: Span,
}

/// A type as written.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    /// `int`, `list<int>`, `map<string, int>`, ...
    Named {
        /// Type constructor name.
        name: Ident,
        /// Type arguments inside `<...>`.
        args: Vec<TypeExpr>,
        /// The whole type.
        span: Span,
    },
    /// `T?`
    Optional(Box<TypeExpr>, Span),
}

impl TypeExpr {
    /// Where the type was written.
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Named { span, .. } | TypeExpr::Optional(_, span) => *span,
        }
    }
}

/// `projection name [vN] { members }`
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionDecl {
    /// Projection name.
    pub name: Ident,
    /// Version tag such as `v2`, if written.
    pub version: Option<Ident>,
    /// Key, state and handlers in source order.
    pub members: Vec<Member>,
    /// The whole declaration.
    pub span: Span,
}

/// A member of a projection body.
#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    /// `key expr` or `key (expr, expr, ...)`
    Key(KeySpec),
    /// `state { fields }`
    State(Vec<FieldDecl>, Span),
    /// `on Event [key ...] [where ...] { ... }`
    Handler(Handler),
    /// A member that failed to parse.
    Error(Span),
}

/// The components of a document key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    /// One expression per component.
    pub parts: Vec<Expr>,
    /// The whole `key ...` clause.
    pub span: Span,
}

/// `on Event [key ...] [where guard] { body }`, in a projection or an import block.
#[derive(Debug, Clone, PartialEq)]
pub struct Handler {
    /// The event type handled.
    pub event: Ident,
    /// A per-handler key overriding the projection's.
    pub key: Option<KeySpec>,
    /// Only events for which this is true are handled.
    pub guard: Option<Expr>,
    /// Statements.
    pub body: Block,
    /// From `on` to the end of the body.
    pub span: Span,
}

/// `{ stmt* }`
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Statements in order.
    pub stmts: Vec<Stmt>,
    /// Braces included.
    pub span: Span,
}

/// A statement with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    /// What it does.
    pub kind: StmtKind,
    /// Where.
    pub span: Span,
}

/// Statements.
#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    /// `let name [: type] = value`
    Let(Ident, Option<TypeExpr>, Expr),
    /// `place op value`
    Assign(Expr, AssignOp, Expr),
    /// `if cond { ... } [else ...]`
    If(Expr, Block, Option<Box<Stmt>>),
    /// A block used as the `else` branch of an `if` (`else { ... }`).
    Block(Block),
    /// `delete`
    Delete,
    /// `emit Event { field: value, ... }`
    Emit(Ident, Vec<FieldInit>),
    /// An expression evaluated for its effect: `tags.insert(x)`.
    Expr(Expr),
    /// A statement that failed to parse.
    Error,
}

/// Assignment operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignOp {
    /// `=`
    Set,
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
    /// `%=`
    Rem,
}

/// `name: value` in an `emit`, a `given` or a `with` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInit {
    /// Field name.
    pub name: Ident,
    /// Value.
    pub value: Expr,
}

/// `import peer { event ...; on ... { emit ... } }`
#[derive(Debug, Clone, PartialEq)]
pub struct ImportDecl {
    /// The peer node's name.
    pub peer: Ident,
    /// The peer's event shapes, local to this block.
    pub events: Vec<EventDecl>,
    /// Rules turning peer events into local ones.
    pub rules: Vec<Handler>,
    /// The whole block.
    pub span: Span,
}

/// `export to peer { Event, ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct ExportDecl {
    /// The peer allowed to read.
    pub peer: Ident,
    /// Event types it may read.
    pub events: Vec<Ident>,
    /// The whole declaration.
    pub span: Span,
}

/// `test "name" { steps }`
#[derive(Debug, Clone, PartialEq)]
pub struct TestDecl {
    /// The test's name.
    pub name: String,
    /// Where the name was written.
    pub name_span: Span,
    /// Steps in order.
    pub steps: Vec<TestStep>,
    /// The whole block.
    pub span: Span,
}

/// A step of a test.
#[derive(Debug, Clone, PartialEq)]
pub enum TestStep {
    /// `given [from peer] Event { fields } [with { time: ..., stream: ..., id: ... }]`
    Given(Given),
    /// `expect condition`
    Expect(Expr, Span),
    /// A step that failed to parse.
    Error(Span),
}

/// An event fed to the projections in a test.
#[derive(Debug, Clone, PartialEq)]
pub struct Given {
    /// The peer it comes from, for import rules.
    pub from: Option<Ident>,
    /// Event type.
    pub event: Ident,
    /// Payload.
    pub fields: Vec<FieldInit>,
    /// Envelope fields.
    pub meta: Vec<FieldInit>,
    /// The whole step.
    pub span: Span,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// Expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// `42`
    Int(i64),
    /// `4.2`
    Float(f64),
    /// `"text"`
    Str(String),
    /// `true`, `false`
    Bool(bool),
    /// `none`
    None,
    /// `90s`, `1h30m` (microseconds)
    Duration(i64),
    /// A name: a state field, a local, `meta`, or a projection in a test.
    Name(String),
    /// The `event` keyword: the payload of the event being handled.
    EventRoot,
    /// `base.field`
    Field(Box<Expr>, Ident),
    /// `base[index, ...]`
    Index(Box<Expr>, Vec<Expr>),
    /// `function(args)`
    Call(Ident, Vec<Expr>),
    /// `receiver.method(args)`
    MethodCall(Box<Expr>, Ident, Vec<Expr>),
    /// `-x`, `not x`
    Unary(UnaryOp, Box<Expr>),
    /// `a op b`
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `if c { a } else { b }`
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `[a, b, c]`
    List(Vec<Expr>),
    /// An expression that failed to parse.
    Error,
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-`
    Neg,
    /// `not`
    Not,
}

/// Infix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `and`
    And,
    /// `or`
    Or,
    /// `??`
    Coalesce,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Coalesce => "??",
        }
    }
}

// ---------------------------------------------------------------- dropping

// The derived drop glue of a recursive tree recurses once per level, so dropping a
// generated program nested a hundred thousand levels deep would overflow the stack (the
// checker refuses such a program, but it still has to free it). These `Drop`s move the
// children of a node onto a heap work list before the node itself goes, so every node
// is dropped with its children already taken: no recursion, whatever the depth.

impl Expr {
    /// A placeholder left where a child was taken out.
    fn hole() -> Expr {
        Expr {
            kind: ExprKind::Error,
            span: Span::default(),
        }
    }

    /// Moves this node's sub-expressions onto `work`.
    fn take_children(&mut self, work: &mut Vec<Expr>) {
        match &mut self.kind {
            ExprKind::Field(x, _) | ExprKind::Unary(_, x) => {
                work.push(std::mem::replace(&mut **x, Expr::hole()));
            }
            ExprKind::Index(x, xs) | ExprKind::MethodCall(x, _, xs) => {
                work.push(std::mem::replace(&mut **x, Expr::hole()));
                work.append(xs);
            }
            ExprKind::Call(_, xs) | ExprKind::List(xs) => work.append(xs),
            ExprKind::Binary(_, a, b) => {
                work.push(std::mem::replace(&mut **a, Expr::hole()));
                work.push(std::mem::replace(&mut **b, Expr::hole()));
            }
            ExprKind::If(c, a, b) => {
                work.push(std::mem::replace(&mut **c, Expr::hole()));
                work.push(std::mem::replace(&mut **a, Expr::hole()));
                work.push(std::mem::replace(&mut **b, Expr::hole()));
            }
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Str(_)
            | ExprKind::Bool(_)
            | ExprKind::None
            | ExprKind::Duration(_)
            | ExprKind::Name(_)
            | ExprKind::EventRoot
            | ExprKind::Error => {}
        }
    }
}

impl Drop for Expr {
    fn drop(&mut self) {
        let mut work = Vec::new();
        self.take_children(&mut work);
        while let Some(mut expr) = work.pop() {
            expr.take_children(&mut work);
            // `expr` has no children left: dropping it does not recurse.
        }
    }
}

impl Stmt {
    /// Moves this statement's nested statements (blocks, `else` branches) onto `work`.
    /// Expressions stay: they drop themselves without recursion.
    fn take_children(&mut self, work: &mut Vec<Stmt>) {
        match &mut self.kind {
            StmtKind::If(_, then, otherwise) => {
                work.append(&mut then.stmts);
                if let Some(o) = otherwise.take() {
                    work.push(*o);
                }
            }
            StmtKind::Block(b) => work.append(&mut b.stmts),
            StmtKind::Let(..)
            | StmtKind::Assign(..)
            | StmtKind::Delete
            | StmtKind::Emit(..)
            | StmtKind::Expr(_)
            | StmtKind::Error => {}
        }
    }
}

impl Drop for Stmt {
    fn drop(&mut self) {
        let mut work = Vec::new();
        self.take_children(&mut work);
        while let Some(mut stmt) = work.pop() {
            stmt.take_children(&mut work);
        }
    }
}

impl TypeExpr {
    /// Moves this type's argument types onto `work`.
    fn take_children(&mut self, work: &mut Vec<TypeExpr>) {
        match self {
            TypeExpr::Named { args, .. } => work.append(args),
            TypeExpr::Optional(inner, span) => {
                let hole = TypeExpr::Named {
                    name: Ident {
                        name: String::new(),
                        span: *span,
                    },
                    args: Vec::new(),
                    span: *span,
                };
                work.push(std::mem::replace(&mut **inner, hole));
            }
        }
    }
}

impl Drop for TypeExpr {
    fn drop(&mut self) {
        let mut work = Vec::new();
        self.take_children(&mut work);
        while let Some(mut ty) = work.pop() {
            ty.take_children(&mut work);
        }
    }
}

/// Builds a binary expression spanning `l..r` (used by the grammar's actions).
pub fn binary(op: BinaryOp, a: Expr, b: Expr, l: usize, r: usize) -> Expr {
    Expr {
        kind: ExprKind::Binary(op, Box::new(a), Box::new(b)),
        span: Span::new(l, r),
    }
}
