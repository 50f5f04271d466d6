//! Every program under `examples/` (and every snippet the book includes) is checked and
//! its `test` blocks run; where an example has `events.jsonl`, `dmc run` output must
//! equal its `expected.json` (regenerate with `UPDATE_EXPECT=1`).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file under `dir` (recursively) whose extension is `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn dmp_files(dir: &Path) -> Vec<PathBuf> {
    files(dir, "dmp")
}

#[test]
fn every_example_checks_without_errors_or_warnings() {
    let files = dmp_files(&root().join("examples"));
    assert!(files.len() >= 3, "expected at least three example programs");
    for file in files {
        let source = std::fs::read_to_string(&file).expect("readable example");
        let checked = datamesh_compiler::check::check_source(&source);
        let rendered = dmc::render(
            &checked.diagnostics,
            &file.display().to_string(),
            &source,
            dmc::Style::Plain,
        );
        assert!(
            checked.diagnostics.is_empty(),
            "{} has diagnostics:\n{rendered}",
            file.display()
        );
    }
}

#[test]
fn every_example_test_block_passes() {
    let files = dmp_files(&root().join("examples"));
    for file in files {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = dmc::test(&[&file], dmc::Style::Plain, &mut out, &mut err);
        let out = String::from_utf8_lossy(&out);
        assert_eq!(
            code,
            0,
            "{}:\n{out}\n{}",
            file.display(),
            String::from_utf8_lossy(&err)
        );
        let closing = out.lines().last().unwrap_or_default();
        assert!(
            closing.ends_with(" 0 failed") && !closing.starts_with("0 passed"),
            "{}: {closing}",
            file.display()
        );
    }
}

#[test]
fn every_example_run_matches_its_expected_documents() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut compared = 0;
    for file in dmp_files(&root().join("examples")) {
        let dir = file.parent().expect("in a directory");
        let events = dir.join("events.jsonl");
        if !events.exists() {
            continue;
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = dmc::run(
            &file,
            &events,
            dmc::RunOptions::default(),
            dmc::Style::Plain,
            &mut out,
            &mut err,
        );
        assert_eq!(
            code,
            0,
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&err)
        );
        let expected_path = dir.join("expected.json");
        let actual = String::from_utf8(out).expect("utf-8 output");
        if update {
            std::fs::write(&expected_path, &actual).expect("write expected.json");
        } else {
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
                panic!(
                    "{} is missing (UPDATE_EXPECT=1 creates it)",
                    expected_path.display()
                )
            });
            assert_eq!(actual, expected, "{} output changed", file.display());
        }
        compared += 1;
    }
    assert!(compared >= 1);
}

#[test]
fn every_book_snippet_checks() {
    for file in dmp_files(&root().join("book/src")) {
        let source = std::fs::read_to_string(&file).expect("readable snippet");
        let checked = datamesh_compiler::check::check_source(&source);
        let rendered = dmc::render(
            &checked.diagnostics,
            &file.display().to_string(),
            &source,
            dmc::Style::Plain,
        );
        assert!(
            checked.program.is_some(),
            "{} does not check:\n{rendered}",
            file.display()
        );
    }
}

#[test]
fn book_includes_point_at_existing_files() {
    let book = root().join("book/src");
    for page in files(&book, "md") {
        let text = std::fs::read_to_string(&page).expect("readable page");
        for (n, line) in text.lines().enumerate() {
            let Some(start) = line.find("{{#include ") else {
                continue;
            };
            let rest = &line[start + "{{#include ".len()..];
            let target = rest.split(['}', ':']).next().unwrap_or("").trim();
            let path = page.parent().expect("page dir").join(target);
            assert!(
                path.exists(),
                "{}:{}: include of missing file {}",
                page.display(),
                n + 1,
                path.display()
            );
        }
    }
}
