//! The front end never panics on any input: every prefix of every example and many
//! deterministic random mutations of them are lexed, parsed and checked, and the
//! diagnostics must point inside the source (and syntax errors carry a help line).

use datamesh_compiler::check::check_source;

fn examples() -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut sources = Vec::new();
    for dir in std::fs::read_dir(root).expect("examples dir").flatten() {
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "dmp") {
                sources.push(std::fs::read_to_string(file.path()).expect("readable"));
            }
        }
    }
    assert!(!sources.is_empty());
    sources
}

fn check_is_sane(source: &str) {
    let checked = check_source(source);
    for d in &checked.diagnostics {
        assert!(d.span.start <= d.span.end, "inverted span in {d:?}");
        assert!(
            d.span.end as usize <= source.len(),
            "span past the end: {d:?}"
        );
        assert!(
            source.is_char_boundary(d.span.start as usize),
            "span splits a char: {d:?}"
        );
        // A syntax error always says what to do about it.
        if d.code.starts_with("E000") {
            assert!(d.help.is_some(), "a syntax error without help: {d:?}");
        }
    }
    if checked.program.is_some() {
        assert!(checked.diagnostics.iter().all(|d| !d.is_error()));
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn every_prefix_of_the_bank_example_is_handled() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/bank/bank.dmp"
    ))
    .expect("bank");
    for end in (0..=source.len()).filter(|i| source.is_char_boundary(*i)) {
        check_is_sane(&source[..end]);
    }
}

#[test]
fn random_mutations_never_panic() {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ",",
        ";",
        ":",
        ".",
        "?",
        "??",
        "=",
        "+=",
        "/",
        "%",
        "==",
        "<",
        "-",
        "@",
        "#",
        "\"",
        "event",
        "projection",
        "key",
        "state",
        "on",
        "where",
        "let",
        "if",
        "else",
        "delete",
        "emit",
        "import",
        "export",
        "test",
        "given",
        "expect",
        "from",
        "with",
        "not",
        "none",
        "x",
        "event.",
        "meta.",
        "0",
        "-9223372036854775808",
        "1.5e400",
        "99999999999999999999",
        "1h30m",
        "list<",
        "map<int,",
        "é",
        "\n",
        "\"\\u{110000}\"",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for source in examples() {
        for _ in 0..300 {
            let mut text = source.clone();
            for _ in 0..1 + rng.below(4) {
                let mut at = rng.below(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match rng.below(3) {
                    0 => text.insert_str(at, PIECES[rng.below(PIECES.len())]),
                    1 => {
                        let mut end = (at + 1 + rng.below(12)).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text.replace_range(at..end, "");
                    }
                    _ => {
                        let mut end = (at + rng.below(6)).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text.replace_range(at..end, PIECES[rng.below(PIECES.len())]);
                    }
                }
            }
            check_is_sane(&text);
        }
    }
}

#[test]
fn deep_nesting_is_refused_with_a_diagnostic_not_a_crash() {
    let sum = |n: usize| {
        format!(
            "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ v = {} }} }}\n",
            vec!["event.n"; n].join(" + ")
        )
    };
    // Within the limit: checks and runs on a test thread's stack.
    let ok = check_source(&sum(datamesh_compiler::depth::MAX_DEPTH - 8));
    assert!(ok.program.is_some(), "{:?}", ok.diagnostics);
    let nested = check_source(&sum(100_000));
    assert!(nested.program.is_none());
    assert_eq!(
        nested
            .diagnostics
            .iter()
            .map(|d| d.code)
            .collect::<Vec<_>>(),
        ["E0007"]
    );
    let parens = format!(
        "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ v = {}1{} }} }}\n",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    // Parentheses only group: they add no depth to the tree.
    assert!(check_source(&parens).program.is_some());
    let chain = format!(
        "event E {{ n: int }}\nprojection p {{ state {{ v: int = 0 }} on E {{ {}{{ v = 2 }} {} }} }}\n",
        "if event.n > 0 { v = 1 } else ".repeat(5000),
        ""
    );
    assert_eq!(check_source(&chain).diagnostics[0].code, "E0007");
}
