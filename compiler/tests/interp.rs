//! Interpreter tests: every construct of the language and every trap, run through the
//! reference interpreter on small programs and checked against hand-computed documents.

mod common;

use datamesh_compiler::exec::engine::FoldEngine;
use std::sync::Arc;

use common::compile;
use datamesh_compiler::exec::codec::{decode_payload, decode_payload_bytes, documents_json};
use datamesh_compiler::exec::{Fault, Meta};
use datamesh_compiler::interp::Fold;
use datamesh_stdlib::time::parse_rfc3339;
use serde_json::{Value as Json, json};

/// One input event: type, payload, optional RFC 3339 time.
struct Ev(&'static str, Json, Option<&'static str>);

fn ev(ty: &'static str, data: Json) -> Ev {
    Ev(ty, data, None)
}

fn at(ty: &'static str, data: Json, time: &'static str) -> Ev {
    Ev(ty, data, Some(time))
}

/// Folds the events and returns the printed documents and every fault.
fn run(src: &str, events: &[Ev]) -> (Json, Vec<Fault>) {
    let program = compile(src);
    let mut fold = Fold::new(&program);
    let mut faults = Vec::new();
    for Ev(ty, data, time) in events {
        let id = program
            .event_id(ty)
            .unwrap_or_else(|| panic!("unknown type {ty}"));
        let row = decode_payload(&program.events[id], data).expect("payload decodes");
        let meta = Meta {
            time: time.map_or(0, |t| parse_rfc3339(t).expect("valid time")),
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
fn keyed_projection_folds_per_key() {
    let src = r#"
        event Deposited { account: string, amount: int }
        projection balances { key account  state { balance: int = 0, n: int = 0 }
          on Deposited { balance += event.amount; n += 1 } }"#;
    let out = docs(
        src,
        &[
            ev("Deposited", json!({"account": "a", "amount": 5})),
            ev("Deposited", json!({"account": "b", "amount": 7})),
            ev("Deposited", json!({"account": "a", "amount": 10})),
        ],
    );
    assert_eq!(
        out,
        json!({"balances": {"a": {"balance": 15, "n": 2}, "b": {"balance": 7, "n": 1}}})
    );
}

#[test]
fn single_document_projection_exists_before_any_event() {
    let src = "event E { n: int } projection totals { state { sum: int = 5, seen: bool } on E { sum += event.n; seen = true } }";
    assert_eq!(docs(src, &[]), json!({"totals": {"sum": 5, "seen": false}}));
    assert_eq!(
        docs(src, &[ev("E", json!({"n": 2}))]),
        json!({"totals": {"sum": 7, "seen": true}})
    );
}

#[test]
fn composite_keys_and_calendar_functions() {
    let src = r#"
        event Deposited { account: string, amount: int }
        projection daily { key (event.account, day(meta.time)) state { volume: int = 0 }
          on Deposited { volume += event.amount } }"#;
    let out = docs(
        src,
        &[
            at(
                "Deposited",
                json!({"account": "a", "amount": 1}),
                "2024-05-01T23:59:59Z",
            ),
            at(
                "Deposited",
                json!({"account": "a", "amount": 2}),
                "2024-05-02T00:00:00Z",
            ),
            at(
                "Deposited",
                json!({"account": "a", "amount": 4}),
                "2024-05-02T10:00:00+02:00",
            ),
        ],
    );
    assert_eq!(
        out,
        json!({"daily": {"[\"a\",\"2024-05-01\"]": {"volume": 1}, "[\"a\",\"2024-05-02\"]": {"volume": 6}}})
    );
}

#[test]
fn per_handler_keys_touch_two_documents_in_order() {
    let src = r#"
        event Transferred { from: string, to: string, amount: int }
        projection balances { state { balance: int = 0 }
          on Transferred key event.from { balance -= event.amount }
          on Transferred key event.to { balance += event.amount } }"#;
    let out = docs(
        src,
        &[
            ev("Transferred", json!({"from": "a", "to": "b", "amount": 3})),
            // A self-transfer: both handlers hit one document and the second sees the first.
            ev(
                "Transferred",
                json!({"from": "b", "to": "b", "amount": 100}),
            ),
        ],
    );
    assert_eq!(
        out,
        json!({"balances": {"a": {"balance": -3}, "b": {"balance": 3}}})
    );
}

#[test]
fn where_guards_see_event_and_state() {
    let src = r#"
        event E { k: string, n: int }
        projection p { key k state { total: int = 0, capped: int = 0 }
          on E where event.n > 0 { total += event.n }
          on E where total < 10 { capped += 1 } }"#;
    let out = docs(
        src,
        &[
            ev("E", json!({"k": "a", "n": -5})),
            ev("E", json!({"k": "a", "n": 8})),
            ev("E", json!({"k": "a", "n": 8})),
            ev("E", json!({"k": "a", "n": 1})),
        ],
    );
    // Guards are evaluated per handler, after the handlers before it ran.
    assert_eq!(out, json!({"p": {"a": {"total": 17, "capped": 2}}}));
}

#[test]
fn let_if_else_and_if_expressions() {
    let src = r#"
        event E { n: int }
        projection p { state { label: string = "", sign: int = 0, big: bool = false }
          on E {
            let half = event.n / 2
            if event.n > 0 { sign = 1 } else if event.n < 0 { sign = -1 } else { sign = 0 }
            label = if half > 10 { "large" } else if half > 0 { "small" } else { "none" }
            big = half >= 50 and not (event.n == 101)
          } }"#;
    assert_eq!(
        docs(src, &[ev("E", json!({"n": 100}))]),
        json!({"p": {"label": "large", "sign": 1, "big": true}})
    );
    assert_eq!(
        docs(src, &[ev("E", json!({"n": -3}))]),
        json!({"p": {"label": "none", "sign": -1, "big": false}})
    );
    assert_eq!(
        docs(src, &[ev("E", json!({"n": 0}))]),
        json!({"p": {"label": "none", "sign": 0, "big": false}})
    );
}

#[test]
fn compound_assignment_for_every_operator() {
    let src = r#"
        event E { n: int }
        projection p { state { a: int = 100, s: int = 100, m: int = 3, d: int = 100, r: int = 100, t: string = "x", f: float = 1.5 }
          on E { a += event.n; s -= event.n; m *= event.n; d /= event.n; r %= event.n; t += "y"; f *= 2.0 } }"#;
    assert_eq!(
        docs(src, &[ev("E", json!({"n": 7}))]),
        json!({"p": {"a": 107, "s": 93, "m": 21, "d": 14, "r": 2, "t": "xy", "f": 3.0}})
    );
    // Integer division truncates toward zero, and the remainder follows the dividend.
    assert_eq!(
        docs(src, &[ev("E", json!({"n": -7}))]),
        json!({"p": {"a": 93, "s": 107, "m": -21, "d": -14, "r": 2, "t": "xy", "f": 3.0}})
    );
}

#[test]
fn delete_drops_the_document_and_stops_the_handler() {
    let src = r#"
        event Opened { id: string }
        event Closed { id: string }
        projection open { key id state { n: int = 0 }
          on Opened { n += 1 }
          on Closed { delete; n = 99 } }"#;
    let out = docs(
        src,
        &[
            ev("Opened", json!({"id": "a"})),
            ev("Opened", json!({"id": "b"})),
            ev("Closed", json!({"id": "a"})),
            ev("Closed", json!({"id": "zzz"})),
        ],
    );
    assert_eq!(out, json!({"open": {"b": {"n": 1}}}));
    // Reopening starts from the defaults again.
    let out = docs(
        src,
        &[
            ev("Opened", json!({"id": "a"})),
            ev("Closed", json!({"id": "a"})),
            ev("Opened", json!({"id": "a"})),
        ],
    );
    assert_eq!(out, json!({"open": {"a": {"n": 1}}}));
}

#[test]
fn optionals_defaults_and_coalesce() {
    let src = r#"
        event E { name: string?, limit: int = 10, note: string? = "n/a" }
        projection p { state { name: string = "", limit: int = 0, note: string?, has: bool = false, last: string? }
          on E {
            name = event.name ?? "anonymous"
            limit = event.limit
            note = event.note
            has = event.name != none
            last = event.name
          } }"#;
    assert_eq!(
        docs(src, &[ev("E", json!({}))]),
        json!({"p": {"name": "anonymous", "limit": 10, "note": "n/a", "has": false, "last": null}})
    );
    assert_eq!(
        docs(
            src,
            &[ev("E", json!({"name": "ann", "limit": 3, "note": null}))]
        ),
        json!({"p": {"name": "ann", "limit": 3, "note": null, "has": true, "last": "ann"}})
    );
}

#[test]
fn collections_sets_lists_and_maps() {
    let src = r#"
        event Tagged { tag: string, n: int }
        event Cleared { }
        projection p { state { tags: set<string>, seen: list<int>, counts: map<string, int>, total: int = 0, first: int = -1, has_a: bool = false, last_count: int = 0 }
          on Tagged {
            tags.insert(event.tag)
            seen.push(event.n)
            counts[event.tag] += 1
            total = sum(seen)
            first = first(seen) ?? -1
            has_a = contains(tags, "a")
            last_count = counts[event.tag] ?? 0
          }
          on Cleared { tags.remove("a"); seen.clear(); counts.remove("b") } }"#;
    let out = docs(
        src,
        &[
            ev("Tagged", json!({"tag": "b", "n": 2})),
            ev("Tagged", json!({"tag": "a", "n": 5})),
            ev("Tagged", json!({"tag": "b", "n": 2})),
        ],
    );
    assert_eq!(
        out,
        json!({"p": {"tags": ["a", "b"], "seen": [2, 5, 2], "counts": {"a": 1, "b": 2}, "total": 9, "first": 2, "has_a": true, "last_count": 2}})
    );
    let out = docs(
        src,
        &[
            ev("Tagged", json!({"tag": "a", "n": 1})),
            ev("Tagged", json!({"tag": "b", "n": 1})),
            ev("Cleared", json!({})),
        ],
    );
    assert_eq!(
        out,
        json!({"p": {"tags": ["b"], "seen": [], "counts": {"a": 1}, "total": 2, "first": 1, "has_a": true, "last_count": 1}})
    );
}

#[test]
fn meta_fields_and_time_arithmetic() {
    let src = r#"
        event Ping { device: string }
        projection p { key device state { pos: int = -1, stream: string = "", ty: string = "", id: string = "", gap: duration = 0s, last: timestamp?, late: bool = false, due: timestamp? }
          on Ping {
            gap = meta.time - (last ?? meta.time)
            late = gap > 15m
            last = meta.time
            due = meta.time + 1h30m
            pos = meta.position
            stream = meta.stream
            ty = meta.type
            id = meta.id
          } }"#;
    let out = docs(
        src,
        &[
            at("Ping", json!({"device": "d"}), "2024-01-01T00:00:00Z"),
            at("Ping", json!({"device": "d"}), "2024-01-01T00:20:00Z"),
        ],
    );
    assert_eq!(
        out,
        json!({"p": {"d": {"pos": 1, "stream": "s-1", "ty": "Ping", "id": "id-1", "gap": "20m", "last": "2024-01-01T00:20:00Z", "late": true, "due": "2024-01-01T01:50:00Z"}}})
    );
}

#[test]
fn stdlib_calls_through_the_interpreter() {
    let src = r#"
        event E { s: string, f: float, t: timestamp }
        projection p { state { lo: string = "", up: string = "", n: int = 0, r: int = 0, fl: int = 0, c: int = 0, ab: float = 0.0, mx: int = 0, mn: string = "",
                               y: int = 0, mo: string = "", h: int = 0, wd: int = 0, ts: string = "", parts: list<string>, pi: int = 0, sw: bool = false }
          on E {
            lo = lower(event.s); up = event.s.upper(); n = len(event.s)
            r = round(event.f); fl = floor(event.f); c = ceil(event.f); ab = abs(-event.f)
            mx = max(3, 9); mn = min("b", "a")
            y = year(event.t); mo = month(event.t); h = hour(event.t); wd = weekday(event.t)
            ts = to_string(event.t); parts = split(event.s, "-"); pi = parse_int("-42"); sw = starts_with(event.s, "Ab")
          } }"#;
    let out = docs(
        src,
        &[ev(
            "E",
            json!({"s": "Ab-Cd", "f": 2.5, "t": "2024-03-10T15:30:00Z"}),
        )],
    );
    assert_eq!(
        out,
        json!({"p": {"lo": "ab-cd", "up": "AB-CD", "n": 5, "r": 3, "fl": 2, "c": 3, "ab": 2.5, "mx": 9, "mn": "a",
                     "y": 2024, "mo": "2024-03", "h": 15, "wd": 7, "ts": "2024-03-10T15:30:00Z", "parts": ["Ab", "Cd"], "pi": -42, "sw": true}})
    );
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
fn import_rules_emit_local_events() {
    let src = r#"
        event Deposited { account: string, amount: int }
        projection balances { key account state { balance: int = 0, last_id: string = "" } on Deposited { balance += event.amount; last_id = meta.id } }
        import payments {
          event PaymentSettled { iban: string, cents: int, currency: string }
          on PaymentSettled where event.currency == "EUR" {
            let whole = event.cents / 100
            emit Deposited { account: event.iban, amount: whole }
            if whole > 100 { emit Deposited { account: "bonus", amount: 1 } }
          }
        }"#;
    let program = compile(src);
    let mut fold = Fold::new(&program);
    let peer = &program.imports[0];
    let apply = |fold: &mut Fold<'_>, data: Json, id: &str| {
        let row = decode_payload(&peer.events[0], &data).expect("payload");
        let meta = Meta {
            id: Arc::from(id),
            ..Meta::default()
        };
        fold.apply_import(0, 0, &row, meta)
            .expect("rules do not trap")
    };
    apply(
        &mut fold,
        json!({"iban": "a", "cents": 12345, "currency": "EUR"}),
        "p1",
    );
    apply(
        &mut fold,
        json!({"iban": "a", "cents": 500, "currency": "USD"}),
        "p2",
    );
    apply(
        &mut fold,
        json!({"iban": "a", "cents": 250, "currency": "EUR"}),
        "p3",
    );
    assert_eq!(
        documents_json(&program, &fold.projections),
        json!({"balances": {"a": {"balance": 125, "last_id": "payments/p3"}, "bonus": {"balance": 1, "last_id": "payments/p1/1"}}})
    );
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
fn a_duration_divided_by_a_duration_is_a_whole_count() {
    // Finding 18: `(meta.time - due) / 1d` was E0202, so "days late" could not be
    // computed. It is an int, truncated toward zero like int division.
    let src = r#"
        event Paid { account: string, due: timestamp, every: duration }
        projection late { key account
          state { days: int, hours: int, times: int, secs: int, ms: int, us: int, whole_days: int }
          on Paid {
            days = (meta.time - event.due) / 1d
            hours = (meta.time - event.due) / 1h
            times = (meta.time - event.due) / event.every
            secs = to_seconds(meta.time - event.due)
            ms = to_millis(1500us)
            us = to_micros(event.every)
            whole_days = to_days(meta.time - event.due) + to_hours(-90m) + to_minutes(90s)
          } }"#;
    let out = docs(
        src,
        &[
            at(
                "Paid",
                json!({"account": "a", "due": "2024-05-01T00:00:00Z", "every": "7h"}),
                "2024-05-04T23:00:00Z",
            ),
            at(
                "Paid",
                json!({"account": "b", "due": "2024-05-05T12:00:00Z", "every": "-5h"}),
                "2024-05-04T00:00:00Z",
            ),
        ],
    );
    assert_eq!(
        out,
        json!({"late": {
            // 3 days 23 hours late: 3 whole days, 95 hours, 13 times 7 hours.
            "a": {"days": 3, "hours": 95, "times": 13, "secs": 342_000, "ms": 1, "us": 25_200_000_000i64, "whole_days": 3 - 1 + 1},
            // 1 day 12 hours early: truncated toward zero, not floored.
            "b": {"days": -1, "hours": -36, "times": 7, "secs": -129_600, "ms": 1, "us": -18_000_000_000i64, "whole_days": -1 - 1 + 1},
        }})
    );
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
