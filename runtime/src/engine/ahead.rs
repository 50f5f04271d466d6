//! Rows decoded ahead of the fold. While a rebuild folds one chunk of the log, the
//! thread that reads and verifies the next chunk also decodes its payloads (the JSON
//! parse was the largest share of a rebuild's time on the folding thread), so a
//! rebuild keeps both cores busy. It decodes a chunk in order until the fold waits for
//! it, and hands it over then: the fold decodes the rest itself. So the decoding is
//! shared by whichever thread has time (measured: in-process W4 +25-35% over decoding
//! every row ahead, where the reading thread had become the slower one).
//!
//! Invariants: a row decoded ahead is what the fold would decode itself (the same
//! function, declaration and fields read); a payload that does not decode is kept as
//! its error, for the fold to fault the projections that need it, in log order. The
//! arena goes back to the thread that filled it, which drops its values there: the
//! strings were allocated on that thread, and freeing them on the other cost more than
//! the decode saved.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datamesh_compiler::exec::codec::{PayloadError, decode_payload_into};
use datamesh_compiler::ir::Program;
use datamesh_stdlib::Value;

use crate::log::Frames;

/// Records decoded between two looks at whether the fold waits.
#[cfg(not(test))]
const HUNGER_EVERY: usize = 256;
/// Small in tests (whose chunks are small), so that a chunk can be handed over part
/// decoded.
#[cfg(test)]
const HUNGER_EVERY: usize = 7;

/// What the reading thread needs to decode a batch's events: every program, and per
/// program and event type whether a projection of the batch handles it and which
/// fields its handlers read.
pub(super) struct Plan {
    pub(super) programs: Vec<Arc<Program>>,
    pub(super) targets: Vec<Vec<bool>>,
    pub(super) reads: Vec<Vec<Vec<bool>>>,
}

/// One decoded payload, or why it did not decode.
enum Slot {
    /// No projection of the batch handles this event (or the frame did not decode).
    Skipped,
    /// The row's values, in the arena.
    Row(Range<usize>),
    /// The payload does not match the program's declaration.
    Bad(PayloadError),
}

/// The rows of one chunk, per record and program.
#[derive(Default)]
pub(super) struct Ahead {
    programs: usize,
    values: Vec<Value>,
    slots: Vec<Slot>,
    row: Vec<Value>,
}

impl Ahead {
    /// Decodes the payloads of `frames` that a projection of the batch handles,
    /// reusing this arena (the values of its last chunk are dropped here), in order,
    /// until `hungry` says the fold is waiting for this chunk: the fold then decodes
    /// the rest itself, so the two threads share the decoding whichever is faster.
    pub(super) fn decode(&mut self, plan: &Plan, frames: &Frames, hungry: &AtomicBool) {
        self.values.clear();
        self.slots.clear();
        self.programs = plan.programs.len();
        for (n, frame) in frames.iter().enumerate() {
            if n % HUNGER_EVERY == 0 && hungry.load(Ordering::Relaxed) {
                return;
            }
            for (index, program) in plan.programs.iter().enumerate() {
                let event = frame.as_ref().ok().and_then(|record| {
                    let event = program.event_id(record.event_type)?;
                    let handled = plan.targets.get(index)?.get(event).copied()?;
                    handled.then_some((event, record.payload))
                });
                let Some((event, payload)) = event else {
                    self.slots.push(Slot::Skipped);
                    continue;
                };
                let read = plan
                    .reads
                    .get(index)
                    .and_then(|r| r.get(event))
                    .map(Vec::as_slice);
                let slot =
                    match decode_payload_into(&program.events[event], payload, read, &mut self.row)
                    {
                        Ok(()) => {
                            let start = self.values.len();
                            self.values.append(&mut self.row);
                            Slot::Row(start..self.values.len())
                        }
                        Err(e) => Slot::Bad(e),
                    };
                self.slots.push(slot);
            }
        }
    }

    /// The row decoded for the `record`-th record of the chunk under program
    /// `program`; `None` when it was not decoded ahead (no projection needs it, or the
    /// reading thread stopped before it): the fold decodes it itself.
    pub(super) fn row(
        &self,
        record: usize,
        program: usize,
    ) -> Option<Result<&[Value], &PayloadError>> {
        let slot = self.slots.get(record * self.programs + program)?;
        match slot {
            Slot::Skipped => None,
            Slot::Row(range) => self.values.get(range.clone()).map(Ok),
            Slot::Bad(error) => Some(Err(error)),
        }
    }
}
