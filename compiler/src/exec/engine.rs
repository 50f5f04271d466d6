//! The interface every in-memory fold engine implements: the reference interpreter
//! ([`crate::interp::Fold`]) and the Cranelift JIT ([`crate::codegen::JitFold`]).
//! Tools drive engines through [`FoldEngine`], so switching engines changes no caller,
//! and differential tests compare engines through the same calls. Each engine
//! implements it in its own module. (The node folds into its own document tables
//! instead: `interp::apply_event` and `codegen::JitProgram::fold_event`.)
//!
//! Invariant (the contract every engine keeps): for the same program and the same
//! events, every engine produces identical documents and identical faults (same
//! projection, position, trap kind and span).

use datamesh_stdlib::Value;

use crate::exec::{Fault, Meta, ProjectionState};
use crate::ir::{EventId, Program};

/// Folds events into the projections of one program.
pub trait FoldEngine {
    /// The program being folded.
    fn program(&self) -> &Program;

    /// Appends a local event: it gets the next position and is applied to every
    /// projection that is not faulted. Returns the faults it caused.
    fn apply_local(&mut self, event: EventId, row: &[Value], meta: &Meta) -> Vec<Fault>;

    /// Runs the import rules of `import` on one of the peer's events (`event` indexes
    /// the import's own event types) without applying their output: the local events
    /// they emit, in order.
    ///
    /// # Errors
    /// A [`Fault`] whose `projection` is the import's index when a rule trapped.
    fn run_import(
        &mut self,
        import: usize,
        event: usize,
        row: &[Value],
        meta: &Meta,
    ) -> Result<Vec<(EventId, Vec<Value>)>, Fault>;

    /// Runs the import rules of `import` on one of the peer's events and applies what
    /// they emit, in order (see [`apply_emitted`]).
    ///
    /// # Errors
    /// A [`Fault`] whose `projection` is the import's index when a rule trapped; nothing
    /// is applied then.
    fn apply_import(
        &mut self,
        import: usize,
        event: usize,
        row: &[Value],
        meta: Meta,
    ) -> Result<Vec<Fault>, Fault> {
        let emitted = self.run_import(import, event, row, &meta)?;
        let peer = self
            .program()
            .imports
            .get(import)
            .map_or(String::new(), |i| i.peer.clone());
        Ok(apply_emitted(self, &peer, &meta, emitted))
    }

    /// The position the next local event will get.
    fn next_position(&self) -> i64;

    /// The documents (and fault) of every projection, in program order.
    fn snapshot(&self) -> Vec<ProjectionState>;
}

/// Applies, in order, the local events an import rule emitted for one peer event, each
/// with the envelope [`crate::exec::imported_meta`] derives; returns the faults. Both
/// engines' `apply_import` end here, so imported events are applied one way.
pub fn apply_emitted<E: FoldEngine + ?Sized>(
    engine: &mut E,
    peer: &str,
    source: &Meta,
    emitted: Vec<(EventId, Vec<Value>)>,
) -> Vec<Fault> {
    let count = emitted.len();
    let mut faults = Vec::new();
    for (n, (local, row)) in emitted.into_iter().enumerate() {
        let meta = crate::exec::imported_meta(peer, source, n, count);
        faults.extend(engine.apply_local(local, &row, &meta));
    }
    faults
}
