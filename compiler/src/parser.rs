//! The parser: tokens to [`ast::File`](crate::ast::File), with error recovery.
//!
//! The LALRPOP grammar lives in `grammar/dmp.lalrpop` at the workspace top; this module
//! feeds it the logos tokens and turns its recovered errors into [`ParseError`]s.
//! Invariant: `parse` always returns a tree; every syntax error is in the error list.

use lalrpop_util::ParseError as LalrpopError;

use crate::ast::{File, Span};
use crate::lexer::{self, LexError, Token};

lalrpop_util::lalrpop_mod!(
    #[allow(
        clippy::all,
        clippy::pedantic,
        clippy::unwrap_used,
        missing_debug_implementations,
        unused_qualifications
    )]
    grammar,
    "/dmp.rs"
);

/// A syntax error.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// A lexical error.
    Lex(LexError),
    /// A token the grammar did not allow here.
    Unexpected {
        /// What was found.
        found: String,
        /// What could have come instead (as written in the grammar).
        expected: Vec<String>,
        /// Where.
        span: Span,
    },
    /// The file ended in the middle of something.
    UnexpectedEof {
        /// What could have come instead.
        expected: Vec<String>,
        /// The end of the file.
        span: Span,
    },
}

/// Parses a whole file. Always returns a tree (possibly with `Error` nodes) and every
/// syntax error found, in source order.
pub fn parse(source: &str) -> (File, Vec<ParseError>) {
    let (tokens, lex_errors) = lexer::lex(source);
    let mut recovered = Vec::new();
    let result = grammar::FileParser::new().parse(&mut recovered, tokens);
    let mut errors: Vec<ParseError> = lex_errors.into_iter().map(ParseError::Lex).collect();
    errors.extend(recovered.into_iter().map(|r| convert(r.error, source)));
    let file = match result {
        Ok(file) => file,
        Err(fatal) => {
            errors.push(convert(fatal, source));
            File { items: Vec::new() }
        }
    };
    errors.sort_by_key(|e| e.span().start);
    errors.dedup_by_key(|e| e.span());
    (file, errors)
}

/// Parses a single expression (used by tests and tools).
pub fn parse_expr(source: &str) -> Result<crate::ast::Expr, Vec<ParseError>> {
    let (tokens, lex_errors) = lexer::lex(source);
    let mut recovered = Vec::new();
    let result = grammar::ExprParser::new().parse(&mut recovered, tokens);
    let mut errors: Vec<ParseError> = lex_errors.into_iter().map(ParseError::Lex).collect();
    errors.extend(recovered.into_iter().map(|r| convert(r.error, source)));
    match result {
        Ok(expr) if errors.is_empty() => Ok(expr),
        Ok(_) => Err(errors),
        Err(fatal) => {
            errors.push(convert(fatal, source));
            Err(errors)
        }
    }
}

impl ParseError {
    /// Where the error is.
    pub fn span(&self) -> Span {
        match self {
            ParseError::Lex(e) => e.span,
            ParseError::Unexpected { span, .. } | ParseError::UnexpectedEof { span, .. } => *span,
        }
    }
}

fn convert(error: LalrpopError<usize, Token, ()>, source: &str) -> ParseError {
    match error {
        LalrpopError::InvalidToken { location } => ParseError::Unexpected {
            found: "invalid token".to_owned(),
            expected: Vec::new(),
            span: Span::new(location, location + 1),
        },
        LalrpopError::UnrecognizedEof { location, expected } => ParseError::UnexpectedEof {
            expected: clean_expected(expected),
            span: Span::new(location.min(source.len()), source.len()),
        },
        LalrpopError::UnrecognizedToken {
            token: (l, token, r),
            expected,
        } => ParseError::Unexpected {
            found: token.to_string(),
            expected: clean_expected(expected),
            span: Span::new(l, r),
        },
        LalrpopError::ExtraToken {
            token: (l, token, r),
        } => ParseError::Unexpected {
            found: token.to_string(),
            expected: Vec::new(),
            span: Span::new(l, r),
        },
        // The token stream never carries user errors: lexical errors are collected
        // before parsing.
        LalrpopError::User { error: () } => ParseError::Unexpected {
            found: "input".to_owned(),
            expected: Vec::new(),
            span: Span::new(0, 0),
        },
    }
}

/// Turns LALRPOP's terminal names (`"\"{\""`, `ident`) into what a user reads.
fn clean_expected(expected: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = expected
        .into_iter()
        .map(|t| {
            let t = t.trim_matches('"').replace("\\\"", "\"");
            match t.as_str() {
                "ident" => "identifier".to_owned(),
                "int" | "float" | "string" | "duration" => format!("{t} literal"),
                _ => format!("`{t}`"),
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
