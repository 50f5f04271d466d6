//! The typing rule of each standard-library function: name and argument types to a
//! resolved [`Builtin`] and its result type. The functions themselves (names,
//! signatures, behaviour) are declared in [`crate::ir::builtin`].
//!
//! Invariant: every overload accepted here is implemented by [`crate::exec::builtin::call`]
//! for exactly the argument types listed, so engines can dispatch on the `Builtin` plus
//! the static argument types without re-checking.

use crate::ir::{Builtin, Type};

/// Why a call did not resolve.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// No function of this name.
    Unknown,
    /// Wrong number of arguments: the expected signature(s).
    Arity(&'static str),
    /// Wrong argument types: the expected signature(s).
    Types(&'static str),
}

/// Resolves a call of `name` with arguments of the given types.
///
/// # Errors
/// `CallError` when the name is unknown or no overload accepts the arguments.
pub fn resolve(name: &str, args: &[Type]) -> Result<(Builtin, Type), CallError> {
    use Builtin as B;
    use Type as T;
    let f = Builtin::from_name(name).ok_or(CallError::Unknown)?;
    let s = || T::String;
    let strings = |n: usize| args.len() == n && args.iter().all(|a| *a == T::String);
    let result = match (f, args) {
        (B::Lower | B::Upper | B::Trim, _) => strings(1).then(s),
        (B::Len, [T::String | T::List(_) | T::Set(_) | T::Map(..)]) => Some(T::Int),
        (B::Contains, [a, b]) => match (a, b) {
            (T::String, T::String) => Some(T::Bool),
            (T::List(e) | T::Set(e), x) if x.fits(e) => Some(T::Bool),
            (T::Map(k, _), x) if x.fits(k) => Some(T::Bool),
            _ => None,
        },
        (B::StartsWith | B::EndsWith, _) => strings(2).then_some(T::Bool),
        (B::Concat, _) => strings(args.len().max(1)).then(s),
        (B::Substring, [T::String, T::Int, T::Int]) => Some(s()),
        (B::Replace, _) => strings(3).then(s),
        (B::Split, _) => strings(2).then(|| T::List(Box::new(s()))),
        (B::ToString, [_]) => Some(s()),
        (B::ParseInt, _) => strings(1).then_some(T::Int),
        (B::ParseFloat, _) => strings(1).then_some(T::Float),
        (B::Abs, [a @ (T::Int | T::Float | T::Duration)]) => Some(a.clone()),
        (B::Min | B::Max, [a, b]) if a == b && a.is_ordered() => Some(a.clone()),
        (B::Round | B::Floor | B::Ceil | B::ToInt, [T::Float]) => Some(T::Int),
        (B::ToFloat, [T::Int]) => Some(T::Float),
        (B::Pow, [T::Int, T::Int]) => Some(T::Int),
        (B::Sqrt, [T::Float]) => Some(T::Float),
        (B::Day | B::Month, [T::Timestamp]) => Some(s()),
        (B::Year | B::Hour | B::Minute | B::DayOfMonth | B::Weekday, [T::Timestamp]) => {
            Some(T::Int)
        }
        (B::StartOfDay, [T::Timestamp]) => Some(T::Timestamp),
        (B::Days | B::Hours | B::Minutes | B::Seconds | B::Millis, [T::Int]) => Some(T::Duration),
        (
            B::ToDays | B::ToHours | B::ToMinutes | B::ToSeconds | B::ToMillis | B::ToMicros,
            [T::Duration],
        ) => Some(T::Int),
        (B::ParseTime, _) => strings(1).then_some(T::Timestamp),
        (B::ParseDuration, _) => strings(1).then_some(T::Duration),
        (B::First | B::Last, [T::List(e)]) => Some(T::Optional(e.clone())),
        (B::Get, [T::List(e), T::Int]) => Some((**e).clone()),
        (B::Sum, [T::List(e)]) if matches!(**e, T::Int | T::Float) => Some((**e).clone()),
        (B::Keys, [T::Map(k, _)]) => Some(T::List(k.clone())),
        (B::Values, [T::Map(_, v)]) => Some(T::List(v.clone())),
        (B::IsSome, [T::Optional(_) | T::None]) => Some(T::Bool),
        // Every builtin is named above; what is left are calls no overload accepts.
        _ => None,
    };
    match result {
        Some(ty) => Ok((f, ty)),
        // Arguments that already failed to check are accepted as anything.
        None if args.contains(&T::Error) => Ok((f, f.recovery_type())),
        None if arity_matches(f.signature(), args.len()) => Err(CallError::Types(f.signature())),
        None => Err(CallError::Arity(f.signature())),
    }
}

fn arity_matches(sig: &str, n: usize) -> bool {
    sig.split(" | ").any(|one| {
        let inner = one
            .split_once('(')
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(args, _)| args)
            .unwrap_or("");
        if inner.contains("...") {
            n >= 1
        } else if inner.trim().is_empty() {
            n == 0
        } else {
            inner.split(',').count() == n
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overloads_resolve_by_argument_type() {
        assert_eq!(
            resolve("abs", &[Type::Float]),
            Ok((Builtin::Abs, Type::Float))
        );
        assert_eq!(
            resolve("max", &[Type::Int, Type::Float]),
            Err(CallError::Types(
                "max(T, T) -> T (T one of int, float, string, timestamp, duration)"
            ))
        );
        assert!(matches!(resolve("lower", &[]), Err(CallError::Arity(_))));
        assert_eq!(resolve("nope", &[]), Err(CallError::Unknown));
    }
}
