//! Fixed layouts: where each field of an event row and of a projection document lives.
//!
//! A row or a document is an array of 8-byte words. Scalars live inline (`int`,
//! `timestamp` and `duration` as i64, `float` as its bits, `bool` as 0 or 1); an optional
//! scalar takes two words, a presence flag then the payload. Strings, collections and
//! optional strings are handles: in a row, the word holds a pointer to the decoded
//! [`Value`] (owned by the caller's row for the duration of the event); in a document,
//! the field lives in the document's `heap` array, which only helper calls touch.
//!
//! Invariant: a layout is computed once from the IR and never changes, so generated code
//! and the Rust side agree on every offset; converting a row or document to words and
//! back yields the same values.

use datamesh_stdlib::Value;
use smallvec::SmallVec;

use super::CodegenError;
use crate::ir::{Field, Type};

/// How a value of a static type is represented in generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// `int`, `timestamp`, `duration`: one i64.
    Int,
    /// `float`: one f64.
    Float,
    /// `bool`: one i8 holding 0 or 1.
    Bool,
    /// A pointer to a [`Value`]: strings, collections, optional strings, `none`.
    Ref,
    /// `int?` and friends: a presence flag (i8) and an i64 payload.
    OptInt,
    /// `float?`: a presence flag and an f64 payload.
    OptFloat,
    /// `bool?`: a presence flag and an i8 payload.
    OptBool,
}

impl Repr {
    /// The representation of a static type, or `Unsupported` for types no handler can
    /// hold at run time (documents, nested optionals).
    pub fn of(ty: &Type) -> Result<Repr, CodegenError> {
        Ok(match ty {
            Type::Int | Type::Timestamp | Type::Duration => Repr::Int,
            Type::Float => Repr::Float,
            Type::Bool => Repr::Bool,
            Type::String | Type::List(_) | Type::Set(_) | Type::Map(..) | Type::None => Repr::Ref,
            Type::Optional(inner) => match Repr::of(inner)? {
                Repr::Int => Repr::OptInt,
                Repr::Float => Repr::OptFloat,
                Repr::Bool => Repr::OptBool,
                Repr::Ref if **inner != Type::None => Repr::Ref,
                _ => return Err(CodegenError::Unsupported(format!("the type `{ty}`"))),
            },
            Type::Doc(_) | Type::Error => {
                return Err(CodegenError::Unsupported(format!("the type `{ty}`")));
            }
        })
    }

    /// Whether the representation takes two words (flag and payload).
    pub fn is_optional_scalar(self) -> bool {
        matches!(self, Repr::OptInt | Repr::OptFloat | Repr::OptBool)
    }

    /// The representation that writes a missing field's words as zeros (a `Ref`
    /// becomes a null word, as it was before rows were encoded in place).
    fn absent(self) -> Repr {
        if self == Repr::Ref { Repr::Int } else { self }
    }

    /// Words a field of this representation takes inline.
    fn words(self) -> usize {
        if self.is_optional_scalar() { 2 } else { 1 }
    }
}

/// The tag telling helpers which integer-like type an i64 is.
pub fn int_tag(ty: &Type) -> i64 {
    match ty.unwrap_optional() {
        Type::Timestamp => 1,
        Type::Duration => 2,
        _ => 0,
    }
}

/// Where one field lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Inline at a byte offset (for a `Ref` in a row: the pointer to the value).
    Inline {
        /// Byte offset of the first word.
        offset: i32,
        /// Representation.
        repr: Repr,
    },
    /// In a document's heap array, at this index.
    Heap {
        /// Index in the heap array.
        index: usize,
    },
}

/// The layout of a row (event payload) or a document (projection state).
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// One slot per field, in field order.
    pub slots: Vec<Slot>,
    /// Field types, in field order.
    pub types: Vec<Type>,
    /// Number of inline words.
    pub words: usize,
    /// Number of heap values (always 0 for rows).
    pub heap: usize,
    /// The inline fields as (field index, word index, representation): what encoding a
    /// row walks, without matching on slots and types per field.
    inline: Box<[(usize, usize, Repr)]>,
}

impl Layout {
    /// The layout of an event row: handles are pointers into the caller's row.
    pub fn row(fields: &[Field]) -> Result<Layout, CodegenError> {
        Layout::build(fields, false)
    }

    /// The layout of a document: handles live in the document's heap array.
    pub fn doc(fields: &[Field]) -> Result<Layout, CodegenError> {
        Layout::build(fields, true)
    }

    fn build(fields: &[Field], heap_handles: bool) -> Result<Layout, CodegenError> {
        let mut layout = Layout {
            slots: Vec::with_capacity(fields.len()),
            types: Vec::with_capacity(fields.len()),
            words: 0,
            heap: 0,
            inline: Box::default(),
        };
        for field in fields {
            let repr = Repr::of(&field.ty)?;
            let slot = if repr == Repr::Ref && heap_handles {
                layout.heap += 1;
                Slot::Heap {
                    index: layout.heap - 1,
                }
            } else {
                let offset = i32::try_from(layout.words * 8)
                    .map_err(|_| CodegenError::Unsupported("a row of this size".into()))?;
                layout.words += repr.words();
                Slot::Inline { offset, repr }
            };
            layout.slots.push(slot);
            layout.types.push(field.ty.clone());
        }
        layout.inline = (layout.slots.iter().enumerate())
            .filter_map(|(field, slot)| match *slot {
                Slot::Inline { offset, repr } => Some((field, word_index(offset), repr)),
                Slot::Heap { .. } => None,
            })
            .collect();
        Ok(layout)
    }

    /// Encodes a row into words; handle fields point into `row`, which must outlive
    /// every use of the words.
    #[inline(always)]
    pub fn encode_row(&self, row: &[Value], words: &mut Vec<u64>) {
        // Every word belongs to one inline field, and every field below writes all of
        // its words, so a buffer of the right length needs no clearing.
        words.resize(self.words, 0);
        for &(field, at, repr) in &*self.inline {
            match row.get(field) {
                Some(value) => write_word(words, at, repr, value),
                None => write_word(words, at, repr.absent(), &Value::None),
            }
        }
    }

    /// Builds a document from values in field order.
    pub fn encode_doc(&self, values: &[Value]) -> Doc {
        let mut words = Words::from_elem(0, self.words);
        let mut heap = Vec::with_capacity(self.heap);
        for ((slot, ty), value) in self.slots.iter().zip(&self.types).zip(values) {
            match slot {
                Slot::Inline { offset, repr } => {
                    write_inline(&mut words, *offset, *repr, ty, value)
                }
                Slot::Heap { .. } => heap.push(value.clone()),
            }
        }
        Doc {
            slots: words,
            heap: heap.into_boxed_slice(),
        }
    }

    /// Builds a document from owned values in field order, moving handle values into
    /// the heap instead of cloning them (the node's load path converts every document
    /// it reads). A missing trailing field gets its type's zero value, so the heap
    /// always has exactly [`Layout::heap`] entries, which generated code relies on.
    pub fn encode_doc_owned(&self, values: Vec<Value>) -> Doc {
        let mut words = Words::from_elem(0, self.words);
        let mut heap = Vec::with_capacity(self.heap);
        let mut values = values.into_iter();
        for (slot, ty) in self.slots.iter().zip(&self.types) {
            let value = values.next().unwrap_or_else(|| ty.zero_value());
            match slot {
                Slot::Inline { offset, repr } => {
                    write_inline(&mut words, *offset, *repr, ty, &value)
                }
                Slot::Heap { .. } => heap.push(value),
            }
        }
        Doc {
            slots: words,
            heap: heap.into_boxed_slice(),
        }
    }

    /// Reads a document back into values in field order, moving its handle values out
    /// instead of cloning them.
    pub fn decode_doc_owned(&self, doc: Doc) -> Vec<Value> {
        let mut heap = doc.heap.into_vec();
        self.slots
            .iter()
            .zip(&self.types)
            .map(|(slot, ty)| match slot {
                Slot::Inline { offset, repr } => read_inline(&doc.slots, *offset, *repr, ty),
                Slot::Heap { index } => heap
                    .get_mut(*index)
                    .map_or(Value::None, |v| std::mem::replace(v, Value::None)),
            })
            .collect()
    }

    /// The value of one inline field of a document (`Value::None` for a heap slot).
    pub fn read_slot(&self, doc: &Doc, slot: &Slot, ty: &Type) -> Value {
        match slot {
            Slot::Inline { offset, repr } => read_inline(&doc.slots, *offset, *repr, ty),
            Slot::Heap { index } => doc.heap.get(*index).cloned().unwrap_or(Value::None),
        }
    }

    /// Reads a document back into values in field order.
    pub fn decode_doc(&self, doc: &Doc) -> Vec<Value> {
        self.slots
            .iter()
            .zip(&self.types)
            .map(|(slot, ty)| match slot {
                Slot::Inline { offset, repr } => read_inline(&doc.slots, *offset, *repr, ty),
                Slot::Heap { index } => doc.heap.get(*index).cloned().unwrap_or(Value::None),
            })
            .collect()
    }
}

/// The inline words of a document: stored in place up to four words (most documents),
/// so a document table keeps small documents in its own memory.
pub type Words = SmallVec<[u64; 4]>;

/// A projection document in its fixed layout. Built only by a [`Layout`] (or from
/// stored bytes through one), and its fields are private to the code generator, so no
/// caller can hand compiled code a document of another shape; the code checks the
/// shape once more before every call (`store::run_body`).
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// Inline words.
    pub(in crate::codegen) slots: Words,
    /// Handle fields (strings, collections), in heap-index order.
    pub(in crate::codegen) heap: Box<[Value]>,
}

fn word_index(offset: i32) -> usize {
    usize::try_from(offset).unwrap_or(0) / 8
}

fn scalar_word(value: &Value) -> u64 {
    match value {
        Value::Int(i) | Value::Timestamp(i) | Value::Duration(i) => *i as u64,
        Value::Float(f) => f.to_bits(),
        Value::Bool(b) => u64::from(*b),
        _ => 0,
    }
}

#[inline]
fn write_inline(words: &mut [u64], offset: i32, repr: Repr, _ty: &Type, value: &Value) {
    write_word(words, word_index(offset), repr, value);
}

/// Writes a field's words at word index `at`. A [`Repr::Ref`] word points at `value`.
#[inline]
fn write_word(words: &mut [u64], at: usize, repr: Repr, value: &Value) {
    let word = match repr {
        Repr::Ref => std::ptr::from_ref(value) as u64,
        Repr::OptInt | Repr::OptFloat | Repr::OptBool => {
            let present = !matches!(value, Value::None);
            if let Some(flag) = words.get_mut(at) {
                *flag = u64::from(present);
            }
            if let Some(payload) = words.get_mut(at + 1) {
                *payload = scalar_word(value);
            }
            return;
        }
        _ => scalar_word(value),
    };
    if let Some(slot) = words.get_mut(at) {
        *slot = word;
    }
}

/// Builds the value of a scalar type from its word.
pub fn scalar_value(ty: &Type, word: u64) -> Value {
    match ty {
        Type::Int => Value::Int(word as i64),
        Type::Timestamp => Value::Timestamp(word as i64),
        Type::Duration => Value::Duration(word as i64),
        Type::Float => Value::Float(f64::from_bits(word)),
        Type::Bool => Value::Bool(word & 0xff != 0),
        _ => Value::None,
    }
}

fn read_inline(words: &[u64], offset: i32, repr: Repr, ty: &Type) -> Value {
    let at = word_index(offset);
    let word = |i: usize| words.get(i).copied().unwrap_or(0);
    match repr {
        Repr::OptInt | Repr::OptFloat | Repr::OptBool => {
            if word(at) & 0xff == 0 {
                Value::None
            } else {
                scalar_value(ty.unwrap_optional(), word(at + 1))
            }
        }
        _ => scalar_value(ty, word(at)),
    }
}
