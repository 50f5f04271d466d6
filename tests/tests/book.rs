//! The book tells the truth: `book/verify.py` checks every snippet, every diagnostics
//! example, every `$ dmc ...` console block's output, every include and every link
//! against the `dmc` built with this test run. Without `python3` the test says so and
//! passes.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_book_matches_the_implementation() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed, so book/verify.py did not run");
        return;
    }
    // The `dmc` of this build: beside this test's own directory (target/debug/deps).
    let exe = std::env::current_exe().expect("the test's path");
    let dmc = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("dmc"))
        .filter(|dmc| dmc.exists())
        .expect(
            "no dmc beside the tests: `cargo test --workspace` builds it (or `cargo build -p dmc`)",
        );
    let out = Command::new("python3")
        .arg(root().join("book/verify.py"))
        .arg(&dmc)
        .output()
        .expect("verify.py runs");
    assert!(
        out.status.success(),
        "book/verify.py found the book out of date (fix the page, or run `python3 book/verify.py --fix` and review the diff):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The performance page's table and chart are what `scripts/perf-chart.py` makes of the
/// summary checked in beside the page: neither can be edited into saying something the
/// measured run did not.
#[test]
fn the_performance_page_matches_its_summary() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed, so scripts/perf-chart.py did not run");
        return;
    }
    let script = root().join("scripts/perf-chart.py");
    let summary = root().join("book/src/node/performance.tsv");
    let chart = Command::new("python3")
        .arg(&script)
        .arg(&summary)
        .arg("--check")
        .arg(root().join("book/src/images/performance.svg"))
        .output()
        .expect("perf-chart.py runs");
    assert!(
        chart.status.success(),
        "{}",
        String::from_utf8_lossy(&chart.stderr)
    );
    let table = Command::new("python3")
        .arg(&script)
        .arg(&summary)
        .arg("--table")
        .output()
        .expect("perf-chart.py runs");
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    let page = std::fs::read_to_string(root().join("book/src/node/performance.md"))
        .expect("the performance page");
    assert!(
        page.contains(table.as_ref()),
        "book/src/node/performance.md does not hold the table of performance.tsv: run \
         scripts/perf-chart.py book/src/node/performance.tsv --table and paste it:\n{table}"
    );
}
