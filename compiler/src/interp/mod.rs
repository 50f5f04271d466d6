//! The reference interpreter: runs the typed IR with the exact semantics of the language.
//!
//! It is the oracle the JIT is tested against, so it favours obviousness over speed:
//! every operation goes through the same `datamesh_stdlib` function the JIT will call.
//! Invariant: evaluation never panics; overflow, division by zero and invalid
//! conversions return a [`Trap`] carrying the span of the expression that failed.

mod eval;
mod fold;
mod tests;

pub use eval::eval_const;
pub use fold::{
    Fault, Fold, Meta, Overlay, ProjectionState, Take, Taken, TakenDocs, apply_event,
    apply_event_in_place, default_doc, imported_meta,
};
pub use tests::{TestFailure, TestResult, run_tests};

use crate::ast::Span;

/// The code of [`datamesh_stdlib::Trap::LimitExceeded`]: a string, collection or
/// document would grow past its limit (see [`datamesh_stdlib::limits`] and
/// [`crate::storage::MAX_DOC_BYTES`]).
pub const LIMIT_CODE: crate::codes::Code = crate::codes::R0007;

/// A runtime trap at a place in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Trap {
    /// What went wrong.
    pub kind: datamesh_stdlib::Trap,
    /// The expression or statement that trapped.
    pub span: Span,
}

impl std::fmt::Display for Trap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl Trap {
    /// The stable diagnostic code of this kind of trap.
    pub fn code(&self) -> crate::codes::Code {
        use crate::codes;
        match self.kind {
            datamesh_stdlib::Trap::Overflow(_) => codes::R0001,
            datamesh_stdlib::Trap::DivisionByZero => codes::R0002,
            datamesh_stdlib::Trap::InvalidConversion(_) => codes::R0003,
            datamesh_stdlib::Trap::OutOfRange(_) => codes::R0004,
            datamesh_stdlib::Trap::NonFinite(_) => codes::R0005,
            datamesh_stdlib::Trap::LimitExceeded(_) => LIMIT_CODE,
        }
    }
}
