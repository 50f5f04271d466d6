//! String functions of the projection language: case mapping, trimming, searching,
//! slicing, splitting, and the conversions between strings, numbers and values.
//!
//! Invariant: every length and position here counts Unicode scalar values (`char`s),
//! never bytes, so no function can cut a character in half or panic on any input;
//! number parsing accepts exactly one documented syntax and never yields a non-finite
//! float.

use crate::limits::{MAX_STRING_BYTES, check_string};
use crate::{Result, Trap, Value};

/// Converts every character to lower case using the Unicode case mapping.
///
/// Case mapping may change the length of the string (some characters lower-case to
/// several), which is why this returns a new `String` rather than mapping in place.
///
/// # Errors
///
/// [`Trap::LimitExceeded`] when the result would be longer than
/// [`MAX_STRING_BYTES`](crate::limits::MAX_STRING_BYTES) (checked before it is built).
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::string::lower("ÄB"), Ok("äb".to_string()));
/// ```
pub fn lower(s: &str) -> Result<String> {
    check_mapped_len(s, |c| c.to_lowercase().map(char::len_utf8).sum())?;
    Ok(s.to_lowercase())
}

/// Checks that mapping every character of `s` to `mapped(c)` bytes stays within the
/// string limit, without building anything. A mapping grows a character at most
/// threefold, so strings under a third of the limit need no count.
fn check_mapped_len(s: &str, mapped: impl Fn(char) -> usize) -> Result<()> {
    if s.len() <= MAX_STRING_BYTES / 3 {
        return Ok(());
    }
    check_string(s.chars().map(mapped).sum())
}

/// Converts every character to upper case using the Unicode case mapping.
///
/// Like [`lower`], the result may be longer than the input: `"ß"` becomes `"SS"`.
///
/// # Errors
///
/// [`Trap::LimitExceeded`] when the result would be longer than
/// [`MAX_STRING_BYTES`](crate::limits::MAX_STRING_BYTES) (checked before it is built).
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::string::upper("straße"), Ok("STRASSE".to_string()));
/// ```
pub fn upper(s: &str) -> Result<String> {
    check_mapped_len(s, |c| c.to_uppercase().map(char::len_utf8).sum())?;
    Ok(s.to_uppercase())
}

/// Removes Unicode whitespace (spaces, tabs, newlines, no-break spaces, ...) from both
/// ends of the string, leaving interior whitespace alone.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::string::trim("\t a b \u{3000}\n"), "a b");
/// ```
pub fn trim(s: &str) -> String {
    s.trim().to_string()
}

/// Returns the number of Unicode scalar values (characters) in the string, not the
/// number of bytes, so that positions used by [`substring`] agree with it.
///
/// # Examples
///
/// ```
/// assert_eq!(datamesh_stdlib::string::len("héllo"), 5);
/// assert_eq!(datamesh_stdlib::string::len(""), 0);
/// ```
pub fn len(s: &str) -> i64 {
    count_to_i64(s.chars().count())
}

/// Returns whether `sub` occurs anywhere in `s`; the empty string occurs in every string.
///
/// # Examples
///
/// ```
/// assert!(datamesh_stdlib::string::contains("order-shipped", "ship"));
/// assert!(!datamesh_stdlib::string::contains("order", "Order"));
/// ```
pub fn contains(s: &str, sub: &str) -> bool {
    s.contains(sub)
}

/// Returns whether `s` begins with `prefix` (compared exactly, case-sensitively).
///
/// # Examples
///
/// ```
/// assert!(datamesh_stdlib::string::starts_with("order.created", "order."));
/// ```
pub fn starts_with(s: &str, prefix: &str) -> bool {
    s.starts_with(prefix)
}

/// Returns whether `s` ends with `suffix` (compared exactly, case-sensitively).
///
/// # Examples
///
/// ```
/// assert!(datamesh_stdlib::string::ends_with("report.csv", ".csv"));
/// ```
pub fn ends_with(s: &str, suffix: &str) -> bool {
    s.ends_with(suffix)
}

/// Joins the parts, in order, into one string with nothing between them.
///
/// # Errors
///
/// [`Trap::LimitExceeded`] when the result would be longer than
/// [`MAX_STRING_BYTES`](crate::limits::MAX_STRING_BYTES): the lengths are added up
/// before anything is allocated, so a string doubled on every event stops at the limit.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::string::concat;
/// assert_eq!(concat(&["a", "-", "b"]), Ok("a-b".to_string()));
/// assert_eq!(concat(&[]), Ok(String::new()));
/// ```
pub fn concat(parts: &[&str]) -> Result<String> {
    let total = parts.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
    check_string(total)?;
    Ok(parts.concat())
}

/// Returns the `count` characters of `s` that start at character position `start`
/// (0-based), so a program can cut strings without ever splitting a character.
///
/// # Errors
///
/// [`Trap::OutOfRange`] when `start` or `count` is negative or when the requested
/// range runs past the end of the string (`start + count > len(s)`).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::string::substring;
/// assert_eq!(substring("héllo", 1, 3), Ok("éll".to_string()));
/// assert_eq!(substring("héllo", 5, 0), Ok(String::new()));
/// assert!(substring("héllo", 4, 2).is_err());
/// ```
pub fn substring(s: &str, start: i64, count: i64) -> Result<String> {
    let length = len(s);
    let out_of_range = || {
        Trap::OutOfRange(format!(
            "substring(start: {start}, count: {count}) does not fit in a string of length {length}"
        ))
    };
    if start < 0 || count < 0 {
        return Err(out_of_range());
    }
    let end = start.checked_add(count).ok_or_else(out_of_range)?;
    if end > length {
        return Err(out_of_range());
    }
    let skip = usize::try_from(start).map_err(|_| out_of_range())?;
    let take = usize::try_from(count).map_err(|_| out_of_range())?;
    Ok(s.chars().skip(skip).take(take).collect())
}

/// Replaces every non-overlapping occurrence of `from`, scanning left to right, with
/// `to`. An empty `from` matches nowhere, so the string is returned unchanged.
///
/// # Errors
///
/// [`Trap::LimitExceeded`] when `to` is longer than `from` and the result would be
/// longer than [`MAX_STRING_BYTES`](crate::limits::MAX_STRING_BYTES) (the matches are
/// counted before anything is allocated).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::string::replace;
/// assert_eq!(replace("a-b-c", "-", "+"), Ok("a+b+c".to_string()));
/// assert_eq!(replace("aaa", "aa", "b"), Ok("ba".to_string()));
/// assert_eq!(replace("abc", "", "x"), Ok("abc".to_string()));
/// ```
pub fn replace(s: &str, from: &str, to: &str) -> Result<String> {
    if from.is_empty() {
        return Ok(s.to_string());
    }
    if to.len() > from.len() {
        let matches = s.matches(from).count();
        let grown = matches.saturating_mul(to.len() - from.len());
        check_string(s.len().saturating_add(grown))?;
    }
    Ok(s.replace(from, to))
}

/// Splits `s` at every occurrence of `sep` and returns the pieces in order, keeping
/// empty pieces, so `split` followed by joining with `sep` gives back `s`.
///
/// Splitting the empty string yields one empty piece.
///
/// # Errors
///
/// [`Trap::OutOfRange`] when `sep` is empty, because there is no sensible place to cut;
/// [`Trap::LimitExceeded`] when there would be more pieces than
/// [`MAX_COLLECTION_LEN`](crate::limits::MAX_COLLECTION_LEN) (counted first).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::string::split;
/// assert_eq!(split("a,,b", ","), Ok(vec!["a".to_string(), String::new(), "b".to_string()]));
/// assert!(split("abc", "").is_err());
/// ```
pub fn split(s: &str, sep: &str) -> Result<Vec<String>> {
    if sep.is_empty() {
        return Err(Trap::OutOfRange(
            "split separator must not be the empty string".to_string(),
        ));
    }
    // At most one piece per byte, and one more: only a string that long is counted.
    if s.len() >= crate::limits::MAX_COLLECTION_LEN {
        crate::limits::check_collection("list", s.matches(sep).count().saturating_add(1))?;
    }
    Ok(s.split(sep).map(str::to_string).collect())
}

/// Parses a decimal integer: an optional `+` or `-` followed by one or more ASCII
/// digits, with nothing else (no whitespace, no underscores, no `0x`).
///
/// # Errors
///
/// [`Trap::InvalidConversion`] naming the input when it is not in that syntax or its
/// value does not fit in an `int` (i64).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::string::parse_int;
/// assert_eq!(parse_int("-42"), Ok(-42));
/// assert_eq!(parse_int("+7"), Ok(7));
/// assert!(parse_int(" 7").is_err());
/// assert!(parse_int("9223372036854775808").is_err());
/// ```
pub fn parse_int(s: &str) -> Result<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Trap::InvalidConversion(format!("`{s}` is not an int")));
    }
    s.parse::<i64>().map_err(|_| {
        Trap::InvalidConversion(format!(
            "`{s}` is outside the int range {}..={}",
            i64::MIN,
            i64::MAX
        ))
    })
}

/// Parses a float in Rust's float syntax (`1`, `-2.5`, `.5`, `1e-3`, `6.02E23`, ...)
/// and requires the result to be finite, because no document can hold NaN or infinity.
///
/// # Errors
///
/// [`Trap::InvalidConversion`] naming the input when it is not a float, when it spells
/// a non-finite value (`inf`, `NaN`), or when it overflows to infinity (`1e400`).
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::string::parse_float;
/// assert_eq!(parse_float("2.5"), Ok(2.5));
/// assert_eq!(parse_float("1e3"), Ok(1000.0));
/// assert!(parse_float("NaN").is_err());
/// assert!(parse_float("1e400").is_err());
/// ```
pub fn parse_float(s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(f),
        Ok(_) => Err(Trap::InvalidConversion(format!(
            "`{s}` is not a finite float"
        ))),
        Err(_) => Err(Trap::InvalidConversion(format!("`{s}` is not a float"))),
    }
}

/// Formats a float as the shortest text that parses back to the same value and always
/// looks like a float: integral values below 1e16 in magnitude get a trailing `.0`,
/// very large or very small magnitudes use exponent notation.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::string::format_float;
/// assert_eq!(format_float(1.0), "1.0");
/// assert_eq!(format_float(0.5), "0.5");
/// assert_eq!(format_float(-2.0), "-2.0");
/// assert_eq!(format_float(1e21), "1e21");
/// ```
pub fn format_float(f: f64) -> String {
    // Rust's `Debug` for f64 is the shortest round-trip form, keeps `.0` on integral
    // values, and switches to exponent notation at 1e16 and below 1e-4.
    format!("{f:?}")
}

/// Renders any value as the text a program sees when it converts the value to a string.
///
/// Scalars print plainly (`none`, `true`, `42`, `1.5`, a string as itself, timestamps
/// in RFC 3339, durations like `1h30m`). Lists and sets print as `[a, b]` and maps as
/// `{k: v}`; inside a collection, strings are double-quoted with JSON-style escapes so
/// the structure stays readable.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{string::to_string, Value};
/// assert_eq!(to_string(&Value::Float(2.0)), "2.0");
/// assert_eq!(to_string(&Value::str("hi")), "hi");
/// assert_eq!(to_string(&Value::List(vec![Value::Int(1), Value::str("a")])), "[1, \"a\"]");
/// ```
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, false, usize::MAX);
    out
}

/// [`to_string`] as a program calls it: the text may be at most
/// [`MAX_STRING_BYTES`](crate::limits::MAX_STRING_BYTES) long.
///
/// # Errors
///
/// [`Trap::LimitExceeded`] when the text would be longer. Writing stops as soon as it
/// passes the limit (within one element), so converting a large collection never
/// builds more than about the limit.
///
/// # Examples
///
/// ```
/// use datamesh_stdlib::{string::to_string_limited, Value};
/// assert_eq!(to_string_limited(&Value::Int(7)), Ok("7".to_string()));
/// let big = Value::List(vec![Value::Int(1_000_000); 200_000]);
/// assert!(to_string_limited(&big).is_err());
/// ```
pub fn to_string_limited(v: &Value) -> Result<String> {
    let mut out = String::new();
    write_value(&mut out, v, false, MAX_STRING_BYTES);
    check_string(out.len())?;
    Ok(out)
}

/// Appends the text of `v` to `out`; `nested` says whether `v` sits inside a
/// collection, where strings are quoted. Stops between elements once `out` is longer
/// than `budget` bytes (the caller then refuses the result).
fn write_value(out: &mut String, v: &Value, nested: bool, budget: usize) {
    match v {
        Value::None => out.push_str("none"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&format_float(*f)),
        Value::Str(s) if nested => write_quoted(out, s),
        Value::Str(s) => out.push_str(s),
        Value::Timestamp(us) => out.push_str(&crate::time::format_rfc3339(*us)),
        Value::Duration(us) => out.push_str(&crate::time::format_duration(*us)),
        Value::List(items) => write_sequence(out, items.iter(), budget),
        Value::Set(items) => write_sequence(out, items.iter(), budget),
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if out.len() > budget {
                    return;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, k, true, budget);
                out.push_str(": ");
                write_value(out, v, true, budget);
            }
            out.push('}');
        }
    }
}

/// Appends `[a, b, ...]` with each element rendered as a nested value (see
/// [`write_value`] for `budget`).
fn write_sequence<'a>(out: &mut String, items: impl Iterator<Item = &'a Value>, budget: usize) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if out.len() > budget {
            return;
        }
        if i > 0 {
            out.push_str(", ");
        }
        write_value(out, item, true, budget);
    }
    out.push(']');
}

/// Appends `s` in double quotes, escaping `"`, `\` and control characters as JSON does.
fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Converts a count to `int`, saturating (unreachably) at `i64::MAX`.
pub(crate) fn count_to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn case_mapping_is_unicode() {
        let ok = |s: &str| Ok(s.to_string());
        assert_eq!(lower("ÄB"), ok("äb"));
        assert_eq!(upper("straße"), ok("STRASSE"));
        assert_eq!(lower("İ"), ok("i\u{307}"));
        assert_eq!(lower(""), ok(""));
        assert_eq!(upper("ǆ"), ok("Ǆ"));
    }

    #[test]
    fn trim_strips_unicode_whitespace_only_at_ends() {
        assert_eq!(trim("  a  b  "), "a  b");
        assert_eq!(trim("\u{a0}\u{2003}x\u{3000}"), "x");
        assert_eq!(trim(" \t\n "), "");
        assert_eq!(trim(""), "");
    }

    #[test]
    fn len_counts_chars_not_bytes() {
        assert_eq!(len(""), 0);
        assert_eq!(len("abc"), 3);
        assert_eq!(len("héllo"), 5);
        assert_eq!(len("😀"), 1);
        assert_eq!(len("e\u{301}"), 2); // combining mark is its own scalar value
    }

    #[test]
    fn search_functions() {
        assert!(contains("abc", ""));
        assert!(contains("", ""));
        assert!(!contains("", "a"));
        assert!(contains("grüße", "üß"));
        assert!(starts_with("abc", ""));
        assert!(starts_with("abc", "ab"));
        assert!(!starts_with("ab", "abc"));
        assert!(ends_with("abc", "bc"));
        assert!(ends_with("abc", ""));
        assert!(!ends_with("bc", "abc"));
    }

    #[test]
    fn concat_parts() {
        assert_eq!(concat(&[]), Ok(String::new()));
        assert_eq!(concat(&["a"]), Ok("a".to_string()));
        assert_eq!(concat(&["é", "", "😀"]), Ok("é😀".to_string()));
    }

    #[test]
    fn substring_is_char_based() {
        assert_eq!(substring("héllo", 0, 5), Ok("héllo".to_string()));
        assert_eq!(substring("héllo", 1, 1), Ok("é".to_string()));
        assert_eq!(substring("😀a😀", 2, 1), Ok("😀".to_string()));
        assert_eq!(substring("abc", 3, 0), Ok(String::new()));
        assert_eq!(substring("", 0, 0), Ok(String::new()));
    }

    #[test]
    fn substring_out_of_range() {
        for (start, count) in [
            (-1, 1),
            (0, -1),
            (0, 4),
            (4, 0),
            (3, 1),
            (i64::MAX, 1),
            (1, i64::MAX),
            (i64::MAX, i64::MAX),
            (i64::MIN, 0),
            (0, i64::MIN),
        ] {
            let result = substring("abc", start, count);
            assert!(
                matches!(result, Err(Trap::OutOfRange(_))),
                "substring(abc, {start}, {count}) = {result:?}"
            );
        }
        assert_eq!(
            substring("abc", 2, 2),
            Err(Trap::OutOfRange(
                "substring(start: 2, count: 2) does not fit in a string of length 3".to_string()
            ))
        );
    }

    #[test]
    fn replace_all_occurrences() {
        let ok = |s: &str| Ok(s.to_string());
        assert_eq!(replace("a.b.c", ".", "::"), ok("a::b::c"));
        assert_eq!(replace("abc", "", "x"), ok("abc"));
        assert_eq!(replace("", "", "x"), ok(""));
        assert_eq!(replace("aaaa", "aa", "a"), ok("aa"));
        assert_eq!(replace("abc", "z", "x"), ok("abc"));
        assert_eq!(replace("äöä", "ä", ""), ok("ö"));
    }

    #[test]
    fn split_keeps_empty_pieces() {
        assert_eq!(
            split("a,b", ","),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(
            split(",a,", ","),
            Ok(vec![String::new(), "a".to_string(), String::new()])
        );
        assert_eq!(split("", ","), Ok(vec![String::new()]));
        assert_eq!(split("abc", "::"), Ok(vec!["abc".to_string()]));
        assert_eq!(
            split("a::b", "::"),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert!(matches!(split("abc", ""), Err(Trap::OutOfRange(_))));
        assert!(matches!(split("", ""), Err(Trap::OutOfRange(_))));
    }

    #[test]
    fn parse_int_accepts_signed_decimal() {
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("-0"), Ok(0));
        assert_eq!(parse_int("+12"), Ok(12));
        assert_eq!(parse_int("007"), Ok(7));
        assert_eq!(parse_int("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
    }

    #[test]
    fn parse_int_rejects_everything_else() {
        for s in [
            "",
            "+",
            "-",
            "+-1",
            "--1",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "1.0",
            "1e3",
            "١",
            "１",
            "abc",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999",
        ] {
            assert!(
                matches!(parse_int(s), Err(Trap::InvalidConversion(ref m)) if m.contains(&format!("`{s}`"))),
                "parse_int({s:?}) = {:?}",
                parse_int(s)
            );
        }
        assert_eq!(
            parse_int("x1"),
            Err(Trap::InvalidConversion("`x1` is not an int".to_string()))
        );
    }

    #[test]
    fn parse_float_requires_finite() {
        assert_eq!(parse_float("1"), Ok(1.0));
        assert_eq!(parse_float("-2.5"), Ok(-2.5));
        assert_eq!(parse_float(".5"), Ok(0.5));
        assert_eq!(parse_float("1e-3"), Ok(0.001));
        assert_eq!(parse_float("1e-400"), Ok(0.0));
        assert_eq!(parse_float("1.7976931348623157e308"), Ok(f64::MAX));
        for s in [
            "", "inf", "-inf", "infinity", "NaN", "nan", "1e309", "-1e309", " 1", "1,5", "1_0",
            "0x1", "abc",
        ] {
            assert!(
                matches!(parse_float(s), Err(Trap::InvalidConversion(ref m)) if m.contains(&format!("`{s}`"))),
                "parse_float({s:?}) = {:?}",
                parse_float(s)
            );
        }
    }

    #[test]
    fn format_float_always_looks_like_a_float() {
        assert_eq!(format_float(1.0), "1.0");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(-2.0), "-2.0");
        assert_eq!(format_float(0.0), "0.0");
        assert_eq!(format_float(-0.0), "-0.0");
        assert_eq!(format_float(1e21), "1e21");
        assert_eq!(format_float(1e15), "1000000000000000.0");
        assert_eq!(format_float(9_999_999_999_999_998.0), "9999999999999998.0");
        assert_eq!(format_float(1e16), "1e16");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(1e-7), "1e-7");
        assert_eq!(format_float(f64::MAX), "1.7976931348623157e308");
    }

    #[test]
    fn format_float_round_trips() {
        for f in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1.0 / 3.0,
            1e16,
            1e-5,
            123_456.789,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            let text = format_float(f);
            assert_eq!(
                parse_float(&text).map(f64::to_bits),
                Ok(f.to_bits()),
                "{text}"
            );
        }
    }

    #[test]
    fn strings_stop_at_the_limit_before_they_are_built() {
        let half = "a".repeat(MAX_STRING_BYTES / 2);
        // Exactly at the limit is allowed; one byte more is not.
        assert_eq!(
            concat(&[&half, &half]).map(|s| s.len()),
            Ok(MAX_STRING_BYTES)
        );
        let over = concat(&[&half, &half, "b"]);
        assert_eq!(
            over,
            Err(Trap::LimitExceeded(format!(
                "a string of {} bytes is longer than the limit of {MAX_STRING_BYTES} bytes",
                MAX_STRING_BYTES + 1
            )))
        );
        // A sum of lengths that overflows usize saturates instead of wrapping.
        let parts = vec![half.as_str(); 5];
        assert!(matches!(concat(&parts), Err(Trap::LimitExceeded(_))));
        // replace counts what it would add; shrinking replacements are never refused.
        let x = "x".repeat(1024);
        assert!(matches!(
            replace(&half, "a", &x),
            Err(Trap::LimitExceeded(_))
        ));
        assert_eq!(
            replace(&half, "aa", "a").map(|s| s.len()),
            Ok(half.len() / 2)
        );
        // Case mapping that would grow past the limit ("ΐ" upper-cases to three chars).
        let greek = "ΐ".repeat(MAX_STRING_BYTES / 4);
        assert!(matches!(upper(&greek), Err(Trap::LimitExceeded(_))));
        assert!(lower(&greek).is_ok());
        // split refuses more pieces than a list may hold, before building them.
        let commas = ",".repeat(MAX_STRING_BYTES);
        assert!(matches!(split(&commas, ","), Err(Trap::LimitExceeded(_))));
        assert_eq!(split(&half, ",").map(|v| v.len()), Ok(1));
    }

    #[test]
    fn to_string_of_a_large_collection_stops_near_the_limit() {
        let big = Value::List(vec![Value::str("x".repeat(1000)); 5000]);
        assert!(matches!(
            to_string_limited(&big),
            Err(Trap::LimitExceeded(_))
        ));
        // The unlimited form (for rendering outside programs) still renders all of it.
        assert!(to_string(&big).len() > 5_000_000);
        assert_eq!(
            to_string_limited(&Value::List(vec![Value::Int(1), Value::str("a")])),
            Ok("[1, \"a\"]".to_string())
        );
    }

    #[test]
    fn to_string_scalars() {
        assert_eq!(to_string(&Value::None), "none");
        assert_eq!(to_string(&Value::Bool(true)), "true");
        assert_eq!(to_string(&Value::Bool(false)), "false");
        assert_eq!(to_string(&Value::Int(-5)), "-5");
        assert_eq!(to_string(&Value::Float(3.0)), "3.0");
        assert_eq!(to_string(&Value::str("a \"q\"")), "a \"q\"");
        assert_eq!(
            to_string(&Value::Timestamp(1_714_554_000_000_000)),
            "2024-05-01T09:00:00Z"
        );
        assert_eq!(to_string(&Value::Duration(5_400_000_000)), "1h30m");
    }

    #[test]
    fn to_string_collections_quote_strings() {
        assert_eq!(to_string(&Value::List(vec![])), "[]");
        assert_eq!(to_string(&Value::Map(BTreeMap::new())), "{}");
        let list = Value::List(vec![
            Value::str("a\"b\\c\n\u{1}"),
            Value::Int(1),
            Value::None,
            Value::Float(0.5),
        ]);
        assert_eq!(to_string(&list), r#"["a\"b\\c\n\u0001", 1, none, 0.5]"#);
        let set: BTreeSet<Value> = [Value::str("b"), Value::str("a")].into_iter().collect();
        assert_eq!(to_string(&Value::Set(set)), r#"["a", "b"]"#);
        let mut map = BTreeMap::new();
        map.insert(Value::str("k2"), Value::List(vec![Value::str("x")]));
        map.insert(Value::str("k1"), Value::Duration(1));
        assert_eq!(to_string(&Value::Map(map)), r#"{"k1": 1us, "k2": ["x"]}"#);
        assert_eq!(
            to_string(&Value::List(vec![Value::Timestamp(0)])),
            "[1970-01-01T00:00:00Z]"
        );
    }
}
