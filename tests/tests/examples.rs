//! Every snippet the book includes checks, and every include points at a file. (The
//! examples themselves are dmc's `corpus` harness, one test per program.)

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
