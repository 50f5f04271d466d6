//! The `datamesh` commands the book and the README show are real (issue 13): every
//! `datamesh ...` line of their shell blocks is a command line the CLI accepts, and the
//! walk-through of "Running a node" runs against a real node in order, printing what
//! the page says it prints (JSON shown in `# {...}` comments must match, times aside).

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Splits a shell line into words (single and double quotes, backslash line ends
/// already joined); drops a trailing `# comment`, `&` and anything after `|` or `>`.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ' | '\t') => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '#') if !in_word => break,
            (None, '|' | '>' | '&') if !in_word => break,
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The shell blocks of a Markdown file: each block's lines, continuation lines joined.
fn shell_blocks(text: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed.starts_with("```sh") || trimmed == "```bash" => {
                current = Some(Vec::new())
            }
            Some(_) if trimmed.starts_with("```") => blocks.extend(current.take()),
            Some(lines) => {
                if let Some(last) = lines.last_mut()
                    && last.ends_with('\\')
                {
                    last.pop();
                    last.push(' ');
                    last.push_str(trimmed);
                } else {
                    lines.push(line.to_owned());
                }
            }
            None => {}
        }
    }
    blocks
}

fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("book").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![
        root().join("README.md"),
        root().join("examples/mesh/README.md"),
    ];
    walk(&root().join("book/src"), &mut out);
    out
}

#[test]
fn every_datamesh_command_the_book_shows_is_one_the_cli_accepts() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        for block in shell_blocks(&text) {
            for line in block {
                let words = words(line.trim());
                if words.first().map(String::as_str) != Some("datamesh") {
                    continue;
                }
                checked += 1;
                if let Err(e) = datamesh_cli::cli::check_args(&words[1..]) {
                    let first = e.lines().next().unwrap_or_default().to_owned();
                    wrong.push(format!("{}: `{}`: {first}", page.display(), line.trim()));
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} commands found");
    assert!(
        wrong.is_empty(),
        "commands the CLI refuses:\n{}",
        wrong.join("\n")
    );
}

/// Whether `actual` has every field of `expected` with the same value (strings that
/// look like times excepted: they differ from run to run).
fn matches(expected: &serde_json::Value, actual: &serde_json::Value) -> bool {
    match (expected, actual) {
        (serde_json::Value::Object(e), serde_json::Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|found| matches(v, found))),
        (serde_json::Value::String(e), serde_json::Value::String(_))
            if e.len() >= 20 && e.as_bytes().get(4) == Some(&b'-') && e.contains('T') =>
        {
            true
        }
        (e, a) => e == a,
    }
}

/// The first JSON value of `text` (a comment may go on after it).
fn first_json(text: &str) -> Option<serde_json::Value> {
    serde_json::Deserializer::from_str(text.trim())
        .into_iter::<serde_json::Value>()
        .next()
        .and_then(Result::ok)
}

/// Runs the `datamesh` lines of `block` against the node at `url` in order; the JSON a
/// command's comment shows (inline, `# {...}`, or on the lines after it) must match
/// what it printed last. Returns how many commands ran.
fn run_block(url: &str, block: &[String]) -> usize {
    let mut pending: Option<(String, String, String)> = None;
    let mut ran = 0;
    let check = |pending: &Option<(String, String, String)>| {
        let Some((command, out, comment)) = pending else {
            return;
        };
        let Some(expected) = first_json(comment) else {
            return;
        };
        let actual = out
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok());
        assert!(
            actual.as_ref().is_some_and(|a| matches(&expected, a)),
            "`{command}` printed {out:?}; the book says {expected}"
        );
    };
    for line in block {
        let trimmed = line.trim();
        if let Some(text) = trimmed.strip_prefix('#') {
            if let Some((_, _, comment)) = &mut pending {
                comment.push_str(text);
            }
            continue;
        }
        check(&pending);
        pending = None;
        let words = words(trimmed);
        if words.first().map(String::as_str) != Some("datamesh") {
            continue;
        }
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        let (code, out, err) = cli_at(url, &args);
        assert_eq!(code, 0, "`{trimmed}` failed: {err}");
        ran += 1;
        let inline = trimmed
            .find("# {")
            .map(|at| trimmed[at + 1..].to_owned())
            .unwrap_or_default();
        pending = Some((trimmed.to_owned(), out, inline));
    }
    check(&pending);
    ran
}

#[test]
fn the_walk_through_and_versions_of_running_a_node_run_as_written() {
    let page = std::fs::read_to_string(root().join("book/src/node/running.md")).expect("page");
    let block_after = |heading: &str| {
        let start = page.find(heading).expect(heading);
        shell_blocks(&page[start..])
            .into_iter()
            .next()
            .expect("a block")
    };
    let guard = temp_dir("book-walk", Engine::Jit);
    let node = Node::start(&guard.path().join("data"), Engine::Jit, &[]);
    let ran = run_block(&node.url, &block_after("## A walk-through"));
    assert!(ran >= 8, "{ran} commands ran");
    // The versions section goes on from the walk-through's node.
    let ran = run_block(&node.url, &block_after("## Versions side by side"));
    assert!(ran >= 5, "{ran} commands ran");
}

#[test]
fn the_readme_walk_through_runs_as_written_over_both_transports() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let start = readme.find("## Walk-through").expect("the walk-through");
    let block = shell_blocks(&readme[start..])
        .into_iter()
        .next()
        .expect("a block");
    // Once over gRPC, once over the wire protocol on the node's Unix socket, each on a
    // node of its own.
    for wire in [false, true] {
        let guard = temp_dir("readme-walk", Engine::Jit);
        let socket = guard.path().join("s.sock");
        let socket = socket.to_str().expect("utf-8");
        let node = Node::start(
            &guard.path().join("data"),
            Engine::Jit,
            &["--socket", socket],
        );
        let url = if wire {
            format!("dmw+unix:{socket}")
        } else {
            node.url.clone()
        };
        let ran = run_block(&url, &block);
        assert!(ran >= 6, "{ran} commands ran over {url}");
    }
}
