//! Embeds the book's diagnostics reference (`book/src/reference/diagnostics.md`) and
//! its example programs (`book/diagnostics/*.dmp`) for `dmc explain CODE`, so the
//! command and the book are one source.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let reference = root.join("book/src/reference/diagnostics.md");
    let examples = root.join("book/diagnostics");
    println!("cargo:rerun-if-changed={}", reference.display());
    println!("cargo:rerun-if-changed={}", examples.display());
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "dmp"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "/// The diagnostics reference, as the book has it.\npub const REFERENCE: &str = include_str!({:?});",
        reference.display().to_string()
    );
    out.push_str("/// The book's example program of each code: (file name, text).\npub const EXAMPLES: &[(&str, &str)] = &[\n");
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        println!("cargo:rerun-if-changed={}", file.display());
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            file.display().to_string()
        );
    }
    out.push_str("];\n");
    let generated = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("book.rs");
    if let Err(e) = std::fs::write(&generated, out) {
        panic!("cannot write {}: {e}", generated.display());
    }
}
