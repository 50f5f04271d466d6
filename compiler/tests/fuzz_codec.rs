//! Seeded random testing of event payload decoding and validation (`codec`): the typed
//! decoder the node's engine runs (`decode_payload_into`, from the stored bytes), the
//! append validator (`decode_payload_text` with nothing built), the tree decoder
//! (`decode_payload`, what `dmc run` uses) and the JSON check for events of undeclared
//! types (`check_json`).
//!
//! Inputs: valid payloads generated for a program declaring every kind of field (ints,
//! floats, bools, strings, timestamps, durations, optionals, lists, sets, maps, fields
//! with defaults), then mutated (byte flips, inserted hostile tokens such as `"\ud800"`,
//! `1e400`, 400 digits, control characters, brackets; deletions, duplications,
//! truncations), and hostile JSON generated outright (nesting up to 100,000 deep, long
//! numbers and strings, many keys, surrogate escapes, duplicate keys). Properties:
//!
//! - nothing panics, every case finishes within a time limit, and the memory a case
//!   allocates stays within a bound proportional to its input (a counting allocator);
//! - the append validator and the engine's decoder agree on every payload, and the
//!   engine's row (full, and with only some fields read) equals the tree decoder's;
//! - a payload some declaration decodes passes `check_json`; and a payload `check_json`
//!   accepts decodes against a declaration inferred from its own shape, so a type
//!   declared after its events were appended can only refuse them for their fields,
//!   never for their JSON;
//! - error messages stay short whatever the input.
//!
//! The generator is a hand-written xorshift seeded from `DATAMESH_FUZZ_SEED`, so case
//! `n` of a seed is always the same input; a failure names the seed and case.
//!
//! **Budget.** By default it runs up to 200,000 cases but stops after 10 seconds, and
//! prints how many ran. A longer run is one command:
//!
//! ```sh
//! DATAMESH_FUZZ_CASES=5000000 DATAMESH_FUZZ_SECONDS=0 \
//!     cargo test -p datamesh-compiler --test fuzz_codec --release -- --nocapture
//! ```
//!
//! (`DATAMESH_FUZZ_SECONDS=0` lifts the time limit; `DATAMESH_FUZZ_SEED=<n>` picks
//! another sequence.)

mod seeded;

use seeded::{Rng, env_u64};

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datamesh_compiler::ast::Span;
use datamesh_compiler::check::check_source;
use datamesh_compiler::exec::codec::{
    MAX_MESSAGE, check_json, decode_payload, decode_payload_into, decode_payload_text,
};
use datamesh_compiler::ir::{EventType, Field, Type};
use datamesh_stdlib::Value;
use serde_json::Value as Json;

/// Counts the bytes allocated and their high-water mark, to bound a case's memory.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; the counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let grow = new_size - layout.size();
            let now = CURRENT.fetch_add(grow, Ordering::Relaxed) + grow;
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The longest one case may take (debug build, a busy machine).
const CASE_LIMIT: Duration = Duration::from_secs(5);

/// Memory a case may allocate beyond its input: this many bytes per input byte (the
/// tree decoder builds a `serde_json::Value` node of up to ~80 bytes for `{}`), plus a
/// constant.
const BYTES_PER_INPUT_BYTE: usize = 128;
const MEMORY_SLACK: usize = 1 << 20;

const PROGRAM: &str = r#"
event Everything {
  i: int,
  f: float,
  b: bool,
  s: string,
  t: timestamp,
  d: duration,
  oi: int?,
  os: string?,
  li: list<int>,
  ss: set<string>,
  mi: map<string, int>,
  mk: map<int, float>,
  di: int = 7,
  ds: string = "x"
}
event Small { account: string, amount: int }
event Empty {}
"#;

const STRINGS: &[&str] = &[
    "",
    "a1",
    "héllo",
    "\\u00e9",
    "\\ud83d\\ude00",
    "tab\\tnew\\nline",
    "quote\\\"",
    "back\\\\slash",
    "2024-05-01T09:00:00Z",
    "1h30m",
    "𝄞",
];

fn scalar_text(rng: &mut Rng, ty: &Type) -> String {
    match ty {
        Type::Int => rng
            .pick(&[
                "0",
                "-1",
                "42",
                "9223372036854775807",
                "-9223372036854775808",
            ])
            .to_string(),
        Type::Float => rng
            .pick(&[
                "0.5",
                "-1e10",
                "3",
                "1.7976931348623157e308",
                "5e-324",
                "-0.0",
            ])
            .to_string(),
        Type::Bool => rng.pick(&["true", "false"]).to_string(),
        Type::String => format!("\"{}\"", rng.pick(STRINGS)),
        Type::Timestamp => rng
            .pick(&[
                "\"2024-05-01T09:00:00Z\"",
                "\"1970-01-01T00:00:00.000001+02:00\"",
                "1714554000000000",
                "0",
            ])
            .to_string(),
        Type::Duration => rng
            .pick(&["\"1h30m\"", "\"0s\"", "\"2d\"", "90000000", "\"1us\""])
            .to_string(),
        Type::Optional(inner) => {
            if rng.one_in(2) {
                "null".to_owned()
            } else {
                value_text(rng, inner)
            }
        }
        other => value_text(rng, other),
    }
}

fn map_key(rng: &mut Rng, ty: &Type) -> String {
    match ty {
        Type::Int => rng.pick(&["0", "-5", "12"]).to_string(),
        Type::Bool => rng.pick(&["true", "false"]).to_string(),
        _ => rng.pick(STRINGS).to_string(),
    }
}

/// A JSON value of type `ty`.
fn value_text(rng: &mut Rng, ty: &Type) -> String {
    match ty {
        Type::List(elem) | Type::Set(elem) => {
            let n = rng.below(4);
            let items: Vec<String> = (0..n).map(|_| scalar_text(rng, elem)).collect();
            format!("[{}]", items.join(","))
        }
        Type::Map(k, v) => {
            let n = rng.below(4);
            let items: Vec<String> = (0..n)
                .map(|_| format!("\"{}\":{}", map_key(rng, k), scalar_text(rng, v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        other => scalar_text(rng, other),
    }
}

/// A payload that decodes as `event` (fields in a random order, defaulted ones
/// sometimes left out).
fn valid_payload(rng: &mut Rng, event: &EventType) -> String {
    let mut fields: Vec<&Field> = event
        .fields
        .iter()
        .filter(|f| f.default.is_none() || rng.one_in(2))
        .collect();
    if rng.one_in(2) {
        for i in (1..fields.len()).rev() {
            fields.swap(i, rng.below(i + 1));
        }
    }
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("\"{}\": {}", f.name, value_text(rng, &f.ty)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

const TOKENS: &[&str] = &[
    "\"\\ud800\"",
    "\\ud800",
    "\\udc00",
    "\"\\ud83d\\ude00\"",
    "1e400",
    "-1e400",
    "1e-400",
    "18446744073709551616",
    "9223372036854775808",
    "1.0",
    "1e3",
    "NaN",
    "Infinity",
    "null",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "\\",
    "\u{1}",
    "\u{0}",
    "\u{7f}",
    "\u{feff}",
    "é",
    "true",
    "01",
    "-",
    "\"s\":",
    "\"i\": 1,",
];

/// The same text with a few random changes, as bytes (they may not be UTF-8).
fn mutate(rng: &mut Rng, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(8) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                let token = rng.pick(TOKENS).as_bytes().to_vec();
                bytes.splice(at..at, token);
            }
            3 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(bytes.len());
                let start = at.min(end);
                bytes.drain(start..end);
            }
            4 => {
                let digits = if rng.one_in(2) { 400 } else { 20 };
                let number: Vec<u8> = std::iter::repeat_n(b'9', digits).collect();
                bytes.splice(at..at, number);
            }
            5 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                let start = at.min(end);
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            6 => bytes.truncate(at),
            _ => {
                let depth = rng.below(80);
                let open = if rng.one_in(2) { b'[' } else { b'{' };
                let run: Vec<u8> = std::iter::repeat_n(open, depth).collect();
                bytes.splice(at..at, run);
            }
        }
    }
    bytes
}

/// JSON made to hurt: deep, long, wide, or full of escapes.
fn hostile(rng: &mut Rng) -> String {
    match rng.below(9) {
        0 => {
            let depth = if rng.one_in(8) {
                100_000
            } else {
                rng.below(140)
            };
            let (open, close) = if rng.one_in(2) {
                ("[".repeat(depth), "]".repeat(depth))
            } else {
                ("{\"k\":".repeat(depth), "}".repeat(depth))
            };
            format!("{{\"a\":{open}1{close}}}")
        }
        1 => {
            let digits = [1, 19, 20, 300, 309, 310, 400, 5000][rng.below(8)];
            let sign = if rng.one_in(2) { "-" } else { "" };
            let frac = if rng.one_in(2) { ".5" } else { "" };
            let exp = if rng.one_in(3) {
                format!(
                    "e{}",
                    rng.pick(&["-400", "400", "308", "-5000", "99999999999"])
                )
            } else {
                String::new()
            };
            format!("{{\"n\": {sign}{}{frac}{exp}}}", "9".repeat(digits))
        }
        2 => {
            let n = rng.below(2000);
            let fields: Vec<String> = (0..n).map(|i| format!("\"f{}\": {i}", i % 97)).collect();
            format!("{{{}}}", fields.join(","))
        }
        3 => {
            let escapes = [
                "\\ud800",
                "\\udbff",
                "\\udc00",
                "\\udfff",
                "\\ud800\\udc00",
                "\\u0000",
                "\\n",
                "\\u00",
                "\\uzzzz",
            ];
            let s: String = (0..rng.below(20)).map(|_| *rng.pick(&escapes)).collect();
            if rng.one_in(2) {
                format!("{{\"s\": \"{s}\"}}")
            } else {
                format!("{{\"{s}\": 1}}")
            }
        }
        4 => format!("{{\"s\": \"{}\"}}", "x".repeat(rng.below(1 << 17))),
        5 => {
            let n = rng.below(5000);
            let items: Vec<&str> = (0..n)
                .map(|_| *rng.pick(&["[]", "{}", "1", "\"\"", "null"]))
                .collect();
            format!("{{\"l\": [{}]}}", items.join(","))
        }
        6 => format!(
            "{{\"i\": 1, \"i\": \"two\", \"i\": {}}}",
            rng.pick(&["3", "null", "[]"])
        ),
        7 => rng
            .pick(&[
                "", " ", "null", "[]", "\"x\"", "1", "{", "}", "{}{}", "{\"a\"}", "{,}",
            ])
            .to_string(),
        _ => {
            let key = "k".repeat(rng.below(1 << 16));
            format!("{{\"{key}\": \"{}\"}}", "v".repeat(rng.below(1 << 12)))
        }
    }
}

/// A declaration for a payload's own shape, when its fields are scalars or flat
/// collections of one scalar type.
fn infer(json: &Json) -> Option<EventType> {
    fn scalar(value: &Json) -> Option<Type> {
        match value {
            Json::Bool(_) => Some(Type::Bool),
            Json::Number(n) if n.is_i64() => Some(Type::Int),
            Json::Number(_) => Some(Type::Float),
            Json::String(_) => Some(Type::String),
            _ => None,
        }
    }
    fn same(values: &mut dyn Iterator<Item = &Json>) -> Option<Type> {
        let mut ty: Option<Type> = None;
        for v in values {
            let t = scalar(v)?;
            match &ty {
                None => ty = Some(t),
                Some(seen) if *seen == t => {}
                // An int among floats is a float.
                Some(Type::Float) if t == Type::Int => {}
                Some(Type::Int) if t == Type::Float => ty = Some(Type::Float),
                Some(_) => return None,
            }
        }
        Some(ty.unwrap_or(Type::Int))
    }
    let Json::Object(object) = json else {
        return None;
    };
    let mut fields = Vec::new();
    for (name, value) in object {
        let ty = match value {
            Json::Null => Type::Optional(Box::new(Type::Int)),
            Json::Array(items) => Type::List(Box::new(same(&mut items.iter())?)),
            Json::Object(entries) => Type::Map(
                Box::new(Type::String),
                Box::new(same(&mut entries.values())?),
            ),
            other => scalar(other)?,
        };
        fields.push(Field {
            name: name.clone(),
            ty,
            default: None,
            span: Span::new(0, 0),
        });
    }
    Some(EventType {
        name: "Inferred".to_owned(),
        fields,
        span: Span::new(0, 0),
    })
}

/// Every property, on one payload against every declared event type.
fn check_case(events: &[EventType], bytes: &[u8], stats: &mut Stats) {
    let short = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        assert!(
            text.len() <= 2 * MAX_MESSAGE + 200,
            "an error of {} bytes: {}",
            text.len(),
            text.get(..300).unwrap_or(&text)
        );
    };
    let json_check = check_json(bytes);
    if let Err(e) = &json_check {
        short(e);
        stats.json_refused += 1;
    }
    let text = std::str::from_utf8(bytes).ok();
    let tree: Option<Json> = serde_json::from_slice(bytes).ok();
    let mut row = Vec::new();
    for event in events {
        let engine = decode_payload_into(event, bytes, None, &mut row).map(|()| row.clone());
        match &engine {
            Ok(_) => stats.decoded += 1,
            Err(e) => short(e),
        }
        // The append validator sees text (a request's strings are UTF-8).
        if let Some(text) = text {
            let validated = decode_payload_text(event, text, Some(&[]), &mut row);
            assert_eq!(
                validated.is_ok(),
                engine.is_ok(),
                "validator and engine disagree on `{}`: {validated:?} / {engine:?}",
                event.name
            );
        }
        // The tree decoder (`dmc run`) gives the same row.
        if let Some(tree) = &tree {
            let by_tree = decode_payload(event, tree);
            assert_eq!(by_tree.is_ok(), engine.is_ok(), "tree and engine disagree");
            if let (Ok(a), Ok(b)) = (&by_tree, &engine) {
                assert_eq!(a, b, "tree and engine rows differ");
            }
        }
        if let Ok(full) = &engine {
            // Reading only some fields builds those, the same.
            let read: Vec<bool> = (0..event.fields.len()).map(|i| i % 2 == 0).collect();
            decode_payload_into(event, bytes, Some(&read), &mut row).expect("decodes again");
            for (i, (a, b)) in full.iter().zip(&row).enumerate() {
                if read[i] {
                    assert_eq!(a, b, "field {i} read differs");
                } else {
                    // Left unbuilt (strings, collections), or built when it costs
                    // nothing (scalars), but never different.
                    assert!(*b == Value::None || a == b, "unread field {i}: {b:?}");
                }
            }
            // What a declaration decodes, the undeclared check accepts.
            assert!(
                json_check.is_ok(),
                "`{}` decodes it but check_json refuses: {json_check:?}",
                event.name
            );
        }
    }
    // What check_json accepts, a declaration of its own shape decodes.
    if json_check.is_ok() {
        let tree = tree.expect("check_json accepted what serde_json cannot parse");
        if let Some(inferred) = infer(&tree) {
            stats.inferred += 1;
            if let Err(e) = decode_payload_into(&inferred, bytes, None, &mut row) {
                panic!("check_json accepts it, but its own shape does not decode: {e}");
            }
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    json_refused: u64,
    decoded: u64,
    inferred: u64,
    slowest: Duration,
    most_memory_ratio: f64,
}

#[test]
fn payload_decoding_never_panics_and_validator_and_engine_agree() {
    let program = check_source(PROGRAM)
        .program
        .expect("the fuzz program checks");
    let events = program.events;
    let seed = env_u64("DATAMESH_FUZZ_SEED", 0x00c0_dec5_eed5);
    let max_cases = env_u64("DATAMESH_FUZZ_CASES", 200_000);
    let seconds = env_u64("DATAMESH_FUZZ_SECONDS", 10);
    let started = Instant::now();
    let mut stats = Stats::default();
    for case in 0..max_cases {
        if seconds > 0 && started.elapsed() > Duration::from_secs(seconds) {
            break;
        }
        let mut rng = Rng::new(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for _ in 0..4 {
            rng.next();
        }
        let input: Vec<u8> = match rng.below(10) {
            0..=2 => {
                let event = rng.pick(&events);
                valid_payload(&mut rng, event).into_bytes()
            }
            3..=6 => {
                let event = rng.pick(&events);
                let valid = valid_payload(&mut rng, event);
                mutate(&mut rng, &valid)
            }
            _ => {
                let text = hostile(&mut rng);
                if rng.one_in(3) {
                    mutate(&mut rng, &text)
                } else {
                    text.into_bytes()
                }
            }
        };
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let begun = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_case(&events, &input, &mut stats);
        }));
        let took = begun.elapsed();
        let used = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        if let Err(panic) = outcome {
            let path = std::env::temp_dir().join(format!("fuzz_codec-{seed:x}-{case}.json"));
            let _ = std::fs::write(&path, &input);
            std::panic::resume_unwind(Box::new(format!(
                "seed {seed:#x} case {case} (input written to {}): {:?}",
                path.display(),
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
            )));
        }
        assert!(
            took < CASE_LIMIT,
            "seed {seed:#x} case {case}: {took:?} for {} bytes",
            input.len()
        );
        let bound = BYTES_PER_INPUT_BYTE * input.len() + MEMORY_SLACK;
        assert!(
            used <= bound,
            "seed {seed:#x} case {case}: {used} bytes allocated for {} bytes of input",
            input.len()
        );
        stats.cases += 1;
        stats.slowest = stats.slowest.max(took);
        if input.len() > 1024 {
            stats.most_memory_ratio = stats
                .most_memory_ratio
                .max(used as f64 / input.len() as f64);
        }
    }
    println!(
        "fuzz_codec: {} cases in {:.1?} (seed {seed:#x}): {} refused by check_json, {} decodes, \
         {} decoded against their own inferred shape; slowest case {:?}, most memory {:.1} \
         bytes per input byte",
        stats.cases,
        started.elapsed(),
        stats.json_refused,
        stats.decoded,
        stats.inferred,
        stats.slowest,
        stats.most_memory_ratio
    );
    assert!(stats.cases > 0);
}
