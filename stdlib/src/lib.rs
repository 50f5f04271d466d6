//! The standard library of the DataMesh projection language.
//!
//! Every function a `.dmp` program can call lives here as plain, pure, deterministic Rust:
//! no clock, no randomness, no I/O. The reference interpreter calls these functions
//! directly, and the Cranelift JIT registers thin `extern "C"` shims over the same code,
//! so both engines compute identical results and trap in identical places.
//!
//! Invariant: a function either returns a value or a [`Trap`]; it never panics on any
//! input, and never produces a non-finite float (that is a [`Trap::NonFinite`]).

#![forbid(unsafe_code)]

pub mod collections;
pub mod math;
pub mod string;
pub mod time;
mod value;

pub use value::Value;

/// Why an operation stopped instead of producing a value.
///
/// A trap aborts the handler that raised it; the runtime faults the projection at that
/// event and reports the message with the handler's span.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Trap {
    /// An `int` operation left the range of i64.
    #[error("integer overflow in {0}")]
    Overflow(&'static str),
    /// Integer or float division (or remainder) by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// A float operation produced NaN or an infinity, which no document can hold.
    #[error("float result is not finite in {0}")]
    NonFinite(&'static str),
    /// A conversion whose input has no value in the target type.
    #[error("invalid conversion: {0}")]
    InvalidConversion(String),
    /// An index or argument outside the range the function accepts.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// A string or collection would grow past its limit ([`limits`]), or a document
    /// past the size the store accepts.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
}

/// The sizes a value may grow to. A program that would go past one traps with
/// [`Trap::LimitExceeded`] (code R0007), and the check is made before the memory is
/// taken, so a string that doubles on every event or a list pushed on every event faults
/// its projection instead of exhausting the node's memory.
pub mod limits {
    use crate::{Result, Trap};

    /// The longest string a program can build (`+`, `concat`, `replace`, `upper`,
    /// `lower`, `to_string`), in bytes of UTF-8: 1 MiB.
    pub const MAX_STRING_BYTES: usize = 1 << 20;

    /// The most elements a list or set, or entries a map, can hold: 1,048,576 (2^20).
    pub const MAX_COLLECTION_LEN: usize = 1 << 20;

    /// Checks that a string of `bytes` bytes may be built.
    ///
    /// # Errors
    ///
    /// [`Trap::LimitExceeded`] when `bytes` is over [`MAX_STRING_BYTES`].
    ///
    /// # Examples
    ///
    /// ```
    /// use datamesh_stdlib::limits::{check_string, MAX_STRING_BYTES};
    /// assert!(check_string(MAX_STRING_BYTES).is_ok());
    /// assert!(check_string(MAX_STRING_BYTES + 1).is_err());
    /// ```
    #[inline]
    pub fn check_string(bytes: usize) -> Result<()> {
        if bytes <= MAX_STRING_BYTES {
            Ok(())
        } else {
            Err(string_too_long(bytes))
        }
    }

    #[cold]
    fn string_too_long(bytes: usize) -> Trap {
        Trap::LimitExceeded(format!(
            "a string of {bytes} bytes is longer than the limit of {MAX_STRING_BYTES} bytes"
        ))
    }

    /// Checks that a collection (`kind`: "list", "set" or "map") holding `len`
    /// elements may take one more.
    ///
    /// # Errors
    ///
    /// [`Trap::LimitExceeded`] when it already holds [`MAX_COLLECTION_LEN`].
    ///
    /// # Examples
    ///
    /// ```
    /// use datamesh_stdlib::limits::{check_room, MAX_COLLECTION_LEN};
    /// assert!(check_room("list", MAX_COLLECTION_LEN - 1).is_ok());
    /// assert!(check_room("list", MAX_COLLECTION_LEN).is_err());
    /// ```
    #[inline]
    pub fn check_room(kind: &str, len: usize) -> Result<()> {
        if len < MAX_COLLECTION_LEN {
            Ok(())
        } else {
            Err(collection_full(kind))
        }
    }

    /// Checks that a collection of `len` elements may be built.
    ///
    /// # Errors
    ///
    /// [`Trap::LimitExceeded`] when `len` is over [`MAX_COLLECTION_LEN`].
    #[inline]
    pub fn check_collection(kind: &str, len: usize) -> Result<()> {
        if len <= MAX_COLLECTION_LEN {
            Ok(())
        } else {
            Err(collection_full(kind))
        }
    }

    #[cold]
    fn collection_full(kind: &str) -> Trap {
        Trap::LimitExceeded(format!(
            "a {kind} cannot hold more than {MAX_COLLECTION_LEN} elements"
        ))
    }
}

/// Result of a fallible standard-library call.
pub type Result<T> = std::result::Result<T, Trap>;
