//! Assertions about particular UI files beyond their rendered expectation (which the
//! `corpus` harness compares, one test per file).

use std::path::{Path, PathBuf};

use datamesh_compiler::check::check_source;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui")
}

#[test]
fn five_distinct_mistakes_are_all_reported_with_codes_and_spans() {
    let source = std::fs::read_to_string(ui_dir().join("five_mistakes.dmp")).expect("corpus file");
    let checked = check_source(&source);
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .collect();
    let codes: Vec<&str> = errors.iter().map(|d| d.code.id).collect();
    assert_eq!(
        codes,
        ["E0103", "E0105", "E0202", "E0102", "E0211", "E0202"]
    );
    for d in &errors {
        assert!(!d.span.is_empty(), "{} has an empty span", d.code);
        assert!(d.help.is_some(), "{} has no help line", d.code);
    }
    assert!(checked.program.is_none());
}
