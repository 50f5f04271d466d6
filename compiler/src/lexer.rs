//! The lexer: turns `.dmp` source text into tokens with byte spans (logos).
//!
//! Invariant: lexing never fails as a whole. A character that starts no token, an
//! unterminated string or an out-of-range number is recorded as a [`LexError`] and
//! lexing goes on, so the parser still sees the rest of the file and one run reports
//! every problem.
//!
//! Invariant: lexing uses a bounded amount of stack whatever the input. Logos compiles
//! each pattern to a state machine whose transitions are function calls, and in a
//! debug build (where they are not turned into jumps) a pattern that loops through
//! several states, such as an alternation repeated with `*` or skips that follow each
//! other, recursed once per repetition: three thousand comment lines, or a string of
//! fifty thousand escapes, overflowed a 2 MiB stack. So every pattern here is a single
//! character class loop, and the repeating parts (string bodies, the groups of a
//! duration) are scanned by hand in callbacks; comments are tokens that [`lex`] drops.

use logos::Logos;

use crate::ast::Span;

/// A token of the projection language.
#[derive(Logos, Debug, Clone, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
pub enum Token {
    #[token("event")]
    Event,
    #[token("projection")]
    Projection,
    #[token("key")]
    Key,
    #[token("state")]
    State,
    #[token("on")]
    On,
    #[token("where")]
    Where,
    #[token("let")]
    Let,
    #[token("if")]
    If,
    #[token("else")]
    Else,
    #[token("delete")]
    Delete,
    #[token("emit")]
    Emit,
    #[token("import")]
    Import,
    #[token("export")]
    Export,
    #[token("to")]
    To,
    #[token("test")]
    Test,
    #[token("given")]
    Given,
    #[token("expect")]
    Expect,
    #[token("from")]
    From,
    #[token("with")]
    With,
    #[token("and")]
    And,
    #[token("or")]
    Or,
    #[token("not")]
    Not,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[token("none")]
    None,

    #[regex("[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice().to_owned())]
    Ident(String),
    /// An integer literal; `None` when it does not fit in i64 (reported by the lexer).
    #[regex("[0-9][0-9_]*", |lex| parse_int(lex.slice()))]
    Int(Option<i64>),
    #[regex(r"[0-9][0-9_]*\.[0-9][0-9_]*([eE][+-]?[0-9]+)?", |lex| parse_float(lex.slice()))]
    #[regex(r"[0-9][0-9_]*[eE][+-]?[0-9]+", |lex| parse_float(lex.slice()))]
    Float(Option<f64>),
    /// A duration literal such as `90s` or `1h30m`, in microseconds.
    #[regex("[0-9]+(d|h|m|s|ms|us)", duration)]
    Duration(Option<i64>),
    /// A string literal (made from [`Token::Quoted`] by [`lex`]).
    Str(Result<String, String>),
    /// A string that reaches the end of the line without its closing quote.
    UnterminatedStr,
    /// A string literal as scanned: whether it was closed. [`lex`] turns it into
    /// [`Token::Str`] or [`Token::UnterminatedStr`]; the parser never sees it.
    #[token("\"", string)]
    Quoted(bool),
    /// A `// ...` comment, dropped by [`lex`].
    #[regex(r"//[^\n]*", allow_greedy = true)]
    Comment,

    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token(";")]
    Semi,
    #[token(":")]
    Colon,
    #[token(".")]
    Dot,
    #[token("?")]
    Question,
    #[token("??")]
    Coalesce,
    #[token("=")]
    Assign,
    #[token("+=")]
    PlusAssign,
    #[token("-=")]
    MinusAssign,
    #[token("*=")]
    StarAssign,
    #[token("/=")]
    SlashAssign,
    #[token("%=")]
    PercentAssign,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
    #[token("%")]
    Percent,
    #[token("@")]
    At,
    /// `&&`, `||` or `!`: reported, then read as `and`, `or`, `not` so parsing goes on.
    #[token("&&")]
    AndAnd,
    #[token("||")]
    OrOr,
    #[token("!")]
    Bang,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Ident(name) => write!(f, "identifier `{name}`"),
            Token::Int(_) => f.write_str("integer literal"),
            Token::Float(_) => f.write_str("float literal"),
            Token::Duration(_) => f.write_str("duration literal"),
            Token::Str(_) | Token::UnterminatedStr | Token::Quoted(_) => {
                f.write_str("string literal")
            }
            Token::Comment => f.write_str("comment"),
            other => write!(f, "`{}`", other.text()),
        }
    }
}

impl Token {
    /// The fixed text of a keyword or punctuation token.
    pub fn text(&self) -> &'static str {
        match self {
            Token::Event => "event",
            Token::Projection => "projection",
            Token::Key => "key",
            Token::State => "state",
            Token::On => "on",
            Token::Where => "where",
            Token::Let => "let",
            Token::If => "if",
            Token::Else => "else",
            Token::Delete => "delete",
            Token::Emit => "emit",
            Token::Import => "import",
            Token::Export => "export",
            Token::To => "to",
            Token::Test => "test",
            Token::Given => "given",
            Token::Expect => "expect",
            Token::From => "from",
            Token::With => "with",
            Token::And => "and",
            Token::Or => "or",
            Token::Not => "not",
            Token::True => "true",
            Token::False => "false",
            Token::None => "none",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::Comma => ",",
            Token::Semi => ";",
            Token::Colon => ":",
            Token::Dot => ".",
            Token::Question => "?",
            Token::Coalesce => "??",
            Token::Assign => "=",
            Token::PlusAssign => "+=",
            Token::MinusAssign => "-=",
            Token::StarAssign => "*=",
            Token::SlashAssign => "/=",
            Token::PercentAssign => "%=",
            Token::EqEq => "==",
            Token::NotEq => "!=",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Percent => "%",
            Token::At => "@",
            Token::AndAnd => "and",
            Token::OrOr => "or",
            Token::Bang => "not",
            Token::Ident(_)
            | Token::Int(_)
            | Token::Float(_)
            | Token::Duration(_)
            | Token::Str(_)
            | Token::UnterminatedStr
            | Token::Quoted(_)
            | Token::Comment => "",
        }
    }
}

/// A problem found while lexing.
#[derive(Debug, Clone, PartialEq)]
pub struct LexError {
    /// What went wrong.
    pub kind: LexErrorKind,
    /// Where.
    pub span: Span,
}

/// The kinds of lexical error.
#[derive(Debug, Clone, PartialEq)]
pub enum LexErrorKind {
    /// A character that starts no token.
    UnexpectedChar(char),
    /// A string literal without its closing quote.
    UnterminatedString,
    /// An invalid escape sequence in a string literal.
    BadEscape(String),
    /// An integer literal outside i64.
    IntOutOfRange,
    /// A float literal that is not finite.
    FloatOutOfRange,
    /// A duration literal outside the representable range.
    DurationOutOfRange,
    /// `&&`, `||` or `!` instead of `and`, `or`, `not`.
    CStyleOperator(&'static str),
}

/// A token with its byte offsets, as the parser consumes it.
pub type Spanned = (usize, Token, usize);

/// Lexes the whole source, returning the tokens and every lexical error.
///
/// Bad characters are dropped after being recorded; malformed literals become tokens
/// with a placeholder value so parsing continues.
pub fn lex(source: &str) -> (Vec<Spanned>, Vec<LexError>) {
    let mut tokens = Vec::new();
    let mut errors = Vec::new();
    let mut lexer = Token::lexer(source);
    while let Some(result) = lexer.next() {
        let range = lexer.span();
        let span = Span::new(range.start, range.end);
        let token = match result {
            Ok(token) => token,
            Err(()) => {
                let ch = source[range.start..].chars().next().unwrap_or('?');
                errors.push(LexError {
                    kind: LexErrorKind::UnexpectedChar(ch),
                    span,
                });
                continue;
            }
        };
        let token = match token {
            Token::Comment => continue,
            Token::Quoted(true) => Token::Str(unescape(&source[range.clone()])),
            Token::Quoted(false) => Token::UnterminatedStr,
            other => other,
        };
        let token = match token {
            Token::Int(None) => {
                errors.push(LexError {
                    kind: LexErrorKind::IntOutOfRange,
                    span,
                });
                Token::Int(Some(0))
            }
            Token::Float(None) => {
                errors.push(LexError {
                    kind: LexErrorKind::FloatOutOfRange,
                    span,
                });
                Token::Float(Some(0.0))
            }
            Token::Duration(None) => {
                errors.push(LexError {
                    kind: LexErrorKind::DurationOutOfRange,
                    span,
                });
                Token::Duration(Some(0))
            }
            Token::Str(Err(escape)) => {
                errors.push(LexError {
                    kind: LexErrorKind::BadEscape(escape),
                    span,
                });
                Token::Str(Ok(String::new()))
            }
            c_style @ (Token::AndAnd | Token::OrOr | Token::Bang) => {
                let (word, token) = match c_style {
                    Token::AndAnd => ("and", Token::And),
                    Token::OrOr => ("or", Token::Or),
                    _ => ("not", Token::Not),
                };
                errors.push(LexError {
                    kind: LexErrorKind::CStyleOperator(word),
                    span,
                });
                token
            }
            Token::UnterminatedStr => {
                errors.push(LexError {
                    kind: LexErrorKind::UnterminatedString,
                    span,
                });
                let body = &source[range.start + 1..range.end];
                Token::Str(Ok(unescape_body(body).unwrap_or_default()))
            }
            other => other,
        };
        tokens.push((range.start, token, range.end));
    }
    (tokens, errors)
}

/// Scans the rest of a string literal after its opening quote, as the pattern
/// `"([^"\\\n]|\\.)*"?` would: up to and including the closing quote (`true`), or up to
/// the end of the line, a `\` that escapes nothing, or the end of the file (`false`).
fn string(lex: &mut logos::Lexer<'_, Token>) -> bool {
    let rest = lex.remainder().as_bytes();
    let mut i = 0;
    let closed = loop {
        match rest.get(i) {
            Some(b'"') => {
                i += 1;
                break true;
            }
            Some(b'\\') => match rest.get(i + 1) {
                // An escape covers the next character; the bytes of a multi-byte
                // character after it are never `"`, `\` or a newline, so stepping over
                // its first byte is enough.
                Some(next) if *next != b'\n' => i += 2,
                _ => break false,
            },
            Some(b'\n') | None => break false,
            Some(_) => i += 1,
        }
    };
    lex.bump(i);
    closed
}

/// Extends a duration literal's first group (`90s`) over the groups that follow it
/// (`1h30m15s`), as the pattern `([0-9]+(d|h|m|s|ms|us))+` would, and parses it.
fn duration(lex: &mut logos::Lexer<'_, Token>) -> Option<i64> {
    let rest = lex.remainder().as_bytes();
    let mut end = 0;
    loop {
        let digits = rest[end..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            break;
        }
        let after = &rest[end + digits..];
        // The longest unit first: a unit's second letter is never a digit, so taking it
        // never stops a following group from matching.
        let unit = if after.starts_with(b"ms") || after.starts_with(b"us") {
            2
        } else if matches!(after.first(), Some(b'd' | b'h' | b'm' | b's')) {
            1
        } else {
            0
        };
        if unit == 0 {
            break;
        }
        end += digits + unit;
    }
    lex.bump(end);
    datamesh_stdlib::time::parse_duration(lex.slice()).ok()
}

fn parse_int(text: &str) -> Option<i64> {
    text.replace('_', "").parse().ok()
}

fn parse_float(text: &str) -> Option<f64> {
    text.replace('_', "")
        .parse()
        .ok()
        .filter(|f: &f64| f.is_finite())
}

/// Unescapes a quoted literal; `Err` carries the offending escape.
fn unescape(quoted: &str) -> Result<String, String> {
    let body = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(quoted);
    unescape_body(body)
}

fn unescape_body(body: &str) -> Result<String, String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('u') => {
                let rest = chars.as_str();
                let Some(hex) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) else {
                    return Err("\\u".to_owned());
                };
                let ch = u32::from_str_radix(hex.0, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("\\u{{{}}}", hex.0))?;
                out.push(ch);
                chars = hex.1.chars();
            }
            Some(other) => return Err(format!("\\{other}")),
            None => return Err("\\".to_owned()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Token> {
        lex(src).0.into_iter().map(|(_, t, _)| t).collect()
    }

    #[test]
    fn keywords_idents_and_literals() {
        assert_eq!(
            kinds(r#"on Deposited { balance += 1_000 } "a\"b" 1.5 90s 1h30m"#),
            vec![
                Token::On,
                Token::Ident("Deposited".into()),
                Token::LBrace,
                Token::Ident("balance".into()),
                Token::PlusAssign,
                Token::Int(Some(1000)),
                Token::RBrace,
                Token::Str(Ok("a\"b".into())),
                Token::Float(Some(1.5)),
                Token::Duration(Some(90_000_000)),
                Token::Duration(Some(5_400_000_000)),
            ]
        );
    }

    #[test]
    fn strings_and_durations_scanned_by_hand_lex_as_their_patterns_did() {
        let d = |us: i64| Token::Duration(Some(us));
        assert_eq!(
            kinds("1h30m15s 1ms5 1m5x 3us 2d1 1_0d 1msx"),
            vec![
                d(5_415_000_000),
                d(1_000),
                Token::Int(Some(5)),
                d(60_000_000),
                Token::Int(Some(5)),
                Token::Ident("x".into()),
                d(3),
                d(172_800_000_000),
                Token::Int(Some(1)),
                Token::Int(Some(10)),
                Token::Ident("d".into()),
                d(1_000),
                Token::Ident("x".into()),
            ]
        );
        let (tokens, errors) = lex("\"a\\\"b\" \"é\\é\" \"a\\\n\"open");
        assert_eq!(
            tokens,
            vec![
                (0, Token::Str(Ok("a\"b".into())), 6),
                (7, Token::Str(Ok(String::new())), 14),
                (15, Token::Str(Ok("a".into())), 17),
                (19, Token::Str(Ok("open".into())), 24),
            ]
        );
        let kinds: Vec<_> = errors.into_iter().map(|e| (e.kind, e.span)).collect();
        assert_eq!(
            kinds,
            vec![
                (LexErrorKind::BadEscape("\\é".into()), Span::new(7, 14)),
                (LexErrorKind::UnterminatedString, Span::new(15, 17)),
                (LexErrorKind::UnexpectedChar('\\'), Span::new(17, 18)),
                (LexErrorKind::UnterminatedString, Span::new(19, 24)),
            ]
        );
    }

    #[test]
    fn long_runs_of_comments_escapes_and_duration_groups_lex_on_a_small_stack() {
        // Each of these recursed once per repetition inside logos' generated state
        // machine (debug build) and overflowed a 2 MiB stack.
        let sources = [
            "// c\n".repeat(50_000),
            format!("\"{}\"", "a\\n".repeat(100_000)),
            format!("\"{}", "\\\"".repeat(100_000)),
            "1ms".repeat(100_000),
            "1d".repeat(100_000),
        ];
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                for source in &sources {
                    let (tokens, _) = lex(source);
                    assert!(tokens.len() <= 1);
                }
            })
            .expect("spawn")
            .join()
            .expect("no overflow");
    }

    #[test]
    fn errors_are_collected_and_lexing_continues() {
        let (tokens, errors) = lex("a # b \"open\n 99999999999999999999 c");
        let names: Vec<_> = tokens.into_iter().map(|(_, t, _)| t).collect();
        assert_eq!(names.len(), 5);
        let kinds: Vec<_> = errors.into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                LexErrorKind::UnexpectedChar('#'),
                LexErrorKind::UnterminatedString,
                LexErrorKind::IntOutOfRange
            ]
        );
    }
}
