//! Helpers and scenarios shared by the engine test suites (`jit_differential`, which
//! compares the in-memory folds, and `jit_store`, which compares the table-backed
//! folding the node runs): each suite runs the same programs and events through its
//! own engine interface.
#![allow(dead_code)]

use std::sync::Arc;

use datamesh_compiler::check::check_source;
use datamesh_compiler::exec::Meta;
use datamesh_compiler::exec::codec::decode_payload;
use datamesh_compiler::ir::{EventId, Program};
use datamesh_stdlib::Value;
use datamesh_stdlib::time::parse_rfc3339;
use serde_json::{Value as Json, json};

/// Checks a program, failing the test with every error when it does not check.
pub fn compile(src: &str) -> Program {
    let checked = check_source(src);
    let errors: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{} {} at {:?}", d.code, d.message, d.span))
        .collect();
    assert!(
        errors.is_empty(),
        "program does not check: {errors:#?}\n{src}"
    );
    checked.program.expect("a program without errors")
}

/// An envelope at `time` (RFC 3339), in stream `s-1` with id `id-1`.
pub fn meta(time: &str) -> Meta {
    Meta {
        time: parse_rfc3339(time).expect("valid time"),
        stream: Arc::from("s-1"),
        id: Arc::from("id-1"),
        ..Meta::default()
    }
}

/// A local event of type `ty` with payload `data`, decoded, with a fixed envelope.
pub fn decoded(program: &Program, ty: &str, data: Json) -> (EventId, Vec<Value>, Meta) {
    let id = program.event_id(ty).expect("declared event");
    let row = decode_payload(&program.events[id], &data).expect("payload decodes");
    (id, row, meta("2024-05-01T10:00:00Z"))
}

/// Deletes (guarded and in branches), guards, per-handler keys (one event touching two
/// documents, or one twice), and a single-document projection whose guard is false.
pub const DELETE_GUARDS_AND_KEYS: &str = r#"
    event Open { k: string }
    event Close { k: string }
    event Move { from: string, to: string, n: int }
    projection p { key k state { n: int = 0, tags: list<string> }
      on Open { n += 1; tags.push("open") }
      on Close where n > 1 { delete }
      on Close { n -= 1; if n < 0 { delete } else { tags.push("close") } }
      on Move key event.from { n -= event.n }
      on Move key event.to where event.n > 0 { n += event.n } }
    projection single { state { seen: int = 0 } on Close where false { seen += 1 } on Open { seen += 1 } }"#;

/// The events of [`DELETE_GUARDS_AND_KEYS`].
pub fn delete_guards_and_keys_events() -> Vec<(&'static str, Json)> {
    vec![
        ("Open", json!({"k": "a"})),
        ("Close", json!({"k": "b"})),
        ("Open", json!({"k": "a"})),
        ("Close", json!({"k": "a"})),
        ("Move", json!({"from": "a", "to": "a", "n": 5})),
        ("Move", json!({"from": "c", "to": "d", "n": 0})),
        ("Close", json!({"k": "c"})),
        ("Open", json!({"k": "a"})),
    ]
}

/// A trap (`i64::MIN / -1`) in the last of three handlers, after two others wrote two
/// documents (one under a per-handler key), beside a projection that does not trap.
pub const TRAP_AFTER_WRITES: &str = r#"
    event E { k: string, a: int, b: int }
    projection p { key k state { x: int = 0, y: int = 0, t: set<string> }
      on E { x += 1; t.insert("seen") }
      on E key "other" { y = 1 }
      on E { y = event.a / event.b } }
    projection q { state { n: int = 0 } on E { n += 1 } }"#;

/// The events of [`TRAP_AFTER_WRITES`]: the second one traps.
pub fn trap_after_writes_events() -> Vec<(&'static str, Json)> {
    vec![
        ("E", json!({"k": "a", "a": 6, "b": 3})),
        ("E", json!({"k": "a", "a": i64::MIN, "b": -1})),
        ("E", json!({"k": "a", "a": 1, "b": 1})),
    ]
}
