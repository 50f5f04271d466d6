//! The standard library of the DataMesh projection language.
//!
//! Every function a `.dmp` program can call lives here as plain, pure, deterministic Rust:
//! no clock, no randomness, no I/O. The reference interpreter calls these functions
//! directly, and the Cranelift JIT registers thin `extern "C"` shims over the same code,
//! so both engines compute identical results and trap in identical places.
//!
//! Invariant: a function either returns a value or a [`Trap`]; it never panics on any
//! input, and never produces a non-finite float (that is a [`Trap::NonFinite`]).

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
}

/// Result of a fallible standard-library call.
pub type Result<T> = std::result::Result<T, Trap>;
