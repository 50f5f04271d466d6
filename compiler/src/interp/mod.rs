//! The reference interpreter: runs the typed IR with the exact semantics of the language.
//!
//! It is the oracle the JIT is tested against, so it favours obviousness over speed:
//! every operation goes through the same `datamesh_stdlib` function the JIT will call.
//! Invariant: evaluation never panics; overflow, division by zero and invalid
//! conversions return a [`crate::exec::Trap`] carrying the span of the expression that failed.

mod eval;
mod fold;
mod table;
mod tests;

pub use eval::eval_const;
pub use fold::{Fold, Overlay, Take, Taken, TakenDocs, apply_event, apply_event_in_place};
pub use tests::{TestFailure, TestResult, run_tests, run_tests_with};
