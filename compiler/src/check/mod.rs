//! The checker: name resolution and type checking from the AST to the typed IR.
//!
//! It walks the whole file and collects every problem instead of stopping at the first:
//! an expression that fails to check gets [`Type::Error`], which every later check
//! accepts silently, so one mistake is reported once. Invariant: [`check`] returns a
//! [`Program`] only when no error was reported; warnings never block.

mod builtins;
mod expr;
mod names;

use crate::codes;
use std::collections::HashMap;

use datamesh_stdlib::Value;

use crate::ast::{self, Span};
use crate::diag::Diagnostic;
use crate::ir::{
    EventSource, EventType, Export, Field, Handler, Import, Program, Projection, Test, TestStep,
    Type,
};

pub use builtins::resolve as resolve_builtin;
use expr::{Cx, Mode};
use names::suggest;

/// The result of checking a file: the program (when there is no error) and every
/// diagnostic, errors and warnings, in source order.
#[derive(Debug)]
pub struct Checked {
    /// The typed program; `None` when any error was reported.
    pub program: Option<Program>,
    /// All problems found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses and checks a source file.
pub fn check_source(source: &str) -> Checked {
    let (file, parse_errors) = crate::parser::parse(source);
    let mut diagnostics: Vec<Diagnostic> = parse_errors
        .iter()
        .map(crate::diag::from_parse_error)
        .collect();
    let (depth, at) = crate::depth::deepest(&file);
    if depth > crate::depth::MAX_DEPTH {
        diagnostics.push(
            Diagnostic::error(
                codes::E0007,
                format!(
                    "the program nests {depth} levels deep; the limit is {}",
                    crate::depth::MAX_DEPTH
                ),
                at,
            )
            .label("nested too deeply")
            .help("split long expressions with `let` bindings, and long `else if` chains into separate handlers; a type needs at most two levels (`map<string, int>`, `int?`)"),
        );
        // The tree drops itself without recursion, however deep (see `ast`).
        drop(file);
        return Checked {
            program: None,
            diagnostics,
        };
    }
    let checked = check(&file);
    // After a syntax error, parts of the file are missing from the tree, so warnings
    // about unused or unassigned declarations would mostly be noise.
    let syntax_errors = !diagnostics.is_empty();
    diagnostics.extend(
        checked
            .diagnostics
            .into_iter()
            .filter(|d| !syntax_errors || d.is_error()),
    );
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Checked {
        program: if has_errors { None } else { checked.program },
        diagnostics,
    }
}

/// Checks a parsed file.
pub fn check(file: &ast::File) -> Checked {
    let mut checker = Checker::default();
    let program = checker.file(file);
    checker.diags.sort_by_key(|d| (d.span.start, d.span.end));
    let has_errors = checker.diags.iter().any(Diagnostic::is_error);
    Checked {
        program: (!has_errors).then_some(program),
        diagnostics: checker.diags,
    }
}

#[derive(Default)]
struct Checker {
    diags: Vec<Diagnostic>,
}

/// Which declarations are used, for the unused-declaration warnings.
#[derive(Default)]
struct Usage {
    events: Vec<bool>,
}

impl Checker {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn file(&mut self, file: &ast::File) -> Program {
        let mut program = Program {
            events: Vec::new(),
            projections: Vec::new(),
            imports: Vec::new(),
            exports: Vec::new(),
            tests: Vec::new(),
        };
        // Events first: everything else refers to them.
        let mut seen: HashMap<String, Span> = HashMap::new();
        for item in &file.items {
            if let ast::Item::Event(decl) = item {
                if let Some(first) = seen.get(&decl.name.name) {
                    self.error(
                        Diagnostic::error(
                            codes::E0101,
                            format!("event `{}` is declared twice", decl.name.name),
                            decl.name.span,
                        )
                        .label("declared again here")
                        .related(*first, "first declared here")
                        .help("rename one of them, or merge their fields"),
                    );
                    continue;
                }
                seen.insert(decl.name.name.clone(), decl.name.span);
                let event = self.event_decl(decl);
                program.events.push(event);
            }
        }
        let mut usage = Usage {
            events: vec![false; program.events.len()],
        };
        let mut projection_names: HashMap<(String, u32), Span> = HashMap::new();
        let mut import_names: HashMap<String, Span> = HashMap::new();
        let mut test_names: HashMap<String, Span> = HashMap::new();
        for item in &file.items {
            match item {
                ast::Item::Projection(decl) => {
                    let projection = self.projection(decl, &program.events, &mut usage);
                    let id = (projection.name.clone(), projection.version);
                    if let Some(first) = projection_names.get(&id) {
                        self.error(
                            Diagnostic::error(
                                codes::E0101,
                                format!("projection `{} v{}` is declared twice", id.0, id.1),
                                decl.name.span,
                            )
                            .label("declared again here")
                            .related(*first, "first declared here")
                            .help("give the new one another version, e.g. `v2`"),
                        );
                    } else {
                        projection_names.insert(id, decl.name.span);
                        program.projections.push(projection);
                    }
                }
                ast::Item::Import(decl) => {
                    if let Some(first) = import_names.get(&decl.peer.name) {
                        self.error(
                            Diagnostic::error(
                                codes::E0101,
                                format!("peer `{}` is imported twice", decl.peer.name),
                                decl.peer.span,
                            )
                            .label("imported again here")
                            .related(*first, "first imported here")
                            .help("put all rules for one peer in one `import` block"),
                        );
                        continue;
                    }
                    import_names.insert(decl.peer.name.clone(), decl.peer.span);
                    let import = self.import(decl, &program.events, &mut usage);
                    program.imports.push(import);
                }
                ast::Item::Export(decl) => {
                    let export = self.export(decl, &program.events, &mut usage);
                    program.exports.push(export);
                }
                ast::Item::Event(_) | ast::Item::Test(_) | ast::Item::Error(_) => {}
            }
        }
        // Tests last: they refer to projections and imports.
        for item in &file.items {
            if let ast::Item::Test(decl) = item {
                if let Some(first) = test_names.get(&decl.name) {
                    self.error(
                        Diagnostic::error(
                            codes::E0101,
                            format!("test \"{}\" is declared twice", decl.name),
                            decl.name_span,
                        )
                        .label("declared again here")
                        .related(*first, "first declared here")
                        .help("test names must be unique so results can be told apart"),
                    );
                    continue;
                }
                test_names.insert(decl.name.clone(), decl.name_span);
                let test = self.test(decl, &program);
                program.tests.push(test);
            }
        }
        for (id, used) in usage.events.iter().enumerate() {
            if !used {
                let event = &program.events[id];
                self.error(
                    Diagnostic::warning(codes::W0001, format!("event `{}` is never used", event.name), event.span)
                        .label("declared here")
                        .help("handle it in a projection, emit it from an import, export it, or remove it"),
                );
            }
        }
        program
    }

    fn event_decl(&mut self, decl: &ast::EventDecl) -> EventType {
        let fields = self.fields(&decl.fields, FieldKind::Event);
        EventType {
            name: decl.name.name.clone(),
            fields,
            span: decl.name.span,
        }
    }

    fn fields(&mut self, decls: &[ast::FieldDecl], kind: FieldKind) -> Vec<Field> {
        let mut fields: Vec<Field> = Vec::new();
        for decl in decls {
            if let Some(first) = fields.iter().find(|f| f.name == decl.name.name) {
                let first = first.span;
                self.error(
                    Diagnostic::error(
                        codes::E0101,
                        format!("field `{}` is declared twice", decl.name.name),
                        decl.name.span,
                    )
                    .label("declared again here")
                    .related(first, "first declared here"),
                );
                continue;
            }
            if decl.name.name == "meta" && kind == FieldKind::State {
                self.error(
                    Diagnostic::error(codes::E0217, "`meta` is a reserved name", decl.name.span)
                        .label("reserved for the event envelope (`meta.time`, ...)")
                        .help("choose another name for this field"),
                );
            }
            let ty = self.resolve_type(&decl.ty);
            let default = match &decl.default {
                Some(expr) => self.constant(expr, &ty),
                None => match (kind, &ty) {
                    (FieldKind::Event, Type::Optional(_)) => Some(Value::None),
                    (FieldKind::Event, _) => None,
                    (FieldKind::State, ty) => Some(ty.zero_value()),
                },
            };
            fields.push(Field {
                name: decl.name.name.clone(),
                ty,
                default,
                span: decl.name.span,
            });
        }
        fields
    }

    /// Checks and evaluates a default value.
    fn constant(&mut self, expr: &ast::Expr, ty: &Type) -> Option<Value> {
        let mut cx = Cx::new(Mode::Const, &mut self.diags);
        let typed = cx.expect_type(expr, ty);
        if !typed.ty.fits(ty) {
            return Some(ty.zero_value());
        }
        if typed.ty == Type::Error {
            return Some(ty.zero_value());
        }
        match crate::interp::eval_const(&typed) {
            Ok(value) => Some(value),
            Err(trap) => {
                self.error(
                    Diagnostic::error(codes::E0204, format!("default value cannot be computed: {trap}"), expr.span)
                        .label("this traps")
                        .help("a default is computed once, when the program is loaded; write a value that does not trap"),
                );
                Some(ty.zero_value())
            }
        }
    }

    fn resolve_type(&mut self, ty: &ast::TypeExpr) -> Type {
        match ty {
            ast::TypeExpr::Optional(inner, span) => {
                let inner = self.resolve_type(inner);
                if !inner.is_scalar() {
                    self.error(
                        Diagnostic::error(
                            codes::E0104,
                            format!("`{inner}` cannot be optional"),
                            *span,
                        )
                        .label("only scalar types can be optional")
                        .help("collections are never absent: an empty collection stands for none"),
                    );
                    return Type::Error;
                }
                Type::Optional(Box::new(inner))
            }
            ast::TypeExpr::Named { name, args, span } => {
                let scalar = match name.name.as_str() {
                    "int" => Some(Type::Int),
                    "float" => Some(Type::Float),
                    "bool" => Some(Type::Bool),
                    "string" => Some(Type::String),
                    "timestamp" => Some(Type::Timestamp),
                    "duration" => Some(Type::Duration),
                    _ => None,
                };
                if let Some(scalar) = scalar {
                    if !args.is_empty() {
                        self.error(
                            Diagnostic::error(
                                codes::E0104,
                                format!("`{}` takes no type arguments", name.name),
                                *span,
                            )
                            .label("unexpected `<...>`"),
                        );
                    }
                    return scalar;
                }
                let args: Vec<Type> = args.iter().map(|a| self.resolve_type(a)).collect();
                let arity = |n: usize| args.len() == n;
                match name.name.as_str() {
                    "list" | "set" if arity(1) => {
                        let elem = args[0].clone();
                        let ok = if name.name == "set" {
                            elem.is_key()
                        } else {
                            elem.is_scalar()
                        };
                        if !ok {
                            let what = if name.name == "set" {
                                "int, bool, string, timestamp or duration"
                            } else {
                                "a scalar type (int, float, bool, string, timestamp, duration)"
                            };
                            self.error(
                                Diagnostic::error(
                                    codes::E0104,
                                    format!("`{}` cannot hold `{elem}`", name.name),
                                    *span,
                                )
                                .label(format!("elements must be {what}")),
                            );
                            return Type::Error;
                        }
                        if name.name == "set" {
                            Type::Set(Box::new(elem))
                        } else {
                            Type::List(Box::new(elem))
                        }
                    }
                    "map" if arity(2) => {
                        if !args[0].is_key() {
                            self.error(
                                Diagnostic::error(
                                    codes::E0104,
                                    format!("`{}` cannot be a map key", args[0]),
                                    *span,
                                )
                                .label("keys must be int, bool, string, timestamp or duration"),
                            );
                            return Type::Error;
                        }
                        if !args[1].is_scalar() {
                            self.error(
                                Diagnostic::error(
                                    codes::E0104,
                                    format!("a map cannot hold `{}`", args[1]),
                                    *span,
                                )
                                .label("values must be scalar types"),
                            );
                            return Type::Error;
                        }
                        Type::Map(Box::new(args[0].clone()), Box::new(args[1].clone()))
                    }
                    "list" | "set" | "map" => {
                        let want = if name.name == "map" {
                            "two type arguments: `map<K, V>`"
                        } else {
                            "one type argument"
                        };
                        self.error(
                            Diagnostic::error(
                                codes::E0104,
                                format!("`{}` needs {want}", name.name),
                                *span,
                            )
                            .label("wrong number of type arguments")
                            .help(format!(
                                "for example `{}`",
                                if name.name == "map" {
                                    "map<string, int>"
                                } else {
                                    "list<string>"
                                }
                            )),
                        );
                        Type::Error
                    }
                    other => {
                        const TYPES: &[&str] = &[
                            "int",
                            "float",
                            "bool",
                            "string",
                            "timestamp",
                            "duration",
                            "list",
                            "set",
                            "map",
                        ];
                        let d = Diagnostic::error(
                            codes::E0103,
                            format!("unknown type `{other}`"),
                            name.span,
                        )
                        .label("not a type");
                        let d = match suggest(other, TYPES.iter().copied()) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help("types are int, float, bool, string, timestamp, duration, T?, list<T>, set<T>, map<K, V>"),
                        };
                        self.error(d);
                        Type::Error
                    }
                }
            }
        }
    }

    /// A projection: its version, state and key clauses, each handler (with its key,
    /// guard and body), the one key shape all handlers share, and the warnings about
    /// what never runs or never changes.
    fn projection(
        &mut self,
        decl: &ast::ProjectionDecl,
        events: &[EventType],
        usage: &mut Usage,
    ) -> Projection {
        let version = self.projection_version(decl);
        let (state, key_decl) = self.projection_members(decl);
        let mut assigned = vec![false; state.len()];
        let mut handlers = Vec::new();
        let mut shape = KeyShape::default();
        for member in &decl.members {
            let ast::Member::Handler(h) = member else {
                continue;
            };
            let Some(handler) =
                self.handler(h, (events, &mut *usage), (&state, key_decl), &mut assigned)
            else {
                continue;
            };
            let key_span = h.key.as_ref().or(key_decl).map_or(h.event.span, |s| s.span);
            let types: Vec<Type> = handler.key.iter().map(|k| k.ty.clone()).collect();
            shape.add(&mut self.diags, h, types, key_span);
            handlers.push(handler);
        }
        self.projection_warnings(decl, key_decl, (&state, &assigned), handlers.is_empty());
        Projection {
            name: decl.name.name.clone(),
            version,
            state,
            key: shape.types.map(|(t, _)| t).unwrap_or_default(),
            handlers,
            span: decl.name.span,
        }
    }

    /// The version a projection declares (`v1` when it declares none).
    fn projection_version(&mut self, decl: &ast::ProjectionDecl) -> u32 {
        match &decl.version {
            None => 1,
            Some(v) => match v.name.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if n > 0 => n,
                _ => {
                    self.error(
                        Diagnostic::error(
                            codes::E0213,
                            format!("`{}` is not a version", v.name),
                            v.span,
                        )
                        .label("expected `v1`, `v2`, ...")
                        .help("write the version as `v` followed by a positive number"),
                    );
                    1
                }
            },
        }
    }

    /// A projection's state fields and its `key` clause, each declared at most once.
    fn projection_members<'d>(
        &mut self,
        decl: &'d ast::ProjectionDecl,
    ) -> (Vec<Field>, Option<&'d ast::KeySpec>) {
        let mut state_decl: Option<Span> = None;
        let mut key_decl: Option<&ast::KeySpec> = None;
        let mut state = Vec::new();
        for member in &decl.members {
            match member {
                ast::Member::State(fields, span) => {
                    if let Some(first) = state_decl {
                        self.error(
                            Diagnostic::error(
                                codes::E0216,
                                "a projection has one `state` block",
                                *span,
                            )
                            .label("second state block")
                            .related(first, "first state block here")
                            .help("merge the fields into one `state { ... }`"),
                        );
                        continue;
                    }
                    state_decl = Some(*span);
                    state = self.fields(fields, FieldKind::State);
                }
                ast::Member::Key(spec) => {
                    if let Some(first) = key_decl {
                        self.error(
                            Diagnostic::error(codes::E0216, "a projection has one `key` clause", spec.span)
                                .label("second key clause")
                                .related(first.span, "first key clause here")
                                .help("use a composite key `key (a, b)` or per-handler keys `on E key ...`"),
                        );
                        continue;
                    }
                    key_decl = Some(spec);
                }
                ast::Member::Handler(_) | ast::Member::Error(_) => {}
            }
        }
        (state, key_decl)
    }

    /// One handler of a projection: its key (its own or the projection's), guard and
    /// body, checked against the event and the state; marks the state fields it
    /// assigns. `None` when its event is unknown (reported).
    fn handler(
        &mut self,
        h: &ast::Handler,
        (events, usage): (&[EventType], &mut Usage),
        (state, key_decl): (&[Field], Option<&ast::KeySpec>),
        assigned: &mut [bool],
    ) -> Option<Handler> {
        let event_id = self.lookup_event(&h.event, events)?;
        usage.events[event_id] = true;
        let event = &events[event_id];
        let spec = h.key.as_ref().or(key_decl);
        let mut cx = Cx::new(Mode::Handler, &mut self.diags);
        cx.event = Some(event);
        cx.state = Some(state);
        let key: Vec<crate::ir::Expr> = match spec {
            Some(spec) => spec
                .parts
                .iter()
                .map(|p| cx.key_expr(p, h.key.is_none(), &h.event))
                .collect(),
            None => Vec::new(),
        };
        let guard = h.guard.as_ref().map(|g| cx.condition(g, "a `where` guard"));
        let body = cx.block(&h.body.stmts);
        let locals = cx.finish_locals();
        for (slot, flag) in cx.assigned.iter().enumerate() {
            if *flag {
                assigned[slot] = true;
            }
        }
        if let Some(guard) = &guard
            && guard.kind == crate::ir::ExprKind::Const(Value::Bool(false))
        {
            self.error(
                Diagnostic::warning(codes::W0004, "this handler can never run", guard.span)
                    .label("this guard is always false")
                    .related(h.event.span, "handler declared here")
                    .help("remove the handler, or fix its `where` condition"),
            );
        }
        Some(Handler {
            event: event_id,
            key,
            guard,
            body,
            locals,
            span: h.span,
        })
    }

    /// The warnings about a projection as a whole: a `key` clause no handler uses, no
    /// handler at all, state fields never assigned.
    fn projection_warnings(
        &mut self,
        decl: &ast::ProjectionDecl,
        key_decl: Option<&ast::KeySpec>,
        (state, assigned): (&[Field], &[bool]),
        no_handler: bool,
    ) {
        if let Some(spec) = key_decl
            && decl.members.iter().all(|m| match m {
                ast::Member::Handler(h) => h.key.is_some(),
                _ => true,
            })
            && decl
                .members
                .iter()
                .any(|m| matches!(m, ast::Member::Handler(_)))
        {
            self.error(
                Diagnostic::warning(
                    codes::W0007,
                    "the projection's key is never used",
                    spec.span,
                )
                .label("every handler has its own key")
                .help("remove this `key` clause, or drop the handlers' own keys"),
            );
        }
        if no_handler
            && decl
                .members
                .iter()
                .all(|m| !matches!(m, ast::Member::Error(_)))
        {
            self.error(
                Diagnostic::warning(
                    codes::W0006,
                    format!("projection `{}` handles no events", decl.name.name),
                    decl.name.span,
                )
                .label("its documents never change")
                .help("add a handler: `on EventType { ... }`"),
            );
        }
        for (field, was_assigned) in state.iter().zip(assigned) {
            if !was_assigned {
                self.error(
                    Diagnostic::warning(
                        codes::W0002,
                        format!("state field `{}` is never assigned", field.name),
                        field.span,
                    )
                    .label("always keeps its default")
                    .help("assign it in a handler, or remove it"),
                );
            }
        }
    }

    fn lookup_event(&mut self, name: &ast::Ident, events: &[EventType]) -> Option<usize> {
        if let Some(id) = events.iter().position(|e| e.name == name.name) {
            return Some(id);
        }
        let d = Diagnostic::error(
            codes::E0102,
            format!("unknown event type `{}`", name.name),
            name.span,
        )
        .label("not declared");
        let d = match suggest(&name.name, events.iter().map(|e| e.name.as_str())) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("declare it: `event {} {{ ... }}`", name.name)),
        };
        self.error(d);
        None
    }

    fn import(&mut self, decl: &ast::ImportDecl, local: &[EventType], usage: &mut Usage) -> Import {
        let mut events: Vec<EventType> = Vec::new();
        for e in &decl.events {
            if let Some(first) = events.iter().find(|x| x.name == e.name.name) {
                let first = first.span;
                self.error(
                    Diagnostic::error(
                        codes::E0101,
                        format!("event `{}` is declared twice in this import", e.name.name),
                        e.name.span,
                    )
                    .label("declared again here")
                    .related(first, "first declared here"),
                );
                continue;
            }
            let event = self.event_decl(e);
            events.push(event);
        }
        let mut handled = vec![false; events.len()];
        let mut rules = Vec::new();
        for rule in &decl.rules {
            let Some(event_id) = self.lookup_event(&rule.event, &events) else {
                continue;
            };
            handled[event_id] = true;
            if let Some(key) = &rule.key {
                self.error(
                    Diagnostic::error(codes::E0207, "import rules have no key", key.span)
                        .label("not allowed here")
                        .help("an import rule emits local events; the projections that handle them choose documents"),
                );
            }
            let mut cx = Cx::new(Mode::ImportRule, &mut self.diags);
            cx.event = Some(&events[event_id]);
            cx.emit_targets = Some(local);
            let guard = rule
                .guard
                .as_ref()
                .map(|g| cx.condition(g, "a `where` guard"));
            let body = cx.block(&rule.body.stmts);
            let locals = cx.finish_locals();
            for id in cx.emitted.iter() {
                usage.events[*id] = true;
            }
            rules.push(Handler {
                event: event_id,
                key: Vec::new(),
                guard,
                body,
                locals,
                span: rule.span,
            });
        }
        for (event, used) in events.iter().zip(&handled) {
            if !used {
                self.error(
                    Diagnostic::warning(
                        codes::W0001,
                        format!("imported event `{}` is never handled", event.name),
                        event.span,
                    )
                    .label("declared here")
                    .help(format!(
                        "add a rule `on {} {{ emit ... }}`, or remove the declaration",
                        event.name
                    )),
                );
            }
        }
        Import {
            peer: decl.peer.name.clone(),
            events,
            rules,
            span: decl.span,
        }
    }

    fn export(
        &mut self,
        decl: &ast::ExportDecl,
        events: &[EventType],
        usage: &mut Usage,
    ) -> Export {
        let mut ids = Vec::new();
        for name in &decl.events {
            if let Some(id) = self.lookup_event(name, events) {
                usage.events[id] = true;
                if ids.contains(&id) {
                    self.error(
                        Diagnostic::warning(
                            codes::W0005,
                            format!("`{}` is exported twice to `{}`", name.name, decl.peer.name),
                            name.span,
                        )
                        .label("listed again here"),
                    );
                } else {
                    ids.push(id);
                }
            }
        }
        Export {
            peer: decl.peer.name.clone(),
            events: ids,
            span: decl.span,
        }
    }

    fn test(&mut self, decl: &ast::TestDecl, program: &Program) -> Test {
        let mut steps = Vec::new();
        for step in &decl.steps {
            match step {
                ast::TestStep::Given(given) => {
                    if let Some(step) = self.given(given, program) {
                        steps.push(step);
                    }
                }
                ast::TestStep::Expect(expr, span) => {
                    let mut cx = Cx::new(Mode::Test, &mut self.diags);
                    cx.program = Some(program);
                    let cond = cx.condition(expr, "an `expect`");
                    steps.push(TestStep::Expect { cond, span: *span });
                }
                ast::TestStep::Error(_) => {}
            }
        }
        Test {
            name: decl.name.clone(),
            steps,
            span: decl.span,
        }
    }

    fn given(&mut self, given: &ast::Given, program: &Program) -> Option<TestStep> {
        let (source, event) = match &given.from {
            None => {
                let id = self.lookup_event(&given.event, &program.events)?;
                (EventSource::Local(id), &program.events[id])
            }
            Some(peer) => {
                let Some(import_id) = program.imports.iter().position(|i| i.peer == peer.name)
                else {
                    let d = Diagnostic::error(
                        codes::E0215,
                        format!("no `import {}` block in this program", peer.name),
                        peer.span,
                    )
                    .label("unknown peer");
                    let d = match suggest(
                        &peer.name,
                        program.imports.iter().map(|i| i.peer.as_str()),
                    ) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!(
                            "declare the peer's events in `import {} {{ ... }}`",
                            peer.name
                        )),
                    };
                    self.error(d);
                    return None;
                };
                let import = &program.imports[import_id];
                let id = self.lookup_event(&given.event, &import.events)?;
                (EventSource::Import(import_id, id), &import.events[id])
            }
        };
        let mut cx = Cx::new(Mode::Const, &mut self.diags);
        let fields = cx.record(event, &given.fields, &given.event);
        let (mut time, mut stream, mut id) = (None, None, None);
        for init in &given.meta {
            match init.name.name.as_str() {
                "time" => {
                    let e = cx.expr(&init.value);
                    time = Some(cx.coerce_time(e));
                }
                "stream" => stream = Some(cx.expect_type(&init.value, &Type::String)),
                "id" => id = Some(cx.expect_type(&init.value, &Type::String)),
                other => {
                    let d = Diagnostic::error(
                        codes::E0108,
                        format!("unknown envelope field `{other}`"),
                        init.name.span,
                    )
                    .label("not an envelope field")
                    .help("`with { ... }` accepts time, stream and id");
                    cx.report(d);
                }
            }
        }
        Some(TestStep::Given {
            source,
            fields,
            time,
            stream,
            id,
            span: given.span,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Event,
    State,
}

/// The key shape of a projection's handlers as they are checked: every handler has a
/// key or none has, and all keys have the same number and types of parts.
#[derive(Default)]
struct KeyShape {
    /// The first key's part types and where it is.
    types: Option<(Vec<Type>, Span)>,
    /// The first handler without a key.
    unkeyed: Option<Span>,
}

impl KeyShape {
    /// Adds handler `h`, whose key parts have `types` (none: unkeyed) at `key_span`.
    fn add(
        &mut self,
        diags: &mut Vec<Diagnostic>,
        h: &ast::Handler,
        types: Vec<Type>,
        key_span: Span,
    ) {
        if types.is_empty() {
            if let Some((_, span)) = &self.types {
                diags.push(
                    Diagnostic::error(
                        codes::E0207,
                        format!(
                            "handler for `{}` has no key, but other handlers are keyed",
                            h.event.name
                        ),
                        h.event.span,
                    )
                    .label("which document should this update?")
                    .related(*span, "keyed here")
                    .help("give this handler a key: `on Event key event.field { ... }`"),
                );
            }
            self.unkeyed.get_or_insert(h.event.span);
        } else {
            if let Some(unkeyed) = self.unkeyed
                && self.types.is_none()
            {
                diags.push(
                    Diagnostic::error(
                        codes::E0207,
                        "this handler is keyed, but an earlier handler has no key",
                        key_span,
                    )
                    .label("keyed here")
                    .related(unkeyed, "no key here")
                    .help("either every handler of a projection has a key, or none has"),
                );
            }
            match &self.types {
                None => self.types = Some((types, key_span)),
                Some((shape, span)) => {
                    let compatible = shape.len() == types.len()
                        && shape
                            .iter()
                            .zip(&types)
                            .all(|(a, b)| a == b || *a == Type::Error || *b == Type::Error);
                    if !compatible {
                        let show = |t: &[Type]| {
                            t.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        diags.push(
                            Diagnostic::error(
                                codes::E0207,
                                format!("key ({}) does not match the projection's other keys ({})", show(&types), show(shape)),
                                key_span,
                            )
                            .label("different key shape")
                            .related(*span, "first key here")
                            .help("every handler must address documents with the same number and types of key parts"),
                        );
                    }
                }
            }
        }
    }
}
