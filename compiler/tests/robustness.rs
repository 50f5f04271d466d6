//! The front end never panics on any input: every prefix of every example and many
//! deterministic random mutations of them are lexed, parsed and checked, and the
//! diagnostics must point inside the source (and syntax errors carry a help line).

mod seeded;

use seeded::Rng;

use datamesh_compiler::check::check_source;

fn examples() -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut sources = Vec::new();
    for dir in std::fs::read_dir(root).expect("examples dir").flatten() {
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "dmp") {
                sources.push(std::fs::read_to_string(file.path()).expect("readable"));
            }
        }
    }
    assert!(!sources.is_empty());
    sources
}

fn check_is_sane(source: &str) {
    let checked = check_source(source);
    for d in &checked.diagnostics {
        assert!(d.span.start <= d.span.end, "inverted span in {d:?}");
        assert!(
            d.span.end as usize <= source.len(),
            "span past the end: {d:?}"
        );
        assert!(
            source.is_char_boundary(d.span.start as usize),
            "span splits a char: {d:?}"
        );
        // A syntax error always says what to do about it.
        if d.code.starts_with("E000") {
            assert!(d.help.is_some(), "a syntax error without help: {d:?}");
        }
    }
    if checked.program.is_some() {
        assert!(checked.diagnostics.iter().all(|d| !d.is_error()));
    }
}

#[test]
fn every_prefix_of_the_bank_example_is_handled() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/bank/bank.dmp"
    ))
    .expect("bank");
    for end in (0..=source.len()).filter(|i| source.is_char_boundary(*i)) {
        check_is_sane(&source[..end]);
    }
}

#[test]
fn random_mutations_never_panic() {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ",",
        ";",
        ":",
        ".",
        "?",
        "??",
        "=",
        "+=",
        "/",
        "%",
        "==",
        "<",
        "-",
        "@",
        "#",
        "\"",
        "event",
        "projection",
        "key",
        "state",
        "on",
        "where",
        "let",
        "if",
        "else",
        "delete",
        "emit",
        "import",
        "export",
        "test",
        "given",
        "expect",
        "from",
        "with",
        "not",
        "none",
        "x",
        "event.",
        "meta.",
        "0",
        "-9223372036854775808",
        "1.5e400",
        "99999999999999999999",
        "1h30m",
        "list<",
        "map<int,",
        "é",
        "\n",
        "\"\\u{110000}\"",
    ];
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for source in examples() {
        for _ in 0..300 {
            let mut text = source.clone();
            for _ in 0..1 + rng.below(4) {
                let mut at = rng.below(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.below(3) {
                    0 => text.insert_str(at, PIECES[rng.below(PIECES.len())]),
                    1 => {
                        let mut end = (at + 1 + rng.below(12)).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text.replace_range(at..end, "");
                    }
                    _ => {
                        let mut end = (at + rng.below(6)).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text.replace_range(at..end, PIECES[rng.below(PIECES.len())]);
                    }
                }
            }
            check_is_sane(&text);
        }
    }
}

#[test]
fn deep_nesting_is_refused_with_a_diagnostic_not_a_crash() {
    let sum = |n: usize| {
        format!(
            "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ v = {} }} }}\n",
            vec!["event.n"; n].join(" + ")
        )
    };
    // Within the limit: checks and runs on a test thread's stack.
    let ok = check_source(&sum(datamesh_compiler::depth::MAX_DEPTH - 8));
    assert!(ok.program.is_some(), "{:?}", ok.diagnostics);
    let nested = check_source(&sum(100_000));
    assert!(nested.program.is_none());
    assert_eq!(
        nested
            .diagnostics
            .iter()
            .map(|d| d.code)
            .collect::<Vec<_>>(),
        ["E0007"]
    );
    let parens = format!(
        "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ v = {}1{} }} }}\n",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    // Parentheses only group: they add no depth to the tree.
    assert!(check_source(&parens).program.is_some());
    let chain = format!(
        "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ {}{{ v = 2 }} {} }} }}\n",
        "if event.n > 0 { v = 1 } else ".repeat(5000),
        ""
    );
    assert_eq!(check_source(&chain).diagnostics[0].code, "E0007");
}

// ---------------------------------------------------------------- deep input
//
// The node checks and compiles a deployed program on a tokio worker thread, whose stack
// is 2 MiB: every test below runs its pass on such a thread, so a recursion that is not
// bounded overflows here as it would in the node.

/// The stack of a tokio worker thread (and of Rust's spawned threads by default).
const NODE_STACK: usize = 2 << 20;

/// Runs `f` on a thread with the node's stack size.
fn on_node_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(NODE_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic on a 2 MiB stack")
}

/// A program whose event field has type `ty`.
fn with_type(ty: &str) -> String {
    format!(
        "event E {{ n: int, x: {ty} }}\nprojection p {{ state {{ v: int = 0 }} on E {{ v += event.n }} }}\n"
    )
}

/// Programs nested `n` levels deep in every way the syntax allows.
fn deep_programs(n: usize) -> Vec<(&'static str, String)> {
    let handler = |body: &str| {
        format!(
            "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0, o: int? }} on E {{ {body} }} }}\n"
        )
    };
    vec![
        (
            "list type",
            with_type(&format!("{}int{}", "list<".repeat(n), ">".repeat(n))),
        ),
        (
            "optional type",
            // Spaced: `??` is the coalescing operator.
            with_type(&format!("int{}", " ?".repeat(n))),
        ),
        (
            "map type",
            with_type(&format!("{}int{}", "map<string, ".repeat(n), ">".repeat(n))),
        ),
        (
            "state field type",
            format!(
                "event E {{ n: int }}\nprojection p {{ state {{ v: {}int{} }} on E {{ v = 1 }} }}\n",
                "set<".repeat(n),
                ">".repeat(n)
            ),
        ),
        (
            "let type",
            handler(&format!(
                "let x: {}int{} = 1; v = 1",
                "list<".repeat(n),
                ">".repeat(n)
            )),
        ),
        (
            "import event type",
            format!(
                "event E {{ n: int }}\nimport peer {{ event P {{ x: {}int{} }} on P {{ emit E {{ n: 1 }} }} }}\n",
                "list<".repeat(n),
                ">".repeat(n)
            ),
        ),
        (
            "import event default",
            format!(
                "event E {{ n: int }}\nimport peer {{ event P {{ x: int = {}1 }} on P {{ emit E {{ n: 1 }} }} }}\n",
                "- ".repeat(n)
            ),
        ),
        (
            "left-nested sum",
            handler(&format!("v = {}", vec!["event.n"; n].join(" + "))),
        ),
        (
            "right-nested sum",
            handler(&format!(
                "v = {}event.n{}",
                "event.n + (".repeat(n),
                ")".repeat(n)
            )),
        ),
        (
            "negation",
            handler(&format!("v = {}event.n", "-".repeat(n))),
        ),
        (
            "not",
            handler(&format!("if {}true {{ v = 1 }}", "not ".repeat(n))),
        ),
        ("coalesce", handler(&format!("v = {}0", "o ?? ".repeat(n)))),
        (
            "calls",
            handler(&format!("v = {}event.n{}", "abs(".repeat(n), ")".repeat(n))),
        ),
        (
            "if expressions",
            handler(&format!(
                "v = {}event.n{}",
                "if event.n > 0 { ".repeat(n),
                " } else { 0 }".repeat(n)
            )),
        ),
        (
            "nested ifs",
            handler(&format!(
                "{}v += 1{}",
                "if event.n > 0 { ".repeat(n),
                " }".repeat(n)
            )),
        ),
        (
            "else-if chain",
            handler(&format!(
                "{}{{ v = 2 }}",
                "if event.n > 0 { v = 1 } else ".repeat(n)
            )),
        ),
        (
            "given",
            format!(
                "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ v += event.n }} }}\ntest \"t\" {{ given E {{ n: {}1 }} expect p.v == 1 }}\n",
                "- ".repeat(n)
            ),
        ),
        (
            "expect",
            format!(
                "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ v += event.n }} }}\ntest \"t\" {{ expect {}true }}\n",
                "not ".repeat(n)
            ),
        ),
    ]
}

#[test]
fn deep_types_are_refused_with_a_diagnostic_not_a_crash() {
    // Finding 6: types were not measured, so a type nested a few thousand levels deep
    // overflowed the checker's stack (and aborted `dmc check` and the node's Deploy).
    on_node_stack(|| {
        for n in [5_000, 100_000] {
            for (what, source) in deep_programs(n) {
                let checked = check_source(&source);
                assert!(checked.program.is_none(), "{what}");
                let e0007: Vec<_> = checked
                    .diagnostics
                    .iter()
                    .filter(|d| d.code == "E0007")
                    .collect();
                assert_eq!(e0007.len(), 1, "{what}: {:?}", checked.diagnostics);
                let d = e0007[0];
                assert!(d.span.end as usize <= source.len(), "{what}");
                assert!(!d.label.is_empty(), "{what}");
                assert!(d.help.is_some(), "{what}");
            }
        }
    });
}

#[test]
fn the_parser_handles_deep_input_on_a_node_thread() {
    // LALRPOP's parser keeps its stack on the heap: deep parentheses, types, blocks and
    // brackets parse (or fail to) without recursing. The tree is then dropped on the
    // same thread, which recursed once per level before the tree dropped iteratively.
    on_node_stack(|| {
        let n = 100_000;
        let mut sources: Vec<(&str, String)> = deep_programs(n);
        sources.push((
            "parentheses",
            format!(
                "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ v = {}1{} }} }}\n",
                "(".repeat(n),
                ")".repeat(n)
            ),
        ));
        sources.push((
            "unclosed parentheses",
            format!("event E {{ n: int = {}", "(".repeat(n)),
        ));
        sources.push((
            "unclosed types",
            format!("event E {{ n: {}", "list<".repeat(n)),
        ));
        sources.push(("braces", format!("{}{}", "{".repeat(n), "}".repeat(n))));
        sources.push((
            "blocks",
            format!(
                "projection p {{ on E {{ {}{} }} }}",
                "if true { ".repeat(n),
                "}".repeat(n)
            ),
        ));
        sources.push((
            "unclosed blocks",
            format!("projection p {{ on E {{ {}", "if true { ".repeat(n)),
        ));
        sources.push((
            "lists",
            format!(
                "test \"t\" {{ expect {}1{} }}",
                "[".repeat(n),
                "]".repeat(n)
            ),
        ));
        sources.push((
            "a deep tree, then a syntax error",
            format!("event E {{ n: int = {} }} }} }}", vec!["1"; n].join(" + ")),
        ));
        for (what, source) in &sources {
            let (file, errors) = datamesh_compiler::parser::parse(source);
            drop((file, errors));
            let (file, _) = datamesh_compiler::parser::parse(source);
            let (depth, _) = datamesh_compiler::depth::deepest(&file);
            drop(file);
            let _ = depth;
            let checked = check_source(source);
            // Parentheses only group: they add no depth, and that program is fine.
            assert_eq!(checked.program.is_some(), *what == "parentheses", "{what}");
        }
    });
}

#[test]
fn a_tree_a_hundred_thousand_levels_deep_drops_on_a_node_thread() {
    // Finding 9: the checker leaked every too-deep tree because dropping it recursed.
    on_node_stack(|| {
        for (what, source) in deep_programs(100_000) {
            let (file, _) = datamesh_compiler::parser::parse(&source);
            assert!(
                datamesh_compiler::depth::deepest(&file).0 >= 100_000,
                "{what} is not deep"
            );
            drop(file);
        }
        // A deep tree built by hand, not by the parser.
        let mut e = datamesh_compiler::ast::Expr {
            kind: datamesh_compiler::ast::ExprKind::Int(1),
            span: Default::default(),
        };
        for _ in 0..200_000 {
            e = datamesh_compiler::ast::Expr {
                kind: datamesh_compiler::ast::ExprKind::Unary(
                    datamesh_compiler::ast::UnaryOp::Neg,
                    Box::new(e),
                ),
                span: Default::default(),
            };
        }
        drop(e);
    });
}

/// Bytes allocated and not yet freed by the current thread.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
    }

    fn add(n: i64) {
        // `try_with`: nothing to count once the thread's locals are gone.
        let _ = LIVE.try_with(|c| c.set(c.get() + n));
    }

    /// The live bytes of this thread.
    pub fn live() -> i64 {
        LIVE.try_with(Cell::get).unwrap_or(0)
    }

    /// The system allocator, counting per thread.
    pub struct Counting;

    // SAFETY: every call is forwarded to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size() as i64);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as i64));
            // SAFETY: forwarded.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                add(new_size as i64 - layout.size() as i64);
            }
            p
        }
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

#[test]
fn refusing_deep_programs_frees_them() {
    // Finding 9: each refused tree was leaked (`mem::forget`): 50 refused deploys grew the
    // node by 800 MB. Check deep programs many times and count what stays allocated.
    on_node_stack(|| {
        let programs = deep_programs(20_000);
        // Warm up whatever is allocated once (thread locals, lazily built tables).
        for (_, source) in &programs {
            drop(check_source(source));
        }
        let before = counting::live();
        for _ in 0..5 {
            for (what, source) in &programs {
                let checked = check_source(source);
                assert!(checked.program.is_none(), "{what}");
            }
        }
        let grown = counting::live() - before;
        // Each of these trees takes megabytes; a leak of even one shows.
        assert!(grown < 64 * 1024, "{grown} bytes stayed allocated");
    });
}

#[test]
fn every_pass_runs_at_the_depth_limit_on_a_node_thread() {
    // The limit must leave room for every recursive walk: the checker, the IR's walks, the
    // interpreter and the JIT's translation, on the node's 2 MiB stack (in a debug build,
    // whose frames are the largest).
    use datamesh_compiler::codegen::JitFold;
    use datamesh_compiler::exec::Meta;
    use datamesh_compiler::exec::engine::FoldEngine;
    use datamesh_compiler::interp::Fold;
    use datamesh_stdlib::Value;

    on_node_stack(|| {
        let limit = datamesh_compiler::depth::MAX_DEPTH;
        let mut ran = 0;
        for (what, _) in deep_programs(limit) {
            if what.contains("type")
                || what.contains("import")
                || what == "given"
                || what == "expect"
            {
                continue;
            }
            // Trim the program until it fits: the deepest accepted version of each shape.
            let mut n = limit;
            let source = loop {
                let source = deep_programs(n)
                    .into_iter()
                    .find(|(w, _)| *w == what)
                    .map(|(_, s)| s)
                    .expect("same shapes");
                let (file, _) = datamesh_compiler::parser::parse(&source);
                if datamesh_compiler::depth::deepest(&file).0 <= limit {
                    break source;
                }
                n -= 1;
            };
            let checked = check_source(&source);
            let program = checked
                .program
                .unwrap_or_else(|| panic!("{what}: {:?}", checked.diagnostics));
            let meta = Meta::default();
            let row = [Value::Int(3)];
            let mut interp = Fold::new(&program);
            let expected = interp.apply_local(0, &row, meta.clone());
            let mut jit = JitFold::new(&program).expect("compiles");
            let faults = FoldEngine::apply_local(&mut jit, 0, &row, &meta);
            assert_eq!(faults, expected, "{what}");
            assert_eq!(
                FoldEngine::snapshot(&jit),
                FoldEngine::snapshot(&interp),
                "{what}"
            );
            let _ = datamesh_compiler::codegen::clif(&program).expect("clif");
            ran += 1;
        }
        assert_eq!(ran, 9);
    });
}
