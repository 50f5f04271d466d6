//! [`TableFold`]: how an engine folds events into one projection's [`DocTable`], the
//! node's write-back cache in front of its store. Both engines implement it (the
//! interpreter on [`crate::ir::Program`], the JIT on [`crate::codegen::JitProgram`]), so the node
//! drives either through the same calls and knows neither's document form.
//!
//! Invariants every implementation keeps: a fold that traps leaves the table as it
//! found it (documents it loaded stay, clean); a document is loaded from its stored
//! bytes at most once per residence in the table; what [`TableFold::encode_within`]
//! writes is the stored encoding ([`crate::exec::storage::encode_doc`]) of the
//! document's fields, whichever engine holds it.

use datamesh_stdlib::Value;

use crate::ast::Span;
use crate::exec::storage::DocTooLarge;
use crate::exec::table::DocTable;
use crate::exec::{Meta, Trap};
use crate::ir::EventId;

/// Stored bytes of a projection's document by key (`None`: the store has none).
pub type Stored<'a> = dyn FnMut(&[u8]) -> Option<Vec<u8>> + 'a;

/// An engine folding the events of one program into projection tables.
pub trait TableFold {
    /// The form a document takes in the table.
    type Doc;
    /// Working memory reused from event to event (one per thread).
    type Scratch;
    /// An event made ready once for every projection of the program.
    type Event<'r>;

    /// Prepares an event (its type, decoded row and envelope); `None` when this
    /// program cannot run it (the event then changes nothing).
    fn prepare<'r>(
        &self,
        scratch: &mut Self::Scratch,
        event: (EventId, &'r [Value], &'r Meta),
    ) -> Option<Self::Event<'r>>;

    /// Applies a prepared event to projection number `projection`, whose documents are
    /// in `table`; those it reads and the table lacks come from `stored`.
    ///
    /// # Errors
    /// The trap and the span of the handler that trapped; the table is then unchanged.
    fn fold(
        &self,
        scratch: &mut Self::Scratch,
        projection: usize,
        event: &Self::Event<'_>,
        table: &mut DocTable<Self::Doc>,
        stored: &mut Stored<'_>,
    ) -> Result<(), (Trap, Span)>;

    /// Appends the stored bytes of a document of projection `projection` to `out`.
    ///
    /// # Errors
    /// [`DocTooLarge`] when they would pass `max` bytes.
    fn encode_within(
        &self,
        projection: usize,
        doc: &Self::Doc,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), DocTooLarge>;
}
