//! Running `test` blocks: feed the `given` events, evaluate each `expect`.
//!
//! Invariant: each test starts from empty projections, and steps run in source order,
//! so an `expect` sees exactly the events given before it.

use crate::exec::engine::FoldEngine;
use std::sync::Arc;

use datamesh_stdlib::Value;

use super::eval::{DocLookup, Frame, eval};
use super::fold::Fold;
use crate::ast::{BinaryOp, Span};
use crate::exec::codec::value_to_json;
use crate::exec::{Meta, ProjectionState, default_doc};
use crate::ir::{EventSource, ExprKind, Program, TestStep};

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// The test's name.
    pub name: String,
    /// `None` when it passed.
    pub failure: Option<TestFailure>,
}

/// Why a test failed.
#[derive(Debug, Clone, PartialEq)]
pub struct TestFailure {
    /// What went wrong, in a sentence.
    pub message: String,
    /// The step that failed.
    pub span: Span,
}

/// The documents of every projection as an engine left them, for `expect`.
struct Snapshot<'p> {
    program: &'p Program,
    states: Vec<ProjectionState>,
}

impl DocLookup for Snapshot<'_> {
    fn doc(&self, projection: usize, key: &[Value]) -> Option<Vec<Value>> {
        if let Some(doc) = self.states.get(projection)?.docs.get(key) {
            return Some(doc.clone());
        }
        // A single-document projection always has its document.
        let p = self.program.projections.get(projection)?;
        (p.key.is_empty()).then(|| default_doc(p))
    }
}

/// Runs every test of a program, in order, on the reference interpreter.
pub fn run_tests(program: &Program) -> Vec<TestResult> {
    run_tests_with(program, &|p| Box::new(Fold::new(p)))
}

/// Runs every test of a program, in order, on the engines `engine` makes (a fresh one
/// per test), so the same tests hold every engine to the same documents.
pub fn run_tests_with<'p>(
    program: &'p Program,
    engine: &dyn Fn(&'p Program) -> Box<dyn FoldEngine + 'p>,
) -> Vec<TestResult> {
    program
        .tests
        .iter()
        .map(|test| {
            let mut fold = engine(program);
            let mut failure = None;
            for step in &test.steps {
                if let Err(f) = run_step(program, fold.as_mut(), step) {
                    failure = Some(f);
                    break;
                }
            }
            TestResult {
                name: test.name.clone(),
                failure,
            }
        })
        .collect()
}

fn run_step(
    program: &Program,
    fold: &mut dyn FoldEngine,
    step: &TestStep,
) -> Result<(), TestFailure> {
    match step {
        TestStep::Given {
            source,
            fields,
            time,
            stream,
            id,
            span,
        } => {
            let fail = |message: String| TestFailure {
                message,
                span: *span,
            };
            let constant = |e: &crate::ir::Expr| {
                super::eval_const(e).map_err(|t| fail(format!("cannot build the event: {t}")))
            };
            let row = fields.iter().map(constant).collect::<Result<Vec<_>, _>>()?;
            let text = |e: &Option<crate::ir::Expr>| -> Result<Arc<str>, TestFailure> {
                match e.as_ref().map(constant).transpose()? {
                    Some(Value::Str(s)) => Ok(s),
                    _ => Ok(Arc::from("")),
                }
            };
            let time = match time.as_ref().map(constant).transpose()? {
                Some(Value::Timestamp(t)) => t,
                _ => 0,
            };
            let meta = Meta {
                position: 0,
                time,
                stream: text(stream)?,
                event_type: Arc::from(""),
                id: text(id)?,
            };
            let position = fold.next_position();
            let faults = match source {
                EventSource::Local(event) => fold.apply_local(*event, &row, &meta),
                EventSource::Import(import, event) => fold
                    .apply_import(*import, *event, &row, Meta { position, ..meta })
                    .map_err(|f| fail(format!("import rule trapped: {}", f.trap)))?,
            };
            if let Some(fault) = faults.first() {
                let name = program
                    .projections
                    .get(fault.projection)
                    .map_or("?", |p| p.name.as_str());
                return Err(fail(format!(
                    "projection `{name}` faulted on this event (position {}): {}",
                    fault.position, fault.trap
                )));
            }
            Ok(())
        }
        TestStep::Expect { cond, span } => {
            let fail = |message: String| TestFailure {
                message,
                span: *span,
            };
            let snapshot = Snapshot {
                program,
                states: fold.snapshot(),
            };
            let mut frame = Frame::new(None, None, &[], 0);
            frame.docs = Some(&snapshot);
            let value = eval(cond, &mut frame, None)
                .map_err(|t| fail(format!("expectation could not be evaluated: {t}")))?;
            if matches!(value, Value::Bool(true)) {
                return Ok(());
            }
            // Show both sides of a failed comparison.
            if let ExprKind::Binary(op, a, b) = &cond.kind
                && !matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Coalesce)
            {
                let left = eval(a, &mut frame, None).map(|v| value_to_json(&v).to_string());
                let right = eval(b, &mut frame, None).map(|v| value_to_json(&v).to_string());
                if let (Ok(left), Ok(right)) = (left, right) {
                    return Err(fail(format!(
                        "expectation failed: left side is {left}, right side is {right} (`{}`)",
                        op.symbol()
                    )));
                }
            }
            Err(fail("expectation failed".to_owned()))
        }
    }
}
