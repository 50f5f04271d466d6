//! Seeded mutation testing of the front end (lexer, parser, depth guard, checker).
//!
//! Every program the repository holds (`examples/*/*.dmp`, `book/src/snippets/*.dmp`,
//! `book/diagnostics/*.dmp`, `compiler/tests/ui/*.dmp`, `compiler/tests/syntax/*.dmp`)
//! is the seed corpus. Each case takes one of them and applies a few mutations: byte
//! flips, inserts and deletions (the result is made valid UTF-8 again, as a file read
//! by `dmc` would be), token deletions, duplications, swaps and insertions of tokens
//! seen anywhere in the corpus, splices of another program's text, duplicated nesting
//! (an opening bracket and its closing partner repeated up to thousands of times), and
//! long runs of one token (or of comment lines, duration groups, string escapes). Then, on a thread with the node's 2 MiB stack:
//!
//! - `check_source` returns (no panic, no stack overflow), within a time limit;
//! - every diagnostic's span lies inside the source, starts and ends on char
//!   boundaries, and is not inverted; syntax errors carry a help line;
//! - a program is returned exactly when no error was reported.
//!
//! The generator is a hand-written xorshift seeded from `DATAMESH_FUZZ_SEED`, so a run
//! is deterministic: case `n` of a seed is always the same input, and a failure prints
//! the seed and case number and writes the input to the temp directory.
//!
//! **Budget.** By default (CI, debug build) it runs up to 200,000 cases but stops after
//! 15 seconds, and prints how many ran. A longer run is one command:
//!
//! ```sh
//! DATAMESH_FUZZ_CASES=1000000 DATAMESH_FUZZ_SECONDS=0 \
//!     cargo test -p datamesh-compiler --test fuzz_frontend --release -- --nocapture
//! ```
//!
//! (`DATAMESH_FUZZ_SECONDS=0` lifts the time limit; `DATAMESH_FUZZ_SEED=<n>` picks
//! another sequence; `DATAMESH_FUZZ_TRACE=1` writes each input to the temp directory
//! before checking it, since a stack overflow aborts before anything is reported.)

mod seeded;

use seeded::{Rng, env_u64};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use datamesh_compiler::check::check_source;

/// The node's stack size (tokio worker threads).
const NODE_STACK: usize = 2 << 20;

/// The longest a single case may take (debug build, a busy machine).
const CASE_LIMIT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.dmp` file of the seed corpus, in a fixed order.
fn corpus() -> Vec<String> {
    let mut paths = Vec::new();
    let mut dirs = vec![
        root().join("book/src/snippets"),
        root().join("book/diagnostics"),
        root().join("compiler/tests/ui"),
        root().join("compiler/tests/syntax"),
    ];
    for entry in std::fs::read_dir(root().join("examples"))
        .expect("examples")
        .flatten()
    {
        dirs.push(entry.path());
    }
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "dmp") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    let sources: Vec<String> = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable"))
        .collect();
    assert!(sources.len() >= 20, "the corpus is too small");
    sources
}

/// Text fragments worth inserting beyond the corpus' own tokens: edge-case literals,
/// broken strings and comments, odd characters.
const EXTRA: &[&str] = &[
    "\"",
    "\"\\",
    "\"\\u{110000}\"",
    "\"\\u{d800}\"",
    "\"\\q\"",
    "//",
    "/*",
    "*/",
    "#",
    "$",
    "\\",
    "é",
    "𝕏",
    "\u{0}",
    "\u{feff}",
    "\r\n",
    "\t",
    "-9223372036854775808",
    "9223372036854775807",
    "99999999999999999999",
    "1.5e400",
    "1e-400",
    "0x10",
    "1_000",
    "1__0",
    "9999999999999999999d",
    "1h30m",
    "0s",
    "1us",
    "list<",
    "map<string,",
    "set<int>",
    "int?",
    "?",
    "??",
    "@v2",
    "v0",
    "v99999999999",
    "meta.",
    "event.",
    "meta.time",
    "meta.position",
    ".insert(",
    ".push(",
    "[",
    "](",
    "if true { 1 } else { 2 }",
    "let x = ",
    "delete",
    "emit E { }",
    "given E { } with { time: ",
    "expect ",
    "import p { ",
    "export to p { ",
];

/// Token texts of the whole corpus, for token insertions.
fn token_texts(corpus: &[String]) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    for source in corpus {
        let (tokens, _) = datamesh_compiler::lexer::lex(source);
        for (start, _, end) in tokens {
            if let Some(t) = source.get(start..end) {
                texts.push(t.to_owned());
            }
        }
    }
    texts.sort();
    texts.dedup();
    texts.extend(EXTRA.iter().map(|s| (*s).to_owned()));
    texts
}

/// Byte ranges of the tokens of `source`.
fn token_ranges(source: &str) -> Vec<(usize, usize)> {
    let (tokens, _) = datamesh_compiler::lexer::lex(source);
    tokens.into_iter().map(|(s, _, e)| (s, e)).collect()
}

/// The nearest char boundary at or before `at`.
fn floor(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Applies one random mutation to `text`.
fn mutate(rng: &mut Rng, text: &mut String, corpus: &[String], tokens: &[String]) {
    match rng.below(13) {
        // Flip bits in a few bytes; invalid UTF-8 is replaced, as a lossy read would.
        0 => {
            let mut bytes = std::mem::take(text).into_bytes();
            for _ in 0..1 + rng.below(3) {
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
        // Insert a random byte (ASCII mostly).
        1 => {
            let at = floor(text, rng.below(text.len() + 1));
            let c = if rng.percent(80) {
                char::from(rng.below(128) as u8)
            } else {
                char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}')
            };
            text.insert(at, c);
        }
        // Delete a byte range.
        2 => {
            let at = floor(text, rng.below(text.len() + 1));
            let end = floor(text, at + 1 + rng.below(16));
            text.replace_range(at..end.max(at), "");
        }
        // Delete a run of tokens.
        3 => {
            let ranges = token_ranges(text);
            if !ranges.is_empty() {
                let i = rng.below(ranges.len());
                let j = (i + rng.below(4)).min(ranges.len() - 1);
                text.replace_range(ranges[i].0..ranges[j].1, "");
            }
        }
        // Duplicate a run of tokens.
        4 => {
            let ranges = token_ranges(text);
            if !ranges.is_empty() {
                let i = rng.below(ranges.len());
                let j = (i + rng.below(6)).min(ranges.len() - 1);
                let copy = text[ranges[i].0..ranges[j].1].to_owned();
                text.insert_str(ranges[j].1, &format!(" {copy}"));
            }
        }
        // Swap two tokens.
        5 => {
            let ranges = token_ranges(text);
            if ranges.len() >= 2 {
                let mut a = ranges[rng.below(ranges.len())];
                let mut b = ranges[rng.below(ranges.len())];
                if a.0 > b.0 {
                    std::mem::swap(&mut a, &mut b);
                }
                if a.1 <= b.0 {
                    let ta = text[a.0..a.1].to_owned();
                    let tb = text[b.0..b.1].to_owned();
                    text.replace_range(b.0..b.1, &ta);
                    text.replace_range(a.0..a.1, &tb);
                }
            }
        }
        // Insert a token (from the corpus or the extras) at a token boundary.
        6 | 7 => {
            let ranges = token_ranges(text);
            let at = if ranges.is_empty() || rng.percent(20) {
                floor(text, rng.below(text.len() + 1))
            } else {
                let r = ranges[rng.below(ranges.len())];
                if rng.percent(50) { r.0 } else { r.1 }
            };
            let t = &tokens[rng.below(tokens.len())];
            text.insert_str(at, &format!(" {t} "));
        }
        // Replace a token with another.
        8 => {
            let ranges = token_ranges(text);
            if !ranges.is_empty() {
                let r = ranges[rng.below(ranges.len())];
                let t = &tokens[rng.below(tokens.len())];
                text.replace_range(r.0..r.1, t);
            }
        }
        // Splice: a slice of another program, inserted or replacing the tail.
        9 => {
            let other = &corpus[rng.below(corpus.len())];
            let from = floor(other, rng.below(other.len() + 1));
            let to = floor(other, from + rng.below(400));
            let piece = &other[from..to.max(from)];
            let at = floor(text, rng.below(text.len() + 1));
            if rng.percent(50) {
                text.insert_str(at, piece);
            } else {
                text.truncate(at);
                text.push_str(&other[from..]);
            }
        }
        // Duplicate nesting: repeat an opening bracket and its partner, so the tree
        // nests deeper (up to well past the depth limit).
        10 => {
            let ranges = token_ranges(text);
            let opens: Vec<usize> = ranges
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(&text[r.0..r.1], "(" | "{" | "[" | "<"))
                .map(|(i, _)| i)
                .collect();
            if !opens.is_empty() {
                let i = opens[rng.below(opens.len())];
                let open = text[ranges[i].0..ranges[i].1].to_owned();
                let close = match open.as_str() {
                    "(" => ")",
                    "{" => "}",
                    "[" => "]",
                    _ => ">",
                };
                // Its partner: the first unbalanced closing token after it.
                let mut depth = 0usize;
                let mut partner = None;
                for r in &ranges[i + 1..] {
                    let t = &text[r.0..r.1];
                    if t == open {
                        depth += 1;
                    } else if t == close {
                        if depth == 0 {
                            partner = Some(*r);
                            break;
                        }
                        depth -= 1;
                    }
                }
                let times = [1, 2, 10, 100, 1_000, 20_000][rng.below(6)];
                let inner_start = ranges[i].1;
                let (inner_end, close_end) = partner.map_or((text.len(), text.len()), |p| p);
                let inner = text[inner_start..inner_end].to_owned();
                let mut out = String::with_capacity(text.len() + times * (inner.len() + 2));
                out.push_str(&text[..ranges[i].0]);
                if rng.percent(50) {
                    // `(((x)))`: the opening and the closing bracket repeated.
                    out.push_str(&open.repeat(times + 1));
                    out.push_str(&inner);
                    if partner.is_some() {
                        out.push_str(&close.repeat(times + 1));
                    }
                } else {
                    // `{ a { a { a } } }`: the content repeated inside itself.
                    // (bounded so the text stays under about 32 KiB).
                    let reps = times.min(32 * 1024 / (inner.len() + 2)).max(1);
                    for _ in 0..reps {
                        out.push_str(&open);
                        out.push_str(&inner);
                    }
                    out.push_str(&open);
                    out.push_str(&inner);
                    if partner.is_some() {
                        out.push_str(&close.repeat(reps + 1));
                    }
                }
                out.push_str(&text[close_end..]);
                *text = out;
            }
        }
        // A long run of one token: chains of operators, `not not ...`, `- - ...`.
        11 => {
            let ranges = token_ranges(text);
            if !ranges.is_empty() {
                let r = ranges[rng.below(ranges.len())];
                let unit = match rng.below(8) {
                    0 => format!("{} ", &text[r.0..r.1]),
                    1 => "not ".to_owned(),
                    2 => "- ".to_owned(),
                    3 => "1 + ".to_owned(),
                    4 => "list<".to_owned(),
                    // Runs the lexer once loops over: comment lines, duration groups,
                    // escapes (each recursed in logos' state machine before).
                    5 => "// c\n".to_owned(),
                    6 => "1ms".to_owned(),
                    _ => "\\n".to_owned(),
                };
                let times = [10, 200, 5_000][rng.below(3)];
                text.insert_str(r.0, &unit.repeat(times));
            }
        }
        // Truncate (an unexpected end of file).
        _ => {
            let at = floor(text, rng.below(text.len() + 1));
            text.truncate(at);
        }
    }
}

/// Checks `source` and the properties every check must keep; `Err` says which broke,
/// `Ok` whether the program checked without errors.
fn check_case(source: &str) -> Result<bool, String> {
    let started = Instant::now();
    let checked = check_source(source);
    let took = started.elapsed();
    if took > CASE_LIMIT {
        return Err(format!("check took {took:?}"));
    }
    for d in &checked.diagnostics {
        let (start, end) = (d.span.start as usize, d.span.end as usize);
        if start > end {
            return Err(format!("inverted span: {d:?}"));
        }
        if end > source.len() {
            return Err(format!("span past the end ({}): {d:?}", source.len()));
        }
        if !source.is_char_boundary(start) || !source.is_char_boundary(end) {
            return Err(format!("span splits a char: {d:?}"));
        }
        if d.code.id.starts_with("E000") && d.help.is_none() {
            return Err(format!("a syntax error without help: {d:?}"));
        }
        if d.message.is_empty() {
            return Err(format!("a diagnostic without a message: {d:?}"));
        }
    }
    let errors = checked.diagnostics.iter().any(|d| d.is_error());
    if checked.program.is_some() == errors {
        return Err(format!(
            "program returned: {}, errors reported: {errors}",
            checked.program.is_some()
        ));
    }
    Ok(checked.program.is_some())
}

/// What a run did.
struct Outcome {
    cases: u64,
    checked_ok: u64,
    elapsed: Duration,
    bytes: u64,
}

fn run(seed: u64, max_cases: u64, budget: Option<Duration>) -> Outcome {
    let corpus = corpus();
    let tokens = token_texts(&corpus);
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut outcome = Outcome {
        cases: 0,
        checked_ok: 0,
        elapsed: Duration::ZERO,
        bytes: 0,
    };
    // The unmutated corpus first: every program must keep the properties as written.
    for source in &corpus {
        if let Err(why) = check_case(source) {
            panic!("an unmutated corpus program fails: {why}\n{source}");
        }
    }
    // A stack overflow aborts the process before anything can be reported: with
    // `DATAMESH_FUZZ_TRACE=1`, each input is written out before it is checked.
    let trace = std::env::var_os("DATAMESH_FUZZ_TRACE")
        .is_some()
        .then(|| std::env::temp_dir().join(format!("fuzz_frontend-{seed}-current.dmp")));
    while outcome.cases < max_cases {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        let case = outcome.cases;
        let mut text = corpus[rng.below(corpus.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut text, &corpus, &tokens);
        }
        if let Some(path) = &trace {
            let _ = std::fs::write(path, &text);
            eprintln!("case {case}: {} bytes", text.len());
        }
        let result = std::panic::catch_unwind(|| check_case(&text))
            .unwrap_or_else(|_| Err("check_source panicked".to_owned()));
        match result {
            Ok(clean) => {
                outcome.checked_ok += u64::from(clean);
                outcome.bytes += text.len() as u64;
            }
            Err(why) => {
                let path = std::env::temp_dir().join(format!("fuzz_frontend-{seed}-{case}.dmp"));
                let _ = std::fs::write(&path, &text);
                panic!(
                    "case {case} of seed {seed}: {why}\ninput written to {}",
                    path.display()
                );
            }
        }
        outcome.cases += 1;
    }
    outcome.elapsed = started.elapsed();
    outcome
}

#[test]
fn mutated_programs_never_break_the_front_end() {
    let seed = env_u64("DATAMESH_FUZZ_SEED", 0x5eed_da7a_3e54);
    let max_cases = env_u64("DATAMESH_FUZZ_CASES", 200_000);
    let seconds = env_u64("DATAMESH_FUZZ_SECONDS", 15);
    let budget = (seconds > 0).then(|| Duration::from_secs(seconds));
    let outcome = std::thread::Builder::new()
        .stack_size(NODE_STACK)
        .spawn(move || run(seed, max_cases, budget))
        .expect("spawn")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    println!(
        "fuzz_frontend: {} cases ({:.1} MB of source) in {:.1} s (seed {seed:#x}), none failed; {} still checked without errors",
        outcome.cases,
        outcome.bytes as f64 / 1e6,
        outcome.elapsed.as_secs_f64(),
        outcome.checked_ok,
    );
    assert!(outcome.cases > 0);
}
