//! UI tests: every `compiler/tests/ui/*.dmp` is checked, and its rendered diagnostics
//! (plain theme, width 100) must equal the `.stderr` file beside it.
//!
//! Regenerate the expectations with `UPDATE_EXPECT=1 cargo test -p dmc --test ui`, then
//! review the diff: a `.stderr` file is a promise about what users see.

use std::path::{Path, PathBuf};

use datamesh_compiler::check::check_source;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui")
}

#[test]
fn ui_diagnostics_match_expectations() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(ui_dir())
        .expect("compiler/tests/ui exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dmp"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the UI corpus, found {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("readable test file");
        let checked = check_source(&source);
        assert!(
            !checked.diagnostics.is_empty(),
            "{} produces no diagnostic; a UI test must show one",
            file.display()
        );
        let name = format!(
            "ui/{}",
            file.file_name().and_then(|n| n.to_str()).unwrap_or("?")
        );
        let rendered = dmc::render(&checked.diagnostics, &name, &source, dmc::Style::Plain);
        let expected_path = file.with_extension("stderr");
        if update {
            std::fs::write(&expected_path, &rendered).expect("write expectation");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != rendered {
            failures.push(format!(
                "--- {} differs (UPDATE_EXPECT=1 to regenerate)\n{}",
                expected_path.display(),
                rendered
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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
