//! Interpreter tests that `test` blocks cannot express: every trap (with its code, its
//! span and the state it leaves), payload decoding through the Rust API, and
//! determinism. The constructs of the language are covered by the `test` blocks of
//! `compiler/tests/programs/*.dmp`, which run on both engines (`dmc`'s corpus test).

mod common;

use datamesh_compiler::exec::engine::FoldEngine;
use std::sync::Arc;

use common::compile;
use datamesh_compiler::exec::codec::{decode_payload, decode_payload_bytes, documents_json};
use datamesh_compiler::exec::{Fault, Meta};
use datamesh_compiler::interp::Fold;
use serde_json::{Value as Json, json};

/// One input event: type and payload.
struct Ev(&'static str, Json);

fn ev(ty: &'static str, data: Json) -> Ev {
    Ev(ty, data)
}

/// Folds the events and returns the printed documents and every fault.
fn run(src: &str, events: &[Ev]) -> (Json, Vec<Fault>) {
    let program = compile(src);
    let mut fold = Fold::new(&program);
    let mut faults = Vec::new();
    for Ev(ty, data) in events {
        let id = program
            .event_id(ty)
            .unwrap_or_else(|| panic!("unknown type {ty}"));
        let row = decode_payload(&program.events[id], data).expect("payload decodes");
        let meta = Meta {
            stream: Arc::from("s-1"),
            id: Arc::from("id-1"),
            ..Meta::default()
        };
        faults.extend(fold.apply_local(id, &row, meta));
    }
    (documents_json(&program, &fold.projections), faults)
}

fn docs(src: &str, events: &[Ev]) -> Json {
    let (json, faults) = run(src, events);
    assert!(faults.is_empty(), "unexpected faults: {faults:#?}");
    json
}

/// Runs one statement body over one event `E { a: int, b: int }` and returns the trap.
fn trap_of(body: &str, a: i64, b: i64) -> String {
    let src = format!(
        "event E {{ a: int, b: int, f: float = 0.0, s: string = \"\" }}\n\
         projection p {{ state {{ n: int = 0, x: float = 0.0, t: string = \"\", d: duration = 0s, l: list<int> }}\n\
         on E {{ {body} }} }}"
    );
    let program = compile(&src);
    let mut fold = Fold::new(&program);
    let row = decode_payload(&program.events[0], &json!({"a": a, "b": b})).expect("payload");
    let faults = fold.apply_local(0, &row, Meta::default());
    assert_eq!(
        faults.len(),
        1,
        "expected a trap for `{body}` with a={a} b={b}"
    );
    let fault = &faults[0];
    // The projection keeps its documents as before the event.
    assert!(
        fold.projections[0].docs.is_empty(),
        "a trapping handler changed state"
    );
    format!("{} {}", fault.trap.code(), fault.trap)
}

#[test]
fn a_trap_faults_only_its_projection_and_changes_nothing() {
    let src = r#"
        event E { k: string, n: int }
        projection fragile { key k state { a: int = 0, b: int = 0 }
          on E { a += 1 }
          on E { b = 100 / event.n } }
        projection sturdy { key k state { n: int = 0 } on E { n += 1 } }"#;
    let (out, faults) = run(
        src,
        &[
            ev("E", json!({"k": "x", "n": 5})),
            ev("E", json!({"k": "x", "n": 0})),
            ev("E", json!({"k": "x", "n": 1})),
        ],
    );
    // The second event trapped in the second handler: the first handler's `a += 1` for
    // that event was discarded too, and the third event was never applied.
    assert_eq!(
        out,
        json!({"fragile": {"x": {"a": 1, "b": 20}}, "sturdy": {"x": {"n": 3}}})
    );
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].position, 1);
    assert_eq!(faults[0].event_type, "E");
    assert_eq!(faults[0].trap.code(), "R0002");
}

#[test]
fn every_trap_is_reported_with_its_code() {
    let cases: &[(&str, i64, i64, &str)] = &[
        (
            "n = event.a + event.b",
            i64::MAX,
            1,
            "R0001 integer overflow in addition",
        ),
        (
            "n = event.a - event.b",
            i64::MIN,
            1,
            "R0001 integer overflow in subtraction",
        ),
        (
            "n = event.a * event.b",
            i64::MAX,
            2,
            "R0001 integer overflow in multiplication",
        ),
        (
            "n = event.a / event.b",
            i64::MIN,
            -1,
            "R0001 integer overflow in division",
        ),
        (
            "n = event.a % event.b",
            i64::MIN,
            -1,
            "R0001 integer overflow in remainder",
        ),
        (
            "n = -event.a",
            i64::MIN,
            0,
            "R0001 integer overflow in negation",
        ),
        (
            "n = abs(event.a)",
            i64::MIN,
            0,
            "R0001 integer overflow in abs",
        ),
        (
            "n = event.a; n += event.b",
            i64::MAX,
            1,
            "R0001 integer overflow in addition",
        ),
        (
            "n = pow(event.a, event.b)",
            10,
            19,
            "R0001 integer overflow in power",
        ),
        ("n = event.a / event.b", 1, 0, "R0002 division by zero"),
        ("n = event.a % event.b", 1, 0, "R0002 division by zero"),
        ("n = 5; n /= event.b", 1, 0, "R0002 division by zero"),
        (
            "x = to_float(event.a) / to_float(event.b)",
            1,
            0,
            "R0002 division by zero",
        ),
        (
            "d = seconds(event.a)",
            i64::MAX,
            0,
            "R0001 integer overflow in duration",
        ),
        ("l.push(1); n = get(l, event.a)", 1, 0, "R0004"),
        ("l.push(1); n = l[event.a]", -1, 0, "R0004"),
        ("t = substring(\"abc\", event.a, event.b)", 2, 5, "R0004"),
        ("n = parse_int(\"12x\")", 0, 0, "R0003"),
        ("n = to_int(to_float(event.a) * 1e10)", i64::MAX, 0, "R0003"),
        ("x = sqrt(to_float(event.a))", -1, 0, "R0004"),
        ("x = to_float(event.a) * 1e300 * 1e300", 1, 0, "R0005"),
    ];
    for (body, a, b, expected) in cases {
        let got = trap_of(body, *a, *b);
        assert!(
            got.starts_with(expected),
            "`{body}` with a={a} b={b}: got `{got}`, expected `{expected}`"
        );
    }
}

#[test]
fn limits_trap_with_r0007_and_change_nothing() {
    // A string built past 1 MiB (here by doubling 16 bytes 17 times) traps at the
    // operation that would build it, with the limit in the message (issue 10,
    // finding 7).
    let doubled = |step: &str| format!("t = \"0123456789abcdef\"; {}", step.repeat(17));
    for body in [
        doubled("t = t + t; "),
        doubled("t += t; "),
        doubled("t = concat(t, t); "),
    ] {
        let got = trap_of(&body, 0, 0);
        assert_eq!(
            got,
            "R0007 limit exceeded: a string of 2097152 bytes is longer than the limit of 1048576 bytes",
            "`{body}`"
        );
    }
    // The span is the operation that would have passed the limit.
    let src = format!(
        "event E {{ n: int }}\nprojection p {{ state {{ t: string = \"\" }} on E {{ {} }} }}",
        doubled("t = t + t; ")
    );
    let program = compile(&src);
    let mut fold = Fold::new(&program);
    let row = decode_payload(&program.events[0], &json!({"n": 0})).expect("payload");
    let faults = fold.apply_local(0, &row, Meta::default());
    let span = faults[0].trap.span;
    assert_eq!(&src[span.start as usize..span.end as usize], "t + t");
}

#[test]
fn trap_spans_point_at_the_failing_expression() {
    let src = "event E { n: int }\nprojection p { state { v: int = 0 } on E { v = 10 / event.n } }";
    let program = compile(src);
    let mut fold = Fold::new(&program);
    let row = decode_payload(&program.events[0], &json!({"n": 0})).expect("payload");
    let faults = fold.apply_local(0, &row, Meta::default());
    let span = faults[0].trap.span;
    assert_eq!(&src[span.start as usize..span.end as usize], "10 / event.n");
    let handler = faults[0].handler;
    assert!(src[handler.start as usize..handler.end as usize].starts_with("on E"));
}

#[test]
fn import_rule_traps_emit_nothing() {
    let src = r#"
        event Deposited { account: string, amount: int }
        projection p { key account state { n: int = 0 } on Deposited { n += event.amount } }
        import peer { event Raw { a: string, n: int } on Raw { emit Deposited { account: event.a, amount: 1 }  emit Deposited { account: event.a, amount: 10 / event.n } } }"#;
    let program = compile(src);
    let mut fold = Fold::new(&program);
    let row =
        decode_payload(&program.imports[0].events[0], &json!({"a": "x", "n": 0})).expect("payload");
    let fault = fold
        .apply_import(0, 0, &row, Meta::default())
        .expect_err("the rule divides by zero");
    assert_eq!(fault.trap.code(), "R0002");
    assert_eq!(
        documents_json(&program, &fold.projections),
        json!({"p": {}})
    );
}

#[test]
fn payload_decoding_is_strict_and_names_the_field() {
    let program = compile(
        "event E { n: int, t: timestamp, o: string?, d: int = 4 } projection p { state { v: int = 0 } on E { v = event.n + event.d } }",
    );
    let e = &program.events[0];
    let err = |data: Json| {
        decode_payload(e, &data)
            .expect_err("must be rejected")
            .to_string()
    };
    assert_eq!(
        err(json!({"t": "2024-01-01T00:00:00Z"})),
        "field `n`: missing (required, of type `int`)"
    );
    assert_eq!(
        err(json!({"n": 1.5, "t": 0})),
        "field `n`: expected int, found the number 1.5"
    );
    assert_eq!(
        err(json!({"n": 1, "t": 0, "x": 1})),
        "field `x`: `E` has no such field (its fields: n, t, o, d)"
    );
    assert!(err(json!({"n": 1, "t": "yesterday"})).starts_with("field `t`: invalid conversion"));
    assert_eq!(
        err(json!({"n": null, "t": 0})),
        "field `n`: is null, but `int` is not optional"
    );
    assert_eq!(
        err(json!([1])),
        "the payload of `E` must be a JSON object, found an array"
    );
    assert!(decode_payload(e, &json!({"n": 1, "t": 0, "o": null})).is_ok());
    // A whole number past the int range is named as such, on both decoding paths (the
    // node decodes payload bytes without building JSON values).
    for (text, shown) in [
        ("9223372036854775808", "9223372036854775808"),
        ("99999999999999999999", "100000000000000000000"),
    ] {
        let payload = format!(r#"{{"n": {text}, "t": 0}}"#);
        let expected = format!("field `n`: {shown} is out of range for int");
        let data: Json = serde_json::from_str(&payload).expect("json");
        assert_eq!(err(data), expected);
        let from_bytes = decode_payload_bytes(e, payload.as_bytes())
            .expect_err("must be rejected")
            .to_string();
        assert_eq!(from_bytes, expected);
    }
}

#[test]
fn equal_programs_fold_to_identical_documents() {
    // Determinism: the same events give the same documents, byte for byte.
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/bank/bank.dmp"
    ))
    .expect("bank example");
    let events: Vec<Ev> = (0..200)
        .map(|i| {
            ev(
                if i % 3 == 0 { "Withdrawn" } else { "Deposited" },
                json!({"account": format!("a{}", i % 7), "amount": i}),
            )
        })
        .collect();
    let first = serde_json::to_string(&docs(&src, &events)).expect("json");
    let second = serde_json::to_string(&docs(&src, &events)).expect("json");
    assert_eq!(first, second);
}

#[test]
fn decoding_from_bytes_agrees_with_the_tree_decoder() {
    use datamesh_compiler::exec::codec::{
        decode_payload_bytes, decode_payload_into, decode_payload_text,
    };
    let program = compile(
        "event E { n: int, f: float = 1.5, t: timestamp, d: duration = 0s, o: string?, tags: list<string>, m: map<string, int> }\n\
         projection p { state { v: int = 0 } on E { v = event.n } }",
    );
    let e = &program.events[0];
    let cases = [
        r#"{"n": 1, "t": "2024-01-01T00:00:00Z", "tags": [], "m": {}}"#,
        r#"{"n": -5, "f": 2, "t": 1700000000000000, "d": "1h30m", "o": "x", "tags": ["a", "b"], "m": {"k": 3}}"#,
        r#"{"n": 1, "n": 2, "t": 0, "tags": [], "m": {}}"#,
        r#"{"n": 1.5, "t": 0, "tags": [], "m": {}}"#,
        r#"{"n": "1", "t": 0, "tags": [], "m": {}}"#,
        r#"{"n": 18446744073709551615, "t": 0, "tags": [], "m": {}}"#,
        r#"{"n": null, "t": 0, "tags": [], "m": {}}"#,
        r#"{"n": 1, "t": "yesterday", "tags": [], "m": {}}"#,
        r#"{"n": 1, "t": 0, "tags": [1], "m": {}}"#,
        r#"{"n": 1, "t": 0, "tags": [], "m": {}, "extra": true}"#,
        r#"{"t": 0, "tags": [], "m": {}}"#,
        r#"{"n": 1, "t": 0, "o": null, "tags": [], "m": {}}"#,
        r#"[1, 2]"#,
        r#"{"n": 1"#,
    ];
    for case in cases {
        let tree = serde_json::from_str::<Json>(case)
            .map_err(|_| ())
            .and_then(|json| decode_payload(e, &json).map_err(|_| ()));
        let bytes = decode_payload_bytes(e, case.as_bytes()).map_err(|_| ());
        assert_eq!(bytes, tree, "{case}");
        // The append path validates the request's text, with the same verdicts and
        // messages.
        let mut row = Vec::new();
        let text = decode_payload_text(e, case, None, &mut row).map(|()| row);
        let mut row = Vec::new();
        let from_bytes = decode_payload_into(e, case.as_bytes(), None, &mut row).map(|()| row);
        assert_eq!(
            text.map_err(|e| e.to_string()),
            from_bytes.map_err(|e| e.to_string()),
            "{case}"
        );
        // The engine's path: only the fields a handler reads (here `n`) are built, but
        // every field is still checked, so the same payloads are accepted and refused.
        let read = &program.event_fields_read()[0];
        assert_eq!(read.iter().filter(|r| **r).count(), 1);
        let mut row = vec![datamesh_stdlib::Value::str("stale")];
        let partial = decode_payload_into(e, case.as_bytes(), Some(read), &mut row).map(|()| row);
        match (&tree, partial) {
            (Ok(full), Ok(partial)) => {
                assert_eq!(partial.len(), full.len(), "{case}");
                for ((got, want), read) in partial.iter().zip(full).zip(read) {
                    if *read {
                        assert_eq!(got, want, "{case}");
                    }
                }
            }
            (Err(()), Err(_)) => {}
            (tree, partial) => panic!("{case}: tree decoder {tree:?}, engine decoder {partial:?}"),
        }
    }
}

#[test]
fn dividing_by_a_zero_duration_traps_like_int_division() {
    let cases: &[(&str, i64, i64, &str)] = &[
        (
            "n = seconds(event.a) / seconds(event.b)",
            1,
            0,
            "R0002 division by zero",
        ),
        (
            "d = seconds(event.a); n = d / 0s",
            1,
            0,
            "R0002 division by zero",
        ),
        (
            "n = 1us * event.a / (0s - 1us)",
            i64::MIN,
            0,
            "R0001 integer overflow in division",
        ),
    ];
    for (body, a, b, expected) in cases {
        let got = trap_of(body, *a, *b);
        assert!(
            got.starts_with(expected),
            "`{body}` with a={a} b={b}: got `{got}`, expected `{expected}`"
        );
    }
}
