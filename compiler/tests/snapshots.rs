//! Snapshot tests of the parser and the checker: for every `tests/syntax/*.dmp`, the
//! syntax tree (`.ast`) and the typed IR (`.ir`) must equal the files beside it.
//!
//! Regenerate with `UPDATE_EXPECT=1 cargo test -p datamesh-compiler --test snapshots` and
//! review the diff.

use std::path::{Path, PathBuf};

use datamesh_compiler::check::check_source;
use datamesh_compiler::parser::parse;

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/syntax");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/syntax exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dmp"))
        .collect();
    files.sort();
    files
}

fn compare(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{} differs (UPDATE_EXPECT=1 to regenerate)",
            path.display()
        ));
    }
}

#[test]
fn ast_and_ir_snapshots() {
    let files = files();
    assert!(files.len() >= 3);
    let mut failures = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("readable");
        let (ast, errors) = parse(&source);
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
        compare(
            &file.with_extension("ast"),
            &format!("{ast:#?}\n"),
            &mut failures,
        );
        let checked = check_source(&source);
        let program = checked.program.unwrap_or_else(|| {
            panic!(
                "{} does not check: {:?}",
                file.display(),
                checked.diagnostics
            )
        });
        compare(
            &file.with_extension("ir"),
            &format!("{program:#?}\n"),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn precedence_groups_as_documented() {
    use datamesh_compiler::ast::{BinaryOp, ExprKind};
    let parsed = datamesh_compiler::parser::parse_expr("a + b * c == d or not e and f ?? g")
        .expect("parses");
    // `or` is loosest; its left side is the comparison.
    let ExprKind::Binary(BinaryOp::Or, left, right) = &parsed.kind else {
        panic!("top is `or`")
    };
    assert!(matches!(left.kind, ExprKind::Binary(BinaryOp::Eq, _, _)));
    let ExprKind::Binary(BinaryOp::And, _, coalesce) = &right.kind else {
        panic!("then `and`")
    };
    assert!(matches!(
        coalesce.kind,
        ExprKind::Binary(BinaryOp::Coalesce, _, _)
    ));
}
