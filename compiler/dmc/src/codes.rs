//! `dmc explain CODE`: a diagnostic code's page, from the book's reference
//! (`book/src/reference/diagnostics.md`, embedded at build time with the example
//! programs it includes), like `rustc --explain`.
//!
//! Invariant: the text is the book's, so the command and the book cannot disagree;
//! `tests::every_code_the_toolchain_emits_has_a_page` fails when a code is added
//! without its page.

mod book {
    include!(concat!(env!("OUT_DIR"), "/book.rs"));
}

/// Whether `text` looks like a diagnostic code (`E0102`, `W0001`, `R0002`, ...).
pub fn is_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 5
        && b"EWRDLMT".contains(&bytes[0].to_ascii_uppercase())
        && bytes[1..].iter().all(u8::is_ascii_digit)
}

/// Every code the reference has a page for, in its order, with its title (the first
/// bold phrase of the page).
pub fn list() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (code, body) in pages() {
        let title = body
            .split("**")
            .nth(1)
            .map(|t| t.trim_end_matches('.').to_owned())
            .unwrap_or_default();
        out.push((code.to_owned(), title));
    }
    out
}

/// The pages: `(code, text up to the next heading)`.
fn pages() -> Vec<(&'static str, &'static str)> {
    let text = book::REFERENCE;
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some(heading) = line.strip_prefix("## ") {
            starts.push((offset, heading.trim()));
        }
        offset += line.len();
    }
    let mut out = Vec::new();
    for (i, (start, heading)) in starts.iter().enumerate() {
        if !is_code(heading) {
            continue;
        }
        let end = starts.get(i + 1).map_or(text.len(), |(s, _)| *s);
        let body_start = start + text[*start..].find('\n').map_or(0, |n| n + 1);
        out.push((*heading, text[body_start..end].trim()));
    }
    out
}

/// The page of `code` as plain text: the heading, the book's text with its example
/// program inlined, and where the book has it. `None` for a code with no page.
pub fn explain(code: &str) -> Option<String> {
    let code = code.to_ascii_uppercase();
    let (_, body) = pages().into_iter().find(|(c, _)| *c == code)?;
    let mut out = format!("{code}\n\n");
    for line in body.lines() {
        // `{{#include ../../diagnostics/E0001.dmp}}`: the example program.
        if let Some(path) = line
            .trim()
            .strip_prefix("{{#include ")
            .and_then(|rest| rest.strip_suffix("}}"))
        {
            let name = path.rsplit('/').next().unwrap_or(path);
            match book::EXAMPLES.iter().find(|(file, _)| *file == name) {
                Some((_, text)) => out.push_str(text.trim_end()),
                None => out.push_str(line),
            }
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "\n(The book, \"Diagnostics\": book/src/reference/diagnostics.md#{}.)\n",
        code.to_ascii_lowercase()
    ));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the sources of the compiler, `dmc` and the node name: as a literal
    /// (`"M0001"`) or a constant of the code table (`codes::E0102`).
    fn emitted() -> std::collections::BTreeSet<String> {
        fn walk(dir: &std::path::Path, found: &mut std::collections::BTreeSet<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path
                    .extension()
                    .is_some_and(|e| e == "rs" || e == "lalrpop")
                    && !path.ends_with("dmc/src/codes.rs")
                    && !path.ends_with("compiler/src/codes.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for (at, _) in text.match_indices("codes::") {
                        let candidate = text.get(at + 7..at + 12).unwrap_or_default();
                        if is_code(candidate) {
                            found.insert(candidate.to_owned());
                        }
                    }
                    let bytes = text.as_bytes();
                    for i in 0..bytes.len().saturating_sub(6) {
                        if bytes[i] == b'"' && bytes[i + 6] == b'"' {
                            let candidate = &text[i + 1..i + 6];
                            if candidate.is_ascii()
                                && is_code(candidate)
                                && candidate.as_bytes()[0].is_ascii_uppercase()
                            {
                                found.insert(candidate.to_owned());
                            }
                        }
                    }
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut found = std::collections::BTreeSet::new();
        for dir in ["compiler/src", "compiler/dmc/src", "runtime/src", "grammar"] {
            walk(&root.join(dir), &mut found);
        }
        found
    }

    #[test]
    fn every_code_the_toolchain_emits_is_in_the_table_and_has_a_page() {
        let table = datamesh_compiler::codes::ALL;
        let emitted = emitted();
        assert!(emitted.len() > 50, "{emitted:?}");
        let unknown: Vec<&String> = emitted
            .iter()
            .filter(|code| datamesh_compiler::codes::Code::find(code).is_none())
            .collect();
        assert!(
            unknown.is_empty(),
            "codes not in compiler/src/codes.rs: {unknown:?}"
        );
        // The table and the book agree: every code has its page, with the same title.
        let book = list();
        for code in table {
            assert!(
                book.iter()
                    .any(|(id, title)| id == code.id && title == code.title),
                "{} ({}) is not in the book's diagnostics reference with that title",
                code.id,
                code.title
            );
        }
        assert_eq!(book.len(), table.len(), "pages without a code in the table");
    }

    #[test]
    fn a_page_has_the_books_text_and_example() {
        let page = explain("e0001").expect("E0001");
        assert!(page.starts_with("E0001\n\n**Unexpected token.**"), "{page}");
        assert!(
            page.contains("event Deposited { account: string, amount int }"),
            "{page}"
        );
        assert!(!page.contains("{{#include"), "{page}");
        assert!(explain("E9999").is_none());
        assert!(list().iter().any(|(c, t)| c == "W0001" && !t.is_empty()));
    }
}
