//! JSON at the edges: decoding event payloads into typed rows, and encoding documents
//! and keys for output.
//!
//! Invariant: decoding is strict and total — a payload either yields a row that matches
//! the event type exactly (every field present or defaulted, every value of its declared
//! type) or a [`PayloadError`] naming the field; it never guesses or coerces silently.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use datamesh_stdlib::{Value, string, time};
use serde_json::{Map, Number, Value as Json};

use crate::ir::{EventType, Field, Type};

mod flat;

/// A payload that does not match its event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match field { Some(f) => format!("field `{f}`: {message}"), None => message.clone() })]
pub struct PayloadError {
    /// The offending field (dotted path for nested values), if one is to blame.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl PayloadError {
    /// An error at `field`, whose name is quoted as an [`excerpt`].
    fn at(field: &str, message: impl Into<String>) -> PayloadError {
        PayloadError {
            field: Some(excerpt(field).into_owned()),
            message: clip_message(message.into()),
        }
    }

    /// An error about the payload as a whole.
    fn whole(message: impl Into<String>) -> PayloadError {
        PayloadError {
            field: None,
            message: clip_message(message.into()),
        }
    }
}

/// The most bytes of one piece of input (a key, a name, a string value) an error message
/// quotes; longer input is cut (see [`excerpt`]).
pub const MAX_ECHO: usize = 64;

/// The most bytes of one error message about a payload (see [`clip_message`]).
pub const MAX_MESSAGE: usize = 512;

/// How deep a payload may nest objects and arrays (the payload object is level 1).
/// Declared fields hold scalars or collections of scalars (three levels at most);
/// the bound keeps a payload of an undeclared type decodable by any later declaration
/// and every recursive walk over it shallow.
pub const MAX_DEPTH: usize = 64;

/// Input text as an error message may quote it: as it is up to [`MAX_ECHO`] bytes;
/// otherwise its start, an ellipsis and its length in bytes (`aaaa… (5242880 bytes)`),
/// so a message never grows with what a client sent.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_ECHO {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_ECHO - 16;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} bytes)",
        text.get(..end).unwrap_or_default(),
        text.len()
    ))
}

/// A message cut to at most about [`MAX_MESSAGE`] bytes (with an ellipsis and its
/// original length), for messages that may quote input through a library's error.
pub fn clip_message(message: String) -> String {
    clip_to(message, MAX_MESSAGE)
}

/// `message` cut to at most about `max` bytes, as [`clip_message`].
pub fn clip_to(message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let mut end = max.saturating_sub(24);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} bytes)",
        message.get(..end).unwrap_or_default(),
        message.len()
    )
}

/// A library's error about `input` with the input quoted as an [`excerpt`].
fn quoting(error: impl std::fmt::Display, input: &str) -> String {
    let message = error.to_string();
    if input.len() <= MAX_ECHO {
        message
    } else {
        clip_message(message.replace(input, &excerpt(input)))
    }
}

/// Decodes a JSON payload into a row in the event's field order.
///
/// # Errors
/// [`PayloadError`] when the payload is not an object, has an unknown field, lacks a
/// required field, or has a value of the wrong type.
pub fn decode_payload(event: &EventType, data: &Json) -> Result<Vec<Value>, PayloadError> {
    let Json::Object(object) = data else {
        return Err(PayloadError::whole(format!(
            "the payload of `{}` must be a JSON object, found {}",
            excerpt(&event.name),
            json_kind(data)
        )));
    };
    if let Some(unknown) = object.keys().find(|k| event.field(k).is_none()) {
        let fields: Vec<Cow<'_, str>> = event.fields.iter().map(|f| excerpt(&f.name)).collect();
        return Err(PayloadError::at(
            unknown,
            format!(
                "`{}` has no such field (its fields: {})",
                excerpt(&event.name),
                fields.join(", ")
            ),
        ));
    }
    event
        .fields
        .iter()
        .map(|field| match object.get(&field.name) {
            None => field.default.clone().ok_or_else(|| {
                PayloadError::at(
                    &field.name,
                    format!("missing (required, of type `{}`)", field.ty),
                )
            }),
            Some(Json::Null) if matches!(field.ty, Type::Optional(_)) => Ok(Value::None),
            Some(Json::Null) => Err(PayloadError::at(
                &field.name,
                format!("is null, but `{}` is not optional", field.ty),
            )),
            Some(json) => {
                decode_value(&field.ty, json).map_err(|m| PayloadError::at(&field.name, m))
            }
        })
        .collect()
}

/// Decodes one JSON value as a value of `ty`; the error says what was expected.
pub fn decode_value(ty: &Type, json: &Json) -> Result<Value, String> {
    let wrong = || format!("expected {ty}, found {}", describe(json));
    match (ty, json) {
        (Type::Optional(_), Json::Null) => Ok(Value::None),
        (Type::Optional(inner), j) => decode_value(inner, j),
        (Type::Int, Json::Number(n)) => n.as_i64().map(Value::Int).ok_or_else(|| {
            if n.is_u64() {
                format!("{n} is out of range for int")
            } else {
                n.as_f64().map_or_else(wrong, |f| not_an_int(ty, f))
            }
        }),
        (Type::Float, Json::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(wrong),
        (Type::Bool, Json::Bool(b)) => Ok(Value::Bool(*b)),
        (Type::String, Json::String(s)) => Ok(Value::str(s)),
        (Type::Timestamp, Json::String(s)) => time::parse_rfc3339(s)
            .map(Value::Timestamp)
            .map_err(|e| quoting(e, s)),
        (Type::Timestamp, Json::Number(n)) => n.as_i64().map(Value::Timestamp).ok_or_else(wrong),
        (Type::Duration, Json::String(s)) => time::parse_duration(s)
            .map(Value::Duration)
            .map_err(|e| quoting(e, s)),
        (Type::Duration, Json::Number(n)) => n.as_i64().map(Value::Duration).ok_or_else(wrong),
        (Type::List(elem), Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| decode_value(elem, item).map_err(|m| format!("element {i}: {m}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List),
        (Type::Set(elem), Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| decode_value(elem, item).map_err(|m| format!("element {i}: {m}")))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Value::Set),
        (Type::Map(k, v), Json::Object(entries)) => entries
            .iter()
            .map(|(key, value)| {
                let key_value =
                    decode_key(k, key).map_err(|m| format!("key `{}`: {m}", excerpt(key)))?;
                let value =
                    decode_value(v, value).map_err(|m| format!("entry `{}`: {m}", excerpt(key)))?;
                Ok((key_value, value))
            })
            .collect::<Result<BTreeMap<_, _>, String>>()
            .map(Value::Map),
        _ => Err(wrong()),
    }
}

/// Decodes a map key written as a JSON object key (always a string).
fn decode_key(ty: &Type, text: &str) -> Result<Value, String> {
    match ty {
        Type::String => Ok(Value::str(text)),
        Type::Int => string::parse_int(text)
            .map(Value::Int)
            .map_err(|e| quoting(e, text)),
        Type::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, found `{}`", excerpt(text))),
        },
        Type::Timestamp => time::parse_rfc3339(text)
            .map(Value::Timestamp)
            .map_err(|e| quoting(e, text)),
        Type::Duration => time::parse_duration(text)
            .map(Value::Duration)
            .map_err(|e| quoting(e, text)),
        other => Err(format!("`{other}` cannot be a map key")),
    }
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Why a JSON number with a fraction or an exponent (`1.5`, `1e3`, `1e30`) is not an
/// `int` (or timestamp, duration).
fn not_an_int(ty: &Type, f: f64) -> String {
    // 2^63: integers below it in magnitude fit an i64.
    if f.fract() == 0.0 && f.abs() < 9_223_372_036_854_775_808.0 {
        format!(
            "expected {ty}, found the number {} (write an integer without a fraction or exponent)",
            excerpt(&f.to_string())
        )
    } else if f.fract() == 0.0 {
        format!("{} is out of range for {ty}", excerpt(&f.to_string()))
    } else {
        format!(
            "expected {ty}, found the number {}",
            excerpt(&f.to_string())
        )
    }
}

fn describe(json: &Json) -> String {
    match json {
        Json::Number(n) => format!("the number {}", excerpt(&n.to_string())),
        Json::String(s) if s.len() <= 40 => format!("the string {json}"),
        other => json_kind(other).to_owned(),
    }
}

/// Encodes a value as JSON: timestamps as RFC 3339 strings, durations as their
/// canonical text (`"1h30m"`), sets as sorted arrays, maps as objects.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        Value::Float(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s.to_string()),
        Value::Timestamp(t) => Json::String(time::format_rfc3339(*t)),
        Value::Duration(d) => Json::String(time::format_duration(*d)),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Set(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (key_part_text(k), value_to_json(v)))
                .collect(),
        ),
    }
}

/// A document as a JSON object of its state fields, in declaration order.
pub fn doc_to_json(fields: &[Field], doc: &[Value]) -> Json {
    let mut object = Map::new();
    for (field, value) in fields.iter().zip(doc) {
        object.insert(field.name.clone(), value_to_json(value));
    }
    Json::Object(object)
}

/// The text of one key component: strings as they are, other scalars in their
/// canonical text form.
pub fn key_part_text(value: &Value) -> String {
    match value {
        Value::Str(s) => s.to_string(),
        other => string::to_string(other),
    }
}

/// The printed form of a document key: a single component as its text, a composite
/// key as a JSON array of its components.
pub fn key_string(parts: &[Value]) -> String {
    match parts {
        [one] => key_part_text(one),
        many => Json::Array(many.iter().map(value_to_json).collect()).to_string(),
    }
}

/// Parses a key given on a command line or in a request back into typed components.
///
/// # Errors
/// A message when the text does not match the key's types.
pub fn parse_key(types: &[Type], text: &str) -> Result<Vec<Value>, String> {
    match types {
        [] => Ok(Vec::new()),
        [one] => decode_key(one, text).map(|v| vec![v]),
        many => {
            let json: Json = serde_json::from_str(text).map_err(|_| {
                format!(
                    "a composite key is a JSON array of {} parts, e.g. [\"a\", 1]",
                    many.len()
                )
            })?;
            let Json::Array(items) = json else {
                return Err("a composite key is a JSON array".to_owned());
            };
            if items.len() != many.len() {
                return Err(format!(
                    "the key has {} parts, {} given",
                    many.len(),
                    items.len()
                ));
            }
            many.iter()
                .zip(&items)
                .map(|(ty, item)| decode_value(ty, item))
                .collect()
        }
    }
}

/// The documents of every projection, as `dmc run` prints them:
/// `{"<projection>": {"<key>": {doc}, ...}, "<single-document projection>": {doc}}`.
pub fn documents_json(
    program: &crate::ir::Program,
    states: &[crate::exec::ProjectionState],
) -> Json {
    let mut top = Map::new();
    for (projection, state) in program.projections.iter().zip(states) {
        let value = if projection.key.is_empty() {
            let doc = state
                .docs
                .get(&Vec::new())
                .cloned()
                .unwrap_or_else(|| crate::exec::default_doc(projection));
            doc_to_json(&projection.state, &doc)
        } else {
            Json::Object(
                state
                    .docs
                    .iter()
                    .map(|(key, doc)| (key_string(key), doc_to_json(&projection.state, doc)))
                    .collect(),
            )
        };
        top.insert(projection.label(program), value);
    }
    Json::Object(top)
}

/// Decodes a JSON payload straight from its bytes into a row, without building a
/// `serde_json::Value` first. Accepts exactly what [`decode_payload`] accepts.
///
/// # Errors
/// [`PayloadError`], as [`decode_payload`].
pub fn decode_payload_bytes(event: &EventType, bytes: &[u8]) -> Result<Vec<Value>, PayloadError> {
    let mut row = Vec::new();
    decode_payload_into(event, bytes, None, &mut row)?;
    Ok(row)
}

/// The hot path of a node's engine, which decodes every event it folds: decodes a
/// payload into `row` (reusing its buffer). With `read`, a field not marked `true` (no
/// handler reads it, see [`crate::ir::Program::event_fields_read`]) is checked like
/// any other but left as `Value::None` instead of being built, so an unread string
/// costs no allocation; `Some(&[])` only validates. Accepts and rejects exactly what
/// [`decode_payload`] does.
///
/// # Errors
/// [`PayloadError`], as [`decode_payload`]; `row` is unspecified then.
pub fn decode_payload_into(
    event: &EventType,
    bytes: &[u8],
    read: Option<&[bool]>,
    row: &mut Vec<Value>,
) -> Result<(), PayloadError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => decode_payload_text(event, text, read, row),
        // Not UTF-8: serde_json says where.
        Err(_) => decode_general(
            event,
            (serde_json::Deserializer::from_slice(bytes), bytes),
            read,
            row,
        ),
    }
}

/// [`decode_payload_into`] for a payload that is already text (an append request's),
/// whose UTF-8 is not checked again.
///
/// # Errors
/// As [`decode_payload_into`].
pub fn decode_payload_text(
    event: &EventType,
    text: &str,
    read: Option<&[bool]>,
    row: &mut Vec<Value>,
) -> Result<(), PayloadError> {
    if let Ok(seen) = fresh_row(event, row, read, |seed| flat::decode(text, seed)) {
        return defaults(event, row, &seen);
    }
    let de = serde_json::Deserializer::from_str(text);
    decode_general(event, (de, text.as_bytes()), read, row)
}

/// Runs `decoder` over a fresh `row` for `event` (every field `None`, none given yet);
/// which fields the payload gave, when it succeeds.
fn fresh_row<E>(
    event: &EventType,
    row: &mut Vec<Value>,
    read: Option<&[bool]>,
    decoder: impl FnOnce(RowSeed<'_>) -> Result<(), E>,
) -> Result<Seen, E> {
    row.clear();
    row.resize(event.fields.len(), Value::None);
    let mut seen = Seen::new(event.fields.len());
    decoder(RowSeed {
        event,
        row,
        seen: &mut seen,
        read,
    })?;
    Ok(seen)
}

/// Decodes with serde_json's general parser: any JSON, and the precise error.
fn decode_general<'de, R: serde_json::de::Read<'de>>(
    event: &EventType,
    (mut de, bytes): (serde_json::Deserializer<R>, &[u8]),
    read: Option<&[bool]>,
    row: &mut Vec<Value>,
) -> Result<(), PayloadError> {
    use serde::de::DeserializeSeed;
    let outcome = fresh_row(event, row, read, |seed| {
        seed.deserialize(&mut de).and_then(|()| de.end())
    });
    let Ok(seen) = outcome else {
        // Fall back to the tree decoder for its precise message (its own parse error
        // when the JSON is malformed, placed by line and column).
        let json: Json = serde_json::from_slice(bytes)
            .map_err(|e| PayloadError::whole(format!("not valid JSON: {e}")))?;
        *row = decode_payload(event, &json)?;
        return Ok(());
    };
    defaults(event, row, &seen)
}

/// Fills the fields a payload left out with their defaults, or names the first one
/// that has none.
fn defaults(event: &EventType, row: &mut [Value], seen: &Seen) -> Result<(), PayloadError> {
    for (i, (field, slot)) in event.fields.iter().zip(row.iter_mut()).enumerate() {
        if seen.get(i) {
            continue;
        }
        *slot = field.default.clone().ok_or_else(|| {
            PayloadError::at(
                &field.name,
                format!("missing (required, of type `{}`)", field.ty),
            )
        })?;
    }
    Ok(())
}

/// Checks the JSON of a payload for an event of a type no program declares, in one
/// pass that builds nothing: it must be a well-formed JSON object with no lone
/// surrogate in any string or key, numbers a finite `f64` can hold (integers beyond
/// it, such as 400 digits, overflow), and at most [`MAX_DEPTH`] levels of nesting.
/// That is everything the typed decoder ([`decode_payload_into`]) requires of the JSON
/// itself, so a program declaring the type later can only refuse such a payload for
/// its fields and their types, never for its JSON.
///
/// # Errors
/// [`PayloadError`] (no field) saying what is wrong and where (line and column).
pub fn check_json(bytes: &[u8]) -> Result<(), PayloadError> {
    match bytes.trim_ascii_start().first() {
        Some(b'{') => {}
        None => {
            return Err(PayloadError::whole(
                "`data` is empty: it must be a JSON object",
            ));
        }
        Some(first) => {
            let found = match first {
                b'[' => "an array",
                b'"' => "a string",
                b't' | b'f' => "a bool",
                b'n' => "null",
                b'-' | b'0'..=b'9' => "a number",
                _ => "something that is not JSON",
            };
            return Err(PayloadError::whole(format!(
                "`data` must be a JSON object, found {found}"
            )));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let checked = serde::Deserializer::deserialize_map(&mut de, Check(0)).and_then(|()| de.end());
    checked.map_err(|e| {
        let text = e.to_string();
        if e.is_data() {
            // Only [`Check`] raises data errors: its own message, placed.
            PayloadError::whole(format!("`data` {text}"))
        } else if text.contains("surrogate") || text.starts_with("unexpected end of hex escape")
        {
            PayloadError::whole(format!(
                "`data` is not valid JSON: a string has a lone surrogate (an escape \\uD800 to \\uDFFF \
                 not in a high-low pair) at line {} column {}",
                e.line(),
                e.column()
            ))
        } else {
            PayloadError::whole(format!("`data` is not valid JSON: {text}"))
        }
    })
}

/// Validates one JSON value inside `.0` objects and arrays (see [`check_json`]).
#[derive(Clone, Copy)]
struct Check(usize);

impl<'de> serde::de::DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Check {
    /// The check for the values of a container this one opens.
    fn deeper<E: serde::de::Error>(self) -> Result<Check, E> {
        if self.0 >= MAX_DEPTH {
            return Err(E::custom(format!(
                "nests deeper than {MAX_DEPTH} levels of objects and arrays"
            )));
        }
        Ok(Check(self.0 + 1))
    }
}

impl<'de> serde::de::Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // serde_json refuses numbers that overflow an f64; this keeps the promise if
        // that ever changes.
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("has a number out of range"))
        }
    }

    // The string was unescaped (lone surrogates refused) to get here.
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An object key: unescaped (so a lone surrogate is refused), not kept.
struct Key;

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(Check(0))
    }
}

struct RowSeed<'a> {
    event: &'a EventType,
    row: &'a mut [Value],
    seen: &'a mut Seen,
    read: Option<&'a [bool]>,
}

impl<'de> serde::de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        // Payloads usually list the fields in declaration order: try the next one first.
        let mut next = 0;
        while let Some(key) = map.next_key_seed(FieldName)? {
            let fields = &self.event.fields;
            let i = match fields.get(next) {
                Some(f) if f.name == *key => next,
                _ => self
                    .event
                    .field(&key)
                    .ok_or_else(|| A::Error::custom(format!("unknown field `{key}`")))?,
            };
            next = i + 1;
            let ty = &fields[i].ty;
            let build = self.read.is_none_or(|r| r.get(i).copied().unwrap_or(false));
            let (value, null) = map.next_value_seed(TypedSeed(ty, build))?;
            if null && !matches!(ty, Type::Optional(_)) {
                return Err(A::Error::custom(format!("`{key}` is null")));
            }
            if let Some(slot) = self.row.get_mut(i) {
                *slot = value;
                self.seen.set(i);
            }
        }
        Ok(())
    }
}

/// Which fields of a row a payload gave.
enum Seen {
    /// Up to 64 fields, one bit each.
    Few(u64),
    /// More.
    Many(Vec<bool>),
}

impl Seen {
    fn new(fields: usize) -> Seen {
        if fields <= 64 {
            Seen::Few(0)
        } else {
            Seen::Many(vec![false; fields])
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Seen::Few(bits) => *bits |= 1u64.checked_shl(i as u32).unwrap_or(0),
            Seen::Many(seen) => {
                if let Some(seen) = seen.get_mut(i) {
                    *seen = true;
                }
            }
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Seen::Few(bits) => bits & 1u64.checked_shl(i as u32).unwrap_or(0) != 0,
            Seen::Many(seen) => seen.get(i).copied().unwrap_or(false),
        }
    }
}

/// A payload's key, borrowed from the payload when it has no escape (serde's own
/// `Cow<str>` always allocates a `String`).
struct FieldName;

impl<'de> serde::de::DeserializeSeed<'de> for FieldName {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldName {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Deserializes one JSON value as a value of a language type: the value (or
/// `Value::None` when it is not to be built) and whether the JSON was `null`.
struct TypedSeed<'a>(&'a Type, bool);

impl<'de> serde::de::DeserializeSeed<'de> for TypedSeed<'_> {
    type Value = (Value, bool);

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<(Value, bool), D::Error> {
        use serde::de::Error;
        let TypedSeed(ty, build) = self;
        match ty.unwrap_optional() {
            Type::Int
            | Type::Float
            | Type::Bool
            | Type::String
            | Type::Timestamp
            | Type::Duration => deserializer.deserialize_any(ScalarVisitor(ty, build)),
            _ => {
                // Collections are rare in payloads: decode through the tree.
                let json = <Json as serde::Deserialize>::deserialize(deserializer)?;
                let null = json.is_null();
                let value = decode_value(ty, &json).map_err(D::Error::custom)?;
                Ok((if build { value } else { Value::None }, null))
            }
        }
    }
}

struct ScalarVisitor<'a>(&'a Type, bool);

impl<'de> serde::de::Visitor<'de> for ScalarVisitor<'_> {
    type Value = (Value, bool);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a value of type {}", self.0)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(Value, bool), E> {
        Ok((Value::None, true))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(Value, bool), E> {
        match self.0.unwrap_optional() {
            Type::Bool => Ok((Value::Bool(v), false)),
            ty => Err(E::custom(format!("expected {ty}, found a bool"))),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(Value, bool), E> {
        match self.0.unwrap_optional() {
            Type::Int => Ok((Value::Int(v), false)),
            Type::Timestamp => Ok((Value::Timestamp(v), false)),
            Type::Duration => Ok((Value::Duration(v), false)),
            Type::Float => Ok((Value::Float(v as f64), false)),
            ty => Err(E::custom(format!("expected {ty}, found a number"))),
        }
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(Value, bool), E> {
        match i64::try_from(v) {
            Ok(i) => self.visit_i64(i),
            Err(_) if matches!(self.0.unwrap_optional(), Type::Float) => {
                Ok((Value::Float(v as f64), false))
            }
            Err(_) => Err(E::custom(format!("{v} is out of range for {}", self.0))),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(Value, bool), E> {
        match self.0.unwrap_optional() {
            Type::Float if v.is_finite() => Ok((Value::Float(v), false)),
            // A whole number JSON could not hold as a 64-bit integer.
            ty @ (Type::Int | Type::Timestamp | Type::Duration) if v.fract() == 0.0 => {
                Err(E::custom(format!("{v} is out of range for {ty}")))
            }
            ty => Err(E::custom(format!("expected {ty}, found the number {v}"))),
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(Value, bool), E> {
        match self.0.unwrap_optional() {
            // An unread string is not built: no allocation.
            Type::String if !self.1 => Ok((Value::None, false)),
            Type::String => Ok((Value::str(v), false)),
            Type::Timestamp => time::parse_rfc3339(v)
                .map(|t| (Value::Timestamp(t), false))
                .map_err(E::custom),
            Type::Duration => time::parse_duration(v)
                .map(|d| (Value::Duration(d), false))
                .map_err(E::custom),
            ty => Err(E::custom(format!("expected {ty}, found a string"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Span;

    fn event(fields: &[(&str, Type)]) -> EventType {
        EventType {
            name: "E".to_owned(),
            fields: fields
                .iter()
                .map(|(name, ty)| Field {
                    name: (*name).to_owned(),
                    ty: ty.clone(),
                    default: None,
                    span: Span::new(0, 0),
                })
                .collect(),
            span: Span::new(0, 0),
        }
    }

    fn nested(depth: usize) -> String {
        // `depth` levels in all: the payload object and depth - 1 arrays inside it.
        let inner = depth.saturating_sub(1);
        format!("{{\"a\":{}{}}}", "[".repeat(inner), "]".repeat(inner))
    }

    #[test]
    fn check_json_accepts_what_a_declaration_could_decode() {
        for ok in [
            "{}",
            " {\"a\": 1, \"b\": -2.5e10, \"c\": \"x\\u00e9\\ud83d\\ude00\", \"d\": null}",
            "{\"big\": 18446744073709551615, \"neg\": -9223372036854775808}",
            "{\"a\": [1, [2, {\"b\": {}}]], \"a\": true}\n",
            "{\"\": 1e-400}",
        ] {
            assert_eq!(check_json(ok.as_bytes()), Ok(()), "{ok}");
        }
        assert_eq!(check_json(nested(MAX_DEPTH).as_bytes()), Ok(()));
        // What is accepted parses as a tree too (serde_json's own depth limit is 128).
        assert!(serde_json::from_str::<Json>(&nested(MAX_DEPTH)).is_ok());
    }

    #[test]
    fn check_json_refuses_what_no_declaration_could_decode() {
        let cases = [
            ("{\"a\": \"\\ud800\"}", "lone surrogate"),
            ("{\"\\udc00\": 1}", "lone surrogate"),
            ("{\"a\": \"\\ud800\\u0041\"}", "surrogate"),
            ("{\"a\": 1e400}", "number out of range"),
            ("[1]", "must be a JSON object, found an array"),
            ("\"x\"", "must be a JSON object, found a string"),
            ("", "is empty"),
            ("{\"a\": 1} x", "trailing characters"),
            ("{\"a\": \"\u{1}\"}", "control character"),
            ("{\"a\": \"\\x\"}", "invalid escape"),
            ("{\"a\": 01}", "not valid JSON"),
            ("{\"a\": NaN}", "not valid JSON"),
        ];
        for (bad, why) in cases {
            let e = check_json(bad.as_bytes()).expect_err(bad);
            assert!(e.message.contains(why), "{bad}: {e}");
        }
        let digits = format!("{{\"n\": {}}}", "9".repeat(400));
        let e = check_json(digits.as_bytes()).expect_err("400 digits");
        assert!(e.message.contains("number out of range"), "{e}");
        let e = check_json(nested(MAX_DEPTH + 1).as_bytes()).expect_err("too deep");
        assert!(e.message.contains("deeper than 64 levels"), "{e}");
        assert!(e.message.contains("column"), "{e}");
        let deep = format!("{{\"a\":{}", "[".repeat(100_000));
        let e = check_json(deep.as_bytes()).expect_err("100k deep");
        assert!(e.message.contains("deeper than 64 levels"), "{e}");
    }

    #[test]
    fn errors_quote_input_as_an_excerpt() {
        let long = "k".repeat(5 << 20);
        let e = event(&[("a", Type::Int)]);
        let payload = format!("{{\"{long}\": 1}}");
        let err = decode_payload_bytes(&e, payload.as_bytes()).expect_err("unknown field");
        let text = err.to_string();
        assert!(text.len() < 300, "{}", text.len());
        assert!(
            text.contains(&format!("… ({} bytes)", long.len())),
            "{text}"
        );
        let e = event(&[
            ("t", Type::Timestamp),
            ("m", Type::Map(Box::new(Type::Bool), Box::new(Type::Int))),
        ]);
        for payload in [
            format!("{{\"t\": \"{long}\", \"m\": {{}}}}"),
            format!("{{\"t\": 0, \"m\": {{\"{long}\": 1}}}}"),
            format!("\"{long}\" x"),
        ] {
            let text = decode_payload_bytes(&e, payload.as_bytes())
                .expect_err("refused")
                .to_string();
            assert!(
                text.len() < 2 * MAX_MESSAGE,
                "{}: {}",
                text.len(),
                excerpt(&text)
            );
        }
        assert_eq!(excerpt("short"), "short");
        let cut = excerpt(&"é".repeat(100)).into_owned();
        assert!(cut.ends_with("… (200 bytes)"), "{cut}");
    }

    #[test]
    fn an_event_of_many_fields_is_decoded_and_its_missing_field_named() {
        let names: Vec<String> = (0..70).map(|i| format!("f{i}")).collect();
        let fields: Vec<(&str, Type)> = names.iter().map(|n| (n.as_str(), Type::Int)).collect();
        let e = event(&fields);
        let all = |skip: Option<usize>| {
            let entries: Vec<String> = (0..70)
                .filter(|i| Some(*i) != skip)
                .map(|i| format!("\"f{i}\":{i}"))
                .collect();
            format!("{{{}}}", entries.join(","))
        };
        let row = decode_payload_bytes(&e, all(None).as_bytes()).expect("every field");
        assert!(matches!(row[69], Value::Int(69)), "{:?}", row[69]);
        for missing in [3, 64, 69] {
            let err = decode_payload_bytes(&e, all(Some(missing)).as_bytes()).expect_err("missing");
            assert_eq!(err.field.as_deref(), Some(names[missing].as_str()), "{err}");
        }
    }

    #[test]
    fn a_whole_number_with_a_fraction_is_not_called_out_of_range() {
        let e = event(&[("n", Type::Int)]);
        let err = decode_payload_bytes(&e, b"{\"n\": 1.0}").expect_err("1.0");
        assert!(
            err.message.contains("without a fraction or exponent"),
            "{err}"
        );
        let err = decode_payload_bytes(&e, b"{\"n\": 1e19}").expect_err("1e19");
        assert!(err.message.contains("out of range for int"), "{err}");
        let err = decode_payload_bytes(&e, b"{\"n\": 1.5}").expect_err("1.5");
        assert!(
            err.message.contains("expected int, found the number 1.5"),
            "{err}"
        );
    }
}
