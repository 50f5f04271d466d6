//! The common payload's fast path: a flat JSON object of plain scalars
//! (`{"account":"acc-000123","amount":42,"note":"..."}`), read by a scanner that knows
//! nothing else, as a serde deserializer so that the row decoder ([`super::RowSeed`])
//! and its conversions run unchanged on it.
//!
//! Invariant: it accepts a subset of what serde_json accepts and hands the visitors
//! exactly the calls serde_json would for that subset (borrowed strings, `u64` for a
//! non-negative integer, `i64` for a negative one, `bool`, unit for `null`). Anything
//! else (an escape in a string, a float, an integer serde_json would read as a float
//! such as `-0` or one past 64 bits, a nested array or object, malformed JSON) is
//! [`Unsupported`], and the caller decodes the payload again with serde_json, which
//! decides and words the error. So it can make decoding faster, never different.

use serde::de::value::{BoolDeserializer, BorrowedStrDeserializer, I64Deserializer};
use serde::de::value::{U64Deserializer, UnitDeserializer};
use serde::de::{DeserializeSeed, MapAccess, Visitor};

/// Why the fast path stopped: the payload is not in its subset, or a visitor refused
/// a value (a field of the wrong type, say); the general decoder says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a flat object of plain scalars")
    }
}

impl std::error::Error for Unsupported {}

impl serde::de::Error for Unsupported {
    fn custom<T: std::fmt::Display>(_: T) -> Unsupported {
        Unsupported
    }
}

/// Deserializes `text`, which must be one flat object and nothing else, with `seed`.
pub(super) fn decode<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    seed: S,
) -> Result<S::Value, Unsupported> {
    let mut flat = Flat { text, at: 0 };
    let value = seed.deserialize(&mut flat)?;
    flat.skip_ws();
    if flat.at == text.len() {
        Ok(value)
    } else {
        Err(Unsupported)
    }
}

/// The scanner: the text and how far it has read.
struct Flat<'de> {
    text: &'de str,
    at: usize,
}

impl<'de> Flat<'de> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Skips JSON's whitespace (space, tab, line feed, carriage return).
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes `byte`, or fails.
    fn expect(&mut self, byte: u8) -> Result<(), Unsupported> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// Consumes the literal `word` (`true`, `false`, `null`), or fails.
    fn literal(&mut self, word: &str) -> Result<(), Unsupported> {
        if self.text.as_bytes()[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// A string with no escape and no control character, borrowed from the text.
    fn string(&mut self) -> Result<&'de str, Unsupported> {
        self.expect(b'"')?;
        let start = self.at;
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.at) {
                Some(b'"') => break,
                // An escape (serde_json builds an owned string) or a control character
                // (an error there).
                Some(b'\\' | 0..=0x1F) | None => return Err(Unsupported),
                Some(_) => self.at += 1,
            }
        }
        // Both ends are ASCII quotes, so the slice is on character boundaries.
        let s = self.text.get(start..self.at).ok_or(Unsupported)?;
        self.at += 1;
        Ok(s)
    }

    /// An integer as serde_json reads it: `u64` when it has no sign, `i64` when it has
    /// one; [`Unsupported`] for what serde_json reads as a float (a fraction, an
    /// exponent, `-0`, past 64 bits) or refuses (a leading zero, no digit).
    fn integer(&mut self) -> Result<Number, Unsupported> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = bytes.get(self.at) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or(Unsupported)?;
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0
            || (digits > 1 && bytes[start] == b'0')
            || matches!(bytes.get(self.at), Some(b'.' | b'e' | b'E'))
        {
            return Err(Unsupported);
        }
        if !negative {
            return Ok(Number::Unsigned(value));
        }
        // serde_json reads `-0` as the float -0.0, and below i64::MIN as a float.
        if value == 0 || value > i64::MIN.unsigned_abs() {
            return Err(Unsupported);
        }
        Ok(Number::Signed(0i64.wrapping_sub_unsigned(value)))
    }
}

/// An integer of the fast path.
enum Number {
    Unsigned(u64),
    Signed(i64),
}

impl<'de> serde::Deserializer<'de> for &mut Flat<'de> {
    type Error = Unsupported;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unsupported> {
        self.skip_ws();
        self.expect(b'{')?;
        visitor.visit_map(Entries {
            flat: self,
            first: true,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The entries of the object.
struct Entries<'a, 'de> {
    flat: &'a mut Flat<'de>,
    first: bool,
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Unsupported;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Unsupported> {
        let flat = &mut *self.flat;
        flat.skip_ws();
        if flat.peek() == Some(b'}') {
            flat.at += 1;
            return Ok(None);
        }
        if !self.first {
            flat.expect(b',')?;
            flat.skip_ws();
        }
        self.first = false;
        let key = flat.string()?;
        flat.skip_ws();
        flat.expect(b':')?;
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Unsupported> {
        let flat = &mut *self.flat;
        flat.skip_ws();
        match flat.peek() {
            Some(b'"') => {
                let s = flat.string()?;
                seed.deserialize(BorrowedStrDeserializer::new(s))
            }
            Some(b't') => {
                flat.literal("true")?;
                seed.deserialize(BoolDeserializer::new(true))
            }
            Some(b'f') => {
                flat.literal("false")?;
                seed.deserialize(BoolDeserializer::new(false))
            }
            Some(b'n') => {
                flat.literal("null")?;
                seed.deserialize(UnitDeserializer::new())
            }
            Some(b'-' | b'0'..=b'9') => match flat.integer()? {
                Number::Unsigned(n) => seed.deserialize(U64Deserializer::new(n)),
                Number::Signed(n) => seed.deserialize(I64Deserializer::new(n)),
            },
            // A nested array or object, or not JSON.
            _ => Err(Unsupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use datamesh_stdlib::Value;

    use super::super::{PayloadError, RowSeed, Seen, decode_general, defaults};
    use crate::ast::Span;
    use crate::ir::{EventType, Field, Type};

    fn event() -> EventType {
        let field = |name: &str, ty: Type, default: Option<Value>| Field {
            name: name.to_owned(),
            ty,
            default,
            span: Span::new(0, 0),
        };
        EventType {
            name: "E".to_owned(),
            fields: vec![
                field("a", Type::Int, None),
                field("b", Type::String, Some(Value::str("-"))),
                field(
                    "c",
                    Type::Optional(Box::new(Type::Float)),
                    Some(Value::None),
                ),
                field("d", Type::Bool, Some(Value::Bool(false))),
                field("e", Type::Timestamp, Some(Value::Timestamp(0))),
                field("f", Type::Float, Some(Value::Float(0.5))),
                field("g", Type::Duration, Some(Value::Duration(0))),
                field("h", Type::List(Box::new(Type::Int)), Some(Value::None)),
            ],
            span: Span::new(0, 0),
        }
    }

    /// What the fast path makes of `text`, if it takes it.
    fn fast(event: &EventType, text: &str) -> Option<Result<String, PayloadError>> {
        let mut row = vec![Value::None; event.fields.len()];
        let mut seen = Seen::new(event.fields.len());
        let seed = RowSeed {
            event,
            row: &mut row,
            seen: &mut seen,
            read: None,
        };
        super::decode(text, seed).ok()?;
        Some(defaults(event, &mut row, &seen).map(|()| format!("{row:?}")))
    }

    /// What serde_json's general decoder makes of it.
    fn general(event: &EventType, text: &str) -> Result<String, PayloadError> {
        let mut row = Vec::new();
        let de = serde_json::Deserializer::from_str(text);
        decode_general(event, (de, text.as_bytes()), None, &mut row).map(|()| format!("{row:?}"))
    }

    #[test]
    fn the_common_payloads_take_the_fast_path() {
        let e = event();
        for text in [
            r#"{"a":1,"b":"acc-000123","c":null,"d":true}"#,
            " {\n\t\"b\" : \"é ü\" ,\r\"a\": -9223372036854775808 } \n",
            r#"{"a":18,"e":1700000000000000,"g":5,"f":3,"c":-4}"#,
            r#"{"a":0,"b":"","e":"2026-01-01T00:00:00Z","g":"5s"}"#,
            // A duplicate key: the last one counts, as with serde_json.
            r#"{"a":1,"a":2}"#,
        ] {
            let got = fast(&e, text).unwrap_or_else(|| panic!("not taken: {text}"));
            assert_eq!(got, general(&e, text), "{text}");
        }
    }

    #[test]
    fn what_it_cannot_decode_exactly_it_leaves_to_serde_json() {
        let e = event();
        for text in [
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":01}"#,
            r#"{"a":-}"#,
            r#"{"a":1,"b":"x\"y"}"#,
            "{\"a\":1,\"b\":\"\u{1}\"}",
            r#"{"a":1,"h":[1]}"#,
            r#"{"a":1,}"#,
            r#"{,"a":1}"#,
            r#"{"a" 1}"#,
            r#"{"a":1} x"#,
            r#"{"a":tru}"#,
            r#"{"a":1"b":2}"#,
            r#"[1]"#,
            "",
            "{\"a\":1\u{a0}}",
        ] {
            assert_eq!(fast(&e, text), None, "{text}");
        }
    }

    /// A small deterministic generator of nearly-flat objects, valid and not.
    struct Gen(u64);

    impl Gen {
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            from[(self.0 % from.len() as u64) as usize]
        }
    }

    #[test]
    fn whatever_it_decodes_it_decodes_as_serde_json_does() {
        const KEYS: &[&str] = &[
            "\"a\"",
            "\"b\"",
            "\"c\"",
            "\"d\"",
            "\"e\"",
            "\"f\"",
            "\"g\"",
            "\"h\"",
            "\"zz\"",
            "\"\\u0061\"",
            "\"é\"",
            "a",
        ];
        const VALUES: &[&str] = &[
            "0",
            "-0",
            "1",
            "-1",
            "42",
            "007",
            "-01",
            "1.5",
            "1e3",
            "-",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "\"x\"",
            "\"\"",
            "\"é\"",
            "\"a\\\"b\"",
            "\"2026-01-01T00:00:00Z\"",
            "\"2026-13-01T00:00:00Z\"",
            "\"5s\"",
            "\"1h30m\"",
            "\"nope\"",
            "[1,2]",
            "[]",
            "{}",
            "\"\u{1}\"",
            "\"tab\there\"",
        ];
        const SPACES: &[&str] = &["", "", "", " ", "\n\t", "\r", "\u{a0}"];
        const GLUE: &[&str] = &[",", ",", ",", ",", ",", ",", "", ",,", " , "];
        let e = event();
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let (mut taken, cases) = (0, 100_000);
        for _ in 0..cases {
            let mut text = String::from(g.pick(SPACES));
            text.push('{');
            let n = g
                .pick(&["0", "1", "2", "3", "4", "6"])
                .parse::<usize>()
                .unwrap_or(0);
            for i in 0..n {
                if i > 0 {
                    text.push_str(g.pick(GLUE));
                }
                text.push_str(g.pick(SPACES));
                text.push_str(g.pick(KEYS));
                text.push_str(g.pick(SPACES));
                text.push_str(g.pick(&[":", ":", ":", ":", ""]));
                text.push_str(g.pick(SPACES));
                text.push_str(g.pick(VALUES));
            }
            text.push_str(g.pick(SPACES));
            text.push_str(g.pick(&["}", "}", "}", "}", "", "} 1", "}}"]));
            text.push_str(g.pick(SPACES));
            if let Some(got) = fast(&e, &text) {
                taken += 1;
                assert_eq!(got, general(&e, &text), "{text:?}");
            }
        }
        // The comparison means something only if the fast path took a fair share.
        assert!(taken > cases / 20, "the fast path took {taken} of {cases}");
    }
}
