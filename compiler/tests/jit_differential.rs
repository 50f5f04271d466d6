//! Differential tests of the Cranelift JIT against the reference interpreter: the three
//! examples, every trap and boundary, and thousands of random well-typed programs with
//! random events. Both engines run through `FoldEngine` and must agree on every
//! document and every fault (position, trap kind and span, handler).

mod common;
mod seeded;

use common::{
    DELETE_GUARDS_AND_KEYS, TRAP_AFTER_WRITES, compile, decoded, delete_guards_and_keys_events,
    meta, trap_after_writes_events,
};

use std::sync::Arc;

use datamesh_compiler::codegen::JitFold;
use datamesh_compiler::exec::codec::{decode_payload, documents_json};
use datamesh_compiler::exec::engine::FoldEngine;
use datamesh_compiler::exec::{Fault, Meta};
use datamesh_compiler::interp::Fold;
use datamesh_compiler::ir::Builtin;
use datamesh_compiler::ir::{ExprKind, Program};
use datamesh_stdlib::Value;
use datamesh_stdlib::time::parse_rfc3339;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

/// One input: a local event (type index, row, meta) or a peer event.
#[derive(Debug, Clone)]
enum Input {
    Local(usize, Vec<Value>, Meta),
    Import(usize, usize, Vec<Value>, Meta),
}

/// Feeds the inputs to an engine and returns every fault, tagged by origin.
fn feed(engine: &mut dyn FoldEngine, inputs: &[Input]) -> Vec<(Fault, bool)> {
    let mut faults = Vec::new();
    for input in inputs {
        match input {
            Input::Local(event, row, meta) => faults.extend(
                engine
                    .apply_local(*event, row, meta)
                    .into_iter()
                    .map(|f| (f, false)),
            ),
            Input::Import(import, event, row, meta) => {
                let meta = Meta {
                    position: engine.next_position(),
                    ..meta.clone()
                };
                match engine.apply_import(*import, *event, row, meta) {
                    Ok(f) => faults.extend(f.into_iter().map(|f| (f, false))),
                    Err(f) => faults.push((f, true)),
                }
            }
        }
    }
    faults
}

/// Runs both engines and asserts they agree; returns the interpreter's JSON output.
fn agree(program: &Program, inputs: &[Input]) -> (Json, Vec<(Fault, bool)>) {
    let mut interp = Fold::new(program);
    let expected_faults = feed(&mut interp, inputs);
    let mut jit = JitFold::new(program).expect("the program compiles");
    let faults = feed(&mut jit, inputs);
    let expected = FoldEngine::snapshot(&interp);
    let got = FoldEngine::snapshot(&jit);
    assert_eq!(got, expected, "documents differ");
    assert_eq!(faults, expected_faults, "faults differ");
    assert_eq!(jit.next_position(), interp.next_position());
    (documents_json(program, &got), faults)
}

#[test]
fn a_trap_after_writes_in_one_handler_restores_narrow_and_wide_documents() {
    // One handler per projection, so the single-handler path saves the inline words
    // before the body runs: `narrow` fits the fixed save buffer, `wide` (eleven words)
    // does not. The document was already changed by the first event, so an incomplete
    // rollback would show in the table (and in what the node would write).
    let program = compile(
        r#"
        event E { k: string, a: int, b: int }
        projection narrow { key k state { x: int = 0, y: int = 0, o: int? }
          on E { x += event.a; y += 1; o = event.a; x = x / event.b } }
        projection wide { key k
          state { f1: int = 0, f2: int = 0, f3: int = 0, f4: int = 0, f5: int = 0,
                  f6: int = 0, f7: int = 0, f8: int = 0, f9: int = 0, o: int? }
          on E { f1 += event.a; f5 += 1; f9 = event.a; o = event.b; f2 = f1 / event.b } }"#,
    );
    let inputs = [
        json!({"k": "a", "a": 6, "b": 3}),
        json!({"k": "a", "a": 5, "b": 0}),
        json!({"k": "a", "a": 1, "b": 1}),
    ];
    let (json, faults) = agree_on_events_e(&program, inputs);
    assert_eq!(
        faults
            .iter()
            .map(|(f, _)| (f.projection, f.position))
            .collect::<Vec<_>>(),
        vec![(0, 1), (1, 1)]
    );
    assert_eq!(json["narrow"]["a"], json!({"x": 2, "y": 1, "o": 6}));
    assert_eq!(json["wide"]["a"]["f1"], json!(6));
    assert_eq!(json["wide"]["a"]["f9"], json!(6));
    assert_eq!(json["wide"]["a"]["o"], json!(3));
}

#[test]
fn a_trap_after_collection_changes_undoes_each_of_them() {
    // One handler, so its collection changes are undone from the helpers' undo log: every
    // kind of change (each one effective on the second event), then a trap; the
    // document must be as the first event left it.
    let program = compile(
        r#"
        event E { k: string, x: string, y: string, n: int, r: int, d: int }
        projection p { key k
          state { s: set<string>, l: list<int>, m: map<string, int>, t: string = "",
                  cleared: list<int>, c: int = 0 }
          on E {
            s.insert(event.x); s.remove(event.y)
            l.push(event.n); l.remove(event.r)
            m[event.x] = event.n; m["fixed"] += 1; m.remove(event.y)
            t = event.x
            if event.d == 1 { cleared.push(5) } else { cleared.clear() }
            c += 1
            c = c / event.d
          } }"#,
    );
    let inputs = [
        json!({"k": "a", "x": "one", "y": "none", "n": 2, "r": 99, "d": 1}),
        json!({"k": "a", "x": "two", "y": "one", "n": 7, "r": 2, "d": 0}),
        json!({"k": "a", "x": "three", "y": "none", "n": 3, "r": 99, "d": 1}),
    ];
    let (json, faults) = agree_on_events_e(&program, inputs);
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].0.position, 1);
    assert_eq!(
        json["p"]["a"],
        json!({"s": ["one"], "l": [2], "m": {"fixed": 1, "one": 2}, "t": "one", "cleared": [5], "c": 1})
    );
}

#[test]
fn a_trap_in_a_later_handler_undoes_collection_changes_deletes_and_recreations() {
    // Several handlers for one event: the first changes A's collections, the next two
    // change B's, delete it and create it afresh, the last traps on A. Every document
    // must come back as the first event left it.
    let program = compile(
        r#"
        event E { a: string, b: string, x: string, d: int }
        projection p {
          state { s: set<string>, m: map<string, int>, n: int = 0 }
          on E key event.a { s.insert(event.x); m[event.x] = 1; n += 1 }
          on E key event.b { s.insert("gone"); m["k"] = 5; delete }
          on E key event.b { s.insert(event.x); n += 10 }
          on E key event.a { n = n / event.d }
        }"#,
    );
    let inputs = [
        json!({"a": "A", "b": "B", "x": "one", "d": 1}),
        json!({"a": "A", "b": "B", "x": "two", "d": 0}),
    ];
    let (json, faults) = agree_on_events_e(&program, inputs);
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].0.position, 1);
    assert_eq!(
        json["p"]["A"],
        json!({"s": ["one"], "m": {"one": 1}, "n": 1})
    );
    assert_eq!(json["p"]["B"], json!({"s": ["one"], "m": {}, "n": 10}));
}

/// [`agree`] over events of type `E` with these payloads.
fn agree_on_events_e(
    program: &Program,
    payloads: impl IntoIterator<Item = Json>,
) -> (Json, Vec<(Fault, bool)>) {
    let inputs: Vec<Input> = payloads
        .into_iter()
        .map(|data| local(program, "E", data))
        .collect();
    agree(program, &inputs)
}

fn local(program: &Program, ty: &str, data: Json) -> Input {
    let (id, row, meta) = decoded(program, ty, data);
    Input::Local(id, row, meta)
}

/// Reads an example's `events.jsonl` the way `dmc run` does.
fn example_inputs(program: &Program, text: &str) -> Vec<Input> {
    let mut inputs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let json: Json = serde_json::from_str(line).expect("a JSON line");
        let ty = json["type"].as_str().expect("a type");
        let text = |k: &str| json[k].as_str().unwrap_or("").to_owned();
        let time = match &json["time"] {
            Json::String(s) => parse_rfc3339(s).expect("time"),
            Json::Number(n) => n.as_i64().expect("int time"),
            _ => 0,
        };
        let meta = Meta {
            position: 0,
            time,
            stream: Arc::from(text("stream")),
            event_type: Arc::from(ty),
            id: Arc::from(text("id")),
        };
        let empty = json!({});
        let data = json.get("data").unwrap_or(&empty);
        match json.get("from").and_then(Json::as_str) {
            None => {
                let id = program.event_id(ty).expect("declared");
                let row = decode_payload(&program.events[id], data).expect("payload");
                inputs.push(Input::Local(id, row, meta));
            }
            Some(peer) => {
                let import = program
                    .imports
                    .iter()
                    .position(|i| i.peer == peer)
                    .expect("import");
                let block = &program.imports[import];
                let event = block.event_id(ty).expect("peer event");
                let row = decode_payload(&block.events[event], data).expect("payload");
                inputs.push(Input::Import(import, event, row, meta));
            }
        }
    }
    inputs
}

fn check_example(name: &str) {
    let dir = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(format!("{dir}/{name}.dmp")).expect("program");
    let events = std::fs::read_to_string(format!("{dir}/events.jsonl")).expect("events");
    let expected: Json = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/expected.json")).expect("expected"),
    )
    .expect("expected JSON");
    let program = compile(&src);
    let inputs = example_inputs(&program, &events);
    let (out, _) = agree(&program, &inputs);
    assert_eq!(
        out, expected,
        "JIT output of {name} differs from expected.json"
    );
}

#[test]
fn bank_example_matches_expected_json() {
    check_example("bank");
}

#[test]
fn shop_example_matches_expected_json() {
    check_example("shop");
}

#[test]
fn iot_example_matches_expected_json() {
    check_example("iot");
}

/// Runs one body over `E { a: int, b: int }` with both engines; returns the fault text.
fn trap_of(body: &str, a: i64, b: i64) -> String {
    let src = format!(
        "event E {{ a: int, b: int, f: float = 0.0, s: string = \"\" }}\n\
         projection p {{ state {{ n: int = 0, x: float = 0.0, t: string = \"\", d: duration = 0s, l: list<int>, m: map<string, int> }}\n\
         on E {{ {body} }} }}"
    );
    let program = compile(&src);
    let (_, faults) = agree(&program, &[local(&program, "E", json!({"a": a, "b": b}))]);
    assert_eq!(faults.len(), 1, "expected a trap for `{body}` a={a} b={b}");
    format!("{} {}", faults[0].0.trap.code(), faults[0].0.trap)
}

#[test]
fn every_trap_agrees_with_the_interpreter() {
    let min = i64::MIN;
    let max = i64::MAX;
    let cases: &[(&str, i64, i64, &str)] = &[
        (
            "n = event.a + event.b",
            max,
            1,
            "R0001 integer overflow in addition",
        ),
        (
            "n = event.a - event.b",
            min,
            1,
            "R0001 integer overflow in subtraction",
        ),
        (
            "n = event.a * event.b",
            max,
            2,
            "R0001 integer overflow in multiplication",
        ),
        (
            "n = event.a / event.b",
            min,
            -1,
            "R0001 integer overflow in division",
        ),
        (
            "n = event.a % event.b",
            min,
            -1,
            "R0001 integer overflow in remainder",
        ),
        ("n = -event.a", min, 0, "R0001 integer overflow in negation"),
        ("n = abs(event.a)", min, 0, "R0001 integer overflow in abs"),
        (
            "n = event.a; n += event.b",
            max,
            1,
            "R0001 integer overflow in addition",
        ),
        (
            "n = event.a; n -= event.b",
            min,
            1,
            "R0001 integer overflow in subtraction",
        ),
        (
            "n = event.a; n *= event.b",
            max,
            3,
            "R0001 integer overflow in multiplication",
        ),
        (
            "n = event.a; n /= event.b",
            min,
            -1,
            "R0001 integer overflow in division",
        ),
        ("m[\"k\"] = event.a; m[\"k\"] += event.b", max, 1, "R0001"),
        ("m[\"k\"] /= event.b", 0, 0, "R0002"),
        (
            "n = pow(event.a, event.b)",
            10,
            19,
            "R0001 integer overflow in power",
        ),
        ("n = event.a / event.b", 1, 0, "R0002 division by zero"),
        ("n = event.a % event.b", 1, 0, "R0002 division by zero"),
        ("n = 5; n /= event.b", 1, 0, "R0002 division by zero"),
        // A duration divided by a zero duration traps as int division does.
        (
            "n = seconds(event.a) / seconds(event.b)",
            1,
            0,
            "R0002 division by zero",
        ),
        (
            "n = 1us * event.a / (0s - 1us)",
            min,
            0,
            "R0001 integer overflow in division",
        ),
        ("n = 5; n %= event.b", 1, 0, "R0002 division by zero"),
        (
            "x = to_float(event.a) / to_float(event.b)",
            1,
            0,
            "R0002 division by zero",
        ),
        (
            "x = to_float(event.a) / to_float(event.b)",
            0,
            0,
            "R0002 division by zero",
        ),
        ("x = to_float(event.a) % to_float(event.b)", 1, 0, "R0002"),
        (
            "d = seconds(event.a)",
            max,
            0,
            "R0001 integer overflow in duration",
        ),
        (
            "d = seconds(event.a); d = d + d",
            max / 1_000_000,
            0,
            "R0001",
        ),
        (
            "d = seconds(event.a); d = d * event.b",
            max / 1_000_000,
            2,
            "R0001 integer overflow in duration arithmetic",
        ),
        ("l.push(1); n = get(l, event.a)", 1, 0, "R0004"),
        ("l.push(1); n = l[event.a]", -1, 0, "R0004"),
        ("n = l[0]", 0, 0, "R0004"),
        ("t = substring(\"abc\", event.a, event.b)", 2, 5, "R0004"),
        ("n = parse_int(\"12x\")", 0, 0, "R0003"),
        ("n = parse_int(\"\")", 0, 0, "R0003"),
        ("n = to_int(to_float(event.a) * 1e10)", max, 0, "R0003"),
        ("x = sqrt(to_float(event.a))", -1, 0, "R0004"),
        ("x = to_float(event.a) * 1e300 * 1e300", 1, 0, "R0005"),
        ("x = 1e300; x *= 1e300", 1, 0, "R0005"),
        ("x = -1e308 - 1e308", 1, 0, "R0005"),
        (
            "n = 1; if event.a > 0 { n = event.a + event.a }",
            max,
            0,
            "R0001",
        ),
        ("let y = event.a * event.b; n = y", max, max, "R0001"),
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
fn boundaries_that_do_not_trap_agree() {
    let src = r#"
        event E { a: int, s: string, o: int?, os: string?, f: float? }
        projection p { key s state { n: int = 0, m: int = 0, q: int = 7, t: string = "", l: list<int>, st: set<string>, mp: map<string, int>, c: int = 0, fo: float = 0.0, b: bool = false }
          on E {
            n = event.a / -1
            m = event.a % -1
            q = event.o ?? q
            t = event.os ?? "none"
            t = t + event.s
            c = len(l) + len(st) + len(mp) + len(event.s)
            fo = event.f ?? -0.0
            b = event.o == none and event.os != none
            l.push(event.a)
            st.insert(event.s)
            mp[event.s] += 1
          } }"#;
    let program = compile(src);
    let inputs = vec![
        local(
            &program,
            "E",
            json!({"a": i64::MAX, "s": "", "o": null, "os": null, "f": null}),
        ),
        local(
            &program,
            "E",
            json!({"a": i64::MIN + 1, "s": "", "o": 3, "os": "", "f": 0.5}),
        ),
        local(
            &program,
            "E",
            json!({"a": 0, "s": "x", "o": i64::MIN, "os": "y", "f": -0.0}),
        ),
    ];
    agree(&program, &inputs);
}

#[test]
fn duration_division_and_conversions_agree() {
    // Finding 18: duration / duration is an int (truncated toward zero), and a duration
    // converts to whole days, hours, minutes, seconds, milliseconds and microseconds.
    let src = r#"
        event E { k: string, due: timestamp, every: duration }
        projection p { key k
          state { days: int, times: int, n: map<string, int>, units: list<int> }
          on E {
            days = (meta.time - event.due) / 1d
            times = (meta.time - event.due) / event.every
            n["h"] += (meta.time - event.due) / 1h
            units.push(to_days(event.every))
            units.push(to_hours(event.every))
            units.push(to_minutes(event.every))
            units.push(to_seconds(event.every))
            units.push(to_millis(event.every))
            units.push(to_micros(event.every))
          } }"#;
    let program = compile(src);
    let mut inputs = Vec::new();
    for (due, every) in [
        ("2024-04-27T10:00:01Z", "1d1h1m1s1ms1us"),
        ("2024-05-03T09:59:59Z", "-3h"),
        ("2024-05-01T10:00:00Z", "1us"),
        ("1970-01-01T00:00:00Z", "-1us"),
    ] {
        inputs.push(local(
            &program,
            "E",
            json!({"k": due, "due": due, "every": every}),
        ));
    }
    let (json, faults) = agree(&program, &inputs);
    assert!(faults.is_empty(), "{faults:?}");
    assert_eq!(json["p"]["2024-04-27T10:00:01Z"]["days"], json!(3));
    assert_eq!(json["p"]["2024-05-03T09:59:59Z"]["days"], json!(-1));
    assert_eq!(
        json["p"]["2024-04-27T10:00:01Z"]["units"],
        json!([1, 25, 1501, 90061, 90_061_001, 90_061_001_001i64])
    );
}

#[test]
fn min_divided_by_minus_one_traps_and_rolls_back_every_handler() {
    let program = compile(TRAP_AFTER_WRITES);
    let inputs: Vec<Input> = trap_after_writes_events()
        .into_iter()
        .map(|(ty, data)| local(&program, ty, data))
        .collect();
    let (_, faults) = agree(&program, &inputs);
    assert_eq!(faults.len(), 1);
}

#[test]
fn delete_guards_and_per_handler_keys_agree() {
    let program = compile(DELETE_GUARDS_AND_KEYS);
    let inputs: Vec<Input> = delete_guards_and_keys_events()
        .into_iter()
        .map(|(ty, data)| local(&program, ty, data))
        .collect();
    agree(&program, &inputs);
}

#[test]
fn import_rules_emit_and_trap_like_the_interpreter() {
    let src = r#"
        event Deposited { account: string, amount: int }
        projection b { key account state { n: int = 0 } on Deposited { n += event.amount } }
        import peer {
          event Paid { iban: string, cents: int, currency: string }
          on Paid where event.currency == "EUR" {
            emit Deposited { account: event.iban, amount: event.cents / 100 }
            emit Deposited { account: "fees", amount: 1 }
          }
          on Paid { emit Deposited { account: event.iban, amount: 100 / event.cents } }
        }"#;
    let program = compile(src);
    let row = |iban: &str, cents: i64, currency: &str| {
        decode_payload(
            &program.imports[0].events[0],
            &json!({"iban": iban, "cents": cents, "currency": currency}),
        )
        .expect("payload")
    };
    let inputs = vec![
        Input::Import(0, 0, row("x", 250, "EUR"), meta("2024-05-01T10:00:00Z")),
        Input::Import(0, 0, row("y", 0, "EUR"), meta("2024-05-01T10:00:00Z")),
        Input::Import(0, 0, row("z", 50, "USD"), Meta::default()),
    ];
    let (_, faults) = agree(&program, &inputs);
    assert!(faults.iter().any(|(_, import)| *import));
}

#[test]
fn trap_spans_point_at_the_failing_expression() {
    let src = "event E { n: int }\nprojection p { state { v: int = 0 } on E { v = 10 / event.n } }";
    let program = compile(src);
    let (_, faults) = agree(&program, &[local(&program, "E", json!({"n": 0}))]);
    let span = faults[0].0.trap.span;
    assert_eq!(&src[span.start as usize..span.end as usize], "10 / event.n");
}

#[test]
fn compiled_code_is_freed_and_recompiled_many_times() {
    let src = "event E { n: int } projection p { state { v: int = 0 } on E { v += event.n } }";
    let program = compile(src);
    for _ in 0..50 {
        let mut jit = JitFold::new(&program).expect("compiles");
        jit.apply_local(0, &[Value::Int(1)], &Meta::default());
    }
}

/// Random well-typed programs and events, built from a seed by a small PRNG so every
/// case is reproducible from the seed proptest reports.
mod generate {
    use crate::seeded::Rng;
    use proptest::prelude::*;
    use serde_json::{Value as Json, json};

    /// A generated program with its events (type, payload, time).
    #[derive(Debug, Clone)]
    pub struct Case {
        pub source: String,
        pub events: Vec<(String, Json, i64)>,
    }

    pub fn case() -> impl Strategy<Value = Case> {
        any::<u64>().prop_map(build)
    }

    const INTS: &[i64] = &[
        0,
        1,
        -1,
        2,
        3,
        7,
        -5,
        100,
        i64::MAX,
        i64::MIN,
        i64::MAX - 1,
        i64::MIN + 1,
        4_611_686_018_427_387_904,
    ];

    fn int_value(r: &mut Rng) -> i64 {
        if r.percent(60) {
            INTS[r.below(INTS.len())]
        } else {
            (r.next() % 2001) as i64 - 1000
        }
    }

    fn float_value(r: &mut Rng) -> f64 {
        let pool = [0.0, -0.0, 1.5, -2.25, 1e308, -1e308, 3.0, 0.1];
        pool[r.below(pool.len())]
    }

    /// What the handler being generated can see.
    struct Scope {
        event: &'static str,
        locals: Vec<String>,
        next_local: usize,
        in_key: bool,
    }

    fn int_expr(r: &mut Rng, s: &Scope, depth: u32) -> String {
        let leaf = depth == 0 || r.percent(35);
        if leaf {
            let mut options: Vec<String> = vec![
                int_lit(r),
                "event.i".into(),
                if s.event == "A" {
                    "event.j".into()
                } else {
                    "event.n".into()
                },
            ];
            if !s.in_key {
                options.push("x".into());
                options.push("y".into());
                options.extend(s.locals.iter().cloned());
            }
            if s.event == "A" {
                options.push("meta.position".into());
            }
            return options[r.below(options.len())].clone();
        }
        let d = depth - 1;
        match r.below(if s.in_key { 8 } else { 14 }) {
            0..=2 => {
                let op = r.pick(&["+", "-", "*", "/", "%"]);
                format!("({} {op} {})", int_expr(r, s, d), int_expr(r, s, d))
            }
            3 => format!("(-{})", int_expr(r, s, d)),
            4 => format!(
                "(if {} {{ {} }} else {{ {} }})",
                bool_expr(r, s, d),
                int_expr(r, s, d),
                int_expr(r, s, d)
            ),
            5 => format!(
                "{}({}, {})",
                r.pick(&["max", "min"]),
                int_expr(r, s, d),
                int_expr(r, s, d)
            ),
            6 => format!("abs({})", int_expr(r, s, d)),
            7 => {
                if s.event == "A" {
                    format!("(event.o ?? {})", int_expr(r, s, d))
                } else {
                    format!("len({})", str_expr(r, s, d))
                }
            }
            8 => format!("(oi ?? {})", int_expr(r, s, d)),
            9 => format!("(m[{}] ?? {})", str_expr(r, s, d), int_expr(r, s, d)),
            10 => format!("len({})", r.pick(&["l", "st", "m", "t"])),
            // Durations divided by durations, and converted to whole units.
            11 => format!(
                "({}({}) / {}({}))",
                r.pick(&["days", "seconds", "millis"]),
                int_expr(r, s, d),
                r.pick(&["days", "seconds", "millis"]),
                int_expr(r, s, d)
            ),
            12 => format!(
                "{}(millis({}))",
                r.pick(&[
                    "to_days",
                    "to_hours",
                    "to_minutes",
                    "to_seconds",
                    "to_millis",
                    "to_micros"
                ]),
                int_expr(r, s, d)
            ),
            _ => format!(
                "{}({})",
                r.pick(&["round", "floor", "ceil"]),
                float_expr(r, s, d)
            ),
        }
    }

    fn int_lit(r: &mut Rng) -> String {
        let v = int_value(r);
        if v == i64::MIN {
            "(-9223372036854775807 - 1)".into()
        } else if v < 0 {
            format!("({v})")
        } else {
            v.to_string()
        }
    }

    fn float_lit(r: &mut Rng) -> String {
        let v = float_value(r);
        if v == 0.0 {
            return if v.is_sign_negative() {
                "(-0.0)".into()
            } else {
                "0.0".into()
            };
        }
        let text = if v.abs() >= 1e100 {
            format!("{:e}", v.abs())
        } else {
            format!("{:?}", v.abs())
        };
        if v < 0.0 { format!("(-{text})") } else { text }
    }

    fn float_expr(r: &mut Rng, s: &Scope, depth: u32) -> String {
        if depth == 0 || r.percent(40) {
            let mut options = vec![float_lit(r)];
            if !s.in_key {
                options.push("z".into());
            }
            if s.event == "A" {
                options.push("event.f".into());
            }
            return options[r.below(options.len())].clone();
        }
        let d = depth - 1;
        match r.below(5) {
            0 | 1 => {
                let op = r.pick(&["+", "-", "*", "/", "%"]);
                format!("({} {op} {})", float_expr(r, s, d), float_expr(r, s, d))
            }
            2 => format!("to_float({})", int_expr(r, s, d)),
            3 => format!("(-{})", float_expr(r, s, d)),
            _ => format!(
                "{}({}, {})",
                r.pick(&["max", "min"]),
                float_expr(r, s, d),
                float_expr(r, s, d)
            ),
        }
    }

    fn str_expr(r: &mut Rng, s: &Scope, depth: u32) -> String {
        if depth == 0 || r.percent(40) {
            let mut options: Vec<String> = vec![
                "\"\"".into(),
                "\"a\"".into(),
                "\"bc\"".into(),
                "event.k".into(),
            ];
            if !s.in_key {
                options.push("t".into());
            }
            if s.event == "A" {
                options.push("event.s".into());
                options.push("(event.os ?? \"-\")".into());
            }
            return options[r.below(options.len())].clone();
        }
        let d = depth - 1;
        match r.below(5) {
            0 => format!("({} + {})", str_expr(r, s, d), str_expr(r, s, d)),
            1 => format!(
                "{}({})",
                r.pick(&["lower", "upper", "trim"]),
                str_expr(r, s, d)
            ),
            2 => format!("to_string({})", int_expr(r, s, d)),
            3 => format!(
                "substring({}, {}, {})",
                str_expr(r, s, d),
                r.below(3),
                r.below(3)
            ),
            _ => format!(
                "(if {} {{ {} }} else {{ {} }})",
                bool_expr(r, s, d),
                str_expr(r, s, d),
                str_expr(r, s, d)
            ),
        }
    }

    fn bool_expr(r: &mut Rng, s: &Scope, depth: u32) -> String {
        if depth == 0 || r.percent(25) {
            let mut options = vec!["true".to_string(), "false".to_string()];
            if !s.in_key {
                options.push("w".into());
            }
            if s.event == "A" {
                options.push("event.b".into());
                options.push("(event.o == none)".into());
            }
            return options[r.below(options.len())].clone();
        }
        let d = depth - 1;
        let cmp = r.pick(&["==", "!=", "<", "<=", ">", ">="]);
        match r.below(if s.in_key { 6 } else { 9 }) {
            0 | 1 => format!("({} {cmp} {})", int_expr(r, s, d), int_expr(r, s, d)),
            2 => format!("({} {cmp} {})", float_expr(r, s, d), float_expr(r, s, d)),
            3 => format!("({} {cmp} {})", str_expr(r, s, d), str_expr(r, s, d)),
            4 => format!(
                "({} {} {})",
                bool_expr(r, s, d),
                r.pick(&["and", "or"]),
                bool_expr(r, s, d)
            ),
            5 => format!("(not {})", bool_expr(r, s, d)),
            6 => format!("contains(st, {})", str_expr(r, s, d)),
            7 => "is_some(oi)".into(),
            _ => format!("(oi == {})", int_expr(r, s, d)),
        }
    }

    fn stmts(r: &mut Rng, s: &mut Scope, depth: u32, count: usize, out: &mut String) {
        for i in 0..count {
            if i + 1 == count && r.percent(6) {
                out.push_str("delete\n");
                return;
            }
            stmt(r, s, depth, out);
        }
    }

    fn stmt(r: &mut Rng, s: &mut Scope, depth: u32, out: &mut String) {
        let e = 2;
        let line = match r.below(17) {
            0 | 1 => format!(
                "x {}= {}",
                r.pick(&["+", "-", "*", "/", "%", ""]),
                int_expr(r, s, e)
            ),
            2 => format!("y = {}", int_expr(r, s, e)),
            3 => format!(
                "z {}= {}",
                r.pick(&["+", "-", "*", "/", ""]),
                float_expr(r, s, e)
            ),
            4 => format!("w = {}", bool_expr(r, s, e)),
            5 => format!("t {}= {}", r.pick(&["+", ""]), str_expr(r, s, e)),
            6 => {
                if r.percent(30) {
                    "oi = none".into()
                } else {
                    format!("oi = {}", int_expr(r, s, e))
                }
            }
            7 => format!("l.push({})", int_expr(r, s, e)),
            8 => format!(
                "st.{}({})",
                r.pick(&["insert", "remove"]),
                str_expr(r, s, e)
            ),
            9 => format!(
                "m[{}] {}= {}",
                str_expr(r, s, 1),
                r.pick(&["+", "-", "*", "/", "%", ""]),
                int_expr(r, s, e)
            ),
            10 => format!("{}.clear()", r.pick(&["l", "st", "m"])),
            11 => format!("m.remove({})", str_expr(r, s, 1)),
            12 | 13 => {
                let name = format!("v{}", s.next_local);
                s.next_local += 1;
                let line = format!("let {name} = {}", int_expr(r, s, e));
                s.locals.push(name);
                line
            }
            14 if depth > 0 => {
                let cond = bool_expr(r, s, 2);
                let mut body = String::new();
                let saved = s.locals.len();
                let n = 1 + r.below(3);
                stmts(r, s, depth - 1, n, &mut body);
                s.locals.truncate(saved);
                let mut other = String::new();
                if r.percent(60) {
                    let n = 1 + r.below(2);
                    stmts(r, s, depth - 1, n, &mut other);
                    s.locals.truncate(saved);
                }
                format!("if {cond} {{\n{body}}} else {{\n{other}}}")
            }
            15 => format!("x = sum(l) + {}", int_expr(r, s, 1)),
            _ => format!("x = (first(l) ?? {}) + (last(l) ?? 0)", int_expr(r, s, 1)),
        };
        out.push_str(&line);
        out.push('\n');
    }

    const STATE: &str = "state { x: int = 0, y: int = 5, z: float = 0.0, w: bool = false, t: string = \"\", oi: int?, l: list<int>, st: set<string>, m: map<string, int> }";

    fn projection(r: &mut Rng, index: usize, out: &mut String) {
        // 0: single document, 1: `key k`, 2: composite key, 3: per-handler keys.
        let keying = r.below(4);
        out.push_str(&format!("projection p{index} {{\n"));
        match keying {
            1 => out.push_str("key k\n"),
            2 => out.push_str("key (event.k, event.i % 3)\n"),
            _ => {}
        }
        out.push_str(STATE);
        out.push('\n');
        let handlers = 1 + r.below(4);
        for _ in 0..handlers {
            let event = if r.percent(65) { "A" } else { "B" };
            let mut scope = Scope {
                event,
                locals: Vec::new(),
                next_local: 0,
                in_key: false,
            };
            out.push_str(&format!("on {event}"));
            if keying == 3 {
                scope.in_key = true;
                let key = str_expr(r, &scope, 1);
                scope.in_key = false;
                out.push_str(&format!(" key {key}"));
            }
            if r.percent(30) {
                out.push_str(&format!(" where {}", bool_expr(r, &scope, 2)));
            }
            out.push_str(" {\n");
            let n = 1 + r.below(5);
            stmts(r, &mut scope, 2, n, out);
            out.push_str("}\n");
        }
        out.push_str("}\n");
    }

    fn event(r: &mut Rng) -> (String, Json, i64) {
        let k = format!("k{}", r.below(3));
        let time = (r.next() % 4_000_000_000_000) as i64;
        if r.percent(60) {
            let strings = ["", "a", "bc", "Ab-c"];
            let o = if r.percent(40) {
                Json::Null
            } else {
                json!(int_value(r))
            };
            let os = if r.percent(40) {
                Json::Null
            } else {
                json!(strings[r.below(strings.len())])
            };
            let data = json!({
                "k": k, "i": int_value(r), "j": int_value(r), "f": float_value(r),
                "b": r.percent(50), "s": strings[r.below(strings.len())], "o": o, "os": os,
            });
            ("A".into(), data, time)
        } else {
            (
                "B".into(),
                json!({"k": k, "i": int_value(r), "n": int_value(r)}),
                time,
            )
        }
    }

    fn build(seed: u64) -> Case {
        let mut r = Rng::new(seed | 1);
        let mut source = String::from(
            "event A { k: string, i: int, j: int, f: float, b: bool, s: string, o: int?, os: string? }\n\
             event B { k: string, i: int, n: int }\n",
        );
        let projections = 1 + r.below(3);
        for p in 0..projections {
            projection(&mut r, p, &mut source);
        }
        let n = 1 + r.below(12);
        let events = (0..n).map(|_| event(&mut r)).collect();
        Case { source, events }
    }
}
fn cases() -> u32 {
    std::env::var("JIT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 2000,
        .. ProptestConfig::default()
    })]

    #[test]
    fn random_programs_agree(case in generate::case()) {
        let program = compile(&case.source);
        let inputs: Vec<Input> = case
            .events
            .iter()
            .map(|(ty, data, time)| {
                let id = program.event_id(ty).expect("declared");
                let row = decode_payload(&program.events[id], data).expect("payload");
                Input::Local(id, row, Meta { time: *time, stream: Arc::from("s"), id: Arc::from(""), ..Meta::default() })
            })
            .collect();
        agree(&program, &inputs);
    }
}

#[test]
fn a_string_doubled_on_every_event_faults_at_the_limit_alike() {
    // Issue 10, finding 7: `s = s + s` per event used to grow until allocation failed.
    // Now both engines fault the projection with R0007 at the event that would pass
    // 1 MiB (event 20: 2^20 bytes is the limit itself), and the other projection
    // goes on.
    let program = compile(
        "event E { a: int }
         projection grows { state { s: string = \"x\" } on E { s = s + s } }
         projection counts { state { n: int = 0 } on E { n += 1 } }",
    );
    let (json, faults) = agree_on_events_e(&program, (0..25).map(|a| json!({"a": a})));
    assert_eq!(faults.len(), 1, "{faults:?}");
    let (fault, _) = &faults[0];
    assert_eq!((fault.projection, fault.position), (0, 20));
    assert_eq!(
        format!("{} {}", fault.trap.code(), fault.trap),
        "R0007 limit exceeded: a string of 2097152 bytes is longer than the limit of 1048576 bytes"
    );
    assert_eq!(json["counts"], json!({"n": 25}));
}

/// A call of `f` on the fields of [`every_builtin_is_reachable_from_both_engines`]'s
/// event and state. The match is exhaustive, so a new builtin cannot be added without
/// a sample here.
fn sample(f: Builtin) -> &'static str {
    use Builtin as B;
    match f {
        B::Lower => "lower(event.s)",
        B::Upper => "upper(event.s)",
        B::Trim => "trim(event.s)",
        B::Len => "len(event.s)",
        B::Contains => "contains(event.s, \"ca\")",
        B::StartsWith => "starts_with(event.s, \"ab\")",
        B::EndsWith => "ends_with(event.s, \"b\")",
        B::Concat => "concat(event.s, \"-\", event.s)",
        B::Substring => "substring(event.s, 1, 2)",
        B::Replace => "replace(event.s, \"a\", \"x\")",
        B::Split => "split(event.s, \"a\")",
        B::ToString => "to_string(event.i)",
        B::ParseInt => "parse_int(event.num)",
        B::ParseFloat => "parse_float(event.fl)",
        B::Abs => "abs(event.i)",
        B::Min => "min(event.i, 3)",
        B::Max => "max(event.f, 1.5)",
        B::Round => "round(event.f)",
        B::Floor => "floor(event.f)",
        B::Ceil => "ceil(event.f)",
        B::ToInt => "to_int(event.f)",
        B::ToFloat => "to_float(event.i)",
        B::Pow => "pow(event.i, 3)",
        B::Sqrt => "sqrt(event.f)",
        B::Day => "day(event.t)",
        B::Month => "month(event.t)",
        B::Year => "year(event.t)",
        B::Hour => "hour(event.t)",
        B::Minute => "minute(event.t)",
        B::DayOfMonth => "day_of_month(event.t)",
        B::Weekday => "weekday(event.t)",
        B::StartOfDay => "start_of_day(event.t)",
        B::Days => "days(event.i)",
        B::Hours => "hours(event.i)",
        B::Minutes => "minutes(event.i)",
        B::Seconds => "seconds(event.i)",
        B::Millis => "millis(event.i)",
        B::ToDays => "to_days(event.d)",
        B::ToHours => "to_hours(event.d)",
        B::ToMinutes => "to_minutes(event.d)",
        B::ToSeconds => "to_seconds(event.d)",
        B::ToMillis => "to_millis(event.d)",
        B::ToMicros => "to_micros(event.d)",
        B::ParseTime => "parse_time(event.ts)",
        B::ParseDuration => "parse_duration(event.dur)",
        B::First => "first(l)",
        B::Last => "last(l)",
        B::Get => "get(l, 0)",
        B::Sum => "sum(l)",
        B::Keys => "keys(mp)",
        B::Values => "values(mp)",
        B::IsSome => "is_some(event.o)",
    }
}

#[test]
fn every_builtin_is_reachable_from_both_engines() {
    let calls: Vec<String> = Builtin::ALL
        .iter()
        .map(|f| format!("out.push(to_string({}))", sample(*f)))
        .collect();
    let src = format!(
        r#"
        event E {{ s: string, i: int, f: float, t: timestamp, d: duration, o: int?,
                   num: string, fl: string, ts: string, dur: string }}
        projection p {{ key s state {{ out: list<string>, l: list<int>, mp: map<string, int> }}
          on E {{
            l.push(event.i)
            mp[event.s] += event.i
            {}
          }} }}"#,
        calls.join("\n            ")
    );
    let program = compile(&src);
    let mut called = std::collections::BTreeSet::new();
    for stmt in &program.projections[0].handlers[0].body {
        stmt.walk_exprs(&mut |e| {
            if let ExprKind::Call(f, _) = &e.kind {
                called.insert(*f);
            }
        });
    }
    let all: std::collections::BTreeSet<Builtin> = Builtin::ALL.iter().copied().collect();
    assert_eq!(called, all, "every builtin is called");
    let (json, faults) = agree_on_events_e(
        &program,
        [
            json!({"s": "abcab", "i": -3, "f": 2.25, "t": "2024-05-01T10:30:00Z",
                   "d": "1d2h", "o": 5, "num": "42", "fl": "2.5",
                   "ts": "2024-05-01T10:00:00Z", "dur": "1h30m"}),
            json!({"s": "abcab", "i": 7, "f": 0.5, "t": "1969-12-31T23:59:59Z",
                   "d": "-90s", "o": null, "num": "-7", "fl": "1e3",
                   "ts": "2000-02-29T00:00:00Z", "dur": "-2ms"}),
        ],
    );
    assert!(faults.is_empty(), "{faults:?}");
    let out = json["p"]["abcab"]["out"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(out.len(), 2 * Builtin::ALL.len(), "{out:?}");
    assert_eq!(out[0], json!("abcab"));
    assert_eq!(out[Builtin::ALL.len() - 1], json!("true"));
}
