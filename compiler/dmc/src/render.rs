//! Rendering diagnostics for people: miette's graphical report, with colour on a
//! terminal and a fixed plain theme for snapshots and pipes.
//!
//! A diagnostic whose snippet would show a very long line (a generated program, a
//! minified file) is rendered plainly instead: `file:line:col`, code, message, labels
//! and help, without the source. Miette pads with the column as a format width, which
//! panics past column 65,535, and echoing a megabyte line helps nobody.

use std::sync::Arc;

use datamesh_compiler::diag::Diagnostic;
use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource};

/// How to draw diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unicode box drawing and ANSI colours (a terminal).
    Color,
    /// Unicode box drawing, no colour, fixed width (snapshots, pipes).
    Plain,
}

impl Style {
    /// Colour when stderr is a terminal and `NO_COLOR` is unset.
    pub fn for_stderr() -> Style {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Style::Color
        } else {
            Style::Plain
        }
    }
}

/// Renders each diagnostic with its source snippet.
pub fn render(diagnostics: &[Diagnostic], name: &str, source: &str, style: Style) -> String {
    let theme = match style {
        Style::Color => GraphicalTheme::unicode(),
        Style::Plain => GraphicalTheme::unicode_nocolor(),
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let named = Arc::new(NamedSource::new(name, source.to_owned()));
    let mut out = String::new();
    for diagnostic in diagnostics {
        if shows_long_line(diagnostic, source) {
            plain(&mut out, diagnostic, name, source);
            out.push('\n');
            continue;
        }
        let sourced = diagnostic.clone().with_source(named.clone());
        if handler.render_report(&mut out, &sourced).is_err() {
            out.push_str(&format!("{}: {}\n", diagnostic.code, diagnostic.message));
        }
        out.push('\n');
    }
    out
}

/// The longest source line (in bytes) a graphical snippet may show.
const MAX_LINE: usize = 4096;

/// The longest message or label echoed by the plain rendering (in chars).
const MAX_TEXT: usize = 1000;

/// Whether a snippet of this diagnostic would show a line longer than [`MAX_LINE`]:
/// the lines its spans touch and the context line on either side.
fn shows_long_line(diagnostic: &Diagnostic, source: &str) -> bool {
    let spans = std::iter::once(diagnostic.span).chain(diagnostic.related.iter().map(|r| r.0));
    spans.into_iter().any(|span| {
        let start = (span.start as usize).min(source.len());
        let end = (span.end as usize).clamp(start, source.len());
        let bytes = source.as_bytes();
        // From the start of the line before the span to the end of the line after it.
        let mut from = bytes[..start]
            .iter()
            .rposition(|b| *b == b'\n')
            .unwrap_or(0);
        from = bytes[..from].iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let mut to = bytes[end..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| end + i + 1);
        to = bytes[to..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| to + i);
        bytes[from..to]
            .split(|b| *b == b'\n')
            .any(|line| line.len() > MAX_LINE)
    })
}

/// 1-based line and column (in chars) of a byte offset.
fn line_col(source: &str, offset: u32) -> (usize, usize) {
    let mut at = (offset as usize).min(source.len());
    while !source.is_char_boundary(at) {
        at -= 1;
    }
    let before = &source[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// At most [`MAX_TEXT`] chars of `text`.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The rendering without a snippet.
fn plain(out: &mut String, diagnostic: &Diagnostic, name: &str, source: &str) {
    use std::fmt::Write as _;
    let severity = if diagnostic.is_error() {
        "error"
    } else {
        "warning"
    };
    let _ = writeln!(
        out,
        "{severity}[{}]: {}",
        diagnostic.code,
        clip(&diagnostic.message)
    );
    let mut at = |span: datamesh_compiler::ast::Span, label: &str| {
        let (line, col) = line_col(source, span.start);
        let _ = write!(out, "  --> {name}:{line}:{col}");
        if label.is_empty() {
            let _ = writeln!(out);
        } else {
            let _ = writeln!(out, ": {}", clip(label));
        }
    };
    at(diagnostic.span, &diagnostic.label);
    for (span, label) in &diagnostic.related {
        at(*span, label);
    }
    if let Some(help) = &diagnostic.help {
        let _ = writeln!(out, "  help: {}", clip(help));
    }
    let _ = writeln!(
        out,
        "  (the source is not shown: a line is longer than {MAX_LINE} bytes)"
    );
}
