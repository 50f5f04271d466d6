//! Byte encodings of document keys and documents, as a node stores them (in fjall) and
//! as the engines' in-memory document tables key them.
//!
//! Keys use an order-preserving tuple encoding: each component is a type tag followed
//! by a big-endian form whose byte order is the value order (signed integers with the
//! sign bit flipped; strings with 0x00 escaped as 0x00 0xFF and terminated by 0x00 0x01).
//! So the encoding of a key's first components is a byte prefix of the whole key, and
//! byte order equals key order: prefix and range scans are fjall prefix and range scans.
//!
//! Documents use a compact self-describing binary form of [`Value`]s.
//!
//! Invariant: `decode(encode(x)) == x` for every value; decoding untrusted bytes
//! returns `None` instead of panicking, never allocates more than the bytes can hold
//! (every length is checked against what remains), and accepts only the canonical
//! encoding: what it returns encodes back to exactly the bytes it read (minimal
//! lengths, sets and maps in strictly increasing order, finite floats, bools 0 or 1,
//! collections nested at most [`MAX_DEPTH`] deep). `compiler/tests/fuzz_storage.rs`
//! checks this on mutated encodings.
//!
//! A document may encode to at most [`MAX_DOC_BYTES`]; the node checks it when it
//! writes a changed document ([`encode_doc_within`]), and a document over it faults its
//! projection (code R0007) instead of being written.

use std::collections::{BTreeMap, BTreeSet};

use datamesh_stdlib::Value;

/// The most bytes one document may encode to: 3 MiB.
///
/// A read sends a document back as JSON in one gRPC message, and the node's message
/// limit is its request limit (16 MiB by default) plus 4 MiB. JSON takes at most about
/// six times the stored bytes (a string of control characters, each escaped as
/// `\u00XX`; numbers and timestamps take two to four times), so a 3 MiB document is at
/// most about 18 MiB of JSON and always fits a default message, with room for the key
/// and the framing.
pub const MAX_DOC_BYTES: usize = 3 << 20;

/// How deeply collections may nest in a stored value. The language's collections hold
/// scalars (depth 1); the bound only keeps a corrupt document from recursing deeply.
pub const MAX_DEPTH: usize = 8;

/// A document that encodes to more than the limit it was given (the node's is
/// [`MAX_DOC_BYTES`]): it is not written, and its projection faults with
/// [`crate::exec::LIMIT_CODE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "limit exceeded: the document encodes to more than {limit} bytes, the most a document may take"
)]
pub struct DocTooLarge {
    /// The limit it went past.
    pub limit: usize,
}

const BOOL: u8 = 1;
const INT: u8 = 2;
const STR: u8 = 3;
const TIMESTAMP: u8 = 4;
const DURATION: u8 = 5;

fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn from_ordered(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The stored key of a single-document projection (fjall keys cannot be empty, and
/// no component tag is 0, so it cannot collide with a real key).
const SINGLE_DOCUMENT: u8 = 0;

/// Encodes key components (scalars only) in order-preserving form.
pub fn encode_key(parts: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.len() * 10);
    encode_key_into(parts, &mut out);
    out
}

/// Encodes key components into `out` (cleared first), reusing its buffer.
pub fn encode_key_into(parts: &[Value], out: &mut Vec<u8>) {
    out.clear();
    if parts.is_empty() {
        out.push(SINGLE_DOCUMENT);
        return;
    }
    for part in parts {
        encode_key_part(part, out);
    }
}

/// Appends one key component to `out`; a key is the concatenation of its components.
#[inline]
pub fn encode_key_part(part: &Value, out: &mut Vec<u8>) {
    match part {
        Value::Bool(b) => out.extend_from_slice(&[BOOL, u8::from(*b)]),
        Value::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&ordered_i64(*i));
        }
        Value::Timestamp(t) => {
            out.push(TIMESTAMP);
            out.extend_from_slice(&ordered_i64(*t));
        }
        Value::Duration(d) => {
            out.push(DURATION);
            out.extend_from_slice(&ordered_i64(*d));
        }
        Value::Str(s) => encode_key_text(s.as_bytes(), out),
        other => encode_key_text(datamesh_stdlib::string::to_string(other).as_bytes(), out),
    }
}

#[inline]
pub(crate) fn encode_key_text(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 3);
    out.push(STR);
    if !has_zero_byte(bytes) {
        out.extend_from_slice(bytes);
    } else {
        for &b in bytes {
            if b == 0 {
                out.extend_from_slice(&[0, 0xFF]);
            } else {
                out.push(b);
            }
        }
    }
    out.extend_from_slice(&[0, 1]);
}

/// Whether `bytes` holds a 0 byte, eight bytes at a time (keys are short: a byte loop or
/// a `memchr` call costs more than the rest of encoding them).
#[inline]
pub(crate) fn has_zero_byte(bytes: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |chunk: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        w.wrapping_sub(LOW) & !w & HIGH != 0
    };
    let Some(last) = bytes.len().checked_sub(8) else {
        return bytes.contains(&0);
    };
    // The last word overlaps the chunks: it covers the remainder.
    bytes.chunks_exact(8).any(zero_in) || zero_in(&bytes[last..])
}

/// The string of a key made of one string without 0 bytes (its encoding is the
/// string between a tag and a terminator), or `None` for any other key.
#[inline]
pub(crate) fn single_text_key(key: &[u8]) -> Option<&[u8]> {
    text_key_inner(key).filter(|inner| !has_zero_byte(inner))
}

/// The tag before and the terminator after a string key component without 0 bytes.
pub(crate) fn text_key_frame() -> (u8, [u8; 2]) {
    (STR, [0, 1])
}

/// What lies between the tag and the terminator of a key that starts as a string
/// component and ends as one (a one-string key if that part holds no 0 byte).
#[inline]
pub(crate) fn text_key_inner(key: &[u8]) -> Option<&[u8]> {
    match key {
        [STR, inner @ .., 0, 1] => Some(inner),
        _ => None,
    }
}

/// The stored key of a single-document projection.
pub fn single_document_key() -> &'static [u8] {
    &[SINGLE_DOCUMENT]
}

/// Decodes an encoded key back into its components (`None` for anything
/// [`encode_key`] cannot have produced, the empty key included).
pub fn decode_key(mut bytes: &[u8]) -> Option<Vec<Value>> {
    if bytes == [SINGLE_DOCUMENT] {
        return Some(Vec::new());
    }
    if bytes.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        bytes = rest;
        match tag {
            BOOL => {
                let (&b, rest) = bytes.split_first()?;
                parts.push(Value::Bool(match b {
                    0 => false,
                    1 => true,
                    _ => return None,
                }));
                bytes = rest;
            }
            INT | TIMESTAMP | DURATION => {
                let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
                let v = from_ordered(raw);
                parts.push(match tag {
                    INT => Value::Int(v),
                    TIMESTAMP => Value::Timestamp(v),
                    _ => Value::Duration(v),
                });
                bytes = &bytes[8..];
            }
            STR => {
                let mut text = Vec::new();
                loop {
                    let (&b, rest) = bytes.split_first()?;
                    bytes = rest;
                    if b != 0 {
                        text.push(b);
                        continue;
                    }
                    let (&next, rest) = bytes.split_first()?;
                    bytes = rest;
                    match next {
                        0xFF => text.push(0),
                        1 => break,
                        _ => return None,
                    }
                }
                parts.push(Value::str(String::from_utf8(text).ok()?));
            }
            _ => return None,
        }
    }
    Some(parts)
}

// Document value tags.
const V_NONE: u8 = 0;
const V_FALSE: u8 = 1;
const V_TRUE: u8 = 2;
const V_INT: u8 = 3;
const V_FLOAT: u8 = 4;
const V_STR: u8 = 5;
const V_TIMESTAMP: u8 = 6;
const V_DURATION: u8 = 7;
const V_LIST: u8 = 8;
const V_SET: u8 = 9;
const V_MAP: u8 = 10;

/// Encodes a document (its state fields in order).
pub fn encode_doc(fields: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len() * 9);
    write_len(fields.len(), &mut out);
    for v in fields {
        encode_value(v, &mut out);
    }
    out
}

/// Appends the encoding of a document to `out`, unless it would take more than `max`
/// bytes: encoding stops as soon as it would pass `max` (before a string is copied,
/// after each collection element), so a document far over the limit costs no more
/// than the limit to find out.
///
/// # Errors
/// [`DocTooLarge`] when the encoding is longer than `max`; `out` then holds a partial
/// encoding, to be discarded.
pub fn encode_doc_within(
    fields: &[Value],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), DocTooLarge> {
    encode_fields_within(fields.len(), fields.iter(), max, out)
}

/// [`encode_doc_within`] over `n` fields given one by one (borrowed or built).
///
/// # Errors
/// [`DocTooLarge`] as [`encode_doc_within`].
pub fn encode_fields_within<V: std::borrow::Borrow<Value>>(
    n: usize,
    fields: impl Iterator<Item = V>,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), DocTooLarge> {
    let end = out.len().saturating_add(max);
    let too_large = |Over| DocTooLarge { limit: max };
    write_len(n, out);
    for v in fields {
        encode_value_within(v.borrow(), end, out).map_err(too_large)?;
    }
    within(end, out).map_err(too_large)
}

/// Decodes a document.
pub fn decode_doc(bytes: &[u8]) -> Option<Vec<Value>> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.count()?;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        out.push(r.value(0)?);
    }
    (r.at == bytes.len()).then_some(out)
}

/// Appends a length (LEB128).
pub fn write_len(n: usize, out: &mut Vec<u8>) {
    let mut n = n as u64;
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends one value in the document encoding.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    // Without a limit, encoding cannot fail.
    let _ = encode_value_within(v, usize::MAX, out);
}

/// An encoding went past its end.
struct Over;

fn within(end: usize, out: &[u8]) -> Result<(), Over> {
    if out.len() > end { Err(Over) } else { Ok(()) }
}

/// Appends one value, unless `out` would grow past `end` bytes (checked before each
/// string is copied and after each collection element).
fn encode_value_within(v: &Value, end: usize, out: &mut Vec<u8>) -> Result<(), Over> {
    let check = |out: &Vec<u8>| within(end, out);
    match v {
        Value::None => out.push(V_NONE),
        Value::Bool(false) => out.push(V_FALSE),
        Value::Bool(true) => out.push(V_TRUE),
        Value::Int(i) => {
            out.push(V_INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(V_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::Str(s) => {
            if out.len().saturating_add(s.len()) > end {
                return Err(Over);
            }
            out.push(V_STR);
            write_len(s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Timestamp(t) => {
            out.push(V_TIMESTAMP);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::Duration(d) => {
            out.push(V_DURATION);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::List(items) => {
            out.push(V_LIST);
            write_len(items.len(), out);
            for item in items {
                encode_value_within(item, end, out)?;
                check(out)?;
            }
        }
        Value::Set(items) => {
            out.push(V_SET);
            write_len(items.len(), out);
            for item in items {
                encode_value_within(item, end, out)?;
                check(out)?;
            }
        }
        Value::Map(entries) => {
            out.push(V_MAP);
            write_len(entries.len(), out);
            for (k, v) in entries {
                encode_value_within(k, end, out)?;
                encode_value_within(v, end, out)?;
                check(out)?;
            }
        }
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A length in its minimal LEB128 form.
    fn len(&mut self) -> Option<usize> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7F);
            // The tenth byte holds the top bit of a u64 and nothing more.
            if shift == 63 && bits > 1 {
                return None;
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                // A last byte of 0 after others is not minimal (`write_len` never
                // writes it).
                if b == 0 && shift > 0 {
                    return None;
                }
                return usize::try_from(n).ok();
            }
        }
        None
    }

    /// A count of items that follow, each at least one byte: never more than the bytes
    /// left, so a corrupt count cannot make a collection reserve or loop far.
    fn count(&mut self) -> Option<usize> {
        let n = self.len()?;
        (n <= self.bytes.len().saturating_sub(self.at)).then_some(n)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// One value, inside `depth` collections.
    fn value(&mut self, depth: usize) -> Option<Value> {
        Some(match self.byte()? {
            V_NONE => Value::None,
            V_FALSE => Value::Bool(false),
            V_TRUE => Value::Bool(true),
            V_INT => Value::Int(self.i64()?),
            V_FLOAT => {
                // No value holds a non-finite float: such bytes are not a document.
                let f = f64::from_le_bytes(self.take(8)?.try_into().ok()?);
                Value::Float(f.is_finite().then_some(f)?)
            }
            V_STR => {
                let n = self.count()?;
                Value::str(std::str::from_utf8(self.take(n)?).ok()?)
            }
            V_TIMESTAMP => Value::Timestamp(self.i64()?),
            V_DURATION => Value::Duration(self.i64()?),
            V_LIST | V_SET | V_MAP if depth >= MAX_DEPTH => return None,
            V_LIST => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::List(items)
            }
            V_SET => {
                let n = self.count()?;
                let mut items = BTreeSet::new();
                for _ in 0..n {
                    let item = self.value(depth + 1)?;
                    // Stored sets are in increasing order, without repeats.
                    if items.last().is_some_and(|last| *last >= item) {
                        return None;
                    }
                    items.insert(item);
                }
                Value::Set(items)
            }
            V_MAP => {
                let n = self.count()?;
                let mut entries = BTreeMap::new();
                for _ in 0..n {
                    let k = self.value(depth + 1)?;
                    if entries.last_key_value().is_some_and(|(last, _)| *last >= k) {
                        return None;
                    }
                    entries.insert(k, self.value(depth + 1)?);
                }
                Value::Map(entries)
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bytes_are_found_at_every_length_and_position() {
        for len in 0..40 {
            let mut bytes = vec![0x80u8; len];
            assert!(!has_zero_byte(&bytes), "none in {len} bytes");
            for at in 0..len {
                bytes[at] = 0;
                assert!(has_zero_byte(&bytes), "at {at} of {len}");
                // A 1 byte next to the zero is where word tricks go wrong.
                bytes[at] = 1;
                assert!(!has_zero_byte(&bytes), "1 at {at} of {len}");
                bytes[at] = 0x80;
            }
        }
    }

    #[test]
    fn key_order_is_byte_order() {
        let keys = [
            vec![Value::str("a"), Value::Int(-5)],
            vec![Value::str("a"), Value::Int(3)],
            vec![Value::str("a\0b"), Value::Int(0)],
            vec![Value::str("ab"), Value::Int(i64::MIN)],
            vec![Value::str("b"), Value::Int(0)],
        ];
        let encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode_key(k)).collect();
        for pair in encoded.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for (k, e) in keys.iter().zip(&encoded) {
            assert_eq!(decode_key(e).as_ref(), Some(k));
        }
        // A prefix of the components is a byte prefix.
        assert!(encoded[1].starts_with(&encode_key(&[Value::str("a")])));
        assert!(!encoded[3].starts_with(&encode_key(&[Value::str("a")])));
    }

    #[test]
    fn documents_round_trip() {
        let mut map = BTreeMap::new();
        map.insert(Value::str("k"), Value::Int(2));
        let doc = vec![
            Value::None,
            Value::Bool(true),
            Value::Int(-7),
            Value::Float(2.5),
            Value::str("héllo"),
            Value::Timestamp(1_700_000_000_000_000),
            Value::Duration(-3),
            Value::List(vec![Value::Int(1), Value::Int(1)]),
            Value::Set([Value::str("x")].into_iter().collect()),
            Value::Map(map),
        ];
        let bytes = encode_doc(&doc);
        assert_eq!(decode_doc(&bytes), Some(doc));
        for cut in 0..bytes.len() {
            assert_eq!(decode_doc(&bytes[..cut]), None);
        }
    }
}
