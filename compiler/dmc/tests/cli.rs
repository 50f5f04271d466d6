//! The `dmc` binary as users run it: exit codes, streams and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dmc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmc"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("dmc runs")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_exits_zero_on_a_clean_program_and_one_on_errors() {
    let ok = dmc(&["check", "examples/bank/bank.dmp"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let bad = dmc(&["check", "compiler/tests/ui/five_mistakes.dmp"]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = text(&bad.stderr);
    for code in ["E0103", "E0105", "E0202", "E0102", "E0211"] {
        assert!(stderr.contains(code), "missing {code} in:\n{stderr}");
    }
    assert!(
        stderr.contains("five_mistakes.dmp:3:28"),
        "spans point at file:line:column"
    );
}

#[test]
fn check_reports_unreadable_files() {
    let out = dmc(&["check", "does/not/exist.dmp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read does/not/exist.dmp"));
}

#[test]
fn run_prints_the_bank_documents() {
    let out = dmc(&[
        "run",
        "examples/bank/bank.dmp",
        "--events",
        "examples/bank/events.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["balances"]["a1"]["balance"], 140);
    assert_eq!(json["balances"]["a2"]["balance"], 323);
    assert_eq!(json["totals"]["deposited"], 493);
    assert_eq!(
        json["daily_volume"]["[\"a2\",\"2024-05-02\"]"]["volume"],
        123
    );
}

#[test]
fn run_rejects_a_corrupted_line_naming_it_and_prints_nothing() {
    let guard = tempfile::Builder::new()
        .prefix("dmc-cli-")
        .tempdir()
        .expect("temp dir");
    let dir = guard.path();
    let events =
        std::fs::read_to_string(root().join("examples/bank/events.jsonl")).expect("events");
    let cases = [
        (
            events.replacen("\"amount\": 250", "\"amount\": \"250\"", 1),
            ":4: `Deposited`: field `amount`: expected int",
        ),
        (
            events.replacen(
                "{\"type\": \"Withdrawn\"",
                "{\"type\": \"Withdrawn\" oops",
                1,
            ),
            ":5: not valid JSON",
        ),
        (
            events.replacen("\"owner\": \"bob\", ", "", 1),
            ":2: `AccountOpened`: field `owner`: missing",
        ),
        (
            events.replacen("\"Transferred\"", "\"Transfered\"", 1),
            ":6: unknown event type `Transfered`",
        ),
    ];
    for (n, (content, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{n}.jsonl"));
        std::fs::write(&path, content).expect("write events");
        let out = dmc(&[
            "run",
            "examples/bank/bank.dmp",
            "--events",
            path.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            out.stdout.is_empty(),
            "nothing is printed when the input is bad"
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(expected),
            "expected `{expected}` in: {stderr}"
        );
    }
}

#[test]
fn run_reports_a_fault_with_position_and_span() {
    let guard = tempfile::Builder::new()
        .prefix("dmc-fault-")
        .tempdir()
        .expect("temp dir");
    let dir = guard.path();
    let program = dir.join("p.dmp");
    std::fs::write(
        &program,
        "event E { n: int }\nprojection avg { state { v: int = 0 } on E { v = 100 / event.n } }\n",
    )
    .expect("write");
    let events = dir.join("e.jsonl");
    std::fs::write(&events, "{\"type\":\"E\",\"data\":{\"n\":4}}\n{\"type\":\"E\",\"data\":{\"n\":0}}\n{\"type\":\"E\",\"data\":{\"n\":5}}\n").expect("write");
    let out = dmc(&[
        "run",
        program.to_str().expect("path"),
        "--events",
        events.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("R0002"), "{stderr}");
    assert!(
        stderr.contains("projection `avg` faulted at position 1 (E): division by zero"),
        "{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("documents still printed");
    assert_eq!(
        json["avg"]["v"], 25,
        "the faulted projection keeps its state from before the fault"
    );
}

#[test]
fn test_prints_results_and_a_closing_line() {
    let out = dmc(&["test", "examples/bank/bank.dmp"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("a deposit raises the balance ... ok"));
    assert_eq!(stdout.lines().last(), Some("1 passed, 0 failed"));

    let guard = tempfile::Builder::new()
        .prefix("dmc-test-")
        .tempdir()
        .expect("temp dir");
    let dir = guard.path();
    let program = dir.join("t.dmp");
    std::fs::write(
        &program,
        "event E { n: int }\nprojection t { state { sum: int = 0 } on E { sum += event.n } }\n\
         test \"passes\" { given E { n: 2 } expect t.sum == 2 }\n\
         test \"fails\" { given E { n: 2 } expect t.sum == 3 }\n",
    )
    .expect("write");
    let out = dmc(&["test", program.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout).lines().last(), Some("1 passed, 1 failed"));
    assert!(text(&out.stderr).contains("left side is 2, right side is 3"));
}

#[test]
fn explain_prints_each_stage() {
    let ast = dmc(&["explain", "examples/bank/bank.dmp", "--ast"]);
    assert_eq!(ast.status.code(), Some(0));
    assert!(text(&ast.stdout).contains("ProjectionDecl"));
    let ir = dmc(&["explain", "examples/bank/bank.dmp", "--ir"]);
    assert_eq!(ir.status.code(), Some(0));
    assert!(text(&ir.stdout).contains("EventField"));
    let none = dmc(&["explain", "examples/bank/bank.dmp"]);
    assert_eq!(none.status.code(), Some(2), "a stage must be chosen");
}

#[test]
fn run_gives_the_same_documents_with_both_engines() {
    let args = |engine: &'static str| {
        [
            "run",
            "examples/bank/bank.dmp",
            "--events",
            "examples/bank/events.jsonl",
            "--engine",
            engine,
        ]
    };
    let jit = dmc(&args("jit"));
    let interp = dmc(&args("interp"));
    assert_eq!(jit.status.code(), Some(0), "{}", text(&jit.stderr));
    assert_eq!(interp.status.code(), Some(0), "{}", text(&interp.stderr));
    assert_eq!(text(&jit.stdout), text(&interp.stdout));
    let bad = dmc(&args("nope"));
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn explain_clif_prints_every_handler() {
    let out = dmc(&["explain", "examples/bank/bank.dmp", "--clif"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("; projection balances handler 0"),
        "{stdout}"
    );
    assert!(stdout.contains("; import payments rule 0"), "{stdout}");
    assert!(
        stdout.contains("sadd_overflow"),
        "inline checked arithmetic"
    );
    assert!(stdout.contains("function "), "{stdout}");
}

#[test]
fn bench_prints_both_engines_and_their_ratio() {
    let out = dmc(&["bench", "examples/bank/bank.dmp", "--events", "2000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "compile: ",
        "jit: ",
        "interp: ",
        "jit/interp: ",
        "engines agree: yes",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}

/// Runs `dmc check` on `source` written to a temporary file.
fn check_text(source: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.dmp");
    std::fs::write(&path, source).expect("write");
    let path = path.to_str().expect("utf-8 path").to_owned();
    dmc(&["check", &path])
}

#[test]
fn a_diagnostic_on_a_very_long_line_renders_plainly_instead_of_panicking() {
    // Finding 11: miette panicked on a diagnostic past column 65,535 and on very long
    // lines. Such a diagnostic is rendered plainly: file:line:col, code, message, help.
    let padding = " ".repeat(70_000);
    let cases = [
        // Past column 65,535 on a short-enough second line.
        (
            format!(
                "event E {{ n: int }}\n{padding}projection p {{ state {{ v: int = 0 }} on E {{ v = nope }} }}\n"
            ),
            "E0106",
            2,
        ),
        // An error near the start of a line a megabyte long.
        (
            format!(
                "event E {{ n: int }} projection p {{ state {{ v: int = 0 }} on E {{ v = nope }} }}{}\n",
                " ".repeat(1 << 20)
            ),
            "E0106",
            1,
        ),
        // A syntax error at the very end of a long line, and a span covering all of it.
        (
            format!("event E {{ n: int = {} }}", vec!["1"; 40_000].join(" + ")),
            "E000",
            1,
        ),
        (format!("event E {{ n: strin }}{padding}@"), "E0103", 1),
    ];
    for (source, code, line) in cases {
        let out = check_text(&source);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains(code), "{stderr}");
        assert!(stderr.contains(&format!("long.dmp:{line}:")), "{stderr}");
        // The plain rendering never echoes the whole line.
        assert!(stderr.len() < 20_000, "{} bytes of stderr", stderr.len());
    }
}

#[test]
fn a_deeply_nested_type_is_refused_by_check_and_explain() {
    // Finding 6: a type nested thousands of levels deep overflowed the stack and aborted
    // `dmc check` (and `dmc explain --ast` printed it recursively).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("deep.dmp");
    let n = 50_000;
    std::fs::write(
        &path,
        format!(
            "event E {{ n: {}int{} }}\n",
            "list<".repeat(n),
            ">".repeat(n)
        ),
    )
    .expect("write");
    let path = path.to_str().expect("utf-8 path");
    for args in [vec!["check", path], vec!["explain", path, "--ast"]] {
        let out = dmc(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("E0007"), "{args:?}: {stderr}");
        assert!(!stderr.contains("overflow"), "{args:?}: {stderr}");
    }
}
