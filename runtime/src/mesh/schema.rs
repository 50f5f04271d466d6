//! The check a link makes before it imports anything: the importer's `import PEER`
//! block against the declarations the exporter serves for the types it exports to
//! this node.
//!
//! Each event type the block declares must be exported to this node, with the same
//! fields and the same types: a field the peer sends that the block does not declare
//! would make every such event undecodable, a declared field the peer does not send
//! is only acceptable when the block gives it a default (or makes it optional), and a
//! type mismatch would fail at the first event. Refusing when the link starts names
//! the problem at once, instead of pausing on the first event that shows it.
//! Exported types the block does not declare are fine: the importer chooses what it
//! cares about, and their events only move the link's position.

use datamesh_compiler::codes::{self, Code};
use std::collections::BTreeMap;

use datamesh_compiler::ir::{EventType, Import, Type};

use super::Exported;

/// One disagreement between the block and the exporter, as a diagnostic: a code, the
/// problem naming both sides, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `M0001` ...
    pub code: Code,
    /// What disagrees.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error[{}]: {}\n  help: {}",
            self.code, self.message, self.help
        )
    }
}

/// Checks `block` (this node's `import PEER`) against `exported` (type name ->
/// declaration, as the exporter serves it to `me`); every mismatch found.
pub fn check(block: &Import, me: &str, exported: &BTreeMap<String, Exported>) -> Vec<Mismatch> {
    let peer = &block.peer;
    let mut out = Vec::new();
    for declared in &block.events {
        let Some(theirs) = exported.get(&declared.name) else {
            out.push(Mismatch {
                code: codes::M0001,
                message: format!(
                    "`import {peer}` declares `{}`, but `{peer}` does not export it to `{me}` (it exports: {})",
                    declared.name,
                    if exported.is_empty() { "nothing".to_owned() } else { exported.keys().cloned().collect::<Vec<_>>().join(", ") }
                ),
                help: format!(
                    "remove `{}` from the block, or have `{peer}` deploy `export to {me} {{ {} }}`",
                    declared.name, declared.name
                ),
            });
            continue;
        };
        let text = &theirs.declaration;
        let defaulted = &theirs.defaulted;
        let Some(theirs) = parse_declaration(text) else {
            out.push(Mismatch {
                code: codes::M0002,
                message: format!(
                    "`{peer}` serves a declaration of `{}` this node cannot read: {text}",
                    declared.name
                ),
                help: "the two nodes run releases that disagree on the language; upgrade the older one".to_owned(),
            });
            continue;
        };
        fields(peer, declared, &theirs, defaulted, &mut out);
    }
    out
}

/// The fields of one type on both sides.
fn fields(
    peer: &str,
    ours: &EventType,
    theirs: &EventType,
    defaulted: &[String],
    out: &mut Vec<Mismatch>,
) {
    let name = &ours.name;
    for field in &theirs.fields {
        match ours.field(&field.name) {
            None => out.push(Mismatch {
                code: codes::M0003,
                message: format!(
                    "`{peer}` sends `{name}.{}: {}`, but `import {peer}` does not declare that field",
                    field.name, field.ty
                ),
                help: format!(
                    "declare every field the peer sends: add `{}: {}` to `event {name}` in the block (a default lets the peer stop sending it later)",
                    field.name, field.ty
                ),
            }),
            Some(i) => {
                let mine = &ours.fields[i];
                let required = mine.default.is_none() && !matches!(mine.ty, Type::Optional(_));
                if required && defaulted.contains(&field.name) {
                    out.push(Mismatch {
                        code: codes::M0007,
                        message: format!(
                            "`{peer}` may leave `{name}.{}` out of an event (it has a default there), but `import {peer}` requires it",
                            field.name
                        ),
                        help: format!(
                            "give `{}` a default in the block (`{}: {} = ...`), as `{peer}` does",
                            field.name, field.name, mine.ty
                        ),
                    });
                }
                if mine.ty != field.ty {
                    out.push(Mismatch {
                        code: codes::M0004,
                        message: format!(
                            "`import {peer}` declares `{name}.{}: {}`, but `{peer}` sends it as `{}`",
                            field.name, mine.ty, field.ty
                        ),
                        help: format!("declare it as `{}: {}`", field.name, field.ty),
                    });
                }
            }
        }
    }
    for mine in &ours.fields {
        let optional = matches!(mine.ty, Type::Optional(_));
        if theirs.field(&mine.name).is_none() && mine.default.is_none() && !optional {
            out.push(Mismatch {
                code: codes::M0005,
                message: format!(
                    "`import {peer}` declares `{name}.{}: {}`, but `{peer}` does not send that field",
                    mine.name, mine.ty
                ),
                help: format!(
                    "give it a default (`{}: {} = ...`), make it optional, or remove it",
                    mine.name, mine.ty
                ),
            });
        }
    }
}

/// An exported declaration (`event Name { ... }`) as an event type.
fn parse_declaration(text: &str) -> Option<EventType> {
    let checked = datamesh_compiler::check::check_source(text);
    let mut program = checked.program?;
    (program.events.len() == 1).then(|| program.events.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(source: &str) -> Import {
        let checked = datamesh_compiler::check::check_source(source);
        let mut program = checked.program.expect("checks");
        program.imports.remove(0)
    }

    #[test]
    fn a_block_that_agrees_passes_and_each_disagreement_is_named() {
        let exported = |text: &str, defaulted: &[&str]| Exported {
            declaration: text.to_owned(),
            defaulted: defaulted.iter().map(|d| (*d).to_owned()).collect(),
        };
        let exported: BTreeMap<String, Exported> = [
            (
                "Paid".to_owned(),
                exported(
                    "event Paid { order: string, cents: int, note: string?, fee: int }",
                    &["fee"],
                ),
            ),
            (
                "Refunded".to_owned(),
                exported("event Refunded { order: string }", &[]),
            ),
        ]
        .into();
        let ok = block(
            "event Got { order: string }
             import payments {
               event Paid { order: string, cents: int, note: string?, fee: int = 0, extra: int = 0 }
               on Paid { emit Got { order: event.order } }
             }",
        );
        assert_eq!(check(&ok, "bank", &exported), vec![]);
        let bad = block(
            "event Got { order: string }
             import payments {
               event Paid { order: string, cents: float, fee: int, wanted: string }
               event Voided { order: string }
               on Paid { emit Got { order: event.order } }
               on Voided { emit Got { order: event.order } }
             }",
        );
        let codes: Vec<&str> = check(&bad, "bank", &exported)
            .iter()
            .map(|m| m.code.id)
            .collect();
        assert_eq!(codes, ["M0004", "M0003", "M0007", "M0005", "M0001"]);
        let text = check(&bad, "bank", &exported)[0].to_string();
        assert!(
            text.contains("declares `Paid.cents: float`, but `payments` sends it as `int`"),
            "{text}"
        );
    }
}
