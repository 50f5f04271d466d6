//! Diagnostics: every problem the compiler or the interpreter reports, with a stable code.
//!
//! A [`Diagnostic`] is plain data (code, severity, message, primary span and label, help,
//! related labels) that implements [`miette::Diagnostic`]; binaries decide how to render
//! it. Invariant: codes are stable once released — `E0xxx` errors, `W0xxx` warnings,
//! `R0xxx` runtime traps — and each is documented in the book's diagnostics chapter.

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceCode};

use crate::ast::Span;
use crate::codes::{self, Code};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The program is accepted; the user may want to look.
    Warning,
    /// The program is rejected.
    Error,
}

/// One problem, located in one source file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Stable code such as `E0201`.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// One sentence saying what is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
    /// Text under the primary span.
    pub label: String,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
    /// Other places that explain the problem ("field declared here").
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    /// A new error.
    pub fn error(code: Code, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    /// A new warning.
    pub fn warning(code: Code, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message, span)
        }
    }

    /// Sets the primary label.
    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    /// Sets the help line.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds a related label.
    pub fn related(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.related.push((span, label.into()));
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Attaches the source so the diagnostic can be rendered with snippets.
    pub fn with_source(self, source: Arc<NamedSource<String>>) -> SourcedDiagnostic {
        SourcedDiagnostic {
            diagnostic: self,
            source,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Warning => miette::Severity::Warning,
            Severity::Error => miette::Severity::Error,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(
            (!self.label.is_empty()).then(|| self.label.clone()),
            self.span,
        );
        let related = self
            .related
            .iter()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

/// A diagnostic together with the source it points into, ready to render.
#[derive(Debug, Clone)]
pub struct SourcedDiagnostic {
    /// The problem.
    pub diagnostic: Diagnostic,
    /// The file it is in.
    pub source: Arc<NamedSource<String>>,
}

impl fmt::Display for SourcedDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.diagnostic, f)
    }
}

impl std::error::Error for SourcedDiagnostic {}

impl miette::Diagnostic for SourcedDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic.code()
    }

    fn severity(&self) -> Option<miette::Severity> {
        miette::Diagnostic::severity(&self.diagnostic)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        miette::Diagnostic::help(&self.diagnostic)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.diagnostic.labels()
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self.source.as_ref())
    }
}

/// Converts a syntax error into a diagnostic.
pub fn from_parse_error(error: &crate::parser::ParseError) -> Diagnostic {
    use crate::lexer::LexErrorKind;
    use crate::parser::ParseError;
    match error {
        ParseError::Lex(e) => match &e.kind {
            LexErrorKind::UnexpectedChar(c) => Diagnostic::error(
                codes::E0003,
                format!("unexpected character `{}`", c.escape_default()),
                e.span,
            )
            .label("not part of the language")
            .help("remove it; comments start with `//`"),
            LexErrorKind::UnterminatedString => {
                Diagnostic::error(codes::E0004, "unterminated string literal", e.span)
                    .label("this string has no closing quote")
                    .help("close it with `\"` before the end of the line")
            }
            LexErrorKind::BadEscape(esc) => Diagnostic::error(
                codes::E0005,
                format!("invalid escape `{esc}` in string literal"),
                e.span,
            )
            .label("invalid escape")
            .help("valid escapes are \\n \\t \\r \\0 \\\\ \\\" and \\u{hex}"),
            LexErrorKind::CStyleOperator(word) => Diagnostic::error(
                codes::E0003,
                format!(
                    "`{}` is not an operator of this language",
                    &source_text_of(word)
                ),
                e.span,
            )
            .label(format!("write `{word}`"))
            .help("boolean operators are the words `and`, `or` and `not`"),
            LexErrorKind::IntOutOfRange => Diagnostic::error(
                codes::E0006,
                "integer literal does not fit in `int` (64-bit)",
                e.span,
            )
            .label("out of range")
            .help("`int` ranges from -9223372036854775808 to 9223372036854775807"),
            LexErrorKind::FloatOutOfRange => {
                Diagnostic::error(codes::E0006, "float literal is not finite", e.span)
                    .label("out of range")
                    .help("`float` is a 64-bit IEEE double: at most about 1.8e308")
            }
            LexErrorKind::DurationOutOfRange => {
                Diagnostic::error(codes::E0006, "duration literal is out of range", e.span)
                    .label("out of range")
                    .help("durations are 64-bit microsecond counts (about ±292,000 years)")
            }
        },
        ParseError::Unexpected {
            found,
            expected,
            span,
        } => {
            let d = Diagnostic::error(codes::E0001, format!("unexpected {found}"), *span)
                .label("unexpected here");
            if found == "`{`" && expected.iter().any(|e| e == "int literal") {
                // A map, set or whole-document literal, as in `expect doc == { ... }`.
                return d.help(
                    "expected an expression; `{` starts none: there are no map, set or \
                     document literals, so assign or compare one field at a time \
                     (`expect balances[\"a1\"].balance == 70`)",
                );
            }
            match expected_help(expected) {
                Some(help) => d.help(help),
                None => d.help("nothing can start here: remove it, or check what comes before it"),
            }
        }
        ParseError::UnexpectedEof { expected, span } => {
            let d = Diagnostic::error(codes::E0002, "unexpected end of file", *span)
                .label("the file ends here");
            match expected_help(expected) {
                Some(help) if !expected.iter().any(|e| e == "`}`") => d.help(help),
                _ => d.help("a `}` may be missing"),
            }
        }
    }
}

fn expected_help(expected: &[String]) -> Option<String> {
    let has = |token: &str| expected.iter().any(|e| e == token);
    if has("int literal") {
        return Some("expected an expression".to_owned());
    }
    if has("`+=`") && has("`=`") {
        return Some(
            "expected an assignment (`=`, `+=`, `-=`, ...) or a call: a statement is `let`, \
             an assignment, a call, `if`, `delete` or `emit`"
                .to_owned(),
        );
    }
    if has("`projection`") && has("`event`") {
        return Some(
            "expected a declaration: `event`, `projection`, `import`, `export` or `test`"
                .to_owned(),
        );
    }
    if has("`+`") && has("`==`") {
        // After a complete expression: an operator could continue it.
        // Soft keywords are names too: "identifier" covers them.
        let names = has("identifier");
        let word = |e: &str| e.trim_matches('`').chars().all(|c| c.is_ascii_alphabetic());
        let others: Vec<String> = expected
            .iter()
            .filter(|e| !(OPERATORS.contains(&e.as_str()) || (names && word(e))))
            .cloned()
            .collect();
        return Some(match others.len() {
            0 => "expected an operator".to_owned(),
            1..=5 => format!("expected an operator, {}", join_or(&others)),
            _ => format!("expected an operator, {}, ...", others[..5].join(", ")),
        });
    }
    match expected.len() {
        0 => None,
        1..=8 => Some(format!("expected {}", join_or(expected))),
        _ => Some(format!("expected {}, ...", expected[..6].join(", "))),
    }
}

/// The tokens that continue an expression, as [`expected_help`] receives them.
const OPERATORS: &[&str] = &[
    "`+`", "`-`", "`*`", "`/`", "`%`", "`==`", "`!=`", "`<`", "`<=`", "`>`", "`>=`", "`and`",
    "`or`", "`??`", "`.`", "`[`", "`(`", "`?`",
];

/// `a`, `a or b`, `a, b or c`.
pub fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// The C-style spelling of a boolean operator word.
fn source_text_of(word: &str) -> &'static str {
    match word {
        "and" => "&&",
        "or" => "||",
        _ => "!",
    }
}
