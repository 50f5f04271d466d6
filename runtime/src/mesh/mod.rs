//! The mesh's rules: a node's name, the peers it knows, what it exports to each of
//! them, and what an import block must agree with (the links that import run in
//! [`crate::links`]).
//!
//! A node has a name (`--name`, config `name`), which its peers know it by and which
//! `export to NAME { ... }` blocks of other nodes' programs name. It knows its peers by
//! name and address (`--peer NAME=ADDR`, config `[peers.NAME] address = ...`). The
//! export side is served by the `Export` RPC (`api/export.rs`): a peer reads, from a
//! position, only the events that the deployed programs export to it. The import side
//! is a link per peer that an `import` block names ([`crate::links`]), which checks
//! the peer's exports against the block ([`schema`]) and keeps its position in this
//! node's own log ([`checkpoint`]).
//!
//! Invariant: which types a peer may read is decided here, in [`exports_to`], and
//! nowhere else, so that when peers authenticate (TLS), only the name passed in
//! changes, from the one the peer claims to the one its certificate proves.

pub mod checkpoint;
pub mod schema;

pub use checkpoint::is_reserved;

use std::collections::BTreeMap;

use datamesh_compiler::ir::{EventType, Program};

/// The name a node has when none is configured.
pub const DEFAULT_NAME: &str = "datamesh";

/// The longest node name.
pub const MAX_NAME: usize = 64;

/// Checks a node or peer name: a letter, then letters, digits, `_` or `-`, at most
/// [`MAX_NAME`] bytes (the names `export to` and `import` blocks use).
///
/// # Errors
/// What is wrong with it.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.len() > MAX_NAME {
        return Err(format!(
            "a node name has at most {MAX_NAME} bytes, this one has {}",
            name.len()
        ));
    }
    if !starts || !rest {
        return Err(format!(
            "`{name}` is not a node name: a letter, then letters, digits, `_` or `-`"
        ));
    }
    Ok(())
}

/// Checks a peer's address: `http://HOST:PORT`, `https://HOST:PORT` or `unix:PATH`.
///
/// # Errors
/// What is wrong with it.
pub fn check_address(address: &str) -> Result<(), String> {
    let ok = match address.split_once("://") {
        Some(("http" | "https", rest)) => !rest.is_empty() && rest.contains(':'),
        _ => address.strip_prefix("unix:").is_some_and(|p| !p.is_empty()),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{address}` is not a peer address: `http://HOST:PORT`, `https://HOST:PORT` or `unix:PATH`"
        ))
    }
}

/// Parses `NAME=ADDR` (the `--peer` flag).
///
/// # Errors
/// What is wrong with it.
pub fn parse_peer(text: &str) -> Result<(String, String), String> {
    let (name, address) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=ADDRESS"))?;
    check_name(name)?;
    check_address(address)?;
    Ok((name.to_owned(), address.to_owned()))
}

/// An event type as exported: what an importer checks its own declaration against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Its declaration as `.dmp` text (see [`declaration`]).
    pub declaration: String,
    /// The fields that have a default here: an event of this node may leave them out
    /// (it is stored as it was appended), so an importer must not require them.
    pub defaulted: Vec<String>,
}

/// The event types the `programs` export to `peer`, by name. Empty when nothing is
/// exported to it.
pub fn exports_to<'a>(
    programs: impl IntoIterator<Item = &'a Program>,
    peer: &str,
) -> BTreeMap<String, Exported> {
    let mut out = BTreeMap::new();
    for program in programs {
        for export in program.exports.iter().filter(|e| e.peer == peer) {
            for &event in &export.events {
                if let Some(declared) = program.events.get(event) {
                    out.entry(declared.name.clone())
                        .or_insert_with(|| Exported {
                            declaration: declaration(declared),
                            defaulted: (declared.fields.iter())
                                .filter(|f| f.default.is_some())
                                .map(|f| f.name.clone())
                                .collect(),
                        });
                }
            }
        }
    }
    out
}

/// An event type's declaration as `.dmp` text: `event Name { field: type, ... }`.
pub fn declaration(event: &EventType) -> String {
    let fields: Vec<String> = event
        .fields
        .iter()
        .map(|f| format!("{}: {}", f.name, f.ty))
        .collect();
    format!("event {} {{ {} }}", event.name, fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_checked() {
        assert!(check_name("payments").is_ok());
        assert!(check_name("bank-eu_2").is_ok());
        for bad in ["", "2fast", "a b", "ünï", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_address("http://127.0.0.1:7071").is_ok());
        assert!(check_address("https://bank.internal:443").is_ok());
        assert!(check_address("unix:/run/bank.sock").is_ok());
        for bad in ["127.0.0.1:7071", "http://", "ftp://x:1", "unix:"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_peer("bank=http://127.0.0.1:7071"),
            Ok(("bank".into(), "http://127.0.0.1:7071".into()))
        );
        assert!(parse_peer("bank").is_err());
    }

    #[test]
    fn only_what_is_exported_to_a_peer_is_listed() {
        let checked = datamesh_compiler::check::check_source(
            "event Paid { order: string, amount: int, note: string? }
             event Refunded { order: string }
             event Internal { x: int }
             export to bank { Paid, Refunded }
             export to reporting { Paid }",
        );
        let program = checked.program.expect("checks");
        let bank = exports_to([&program], "bank");
        assert_eq!(bank.keys().collect::<Vec<_>>(), ["Paid", "Refunded"]);
        assert_eq!(
            bank["Paid"].declaration,
            "event Paid { order: string, amount: int, note: string? }"
        );
        assert_eq!(
            exports_to([&program], "reporting")
                .keys()
                .collect::<Vec<_>>(),
            ["Paid"]
        );
        assert!(exports_to([&program], "stranger").is_empty());
    }
}
