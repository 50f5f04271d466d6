//! Rendering diagnostics for people: miette's graphical report, with colour on a
//! terminal and a fixed plain theme for snapshots and pipes.

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
        let sourced = diagnostic.clone().with_source(named.clone());
        if handler.render_report(&mut out, &sourced).is_err() {
            out.push_str(&format!("{}: {}\n", diagnostic.code, diagnostic.message));
        }
        out.push('\n');
    }
    out
}
