//! The runtime value of the projection language.
//!
//! Invariant: a `Value` is always well-typed for the static type the checker gave its
//! expression; `Value::None` only appears where the type is optional (`T?`). Values are
//! totally ordered (floats by `total_cmp`) so sets and maps iterate deterministically.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A value of the projection language.
#[derive(Debug, Clone)]
pub enum Value {
    /// The absent value of an optional type.
    None,
    /// `bool`.
    Bool(bool),
    /// `int`: a signed 64-bit integer; arithmetic on it is checked.
    Int(i64),
    /// `float`: always finite.
    Float(f64),
    /// `string`: immutable, cheap to clone.
    Str(Arc<str>),
    /// `timestamp`: microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    /// `duration`: microseconds.
    Duration(i64),
    /// `list<T>`.
    List(Vec<Value>),
    /// `set<T>`, ordered.
    Set(BTreeSet<Value>),
    /// `map<K, V>`, ordered by key.
    Map(BTreeMap<Value, Value>),
}

impl Value {
    /// Builds a string value from anything that can be viewed as `&str`.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = datamesh_stdlib::Value::str("hi");
    /// assert_eq!(datamesh_stdlib::string::to_string(&v), "hi");
    /// ```
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Str(Arc::from(s.as_ref()))
    }

    /// Returns the name of the value's type as the language spells it (`none`, `bool`,
    /// `int`, `float`, `string`, `timestamp`, `duration`, `list`, `set`, `map`), for
    /// error messages.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(datamesh_stdlib::Value::Int(1).type_name(), "int");
    /// assert_eq!(datamesh_stdlib::Value::str("a").type_name(), "string");
    /// ```
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "none",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Timestamp(_) => "timestamp",
            Value::Duration(_) => "duration",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Map(_) => "map",
        }
    }

    /// Rank of the variant, used to order values of different variants.
    fn rank(&self) -> u8 {
        match self {
            Value::None => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Float(_) => 3,
            Value::Str(_) => 4,
            Value::Timestamp(_) => 5,
            Value::Duration(_) => 6,
            Value::List(_) => 7,
            Value::Set(_) => 8,
            Value::Map(_) => 9,
        }
    }
}

impl std::hash::Hash for Value {
    /// Consistent with `Eq` (which uses the total order): floats hash by their bits.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Value::None => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) | Value::Timestamp(i) | Value::Duration(i) => i.hash(state),
            Value::Float(f) => f.to_bits().hash(state),
            Value::Str(s) => s.hash(state),
            Value::List(items) => items.hash(state),
            Value::Set(items) => items.hash(state),
            Value::Map(entries) => entries.hash(state),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::None, Value::None) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::Duration(a), Value::Duration(b)) => a.cmp(b),
            (Value::List(a), Value::List(b)) => a.cmp(b),
            (Value::Set(a), Value::Set(b)) => a.cmp(b),
            (Value::Map(a), Value::Map(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}
