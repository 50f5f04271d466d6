//! The interpreter as a [`TableFold`]: it runs the IR itself, on documents as values,
//! moved out of the table, changed in place and moved back ([`apply_event_in_place`]).

use datamesh_stdlib::Value;

use super::fold::apply_event_in_place;
use crate::ast::Span;
use crate::exec::fold::{Stored, TableFold};
use crate::exec::storage::{
    DocTooLarge, decode_doc, encode_doc_within, encode_key, encode_key_into,
};
use crate::exec::table::DocTable;
use crate::exec::{Meta, Trap};
use crate::ir::{EventId, Program};

/// The interpreter folds a program's projections straight from its IR.
impl TableFold for Program {
    type Doc = Vec<Value>;
    type Scratch = ();
    type Event<'r> = (EventId, &'r [Value], &'r Meta);

    fn prepare<'r>(
        &self,
        (): &mut (),
        event: (EventId, &'r [Value], &'r Meta),
    ) -> Option<Self::Event<'r>> {
        Some(event)
    }

    fn fold(
        &self,
        (): &mut (),
        projection: usize,
        &(event, row, meta): &Self::Event<'_>,
        table: &mut DocTable<Vec<Value>>,
        stored: &mut Stored<'_>,
    ) -> Result<(), (Trap, Span)> {
        let Some(ir) = self.projections.get(projection) else {
            return Ok(());
        };
        let mut key_bytes = Vec::new();
        let (touched, result) = apply_event_in_place(ir, event, row, meta, &mut |key| {
            encode_key_into(key, &mut key_bytes);
            table
                .entry_or_load(&key_bytes, |k| stored(k).and_then(|b| decode_doc(&b)))
                .doc
                .take()
        });
        for taken in touched {
            let bytes = encode_key(&taken.key);
            if taken.changed {
                table.put(&bytes, taken.doc);
            } else if let Some(entry) = table.get_mut(&bytes) {
                entry.doc = taken.doc;
            }
        }
        result
    }

    fn encode_within(
        &self,
        _projection: usize,
        doc: &Vec<Value>,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), DocTooLarge> {
        encode_doc_within(doc, max, out)
    }
}
