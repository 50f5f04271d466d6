//! The corpus: every file-driven expectation of the language, one test per file, so a
//! failure names the file and shows a line diff.
//!
//! - `ui::NAME`: `compiler/tests/ui/NAME.dmp` is checked, and its rendered
//!   diagnostics (plain theme) must equal `NAME.stderr` beside it; it must produce one.
//! - `syntax::NAME`: `compiler/tests/syntax/NAME.dmp` parses and checks without error,
//!   and its syntax tree and typed IR must equal `NAME.ast` and `NAME.ir`.
//! - `programs::NAME`: `compiler/tests/programs/NAME.dmp`, a program per construct of
//!   the language, checks with no diagnostic and its `test` blocks pass on both
//!   engines (the interpreter and the JIT).
//! - `examples::DIR/NAME`: every program under `examples/` checks with no diagnostic,
//!   its `test` blocks pass on both engines, and where its directory has
//!   `events.jsonl`, `dmc run` prints exactly `expected.json`.
//!
//! `UPDATE_EXPECT=1 cargo test -p dmc --test corpus` writes every expectation from what
//! the code does now; review the diff before committing it: each file is a promise
//! about what users see. Filters work as usual (`-- ui::`, `-- examples::bank`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use datamesh_compiler::check::check_source;
use libtest_mimic::{Arguments, Failed, Trial};

/// The repository (this crate is `compiler/dmc`).
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Every `.dmp` file under `dir` (recursively), sorted.
fn programs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            out.extend(programs(&path));
        } else if path.extension().is_some_and(|e| e == "dmp") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The test name of a corpus file: its path under `dir`, without the extension.
fn name(kind: &str, dir: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(dir).unwrap_or(file).with_extension("");
    format!("{kind}::{}", relative.display())
}

fn read(path: &Path) -> Result<String, Failed> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// Compares `actual` with the expectation file at `path` (or writes it, under
/// `UPDATE_EXPECT`).
fn expect(path: &Path, actual: &str) -> Result<(), Failed> {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        return std::fs::write(path, actual)
            .map_err(|e| format!("cannot write {}: {e}", path.display()).into());
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "{} differs (UPDATE_EXPECT=1 to regenerate), - expected + actual:\n{}",
        path.display(),
        diff(&expected, actual)
    )
    .into())
}

/// A line diff of two texts: the lines only one side has, marked `-` (expected) and
/// `+` (actual), with two lines of context around each change and `@@ line N` where a
/// change starts (a longest common subsequence; texts too long for it show from the
/// first difference on).
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        let first = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = format!("@@ line {}\n", first + 1);
        for line in a.iter().skip(first).take(20) {
            out.push_str(&format!("-{line}\n"));
        }
        for line in b.iter().skip(first).take(20) {
            out.push_str(&format!("+{line}\n"));
        }
        return out;
    }
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // Each line of the edit script: ' ', '-' or '+', and the line.
    let mut script: Vec<(char, &str, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            script.push((' ', a[i], i));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            script.push(('+', b[j], i));
            j += 1;
        } else {
            script.push(('-', a[i], i));
            i += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 3).min(script.len());
        script[lo..hi].iter().any(|(mark, _, _)| *mark != ' ')
    };
    let mut out = String::new();
    let mut shown_last = false;
    for (k, (mark, line, at)) in script.iter().enumerate() {
        if near_change(k) {
            if !shown_last {
                out.push_str(&format!("@@ line {}\n", at + 1));
            }
            out.push_str(&format!("{mark}{line}\n"));
            shown_last = true;
        } else {
            shown_last = false;
        }
    }
    out
}

/// What one corpus file is held to.
type Check = fn(&Path) -> Result<(), Failed>;

fn ui(file: &Path) -> Result<(), Failed> {
    let source = read(file)?;
    let checked = check_source(&source);
    if checked.diagnostics.is_empty() {
        return Err("no diagnostic: a UI test must show one".into());
    }
    let shown = format!(
        "ui/{}",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("?")
    );
    let rendered = dmc::render(&checked.diagnostics, &shown, &source, dmc::Style::Plain);
    expect(&file.with_extension("stderr"), &rendered)
}

fn syntax(file: &Path) -> Result<(), Failed> {
    let source = read(file)?;
    let (ast, errors) = datamesh_compiler::parser::parse(&source);
    if !errors.is_empty() {
        return Err(format!("does not parse: {errors:?}").into());
    }
    let checked = check_source(&source);
    let Some(program) = checked.program else {
        let rendered = dmc::render(
            &checked.diagnostics,
            &file.display().to_string(),
            &source,
            dmc::Style::Plain,
        );
        return Err(format!("does not check:\n{rendered}").into());
    };
    let ast_result = expect(&file.with_extension("ast"), &format!("{ast:#?}\n"));
    let ir_result = expect(&file.with_extension("ir"), &format!("{program:#?}\n"));
    ast_result.and(ir_result)
}

/// The file checks with no diagnostic at all.
fn checks_cleanly(file: &Path) -> Result<(), Failed> {
    let source = read(file)?;
    let checked = check_source(&source);
    if checked.diagnostics.is_empty() {
        return Ok(());
    }
    let rendered = dmc::render(
        &checked.diagnostics,
        &file.display().to_string(),
        &source,
        dmc::Style::Plain,
    );
    Err(format!("it must check cleanly:\n{rendered}").into())
}

/// The file has `test` blocks, and they pass on the interpreter and on the JIT.
fn tests_pass_on_both_engines(file: &Path) -> Result<(), Failed> {
    for engine in [dmc::Engine::Interp, dmc::Engine::Jit] {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = dmc::test_with_engine(&[file], engine, dmc::Style::Plain, &mut out, &mut err);
        let out = String::from_utf8_lossy(&out);
        let err = String::from_utf8_lossy(&err);
        let closing = out.lines().last().unwrap_or_default();
        if code != 0
            || !err.is_empty()
            || !closing.ends_with(" 0 failed")
            || closing.starts_with("0 passed")
        {
            return Err(format!(
                "its tests must pass on {engine:?} (and there must be some):\n{out}\n{err}"
            )
            .into());
        }
    }
    Ok(())
}

/// A program of `compiler/tests/programs/`: its tests state what each construct folds
/// to, and both engines must pass them.
fn program(file: &Path) -> Result<(), Failed> {
    checks_cleanly(file)?;
    tests_pass_on_both_engines(file)
}

fn example(file: &Path) -> Result<(), Failed> {
    checks_cleanly(file)?;
    tests_pass_on_both_engines(file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let events = dir.join("events.jsonl");
    if !events.exists() {
        return Ok(());
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let options = dmc::RunOptions::default();
    let code = dmc::run(
        file,
        &events,
        options,
        dmc::Style::Plain,
        &mut out,
        &mut err,
    );
    if code != 0 {
        return Err(format!("`dmc run` failed: {}", String::from_utf8_lossy(&err)).into());
    }
    expect(&dir.join("expected.json"), &String::from_utf8_lossy(&out))
}

/// A trial that fails when a corpus has fewer files than it should (a moved
/// directory would otherwise test nothing and pass).
fn present(kind: &'static str, found: usize, at_least: usize) -> Trial {
    Trial::test(format!("{kind}::corpus_is_present"), move || {
        if found >= at_least {
            Ok(())
        } else {
            Err(format!("expected at least {at_least} {kind} files, found {found}").into())
        }
    })
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let kinds: [(&'static str, PathBuf, usize, Check); 4] = [
        ("ui", root().join("compiler/tests/ui"), 10, ui),
        ("syntax", root().join("compiler/tests/syntax"), 3, syntax),
        (
            "programs",
            root().join("compiler/tests/programs"),
            10,
            program,
        ),
        ("examples", root().join("examples"), 3, example),
    ];
    for (kind, dir, at_least, run) in kinds {
        let files = programs(&dir);
        trials.push(present(kind, files.len(), at_least));
        for file in files {
            let test_name = name(kind, &dir, &file);
            trials.push(Trial::test(test_name, move || run(&file)));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}
