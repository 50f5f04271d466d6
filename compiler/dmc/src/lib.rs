//! The commands of `dmc`, written against plain writers so tests can run them in-process.
//!
//! Exit codes: 0 success; 1 the program, the input or a test failed; 2 a file could not
//! be read. Diagnostics go to the error writer, results (JSON, test reports) to the output
//! writer.

#![forbid(unsafe_code)]

mod bench;
pub mod codes;
mod events;
mod render;

use std::io::Write;
use std::path::Path;

use datamesh_compiler::check::{Checked, check_source};
use datamesh_compiler::codegen::JitFold;
use datamesh_compiler::diag::Diagnostic;
use datamesh_compiler::exec::Fault;
use datamesh_compiler::exec::engine::FoldEngine;
use datamesh_compiler::interp::{Fold, run_tests_with};
use datamesh_compiler::ir::Program;

pub use bench::bench;
pub use events::{EventLine, RunOptions, parse_event_line};
pub use render::{Style, render};

/// Which compiler stage `explain` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The syntax tree.
    Ast,
    /// The typed IR.
    Ir,
    /// The Cranelift IR of every compiled handler.
    Clif,
}

/// Which engine folds events in `dmc run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// The Cranelift JIT (the default); falls back to the interpreter, with a warning,
    /// for a program it cannot compile.
    #[default]
    Jit,
    /// The reference interpreter.
    Interp,
}

/// Builds the fold engine `dmc run` uses.
fn make_engine<'p>(
    program: &'p Program,
    engine: Engine,
    err: &mut dyn Write,
) -> Box<dyn FoldEngine + 'p> {
    if engine == Engine::Jit {
        match JitFold::new(program) {
            Ok(jit) => return Box::new(jit),
            Err(e) => {
                let _ = writeln!(err, "warning: {e}; using the interpreter");
            }
        }
    }
    Box::new(Fold::new(program))
}

/// A program read from disk and checked.
struct Loaded {
    name: String,
    source: String,
    checked: Checked,
}

fn load(path: &Path, err: &mut dyn Write) -> Result<Loaded, u8> {
    let name = path.display().to_string();
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "error: cannot read {name}: {e}");
            return Err(2);
        }
    };
    let checked = check_source(&source);
    Ok(Loaded {
        name,
        source,
        checked,
    })
}

fn report(loaded: &Loaded, diagnostics: &[Diagnostic], style: Style, err: &mut dyn Write) {
    let _ = write!(
        err,
        "{}",
        render(diagnostics, &loaded.name, &loaded.source, style)
    );
}

/// Loads a program and prints its diagnostics; the program when it has no errors.
fn load_program(path: &Path, style: Style, err: &mut dyn Write) -> Result<(Loaded, Program), u8> {
    let mut loaded = load(path, err)?;
    report(&loaded, &loaded.checked.diagnostics, style, err);
    match loaded.checked.program.take() {
        Some(program) => Ok((loaded, program)),
        None => {
            let errors = loaded
                .checked
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .count();
            let _ = writeln!(
                err,
                "error: {} has {errors} error{}",
                loaded.name,
                plural(errors)
            );
            Err(1)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `dmc check`: reports every problem in every file.
pub fn check(files: &[impl AsRef<Path>], style: Style, err: &mut dyn Write) -> u8 {
    let mut code = 0;
    let (mut errors, mut warnings) = (0, 0);
    for file in files {
        let loaded = match load(file.as_ref(), err) {
            Ok(l) => l,
            Err(c) => {
                code = code.max(c);
                continue;
            }
        };
        report(&loaded, &loaded.checked.diagnostics, style, err);
        let e = loaded
            .checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .count();
        errors += e;
        warnings += loaded.checked.diagnostics.len() - e;
        if e > 0 {
            code = code.max(1);
        }
    }
    let _ = writeln!(
        err,
        "checked {} file{}: {errors} error{}, {warnings} warning{}",
        files.len(),
        plural(files.len()),
        plural(errors),
        plural(warnings)
    );
    code
}

/// `dmc run`: folds events and prints the documents of every projection as one JSON
/// object. A malformed event line stops the run before anything is printed.
pub fn run(
    file: &Path,
    events_path: &Path,
    options: RunOptions,
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    run_with_engine(file, events_path, options, Engine::Jit, style, out, err)
}

/// `dmc run --engine ...`: as [`run`], folding with the chosen engine.
pub fn run_with_engine(
    file: &Path,
    events_path: &Path,
    options: RunOptions,
    engine: Engine,
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let (loaded, program) = match load_program(file, style, err) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(events_path) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: cannot read {}: {e}", events_path.display());
            return 2;
        }
    };
    // Parse and validate every line first: bad input changes nothing.
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_event_line(&program, line, options) {
            Ok(Some(event)) => lines.push(event),
            Ok(None) => {}
            Err(message) => {
                let _ = writeln!(err, "error: {}:{}: {message}", events_path.display(), n + 1);
                return 1;
            }
        }
    }
    let mut fold = make_engine(&program, engine, err);
    let mut faults: Vec<(Fault, bool)> = Vec::new();
    for event in lines {
        match event {
            EventLine::Local { event, row, meta } => {
                faults.extend(
                    fold.apply_local(event, &row, &meta)
                        .into_iter()
                        .map(|f| (f, false)),
                );
            }
            EventLine::Import {
                import,
                event,
                row,
                meta,
            } => {
                let meta = datamesh_compiler::exec::Meta {
                    position: fold.next_position(),
                    ..meta
                };
                match fold.apply_import(import, event, &row, meta) {
                    Ok(f) => faults.extend(f.into_iter().map(|f| (f, false))),
                    Err(f) => faults.push((f, true)),
                }
            }
        }
    }
    let diagnostics: Vec<Diagnostic> = faults
        .iter()
        .map(|(f, import)| fault_diagnostic(&program, f, *import))
        .collect();
    report(&loaded, &diagnostics, style, err);
    let json = datamesh_compiler::exec::codec::documents_json(&program, &fold.snapshot());
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    u8::from(!faults.is_empty())
}

/// A runtime fault as a diagnostic pointing at the expression that trapped.
pub fn fault_diagnostic(program: &Program, fault: &Fault, import: bool) -> Diagnostic {
    let owner = if import {
        format!(
            "import rule of `{}`",
            program
                .imports
                .get(fault.projection)
                .map_or("?", |i| i.peer.as_str())
        )
    } else {
        format!(
            "projection `{}`",
            program
                .projections
                .get(fault.projection)
                .map_or_else(|| "?".to_owned(), |p| p.label(program))
        )
    };
    Diagnostic::error(
        fault.trap.code(),
        format!("{owner} faulted at position {} ({}): {}", fault.position, fault.event_type, fault.trap),
        fault.trap.span,
    )
    .label("trapped here")
    .related(fault.handler, "while running this handler")
    .help(if import {
        "the event was not imported; fix the rule or the peer's data"
    } else {
        "the projection stops at this event and keeps its documents as they were before it; fix the handler or the data and rebuild"
    })
}

/// `dmc test`: runs every test block on the reference interpreter and prints a closing
/// `N passed, N failed` line.
pub fn test(
    files: &[impl AsRef<Path>],
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    test_with_engine(files, Engine::Interp, style, out, err)
}

/// `dmc test --engine ...`: as [`test`], folding the given events with the chosen
/// engine (a program the JIT cannot compile runs on the interpreter, with a warning).
pub fn test_with_engine(
    files: &[impl AsRef<Path>],
    engine: Engine,
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let (mut passed, mut failed, mut broken, mut unreadable) = (0usize, 0usize, false, false);
    for file in files {
        let (loaded, program) = match load_program(file.as_ref(), style, err) {
            Ok(p) => p,
            Err(code) => {
                broken = true;
                unreadable |= code == 2;
                continue;
            }
        };
        // A fresh engine per test; a program the JIT cannot compile is warned once.
        let warnings = std::cell::RefCell::new(Vec::new());
        let results = run_tests_with(&program, &|p| {
            make_engine(p, engine, &mut *warnings.borrow_mut())
        });
        if let Some(line) = String::from_utf8_lossy(&warnings.borrow()).lines().next() {
            let _ = writeln!(err, "{line}");
        }
        for result in results {
            match result.failure {
                None => {
                    passed += 1;
                    let _ = writeln!(out, "test {} :: {} ... ok", loaded.name, result.name);
                }
                Some(failure) => {
                    failed += 1;
                    let _ = writeln!(out, "test {} :: {} ... FAILED", loaded.name, result.name);
                    let d = Diagnostic::error(
                        datamesh_compiler::codes::T0001,
                        format!("test \"{}\" failed: {}", result.name, failure.message),
                        failure.span,
                    )
                    .label("this step failed");
                    report(&loaded, &[d], style, err);
                }
            }
        }
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    if broken {
        let _ = writeln!(
            err,
            "error: some files did not check; their tests did not run"
        );
    }
    if unreadable {
        2
    } else {
        u8::from(failed > 0 || broken)
    }
}

/// `dmc explain`: prints the AST or the typed IR.
pub fn explain(
    file: &Path,
    stage: Stage,
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match stage {
        Stage::Ast => {
            let loaded = match load(file, err) {
                Ok(l) => l,
                Err(c) => return c,
            };
            let (ast, errors) = datamesh_compiler::parser::parse(&loaded.source);
            if datamesh_compiler::depth::deepest(&ast).0 > datamesh_compiler::depth::MAX_DEPTH {
                // Printing such a tree would overflow the stack; the checker's E0007
                // says why. (Dropping it is safe: the tree drops without recursion.)
                drop(ast);
                report(&loaded, &loaded.checked.diagnostics, style, err);
                return 1;
            }
            let diagnostics: Vec<Diagnostic> = errors
                .iter()
                .map(datamesh_compiler::diag::from_parse_error)
                .collect();
            report(&loaded, &diagnostics, style, err);
            let _ = writeln!(out, "{ast:#?}");
            u8::from(!diagnostics.is_empty())
        }
        Stage::Clif => match load_program(file, style, err) {
            Ok((_, program)) => match datamesh_compiler::codegen::clif(&program) {
                Ok(functions) => {
                    for (label, text) in functions {
                        let _ = writeln!(out, "; {label}\n{text}");
                    }
                    0
                }
                Err(e) => {
                    let _ = writeln!(err, "error: {e}");
                    1
                }
            },
            Err(code) => code,
        },
        Stage::Ir => match load_program(file, style, err) {
            Ok((_, program)) => {
                let _ = writeln!(out, "{program:#?}");
                0
            }
            Err(code) => code,
        },
    }
}
