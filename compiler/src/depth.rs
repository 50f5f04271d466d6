//! A guard against pathologically deep programs.
//!
//! The checker, the IR's walks, the interpreter and the JIT's translation recurse over
//! expressions, statements and types, so a generated file with an expression of a
//! hundred thousand terms (or a `list<list<...>>` thousands deep) would overflow the
//! stack. [`deepest`] measures nesting with an explicit work list (no recursion), and
//! the checker refuses programs deeper than [`MAX_DEPTH`] with a diagnostic (E0007)
//! before any recursive pass sees them. The parser is table-driven (its stack is on the
//! heap) and the syntax tree drops itself without recursion (see [`crate::ast`]), so
//! parsing and freeing a refused tree are safe at any depth.
//!
//! Invariant: every recursive walk in the front end and the engines runs only on trees
//! this guard has accepted, and each level of them fits comfortably within
//! `2 MiB / MAX_DEPTH` of stack (the node checks and compiles on 2 MiB tokio threads;
//! `compiler/tests/robustness.rs` runs every pass at the limit on such a thread).

use crate::ast::{
    Block, EventDecl, Expr, ExprKind, FieldDecl, File, Item, Member, Span, Stmt, StmtKind,
    TestStep, TypeExpr,
};

/// The deepest nesting of expressions and statements a program may have. Hand-written
/// programs stay far below it; it keeps recursion within a 2 MiB thread stack.
pub const MAX_DEPTH: usize = 128;

enum Node<'a> {
    Expr(&'a Expr),
    Stmt(&'a Stmt),
    Block(&'a Block),
    Type(&'a TypeExpr),
}

/// The types and defaults of declared fields, at depth 1.
fn fields<'a>(fields: &'a [FieldDecl], work: &mut Vec<(Node<'a>, usize)>) {
    for f in fields {
        work.push((Node::Type(&f.ty), 1));
        if let Some(x) = &f.default {
            work.push((Node::Expr(x), 1));
        }
    }
}

fn event<'a>(e: &'a EventDecl, work: &mut Vec<(Node<'a>, usize)>) {
    fields(&e.fields, work);
}

/// The depth and span of the most deeply nested node of the file.
pub fn deepest(file: &File) -> (usize, Span) {
    let mut work: Vec<(Node<'_>, usize)> = Vec::new();
    for item in &file.items {
        match item {
            Item::Event(e) => event(e, &mut work),
            Item::Projection(p) => {
                for member in &p.members {
                    match member {
                        Member::Key(k) => work.extend(k.parts.iter().map(|x| (Node::Expr(x), 1))),
                        Member::State(decls, _) => fields(decls, &mut work),
                        Member::Handler(h) => {
                            work.extend(
                                h.key
                                    .iter()
                                    .flat_map(|k| k.parts.iter())
                                    .map(|x| (Node::Expr(x), 1)),
                            );
                            work.extend(h.guard.iter().map(|x| (Node::Expr(x), 1)));
                            work.push((Node::Block(&h.body), 1));
                        }
                        Member::Error(_) => {}
                    }
                }
            }
            Item::Import(i) => {
                for e in &i.events {
                    event(e, &mut work);
                }
                for rule in &i.rules {
                    work.extend(rule.guard.iter().map(|x| (Node::Expr(x), 1)));
                    work.push((Node::Block(&rule.body), 1));
                }
            }
            Item::Test(t) => {
                for step in &t.steps {
                    match step {
                        TestStep::Given(g) => {
                            work.extend(
                                g.fields
                                    .iter()
                                    .chain(&g.meta)
                                    .map(|f| (Node::Expr(&f.value), 1)),
                            );
                        }
                        TestStep::Expect(x, _) => work.push((Node::Expr(x), 1)),
                        TestStep::Error(_) => {}
                    }
                }
            }
            Item::Export(_) | Item::Error(_) => {}
        }
    }
    let (mut max, mut at) = (0, Span::default());
    while let Some((node, depth)) = work.pop() {
        let span = match node {
            Node::Expr(e) => e.span,
            Node::Stmt(s) => s.span,
            Node::Block(b) => b.span,
            Node::Type(t) => t.span(),
        };
        if depth > max {
            (max, at) = (depth, span);
        }
        let next = depth + 1;
        match node {
            Node::Block(b) => work.extend(b.stmts.iter().map(|s| (Node::Stmt(s), next))),
            Node::Stmt(s) => match &s.kind {
                StmtKind::Let(_, ty, x) => {
                    work.push((Node::Expr(x), next));
                    if let Some(ty) = ty {
                        work.push((Node::Type(ty), next));
                    }
                }
                StmtKind::Expr(x) => work.push((Node::Expr(x), next)),
                StmtKind::Assign(a, _, b) => {
                    work.extend([(Node::Expr(a), next), (Node::Expr(b), next)])
                }
                StmtKind::If(c, then, otherwise) => {
                    work.push((Node::Expr(c), next));
                    work.push((Node::Block(then), next));
                    if let Some(o) = otherwise {
                        work.push((Node::Stmt(o), next));
                    }
                }
                StmtKind::Block(b) => work.push((Node::Block(b), next)),
                StmtKind::Emit(_, fields) => {
                    work.extend(fields.iter().map(|f| (Node::Expr(&f.value), next)))
                }
                StmtKind::Delete | StmtKind::Error => {}
            },
            Node::Expr(e) => match &e.kind {
                ExprKind::Field(x, _) | ExprKind::Unary(_, x) => work.push((Node::Expr(x), next)),
                ExprKind::Index(x, xs) | ExprKind::MethodCall(x, _, xs) => {
                    work.push((Node::Expr(x), next));
                    work.extend(xs.iter().map(|x| (Node::Expr(x), next)));
                }
                ExprKind::Call(_, xs) | ExprKind::List(xs) => {
                    work.extend(xs.iter().map(|x| (Node::Expr(x), next)))
                }
                ExprKind::Binary(_, a, b) => {
                    work.extend([(Node::Expr(a), next), (Node::Expr(b), next)])
                }
                ExprKind::If(c, a, b) => work.extend([
                    (Node::Expr(c), next),
                    (Node::Expr(a), next),
                    (Node::Expr(b), next),
                ]),
                _ => {}
            },
            Node::Type(t) => match t {
                TypeExpr::Named { args, .. } => {
                    work.extend(args.iter().map(|t| (Node::Type(t), next)))
                }
                TypeExpr::Optional(inner, _) => work.push((Node::Type(inner), next)),
            },
        }
    }
    (max, at)
}
